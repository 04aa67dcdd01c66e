//! Public profiles: the store in Postgres, the caches in front of it, and
//! how every instance learns of an edit. Owns the `profiles` table and every
//! cached copy of a profile; never serves a version older than the newest
//! one it has heard of.

mod cache;
mod invalidation;
mod store;

use crate::domain::{AvatarKey, ProfileUpdate};
use crate::dto::Profile;
use crate::error::AppError;
use crate::ssr::accounts::{recent_writes, Session};
use crate::ssr::events::outbox;
use crate::ssr::events::types::{AvatarReleased, ProfileUpdated};
use crate::ssr::infra::rate_limit;
use crate::ssr::{AppState, Error, Result};

pub use cache::{get, ProfileCache};
pub use invalidation::{invalidate, listen_for_invalidations, INVALIDATION_CHANNEL};

/// The signed-in user's own profile, from the primary: the edit form must
/// start from the current version, not a cached or replicated one.
pub async fn own(state: &AppState, session: &Session) -> Result<Profile> {
    store::by_user_id(state.db.primary(), session.user_id)
        .await?
        .ok_or(Error::App(AppError::NotFound))
}

/// Tells this instance that `name`'s profile is at `version` or newer (the
/// reader's own recent write, carried by its session): from now on no older
/// version is served here.
pub async fn learn_floor(state: &AppState, name: &str, version: i32) {
    state.profiles.raise_floor(name, version).await;
}

/// Commits the edit if nobody saved since `expected_version`, then tells
/// every cache (the next read repopulates from the committed row) and
/// remembers the write with the user, so that their own next reads, on any
/// instance, show it.
pub async fn update(
    state: &AppState,
    session: &Session,
    update: ProfileUpdate,
    expected_version: i32,
) -> Result<Profile> {
    rate_limit::require(
        state,
        &format!("profile_edit:user:{}", session.user_id),
        state.config.profile_edits_per_user,
    )
    .await?;

    let mut tx = state.db.begin().await?;
    let Some(version) =
        store::update_if_unchanged(&mut tx, session.user_id, &update, expected_version).await?
    else {
        tx.rollback().await?;
        let current_version = store::version_of(state.db.primary(), session.user_id).await?;
        return Err(AppError::Conflict { current_version }.into());
    };
    let updated = ProfileUpdated {
        username: session.username.clone(),
        version,
        display_name: update.display_name.as_str().to_owned(),
        bio: update.bio.as_str().to_owned(),
        location: update.location.as_ref().map(|v| v.as_str().to_owned()),
        website: update.website.as_ref().map(|v| v.as_str().to_owned()),
        avatar_url: update.avatar_url.as_ref().map(|v| v.as_str().to_owned()),
    };
    outbox::record(&mut *tx, session.user_id, &updated).await?;
    tx.commit().await?;

    published(state, session, version).await;
    own(state, session).await
}

/// After a committed edit: every cache is told (the next read repopulates
/// from the committed row), and the write is remembered with the user, so
/// that their own next reads, on any instance, show it.
pub async fn published(state: &AppState, session: &Session, version: i32) {
    if let Ok(username) = crate::domain::Username::parse(&session.username) {
        invalidate(state, &username, version).await;
    }
    recent_writes::remember(state, session.user_id, Some((&session.username, version))).await;
}

/// Shows `key` as the user's uploaded avatar (or none), on the caller's
/// transaction, with its events: the profile as it now is, and the release
/// of the picture it replaced. Returns the new version; the caller commits,
/// then calls [`published`].
pub async fn set_avatar(
    tx: &mut sqlx::PgConnection,
    session: &Session,
    key: Option<&AvatarKey>,
) -> Result<i32> {
    let (version, old) = store::set_avatar(&mut *tx, session.user_id, key).await?;
    let profile = store::by_user_id(&mut *tx, session.user_id)
        .await?
        .ok_or(Error::App(AppError::NotFound))?;
    let updated = ProfileUpdated {
        username: profile.username,
        version,
        display_name: profile.display_name,
        bio: profile.bio,
        location: profile.location,
        website: profile.website,
        avatar_url: profile.avatar_url,
    };
    outbox::record(&mut *tx, session.user_id, &updated).await?;
    if let Some(old) = old.filter(|old| Some(old.as_str()) != key.map(AvatarKey::as_str)) {
        outbox::record(&mut *tx, session.user_id, &AvatarReleased { key: old }).await?;
    }
    Ok(version)
}

/// Whether any profile shows the uploaded avatar `key`.
pub async fn avatar_in_use(db: impl sqlx::PgExecutor<'_>, key: &AvatarKey) -> Result<bool> {
    store::avatar_in_use(db, key).await
}
