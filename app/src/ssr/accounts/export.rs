//! A copy of everything Folio holds about the signed-in user, as JSON
//! (`GET /account/export`, `server/src/export.rs`): the account, the
//! profile, the sessions and the security history. Never a password hash,
//! a session token or a link token: what identifies a secret is not data
//! about the person.

use time::OffsetDateTime;

use crate::dto::{AccountExport, ExportedAccount};
use crate::ssr::events::consumers::activity;
use crate::ssr::infra::rate_limit;
use crate::ssr::{profiles, AppState, Result};

use super::sessions::Session;

/// More than anyone keeps in their account's history.
const ACTIVITY_LIMIT: i64 = 10_000;

pub async fn export(state: &AppState, session: &Session) -> Result<AccountExport> {
    // Each export reads the whole history: a few per hour is plenty.
    rate_limit::require(
        state,
        &format!("export:user:{}", session.user_id),
        state.config.exports_per_user,
    )
    .await?;
    let (username, email, verified, created_at): (String, String, bool, OffsetDateTime) =
        sqlx::query_as(
            "SELECT username, email, email_verified_at IS NOT NULL, created_at
             FROM users WHERE id = $1",
        )
        .bind(session.user_id)
        .fetch_one(state.db.primary())
        .await?;
    let profile = profiles::own(state, session).await?;
    let sessions = super::list_sessions(state, session).await?;
    let activity = activity::recent(state.db.primary(), session.user_id, ACTIVITY_LIMIT).await?;
    Ok(AccountExport {
        exported_at_ms: millis(OffsetDateTime::now_utc()),
        account: ExportedAccount {
            username,
            email,
            email_verified: verified,
            created_at_ms: millis(created_at),
        },
        profile,
        sessions,
        activity,
    })
}

fn millis(at: OffsetDateTime) -> u64 {
    u64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}
