//! Sign-up, sign-in and everything that ends sessions.

use crate::domain::{Email, LoginIdentifier, Password, Username};
use crate::dto::{ActivityEntry, SessionInfo};
use crate::error::{AppError, FieldErrors};
use crate::ssr::events::consumers::activity;
use crate::ssr::events::outbox;
use crate::ssr::events::types::{
    LoginGuessing, PasswordChanged, SessionCreated, SessionsRevoked, UserRegistered,
};
use crate::ssr::infra::rate_limit;
use crate::ssr::request::RequestMeta;
use crate::ssr::{profiles, AppState, Error, Result};

use super::credentials;
use super::device_cookies;
use super::devices;
use super::recent_writes;
use super::sessions::{self, NewSession, Session};
use crate::ssr::infra::db::Freshness;

pub struct Registration {
    pub username: Username,
    pub email: Email,
    pub password: Password,
}

impl Registration {
    pub fn parse(username: &str, email: &str, password: &str) -> Result<Self, FieldErrors> {
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
            _ => Err(errors),
        }
    }
}

/// How many people have signed up (the home page's live number).
/// A public read: a replica may answer (`freshness` of the reader).
pub async fn count_users(state: &AppState, freshness: Freshness) -> Result<i64> {
    state
        .db
        .read(freshness, |db| async move {
            Ok(sqlx::query_scalar("SELECT count(*) FROM users")
                .fetch_one(&db)
                .await?)
        })
        .await
}

/// Unique violations are the database telling us a field is taken.
fn taken(error: sqlx::Error) -> Error {
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

/// Starts a session for the user. Session fixation: whatever session the
/// browser arrived with is ended, and the authenticated one always gets a
/// fresh token.
async fn start_session(
    state: &AppState,
    meta: &RequestMeta,
    user_id: i64,
    username: &str,
) -> Result<NewSession> {
    if let Some(token) = &meta.session_token {
        if let Some(old) = sessions::load(state, token).await? {
            sessions::destroy(state, &old).await?;
        }
    }
    let mut session = sessions::create(state, user_id, username, meta).await?;
    // This browser has now proven the password (or chosen it): a new
    // device cookie for the account.
    session.device_cookie = Some(device_cookies::issue(state, user_id).await?);
    Ok(session)
}

pub async fn register(
    state: &AppState,
    meta: &RequestMeta,
    form: Registration,
) -> Result<NewSession> {
    rate_limit::require(
        state,
        &format!("register:ip:{}", meta.client_network()),
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
    // A deleted account's name rests for 30 days (`accounts::deletion`).
    let retired: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM retired_usernames
                        WHERE username = $1 AND retired_at > now() - interval '30 days')",
    )
    .bind(form.username.as_str())
    .fetch_one(&mut *tx)
    .await?;
    if retired {
        return Err(FieldErrors::single("username", "This username is taken.").into());
    }
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
    let version: i32 =
        sqlx::query_scalar("INSERT INTO profiles (user_id) VALUES ($1) RETURNING version")
            .bind(user_id)
            .fetch_one(&mut *tx)
            .await?;
    // The browser that signed up is a known device from now on.
    devices::remember(&mut tx, user_id, meta).await?;
    let registered = UserRegistered {
        username: form.username.as_str().to_owned(),
    };
    // Also what mails the link that proves the address (`verification`).
    outbox::record(&mut *tx, user_id, &registered).await?;
    tx.commit().await?;
    tracing::info!(user_id, "account created");
    // "No such user" may be cached for this name: it is not true any more.
    profiles::invalidate(state, &form.username, version).await;
    recent_writes::remember(state, user_id, Some((form.username.as_str(), version))).await;

    start_session(state, meta, user_id, form.username.as_str()).await
}

