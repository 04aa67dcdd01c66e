//! The catalogue: every event Folio publishes, one payload struct each.
//!
//! A payload type names its event (`TYPE`) and its schema version
//! (`VERSION`). Producers write one with [`super::outbox::record`];
//! consumers read one back with [`Event::decode`], which refuses another
//! type and a version newer than the code knows (such an event goes to the
//! dead letters, and is replayed after the consumer learned it).
//!
//! Evolving a payload: adding a field with `#[serde(default)]` keeps the
//! version; changing what a field means, or removing one, bumps `VERSION`
//! and teaches the consumers both shapes first.
//!
//! Payloads carry what consumers need to act without reading the row back
//! (the profile's new text for the search index, the device for the
//! activity page), and nothing secret: no password, hash or token.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::ssr::{Error, Result};

/// A payload of the catalogue (see the module comment).
pub trait EventPayload: Serialize + DeserializeOwned {
    /// `noun.verb`, lower case.
    const TYPE: &'static str;
    const VERSION: i16;
}

macro_rules! event {
    ($payload:ident, $type:literal, version $version:literal) => {
        impl EventPayload for $payload {
            const TYPE: &'static str = $type;
            const VERSION: i16 = $version;
        }
    };
}

/// A new account (and its profile, at version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRegistered {
    pub username: String,
}
event!(UserRegistered, "user.registered", version 1);

/// A profile edit committed: the profile as it now is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileUpdated {
    pub username: String,
    pub version: i32,
    pub display_name: String,
    pub bio: String,
    pub location: Option<String>,
    pub website: Option<String>,
    pub avatar_url: Option<String>,
}
event!(ProfileUpdated, "profile.updated", version 1);

/// An uploaded avatar stopped being used by this user (replaced, removed,
/// or stored by an upload that then failed): its files are deleted once no
/// profile names the key (the `media` consumer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AvatarReleased {
    pub key: String,
}
event!(AvatarReleased, "avatar.released", version 1);

/// Where a security-relevant action came from, as its request saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Origin {
    pub ip: String,
    /// "Chrome on Android" (`domain::Device`).
    pub device: String,
}

/// A sign-in from a device this account had not used (`accounts::devices`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionCreated {
    pub origin: Origin,
}
event!(SessionCreated, "session.created", version 1);

/// Too many wrong passwords for this account from browsers that never
/// signed in to it: such sign-ins are refused for the lockout window (the
/// owner's own browsers still sign in). Or, `one_device`, from one browser
/// that had signed in to it (a device cookie): only that browser is
/// refused. Reported once per window of each kind; `origin` is the attempt
/// that was refused first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoginGuessing {
    pub origin: Origin,
    #[serde(default)]
    pub one_device: bool,
}
event!(LoginGuessing, "login.guessing", version 1);

/// The password was changed (every session was ended).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PasswordChanged {
    pub origin: Origin,
}
event!(PasswordChanged, "password.changed", version 1);

/// Someone asked for a password reset link for this account's address
/// (the "forgot password" form). The `mail` consumer issues the token and
/// mails the link: the payload never carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PasswordResetRequested {
    pub origin: Origin,
}
event!(PasswordResetRequested, "password_reset.requested", version 1);

/// The owner of an unproven address asked for its link again (a new
/// account's first link is mailed for its `user.registered`). The `mail`
/// consumer issues the token and mails it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmailVerificationRequested {}
event!(EmailVerificationRequested, "email_verification.requested", version 1);

/// Sessions were ended by their owner: one other device, or all of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionsRevoked {
    pub origin: Origin,
    pub count: u32,
    pub everywhere: bool,
}
event!(SessionsRevoked, "sessions.revoked", version 1);

/// The owner asked to move the account to `new_email` (their password
/// confirmed it). The `mail` consumer mails the confirmation link to the
/// new address and a notice to the current one; nothing changes until the
/// link is used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmailChangeRequested {
    pub origin: Origin,
    pub new_email: String,
    /// Whether the current address is told (always when it is proven; an
    /// unproven one, which may be a stranger's, at most once a day).
    #[serde(default = "notify_by_default")]
    pub notify_current: bool,
    /// The account's credential epoch when it was asked: the link is minted
    /// under it, so a change asked for before a recovery dies with it.
    /// Absent from events recorded before links carried epochs, which mail
    /// nothing.
    #[serde(default)]
    pub epoch: Option<i64>,
}

fn notify_by_default() -> bool {
    true
}
event!(EmailChangeRequested, "email_change.requested", version 1);

/// The account's email address changed (emitted once the new address is
/// confirmed). Both addresses: the old one is told of the change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmailChanged {
    pub origin: Origin,
    pub old_email: String,
    pub new_email: String,
}
event!(EmailChanged, "email.changed", version 1);

/// The account is gone: consumers forget what they hold of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountDeleted {
    pub username: String,
}
event!(AccountDeleted, "account.deleted", version 1);

/// An event as a consumer receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Unique forever; what consumers deduplicate on.
    pub id: Uuid,
    pub event_type: String,
    pub schema_version: i16,
    /// The aggregate: the user the event is about.
    pub user_id: i64,
    /// The aggregate's sequence number: 1, 2, 3… in commit order.
    pub seq: i64,
    /// When the change committed (the outbox row's insert, Postgres's clock).
    pub occurred_at: OffsetDateTime,
    /// The payload, as JSON text.
    pub payload: String,
}

impl Event {
    /// The payload as `P`. A mismatch is an error no retry will fix.
    pub fn decode<P: EventPayload>(&self) -> Result<P> {
        if self.event_type != P::TYPE {
            return Err(Error::Internal(format!(
                "event {} is a {}, not a {}",
                self.id,
                self.event_type,
                P::TYPE
            )));
        }
        if self.schema_version > P::VERSION {
            return Err(Error::Internal(format!(
                "event {} has schema version {}; this build knows {} up to {}",
                self.id,
                self.schema_version,
                P::TYPE,
                P::VERSION
            )));
        }
        serde_json::from_str(&self.payload)
            .map_err(|e| Error::Internal(format!("event {} ({}): payload: {e}", self.id, P::TYPE)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event_type: &str, version: i16, payload: &str) -> Event {
        Event {
            id: Uuid::nil(),
            event_type: event_type.to_owned(),
            schema_version: version,
            user_id: 1,
            seq: 1,
            occurred_at: OffsetDateTime::UNIX_EPOCH,
            payload: payload.to_owned(),
        }
    }

    #[test]
    fn decodes_its_own_type_and_refuses_the_rest() {
        let ok = event("user.registered", 1, r#"{"username":"ada"}"#);
        assert_eq!(
            ok.decode::<UserRegistered>().unwrap(),
            UserRegistered {
                username: "ada".into()
            }
        );
        assert!(ok.decode::<AccountDeleted>().is_err(), "another type");
        assert!(event("user.registered", 2, r#"{"username":"ada"}"#)
            .decode::<UserRegistered>()
            .is_err());
        assert!(event("user.registered", 1, r#"{"name":1}"#)
            .decode::<UserRegistered>()
            .is_err());
    }
}
