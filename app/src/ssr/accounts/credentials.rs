//! The account's credential epoch (`users.credential_epoch`): one number
//! that moves whenever an earlier proof of identity must stop counting.
//!
//! A password change, a reset, "sign out everywhere", an address change and
//! deleting the account call [`bump_epoch`] on their own transaction. What
//! was issued under the old epoch dies with it: every outstanding mailed
//! link is revoked here, and a link (or anything else that records the
//! epoch it was issued under) is refused once the account's epoch moved,
//! which also catches a link minted after the bump from an older request.

use sqlx::{PgConnection, PgExecutor};

use crate::ssr::Result;

/// Moves the account's epoch on and revokes every live mailed link of the
/// account (reset, verification, address change and its cancellation).
/// Returns the new epoch, or None when the account is gone.
pub async fn bump_epoch(tx: &mut PgConnection, user_id: i64) -> Result<Option<i64>> {
    let epoch: Option<i64> = sqlx::query_scalar(
        "UPDATE users SET credential_epoch = credential_epoch + 1 WHERE id = $1
         RETURNING credential_epoch",
    )
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE account_tokens SET revoked_at = now()
         WHERE user_id = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > now()",
    )
    .bind(user_id)
    .execute(&mut *tx)
    .await?;
    Ok(epoch)
}

/// The account's epoch now, or None when the account is gone.
pub async fn current_epoch(db: impl PgExecutor<'_>, user_id: i64) -> Result<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT credential_epoch FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(db)
            .await?,
    )
}
