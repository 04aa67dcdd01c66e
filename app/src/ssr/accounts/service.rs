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
use crate::ssr::{profiles, AppState, Error, Limit, Result};
use sha2::{Digest, Sha256};

use super::credentials;
use super::device_cookies::{self, TrustedDevice};
use super::devices;
use super::reauth::reauthenticate;
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
    trusted: Option<&TrustedDevice>,
) -> Result<NewSession> {
    if let Some(token) = &meta.session_token {
        if let Some(old) = sessions::load(state, token).await? {
            sessions::destroy(state, &old).await?;
        }
    }
    let mut session = sessions::create(state, user_id, username, meta).await?;
    // This browser has now proven the password (or chosen it): it is a
    // device of the account. One that already was keeps its cookie, sent
    // back for another lifetime; any other gets a new one.
    session.device_cookie = Some(match trusted.filter(|d| d.user_id == user_id) {
        Some(device) => {
            device_cookies::touch(state, device).await?;
            device.cookie.clone()
        }
        None => device_cookies::issue(state, user_id).await?,
    });
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

    start_session(state, meta, user_id, form.username.as_str(), None).await
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
    let typed = identifier_hash(identifier);
    let identifier = LoginIdentifier::parse(identifier).ok();
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
    // Wrong passwords count against the account, whichever of its names
    // was typed (`anna` and `anna@corp.example` are one bucket); against
    // what was typed (hashed) when it names no account.
    let account_key = match &row {
        Some((user_id, _, _)) => format!("login:account:user:{user_id}"),
        None => format!("login:account:typed:{typed}"),
    };
    // A browser that signed in to this account before (a live device
    // cookie for it) is counted on its own: the owner is not locked out by
    // strangers' guesses, and its own mistakes lock only it. It still meets
    // the client network's limit, at four times the strangers' allowance
    // (a household or office signs in from one address), so that a pile of
    // cookies minted while a password was known cannot guess without end.
    // Any other attempt counts against the client's network and the
    // account.
    let trusted = match (&meta.device_cookie, &row) {
        (Some(cookie), Some((user_id, _, _))) => {
            device_cookies::verify(state, cookie, *user_id).await?
        }
        _ => None,
    };
    let per_ip = state.config.login_failures_per_ip;
    let ip_limit = match &trusted {
        Some(_) => Limit {
            max: per_ip.max.saturating_mul(TRUSTED_IP_FACTOR),
            ..per_ip
        },
        None => per_ip,
    };
    let ip_slot = rate_limit::require(
        state,
        &format!("login:ip:{}", meta.client_network()),
        ip_limit,
    )
    .await?;
    let (bucket, limit) = match &trusted {
        Some(device) => (
            format!("login:device:{}", device.nonce),
            state.config.login_failures_per_device,
        ),
        None => (account_key, state.config.login_failures_per_account),
    };
    let slots = match rate_limit::require(state, &bucket, limit).await {
        Ok(slot) => vec![ip_slot, slot],
        Err(refused) => {
            rate_limit::release(state, ip_slot).await?;
            if let Some((user_id, _, _)) = &row {
                match &trusted {
                    Some(_) => tracing::info!(user_id, "sign-in refused: device locked"),
                    None => tracing::info!(user_id, "sign-in refused: account locked"),
                }
                report_guessing(state, meta, *user_id, trusted.is_some()).await;
            }
            return Err(refused);
        }
    };

    // A password outside the length policy cannot be anyone's; still verify
    // something so the timing does not say so.
    let candidate = password.unwrap_or_else(never_valid_password);
    let stored = row.as_ref().map(|(_, _, hash)| hash.clone());
    let verdict = state.passwords.verify(&candidate, stored).await?;
    let account = row.as_ref().map(|(user_id, _, _)| *user_id);
    let Some((user_id, username, _)) = row.filter(|_| verdict.ok) else {
        match account {
            Some(user_id) => tracing::info!(user_id, device = trusted.is_some(), "login failed"),
            None => tracing::info!(identifier = %typed, "login failed"),
        }
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
    let session = start_session(state, meta, user_id, &username, trusted.as_ref()).await?;
    tracing::info!(user_id, "signed in");
    Ok(session)
}

/// Browsers with a live device cookie meet the per-network sign-in limit at
/// this many times the strangers' allowance.
const TRUSTED_IP_FACTOR: u32 = 4;

/// What was typed as an identifier, as logs and rate-limit keys may hold
/// it: the first 16 hex digits of the SHA-256 of its trimmed, lower-case
/// form (the same typing gives the same bucket; the log never holds an
/// address someone typed).
fn identifier_hash(identifier: &str) -> String {
    let digest = Sha256::digest(identifier.trim().to_lowercase().as_bytes());
    hex::encode(&digest[..8])
}

/// Tells the account's owner, once per lockout window, that sign-ins to
/// their account are being refused after too many wrong passwords (an
/// activity entry and a mail, through the `login.guessing` event): from
/// browsers that never signed in to it (`one_device` false), or from one
/// of its own devices. Best effort: the refusal stands whatever happens
/// here.
async fn report_guessing(state: &AppState, meta: &RequestMeta, user_id: i64, one_device: bool) {
    let window = state.config.login_failures_per_account.window;
    let kind = if one_device { ":device" } else { "" };
    let once = async {
        let mut redis = state.redis.clone();
        let first: Option<String> = redis::cmd("SET")
            .arg(state.key(&format!("login_guessing_reported:{user_id}{kind}")))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(window.as_millis() as u64)
            .query_async(&mut redis)
            .await?;
        if first.is_some() {
            let mut tx = state.db.begin().await?;
            let origin = devices::origin(meta);
            let guessing = LoginGuessing { origin, one_device };
            outbox::record(&mut *tx, user_id, &guessing).await?;
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
    let account = reauthenticate(
        state,
        meta,
        session,
        current,
        ("current_password", "Your current password is incorrect."),
    )
    .await?;
    let email = account.email;
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
    // This browser proved the new password: a device under the new
    // credentials (the old cookie died with the old ones).
    let mut renewed = sessions::create(state, session.user_id, &session.username, meta).await?;
    renewed.device_cookie = Some(device_cookies::issue(state, session.user_id).await?);
    Ok(renewed)
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
