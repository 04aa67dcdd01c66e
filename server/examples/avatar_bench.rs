//! Avatar processing numbers for bench/avatars.md: a 4000 × 3000 JPEG
//! (12 MP, made here) through the pipeline one at a time, as 8 concurrent
//! uploads through the processing slots, and through the real server from
//! the upload to the picture being served on the public page.
//!
//!     cargo run --release -p server --example avatar_bench
//!
//! Needs Postgres and Redis as the tests do (DATABASE_URL, REDIS_URL).

use std::io::Cursor;
use std::time::{Duration, Instant};

#[path = "../tests/support/pictures.rs"]
mod pictures;

use app::ssr::media::{process_now, MediaStoreConfig, Processor};
use image::{ImageFormat, Rgb, RgbImage};

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Resets the peak (VmHWM) to the current RSS.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// A photo-like 12 MP picture: gradients and noise, so the JPEG is the size
/// of a phone's (a flat picture would compress to nothing).
fn photo(width: u32, height: u32) -> Vec<u8> {
    let mut seed = 0x2545_f491_u32;
    let image = RgbImage::from_fn(width, height, |x, y| {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let noise = (seed % 48) as u8;
        Rgb([
            ((x * 255 / width) as u8).saturating_add(noise),
            ((y * 255 / height) as u8).saturating_add(noise / 2),
            (((x + y) % 256) as u8).saturating_add(noise / 3),
        ])
    });
    let mut out = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut out), ImageFormat::Jpeg)
        .unwrap();
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let jpeg = photo(4000, 3000);
    println!(
        "input: 4000 x 3000 JPEG, {} bytes; {cores} cores",
        jpeg.len()
    );

    // One at a time.
    let _ = process_now(&jpeg).expect("warm-up");
    reset_peak();
    let before = rss_mib();
    let runs = 5;
    let mut decode = Duration::ZERO;
    let mut resize = Duration::ZERO;
    let started = Instant::now();
    let mut stored = 0;
    for _ in 0..runs {
        let processed = process_now(&jpeg).expect("processes");
        decode += processed.decode;
        resize += processed.resize_and_encode;
        stored = processed.files.iter().map(|(_, f)| f.len()).sum::<usize>();
    }
    let each = started.elapsed() / runs;
    println!(
        "one at a time: {:.0} ms per upload (decode {:.0} ms, crop + resize + orient + encode {:.0} ms); \
         peak RSS {:.0} MiB (+{:.0} MiB over {:.0} MiB before)",
        ms(each),
        ms(decode / runs),
        ms(resize / runs),
        peak_rss_mib(),
        peak_rss_mib() - before,
        before
    );
    println!(
        "stored: {stored} bytes for 3 sizes ({:.2} % of the upload; {} bytes saved)",
        stored as f64 * 100.0 / jpeg.len() as f64,
        jpeg.len() - stored
    );

    // 8 concurrent uploads through the processing slots (one per core).
    let processor = Processor::new(cores, app::ssr::media::MAX_DECODE_BYTES * cores as u64);
    reset_peak();
    let before = rss_mib();
    let started = Instant::now();
    let jobs: Vec<_> = (0..8)
        .map(|_| {
            let processor = processor.clone();
            let jpeg = jpeg.clone();
            tokio::spawn(async move { processor.process(jpeg).await })
        })
        .collect();
    for job in jobs {
        job.await.unwrap().unwrap().unwrap();
    }
    let elapsed = started.elapsed();
    println!(
        "8 concurrent: {:.0} ms in all, {:.2} images/s; peak RSS {:.0} MiB (+{:.0} MiB)",
        ms(elapsed),
        8.0 / elapsed.as_secs_f64(),
        peak_rss_mib(),
        peak_rss_mib() - before
    );

    // The bomb: a PNG header claiming 60 000 x 60 000 pixels.
    reset_peak();
    let before = rss_mib();
    let bomb = pictures::png_claiming(60_000);
    let started = Instant::now();
    let refused = process_now(&bomb).unwrap_err();
    println!(
        "bomb ({} bytes claiming 60000 x 60000): {:?} in {:.2} ms, peak RSS +{:.1} MiB",
        bomb.len(),
        refused,
        ms(started.elapsed()),
        peak_rss_mib() - before
    );

    upload_to_visible(&jpeg).await;
}

/// The real server on a spare port: sign up, upload, then the public page
/// and the picture it names, as a browser would load them.
async fn upload_to_visible(jpeg: &[u8]) {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let mut settings = server::config::Settings::from_env().expect("settings");
    let base = settings.database_url.rsplit_once('/').unwrap().0.to_owned();
    settings.database_url = format!("{base}/folio_avatar_bench_{id}");
    settings.addr = "127.0.0.1:0".parse().unwrap();
    settings.service.redis_prefix = format!("bench:{id}:");
    settings.event_workers = false;
    let dir = std::env::temp_dir().join(format!("folio-avatar-bench-{id}"));
    settings.service.media = MediaStoreConfig::Local { dir: dir.clone() };
    let app = server::startup::Application::build(settings)
        .await
        .expect("server starts");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let register = client
        .post(format!("{address}/api/register"))
        .form(&[
            ("username", "bench"),
            ("email", "bench@example.com"),
            ("password", "violet-kettle-harbour-93"),
        ])
        .send()
        .await
        .unwrap();
    let cookie = register
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("__Host-folio_session="))
        .and_then(|v| v.split(';').next())
        .expect("session cookie")
        .to_owned();
    let boundary = "bench-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"avatar\"; filename=\"p.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(jpeg);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());

    let mut times = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let upload = client
            .post(format!("{address}/settings/profile/avatar"))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .header("accept", "application/json")
            .header("cookie", &cookie)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(upload.status(), 200);
        let page = client
            .get(format!("{address}/u/bench"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let src = page
            .split("src=\"/media/")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("the page shows the avatar")
            .to_owned();
        let image = client
            .get(format!("{address}/media/{src}"))
            .send()
            .await
            .unwrap();
        assert_eq!(image.status(), 200);
        image.bytes().await.unwrap();
        times.push(started.elapsed());
    }
    times.sort();
    println!(
        "upload to visible (debug-free release server, loopback): median {:.0} ms, runs {:?}",
        ms(times[1]),
        times.iter().map(|t| ms(*t).round()).collect::<Vec<_>>()
    );
    let _ = std::fs::remove_dir_all(dir);
}
