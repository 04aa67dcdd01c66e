//! Secrets never reach the logs (ASVS 7.1.1). A test binary of its own: it
//! installs the process-wide tracing subscriber, at the most verbose level.

mod support;

use std::time::Duration;

use server::config::MailTransport;
use support::{
    session_cookie_from, spawn_app, spawn_app_with, wait_for, Cookie, LogCapture, STRONG_PASSWORD,
};

#[tokio::test]
async fn passwords_and_session_tokens_are_never_logged() {
    let capture = LogCapture::install();
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
