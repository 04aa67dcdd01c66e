//! The Redis side: which stream an event goes to, what an entry holds, and
//! the names of the keys around a stream.
//!
//! Events are partitioned by user over `partitions` streams,
//! `events:{p0}` … `events:{pN-1}`: one user's events are all in one stream,
//! in order, and a partition is read by one consumer of a group at a time
//! (see `consumer.rs`), which is how per-user order survives to the effect.
//! Every key that belongs to a partition (its dead letters, its consumers'
//! leases) carries the partition's hash tag `{pN}`, so that whatever is done
//! to them together (a dead letter written and acknowledged in one MULTI)
//! stays in one slot of a Redis Cluster.
//!
//! The number of partitions is fixed for the life of a deployment's streams:
//! changing it moves users to other streams, and an event published before
//! the change could be applied after a later one. Drain the outbox and the
//! groups first (every gauge at 0), then change it.

use std::time::Duration;

use redis::streams::{StreamId, StreamInfoGroupsReply};
use redis::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use super::outbox::Unsent;
use super::types::Event;
use crate::ssr::infra::redis::Redis;
use crate::ssr::{AppState, Error, Result};

/// The partition of a user's events.
pub fn partition_of(user_id: i64, partitions: u16) -> u16 {
    user_id.rem_euclid(i64::from(partitions.max(1))) as u16
}

pub fn stream_key(state: &AppState, partition: u16) -> String {
    state.key(&format!("events:{{p{partition}}}"))
}

/// Where a group's entries go after `max_deliveries` failed attempts: one
/// stream per group and partition, in the partition's slot, so an operator
/// can replay them into the same partition.
pub fn dead_letter_key(state: &AppState, partition: u16, group: &str) -> String {
    state.key(&format!("events:{{p{partition}}}:dead:{group}"))
}

/// Who reads `partition` for `group` (see `consumer.rs`).
pub fn lease_key(state: &AppState, partition: u16, group: &str) -> String {
    state.key(&format!("events:{{p{partition}}}:lease:{group}"))
}

/// Deletes the entries older than `retention` from every partition's
/// stream and from its groups' dead letters (`XTRIM … MINID`, exact):
/// an entry holds an event's payload (old and new addresses, a bio), which
/// must not outlive the outbox row it was copied from. Entry ids are the
/// Redis clock's milliseconds, so the cut is taken from Redis's own clock
/// (`TIME`), like the ids. One key per command: fine on a Redis Cluster.
/// Returns how many entries went.
pub async fn trim_by_age(state: &AppState, redis: &mut Redis, retention: Duration) -> Result<u64> {
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(redis).await?;
    let now_ms = secs * 1000 + micros / 1000;
    let cut = now_ms.saturating_sub(retention.as_millis() as u64);
    let min_id = format!("{cut}-0");
    let mut trimmed = 0;
    for partition in 0..state.config.events.partitions {
        let stream = stream_key(state, partition);
        let mut keys = vec![stream.clone()];
        let groups: redis::RedisResult<StreamInfoGroupsReply> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&stream)
            .query_async(redis)
            .await;
        match groups {
            Ok(reply) => keys.extend(
                reply
                    .groups
                    .iter()
                    .map(|group| dead_letter_key(state, partition, &group.name)),
            ),
            // No stream yet: nothing was published to this partition.
            Err(e) if e.code() == Some("ERR") => continue,
            Err(e) => return Err(e.into()),
        }
        for key in keys {
            let removed: u64 = redis::cmd("XTRIM")
                .arg(&key)
                .arg("MINID")
                .arg("=")
                .arg(&min_id)
                .query_async(redis)
                .await?;
            trimmed += removed;
        }
    }
    Ok(trimmed)
}

/// The fields of a stream entry, from an outbox row.
pub fn fields(row: &Unsent) -> [(&'static str, String); 7] {
    [
        ("id", row.event_id.to_string()),
        ("type", row.event_type.clone()),
        ("v", row.schema_version.to_string()),
        ("user", row.aggregate_id.to_string()),
        ("seq", row.aggregate_seq.to_string()),
        ("at", row.created_us.to_string()),
        ("payload", row.payload.clone()),
    ]
}

/// An entry back as an [`Event`]. An entry that is not one (written by
/// hand, or by a newer build with other fields) is an error no retry fixes.
pub fn event_of(entry: &StreamId) -> Result<Event> {
    let text = |field: &str| -> Result<String> {
        match entry.map.get(field) {
            Some(Value::BulkString(bytes)) => {
                String::from_utf8(bytes.clone()).map_err(|_| malformed(entry, field, "not UTF-8"))
            }
            Some(Value::SimpleString(s)) => Ok(s.clone()),
            _ => Err(malformed(entry, field, "missing")),
        }
    };
    let number = |field: &str| -> Result<i64> {
        text(field)?
            .parse()
            .map_err(|_| malformed(entry, field, "not a number"))
    };
    let at_us = number("at")?;
    Ok(Event {
        id: Uuid::parse_str(&text("id")?).map_err(|_| malformed(entry, "id", "not a UUID"))?,
        event_type: text("type")?,
        schema_version: i16::try_from(number("v")?)
            .map_err(|_| malformed(entry, "v", "out of range"))?,
        user_id: number("user")?,
        seq: number("seq")?,
        occurred_at: OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_us) * 1000)
            .map_err(|_| malformed(entry, "at", "out of range"))?,
        payload: text("payload")?,
    })
}

fn malformed(entry: &StreamId, field: &str, why: &str) -> Error {
    Error::Internal(format!("stream entry {}: field {field} {why}", entry.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_always_lands_in_the_same_partition() {
        assert_eq!(partition_of(17, 8), 1);
        assert_eq!(partition_of(17, 8), partition_of(17, 8));
        assert!((0..1000).all(|id| partition_of(id, 8) < 8));
        assert_eq!(partition_of(5, 0), 0, "no division by zero");
    }

    #[test]
    fn an_outbox_row_survives_the_trip_through_an_entry() {
        let row = Unsent {
            id: 9,
            event_id: Uuid::new_v4(),
            aggregate_id: 42,
            aggregate_seq: 3,
            event_type: "profile.updated".into(),
            schema_version: 1,
            payload: r#"{"a":1}"#.into(),
            created_us: 1_700_000_000_123_456,
        };
        let entry = StreamId {
            id: "1-0".into(),
            map: fields(&row)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), Value::BulkString(v.into_bytes())))
                .collect(),
            ..Default::default()
        };
        let event = event_of(&entry).unwrap();
        assert_eq!(event.id, row.event_id);
        assert_eq!((event.user_id, event.seq), (42, 3));
        assert_eq!(event.event_type, "profile.updated");
        assert_eq!(
            event.occurred_at.unix_timestamp_nanos(),
            1_700_000_000_123_456_000
        );
        let broken = StreamId {
            id: "2-0".into(),
            ..Default::default()
        };
        assert!(event_of(&broken).is_err());
    }
}