pub async fn login(
    state: &AppState,
    meta: &RequestMeta,
    identifier: &str,
    password: &str,
) -> Result<NewSession> {
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

    let row: Option<(i64, String, String)> = match &identifier {
        Some(LoginIdentifier::Username(u)) => {
            sqlx::query_as("SELECT id, username, password_hash FROM users WHERE username = $1")
                .bind(u.as_str())
                .fetch_optional(state.db.primary())
                .await?
        }
        Some(LoginIdentifier::Email(e)) => {
            sqlx::query_as("SELECT id, username, password_hash FROM users WHERE email = $1")
                .bind(e.as_str())
                .fetch_optional(state.db.primary())
                .await?
        }
        None => None,
    };
    // A browser that signed in to this account before (a valid device
    // cookie for it) is counted on its own: the owner is not locked out by
    // strangers' guesses, and its own mistakes lock only it. Any other
    // attempt counts against the client's network and the account.
    let trusted = match (&meta.device_cookie, &row) {
        (Some(cookie), Some((user_id, _, _))) => {
            device_cookies::verify(state, cookie, *user_id).await?
        }
        _ => None,
    };
    let slots = match &trusted {
        Some(device) => vec![
            rate_limit::require(
                state,
                &format!("login:device:{}", device.nonce),
                state.config.login_failures_per_device,
            )
            .await?,
        ],
        None => {
            let ip_slot = rate_limit::require(
                state,
                &format!("login:ip:{}", meta.client_network()),
                state.config.login_failures_per_ip,
            )
            .await?;
            match rate_limit::require(
                state,
                &format!("login:account:{account_key}"),
                state.config.login_failures_per_account,
            )
            .await
            {
                Ok(account_slot) => vec![ip_slot, account_slot],
                Err(refused) => {
                    rate_limit::release(state, ip_slot).await?;
                    if let Some((user_id, _, _)) = &row {
                        report_guessing(state, meta, *user_id).await;
                    }
                    return Err(refused);
                }
            }
        }
    };

    // A password outside the length policy cannot be anyone's; still verify
    // something so the timing does not say so.
    let candidate = password.unwrap_or_else(never_valid_password);
    let stored = row.as_ref().map(|(_, _, hash)| hash.clone());
    let verdict = state.passwords.verify(&candidate, stored).await?;
    let Some((user_id, username, _)) = row.filter(|_| verdict.ok) else {
        tracing::info!("login failed");
        return Err(AppError::InvalidCredentials.into());
    };

    for slot in slots {
        rate_limit::release(state, slot).await?;
    }
    // Before the session: a right password from a new device is worth
    // reporting even if starting the session then fails.
    let mut tx = state.db.begin().await?;
    if verdict.needs_rehash {
        let hash = state.passwords.hash(&candidate).await?;
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(hash)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        tracing::info!(user_id, "password re-hashed with current parameters");
    }
    if devices::remember(&mut tx, user_id, meta).await? {
        let origin = devices::origin(meta);
        outbox::record(&mut *tx, user_id, &SessionCreated { origin }).await?;
    }
    tx.commit().await?;
    let session = start_session(state, meta, user_id, &username).await?;
    tracing::info!(user_id, "signed in");
    Ok(session)
}

/// Tells the account's owner, once per lockout window, that sign-ins to
/// their account are being refused after too many wrong passwords (an
/// activity entry and a mail, through the `login.guessing` event). Best
/// effort: the refusal stands whatever happens here.
async fn report_guessing(state: &AppState, meta: &RequestMeta, user_id: i64) {
    let window = state.config.login_failures_per_account.window;
    let once = async {
        let mut redis = state.redis.clone();
        let first: Option<String> = redis::cmd("SET")
            .arg(state.key(&format!("login_guessing_reported:{user_id}")))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(window.as_millis() as u64)
            .query_async(&mut redis)
            .await?;
        if first.is_some() {
            let mut tx = state.db.begin().await?;
            let origin = devices::origin(meta);
            outbox::record(&mut *tx, user_id, &LoginGuessing { origin }).await?;
            tx.commit().await?;
        }
        Ok::<_, Error>(())
    };
    if let Err(error) = once.await {
        tracing::warn!(error = %error, user_id, "could not report a guessing attack");
    }
}

