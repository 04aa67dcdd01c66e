//! What a reviewer found: a page cache poisonable through a second `Cookie`
//! line, attacker-written errors on the sign-in page, redirects to the
//! `Referer`'s site, a profile frozen by a dropped request, and the smaller
//! items (metrics in a release build, HSTS, the website's scheme, database
//! errors in logs). Each test here failed before its fix.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE;
use base64::Engine;
use server::config::MetricsAccess;

use crate::support::{spawn_app, spawn_app_with, Cookie, Edit, TestApp, PLAIN, SESSION_COOKIE};

const FORM: &str = "application/x-www-form-urlencoded";
const HTML: &str = "text/html,application/xhtml+xml";

/// A browser without JavaScript posting a form from `page`.
async fn plain_post(app: &TestApp, function: &str, body: &str, referer: &str) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/api/{function}")))
        .header("content-type", FORM)
        .header("accept", HTML)
        .header("referer", referer)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

fn location(response: &reqwest::Response) -> String {
    response.headers()["location"].to_str().unwrap().to_owned()
}

/// Issue 23, item 8: a hostile page that sends a signed-in browser to
/// `/account/export` (a link, a redirect, `window.open`) spent one of the
/// user's exports and dropped their data into Downloads. A navigation from
/// another site is refused before anything is counted; the account page's
/// own link (same-origin), a typed address (`none`) and a client that sends
/// no `Sec-Fetch-Site` download as before.
#[tokio::test]
async fn a_cross_site_navigation_to_the_export_is_refused_and_costs_no_export() {
    let app = spawn_app_with(|s| s.service.exports_per_user = app::ssr::Limit::new(3, 3600)).await;
    let cookie = app.register("ada").await;
    let export = |site: Option<&'static str>, accept: &'static str| {
        let mut request = app
            .client
            .get(app.url("/account/export"))
            .header("accept", accept)
            .header(
                "cookie",
                format!("{SESSION_COOKIE}={}", cookie.token().unwrap()),
            );
        if let Some(site) = site {
            request = request
                .header("sec-fetch-site", site)
                .header("sec-fetch-mode", "navigate");
        }
        request.send()
    };

    for _ in 0..5 {
        for site in ["cross-site", "same-site"] {
            let response = export(Some(site), HTML).await.unwrap();
            assert_eq!(response.status(), 403, "{site}");
            assert!(response.headers().get("content-disposition").is_none());
            assert!(response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"));
            let page = response.text().await.unwrap();
            assert!(page.to_lowercase().contains("another site"), "{page}");
            assert!(!page.contains("ada@example.com"), "{page}");
        }
    }
    let response = export(Some("cross-site"), "application/json")
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body, serde_json::json!("Forbidden"));

    // None of that was counted: all three downloads remain.
    for site in [Some("same-origin"), Some("none"), None] {
        let response = export(site, HTML).await.unwrap();
        assert_eq!(response.status(), 200, "{site:?}");
        let data: serde_json::Value = response.json().await.unwrap();
        assert_eq!(data["account"]["username"], "ada");
    }
    assert_eq!(
        export(Some("same-origin"), HTML).await.unwrap().status(),
        429
    );
}

