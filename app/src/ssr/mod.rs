//! Server-only code: Postgres, Redis, argon2. Compiled with the `ssr` feature
//! only (the single gate is the `mod ssr` line in `lib.rs`), so none of it,
//! nor its dependencies, can reach the WASM bundle.
//!
//! - `request`: what a server function knows about its request
//!   (`RequestMeta`), and `handle`, the one wrapper every server function
//!   body runs in.
//! - `infra`: metrics, retries, the rate limiter: mechanisms, no features.
//! - `events`: the outbox, its relay to Redis Streams, and the consumers.
//! - `search`: people search over the index the `search` consumer keeps.
//! - `media`: uploaded avatars (processing, object storage, clean-up).
//! - `mail`: how a message leaves (SMTP, or the development mailbox).
//! - `accounts`, `profiles`: the services. They take explicit arguments
//!   (the state, a `RequestMeta`, a `Session`) and return values; they never
//!   read the request or set a cookie, so tests can call them directly.

pub mod accounts;
mod error;
pub mod events;
pub mod infra;
pub mod mail;
pub mod media;
pub mod profiles;
pub mod request;
pub mod search;
mod state;

pub use error::{Error, Result};
pub use infra::metrics::Metrics;
pub use infra::redis::{Redis, RedisConnector, RedisTarget};
pub use request::{handle, Call, RequestMeta};
pub use state::{AppState, Limit, ServiceConfig};
