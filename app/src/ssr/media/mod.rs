//! Uploaded avatars: processing (`process`), object storage (`store`), and
//! the upload, removal and clean-up services. Owns every file under
//! `avatars/` of the media store; never stores a byte it did not encode
//! itself (the upload is decoded and re-encoded, never kept), and never
//! deletes a file a profile still names.
//!
//! One advisory lock per key orders an upload against a clean-up of the
//! same picture: an upload takes it before writing the files and keeps it
//! until the profile naming them has committed; the clean-up takes it, then
//! asks whether any profile names the key, and deletes only if none does.
//! So a clean-up either ran before the upload (which then writes the files
//! again) or sees the profile that uses them.

mod process;
mod store;

use std::time::Instant;

use sqlx::PgConnection;

pub use process::{
    decode_cost, default_slots, process_now, Processed, Processor, MAX_DECODE_BYTES,
};
pub use store::{MediaStore, MediaStoreConfig};

use crate::domain::{AvatarKey, AvatarRefusal, AVATAR_SIZES};
use crate::dto::Profile;
use crate::error::{AppError, FieldErrors};
use crate::ssr::accounts::Session;
use crate::ssr::events::outbox;
use crate::ssr::events::types::AvatarReleased;
use crate::ssr::infra::rate_limit;
use crate::ssr::{profiles, AppState, Result};

/// The store and the processing slots.
#[derive(Clone, Debug)]
pub struct Media {
    pub store: MediaStore,
    pub processor: Processor,
}

impl std::fmt::Debug for Processor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Processor")
    }
}

/// The form field of the file, and the key of its errors.
pub const AVATAR_FIELD: &str = "avatar";

/// The refusal as the field error the form shows.
pub fn refused(refusal: AvatarRefusal) -> AppError {
    AppError::Validation(FieldErrors::single(AVATAR_FIELD, refusal.message()))
}

/// An upload counted against the user's quota. Only [`admit`] makes one,
/// so no upload is processed uncounted, and the route asks for it before
/// reading the body: a user out of uploads costs no 8 MB read.
#[derive(Debug)]
pub struct Admitted(());

/// Counts an upload against the user's quota, or refuses it (429).
pub async fn admit(state: &AppState, session: &Session) -> Result<Admitted> {
    rate_limit::require(
        state,
        &format!("avatar_upload:user:{}", session.user_id),
        state.config.avatar_uploads_per_user,
    )
    .await?;
    Ok(Admitted(()))
}

/// Makes `bytes` the user's avatar: processed, stored (once per picture),
/// shown on their profile from the next read on. The picture it replaces is
/// released (the `media` consumer deletes its files if nobody else uses it).
pub async fn upload_avatar(
    state: &AppState,
    session: &Session,
    _admitted: Admitted,
    bytes: Vec<u8>,
) -> Result<Profile> {
    let started = Instant::now();
    let processed = match state.media.processor.process(bytes).await? {
        Ok(processed) => processed,
        Err(refusal) => {
            count(state, refusal.code());
            return Err(refused(refusal).into());
        }
    };
    state
        .metrics
        .histogram("folio_avatar_processing_seconds", &[])
        .record(started.elapsed().as_secs_f64());
    tracing::info!(
        format = ?processed.format,
        width = processed.width,
        height = processed.height,
        decode_ms = processed.decode.as_millis() as u64,
        resize_encode_ms = processed.resize_and_encode.as_millis() as u64,
        "avatar processed"
    );
    let key = processed.key.clone();
    let mut wrote = false;
    let committed: Result<i32> = async {
        let mut tx = state.db.begin().await?;
        lock(&mut tx, &key).await?;
        for (size, file) in processed.files {
            wrote |= state
                .media
                .store
                .put_if_absent(&key.object_name(size), file)
                .await?;
        }
        let version = profiles::set_avatar(&mut tx, session, Some(&key)).await?;
        tx.commit().await?;
        Ok(version)
    }
    .await;
    let version = match committed {
        Ok(version) => version,
        Err(error) => {
            // Files written for a profile that did not commit: nobody names
            // them, and the clean-up is told so (best effort).
            if wrote {
                let released = AvatarReleased {
                    key: key.as_str().to_owned(),
                };
                let _ = outbox::record(state.db.primary(), session.user_id, &released).await;
            }
            count(state, "failed");
            return Err(error);
        }
    };
    count(state, "stored");
    profiles::published(state, session, version).await;
    profiles::own(state, session).await
}

/// Shows no uploaded avatar on the user's profile any more (the pasted
/// address, if any, shows again), and releases the picture.
pub async fn remove_avatar(state: &AppState, session: &Session) -> Result<Profile> {
    rate_limit::require(
        state,
        &format!("avatar_upload:user:{}", session.user_id),
        state.config.avatar_uploads_per_user,
    )
    .await?;
    let mut tx = state.db.begin().await?;
    let version = profiles::set_avatar(&mut tx, session, None).await?;
    tx.commit().await?;
    profiles::published(state, session, version).await;
    profiles::own(state, session).await
}

/// A stored file, by the name its URL gives (`<key>-<size>.webp`).
pub async fn file(state: &AppState, name: &str) -> Result<Option<bytes::Bytes>> {
    state.media.store.get(name).await
}

/// The clean-up of a released picture (the `media` consumer's effect, on
/// its transaction): deletes its files unless a profile still names it.
/// Idempotent: files already gone are no error.
pub async fn collect(tx: &mut PgConnection, store: &MediaStore, key: &AvatarKey) -> Result<bool> {
    lock(tx, key).await?;
    if profiles::avatar_in_use(&mut *tx, key).await? {
        return Ok(false);
    }
    for size in AVATAR_SIZES {
        store.delete(&key.object_name(size)).await?;
    }
    Ok(true)
}

/// The key's advisory lock, until the transaction ends (module comment).
async fn lock(tx: &mut PgConnection, key: &AvatarKey) -> Result<()> {
    // Two-integer form: the first names Folio's media locks, so they
    // cannot meet another feature's.
    const MEDIA_LOCKS: i32 = 0x6d65_6469; // "medi"
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(MEDIA_LOCKS)
        .bind(key.as_str())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// `folio_avatar_uploads_total{result}`: stored, failed, or a refusal's code.
fn count(state: &AppState, result: &str) {
    state
        .metrics
        .counter(
            "folio_avatar_uploads_total",
            &[("result", result.to_owned())],
        )
        .increment(1);
}
