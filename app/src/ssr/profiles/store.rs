//! The profiles in Postgres: the one public read, the owner's read, the edit.
//! Every function takes the executor to use, so the caller decides which
//! database serves it (a write's transaction, the primary, a replica).

use sqlx::PgExecutor;

use crate::domain::{AvatarKey, ProfileUpdate};
use crate::dto::{AvatarImage, Profile};
use crate::ssr::Result;

/// A row of the public read. Mapped by column name, not position.
#[derive(sqlx::FromRow)]
struct ProfileRow {
    username: String,
    display_name: String,
    bio: String,
    avatar_url: Option<String>,
    location: Option<String>,
    website: Option<String>,
    version: i32,
    avatar_key: Option<String>,
}

impl From<ProfileRow> for Profile {
    fn from(row: ProfileRow) -> Self {
        Profile {
            username: row.username,
            display_name: row.display_name,
            bio: row.bio,
            avatar_url: row.avatar_url,
            location: row.location,
            website: row.website,
            version: row.version,
            // The column's CHECK makes every stored key parse.
            avatar: row
                .avatar_key
                .as_deref()
                .and_then(|key| AvatarKey::parse(key).ok())
                .map(|key| AvatarImage::of(&key)),
        }
    }
}

/// `users_username_key` finds the user, the primary key finds the profile.
pub async fn by_username(db: impl PgExecutor<'_>, username: &str) -> Result<Option<Profile>> {
    let row: Option<ProfileRow> = sqlx::query_as(
        "SELECT u.username, u.display_name, p.bio, p.avatar_url, p.location, p.website, p.version,
                p.avatar_key
         FROM users u JOIN profiles p ON p.user_id = u.id
         WHERE u.username = $1",
    )
    .bind(username)
    .fetch_optional(db)
    .await?;
    Ok(row.map(Profile::from))
}

pub async fn by_user_id(db: impl PgExecutor<'_>, user_id: i64) -> Result<Option<Profile>> {
    let row: Option<ProfileRow> = sqlx::query_as(
        "SELECT u.username, u.display_name, p.bio, p.avatar_url, p.location, p.website, p.version,
                p.avatar_key
         FROM users u JOIN profiles p ON p.user_id = u.id
         WHERE u.id = $1",
    )
    .bind(user_id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(Profile::from))
}

/// Writes the edit if the profile is still at `expected_version`, and
/// returns the new version; `None` when someone saved in between.
pub async fn update_if_unchanged(
    tx: &mut sqlx::PgConnection,
    user_id: i64,
    update: &ProfileUpdate,
    expected_version: i32,
) -> Result<Option<i32>> {
    let bumped: Option<i32> = sqlx::query_scalar(
        "UPDATE profiles
         SET bio = $1, avatar_url = $2, location = $3, website = $4, version = version + 1
         WHERE user_id = $5 AND version = $6
         RETURNING version",
    )
    .bind(update.bio.as_str())
    .bind(update.avatar_url.as_ref().map(|v| v.as_str()))
    .bind(update.location.as_ref().map(|v| v.as_str()))
    .bind(update.website.as_ref().map(|v| v.as_str()))
    .bind(user_id)
    .bind(expected_version)
    .fetch_optional(&mut *tx)
    .await?;
    if bumped.is_some() {
        sqlx::query("UPDATE users SET display_name = $1 WHERE id = $2")
            .bind(update.display_name.as_str())
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
    }
    Ok(bumped)
}

pub async fn version_of(db: impl PgExecutor<'_>, user_id: i64) -> Result<i32> {
    Ok(
        sqlx::query_scalar("SELECT version FROM profiles WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(db)
            .await?,
    )
}

/// Sets (or, with `None`, clears) the user's uploaded avatar and bumps the
/// version, whatever version the editor started from: a new picture does
/// not conflict with text being edited elsewhere. Returns the new version
/// and the key it replaced.
pub async fn set_avatar(
    tx: &mut sqlx::PgConnection,
    user_id: i64,
    key: Option<&AvatarKey>,
) -> Result<(i32, Option<String>)> {
    Ok(sqlx::query_as(
        "WITH old AS (SELECT avatar_key FROM profiles WHERE user_id = $2 FOR UPDATE)
         UPDATE profiles p SET avatar_key = $1, version = p.version + 1
         FROM old WHERE p.user_id = $2
         RETURNING p.version, old.avatar_key",
    )
    .bind(key.map(AvatarKey::as_str))
    .bind(user_id)
    .fetch_one(&mut *tx)
    .await?)
}

/// Whether any profile shows the avatar `key` (`profiles_avatar_key`).
pub async fn avatar_in_use(db: impl PgExecutor<'_>, key: &AvatarKey) -> Result<bool> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM profiles WHERE avatar_key = $1)")
            .bind(key.as_str())
            .fetch_one(db)
            .await?,
    )
}
