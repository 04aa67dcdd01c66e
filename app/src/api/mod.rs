//! The typed RPC surface: every server function, and the DTOs that cross the
//! wire. Bodies are short: parse the input, call into `crate::ssr`.
//!
//! DTOs are explicit (no database row is ever serialized to the browser):
//! `Profile` has no email and no hash; `SessionInfo` has no token.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;
#[cfg(feature = "ssr")]
use crate::ssr;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedInUser {
    pub username: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub id: String,
    pub user_agent: String,
    pub ip: String,
    pub created_at_ms: u64,
    pub last_seen_ms: u64,
    pub current: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub username: String,
    pub display_name: String,
    pub bio: String,
    pub avatar_url: Option<String>,
    pub location: Option<String>,
    pub website: Option<String>,
    pub version: i32,
}

#[cfg(feature = "ssr")]
impl Profile {
    /// The public page's identity: it shows this profile at this version (the
    /// server qualifies it with the build). Used as the page's ETag and as
    /// the key of the server's rendered-page cache.
    pub fn page_tag(&self) -> String {
        format!("W/\"{}-{}\"", self.username, self.version)
    }
}

/// How many people have signed up (the home page's live number).
#[server(endpoint = "count_users")]
pub async fn count_users() -> Result<i64, AppError> {
    ssr::respond(
        async {
            let state = ssr::state()?;
            Ok(sqlx::query_scalar("SELECT count(*) FROM users")
                .fetch_one(&state.db)
                .await?)
        }
        .await,
    )
}

#[server(endpoint = "register")]
pub async fn register(
    username: String,
    email: String,
    password: String,
) -> Result<SignedInUser, AppError> {
    ssr::respond(
        async {
            let state = ssr::state()?;
            let form = ssr::accounts::Registration::parse(&username, &email, &password)?;
            let user = ssr::accounts::register(&state, form).await?;
            leptos_axum::redirect("/");
            Ok(user)
        }
        .await,
    )
}

#[server(endpoint = "login")]
pub async fn login(identifier: String, password: String) -> Result<SignedInUser, AppError> {
    ssr::respond(
        async {
            let state = ssr::state()?;
            let user = ssr::accounts::login(&state, &identifier, &password).await?;
            leptos_axum::redirect("/");
            Ok(user)
        }
        .await,
    )
}

#[server(endpoint = "logout")]
pub async fn logout() -> Result<(), AppError> {
    ssr::respond(
        async {
            let state = ssr::state()?;
            ssr::accounts::logout(&state).await?;
            leptos_axum::redirect("/");
            Ok(())
        }
        .await,
    )
}

#[server(endpoint = "current_user")]
pub async fn current_user() -> Result<Option<SignedInUser>, AppError> {
    ssr::respond(
        async {
            let state = ssr::state()?;
            Ok(ssr::current_session(&state).await?.map(|s| SignedInUser {
                username: s.username,
            }))
        }
        .await,
    )
}

#[server(endpoint = "list_sessions")]
pub async fn list_sessions() -> Result<Vec<SessionInfo>, AppError> {
    ssr::respond(
        async {
            let state = ssr::state()?;
            let session = ssr::require_user(&state).await?;
            ssr::accounts::list_sessions(&state, &session).await
        }
        .await,
    )
}

#[server(endpoint = "revoke_session")]
pub async fn revoke_session(id: String) -> Result<(), AppError> {
    ssr::respond(
        async {
            let state = ssr::state()?;
            let session = ssr::require_user(&state).await?;
            ssr::accounts::revoke_session(&state, &session, &id).await
        }
        .await,
    )
}

#[server(endpoint = "logout_everywhere")]
pub async fn logout_everywhere() -> Result<u64, AppError> {
    ssr::respond(
        async {
            let state = ssr::state()?;
            let session = ssr::require_user(&state).await?;
            let ended = ssr::accounts::logout_everywhere(&state, &session).await?;
            leptos_axum::redirect("/signin");
            Ok(ended)
        }
        .await,
    )
}

#[server(endpoint = "change_password")]
pub async fn change_password(
    current_password: String,
    new_password: String,
) -> Result<(), AppError> {
    ssr::respond(
        async {
            let state = ssr::state()?;
            let session = ssr::require_user(&state).await?;
            ssr::accounts::change_password(&state, &session, &current_password, &new_password)
                .await?;
            ssr::context::redirect_form_post("/account?password_changed=1");
            Ok(())
        }
        .await,
    )
}

#[server(endpoint = "get_profile")]
pub async fn get_profile(username: String) -> Result<Profile, AppError> {
    ssr::respond(
        async {
            let state = ssr::state()?;
            // A name that cannot exist is not looked up anywhere.
            let username =
                crate::domain::Username::parse(&username).map_err(|_| AppError::NotFound)?;
            ssr::profiles::get(&state, &username).await
        }
        .await,
    )
}

#[server(endpoint = "my_profile")]
pub async fn my_profile() -> Result<Profile, AppError> {
    ssr::respond(
        async {
            let state = ssr::state()?;
            let session = ssr::require_user(&state).await?;
            ssr::profiles::own(&state, &session).await
        }
        .await,
    )
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
    ssr::respond(
        async {
            let state = ssr::state()?;
            let session = ssr::require_user(&state).await?;
            let form = crate::domain::ProfileForm {
                display_name,
                bio,
                avatar_url,
                location,
                website,
            };
            let update = crate::domain::ProfileUpdate::parse(&form)?;
            let profile = ssr::profiles::update(&state, &session, update, expected_version).await?;
            ssr::context::redirect_form_post("/settings/profile?saved=1");
            Ok(profile)
        }
        .await,
    )
}
