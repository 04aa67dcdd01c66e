//! Mechanisms shared by every feature, owning no feature themselves:
//! metrics, retries with backoff, the Redis rate limiter.
//! Nothing here knows about users, profiles or the request.

pub mod metrics;
pub mod rate_limit;
pub mod retry;
