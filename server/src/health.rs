//! `/healthz`: the process answers. `/readyz`: its dependencies answer too,
//! so a load balancer stops sending traffic to an instance that cannot serve.
//! A read replica that does not answer makes the instance degraded, not
//! unready: its reads go to the primary. The Postgres and Redis probe feeds
//! `folio_dependency_up` on `/metrics`, for alerting (the replicas have
//! `folio_replica_up`, from their own probe).

use std::collections::BTreeMap;
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
    /// Only with replicas configured: `ok`, or `degraded` when one or more
    /// do not answer (named in `replica_status`).
    #[serde(skip_serializing_if = "Option::is_none")]
    replicas: Option<&'static str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    replica_status: BTreeMap<String, &'static str>,
}

pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

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
            replicas: (!replicas.is_empty()).then(|| {
                if replicas.iter().all(|(_, up)| *up) {
                    "ok"
                } else {
                    "degraded"
                }
            }),
            replica_status: replicas
                .into_iter()
                .map(|(label, up)| (label, word(up)))
                .collect(),
        }),
    )
}
