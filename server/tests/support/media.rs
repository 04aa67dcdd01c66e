//! Avatars in tests: pictures made here (no binary fixtures), the upload as
//! a browser sends it, and an S3-compatible server of our own (moto).

use std::io::Cursor;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use image::{ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};

use super::{free_port, Cookie, TestApp, SESSION_COOKIE};

/// Text hidden in the test JPEG's EXIF GPS block: no stored byte may hold it.
pub const GPS_SECRET: &[u8] = b"FOLIOSECRETGPS";

/// A landscape picture, left half red, right half blue.
pub fn halves(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, _| {
        if x < width / 2 {
            Rgb([220, 20, 20])
        } else {
            Rgb([20, 20, 220])
        }
    })
}

pub fn jpeg(image: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut out), ImageFormat::Jpeg)
        .unwrap();
    out
}

pub fn png_rgba(width: u32, height: u32) -> Vec<u8> {
    let image = RgbaImage::from_fn(width, height, |x, y| {
        Rgba([
            (x % 256) as u8,
            (y % 256) as u8,
            128,
            if x < width / 2 { 255 } else { 90 },
        ])
    });
    let mut out = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
        .unwrap();
    out
}

pub fn webp(image: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut out), ImageFormat::WebP)
        .unwrap();
    out
}

/// A square of one colour.
pub fn plain(side: u32, colour: [u8; 3]) -> RgbImage {
    RgbImage::from_pixel(side, side, Rgb(colour))
}

/// An animated PNG (APNG) of `frames`, one after the other, looping. Its
/// default image (what a viewer without APNG support shows) is the first.
pub fn animated_png(frames: &[RgbImage]) -> Vec<u8> {
    let (width, height) = frames[0].dimensions();
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_animated(frames.len() as u32, 0).unwrap();
    let mut writer = encoder.write_header().unwrap();
    for frame in frames {
        writer.write_image_data(frame.as_raw()).unwrap();
    }
    writer.finish().unwrap();
    out
}

/// An animated WebP of `frames` (each a lossless VP8L bitstream in an ANMF
/// chunk, 100 ms each, looping), assembled chunk by chunk: the `image`
/// crate encodes stills only.
pub fn animated_webp(frames: &[RgbImage]) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(kind);
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        if data.len() % 2 == 1 {
            out.push(0);
        }
    }
    fn u24(out: &mut Vec<u8>, value: u32) {
        out.extend_from_slice(&value.to_le_bytes()[..3]);
    }
    /// The VP8L chunk (header included) of a still WebP.
    fn vp8l_chunk(still: &[u8]) -> Vec<u8> {
        let mut at = 12; // after RIFF, size, WEBP
        while at + 8 <= still.len() {
            let size = u32::from_le_bytes(still[at + 4..at + 8].try_into().unwrap()) as usize;
            let end = at + 8 + size + size % 2;
            if &still[at..at + 4] == b"VP8L" {
                return still[at..end.min(still.len())].to_vec();
            }
            at = end;
        }
        panic!("the still WebP has no VP8L chunk");
    }
    let (width, height) = frames[0].dimensions();
    let mut body = b"WEBP".to_vec();
    let mut vp8x = vec![0x02, 0, 0, 0]; // the animation flag
    u24(&mut vp8x, width - 1);
    u24(&mut vp8x, height - 1);
    chunk(&mut body, b"VP8X", &vp8x);
    chunk(&mut body, b"ANIM", &[0, 0, 0, 0, 0, 0]); // background, loop forever
    for frame in frames {
        let mut anmf = Vec::new();
        u24(&mut anmf, 0); // x / 2
        u24(&mut anmf, 0); // y / 2
        u24(&mut anmf, width - 1);
        u24(&mut anmf, height - 1);
        u24(&mut anmf, 100); // duration, ms
        anmf.push(0); // no blending, no disposal
        anmf.extend_from_slice(&vp8l_chunk(&webp(frame)));
        chunk(&mut body, b"ANMF", &anmf);
    }
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// A little-endian EXIF block (TIFF) with orientation `orientation` and a
/// GPS block: latitude 51° 30' 26.15" N, and [`GPS_SECRET`] as its map datum.
pub fn exif(orientation: u16) -> Vec<u8> {
    fn entry(out: &mut Vec<u8>, tag: u16, kind: u16, count: u32, value: u32) {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&value.to_le_bytes());
    }
    const SHORT: u16 = 3;
    const LONG: u16 = 4;
    const ASCII: u16 = 2;
    const RATIONAL: u16 = 5;
    let mut out = b"II*\0".to_vec();
    out.extend_from_slice(&8u32.to_le_bytes());
    // IFD0 at 8: orientation, and where the GPS IFD is (38).
    out.extend_from_slice(&2u16.to_le_bytes());
    entry(&mut out, 0x0112, SHORT, 1, u32::from(orientation));
    entry(&mut out, 0x8825, LONG, 1, 38);
    out.extend_from_slice(&0u32.to_le_bytes());
    assert_eq!(out.len(), 38);
    // GPS IFD at 38: latitude ref "N", latitude (at 80), map datum (at 104).
    out.extend_from_slice(&3u16.to_le_bytes());
    entry(&mut out, 0x0001, ASCII, 2, u32::from_le_bytes(*b"N\0\0\0"));
    entry(&mut out, 0x0002, RATIONAL, 3, 80);
    entry(&mut out, 0x0012, ASCII, GPS_SECRET.len() as u32 + 1, 104);
    out.extend_from_slice(&0u32.to_le_bytes());
    assert_eq!(out.len(), 80);
    for (numerator, denominator) in [(51u32, 1u32), (30, 1), (2615, 100)] {
        out.extend_from_slice(&numerator.to_le_bytes());
        out.extend_from_slice(&denominator.to_le_bytes());
    }
    out.extend_from_slice(GPS_SECRET);
    out.push(0);
    out
}

