//! Avatars through the real server: upload (as a script and as a plain
//! form), what is stored and served, every bad input, dedupe, clean-up,
//! and the same store tests on a directory and on S3 (moto).

use std::time::{Duration, Instant};

use app::ssr::media::MediaStoreConfig;
use app::ssr::Limit;
use image::GenericImageView;

use crate::support::{
    animated_png, animated_webp, exif, halves, jpeg, plain, png_rgba, spawn_app, spawn_app_with,
    status_and_json, wait_for, webp, with_exif, Cookie, MotoProcess, TestApp, GPS_SECRET,
};

/// The field message of a refused upload.
async fn refusal(response: reqwest::Response) -> (u16, String) {
    let (status, body) = status_and_json(response).await;
    let message = body["Validation"]["avatar"]
        .as_str()
        .unwrap_or_else(|| panic!("not an avatar refusal: {body}"))
        .to_owned();
    (status, message)
}

fn key_of(profile: &serde_json::Value) -> String {
    profile["avatar"]["key"]
        .as_str()
        .unwrap_or_else(|| panic!("no avatar: {profile}"))
        .to_owned()
}

async fn upload_ok(app: &TestApp, cookie: &Cookie, bytes: &[u8]) -> serde_json::Value {
    let (status, profile) = status_and_json(app.upload_avatar(cookie, bytes).await).await;
    assert_eq!(status, 200, "{profile}");
    profile
}

fn decoded(bytes: &[u8]) -> image::DynamicImage {
    image::load_from_memory_with_format(bytes, image::ImageFormat::WebP)
        .expect("stored WebP decodes")
}

fn is_red(pixel: image::Rgba<u8>) -> bool {
    pixel[0] > 150 && pixel[2] < 100
}

fn is_blue(pixel: image::Rgba<u8>) -> bool {
    pixel[2] > 150 && pixel[0] < 100
}

#[tokio::test]
async fn a_phone_photo_comes_out_upright_square_small_and_without_metadata() {
    let app = spawn_app().await;
    let cookie = app.register("ada").await;
    // Sensor pixels 600 × 400, left red, right blue; orientation 6 says
    // "turn 90° clockwise to show": the red half belongs on top.
    let photo = with_exif(&jpeg(&halves(600, 400)), &exif(6));
    assert!(photo.windows(GPS_SECRET.len()).any(|w| w == GPS_SECRET));

    let profile = upload_ok(&app, &cookie, &photo).await;

    let key = key_of(&profile);
    let files = app.media_bytes().await;
    let names: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
    let mut expected = [64, 128, 256].map(|size| format!("{key}-{size}.webp"));
    expected.sort();
    assert_eq!(names, expected, "one file per size");
    for (name, bytes) in &files {
        assert!(
            bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP",
            "{name} is WebP"
        );
        for marker in [GPS_SECRET, b"Exif", b"II*\0", b"EXIF", b"XMP "] {
            assert!(
                !bytes.windows(marker.len()).any(|w| w == marker),
                "{name} holds {:?}",
                String::from_utf8_lossy(marker)
            );
        }
        let image = decoded(bytes);
        let size: u32 = name
            .rsplit('-')
            .next()
            .unwrap()
            .trim_end_matches(".webp")
            .parse()
            .unwrap();
        assert_eq!(image.dimensions(), (size, size), "{name} is square");
        let s = size;
        assert!(is_red(image.get_pixel(s / 2, s / 8)), "{name}: red on top");
        assert!(
            is_blue(image.get_pixel(s / 2, s - s / 8)),
            "{name}: blue below"
        );
    }
    assert_eq!(profile["avatar"]["src"], format!("/media/{key}-128.webp"));
    assert_eq!(
        profile["avatar"]["srcset"],
        format!("/media/{key}-64.webp 64w, /media/{key}-128.webp 128w, /media/{key}-256.webp 256w")
    );
    // Everyone sees it.
    let (_, public) = app.get_profile("ada").await;
    assert_eq!(key_of(&public), key);
}

