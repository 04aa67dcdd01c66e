//! Secrets never reach the logs (ASVS 7.1.1). A test binary of its own: it
//! installs the process-wide tracing subscriber, at the most verbose level.

mod support;

use std::time::Duration;

use app::ssr::Limit;
use server::config::MailTransport;
use support::{
    session_cookie_from, sha256_hex, spawn_app, spawn_app_with, wait_for, Cookie, LogCapture,
    STRONG_PASSWORD,
};

/// The process-wide capture, installed by whichever test asks first.
fn capture() -> &'static LogCapture {
    static CAPTURE: std::sync::OnceLock<LogCapture> = std::sync::OnceLock::new();
    CAPTURE.get_or_init(LogCapture::install)
}

#[tokio::test]
async fn passwords_and_session_tokens_are_never_logged() {
    let capture = capture();
    let app = spawn_app().await;

    let registered = app.register("alice").await;
    let login = app.login("alice", STRONG_PASSWORD).await;
    assert_eq!(login.status(), 200);
    let signed_in = session_cookie_from(&login).expect("login sets a cookie");
    let wrong = "a-wrong-but-long-password-77";
    assert_eq!(app.login("alice", wrong).await.status(), 401);
    assert_eq!(app.whoami(&registered).await.as_deref(), Some("alice"));

    let log = capture.text();
    assert!(
        log.contains("signed in") && log.contains("login failed"),
        "the app's own events are captured:\n{log}"
    );
    for secret in [
        STRONG_PASSWORD,
        wrong,
        registered.token().unwrap(),
        &signed_in,
    ] {
        assert!(!log.contains(secret), "secret {secret} found in the log");
    }
    // Nor the url-encoded form of a password.
    assert!(
        !log.contains("violet-kettle"),
        "password fragment in the log"
    );

    // A reset link's token is mailed (here to the development mailbox, the
    // consumer's whole path) and never logged.
    let mailing = spawn_app_with(|s| {
        s.mail = MailTransport::DevMailbox;
        s.event_workers = true;
    })
    .await;
    mailing.register("bob").await;
    let asked = mailing
        .call(
            "request_password_reset",
            &[("email", "bob@example.com")],
            &Cookie::default(),
        )
        .await;
    assert_eq!(asked.status(), 200);
    let token = std::sync::Mutex::new(String::new());
    wait_for("the reset mail", Duration::from_secs(15), || {
        let mailing = &mailing;
        let token = &token;
        async move {
            let (_, page) = mailing.page("/dev/mailbox", &Cookie::default()).await;
            match page.split("/reset?token=").nth(1) {
                Some(rest) if rest.len() >= 64 => {
                    *token.lock().unwrap() = rest[..64].to_owned();
                    true
                }
                _ => false,
            }
        }
    })
    .await;
    let token = token.into_inner().unwrap();
    assert_eq!(token.len(), 64);
    assert!(!capture.text().contains(&token), "a reset token in the log");
}

/// The lines of the log that contain every one of `words`.
fn lines_with(log: &str, words: &[&str]) -> Vec<String> {
    log.lines()
        .filter(|line| words.iter().all(|w| line.contains(w)))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn security_refusals_say_who_and_from_where() {
    let capture = capture();
    let app = spawn_app_with(|s| {
        s.service.login_failures_per_account = Limit::new(2, 900);
        s.service.login_failures_per_device = Limit::new(2, 900);
    })
    .await;
    let registered = app.try_register("zelda").await;
    assert_eq!(registered.status(), 200);
    let session = Cookie(session_cookie_from(&registered));
    let user_id: i64 = sqlx::query_scalar("SELECT id FROM users WHERE username = 'zelda'")
        .fetch_one(app.state.db.primary())
        .await
        .unwrap();
    let account = format!("user_id={user_id}");
    let subject = format!("user:{user_id}");
    let client = "client=127.0.0.1";

    // A failed sign-in to an account, and to no account: the account, or a
    // hash of what was typed (never the identifier itself).
    let wrong = "a-wrong-but-long-password-78";
    assert_eq!(app.login("zelda", wrong).await.status(), 401);
    let typed = "nobody-here@example.org";
    assert_eq!(app.login(typed, wrong).await.status(), 401);
    // A failed re-authentication.
    let reauth = app
        .call("delete_account", &[("password", wrong)], &session)
        .await;
    assert_eq!(reauth.status(), 422);
    // A rate-limit refusal: the account is locked for strangers.
    assert_eq!(app.login("zelda", wrong).await.status(), 401);
    assert_eq!(app.login("zelda", wrong).await.status(), 429);
    // A device locked by its own wrong passwords.
    let device = registered
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("__Host-folio_device="))
        .map(|v| v.split(';').next().unwrap_or("").to_owned())
        .expect("a device cookie");
    let on_device = || {
        app.client
            .post(app.url("/api/login"))
            .form(&[("identifier", "zelda"), ("password", wrong)])
            .header(
                reqwest::header::COOKIE,
                format!("__Host-folio_device={device}"),
            )
            .send()
    };
    assert_eq!(on_device().await.unwrap().status(), 401);
    assert_eq!(on_device().await.unwrap().status(), 401);
    assert_eq!(on_device().await.unwrap().status(), 429);
    // A cross-site write, through the signed-in user's browser.
    let forged = app
        .client
        .post(app.url("/api/logout"))
        .header("sec-fetch-site", "cross-site")
        .header(
            reqwest::header::COOKIE,
            format!("__Host-folio_session={}", session.token().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);

    let log = capture.text();
    let hashed = &sha256_hex(typed)[..16];
    for (what, words) in [
        (
            "failed sign-in",
            vec!["login failed", client, account.as_str()],
        ),
        (
            "failed sign-in, no account",
            vec!["login failed", client, hashed],
        ),
        (
            "failed re-authentication",
            vec!["re-authentication failed", client, account.as_str()],
        ),
        (
            "rate-limit refusal",
            vec![
                "rate limit refused",
                client,
                "login:account",
                subject.as_str(),
            ],
        ),
        (
            "device lockout",
            vec!["device locked", client, account.as_str()],
        ),
        (
            "cross-site refusal",
            vec!["cross-site request refused", client, account.as_str()],
        ),
    ] {
        assert!(
            !lines_with(&log, &words).is_empty(),
            "no {what} line with {words:?} in:\n{log}"
        );
    }
    assert!(!log.contains(typed), "the typed identifier is in the log");
}
