//! The people-search index, kept current from events. For now the index is
//! its bookkeeping only: the last profile version indexed per user
//! (`search_documents`), which the search feature extends with the
//! documents themselves.

use futures::future::BoxFuture;
use sqlx::PgConnection;

use crate::ssr::events::types::{AccountDeleted, ProfileUpdated, UserRegistered};
use crate::ssr::events::{Consumer, Event, EventPayload};
use crate::ssr::Result;

pub struct SearchIndex;

impl Consumer for SearchIndex {
    fn group(&self) -> &'static str {
        "search"
    }

    fn wants(&self, event_type: &str) -> bool {
        [
            UserRegistered::TYPE,
            ProfileUpdated::TYPE,
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
            match event.event_type.as_str() {
                UserRegistered::TYPE => {
                    let registered: UserRegistered = event.decode()?;
                    index(tx, event.user_id, &registered.username, 1).await
                }
                ProfileUpdated::TYPE => {
                    let updated: ProfileUpdated = event.decode()?;
                    index(tx, event.user_id, &updated.username, updated.version).await
                }
                _ => {
                    event.decode::<AccountDeleted>()?;
                    sqlx::query("DELETE FROM search_documents WHERE user_id = $1")
                        .bind(event.user_id)
                        .execute(&mut *tx)
                        .await?;
                    Ok(())
                }
            }
        })
    }
}

/// Versions only go forward: an older version arriving late changes nothing.
async fn index(tx: &mut PgConnection, user_id: i64, username: &str, version: i32) -> Result<()> {
    sqlx::query(
        "INSERT INTO search_documents (user_id, username, version) VALUES ($1, $2, $3)
         ON CONFLICT (user_id) DO UPDATE
         SET username = EXCLUDED.username, version = EXCLUDED.version, indexed_at = now()
         WHERE search_documents.version < EXCLUDED.version",
    )
    .bind(user_id)
    .bind(username)
    .bind(version)
    .execute(tx)
    .await?;
    Ok(())
}
