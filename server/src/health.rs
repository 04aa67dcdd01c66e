//! `/healthz`: the process answers. `/readyz`: its dependencies answer too,
//! so a load balancer stops sending traffic to an instance that cannot serve.
//! The same probe feeds `folio_dependency_up` on `/metrics`, for alerting.

use std::time::Duration;

use app::ssr::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;

pub async fn healthz() -> &'static str {
    "ok"
}

#[derive(Serialize)]
pub struct Readiness {
    postgres: &'static str,
    redis: &'static str,
}

const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether each dependency answered a trivial request (each bounded by
/// `PROBE_TIMEOUT`, both at once): for `/readyz`, and for the
/// `folio_dependency_up` series that `/metrics` reports.
pub struct Dependencies {
    pub postgres: bool,
    pub redis: bool,
}

pub async fn probe(state: &AppState) -> Dependencies {
    let postgres = async {
        tokio::time::timeout(PROBE_TIMEOUT, sqlx::query("SELECT 1").execute(&state.db))
            .await
            .is_ok_and(|r| r.is_ok())
    };
    let redis = async {
        let mut redis = state.redis.clone();
        tokio::time::timeout(
            PROBE_TIMEOUT,
            redis::cmd("PING").query_async::<String>(&mut redis),
        )
        .await
        .is_ok_and(|r| r.is_ok())
    };
    let (postgres, redis) = tokio::join!(postgres, redis);
    Dependencies { postgres, redis }
}

pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let Dependencies { postgres, redis } = probe(&state).await;
    let word = |up: bool| if up { "ok" } else { "unavailable" };
    let status = if postgres && redis {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Readiness {
            postgres: word(postgres),
            redis: word(redis),
        }),
    )
}
