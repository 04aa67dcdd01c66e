//! Designing for failure: the app keeps answering what it can while
//! Redis or Postgres is down, says "Unavailable" (503) for the rest, and
//! recovers on its own when the dependency comes back, without a restart.
//! Every dependency stopped here is an instance of our own on a spare port;
//! the machine's Postgres and Redis are never touched.
//!
//! Also here: the per-IP limiter believes `X-Forwarded-For` only from a
//! trusted proxy.

mod support;

use std::time::{Duration, Instant};

use app::ssr::Limit;
use serde_json::Value;

use support::{
    eventually, session_cookie_from, spawn_app_with, status_and_json, Cookie, PostgresProcess,
    RedisProcess, TestApp, STRONG_PASSWORD,
};

fn port_answers(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(300))
        .is_ok()
}

// --- calls -----------------------------------------------------------------------

async fn update_display_name(app: &TestApp, cookie: &Cookie, name: &str) -> (u16, Value) {
    let form = [
        ("display_name", name),
        ("bio", ""),
        ("avatar_url", ""),
        ("location", ""),
        ("website", ""),
        ("expected_version", "1"),
    ];
    status_and_json(app.call("update_profile", &form, cookie).await).await
}

/// Limits that polling in these tests must never trip.
fn generous_limits(settings: &mut server::config::Settings) {
    settings.service.registrations_per_ip = Limit::new(1000, 3600);
    settings.service.login_failures_per_ip = Limit::new(1000, 900);
    settings.service.login_failures_per_account = Limit::new(1000, 900);
}

// --- Redis down ------------------------------------------------------------------

#[tokio::test]
async fn redis_down_reads_work_writes_say_unavailable_and_it_recovers() {
    let mut redis = RedisProcess::start();
    let url = redis.url();
    let app = spawn_app_with(|s| {
        s.redis_url = url;
        generous_limits(s);
    })
    .await;
    let cookie = app.register("frank").await;
    let (status, cached) = app.get_profile("frank").await;
    assert_eq!(status, 200);

    assert_eq!(app.dependency_up("redis").await, 1);

    redis.stop();
    assert!(!redis.answers_ping());

    // Public reads fall back to Postgres.
    let (status, profile) = app.get_profile("frank").await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(profile, cached);
    let page = app.client.get(app.url("/u/frank")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("frank"));

    // What needs Redis (limiter, sessions) says so, quickly and without detail.
    let started = Instant::now();
    let login = app.login("frank", STRONG_PASSWORD).await;
    assert_eq!(login.status(), 503);
    assert_eq!(login.text().await.unwrap(), r#""Unavailable""#);
    assert!(started.elapsed() < Duration::from_secs(10));
    let (status, body) = update_display_name(&app, &cookie, "Frank").await;
    assert_eq!((status, body), (503, Value::from("Unavailable")));

    let (status, ready) = app.readyz().await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["status"], "unavailable");
    // Which one, as Prometheus sees it (FolioRedisUnavailable). of the same (FolioRedisUnavailable).
    assert_eq!(app.dependency_up("redis").await, 0);
    assert_eq!(app.dependency_up("postgres").await, 1);

    // Redis comes back (empty): the same process recovers by itself.
    redis.restart();
    let took = eventually("login after Redis restart", || async {
        let response = app.login("frank", STRONG_PASSWORD).await;
        response.status() == 200 && session_cookie_from(&response).is_some()
    })
    .await;
    eprintln!("login worked again {took:?} after Redis restarted");
    eventually("/readyz after Redis restart", || async {
        app.readyz().await.0 == 200
    })
    .await;
    let (_, ready) = app.readyz().await;
    assert_eq!(ready["status"], "ok");
    assert_eq!(app.dependency_up("redis").await, 1);
}

// --- Postgres down ---------------------------------------------------------------