#[tokio::test]
async fn png_with_alpha_and_webp_are_taken() {
    let app = spawn_app().await;
    let cookie = app.register("ada").await;

    let from_png = upload_ok(&app, &cookie, &png_rgba(300, 500)).await;
    let from_webp = upload_ok(&app, &cookie, &webp(&halves(90, 90))).await;

    assert_ne!(key_of(&from_png), key_of(&from_webp));
    assert!(from_webp["version"].as_i64() > from_png["version"].as_i64());
    let name = format!("{}-256.webp", key_of(&from_png));
    let bytes = app.state.media.store.get(&name).await.unwrap().unwrap();
    let image = decoded(&bytes);
    assert!(image.color().has_alpha(), "transparency kept");
}

/// Folio's choice for animations: the first frame becomes a still avatar
/// (an avatar that moves distracts on every page that shows it, and WCAG
/// 2.2.2 would then ask for a pause control). GIF stays refused.
#[tokio::test]
async fn an_animated_picture_becomes_its_first_frame() {
    let app = spawn_app().await;
    let cookie = app.register("ada").await;
    let frames = [plain(96, [220, 20, 20]), plain(96, [20, 20, 220])];

    for (format, bytes) in [
        ("APNG", animated_png(&frames)),
        ("animated WebP", animated_webp(&frames)),
    ] {
        let profile = upload_ok(&app, &cookie, &bytes).await;
        let key = key_of(&profile);
        for size in [64, 128, 256] {
            let name = format!("{key}-{size}.webp");
            let stored = app.state.media.store.get(&name).await.unwrap().unwrap();
            let image = decoded(&stored);
            assert_eq!(image.dimensions(), (size, size), "{format}");
            let centre = image.get_pixel(size / 2, size / 2);
            assert!(is_red(centre), "{format}: the first frame, got {centre:?}");
            assert!(
                !stored.windows(4).any(|w| w == b"ANIM" || w == b"ANMF"),
                "{format}: stored as a still"
            );
        }
    }
}

