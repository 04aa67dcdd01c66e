//! Folio's application: domain types, the typed RPC surface (server
//! functions), and the Leptos UI shared by the server (SSR) and the browser
//! (hydration). See ARCHITECTURE.md for the map.

pub mod api;
pub mod domain;
pub mod dto;
pub mod error;
mod ui;

#[cfg(feature = "ssr")]
pub mod ssr;

#[cfg(feature = "hydrate")]
pub use ui::hydrate;
pub use ui::{shell, App};
