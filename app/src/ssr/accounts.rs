//! Sign-up, sign-in and everything that ends sessions.

use crate::api::{SessionInfo, SignedInUser};
use crate::domain::{Email, LoginIdentifier, Password, Username};
use crate::error::{AppError, FieldErrors};

use super::context::{self, client_ip, set_session_cookie, user_agent};
use super::rate_limit;
use super::sessions::{self, Session};
use super::AppState;

pub struct Registration {
    pub username: Username,
    pub email: Email,
    pub password: Password,
}

impl Registration {
    pub fn parse(username: &str, email: &str, password: &str) -> Result<Self, AppError> {
        let mut errors = FieldErrors::new();
        let username = errors.check("username", Username::parse(username));
        let email = errors.check("email", Email::parse(email));
        let password = errors.check("password", Password::parse(password));
        match (username, email, password) {
            (Some(username), Some(email), Some(password)) => Ok(Self {
                username,
                email,
                password,
            }),
            _ => Err(errors.into()),
        }
    }
}

/// Unique violations are the database telling us a field is taken.
fn taken(error: sqlx::Error) -> AppError {
    if let sqlx::Error::Database(db) = &error {
        match db.constraint() {
            Some("users_username_key") => {
                return FieldErrors::single("username", "This username is taken.").into()
            }
            Some("users_email_key") => {
                return FieldErrors::single("email", "An account with this email already exists.")
                    .into()
            }
            _ => {}
        }
    }
    error.into()
}

async fn start_session(state: &AppState, user_id: i64, username: &str) -> Result<(), AppError> {
    // Session fixation: whatever session the browser arrived with is ended,
    // and the authenticated one always gets a fresh token.
    if let Some(old) = context::current_session(state).await? {
        sessions::destroy(state, &old).await?;
    }
    let token = sessions::create(
        state,
        user_id,
        username,
        user_agent(),
        client_ip(state).to_string(),
    )
    .await?;
    set_session_cookie(&token, sessions::cookie_max_age(state).as_secs());
    Ok(())
}

pub async fn register(state: &AppState, form: Registration) -> Result<SignedInUser, AppError> {
    let ip = client_ip(state);
    rate_limit::require(
        state,
        &format!("register:ip:{ip}"),
        state.config.registrations_per_ip,
    )
    .await?;
    let context = vec![
        form.username.as_str().to_owned(),
        form.email.as_str().to_owned(),
    ];
    state
        .passwords
        .check_strength(&form.password, context)
        .await??;
    let hash = state.passwords.hash(&form.password).await?;

    let mut tx = state.db.begin().await?;
    let user_id: i64 = sqlx::query_scalar(
        "INSERT INTO users (username, email, password_hash, display_name)
         VALUES ($1, $2, $3, $1) RETURNING id",
    )
    .bind(form.username.as_str())
    .bind(form.email.as_str())
    .bind(&hash)
    .fetch_one(&mut *tx)
    .await
    .map_err(taken)?;
    sqlx::query("INSERT INTO profiles (user_id) VALUES ($1)")
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(user_id, "account created");

    start_session(state, user_id, form.username.as_str()).await?;
    Ok(SignedInUser {
        username: form.username.as_str().to_owned(),
    })
}

pub async fn login(
    state: &AppState,
    identifier: &str,
    password: &str,
) -> Result<SignedInUser, AppError> {
    let mut errors = FieldErrors::new();
    if identifier.trim().is_empty() {
        errors.add("identifier", "Enter your username or email.");
    }
    if password.is_empty() {
        errors.add("password", "Enter your password.");
    }
    errors.into_result()?;

    // A malformed identifier cannot match an account, but it must cost and
    // look the same as one that does not exist.
    let identifier = LoginIdentifier::parse(identifier).ok();
    let account_key = identifier
        .as_ref()
        .map(|i| i.as_str().to_owned())
        .unwrap_or_else(|| "invalid".to_owned());
    let password = Password::parse(password).ok();

    let ip = client_ip(state);
    let ip_slot = rate_limit::require(
        state,
        &format!("login:ip:{ip}"),
        state.config.login_failures_per_ip,
    )
    .await?;
    let account_slot = match rate_limit::require(
        state,
        &format!("login:account:{account_key}"),
        state.config.login_failures_per_account,
    )
    .await
    {
        Ok(slot) => slot,
        Err(refused) => {
            rate_limit::release(state, ip_slot).await?;
            return Err(refused);
        }
    };

    let row: Option<(i64, String, String)> = match &identifier {
        Some(LoginIdentifier::Username(u)) => {
            sqlx::query_as("SELECT id, username, password_hash FROM users WHERE username = $1")
                .bind(u.as_str())
                .fetch_optional(&state.db)
                .await?
        }
        Some(LoginIdentifier::Email(e)) => {
            sqlx::query_as("SELECT id, username, password_hash FROM users WHERE email = $1")
                .bind(e.as_str())
                .fetch_optional(&state.db)
                .await?
        }
        None => None,
    };
    // A password outside the length policy cannot be anyone's; still verify
    // something so the timing does not say so.
    let candidate = password
        .unwrap_or_else(|| Password::parse("x-never-a-valid-password").expect("valid length"));
    let stored = row.as_ref().map(|(_, _, hash)| hash.clone());
    let verdict = state.passwords.verify(&candidate, stored).await?;
    let Some((user_id, username, _)) = row.filter(|_| verdict.ok) else {
        tracing::info!("login failed");
        return Err(AppError::InvalidCredentials);
    };

    rate_limit::release(state, ip_slot).await?;
    rate_limit::release(state, account_slot).await?;
    if verdict.needs_rehash {
        let hash = state.passwords.hash(&candidate).await?;
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(hash)
            .bind(user_id)
            .execute(&state.db)
            .await?;
        tracing::info!(user_id, "password re-hashed with current parameters");
    }
    start_session(state, user_id, &username).await?;
    tracing::info!(user_id, "signed in");
    Ok(SignedInUser { username })
}

