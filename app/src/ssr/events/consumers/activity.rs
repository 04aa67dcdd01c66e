//! The account page's security history: a row in `account_activity` for
//! each sign-in from a new device, password change, email change and
//! revocation of sessions; all of a user's rows go with the account.

use futures::future::BoxFuture;
use sqlx::{PgConnection, PgExecutor};
use time::OffsetDateTime;

use crate::dto::{ActivityEntry, ActivityKind};

use crate::ssr::events::types::{
    AccountDeleted, EmailChanged, LoginGuessing, Origin, PasswordChanged, SessionCreated,
    SessionsRevoked,
};
use crate::ssr::events::{Consumer, Event, EventPayload};
use crate::ssr::Result;

pub struct Activity;

impl Consumer for Activity {
    fn group(&self) -> &'static str {
        "activity"
    }

    fn wants(&self, event_type: &str) -> bool {
        [
            SessionCreated::TYPE,
            LoginGuessing::TYPE,
            PasswordChanged::TYPE,
            EmailChanged::TYPE,
            SessionsRevoked::TYPE,
            AccountDeleted::TYPE,
        ]
        .contains(&event_type)
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        event: &'a Event,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let (kind, origin, count) = match event.event_type.as_str() {
                SessionCreated::TYPE => {
                    ("new_sign_in", event.decode::<SessionCreated>()?.origin, 0)
                }
                LoginGuessing::TYPE => (
                    "sign_ins_blocked",
                    event.decode::<LoginGuessing>()?.origin,
                    0,
                ),
                PasswordChanged::TYPE => (
                    "password_changed",
                    event.decode::<PasswordChanged>()?.origin,
                    0,
                ),
                EmailChanged::TYPE => ("email_changed", event.decode::<EmailChanged>()?.origin, 0),
                SessionsRevoked::TYPE => {
                    let revoked: SessionsRevoked = event.decode()?;
                    ("sessions_revoked", revoked.origin, revoked.count)
                }
                _ => {
                    event.decode::<AccountDeleted>()?;
                    sqlx::query("DELETE FROM account_activity WHERE user_id = $1")
                        .bind(event.user_id)
                        .execute(&mut *tx)
                        .await?;
                    return Ok(());
                }
            };
            record(tx, event, kind, &origin, count).await
        })
    }
}

async fn record(
    tx: &mut PgConnection,
    event: &Event,
    kind: &str,
    origin: &Origin,
    count: u32,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO account_activity (user_id, event_id, kind, occurred_at, ip, device, count)
         VALUES ($1, $2, $3, $4, left($5, 64), left($6, 100), $7)",
    )
    .bind(event.user_id)
    .bind(event.id)
    .bind(kind)
    .bind(event.occurred_at)
    .bind(&origin.ip)
    .bind(&origin.device)
    .bind(i32::try_from(count).unwrap_or(i32::MAX))
    .execute(tx)
    .await?;
    Ok(())
}

/// The user's newest `limit` entries, newest first.
pub async fn recent(
    db: impl PgExecutor<'_>,
    user_id: i64,
    limit: i64,
) -> Result<Vec<ActivityEntry>> {
    let rows: Vec<(String, OffsetDateTime, String, String, i32)> = sqlx::query_as(
        "SELECT kind, occurred_at, ip, device, count FROM account_activity
         WHERE user_id = $1 ORDER BY occurred_at DESC, id DESC LIMIT $2",
    )
    .bind(user_id)
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(kind, at, ip, device, count)| {
            let kind = match kind.as_str() {
                "new_sign_in" => ActivityKind::NewSignIn,
                "password_changed" => ActivityKind::PasswordChanged,
                "email_changed" => ActivityKind::EmailChanged,
                "sessions_revoked" => ActivityKind::SessionsRevoked,
                "sign_ins_blocked" => ActivityKind::SignInsBlocked,
                _ => return None, // the table's CHECK allows no other
            };
            Some(ActivityEntry {
                kind,
                occurred_at_ms: u64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0),
                ip,
                device,
                count: u32::try_from(count).unwrap_or(0),
            })
        })
        .collect())
}
