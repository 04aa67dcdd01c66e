//! The tokens of mailed links: issued, checked and redeemed here, stored
//! only as their SHA-256 (`account_tokens`).
//!
//! A link's token is issued by the `mail` consumer for the event that asks
//! for it ([`issue_for_event`]), on a transaction of its own that commits
//! before the mail is sent: a mail never carries a token that is not there
//! yet. The token is derived from the event (HMAC of the event id and the
//! purpose, under the deployment's `link_tokens` key), so the retry of a
//! send that failed, or of a consumer that died after the commit, finds the
//! committed row and mails the same link again instead of minting one that
//! would revoke the first. The raw value is never stored: only the process
//! that mails it computes it. Issuing revokes the user's earlier live tokens
//! of the same purpose: only the newest link works.
//!
//! Every token records the account's credential epoch it was issued under
//! (`accounts::credentials`): it is refused once the epoch moved, and
//! moving it revokes every live token of the account.
//!
//! Redemption locks the account's row, then marks the token used with one
//! `UPDATE … WHERE used_at IS NULL … RETURNING` on the caller's transaction
//! ([`redeem`]): of two concurrent redemptions the second waits for the
//! first and then finds the token used, so exactly one succeeds; and a
//! redemption racing an epoch bump (which also locks the account's row
//! first) sees the bump or precedes it, never half of it.

use std::time::Duration;

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

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
    /// "This wasn't me", mailed to the old address with the notice of a
    /// change: cancels the pending change.
    EmailChangeCancel,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::PasswordReset => "password_reset",
            Purpose::EmailVerification => "email_verification",
            Purpose::EmailChange => "email_change",
            Purpose::EmailChangeCancel => "email_change_cancel",
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
            // Useful exactly as long as the change it cancels is pending.
            Purpose::EmailChangeCancel => Duration::from_secs(3600),
        }
    }
}

/// What is stored of a token. Plain SHA-256 (no salt, no stretching):
/// 256 random bits cannot be guessed from their hash, so a copy of the table
/// opens nothing; a password, which has little entropy, needs argon2.
fn digest(token: &LinkToken) -> Vec<u8> {
    Sha256::digest(token.as_str().as_bytes()).to_vec()
}

/// The key of [`issue_for_event`]'s derivation: a deployment secret, so
/// every instance derives the same token for an event.
pub const KEY_NAME: &str = "link_tokens";

/// A new random token for `user_id` under the account's current epoch, on
/// the caller's transaction: the user's live tokens of `purpose` are
/// revoked. For tests and tools; mail goes through [`issue_for_event`].
pub async fn issue(tx: &mut PgConnection, user_id: i64, purpose: Purpose) -> Result<LinkToken> {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = token_of(bytes)?;
    let epoch = super::credentials::current_epoch(&mut *tx, user_id)
        .await?
        .ok_or_else(|| crate::ssr::Error::Internal("a token for no account".into()))?;
    insert(tx, &token, user_id, purpose, epoch, None).await?;
    Ok(token)
}

/// [`issue`] for [`Purpose::EmailChange`]: the token carries `new_email`.
pub async fn issue_email_change(
    tx: &mut PgConnection,
    user_id: i64,
    new_email: &str,
) -> Result<LinkToken> {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = token_of(bytes)?;
    let epoch = super::credentials::current_epoch(&mut *tx, user_id)
        .await?
        .ok_or_else(|| crate::ssr::Error::Internal("a token for no account".into()))?;
    insert(
        tx,
        &token,
        user_id,
        Purpose::EmailChange,
        epoch,
        Some(new_email),
    )
    .await?;
    Ok(token)
}

/// What an event asks a link for.
pub struct LinkRequest<'a> {
    pub event_id: Uuid,
    pub user_id: i64,
    pub purpose: Purpose,
    /// The credential epoch the request was made under: no link is minted
    /// once the account's has moved past it.
    pub epoch: i64,
    /// The address an email-change link confirms.
    pub new_email: Option<&'a str>,
}

/// The token of the link `request` asks for, committed on `tx` (the caller
/// commits before mailing it), or None when no link is worth mailing: the
/// account is gone, its epoch moved past the request's, or the token of
/// this very request was used, revoked or has expired since an earlier
/// delivery committed it. A redelivery of a committed, still live token
/// returns the same token: the same link goes out again.
pub async fn issue_for_event(
    tx: &mut PgConnection,
    key: &[u8; 32],
    request: &LinkRequest<'_>,
) -> Result<Option<LinkToken>> {
    let token = derive(key, request.event_id, request.purpose)?;
    // The account's row first, as redemption and `bump_epoch` lock it.
    let epoch: Option<i64> =
        sqlx::query_scalar("SELECT credential_epoch FROM users WHERE id = $1 FOR UPDATE")
            .bind(request.user_id)
            .fetch_optional(&mut *tx)
            .await?;
    if epoch != Some(request.epoch) {
        return Ok(None);
    }
    let earlier: Option<bool> = sqlx::query_scalar(
        "SELECT used_at IS NULL AND revoked_at IS NULL AND expires_at > now()
         FROM account_tokens WHERE token_hash = $1",
    )
    .bind(digest(&token))
    .fetch_optional(&mut *tx)
    .await?;
    match earlier {
        Some(true) => Ok(Some(token)),
        Some(false) => Ok(None),
        None => {
            insert(
                tx,
                &token,
                request.user_id,
                request.purpose,
                request.epoch,
                request.new_email,
            )
            .await?;
            Ok(Some(token))
        }
    }
}