pub async fn logout(state: &AppState) -> Result<(), AppError> {
    if let Some(session) = context::current_session(state).await? {
        sessions::destroy(state, &session).await?;
    }
    context::clear_session_cookie();
    Ok(())
}

pub async fn logout_everywhere(state: &AppState, session: &Session) -> Result<u64, AppError> {
    let ended = sessions::destroy_all(state, session.user_id, None).await?;
    context::clear_session_cookie();
    Ok(ended)
}

pub async fn change_password(
    state: &AppState,
    session: &Session,
    current: &str,
    new: &str,
) -> Result<(), AppError> {
    let new = Password::parse(new).map_err(|e| FieldErrors::single("new_password", e))?;
    if current.is_empty() {
        return Err(FieldErrors::single("current_password", "Enter your current password.").into());
    }
    // Guessing the current password through this form is as limited as
    // guessing it through sign-in.
    let slot = rate_limit::require(
        state,
        &format!("login:account:{}", session.username),
        state.config.login_failures_per_account,
    )
    .await?;
    let (hash, email): (String, String) =
        sqlx::query_as("SELECT password_hash, email FROM users WHERE id = $1")
            .bind(session.user_id)
            .fetch_one(&state.db)
            .await?;
    let current = Password::parse(current)
        .unwrap_or_else(|_| Password::parse("x-never-a-valid-password").expect("valid"));
    if !state.passwords.verify(&current, Some(hash)).await?.ok {
        return Err(
            FieldErrors::single("current_password", "Your current password is incorrect.").into(),
        );
    }
    rate_limit::release(state, slot).await?;
    state
        .passwords
        .check_strength(&new, vec![session.username.clone(), email])
        .await?
        .map_err(|mut errors| {
            if let Some(msg) = errors.0.remove("password") {
                errors.add("new_password", msg);
            }
            AppError::Validation(errors)
        })?;
    let hash = state.passwords.hash(&new).await?;
    sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
        .bind(hash)
        .bind(session.user_id)
        .execute(&state.db)
        .await?;
    let ended = sessions::destroy_all(state, session.user_id, Some(&session.id)).await?;
    tracing::info!(
        user_id = session.user_id,
        ended,
        "password changed; other sessions ended"
    );
    Ok(())
}

pub async fn list_sessions(
    state: &AppState,
    session: &Session,
) -> Result<Vec<SessionInfo>, AppError> {
    Ok(sessions::list(state, session.user_id)
        .await?
        .into_iter()
        .map(|s| SessionInfo {
            current: s.id == session.id,
            id: s.id,
            user_agent: s.user_agent,
            ip: s.ip,
            created_at_ms: s.created_at_ms,
            last_seen_ms: s.last_seen_ms,
        })
        .collect())
}

pub async fn revoke_session(state: &AppState, session: &Session, id: &str) -> Result<(), AppError> {
    // Only ever within the caller's own index: an id of someone else's
    // session is simply not found.
    let mine = sessions::list(state, session.user_id).await?;
    if !mine.iter().any(|s| s.id == id) {
        return Err(AppError::NotFound);
    }
    sessions::destroy_by_id(state, session.user_id, id).await?;
    if id == session.id {
        context::clear_session_cookie();
    }
    Ok(())
}
