//! Ceilings for the benchmark (`make bench`), mounted only when
//! `FOLIO_BENCH_ENDPOINTS=on`: the least work this server can do per request
//! (fixed bytes), and the least work any cache-aside read can do (one Redis
//! `GET`). Every other scenario is reported as a ratio of these.

use app::ssr::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

use crate::startup::RouterState;

pub const CEILING_KEY: &str = "bench:ceiling";

async fn fixed_bytes() -> &'static str {
    "ceiling A: fixed bytes\n"
}

async fn one_redis_get(State(state): State<AppState>) -> Result<String, StatusCode> {
    let mut redis = state.redis.clone();
    redis::cmd("GET")
        .arg(state.key(CEILING_KEY))
        .query_async::<Option<String>>(&mut redis)
        .await
        .map(|v| v.unwrap_or_default())
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)
}

pub fn routes() -> Router<RouterState> {
    Router::new()
        .route("/bench/static", get(fixed_bytes))
        .route("/bench/redis", get(one_redis_get))
}