#[tokio::test]
async fn a_session_cookie_on_a_second_cookie_line_never_reaches_the_shared_page_cache() {
    let app = spawn_app().await;
    app.register("ada").await;
    let bob = app.register("bob_reader").await;

    // A signed-in visit whose session cookie is on the second header line.
    let personal = app
        .client
        .get(app.url("/u/ada"))
        .header("cookie", "theme=dark")
        .header(
            "cookie",
            format!("{SESSION_COOKIE}={}", bob.token().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(personal.status(), 200);
    let personal = personal.text().await.unwrap();
    assert!(personal.contains("bob_reader"), "rendered as signed in");

    let (status, anonymous) = app.page("/u/ada", &Cookie::default()).await;
    assert_eq!(status, 200);
    assert!(
        !anonymous.contains("bob_reader") && !anonymous.contains("Sign out"),
        "an anonymous visitor got bob's page:\n{anonymous}"
    );
}

#[tokio::test]
async fn a_failed_plain_form_post_comes_back_to_its_own_page_with_a_sealed_error() {
    let app = spawn_app().await;
    let response = plain_post(
        &app,
        "login",
        "identifier=nobody&password=wrong-but-long-password",
        &app.url("/signin?next=%2Faccount"),
    )
    .await;

    assert_eq!(response.status(), 302);
    let target = location(&response);
    assert!(target.starts_with("/signin?next=%2Faccount&"), "{target}");
    assert!(target.contains("__sig="), "{target}");
    let page = app.client.get(app.url(&target)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Incorrect username, email or password."),
        "{html}"
    );
}

#[tokio::test]
async fn an_error_written_into_a_link_by_someone_else_is_never_shown() {
    let app = spawn_app().await;
    let forged =
        URL_SAFE.encode(r#"{"Validation":{"identifier":"Account locked, call +1 555 0100"}}"#);
    let link = format!("/signin?__path=%2Fapi%2Flogin&__err={forged}");

    let response = app.client.get(app.url(&link)).send().await.unwrap();

    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/signin");
    let (_, html) = app.page("/signin", &Cookie::default()).await;
    assert!(!html.contains("Account locked"));

    // A real sealed error, edited: refused too.
    let real = plain_post(
        &app,
        "login",
        "identifier=x&password=yyyyyyyyyyyy",
        &app.url("/signin"),
    )
    .await;
    let sealed = location(&real);
    let (_, err) = sealed.split_once("__err=").unwrap();
    let err = err.split('&').next().unwrap();
    let edited = sealed.replace(err, &forged);
    let response = app.client.get(app.url(&edited)).send().await.unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/signin");
}

#[tokio::test]
async fn a_forged_referer_never_sends_the_browser_to_another_site() {
    let app = spawn_app().await;
    for referer in [
        "https://evil.example/phish?x=1",
        "//evil.example/phish",
        "javascript:alert(1)",
    ] {
        let response = plain_post(
            &app,
            "login",
            "identifier=nobody&password=wrong-but-long-password",
            referer,
        )
        .await;
        let target = location(&response);
        assert!(
            target.starts_with('/') && !target.starts_with("//") && !target.contains("evil"),
            "{referer} -> {target}"
        );
    }
    // A success too (server_fn's redirect to the Referer when no page is named).
    let cookie = app.register("redirected").await;
    let response = app
        .client
        .post(app.url("/api/logout"))
        .header("content-type", FORM)
        .header("accept", HTML)
        .header("referer", "https://evil.example/after")
        .header(
            "cookie",
            format!("{SESSION_COOKIE}={}", cookie.token().unwrap()),
        )
        .send()
        .await
        .unwrap();
    let target = location(&response);
    assert!(
        target.starts_with('/') && !target.contains("evil"),
        "{target}"
    );
}

/// The in-process single flight of a profile miss: if the request that
/// started it goes away (client gone, timeout), the miss must not stay
/// stuck for everyone after it on this instance.
#[tokio::test]
async fn a_dropped_request_in_the_middle_of_a_miss_freezes_nothing() {
    let app = spawn_app().await;
    let cookie = app.register("frozen").await;
    // Every read of profiles waits behind this lock.
    let mut lock = app.state.db.primary().begin().await.unwrap();
    sqlx::query("LOCK TABLE profiles IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();

    // The leader: gives up after 300 ms, dropping its connection.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let leader = impatient
        .post(app.url("/api/get_profile"))
        .form(&[("username", "frozen")])
        .send()
        .await;
    assert!(leader.is_err(), "the leader was meant to time out");
    // A follower that waits.
    let follower = tokio::spawn({
        let client = app.client.clone();
        let url = app.url("/api/get_profile");
        async move {
            client
                .post(url)
                .form(&[("username", "frozen")])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    lock.rollback().await.unwrap();

    let follower = tokio::time::timeout(Duration::from_secs(10), follower)
        .await
        .expect("the follower is answered once the database is")
        .unwrap();
    assert_eq!(follower, 200);
    let edit = Edit {
        display_name: "Thawed",
        ..PLAIN
    };
    let (status, saved) = app.update_profile(&cookie, &edit, 1).await;
    assert_eq!(status, 200, "{saved}");
    let (status, profile) = app.get_profile("frozen").await;
    assert_eq!(status, 200);
    assert_eq!(profile["display_name"], "Thawed");
}

#[tokio::test]
async fn a_release_build_without_a_token_keeps_metrics_closed_and_tokens_compare_whole() {
    let closed = spawn_app_with(|s| s.metrics_access = MetricsAccess::Closed).await;
    let response = closed
        .client
        .get(closed.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);

    let guarded =
        spawn_app_with(|s| s.metrics_access = MetricsAccess::Token("s3cret".into())).await;
    for guess in ["s3cre", "s3cret!", "S3CRET", ""] {
        let response = guarded
            .client
            .get(guarded.url("/metrics"))
            .bearer_auth(guess)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{guess:?}");
    }
}

#[tokio::test]
async fn strict_transport_security_is_sent_only_when_configured() {
    let plain = spawn_app().await;
    let response = plain.client.get(plain.url("/")).send().await.unwrap();
    assert!(response
        .headers()
        .get("strict-transport-security")
        .is_none());

    let behind_tls = spawn_app_with(|s| s.hsts_max_age = Some(31_536_000)).await;
    for path in ["/", "/healthz", "/u/nobody"] {
        let response = behind_tls
            .client
            .get(behind_tls.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.headers()["strict-transport-security"],
            "max-age=31536000; includeSubDomains",
            "{path}"
        );
    }
}

#[tokio::test]
async fn the_database_refuses_a_website_that_is_not_http() {
    let app = spawn_app().await;
    app.register("linker").await;
    for website in [
        "javascript:alert(1)",
        "data:text/html,hi",
        "ftp://x.example",
    ] {
        let refused = sqlx::query(
            "UPDATE profiles SET website = $1
             WHERE user_id = (SELECT id FROM users WHERE username = 'linker')",
        )
        .bind(website)
        .execute(app.state.db.primary())
        .await
        .expect_err(website);
        let constraint = refused
            .as_database_error()
            .and_then(|e| e.constraint())
            .map(str::to_owned);
        assert_eq!(constraint.as_deref(), Some("profiles_website_scheme"));
    }
}

/// A constraint violation's DETAIL is "Failing row contains (…)": the row,
/// password hash included. What Folio logs of it is the error's own text.
#[tokio::test]
async fn a_database_error_is_described_without_the_rows_contents() {
    let app = spawn_app().await;
    let violation = sqlx::query(
        "INSERT INTO users (username, email, display_name, password_hash)
         VALUES ('Not-Lower', 'x@example.com', 'X', '$argon2id$secret-hash-material')",
    )
    .execute(app.state.db.primary())
    .await
    .expect_err("the username CHECK refuses it");
    let error = app::ssr::Error::from(violation);

    for text in [format!("{error}"), format!("{error:?}")] {
        assert!(!text.contains("secret-hash-material"), "{text}");
        assert!(!text.contains("Failing row"), "{text}");
        assert!(text.contains("23514"), "{text}");
    }
}
