//! The people-search index, kept current from events: one row per public
//! profile in `search_documents` (what the public page shows, never the
//! email), from which Postgres derives the full-text document and the
//! trigrams (see its migration). The search itself is `crate::ssr::search`.
//!
//! Versions only go forward: a row moves only to a newer profile version,
//! so a late or repeated event never indexes an older profile over a newer
//! one. A deleted account's row goes at once.

use futures::future::BoxFuture;
use sqlx::PgConnection;

use time::OffsetDateTime;

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
                    event.decode::<UserRegistered>()?;
                    index_current(tx, event.user_id).await
                }
                ProfileUpdated::TYPE => {
                    let updated: ProfileUpdated = event.decode()?;
                    let document = Document {
                        username: &updated.username,
                        version: updated.version,
                        display_name: &updated.display_name,
                        location: updated.location.as_deref().unwrap_or(""),
                        bio: &updated.bio,
                        updated_at: event.occurred_at,
                    };
                    index(tx, event.user_id, &document).await
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

/// What the search shows of a profile, at one version.
struct Document<'a> {
    username: &'a str,
    version: i32,
    display_name: &'a str,
    location: &'a str,
    bio: &'a str,
    updated_at: OffsetDateTime,
}

/// Versions only go forward: an older version arriving late changes nothing.
async fn index(tx: &mut PgConnection, user_id: i64, doc: &Document<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO search_documents
             (user_id, username, version, display_name, location, bio, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (user_id) DO UPDATE
         SET username = EXCLUDED.username, version = EXCLUDED.version,
             display_name = EXCLUDED.display_name, location = EXCLUDED.location,
             bio = EXCLUDED.bio, updated_at = EXCLUDED.updated_at, indexed_at = now()
         WHERE search_documents.version < EXCLUDED.version",
    )
    .bind(user_id)
    .bind(doc.username)
    .bind(doc.version)
    .bind(doc.display_name)
    .bind(doc.location)
    .bind(doc.bio)
    .bind(doc.updated_at)
    .execute(tx)
    .await?;
    Ok(())
}

/// A sign-up's event names only the account: its profile (version 1, or
/// newer if edits committed since) is read from the row, in this
/// transaction on the primary. An account already gone indexes nothing.
async fn index_current(tx: &mut PgConnection, user_id: i64) -> Result<()> {
    let row: Option<(String, i32, String, String, String, OffsetDateTime)> = sqlx::query_as(
        "SELECT u.username, p.version, u.display_name, coalesce(p.location, ''), p.bio, p.updated_at
         FROM users u JOIN profiles p ON p.user_id = u.id WHERE u.id = $1",
    )
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((username, version, display_name, location, bio, updated_at)) = row else {
        return Ok(());
    };
    let document = Document {
        username: &username,
        version,
        display_name: &display_name,
        location: &location,
        bio: &bio,
        updated_at,
    };
    index(tx, user_id, &document).await
}