/// HMAC-SHA256 of the event id and purpose: 256 bits nobody without the
/// key can compute, the same on every delivery of the event.
fn derive(key: &[u8; 32], event_id: Uuid, purpose: Purpose) -> Result<LinkToken> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(b"folio link token v1\0");
    mac.update(event_id.as_bytes());
    mac.update(purpose.as_str().as_bytes());
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(&mac.finalize().into_bytes());
    token_of(bytes)
}

fn token_of(bytes: [u8; 32]) -> Result<LinkToken> {
    LinkToken::parse(&hex::encode(bytes))
        .map_err(|_| crate::ssr::Error::Internal("a fresh token does not parse".into()))
}

/// Stores `token`: the user's live tokens of `purpose` are revoked, their
/// rows a day past expiry deleted.
async fn insert(
    tx: &mut PgConnection,
    token: &LinkToken,
    user_id: i64,
    purpose: Purpose,
    epoch: i64,
    new_email: Option<&str>,
) -> Result<()> {
    revoke_all(&mut *tx, user_id, purpose).await?;
    sqlx::query(
        "DELETE FROM account_tokens
         WHERE user_id = $1 AND expires_at < now() - interval '1 day'",
    )
    .bind(user_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO account_tokens
             (token_hash, user_id, purpose, expires_at, new_email, credential_epoch)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4), $5, $6)",
    )
    .bind(digest(token))
    .bind(user_id)
    .bind(purpose.as_str())
    .bind(purpose.lifetime().as_secs_f64())
    .bind(new_email)
    .bind(epoch)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Whose live token this is; otherwise the reason it is not live. A token
/// issued under an epoch the account has left is "replaced", unless it had
/// expired anyway: that is what its holder needs to hear.
pub async fn check(db: impl PgExecutor<'_>, token: &LinkToken, purpose: Purpose) -> Result<i64> {
    let row: Option<(i64, bool, bool, bool, bool)> = sqlx::query_as(
        "SELECT t.user_id, t.used_at IS NOT NULL, t.revoked_at IS NOT NULL,
                t.expires_at <= now(), t.credential_epoch <> u.credential_epoch
         FROM account_tokens t JOIN users u ON u.id = t.user_id
         WHERE t.token_hash = $1 AND t.purpose = $2",
    )
    .bind(digest(token))
    .bind(purpose.as_str())
    .fetch_optional(db)
    .await?;
    let problem = match row {
        None => LinkProblem::Unknown,
        Some((_, true, _, _, _)) => LinkProblem::Used,
        Some((_, _, true, _, _)) => LinkProblem::Replaced,
        Some((_, _, _, true, _)) => LinkProblem::Expired,
        Some((_, _, _, _, true)) => LinkProblem::Replaced,
        Some((user_id, false, false, false, false)) => return Ok(user_id),
    };
    Err(AppError::Link(problem).into())
}

/// Marks the token used and returns its user, or refuses it with the
/// reason. Exactly one of any number of concurrent calls for one token
/// succeeds (see the module comment); a caller whose transaction then rolls
/// back gives the token back. The account's row stays locked until the
/// caller's transaction ends: its epoch cannot move meanwhile.
pub async fn redeem(tx: &mut PgConnection, token: &LinkToken, purpose: Purpose) -> Result<i64> {
    let owner: Option<i64> = sqlx::query_scalar(
        "SELECT user_id FROM account_tokens WHERE token_hash = $1 AND purpose = $2",
    )
    .bind(digest(token))
    .bind(purpose.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(owner) = owner else {
        return Err(AppError::Link(LinkProblem::Unknown).into());
    };
    sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE")
        .bind(owner)
        .execute(&mut *tx)
        .await?;
    let redeemed: Option<i64> = sqlx::query_scalar(
        "UPDATE account_tokens t SET used_at = now()
         FROM users u
         WHERE t.token_hash = $1 AND t.purpose = $2 AND u.id = t.user_id
           AND t.used_at IS NULL AND t.revoked_at IS NULL AND t.expires_at > now()
           AND t.credential_epoch = u.credential_epoch
         RETURNING t.user_id",
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

/// The address a live email-change token confirms; otherwise why not.
pub async fn check_email_change(db: &sqlx::PgPool, token: &LinkToken) -> Result<String> {
    check(db, token, Purpose::EmailChange).await?;
    let new_email: Option<String> =
        sqlx::query_scalar("SELECT new_email FROM account_tokens WHERE token_hash = $1")
            .bind(digest(token))
            .fetch_one(db)
            .await?;
    new_email.ok_or_else(|| {
        crate::ssr::Error::Internal("an email-change token without its address".into())
    })
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
/// issued, or a change was cancelled. An expired one stays
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
