use crate::helpers::spawn_app;

#[tokio::test]
async fn healthz_answers_ok() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn readyz_reports_both_dependencies() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["postgres"], "ok");
    assert_eq!(body["redis"], "ok");
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
    async fn count(app: &crate::helpers::TestApp) -> i64 {
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
