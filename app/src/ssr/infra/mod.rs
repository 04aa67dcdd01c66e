//! Mechanisms shared by every feature, owning no feature themselves:
//! the Postgres pools and the routing of reads to replicas, the Redis
//! connection, metrics, retries with backoff, the Redis rate limiter, the
//! deployment's shared secrets, secrets kept out of URLs in messages.
//! Nothing here knows about users, profiles or the request.

pub mod db;
pub mod metrics;
pub mod rate_limit;
pub mod redact;
pub mod redis;
pub mod retry;
pub mod secrets;
