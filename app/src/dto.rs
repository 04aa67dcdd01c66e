//! The wire types: what server functions return to the browser.
//!
//! A leaf module: the server functions (`crate::api`), the services behind
//! them (`crate::ssr`) and the UI all import it, and it imports none of
//! them (the domain types aside). No database row is serialized to the browser: `Profile` has no
//! email and no hash, `SessionInfo` no token.

use serde::{Deserialize, Serialize};

use crate::domain::{AvatarKey, AVATAR_SIZES};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedInUser {
    pub username: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub id: String,
    pub user_agent: String,
    pub ip: String,
    pub created_at_ms: u64,
    pub last_seen_ms: u64,
    pub current: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub username: String,
    pub display_name: String,
    pub bio: String,
    pub avatar_url: Option<String>,
    pub location: Option<String>,
    pub website: Option<String>,
    pub version: i32,
    /// An uploaded avatar (it wins over `avatar_url`). Left out of the JSON
    /// when there is none, so cached profiles written before it still read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar: Option<AvatarImage>,
}

/// An uploaded avatar's URLs: content-addressed, so cacheable forever.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AvatarImage {
    pub key: String,
    /// The 128 px image, for `src`.
    pub src: String,
    /// Every stored size, for `srcset` (`/media/<key>-64.webp 64w, …`).
    pub srcset: String,
}

impl AvatarImage {
    pub fn of(key: &AvatarKey) -> Self {
        Self {
            key: key.as_str().to_owned(),
            src: key.url(128),
            srcset: AVATAR_SIZES
                .iter()
                .map(|size| format!("{} {size}w", key.url(*size)))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

impl Profile {
    /// The public page's identity: it shows this profile at this version (the
    /// server qualifies it with the build). Used as the page's ETag and as
    /// the key of the server's rendered-page cache.
    pub fn page_tag(&self) -> String {
        format!("W/\"{}-{}\"", self.username, self.version)
    }
}

/// The signed-in user's own address, for the account page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailStatus {
    pub email: String,
    /// Proven by the mailed link (`/verify`).
    pub verified: bool,
}

/// Everything Folio holds about a user, for them to download
/// (`/account/export`). Times are milliseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountExport {
    pub exported_at_ms: u64,
    pub account: ExportedAccount,
    pub profile: Profile,
    pub sessions: Vec<SessionInfo>,
    pub activity: Vec<ActivityEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedAccount {
    pub username: String,
    pub email: String,
    pub email_verified: bool,
    pub created_at_ms: u64,
}

/// What happened, in an account's security history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActivityKind {
    NewSignIn,
    PasswordChanged,
    EmailChanged,
    SessionsRevoked,
    /// Sign-ins refused for a while after too many wrong passwords from
    /// browsers that never signed in to the account.
    SignInsBlocked,
}

/// One entry of the account page's security history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityEntry {
    pub kind: ActivityKind,
    pub occurred_at_ms: u64,
    pub ip: String,
    /// "Chrome on Android".
    pub device: String,
    /// Sessions ended, for `SessionsRevoked`.
    pub count: u32,
}

/// One person in search results: what their public page shows, shortened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonHit {
    pub username: String,
    pub display_name: String,
    pub location: Option<String>,
    /// The bio's first 160 characters, as text (never markup).
    pub bio: String,
}

/// A page of people search results. `next` and `prev` are opaque cursors
/// (`?after=` and `?before=`), absent at either end of the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SearchPage {
    /// The query as the server understood it (trimmed).
    pub query: String,
    pub people: Vec<PersonHit>,
    pub next: Option<String>,
    pub prev: Option<String>,
}
