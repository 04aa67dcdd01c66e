//! A handler's panic is contained (a 500, the server serves on), counted in
//! `/metrics`, and logged once per panic without flooding. A test binary of
//! its own: it installs the process-wide tracing subscriber and panic hook.

mod support;

use support::{count_panics, spawn_app_with, LogCapture};

/// Panic events in the log, and how many of them carry a backtrace.
fn panic_events(log: &str) -> (usize, usize) {
    let events = log.matches("panic.message=").count();
    // A captured backtrace numbers its frames from 0.
    let backtraces = log.matches("   0: ").count();
    (events, backtraces)
}

#[tokio::test]
async fn a_panicking_handler_is_a_counted_500_logged_without_flooding() {
    let capture = LogCapture::install();
    let panics = count_panics();
    // The first panic at a place gets a backtrace when the environment asks
    // for one, as an operator investigating would.
    std::env::set_var("RUST_BACKTRACE", "1");
    let app = spawn_app_with(|s| s.panic_routes = true).await;

    let page = app.client.get(app.url("/test/panic")).send().await.unwrap();
    assert_eq!(page.status(), 500);
    assert!(page.headers().contains_key("x-request-id"));
    let text = page.text().await.unwrap();
    assert!(text.contains("Something went wrong on our side"), "{text}");
    assert!(
        !text.contains("on purpose"),
        "the panic message is not sent: {text}"
    );

    // A server function's caller gets the error its client can decode.
    let api = app
        .client
        .post(app.url("/api/test_panic"))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 500);
    assert_eq!(api.text().await.unwrap(), r#""Internal""#);
    assert_eq!(app.metric("folio_panics_total").await, 2);
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "the server serves on"
    );

    let log = capture.text();
    let (events, backtraces) = panic_events(&log);
    assert_eq!(events, 2, "each panic logged once:\n{log}");
    assert_eq!(
        backtraces, 1,
        "a backtrace for the first panic at a place only:\n{log}"
    );
    assert!(
        log.contains(r#"panic.place="server/src/panics.rs"#),
        "{log}"
    );
    assert!(
        !log.contains("request failed"),
        "the edge does not log the panic a second time:\n{log}"
    );
    let request_id_logged = log
        .lines()
        .filter(|l| l.contains("panic.message="))
        .all(|l| l.contains("request_id="));
    assert!(request_id_logged, "logged in the request's span:\n{log}");

    // A client that can make Folio panic cannot fill the disk with it.
    let flood: Vec<_> = (0..200)
        .map(|_| app.client.get(app.url("/test/panic")).send())
        .collect();
    for response in futures::future::join_all(flood).await {
        assert_eq!(response.unwrap().status(), 500);
    }
    assert_eq!(
        app.metric("folio_panics_total").await,
        202,
        "every one counted"
    );
    assert_eq!(panics.load(std::sync::atomic::Ordering::SeqCst), 202);
    let (events, backtraces) = panic_events(&capture.text());
    assert_eq!(events, 10, "at most ten panic events a minute");
    assert_eq!(backtraces, 1);
}
