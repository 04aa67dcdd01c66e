//! Re-authentication: the signed-in owner types their password again
//! before changing it, changing the address or deleting the account.
//!
//! Wrong passwords here are counted per signed-in user
//! (`reauth:user:<id>`), never in the sign-in buckets: only someone holding
//! one of the account's sessions can fill this one, so strangers guessing
//! at the sign-in form cannot lock the owner out of their account page, and
//! a stolen session guessing here does not lock anyone out of signing in.
//! As at sign-in, a browser with a live device cookie for the account is
//! counted on its own (`reauth:device:<nonce>`): a stolen session's guesses
//! do not lock the owner's own browser out either.

use crate::domain::Password;
use crate::error::FieldErrors;
use crate::ssr::infra::rate_limit;
use crate::ssr::request::RequestMeta;
use crate::ssr::{AppState, Result};

use super::device_cookies;
use super::service::never_valid_password;
use super::sessions::Session;

/// What a re-authenticated caller may need of their account.
pub struct Account {
    pub email: String,
    pub email_verified: bool,
    /// The credential epoch, read before the password was checked: what is
    /// asked for under it (an address change) dies if the credentials
    /// change after this point.
    pub credential_epoch: i64,
}

/// Checks that `password` is the signed-in user's. A wrong one is the field
/// error `(field, message)`; past the limit, `RateLimited`.
pub async fn reauthenticate(
    state: &AppState,
    meta: &RequestMeta,
    session: &Session,
    password: &str,
    (field, message): (&str, &str),
) -> Result<Account> {
    let trusted = match &meta.device_cookie {
        Some(cookie) => device_cookies::verify(state, cookie, session.user_id).await?,
        None => None,
    };
    let slot = match &trusted {
        Some(device) => {
            rate_limit::require(
                state,
                &format!("reauth:device:{}", device.nonce),
                state.config.login_failures_per_device,
            )
            .await?
        }
        None => {
            rate_limit::require(
                state,
                &format!("reauth:user:{}", session.user_id),
                state.config.login_failures_per_account,
            )
            .await?
        }
    };
    let (hash, email, email_verified, credential_epoch): (String, String, bool, i64) =
        sqlx::query_as(
            "SELECT password_hash, email, email_verified_at IS NOT NULL, credential_epoch
               FROM users WHERE id = $1",
        )
        .bind(session.user_id)
        .fetch_one(state.db.primary())
        .await?;
    let candidate = Password::parse(password).unwrap_or_else(|_| never_valid_password());
    if !state.passwords.verify(&candidate, Some(hash)).await?.ok {
        tracing::info!(
            user_id = session.user_id,
            device = trusted.is_some(),
            "re-authentication failed"
        );
        return Err(FieldErrors::single(field, message).into());
    }
    rate_limit::release(state, slot).await?;
    Ok(Account {
        email,
        email_verified,
        credential_epoch,
    })
}