/// Verified against when the typed password cannot be anyone's, so that the
/// answer takes as long as for a real one.
pub(super) fn never_valid_password() -> Password {
    Password::parse("x-never-a-valid-password").expect("within the length policy")
}

/// Ends the caller's session, if any.
pub async fn logout(state: &AppState, meta: &RequestMeta) -> Result<()> {
    if let Some(token) = &meta.session_token {
        if let Some(session) = sessions::load(state, token).await? {
            sessions::destroy(state, &session).await?;
        }
    }
    Ok(())
}

/// Ends every session of the user, this one included. Sessions live in
/// Redis, outside any transaction: the event follows the change.
pub async fn logout_everywhere(
    state: &AppState,
    meta: &RequestMeta,
    session: &Session,
) -> Result<u64> {
    let ended = sessions::destroy_all(state, session.user_id, None).await?;
    let revoked = SessionsRevoked {
        origin: devices::origin(meta),
        count: u32::try_from(ended).unwrap_or(u32::MAX),
        everywhere: true,
    };
    // Whoever was signed in may have asked for links: they die too.
    let mut tx = state.db.begin().await?;
    credentials::bump_epoch(&mut tx, session.user_id).await?;
    outbox::record(&mut *tx, session.user_id, &revoked).await?;
    tx.commit().await?;
    Ok(ended)
}

/// Changes the password, ends every session of the user and starts a new
/// one for this browser: a token stolen before the change (this browser's
/// included) is worth nothing after it.
pub async fn change_password(
    state: &AppState,
    meta: &RequestMeta,
    session: &Session,
    current: &str,
    new: &str,
) -> Result<NewSession> {
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
            .fetch_one(state.db.primary())
            .await?;
    let current = Password::parse(current).unwrap_or_else(|_| never_valid_password());
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
    let mut tx = state.db.begin().await?;
    sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
        .bind(hash)
        .bind(session.user_id)
        .execute(&mut *tx)
        .await?;
    // A link asked for before the change (a reset, an address change) must
    // not undo it.
    credentials::bump_epoch(&mut tx, session.user_id).await?;
    let origin = devices::origin(meta);
    outbox::record(&mut *tx, session.user_id, &PasswordChanged { origin }).await?;
    tx.commit().await?;
    let ended = sessions::destroy_all(state, session.user_id, None).await?;
    tracing::info!(
        user_id = session.user_id,
        ended,
        "password changed; every session ended, this browser's renewed"
    );
    sessions::create(state, session.user_id, &session.username, meta).await
}

/// The newest entries of the account's security history (written by the
/// `activity` event consumer, so a second or so behind the actions).
pub async fn recent_activity(state: &AppState, session: &Session) -> Result<Vec<ActivityEntry>> {
    activity::recent(state.db.primary(), session.user_id, 20).await
}

pub async fn list_sessions(state: &AppState, session: &Session) -> Result<Vec<SessionInfo>> {
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

#[derive(Debug, PartialEq, Eq)]
pub enum Revoked {
    /// The caller signed out their own browser: clear its cookie.
    Own,
    Other,
}

pub async fn revoke_session(
    state: &AppState,
    meta: &RequestMeta,
    session: &Session,
    id: &str,
) -> Result<Revoked> {
    // Only ever within the caller's own index: an id of someone else's
    // session is simply not found.
    let mine = sessions::list(state, session.user_id).await?;
    if !mine.iter().any(|s| s.id == id) {
        return Err(AppError::NotFound.into());
    }
    sessions::destroy_by_id(state, session.user_id, id).await?;
    if id == session.id {
        return Ok(Revoked::Own); // signing out here is no security event
    }
    let revoked = SessionsRevoked {
        origin: devices::origin(meta),
        count: 1,
        everywhere: false,
    };
    outbox::record(state.db.primary(), session.user_id, &revoked).await?;
    Ok(Revoked::Other)
}
