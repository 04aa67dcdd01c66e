//! Leaving Folio: the account and everything of it goes, at once where
//! Folio holds it directly (the account, profile, devices, link tokens,
//! sessions on every device, the cached profile and stored pages) and
//! through events where a consumer holds it (the search document, the
//! security history, the uploaded picture's files).
//!
//! The username is retired for 30 days (`retired_usernames`): old links
//! answer 404 rather than show a stranger who took the name.

use crate::domain::Username;
use crate::error::FieldErrors;
use crate::ssr::events::outbox;
use crate::ssr::events::types::{AccountDeleted, AvatarReleased};
use crate::ssr::infra::rate_limit;
use crate::ssr::{profiles, AppState, Result};

use super::sessions::{self, Session};

/// Deletes the signed-in user's account, if `password` is theirs.
pub async fn delete_account(state: &AppState, session: &Session, password: &str) -> Result<()> {
    if password.is_empty() {
        return Err(FieldErrors::single("password", "Enter your password.").into());
    }
    // Guessing the password here is as limited as at sign-in.
    let slot = rate_limit::require(
        state,
        &format!("login:account:{}", session.username),
        state.config.login_failures_per_account,
    )
    .await?;
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
        .bind(session.user_id)
        .fetch_one(state.db.primary())
        .await?;
    let candidate = crate::domain::Password::parse(password)
        .unwrap_or_else(|_| super::service::never_valid_password());
    if !state.passwords.verify(&candidate, Some(hash)).await?.ok {
        return Err(FieldErrors::single("password", "Your password is incorrect.").into());
    }
    rate_limit::release(state, slot).await?;

    let mut tx = state.db.begin().await?;
    let avatar: Option<String> =
        sqlx::query_scalar("SELECT avatar_key FROM profiles WHERE user_id = $1")
            .bind(session.user_id)
            .fetch_optional(&mut *tx)
            .await?
            .flatten();
    // Events first, on the same transaction: consumers forget the account
    // (search, activity) and collect its picture (media) once no profile
    // names it, which is true from this commit on.
    let deleted = AccountDeleted {
        username: session.username.clone(),
    };
    outbox::record(&mut *tx, session.user_id, &deleted).await?;
    if let Some(key) = avatar {
        outbox::record(&mut *tx, session.user_id, &AvatarReleased { key }).await?;
    }
    sqlx::query(
        "INSERT INTO retired_usernames (username) VALUES ($1)
         ON CONFLICT (username) DO UPDATE SET retired_at = now()",
    )
    .bind(&session.username)
    .execute(&mut *tx)
    .await?;
    // Nothing issued under its credentials outlives it (the tokens' rows
    // go with the account below; the epoch says so to anything else).
    super::credentials::bump_epoch(&mut tx, session.user_id).await?;
    // Profile, devices and link tokens go with it (ON DELETE CASCADE).
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(session.user_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;

    let ended = sessions::destroy_all(state, session.user_id, None).await?;
    // "Gone" to every cache of every instance: no version may be served.
    if let Ok(username) = Username::parse(&session.username) {
        profiles::invalidate(state, &username, i32::MAX).await;
    }
    tracing::info!(user_id = session.user_id, ended, "account deleted");
    Ok(())
}
