//! Mechanisms shared by every feature, owning no feature themselves:
//! the Postgres pools and the routing of reads to replicas, the Redis
//! connection, metrics, retries with backoff, the Redis rate limiter, the
//! deployment's shared secrets.
//! Nothing here knows about users, profiles or the request.

pub mod db;
pub mod metrics;
pub mod rate_limit;
pub mod redis;
pub mod retry;
pub mod secrets;
