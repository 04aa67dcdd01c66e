//! `/healthz`: the process answers. `/readyz`: its dependencies answer too,
//! so a load balancer stops sending traffic to an instance that cannot serve.
//! A read replica that does not answer makes the instance degraded, not
//! unready: its reads go to the primary.
//!
//! Anyone can reach `/readyz`, so it says only the overall state
//! (`{"status": "ok" | "degraded" | "unavailable"}`, with 200 or 503): which
//! dependency failed, and the replicas' hosts, ports and databases, are for
//! the operator, on `/metrics` (`folio_dependency_up`, fed by the same
//! probe, and `folio_replica_up`, from the replicas' own probe).

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
    status: &'static str,
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
        tokio::time::timeout(
            PROBE_TIMEOUT,
            sqlx::query("SELECT 1").execute(state.db.primary()),
        )
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
    let (Dependencies { postgres, redis }, replicas) =
        tokio::join!(probe(&state), state.db.replicas_answering(PROBE_TIMEOUT));
    let (code, status) = if !(postgres && redis) {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    } else if replicas.iter().any(|(_, up)| !up) {
        (StatusCode::OK, "degraded")
    } else {
        (StatusCode::OK, "ok")
    };
    (code, Json(Readiness { status }))
}
