//! The axum server: configuration, start-up, and the HTTP layers around the
//! Leptos app (health, CSRF, tracing, metrics). `main.rs` only calls in here,
//! so tests can build the same application on a spare port.

mod bench;
mod card;
pub mod config;
mod csrf;
mod edge;
mod export;
mod form_errors;
mod health;
mod hygiene;
mod mailbox;
pub mod media;
mod metrics;
pub mod page_cache;
pub mod panics;
pub mod startup;
mod target;
pub mod telemetry;
