//! The tokens of mailed links: issued, checked and redeemed here, stored
//! only as their SHA-256 (`account_tokens`).
//!
//! A token is issued by the `mail` consumer in the transaction that records
//! the mail as sent ([`issue`]), so the raw value lives only in that
//! process's memory and in the mail; the request that asked for the mail
//! only recorded an event. Issuing revokes the user's earlier live tokens of
//! the same purpose: only the newest link works.
//!
//! Redemption is one `UPDATE … WHERE used_at IS NULL … RETURNING` on the
//! caller's transaction ([`redeem`]): of two concurrent redemptions the
//! second waits for the first's row lock and then finds the token used, so
//! exactly one succeeds.

use std::time::Duration;

use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgExecutor};

use crate::domain::LinkToken;
use crate::error::{AppError, LinkProblem};
use crate::ssr::Result;

/// What a link is for: a token of one purpose never opens another's page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    PasswordReset,
    EmailVerification,
    /// Carries the new address it confirms.
    EmailChange,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::PasswordReset => "password_reset",
            Purpose::EmailVerification => "email_verification",
            Purpose::EmailChange => "email_change",
        }
    }

    /// How long a link works. A reset link opens the account to whoever
    /// holds it: 30 minutes (OWASP's Forgot Password cheat sheet) is time
    /// to read the mail, not time for a forgotten mailbox to be read by
    /// someone else. A verification link only proves the address: a day.
    pub fn lifetime(self) -> Duration {
        match self {
            Purpose::PasswordReset => Duration::from_secs(30 * 60),
            Purpose::EmailVerification => Duration::from_secs(24 * 3600),
            // Whoever holds it moves the account to their address: short.
            Purpose::EmailChange => Duration::from_secs(3600),
        }
    }
}

/// What is stored of a token. Plain SHA-256 (no salt, no stretching):
/// 256 random bits cannot be guessed from their hash, so a copy of the table
/// opens nothing; a password, which has little entropy, needs argon2.
fn digest(token: &LinkToken) -> Vec<u8> {
    Sha256::digest(token.as_str().as_bytes()).to_vec()
}

/// A new token for `user_id`, on the caller's transaction: the user's live
/// tokens of `purpose` are revoked, their rows a day past expiry deleted.
pub async fn issue(tx: &mut PgConnection, user_id: i64, purpose: Purpose) -> Result<LinkToken> {
    issue_with(tx, user_id, purpose, None).await
}

/// [`issue`] for [`Purpose::EmailChange`]: the token carries `new_email`.
pub async fn issue_email_change(
    tx: &mut PgConnection,
    user_id: i64,
    new_email: &str,
) -> Result<LinkToken> {
    issue_with(tx, user_id, Purpose::EmailChange, Some(new_email)).await
}

async fn issue_with(
    tx: &mut PgConnection,
    user_id: i64,
    purpose: Purpose,
    new_email: Option<&str>,
) -> Result<LinkToken> {
    revoke_all(&mut *tx, user_id, purpose).await?;
    sqlx::query(
        "DELETE FROM account_tokens
         WHERE user_id = $1 AND expires_at < now() - interval '1 day'",
    )
    .bind(user_id)
    .execute(&mut *tx)
    .await?;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = LinkToken::parse(&hex::encode(bytes))
        .map_err(|_| crate::ssr::Error::Internal("a fresh token does not parse".into()))?;
    sqlx::query(
        "INSERT INTO account_tokens (token_hash, user_id, purpose, expires_at, new_email)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4), $5)",
    )
    .bind(digest(&token))
    .bind(user_id)
    .bind(purpose.as_str())
    .bind(purpose.lifetime().as_secs_f64())
    .bind(new_email)
    .execute(&mut *tx)
    .await?;
    Ok(token)
}

/// Whose live token this is; otherwise the reason it is not live.
pub async fn check(db: impl PgExecutor<'_>, token: &LinkToken, purpose: Purpose) -> Result<i64> {
    let row: Option<(i64, bool, bool, bool)> = sqlx::query_as(
        "SELECT user_id, used_at IS NOT NULL, revoked_at IS NOT NULL, expires_at <= now()
         FROM account_tokens WHERE token_hash = $1 AND purpose = $2",
    )
    .bind(digest(token))
    .bind(purpose.as_str())
    .fetch_optional(db)
    .await?;
    let problem = match row {
        None => LinkProblem::Unknown,
        Some((_, true, _, _)) => LinkProblem::Used,
        Some((_, _, true, _)) => LinkProblem::Replaced,
        Some((_, _, _, true)) => LinkProblem::Expired,
        Some((user_id, false, false, false)) => return Ok(user_id),
    };
    Err(AppError::Link(problem).into())
}

/// Marks the token used and returns its user, or refuses it with the
/// reason. Exactly one of any number of concurrent calls for one token
/// succeeds (see the module comment); a caller whose transaction then rolls
/// back gives the token back.
pub async fn redeem(tx: &mut PgConnection, token: &LinkToken, purpose: Purpose) -> Result<i64> {
    let redeemed: Option<i64> = sqlx::query_scalar(
        "UPDATE account_tokens SET used_at = now()
         WHERE token_hash = $1 AND purpose = $2
           AND used_at IS NULL AND revoked_at IS NULL AND expires_at > now()
         RETURNING user_id",
    )
    .bind(digest(token))
    .bind(purpose.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    match redeemed {
        Some(user_id) => Ok(user_id),
        // Live by `check` yet not updated cannot happen within one
        // transaction (one `now()`); refused all the same, never redeemed.
        None => match check(&mut *tx, token, purpose).await {
            Ok(_) => Err(AppError::Link(LinkProblem::Used).into()),
            Err(refused) => Err(refused),
        },
    }
}

/// Redeems an email-change token: its user and the address it confirms.
pub async fn redeem_email_change(
    tx: &mut PgConnection,
    token: &LinkToken,
) -> Result<(i64, String)> {
    let user_id = redeem(&mut *tx, token, Purpose::EmailChange).await?;
    let new_email: Option<String> =
        sqlx::query_scalar("SELECT new_email FROM account_tokens WHERE token_hash = $1")
            .bind(digest(token))
            .fetch_one(&mut *tx)
            .await?;
    let new_email = new_email.ok_or_else(|| {
        crate::ssr::Error::Internal("an email-change token without its address".into())
    })?;
    Ok((user_id, new_email))
}

/// Revokes every live token of `purpose` of the user: a newer link was
/// issued, or (for resets) the password changed. An expired one stays
/// "expired": that is what its holder needs to hear.
pub async fn revoke_all(db: impl PgExecutor<'_>, user_id: i64, purpose: Purpose) -> Result<u64> {
    Ok(sqlx::query(
        "UPDATE account_tokens SET revoked_at = now()
         WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL AND revoked_at IS NULL
           AND expires_at > now()",
    )
    .bind(user_id)
    .bind(purpose.as_str())
    .execute(db)
    .await?
    .rows_affected())
}
