use crate::support::{spawn_app, spawn_app_with};
use server::config::MetricsAccess;

#[tokio::test]
async fn healthz_answers_ok() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn readyz_says_only_the_overall_state() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    // The overall state only; each dependency is on `/metrics`.
    assert_eq!(body, serde_json::json!({ "status": "ok" }));
}

#[tokio::test]
async fn metrics_say_both_dependencies_answer() {
    let app = spawn_app().await;
    assert_eq!(app.dependency_up("postgres").await, 1);
    assert_eq!(app.dependency_up("redis").await, 1);
}

#[tokio::test]
async fn request_id_is_generated_or_propagated() {
    let app = spawn_app().await;
    let generated = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert!(generated.headers().get("x-request-id").is_some());
    let given = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "abc-123");
}

#[tokio::test]
async fn user_count_reads_postgres() {
    let app = spawn_app().await;
    async fn count(app: &crate::support::TestApp) -> i64 {
        app.call("count_users", &[], &Default::default())
            .await
            .json()
            .await
            .unwrap()
    }
    assert_eq!(count(&app).await, 0);
    app.register("first_user").await;
    assert_eq!(count(&app).await, 1);
}

#[tokio::test]
async fn unknown_path_is_a_404_page() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/no/such/page"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert!(response.text().await.unwrap().contains("Page not found"));
}

#[tokio::test]
async fn unreachable_postgres_stops_start_with_one_clear_line() {
    let mut settings = server::config::Settings::from_env().unwrap();
    settings.database_url = "postgres://postgres@127.0.0.1:1/folio".into();
    let error = server::startup::Application::build(settings)
        .await
        .err()
        .expect("start must fail");
    let line = error.to_string();
    assert!(
        line.contains("DATABASE_URL=postgres://postgres@127.0.0.1:1/folio"),
        "{line}"
    );
    assert!(!line.contains('\n'), "{line}");
}

#[tokio::test]
async fn an_invalid_replica_url_stops_start_with_one_clear_line() {
    let mut settings = server::config::Settings::from_env().unwrap();
    settings.database_replica_urls = vec!["postgres://u:secret@127.0.0.1:notaport/folio".into()];
    let error = server::startup::Application::build(settings)
        .await
        .err()
        .expect("start must fail");
    let line = error.to_string();
    assert!(line.contains("DATABASE_REPLICA_URLS"), "{line}");
    assert!(!line.contains("secret") && !line.contains('\n'), "{line}");
}

#[tokio::test]
async fn an_unreachable_replica_leaves_folio_ready_and_reading_from_the_primary() {
    let app = spawn_app_with(|s| {
        s.database_replica_urls = vec!["postgres://postgres@127.0.0.1:1/folio".into()];
    })
    .await;
    app.register("frank").await;

    assert_eq!(app.get_profile("frank").await.0, 200);

    let (status, ready) = app.readyz().await;
    assert_eq!(status, 200, "{ready}");
    // Issue 23, item 7: anyone may ask; only the state is said. Which
    // replica (host, port, database) is on `/metrics`.
    assert_eq!(ready, serde_json::json!({ "status": "degraded" }));
    assert!(!ready.to_string().contains("127.0.0.1"), "{ready}");
    assert_eq!(app.db_reads().await, (0, 1));
    assert_eq!(
        app.metric(r#"folio_replica_up{replica="127.0.0.1:1/folio"}"#)
            .await,
        0
    );
}

#[tokio::test]
async fn unreachable_redis_stops_start_with_one_clear_line() {
    let mut settings = server::config::Settings::from_env().unwrap();
    settings.redis_url = "redis://127.0.0.1:1".into();
    let error = server::startup::Application::build(settings)
        .await
        .err()
        .expect("start must fail");
    let line = error.to_string();
    assert!(line.contains("REDIS_URL=redis://127.0.0.1:1"), "{line}");
}

#[tokio::test]
async fn oversized_bodies_are_refused_before_any_work() {
    let app = spawn_app().await;
    let bio = "x".repeat(100 * 1024);
    let response = app
        .call(
            "login",
            &[("identifier", "someone"), ("password", &bio)],
            &Default::default(),
        )
        .await;
    assert_eq!(response.status(), 413);
}

#[tokio::test]
async fn metrics_count_requests_per_route_and_can_require_a_token() {
    let app = spawn_app_with(|s| s.metrics_access = MetricsAccess::Token("s3cret".into())).await;
    app.call("count_users", &[], &Default::default()).await;

    let anonymous = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let wrong = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let text = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("folio_http_requests_total{")
                && l.contains(r#"route="/api/count_users""#)),
        "{text}"
    );
    assert!(
        text.contains("folio_http_request_duration_seconds_bucket"),
        "{text}"
    );
}

#[tokio::test]
async fn responses_carry_security_headers_and_compress() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/signin"))
        .header("accept-encoding", "br")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    assert_eq!(headers["content-encoding"], "br");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["cache-control"], "no-store");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("'nonce-") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
}

#[tokio::test]
async fn unknown_methods_share_one_metrics_label() {
    let app = spawn_app().await;
    let method = reqwest::Method::from_bytes(b"FROBNICATE").unwrap();

    app.client
        .request(method, app.url("/healthz"))
        .send()
        .await
        .unwrap();

    let text = app.metrics_text().await;
    assert!(text.contains(r#"method="OTHER""#), "{text}");
    assert!(!text.contains("FROBNICATE"), "{text}");
}
