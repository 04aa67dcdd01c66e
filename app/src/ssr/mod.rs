//! Server-only code: Postgres, Redis, argon2. Compiled with the `ssr` feature
//! only (the single gate is the `mod ssr` line in `lib.rs`), so none of it,
//! nor its dependencies, can reach the WASM bundle.
//!
//! Server functions in `crate::api` are thin: they parse input and call into
//! the modules here.

pub mod accounts;
pub mod context;
mod infra;
pub mod passwords;
pub mod profiles;
pub mod rate_limit;
pub mod retry;
pub mod sessions;
pub mod state;

pub use context::{current_session, require_user, respond, state};
pub use state::{AppState, Limit, ServiceConfig};
