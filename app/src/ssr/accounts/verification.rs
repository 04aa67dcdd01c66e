//! Proving an address: the link mailed at sign-up (the `mail` consumer
//! sends it for `user.registered`) and again on request marks it verified. An unverified account works; the account page asks
//! its owner to confirm, with a "resend" that is rate limited.

use crate::domain::LinkToken;
use crate::dto::EmailStatus;
use crate::error::{AppError, LinkProblem};
use crate::ssr::events::outbox;
use crate::ssr::events::types::EmailVerificationRequested;
use crate::ssr::infra::rate_limit;
use crate::ssr::{AppState, Result};

use super::sessions::Session;
use super::tokens::{self, Purpose};

/// The signed-in user's address and whether it is proven.
pub async fn account_email(state: &AppState, session: &Session) -> Result<EmailStatus> {
    let (email, verified): (String, bool) =
        sqlx::query_as("SELECT email, email_verified_at IS NOT NULL FROM users WHERE id = $1")
            .bind(session.user_id)
            .fetch_one(state.db.primary())
            .await?;
    Ok(EmailStatus { email, verified })
}

/// Mails a new verification link (the older ones stop working). Nothing to
/// do for a proven address.
pub async fn resend_verification(state: &AppState, session: &Session) -> Result<()> {
    rate_limit::require(
        state,
        &format!("verify:resend:user:{}", session.user_id),
        state.config.verification_resends_per_user,
    )
    .await?;
    let mut tx = state.db.begin().await?;
    let verified: bool =
        sqlx::query_scalar("SELECT email_verified_at IS NOT NULL FROM users WHERE id = $1")
            .bind(session.user_id)
            .fetch_one(&mut *tx)
            .await?;
    if !verified {
        outbox::record(&mut *tx, session.user_id, &EmailVerificationRequested {}).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Marks the link's address verified, redeeming the link. Who follows it
/// need not be signed in: the link alone proves the mail was read.
pub async fn verify_email(state: &AppState, token: &str) -> Result<()> {
    let token = LinkToken::parse(token).map_err(|_| AppError::Link(LinkProblem::Malformed))?;
    let mut tx = state.db.begin().await?;
    let user_id = tokens::redeem(&mut tx, &token, Purpose::EmailVerification).await?;
    sqlx::query(
        "UPDATE users SET email_verified_at = now() WHERE id = $1 AND email_verified_at IS NULL",
    )
    .bind(user_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(user_id, "email address verified");
    Ok(())
}
