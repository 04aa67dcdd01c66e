//! Secrets never reach the logs (ASVS 7.1.1). A test binary of its own: it
//! installs the process-wide tracing subscriber, at the most verbose level.

mod support;

use support::{session_cookie_from, spawn_app, LogCapture, STRONG_PASSWORD};

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
}