#[tokio::test]
async fn bad_files_are_refused_with_their_reason_and_nothing_is_stored() {
    let app = spawn_app().await;
    let cookie = app.register("ada").await;
    let good = jpeg(&halves(200, 200));
    let mut heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic".to_vec();
    heic.extend_from_slice(&[7u8; 4000]);
    let svg = br#"<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#;
    let mut exe = b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff".to_vec();
    exe.extend_from_slice(&[0u8; 2000]);
    let garbage: Vec<u8> = (0..5000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let gif = b"GIF89a\x01\0\x01\0\x80\0\0\0\0\0\xff\xff\xff!\xf9\x04\x01\0\0\0\0,\0\0\0\0\x01\0\x01\0\0\x02\x02D\x01\0;";

    let cases: [(&str, &str, &[u8], &str); 7] = [
        (
            "IMG_0001.HEIC",
            "image/heic",
            &heic,
            "HEIC photos are not supported",
        ),
        (
            "avatar.svg",
            "image/svg+xml",
            svg,
            "Only JPEG, PNG and WebP",
        ),
        // A program renamed, with a picture's type: the bytes decide.
        (
            "avatar.jpg",
            "image/jpeg",
            &exe,
            "not an image Folio can read",
        ),
        (
            "avatar.png",
            "image/png",
            &garbage,
            "not an image Folio can read",
        ),
        (
            "half.jpg",
            "image/jpeg",
            &good[..good.len() / 2],
            "not an image Folio can read",
        ),
        ("anim.gif", "image/gif", gif, "Only JPEG, PNG and WebP"),
        ("empty.jpg", "image/jpeg", b"", "Choose an image file"),
    ];
    for (filename, content_type, bytes, expected) in cases {
        let response = app
            .upload_avatar_as(&cookie, filename, content_type, bytes, "application/json")
            .await;
        let (status, body) = status_and_json(response).await;
        assert_eq!(status, 422, "{filename}: {body}");
        let message = body["Validation"]["avatar"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{filename}: {message}");
    }
    assert!(app.media_files().await.is_empty());
    let (_, profile) = app.get_profile("ada").await;
    assert!(profile.get("avatar").is_none(), "{profile}");
    assert_eq!(profile["version"], 1);
}

#[tokio::test]
async fn a_decompression_bomb_is_refused_from_its_header() {
    let app = spawn_app().await;
    let cookie = app.register("ada").await;
    let bomb = crate::support::pictures::png_claiming(60_000);
    assert!(bomb.len() < 100);

    let started = Instant::now();
    let (status, message) = refusal(app.upload_avatar(&cookie, &bomb).await).await;

    assert_eq!(status, 422);
    assert!(message.contains("too large: at most 8192"), "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(app.media_files().await.is_empty());
}

#[tokio::test]
async fn a_polyglot_keeps_its_picture_and_loses_its_script() {
    let app = spawn_app().await;
    let cookie = app.register("ada").await;
    let mut polyglot = png_rgba(64, 64);
    polyglot.extend_from_slice(b"<html><script>alert(document.cookie)</script></html>");

    upload_ok(&app, &cookie, &polyglot).await;

    for (name, bytes) in app.media_bytes().await {
        assert!(!bytes.windows(7).any(|w| w == b"<script"), "{name}");
        assert!(!bytes.windows(5).any(|w| w == b"<html"), "{name}");
    }
}

#[tokio::test]
async fn nine_megabytes_are_refused_before_the_body_is_read() {
    let app = spawn_app().await;
    let cookie = app.register("ada").await;

    // Declared, not sent: the answer comes without the body.
    let address = app.address.trim_start_matches("http://").to_owned();
    let request = format!(
        "POST /settings/profile/avatar HTTP/1.1\r\nHost: {address}\r\nAccept: application/json\r\n\
         Cookie: __Host-folio_session={}\r\n\
         Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {}\r\n\r\n--x\r\n",
        cookie.token().unwrap(),
        9 * 1024 * 1024
    );
    let started = Instant::now();
    let status = app.raw_status(request.as_bytes()).await;
    assert_eq!(status, Some(413));
    assert!(started.elapsed() < Duration::from_secs(5));

    // Sent in full, without a declared length (chunked): refused at the limit.
    let big = vec![0xffu8; 9 * 1024 * 1024];
    let (content_type, body) = crate::support::multipart("avatar", "big.jpg", "image/jpeg", &big);
    let stream = futures::stream::iter(
        body.chunks(64 * 1024)
            .map(|chunk| Ok::<_, std::io::Error>(chunk.to_vec()))
            .collect::<Vec<_>>(),
    );
    let response = app
        .client
        .post(app.url("/settings/profile/avatar"))
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .header(reqwest::header::ACCEPT, "application/json")
        .header(
            reqwest::header::COOKIE,
            format!("__Host-folio_session={}", cookie.token().unwrap()),
        )
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    if let Ok(response) = response {
        let (status, message) = refusal(response).await;
        assert_eq!(status, 413);
        assert!(message.contains("larger than 8 MB"), "{message}");
    }
    assert!(app.media_files().await.is_empty());
    assert_eq!(
        app.labelled_metric("folio_avatar_uploads_total", r#"result="too_large""#)
            .await,
        2
    );
}

#[tokio::test]
async fn without_javascript_the_form_redirects_back_with_the_result() {
    let app = spawn_app().await;
    let cookie = app.register("ada").await;

    let response = app
        .upload_avatar_as(
            &cookie,
            "x.heic",
            "image/heic",
            b"\0\0\0\x18ftypheic\0\0\0\0",
            "text/html",
        )
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()["location"],
        "/settings/profile?avatar_error=heic"
    );
    let (status, page) = app
        .page("/settings/profile?avatar_error=heic", &cookie)
        .await;
    assert_eq!(status, 200);
    assert!(
        page.contains("HEIC photos are not supported"),
        "error shown next to the field"
    );

    let response = app
        .upload_avatar_as(
            &cookie,
            "me.jpg",
            "image/jpeg",
            &jpeg(&halves(120, 80)),
            "text/html",
        )
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()["location"],
        "/settings/profile?avatar=saved"
    );
    let (_, page) = app.page("/u/ada", &Cookie::default()).await;
    let (_, profile) = app.get_profile("ada").await;
    let key = key_of(&profile);
    assert!(
        page.contains(&format!(r#"src="/media/{key}-128.webp""#))
            && page.contains(&format!("/media/{key}-256.webp 256w"))
            && page.contains(r#"width="96""#)
            && page.contains(r#"alt="Avatar of ada""#),
        "{page}"
    );

    // Signed out: to the sign-in page, nothing stored.
    let before = app.media_files().await;
    let response = app
        .upload_avatar_as(
            &Cookie::default(),
            "me.jpg",
            "image/jpeg",
            &jpeg(&halves(50, 50)),
            "text/html",
        )
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/signin");
    assert_eq!(app.media_files().await, before);
}

#[tokio::test]
async fn uploads_need_a_session_a_same_site_origin_and_a_quota() {
    let app = spawn_app_with(|s| s.service.avatar_uploads_per_user = Limit::new(2, 60)).await;
    let cookie = app.register("ada").await;
    let picture = jpeg(&halves(64, 64));

    let response = app.upload_avatar(&Cookie::default(), &picture).await;
    assert_eq!(response.status(), 401);
    let (content_type, body) = crate::support::multipart("avatar", "a.jpg", "image/jpeg", &picture);
    let response = app
        .client
        .post(app.url("/settings/profile/avatar"))
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .header("sec-fetch-site", "cross-site")
        .header(
            reqwest::header::COOKIE,
            format!("__Host-folio_session={}", cookie.token().unwrap()),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);

    upload_ok(&app, &cookie, &picture).await;
    upload_ok(&app, &cookie, &picture).await;
    let response = app.upload_avatar(&cookie, &picture).await;
    assert_eq!(response.status(), 429);
}

#[tokio::test]
async fn files_are_served_like_a_cdn_would_keep_them() {
    let app = spawn_app().await;
    let cookie = app.register("ada").await;
    let key = key_of(&upload_ok(&app, &cookie, &jpeg(&halves(300, 300))).await);
    let url = app.url(&format!("/media/{key}-64.webp"));

    let response = app.client.get(&url).send().await.unwrap();

    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "image/webp");
    assert_eq!(
        headers["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["etag"], format!("\"{key}-64\""));
    assert_eq!(
        headers["content-disposition"],
        "inline; filename=\"avatar-64.webp\""
    );
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("sandbox"));
    let bytes = response.bytes().await.unwrap();
    assert_eq!(decoded(&bytes).dimensions(), (64, 64));

    let again = app
        .client
        .get(&url)
        .header("if-none-match", format!("\"{key}-64\""))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);

    for missing in [
        format!("/media/{}-64.webp", "0".repeat(64)),
        format!("/media/{key}-65.webp"),
        "/media/..%2f..%2fCargo.toml".to_owned(),
        format!("/media/{key}-64.png"),
    ] {
        let response = app.client.get(app.url(&missing)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{missing}");
    }
}

fn with_workers(settings: &mut server::config::Settings) {
    settings.event_workers = true;
    settings.service.events.lease = Duration::from_secs(2);
}

#[tokio::test]
async fn a_picture_is_stored_once_and_deleted_when_nobody_shows_it() {
    let app = spawn_app_with(with_workers).await;
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let shared = jpeg(&halves(400, 300));
    let other = png_rgba(200, 200);

    let key = key_of(&upload_ok(&app, &ada, &shared).await);
    assert_eq!(key_of(&upload_ok(&app, &bob, &shared).await), key);
    assert_eq!(
        app.media_files().await.len(),
        3,
        "the same picture twice is stored once"
    );

    // Ada moves on; Bob still shows the picture: it stays.
    let newer = key_of(&upload_ok(&app, &ada, &other).await);
    wait_for(
        "ada's release is processed",
        Duration::from_secs(60),
        || async { processed(&app, "media").await >= 1 },
    )
    .await;
    let files = app.media_files().await;
    assert_eq!(files.len(), 6, "{files:?}");

    // Bob removes it: nobody shows it, it goes.
    let response = app.call("remove_avatar", &[], &bob).await;
    assert_eq!(response.status(), 200);
    wait_for(
        "the shared picture is deleted",
        Duration::from_secs(60),
        || async {
            !app.media_files()
                .await
                .iter()
                .any(|name| name.starts_with(&key))
        },
    )
    .await;
    let files = app.media_files().await;
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(files.iter().all(|name| name.starts_with(&newer)));
    let (_, profile) = app.get_profile("bob").await;
    assert!(profile.get("avatar").is_none());

    // Both releases are in the outbox, and a second run changes nothing.
    let collected = app.state.media.store.names().await.unwrap();
    let mut tx = app.state.db.begin().await.unwrap();
    let old = app::domain::AvatarKey::parse(&key).unwrap();
    assert!(
        app::ssr::media::collect(&mut tx, &app.state.media.store, &old)
            .await
            .unwrap()
    );
    let current = app::domain::AvatarKey::parse(&newer).unwrap();
    assert!(
        !app::ssr::media::collect(&mut tx, &app.state.media.store, &current)
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    assert_eq!(app.media_files().await, collected);
}

async fn processed(app: &TestApp, consumer: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM processed_events WHERE consumer = $1")
        .bind(consumer)
        .fetch_one(app.state.db.primary())
        .await
        .unwrap()
}

/// The store's whole life, on whatever store `app` has.
async fn store_round_trip(app: &TestApp) {
    let cookie = app.register("ada").await;
    let key = key_of(&upload_ok(app, &cookie, &jpeg(&halves(320, 240))).await);
    assert_eq!(app.media_files().await.len(), 3);
    let response = app
        .client
        .get(app.url(&format!("/media/{key}-256.webp")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        decoded(&response.bytes().await.unwrap()).dimensions(),
        (256, 256)
    );
    let name = format!("{key}-256.webp");
    assert!(
        !app.state
            .media
            .store
            .put_if_absent(&name, vec![1])
            .await
            .unwrap(),
        "not rewritten"
    );
    for size in [64, 128, 256] {
        app.state
            .media
            .store
            .delete(&format!("{key}-{size}.webp"))
            .await
            .unwrap();
    }
    app.state.media.store.delete(&name).await.unwrap();
    assert!(app.media_files().await.is_empty());
    let response = app
        .client
        .get(app.url(&format!("/media/{key}-256.webp")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn the_store_works_on_a_directory() {
    let app = spawn_app().await;
    store_round_trip(&app).await;
}

#[tokio::test]
async fn the_store_works_on_s3() {
    let moto = MotoProcess::start();
    moto.create_bucket("folio-avatars").await;
    let endpoint = moto.endpoint();
    let app = spawn_app_with(|s| {
        s.service.media = MediaStoreConfig::S3 {
            bucket: "folio-avatars".to_owned(),
            prefix: "test".to_owned(),
            endpoint: Some(endpoint),
            region: "us-east-1".to_owned(),
            access_key_id: Some("testing".to_owned()),
            secret_access_key: Some("testing".to_owned()),
        };
    })
    .await;
    store_round_trip(&app).await;
}

/// Issue 23, item 2: `image` checks `Limits::max_alloc` only in
/// `ImageReader::decode()`, so a 510 KB PNG of 8192 × 8192 16-bit pixels
/// made the upload allocate its 512 MiB and a 256 MiB 8-bit copy. Four at
/// once are refused from their headers, and the server (a process of its
/// own, so that its peak is its own) never grows near a decoded picture.
#[tokio::test]
async fn four_concurrent_small_pngs_of_512_mib_are_refused_within_300_mib() {
    let app = spawn_app().await;
    let cookie = app.register("ada").await;
    let bomb = crate::support::deep_png(8192);
    assert!(bomb.len() < 1024 * 1024, "{} bytes", bomb.len());
    let server = app.spawn_server_process();
    server.ready().await;
    let url = server.url("/settings/profile/avatar");
    let baseline = server.peak_rss_mib();

    let (form_type, body) = crate::support::multipart("avatar", "bomb.png", "image/png", &bomb);
    let answers = futures::future::join_all((0..4).map(|_| async {
        // A failed request is an answer too: the peak is measured anyway.
        let sent = app
            .client
            .post(&url)
            .header("content-type", &form_type)
            .header("accept", "application/json")
            .header(
                "cookie",
                format!("__Host-folio_session={}", cookie.token().unwrap()),
            )
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                let text = response.text().await.unwrap_or_default();
                (status, serde_json::from_str(&text).unwrap_or_default())
            }
            Err(error) => (0, serde_json::Value::String(error.to_string())),
        }
    }))
    .await;
    let peak = server.peak_rss_mib();

    let summary = format!(
        "peak RSS {peak:.0} MiB (before the uploads {baseline:.0} MiB); answers {:?}",
        answers
            .iter()
            .map(|(status, body)| format!("{status} {body}"))
            .collect::<Vec<_>>()
    );
    eprintln!("{summary}");
    assert!(peak < 300.0, "{summary}");
    for (status, body) in &answers {
        assert_eq!(*status, 422, "{summary}");
        let message = body["Validation"]["avatar"].as_str().unwrap_or_default();
        assert!(message.contains("too large"), "{summary}");
    }
    assert!(app.media_files().await.is_empty());
}

/// Issue 23, item 2: the processing queue is bounded by bytes, not only by
/// cores. Two large pictures (7000 × 7000 RGB, 140 MiB decoded each, 145
/// reserved) arrive at once on a server with two cores: within the default
/// 256 MiB budget they are decoded one after the other, so the server never
/// holds both. `budget_mib` set to 512 lets both in at once, which is what
/// the test catches.
async fn two_large_pictures_at_once(budget_mib: &str) -> (f64, Vec<u16>) {
    let app = spawn_app().await;
    let cookie = app.register("ada").await;
    let picture = crate::support::wide_png(7000);
    let server = app.spawn_server_process_with(&[("FOLIO_AVATAR_MEMORY_MIB", budget_mib)]);
    server.ready().await;
    let url = server.url("/settings/profile/avatar");
    let (form_type, body) = crate::support::multipart("avatar", "wide.png", "image/png", &picture);
    // Decoding such a picture takes a debug server on a busy machine more
    // than the 30 s of the usual client.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let statuses = futures::future::join_all((0..2).map(|_| async {
        client
            .post(&url)
            .header("content-type", &form_type)
            .header("accept", "application/json")
            .header(
                "cookie",
                format!("__Host-folio_session={}", cookie.token().unwrap()),
            )
            .body(body.clone())
            .send()
            .await
            .expect("answered")
            .status()
            .as_u16()
    }))
    .await;
    (server.peak_rss_mib(), statuses)
}

#[tokio::test]
async fn two_large_pictures_at_once_are_decoded_one_after_the_other() {
    let (peak, statuses) = two_large_pictures_at_once("256").await;
    eprintln!("budget 256 MiB: peak RSS {peak:.0} MiB, answers {statuses:?}");
    // The second waits for the first's memory: it is then decoded (200),
    // or, on a machine so busy that the first takes more than the queue's
    // 10 s, told the server is busy (503). Either way never both at once.
    assert!(statuses.contains(&200), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| [200, 503].contains(s)),
        "{statuses:?}"
    );
    // A decode was measured, and only one.
    assert!(peak > 150.0 && peak < 300.0, "peak RSS {peak:.0} MiB");
}

#[tokio::test]
#[ignore = "shows the test above can fail: run with --ignored"]
async fn with_room_for_both_two_large_pictures_pass_300_mib() {
    let (peak, statuses) = two_large_pictures_at_once("512").await;
    eprintln!("budget 512 MiB: peak RSS {peak:.0} MiB, answers {statuses:?}");
    assert_eq!(statuses, [200, 200]);
    assert!(peak > 300.0, "peak RSS {peak:.0} MiB");
}

/// Issue 23, item 2: a user out of uploads is told so before the server
/// reads (and buffers) up to 8 MB of body.
#[tokio::test]
async fn the_upload_limit_answers_before_the_body_is_read() {
    let app = spawn_app_with(|s| s.service.avatar_uploads_per_user = Limit::new(1, 3600)).await;
    let cookie = app.register("ada").await;
    upload_ok(&app, &cookie, &jpeg(&halves(64, 64))).await;

    // A body of 1 MB declared, a few bytes of it sent.
    let address = app.address.trim_start_matches("http://").to_owned();
    let request = format!(
        "POST /settings/profile/avatar HTTP/1.1\r\nHost: {address}\r\nAccept: application/json\r\n\
         Cookie: __Host-folio_session={}\r\n\
         Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {}\r\n\r\n--x\r\n",
        cookie.token().unwrap(),
        1024 * 1024
    );
    let started = Instant::now();
    let status = app.raw_status(request.as_bytes()).await;

    assert_eq!(status, Some(429), "after {:?}", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}
