//! Malformed requests are the client's mistake: a typed 400 (415 for a body
//! that is not a form), never a 500, never the deserializer's words, and
//! counted per route. (The request fuzzer, `tests/fuzz/`, sends thousands
//! of them; these are the cases spelled out.)

use sqlx::Connection;

use crate::support::{spawn_app, status_and_json, Cookie, STRONG_PASSWORD};

const FORM: &str = "application/x-www-form-urlencoded";

/// Words of serde's and server_fn's messages, which describe our argument
/// types to whoever sent the request.
fn repeats_the_deserializer(body: &str) -> bool {
    [
        "missing field",
        "deserializ",
        "invalid type",
        "invalid digit",
        "too large",
        "invalid utf-8",
    ]
    .iter()
    .any(|words| body.to_lowercase().contains(words))
}

#[tokio::test]
async fn undecodable_arguments_are_a_typed_400_counted_per_function() {
    let app = spawn_app().await;
    let cookie = app.register("ada").await;
    let post = |function: &str, body: Vec<u8>, cookie: &Cookie| {
        let mut request = app
            .client
            .post(app.url(&format!("/api/{function}")))
            .header("content-type", FORM)
            .body(body);
        if let Some(token) = cookie.token() {
            request = request.header("cookie", format!("__Host-folio_session={token}"));
        }
        request.send()
    };
    let anonymous = Cookie::default();

    let register_bodies: [&[u8]; 6] = [
        b"",
        b"username=grace&password=violet-kettle-harbour-93",
        b"username[]=a&username[]=b&email=g%40example.com&password=x",
        b"username=grace&email[x]=g%40example.com&password=x",
        b"%ff=%fe",
        // Not UTF-8 at all.
        b"username=gr\xffce&email=g%40example.com&password=violet-kettle-harbour-93",
    ];
    for body in register_bodies {
        let response = post("register", body.to_vec(), &anonymous).await.unwrap();
        assert_eq!(
            response.status(),
            400,
            "{:?}",
            String::from_utf8_lossy(body)
        );
        let text = response.text().await.unwrap();
        assert_eq!(text, r#""BadRequest""#);
    }
    let version = format!(
        "display_name=Ada&bio=&avatar_url=&location=&website=&expected_version={}",
        i64::from(i32::MAX) + 1
    );
    let response = post("update_profile", version.into_bytes(), &cookie)
        .await
        .unwrap();
    let (status, body) = status_and_json(response).await;
    assert_eq!((status, body), (400, serde_json::json!("BadRequest")));

    assert_eq!(
        app.labelled_metric("folio_bad_requests_total", r#"route="/api/register""#)
            .await,
        6
    );
    assert_eq!(
        app.labelled_metric("folio_bad_requests_total", r#"route="/api/update_profile""#)
            .await,
        1
    );
    let (_, profile) = app.get_profile("ada").await;
    assert_eq!(profile["version"], 1, "nothing was saved");
}

#[tokio::test]
async fn bodies_that_are_not_forms_are_415_and_nothing_runs() {
    let app = spawn_app().await;
    let cookie = app.register("ada").await;
    let json = serde_json::json!({"identifier": "ada", "password": STRONG_PASSWORD});

    let login = app
        .client
        .post(app.url("/api/login"))
        .json(&json)
        .send()
        .await
        .unwrap();
    let (status, body) = status_and_json(login).await;
    assert_eq!(
        (status, body),
        (415, serde_json::json!("UnsupportedMediaType"))
    );

    // A function without arguments would decode from any body at all.
    let logout = app
        .client
        .post(app.url("/api/logout"))
        .header("content-type", "application/json")
        .header(
            "cookie",
            format!("__Host-folio_session={}", cookie.token().unwrap()),
        )
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 415);
    assert_eq!(
        app.whoami(&cookie).await.as_deref(),
        Some("ada"),
        "still signed in"
    );

    // Fields that would decode, in a body that says it is text.
    let text = app
        .client
        .post(app.url("/api/register"))
        .header("content-type", "text/plain")
        .body(format!(
            "username=grace&email=grace%40example.com&password={STRONG_PASSWORD}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(text.status(), 415);
    assert_eq!(app.get_profile("grace").await.0, 404, "no account was made");

    // The form's own encodings, with parameters, pass.
    let charset = app
        .client
        .post(app.url("/api/update_profile"))
        .header(
            "content-type",
            "Application/X-WWW-Form-Urlencoded; charset=UTF-8",
        )
        .header(
            "cookie",
            format!("__Host-folio_session={}", cookie.token().unwrap()),
        )
        .body("display_name=Ada&bio=&avatar_url=&location=&website=&expected_version=1")
        .send()
        .await
        .unwrap();
    assert_eq!(charset.status(), 200);
    assert_eq!(
        app.labelled_metric("folio_bad_requests_total", r#"route="/api/logout""#)
            .await,
        1
    );
}

#[tokio::test]
async fn a_plain_form_post_that_does_not_decode_comes_back_to_its_page_with_the_error() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/api/register"))
        .header("content-type", FORM)
        .header("accept", "text/html,application/xhtml+xml")
        .header("referer", app.url("/signup"))
        .body("username=grace")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/signup?"), "{location}");
    assert!(location.contains("__path=%2Fapi%2Fregister"), "{location}");

    let page = app.client.get(app.url(&location)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("This request could not be read"),
        "the sign-up page shows the error"
    );
    assert!(!repeats_the_deserializer(&html));
    assert_eq!(
        app.labelled_metric("folio_bad_requests_total", r#"route="/api/register""#)
            .await,
        1
    );
}

#[tokio::test]
async fn paths_and_queries_that_are_not_utf8_are_refused_before_the_router() {
    let app = spawn_app().await;
    app.register("zoe").await;
    for target in ["/u/%ff%fe", "/u/%C0%AF", "/signin?next=%E2%9C", "/%ff"] {
        let response = app.client.get(app.url(target)).send().await.unwrap();
        assert_eq!(response.status(), 400, "{target}");
    }
    let valid = app.client.get(app.url("/u/zo%C3%AB")).send().await.unwrap();
    assert_eq!(valid.status(), 404, "a UTF-8 name that is nobody's");
    let zoe = app
        .client
        .get(app.url("/u/%7A%6F%65"))
        .send()
        .await
        .unwrap();
    assert_eq!(zoe.status(), 200);

    // A target that is not a path reached the 404 page's renderer, which
    // panicked on it.
    let connect = app
        .raw_status(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        .await;
    assert_eq!(connect, Some(400));
    let raw = app
        .raw_status(b"GET /u/\xff\xfe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    assert!(matches!(raw, Some(400..=499)), "{raw:?}");

    assert_eq!(
        app.labelled_metric("folio_bad_requests_total", r#"route="/u/{username}""#)
            .await,
        2
    );
    assert_eq!(app.metric("folio_panics_total").await, 0);
}

#[tokio::test]
async fn a_body_that_never_comes_is_the_clients_mistake_not_a_503() {
    let app = spawn_app().await;
    let started = std::time::Instant::now();
    let status = app
        .raw_status(
            b"POST /api/login HTTP/1.1\r\nHost: x\r\n\
              Content-Type: application/x-www-form-urlencoded\r\n\
              Content-Length: 100\r\nConnection: close\r\n\r\nidentifier=ada",
        )
        .await;
    assert_eq!(status, Some(400), "after {:?}", started.elapsed());
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
}

#[test]
fn the_deserializer_check_recognises_its_words() {
    assert!(repeats_the_deserializer(
        "error deserializing server function arguments: missing field `email`"
    ));
    assert!(!repeats_the_deserializer(r#""BadRequest""#));
}

/// `users.email` must equal Postgres's `lower()` of itself, and the parser
/// lower-cases with Rust's: were the two to disagree on a character, a
/// sign-up with it would pass the parser and fail the CHECK, a 500. Every
/// character (not a sample), in the local part and in the domain.
#[tokio::test]
async fn every_character_the_email_parser_keeps_is_lower_case_to_postgres_too() {
    let app = spawn_app().await;
    let kept: Vec<String> = (0..=0x10FFFFu32)
        .filter_map(char::from_u32)
        .flat_map(|c| [format!("a{c}b@example.com"), format!("ab@ex{c}ample.com")])
        .filter_map(|raw| app::domain::Email::parse(&raw).ok())
        .map(|email| email.as_str().to_owned())
        .collect();
    assert!(kept.len() > 100_000, "{}", kept.len());
    // A connection of its own: the app's pool cancels statements after 5 s,
    // which 200 000 rows may need while the other tests run.
    let mut db = sqlx::PgConnection::connect(&app.settings.database_url)
        .await
        .unwrap();
    let refused: Vec<String> = sqlx::query_scalar(
        "SELECT e FROM unnest($1::text[]) AS e WHERE lower(e) <> e OR length(e) > 254",
    )
    .bind(&kept)
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert!(refused.is_empty(), "the CHECK would refuse: {refused:?}");
}