/// `jpeg` with `exif` as its APP1 segment, right after the SOI marker, as
/// a camera writes it.
pub fn with_exif(jpeg: &[u8], exif: &[u8]) -> Vec<u8> {
    assert_eq!(&jpeg[..2], b"\xff\xd8");
    let length = (2 + 6 + exif.len()) as u16;
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(b"\xff\xe1");
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(b"Exif\0\0");
    out.extend_from_slice(exif);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// A multipart/form-data body with one file field, as a browser sends it:
/// the content type header and the body.
pub fn multipart(
    field: &str,
    filename: &str,
    content_type: &str,
    bytes: &[u8],
) -> (String, Vec<u8>) {
    let boundary = "----folio-test-boundary-7d1f0c";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\nContent-Type: {content_type}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A PNG of `side` × `side` 8-bit RGB pixels, all zero: about 190 KB at
/// 8192 px, which decodes to 192 MiB, the most an avatar may.
pub fn wide_png(side: u32) -> Vec<u8> {
    zero_png(side, png::ColorType::Rgb, png::BitDepth::Eight, 3)
}

/// A PNG of `side` × `side` 16-bit RGBA pixels, all zero: about 510 KB at
/// 8192 px, which decodes to 512 MiB (`side² × 8` bytes).
pub fn deep_png(side: u32) -> Vec<u8> {
    zero_png(side, png::ColorType::Rgba, png::BitDepth::Sixteen, 8)
}

/// Zero pixels, written row by row, so making the picture costs the test
/// no buffer of its decoded size.
fn zero_png(
    side: u32,
    color: png::ColorType,
    depth: png::BitDepth,
    bytes_per_pixel: usize,
) -> Vec<u8> {
    use std::io::Write;
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side, side);
    encoder.set_color(color);
    encoder.set_depth(depth);
    encoder.set_compression(png::Compression::Best);
    encoder.set_filter(png::FilterType::NoFilter);
    let mut writer = encoder.write_header().unwrap();
    let mut stream = writer.stream_writer().unwrap();
    let row = vec![0u8; side as usize * bytes_per_pixel];
    for _ in 0..side {
        stream.write_all(&row).unwrap();
    }
    stream.finish().unwrap();
    writer.finish().unwrap();
    out
}

/// The real `server` binary (not `--worker`) serving this app's database,
/// Redis and key prefix, its memory its own: a test reads its peak RSS
/// without the test process's own allocations in it. Killed on drop.
pub struct ServerProcess {
    child: Child,
    pub port: u16,
}

impl ServerProcess {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The process's peak resident set (`VmHWM`), MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server process is alive");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map(|kib| kib / 1024.0)
            .expect("VmHWM in /proc/<pid>/status")
    }

    /// Waits until it answers `/readyz`.
    pub async fn ready(&self) {
        let url = self.url("/readyz");
        super::wait_for("server process ready", Duration::from_secs(30), || async {
            reqwest::get(&url).await.is_ok_and(|r| r.status() == 200)
        })
        .await;
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TestApp {
    /// Starts the `server` binary on this deployment (no event workers: the
    /// test's own app has none either). Its avatars go to this app's store.
    pub fn spawn_server_process(&self) -> ServerProcess {
        self.spawn_server_process_with(&[])
    }

    /// The same, with more environment (`FOLIO_AVATAR_MEMORY_MIB`, …).
    pub fn spawn_server_process_with(&self, env: &[(&str, &str)]) -> ServerProcess {
        let port = free_port();
        let s = &self.settings;
        let mut command = Command::new(env!("CARGO_BIN_EXE_server"));
        command
            .env("DATABASE_URL", &s.database_url)
            .env("REDIS_URL", &s.redis_url)
            .env("FOLIO_EVENTS_REDIS_URL", &s.events_redis_url)
            .env("FOLIO_REDIS_PREFIX", &s.service.redis_prefix)
            .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}"))
            .env("FOLIO_EVENT_WORKERS", "off")
            .env("FOLIO_DB_MAX_CONNECTIONS", "4")
            .env("FOLIO_LOG", "warn")
            .env("LEPTOS_OUTPUT_NAME", "folio")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let app::ssr::media::MediaStoreConfig::Local { dir } = &s.service.media {
            command.env("FOLIO_AVATAR_DIR", dir);
        }
        command.envs(env.iter().copied());
        ServerProcess {
            child: command.spawn().expect("the server binary starts"),
            port,
        }
    }

    /// Uploads `bytes` as the avatar, as a script does (JSON back).
    pub async fn upload_avatar(&self, cookie: &Cookie, bytes: &[u8]) -> reqwest::Response {
        self.upload_avatar_as(cookie, "photo.jpg", "image/jpeg", bytes, "application/json")
            .await
    }

    /// Uploads with the given file name, declared type and `Accept`
    /// (`text/html`: a plain form post).
    pub async fn upload_avatar_as(
        &self,
        cookie: &Cookie,
        filename: &str,
        content_type: &str,
        bytes: &[u8],
        accept: &str,
    ) -> reqwest::Response {
        self.upload_avatar_to(
            &self.url("/settings/profile/avatar"),
            cookie,
            filename,
            content_type,
            bytes,
            accept,
        )
        .await
    }

    /// The same upload to `url` (another server of this deployment).
    pub async fn upload_avatar_to(
        &self,
        url: &str,
        cookie: &Cookie,
        filename: &str,
        content_type: &str,
        bytes: &[u8],
        accept: &str,
    ) -> reqwest::Response {
        let (form_type, body) = multipart("avatar", filename, content_type, bytes);
        let mut request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, form_type)
            .header(reqwest::header::ACCEPT, accept)
            .body(body);
        if let Some(token) = cookie.token() {
            request = request.header(reqwest::header::COOKIE, format!("{SESSION_COOKIE}={token}"));
        }
        request.send().await.expect("request sent")
    }

    /// Every file in the media store.
    pub async fn media_files(&self) -> Vec<String> {
        self.state.media.store.names().await.expect("store lists")
    }

    /// Every stored file's bytes.
    pub async fn media_bytes(&self) -> Vec<(String, Vec<u8>)> {
        let mut all = Vec::new();
        for name in self.media_files().await {
            let bytes = self.state.media.store.get(&name).await.unwrap().unwrap();
            all.push((name, bytes.to_vec()));
        }
        all
    }
}

/// A directory of its own for a test's media store.
pub fn media_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("folio-media-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `moto_server` (PyPI's `moto[server]`, an S3-compatible server), from
/// `FOLIO_MOTO_SERVER` or the project's venv (`ensure_moto` in
/// scripts/common.sh installs it there), on a spare port.
pub struct MotoProcess {
    child: Child,
    pub port: u16,
}

impl MotoProcess {
    pub fn start() -> Self {
        let binary = std::env::var("FOLIO_MOTO_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|_| {
                PathBuf::from(std::env::var("HOME").unwrap_or_default())
                    .join(".cache/folio/venv/bin/moto_server")
            });
        assert!(
            binary.exists(),
            "{} is missing: run `source scripts/common.sh && ensure_moto` once",
            binary.display()
        );
        let port = free_port();
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server on {port} never answered"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { child, port }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates `bucket` (moto takes unsigned requests).
    pub async fn create_bucket(&self, bucket: &str) {
        let response = reqwest::Client::new()
            .put(format!("{}/{bucket}", self.endpoint()))
            .send()
            .await
            .expect("moto answers");
        assert!(
            response.status().is_success(),
            "create bucket: {}",
            response.status()
        );
    }
}

impl Drop for MotoProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