#[tokio::test]
async fn postgres_down_cached_reads_work_writes_say_unavailable_and_it_recovers() {
    let postgres = PostgresProcess::start();
    let database_url = postgres.url("folio");
    // The helper's Drop drops its own (never created) database on the main
    // Postgres: harmless. Ours goes with the temp cluster.
    let app = spawn_app_with(|s| {
        s.database_url = database_url;
        generous_limits(s);
        // No failover is coming for a single Postgres: unready at once
        // (the grace a Patroni failover gets is tested in tests/failover).
        s.service.primary_grace = Duration::ZERO;
    })
    .await;
    app.register("frank").await;
    let (status, cached) = app.get_profile("frank").await;
    assert_eq!(status, 200);

    assert_eq!(app.dependency_up("postgres").await, 1);

    postgres.stop();
    assert!(!port_answers(postgres.port));

    // Cached reads still answer.
    let (status, profile) = app.get_profile("frank").await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(profile, cached);

    // A write is refused as Unavailable (retry may help), within a bound.
    let started = Instant::now();
    let response = app.try_register("grace").await;
    let took = started.elapsed();
    let (status, body) = status_and_json(response).await;
    assert_eq!((status, body), (503, Value::from("Unavailable")));
    assert!(took < Duration::from_secs(10), "register took {took:?}");
    // Once more, now that the pool has no connection left to lose.
    let (status, body) = status_and_json(app.try_register("grace").await).await;
    assert_eq!((status, body), (503, Value::from("Unavailable")));

    let (status, ready) = app.readyz().await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["status"], "unavailable");
    // Which one, as Prometheus sees it of the same (FolioPostgresUnavailable).
    assert_eq!(app.dependency_up("postgres").await, 0);
    assert_eq!(app.dependency_up("redis").await, 1);

    postgres.pg_ctl_start();
    let took = eventually("register after Postgres restart", || async {
        let response = app.try_register("grace").await;
        let status = response.status();
        let text = response.text().await.unwrap();
        // Starting up (57P03) is a primary not yet taking writes.
        assert!(
            status == 200 || text == r#""Unavailable""# || text.contains("WritesPaused"),
            "while Postgres restarts: {status} {text}"
        );
        status == 200
    })
    .await;
    eprintln!("register worked again {took:?} after Postgres restarted");
    assert_eq!(app.readyz().await.0, 200);
    assert_eq!(app.dependency_up("postgres").await, 1);
    assert_eq!(app.get_profile("grace").await.0, 200);
}

/// A query waiting in Postgres when it shuts down ends with "terminating
/// connection due to administrator command" (SQLSTATE 57P01): that is the
/// primary going away (a switchover stops it so), so the typed "saving is
/// paused" (503 with its wait), not Internal (500).
#[tokio::test]
async fn a_query_in_flight_when_postgres_stops_is_unavailable() {
    use sqlx::{Connection, Executor};

    let postgres = PostgresProcess::start();
    let database_url = postgres.url("folio");
    let app = spawn_app_with(|s| s.database_url = database_url.clone()).await;
    let cookie = app.register("frank").await;

    // Hold frank's profile row, so that his save waits inside Postgres.
    let mut blocker = sqlx::PgConnection::connect(&database_url).await.unwrap();
    blocker.execute("BEGIN").await.unwrap();
    blocker
        .execute(
            "SELECT 1 FROM profiles p JOIN users u ON u.id = p.user_id
             WHERE u.username = 'frank' FOR UPDATE OF p",
        )
        .await
        .unwrap();
    let save = {
        let app_url = app.url("/api/update_profile");
        let client = app.client.clone();
        let token = cookie.token().unwrap().to_owned();
        tokio::spawn(async move {
            let form = [
                ("display_name", "Frank"),
                ("bio", ""),
                ("avatar_url", ""),
                ("location", ""),
                ("website", ""),
                ("expected_version", "1"),
            ];
            client
                .post(app_url)
                .header(
                    reqwest::header::COOKIE,
                    format!("{}={token}", support::SESSION_COOKIE),
                )
                .form(&form)
                .send()
                .await
                .unwrap()
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
        )
        .fetch_one(&mut blocker)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the save never reached Postgres");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    tokio::task::spawn_blocking(move || {
        postgres.stop();
        postgres
    });
    let (status, body) = status_and_json(save.await.unwrap()).await;
    assert_eq!(
        (status, body),
        (
            503,
            serde_json::json!({"WritesPaused": {"retry_after_secs": 5}})
        )
    );
}

// --- X-Forwarded-For and the per-IP limiter ------------------------------------

async fn register_from(app: &TestApp, username: &str, forwarded_for: &str) -> u16 {
    app.client
        .post(app.url("/api/register"))
        .header("x-forwarded-for", forwarded_for)
        .form(&[
            ("username", username),
            ("email", &format!("{username}@example.com")),
            ("password", STRONG_PASSWORD),
        ])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() {
    let app = spawn_app_with(|s| {
        s.service.registrations_per_ip = Limit::new(1, 3600);
        s.service.trusted_proxies = Vec::new();
    })
    .await;

    assert_eq!(register_from(&app, "alice", "203.0.113.1").await, 200);
    // Another claimed address, same real peer: the same limit.
    assert_eq!(register_from(&app, "bob", "203.0.113.2").await, 429);
}

#[tokio::test]
async fn a_trusted_proxy_gives_each_forwarded_client_its_own_limit() {
    let app = spawn_app_with(|s| {
        s.service.registrations_per_ip = Limit::new(1, 3600);
        s.service.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;

    assert_eq!(register_from(&app, "alice", "203.0.113.1").await, 200);
    assert_eq!(register_from(&app, "bob", "203.0.113.2").await, 200);
    assert_eq!(register_from(&app, "carol", "203.0.113.1").await, 429);
    // Only the hop the proxy appended counts: a forged first hop does not
    // buy a fresh window.
    assert_eq!(
        register_from(&app, "dave", "198.51.100.7, 203.0.113.2").await,
        429
    );
}
