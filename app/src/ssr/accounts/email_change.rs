//! Changing the account's address (OWASP: re-authenticate, confirm the new
//! address, tell the old one). Asking needs the current password and
//! records an event: the `mail` consumer mails a link to the new address
//! and a notice to the current one. The address changes only when that
//! link is used, and the old address is told again then (`email.changed`).

use crate::domain::{Email, LinkToken, Password};
use crate::error::{AppError, FieldErrors, LinkProblem};
use crate::ssr::events::outbox;
use crate::ssr::events::types::{EmailChangeRequested, EmailChanged};
use crate::ssr::infra::rate_limit;
use crate::ssr::request::RequestMeta;
use crate::ssr::{AppState, Result};

use super::devices;
use super::sessions::Session;
use super::tokens::{self, Purpose};

/// Asks to move the signed-in account to `new_email`.
pub async fn request_email_change(
    state: &AppState,
    meta: &RequestMeta,
    session: &Session,
    current_password: &str,
    new_email: &str,
) -> Result<()> {
    let mut errors = FieldErrors::new();
    let new_email = errors.check("new_email", Email::parse(new_email));
    if current_password.is_empty() {
        errors.add("confirm_password", "Enter your password.");
    }
    errors.into_result()?;
    let Some(new_email) = new_email else {
        return Err(AppError::Internal.into());
    };
    // Guessing the password here is as limited as at sign-in.
    let slot = rate_limit::require(
        state,
        &format!("login:account:{}", session.username),
        state.config.login_failures_per_account,
    )
    .await?;
    let (hash, email): (String, String) =
        sqlx::query_as("SELECT password_hash, email FROM users WHERE id = $1")
            .bind(session.user_id)
            .fetch_one(state.db.primary())
            .await?;
    let candidate = Password::parse(current_password)
        .unwrap_or_else(|_| super::service::never_valid_password());
    if !state.passwords.verify(&candidate, Some(hash)).await?.ok {
        return Err(FieldErrors::single("confirm_password", "Your password is incorrect.").into());
    }
    rate_limit::release(state, slot).await?;
    if new_email.as_str() == email {
        return Err(FieldErrors::single("new_email", "This is already your address.").into());
    }
    // The owner is signed in and has typed their password: telling them the
    // address is taken reveals nothing they could not learn at sign-up.
    let taken: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE email = $1)")
        .bind(new_email.as_str())
        .fetch_one(state.db.primary())
        .await?;
    if taken {
        return Err(
            FieldErrors::single("new_email", "An account with this email already exists.").into(),
        );
    }
    let asked = EmailChangeRequested {
        origin: devices::origin(meta),
        new_email: new_email.as_str().to_owned(),
    };
    outbox::record(state.db.primary(), session.user_id, &asked).await?;
    tracing::info!(user_id = session.user_id, "email change asked for");
    Ok(())
}

/// Moves the link's account to the address the link was mailed to (which
/// the link proves). Needs no session: the link is the proof.
pub async fn confirm_email_change(state: &AppState, meta: &RequestMeta, token: &str) -> Result<()> {
    let token = LinkToken::parse(token).map_err(|_| AppError::Link(LinkProblem::Malformed))?;
    let mut tx = state.db.begin().await?;
    let (user_id, new_email) = tokens::redeem_email_change(&mut tx, &token).await?;
    let old_email: String = sqlx::query_scalar("SELECT email FROM users WHERE id = $1 FOR UPDATE")
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await?;
    let changed =
        sqlx::query("UPDATE users SET email = $1, email_verified_at = now() WHERE id = $2")
            .bind(&new_email)
            .bind(user_id)
            .execute(&mut *tx)
            .await;
    if let Err(sqlx::Error::Database(db)) = &changed {
        if db.constraint() == Some("users_email_key") {
            return Err(AppError::Link(LinkProblem::AddressTaken).into());
        }
    }
    changed?;
    // Links mailed to the old address prove nothing about the new one.
    tokens::revoke_all(&mut *tx, user_id, Purpose::EmailVerification).await?;
    tokens::revoke_all(&mut *tx, user_id, Purpose::EmailChange).await?;
    let changed = EmailChanged {
        origin: devices::origin(meta),
        old_email,
        new_email,
    };
    outbox::record(&mut *tx, user_id, &changed).await?;
    tx.commit().await?;
    tracing::info!(user_id, "email address changed");
    Ok(())
}
