//! Black-box tests: each test starts the real server on a spare port against
//! a fresh Postgres database and its own Redis key prefix, then talks HTTP.

mod accounts;
mod avatars;
mod device_cookies;
mod hardening;
mod health;
mod lifecycle;
mod links;
mod page_policy;
mod previews;
mod profiles;
mod reauthentication;
mod robustness;

#[path = "../support/mod.rs"]
mod support;
