//! Changing the account's address (OWASP: re-authenticate, confirm the new
//! address, tell the old one). Asking needs the current password and
//! records an event under the account's credential epoch: the `mail`
//! consumer mails a link to the new address (a warning instead, when
//! another account has it) and a notice to the current one, whose "this
//! wasn't me" link cancels the change without signing in.
//! The address changes only when the link's page is confirmed with its
//! button (a POST: a mail scanner that opens the link changes nothing), and
//! only while the credentials are those it was asked under. The change
//! moves the epoch (every other mailed link dies), ends the account's other
//! sessions, and the old address is told again (`email.changed`).

use crate::domain::{Email, LinkToken};
use crate::error::{AppError, FieldErrors, LinkProblem};
use crate::ssr::events::outbox;
use crate::ssr::events::types::{EmailChangeRequested, EmailChanged};
use crate::ssr::infra::rate_limit;
use crate::ssr::request::RequestMeta;
use crate::ssr::{AppState, Result};
use sha2::{Digest, Sha256};

use super::credentials;
use super::devices;
use super::reauth::reauthenticate;
use super::sessions::{self, Session};
use super::tokens::{self, Purpose};

/// Asks to move the signed-in account to `new_email`.
///
/// The answer is the same whether or not another account uses the address,
/// running the same statements: the request records the event either way,
/// and the `mail` consumer, which decides what to send when it sends,
/// mails a taken address a warning ("someone tried to add this address")
/// instead of a link. Limited per user and per address asked for, after
/// the password (so only the owner spends them); an unproven current
/// address, which may be a stranger's, is told at most once a day.
pub async fn request_email_change(
    state: &AppState,
    meta: &RequestMeta,
    session: &Session,
    current_password: &str,
    new_email: &str,
) -> Result<()> {
    let mut errors = FieldErrors::new();
    let new_email = errors.check("new_email", Email::parse(new_email));
    if current_password.is_empty() {
        errors.add("confirm_password", "Enter your password.");
    }
    errors.into_result()?;
    let Some(new_email) = new_email else {
        return Err(AppError::Internal.into());
    };
    let account = reauthenticate(
        state,
        meta,
        session,
        current_password,
        ("confirm_password", "Your password is incorrect."),
    )
    .await?;
    if new_email.as_str() == account.email {
        return Err(FieldErrors::single("new_email", "This is already your address.").into());
    }
    rate_limit::require(
        state,
        &format!("email_change:user:{}", session.user_id),
        state.config.email_changes_per_user,
    )
    .await?;
    // Nobody fills an address's mailbox with links from many accounts.
    let address = hex::encode(&Sha256::digest(new_email.as_str().as_bytes())[..8]);
    rate_limit::require(
        state,
        &format!("email_change:address:{address}"),
        state.config.email_changes_per_address,
    )
    .await?;
    let notify_current = account.email_verified || first_notice_today(state, session).await?;
    let asked = EmailChangeRequested {
        origin: devices::origin(meta),
        new_email: new_email.as_str().to_owned(),
        notify_current,
        epoch: Some(account.credential_epoch),
    };
    outbox::record(state.db.primary(), session.user_id, &asked).await?;
    tracing::info!(user_id = session.user_id, "email change asked for");
    Ok(())
}

/// Whether an unproven current address may be told of a change today: once
/// a day per account (a `SET NX` that lives a day), not a refusal, since
/// the request itself is fine.
async fn first_notice_today(state: &AppState, session: &Session) -> Result<bool> {
    let mut redis = state.redis.clone();
    let first: Option<String> = redis::cmd("SET")
        .arg(state.key(&format!("email_change:unproven_notice:{}", session.user_id)))
        .arg(1)
        .arg("NX")
        .arg("PX")
        .arg(UNPROVEN_NOTICE_INTERVAL.as_millis() as u64)
        .query_async(&mut redis)
        .await?;
    Ok(first.is_some())
}

