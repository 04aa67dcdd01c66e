//! The typed RPC surface: every server function, grouped by feature.
//!
//! Each one is a thin adapter (ARCHITECTURE.md, "server functions"): it hands
//! its arguments to a service in `crate::ssr` through `ssr::handle`, which
//! reads the request once into a `RequestMeta`, and turns what the service
//! returns into the answer: cookies, status, redirects. Services never see
//! the request. The wire types live in `crate::dto`.

mod accounts;
mod profiles;
mod search;

pub use accounts::*;
pub use profiles::*;
pub use search::*;

pub use crate::dto::{
    ActivityEntry, ActivityKind, AvatarImage, EmailStatus, PersonHit, Profile, SearchPage,
    SessionInfo, SignedInUser,
};
