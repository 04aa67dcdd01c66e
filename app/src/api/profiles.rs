//! Public profiles: read anyone's, edit your own.

use leptos::prelude::*;

use crate::dto::Profile;
use crate::error::AppError;
#[cfg(feature = "ssr")]
use crate::ssr::{handle, profiles};

#[server(endpoint = "get_profile")]
pub async fn get_profile(username: String) -> Result<Profile, AppError> {
    handle(async move |call| {
        // A name that cannot exist is not looked up anywhere.
        let username = crate::domain::Username::parse(&username).map_err(|_| AppError::NotFound)?;
        profiles::get(&call.state, call.freshness().await, &username).await
    })
    .await
}

/// The signed-in user's own profile, for the editor: always the current
/// version, never a cached one.
#[server(endpoint = "my_profile")]
pub async fn my_profile() -> Result<Profile, AppError> {
    handle(async |call| {
        let session = call.user().await?;
        profiles::own(&call.state, &session).await
    })
    .await
}

#[server(endpoint = "update_profile")]
pub async fn update_profile(
    display_name: String,
    bio: String,
    avatar_url: String,
    location: String,
    website: String,
    expected_version: i32,
) -> Result<Profile, AppError> {
    handle(async move |call| {
        let session = call.user().await?;
        let form = crate::domain::ProfileForm {
            display_name,
            bio,
            avatar_url,
            location,
            website,
        };
        let update = crate::domain::ProfileUpdate::parse(&form)?;
        let profile = profiles::update(&call.state, &session, update, expected_version).await?;
        call.reply.redirect_form_post("/settings/profile?saved=1");
        Ok(profile)
    })
    .await
}

/// Takes the uploaded avatar off the signed-in user's profile. (Uploading
/// is a multipart form, not a server function: `server/src/media.rs`.)
#[server(endpoint = "remove_avatar")]
pub async fn remove_avatar() -> Result<Profile, AppError> {
    handle(async |call| {
        let session = call.user().await?;
        let profile = crate::ssr::media::remove_avatar(&call.state, &session).await?;
        call.reply
            .redirect_form_post("/settings/profile?avatar=removed");
        Ok(profile)
    })
    .await
}
