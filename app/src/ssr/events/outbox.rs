//! Writing events: one row in `outbox`, inside the caller's transaction.
//!
//! `record` is the only way an event enters Folio. It must run on the
//! transaction that makes the change (`&mut *tx`), so that the event and the
//! change commit together or not at all; a change held outside Postgres (a
//! session in Redis) records its event right after, in a statement of its
//! own.

use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::types::{Event, EventPayload};
use crate::ssr::{Error, Result};

/// Records `payload` as an event about `user_id`. Returns its id.
///
/// One statement: it takes the user's next sequence number (locking the
/// user's `event_sequences` row until the transaction ends, which is what
/// keeps one user's events in commit order) and inserts the row.
pub async fn record<P: EventPayload>(
    db: impl PgExecutor<'_>,
    user_id: i64,
    payload: &P,
) -> Result<Uuid> {
    let json = serde_json::to_value(payload)
        .map_err(|e| Error::Internal(format!("{} to JSON: {e}", P::TYPE)))?;
    Ok(sqlx::query_scalar(
        "WITH next AS (
             INSERT INTO event_sequences AS s (aggregate_id, last_seq) VALUES ($1, 1)
             ON CONFLICT (aggregate_id) DO UPDATE SET last_seq = s.last_seq + 1
             RETURNING last_seq
         )
         INSERT INTO outbox (aggregate_id, aggregate_seq, event_type, schema_version, payload)
         SELECT $1, last_seq, $2, $3, $4 FROM next
         RETURNING event_id",
    )
    .bind(user_id)
    .bind(P::TYPE)
    .bind(P::VERSION)
    .bind(json)
    .fetch_one(db)
    .await?)
}

/// Records `payload` as an event about the account whose address is
/// `email`, if there is one. Returns its id, or None without an account.
///
/// One statement either way, for the forgotten-password form: asking for
/// an address without an account must cost what asking for one with an
/// account costs, or the time of the answer would tell which it is.
pub async fn record_for_email<P: EventPayload>(
    db: impl PgExecutor<'_>,
    email: &str,
    payload: &P,
) -> Result<Option<Uuid>> {
    let json = serde_json::to_value(payload)
        .map_err(|e| Error::Internal(format!("{} to JSON: {e}", P::TYPE)))?;
    Ok(sqlx::query_scalar(
        "WITH account AS (SELECT id FROM users WHERE email = $1),
         next AS (
             INSERT INTO event_sequences AS s (aggregate_id, last_seq)
             SELECT id, 1 FROM account
             ON CONFLICT (aggregate_id) DO UPDATE SET last_seq = s.last_seq + 1
             RETURNING aggregate_id, last_seq
         )
         INSERT INTO outbox (aggregate_id, aggregate_seq, event_type, schema_version, payload)
         SELECT aggregate_id, last_seq, $2, $3, $4 FROM next
         RETURNING event_id",
    )
    .bind(email)
    .bind(P::TYPE)
    .bind(P::VERSION)
    .bind(json)
    .fetch_optional(db)
    .await?)
}

/// The event `event_id` as recorded, if its row is still kept: what a
/// consumer with outside effects acts on, rather than a stream entry that
/// anyone able to write to the events Redis could have written.
pub async fn find(db: impl PgExecutor<'_>, event_id: Uuid) -> Result<Option<Event>> {
    let row: Option<(i64, i64, String, i16, String, time::OffsetDateTime)> = sqlx::query_as(
        "SELECT aggregate_id, aggregate_seq, event_type, schema_version, payload::text, created_at
         FROM outbox WHERE event_id = $1",
    )
    .bind(event_id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(
        |(user_id, seq, event_type, schema_version, payload, occurred_at)| Event {
            id: event_id,
            event_type,
            schema_version,
            user_id,
            seq,
            occurred_at,
            payload,
        },
    ))
}

/// Unsent rows and the age of the oldest, in seconds (0 when none wait).
pub async fn backlog(db: impl PgExecutor<'_>) -> Result<(i64, f64)> {
    Ok(sqlx::query_as(
        "SELECT count(*),
                COALESCE(extract(epoch FROM clock_timestamp() - min(created_at)), 0)::float8
         FROM outbox WHERE sent_at IS NULL",
    )
    .fetch_one(db)
    .await?)
}

/// A row the relay publishes.
#[derive(sqlx::FromRow, Debug)]
pub struct Unsent {
    pub id: i64,
    pub event_id: Uuid,
    pub aggregate_id: i64,
    pub aggregate_seq: i64,
    pub event_type: String,
    pub schema_version: i16,
    pub payload: String,
    /// Microseconds since the epoch.
    pub created_us: i64,
}

/// The oldest unsent rows, in `id` order. No cursor: whatever is unsent is
/// read, so a row whose transaction committed late (with a lower id than
/// rows already sent) is read by the next call. See `relay.rs`.
pub async fn unsent(conn: &mut PgConnection, limit: i64) -> Result<Vec<Unsent>> {
    Ok(sqlx::query_as(
        "SELECT id, event_id, aggregate_id, aggregate_seq, event_type, schema_version,
                payload::text AS payload,
                (extract(epoch FROM created_at) * 1000000)::int8 AS created_us
         FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

pub async fn mark_sent(conn: &mut PgConnection, ids: &[i64]) -> Result<()> {
    sqlx::query("UPDATE outbox SET sent_at = now() WHERE id = ANY($1) AND sent_at IS NULL")
        .bind(ids)
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes up to `limit` sent rows older than `retention_secs`, and as many
/// processed-event records. True when either table may have more to delete.
pub async fn clean_up(conn: &mut PgConnection, retention_secs: i64, limit: i64) -> Result<bool> {
    // Oldest ids first: the rows past retention are at the start of the
    // primary key, so each call reads little beyond what it deletes.
    let outbox = sqlx::query(
        "DELETE FROM outbox WHERE id IN (
             SELECT id FROM outbox
             WHERE sent_at IS NOT NULL AND sent_at < now() - make_interval(secs => $1)
             ORDER BY id LIMIT $2)",
    )
    .bind(retention_secs as f64)
    .bind(limit)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let processed = sqlx::query(
        "DELETE FROM processed_events WHERE (consumer, event_id) IN (
             SELECT consumer, event_id FROM processed_events
             WHERE processed_at < now() - make_interval(secs => $1)
             ORDER BY processed_at LIMIT $2)",
    )
    .bind(retention_secs as f64)
    .bind(limit)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let limit = u64::try_from(limit).unwrap_or(0);
    Ok(outbox >= limit || processed >= limit)
}