/// At most one notice per this long to an address nobody proved is the
/// owner's (anyone can sign up with someone else's).
const UNPROVEN_NOTICE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The address a live confirmation link would move its account to (the
/// `/confirm-email` page shows it above its button); otherwise why not,
/// including an address another account took meanwhile.
pub async fn check_email_change_link(state: &AppState, token: &str) -> Result<String> {
    let token = LinkToken::parse(token).map_err(|_| AppError::Link(LinkProblem::Malformed))?;
    let new_email = tokens::check_email_change(state.db.primary(), &token).await?;
    let taken: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE email = $1)")
        .bind(&new_email)
        .fetch_one(state.db.primary())
        .await?;
    if taken {
        return Err(AppError::Link(LinkProblem::AddressTaken).into());
    }
    Ok(new_email)
}

/// Moves the link's account to the address the link was mailed to (which
/// the link proves). Needs no session: the link is the proof, as long as
/// the account's credentials are those it was asked under. Every other
/// mailed link of the account dies, and every session but the caller's own
/// (when it is the account's) ends.
pub async fn confirm_email_change(state: &AppState, meta: &RequestMeta, token: &str) -> Result<()> {
    let token = LinkToken::parse(token).map_err(|_| AppError::Link(LinkProblem::Malformed))?;
    let mut tx = state.db.begin().await?;
    let (user_id, new_email) = tokens::redeem_email_change(&mut tx, &token).await?;
    let old_email: String = sqlx::query_scalar("SELECT email FROM users WHERE id = $1 FOR UPDATE")
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await?;
    let changed =
        sqlx::query("UPDATE users SET email = $1, email_verified_at = now() WHERE id = $2")
            .bind(&new_email)
            .bind(user_id)
            .execute(&mut *tx)
            .await;
    if let Err(sqlx::Error::Database(db)) = &changed {
        if db.constraint() == Some("users_email_key") {
            return Err(AppError::Link(LinkProblem::AddressTaken).into());
        }
    }
    changed?;
    // Links mailed to the old address (a reset above all) prove nothing
    // about the new one: they die with the epoch.
    credentials::bump_epoch(&mut tx, user_id).await?;
    let changed = EmailChanged {
        origin: devices::origin(meta),
        old_email,
        new_email,
    };
    outbox::record(&mut *tx, user_id, &changed).await?;
    tx.commit().await?;
    let own = match &meta.session_token {
        Some(token) => sessions::load(state, token)
            .await?
            .filter(|session| session.user_id == user_id)
            .map(|session| session.id),
        None => None,
    };
    let ended = sessions::destroy_all(state, user_id, own.as_deref()).await?;
    tracing::info!(
        user_id,
        ended,
        "email address changed; other sessions ended"
    );
    Ok(())
}

/// Whether `token` is a live "this wasn't me" link (its page asks before
/// showing the button); otherwise why not.
pub async fn check_cancel_link(state: &AppState, token: &str) -> Result<()> {
    let token = LinkToken::parse(token).map_err(|_| AppError::Link(LinkProblem::Malformed))?;
    tokens::check(state.db.primary(), &token, Purpose::EmailChangeCancel).await?;
    Ok(())
}

/// "This wasn't me": the pending change's confirmation link dies, whoever
/// holds it. Needs no session (the old address's mail is the proof) and
/// signs no one in or out.
pub async fn cancel_email_change(state: &AppState, token: &str) -> Result<()> {
    let token = LinkToken::parse(token).map_err(|_| AppError::Link(LinkProblem::Malformed))?;
    let mut tx = state.db.begin().await?;
    let user_id = tokens::redeem(&mut tx, &token, Purpose::EmailChangeCancel).await?;
    let revoked = tokens::revoke_all(&mut *tx, user_id, Purpose::EmailChange).await?;
    tx.commit().await?;
    tracing::info!(
        user_id,
        revoked,
        "email change cancelled from the old address"
    );
    Ok(())
}
