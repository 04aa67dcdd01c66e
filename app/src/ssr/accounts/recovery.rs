//! A forgotten password (OWASP's Forgot Password cheat sheet): asking for a
//! link by address, and choosing a new password with it.
//!
//! Asking answers the same, in the same time, whether or not the address
//! has an account: both paths run the same statements (the event is recorded
//! by one statement that finds no account or finds one), and the mail,
//! token and all, is the `mail` consumer's work, after the answer. Using the
//! link changes the password under the same strength rules as everywhere,
//! ends every session of the account and signs no one in: whoever holds
//! the link proves they read the mail, not that they may skip signing in.

use crate::domain::{Email, LinkToken, Password};
use crate::error::{AppError, FieldErrors, LinkProblem};
use crate::ssr::events::outbox;
use crate::ssr::events::types::{PasswordChanged, PasswordResetRequested};
use crate::ssr::infra::rate_limit;
use crate::ssr::request::RequestMeta;
use crate::ssr::{AppState, Result};

use super::credentials;
use super::devices;
use super::sessions;
use super::tokens::{self, Purpose};

/// Asks for a reset link for `email`. `Ok` whether or not an account uses
/// the address (see the module comment); refused only for an address that
/// is not one, or past the rate limits, both of which say nothing about
/// accounts.
pub async fn request_password_reset(
    state: &AppState,
    meta: &RequestMeta,
    email: &str,
) -> Result<()> {
    let email = Email::parse(email).map_err(|e| FieldErrors::single("email", e))?;
    rate_limit::require(
        state,
        &format!("reset:ip:{}", meta.client_network()),
        state.config.reset_requests_per_ip,
    )
    .await?;
    // Per address too: nobody fills someone's mailbox with reset mails.
    rate_limit::require(
        state,
        &format!("reset:address:{}", email.as_str()),
        state.config.reset_requests_per_address,
    )
    .await?;
    let asked = PasswordResetRequested {
        origin: devices::origin(meta),
    };
    // Not waiting for the commit's WAL flush: only the path with an account
    // writes, and a flush of a few milliseconds would be the difference the
    // time of the answer shows. A request lost with a crash of Postgres in
    // that instant is asked again.
    let mut tx = state.db.begin().await?;
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *tx)
        .await?;
    outbox::record_for_email(&mut *tx, email.as_str(), &asked).await?;
    tx.commit().await?;
    tracing::info!("password reset link asked for");
    Ok(())
}

/// Whether `token` is a live reset link (the reset page asks before it
/// shows the form); otherwise why not.
pub async fn check_reset_link(state: &AppState, token: &str) -> Result<()> {
    let token = LinkToken::parse(token).map_err(|_| AppError::Link(LinkProblem::Malformed))?;
    tokens::check(state.db.primary(), &token, Purpose::PasswordReset).await?;
    Ok(())
}

/// Sets the password of the link's account to `new`, redeeming the link,
/// and ends every session of the account. Signs no one in.
pub async fn reset_password(
    state: &AppState,
    meta: &RequestMeta,
    token: &str,
    new: &str,
) -> Result<()> {
    // Each attempt costs a strength check and an argon2 hash.
    rate_limit::require(
        state,
        &format!("reset:redeem:ip:{}", meta.client_network()),
        state.config.reset_redemptions_per_ip,
    )
    .await?;
    let token = LinkToken::parse(token).map_err(|_| AppError::Link(LinkProblem::Malformed))?;
    let new = Password::parse(new).map_err(|e| FieldErrors::single("new_password", e))?;
    let user_id = tokens::check(state.db.primary(), &token, Purpose::PasswordReset).await?;
    let (username, email): (String, String) =
        sqlx::query_as("SELECT username, email FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_one(state.db.primary())
            .await?;
    state
        .passwords
        .check_strength(&new, vec![username, email])
        .await?
        .map_err(|mut errors| {
            if let Some(msg) = errors.0.remove("password") {
                errors.add("new_password", msg);
            }
            AppError::Validation(errors)
        })?;
    let hash = state.passwords.hash(&new).await?;

    let mut tx = state.db.begin().await?;
    // The redemption: whoever redeems first wins; the other is refused here.
    let user_id = tokens::redeem(&mut tx, &token, Purpose::PasswordReset).await?;
    sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
        .bind(hash)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    // Every other mailed link of the account (a pending address change
    // above all) dies with the old password.
    credentials::bump_epoch(&mut tx, user_id).await?;
    let origin = devices::origin(meta);
    outbox::record(&mut *tx, user_id, &PasswordChanged { origin }).await?;
    tx.commit().await?;
    let ended = sessions::destroy_all(state, user_id, None).await?;
    tracing::info!(
        user_id,
        ended,
        "password reset with a mailed link; every session ended"
    );
    Ok(())
}
