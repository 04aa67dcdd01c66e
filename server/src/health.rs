//! `/healthz`: the process answers. `/readyz`: its dependencies answer too,
//! so a load balancer stops sending traffic to an instance that cannot serve.
//! A read replica that does not answer makes the instance degraded, not
//! unready: its reads go to the primary. So does a primary missing for less
//! than `primary_grace` (a failover): reads go on, writes are "paused".
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

pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether each dependency answered a trivial request (each bounded by
/// `PROBE_TIMEOUT`, both at once): for `/readyz`, and for the
/// `folio_dependency_up` series that `/metrics` reports.
pub struct Dependencies {
    /// The primary answered, and as a primary: a node that was demoted to a
    /// standby under `DATABASE_URL` (HAProxy not yet caught up) takes no
    /// writes, so it counts as down.
    pub postgres: bool,
    pub redis: bool,
    /// The primary's timeline: Postgres starts a new one at each promotion,
    /// so a change means the leader changed (a failover or switchover).
    pub primary_timeline: Option<i64>,
}

pub async fn probe(state: &AppState) -> Dependencies {
    let postgres = async {
        // The timeline is the first 8 hex digits of the current WAL file's
        // name: known at once after a promotion (the control file's copy
        // waits for the next checkpoint).
        let timeline = tokio::time::timeout(
            PROBE_TIMEOUT,
            sqlx::query_scalar::<_, Option<i64>>(
                "SELECT CASE WHEN pg_is_in_recovery() THEN NULL
                        ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int8 END",
            )
            .fetch_one(state.db.primary()),
        )
        .await
        .ok()
        .and_then(|r| r.ok())
        .flatten();
        state.db.primary_answered(timeline.is_some());
        timeline
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
    let (primary_timeline, redis) = tokio::join!(postgres, redis);
    Dependencies {
        postgres: primary_timeline.is_some(),
        redis,
        primary_timeline,
    }
}

pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let (
        Dependencies {
            postgres, redis, ..
        },
        replicas,
    ) = tokio::join!(probe(&state), state.db.replicas_answering(PROBE_TIMEOUT));
    // A primary missing for less than `primary_grace` is a failover under
    // way: reads are served and writes answered "paused", so the instance
    // stays in its load balancer, degraded (see `ServiceConfig::primary_grace`).
    let primary_down_for = state.db.primary_answered(postgres);
    let changing_over = !postgres && primary_down_for < state.config.primary_grace;
    let (code, status) = if !((postgres || changing_over) && redis) {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    } else if changing_over || replicas.iter().any(|(_, up)| !up) {
        (StatusCode::OK, "degraded")
    } else {
        (StatusCode::OK, "ok")
    };
    (code, Json(Readiness { status }))
}
