//! Sign-up, sign-in and sessions.

use leptos::prelude::*;

use crate::dto::{ActivityEntry, EmailStatus, SessionInfo, SignedInUser};
use crate::error::AppError;
#[cfg(feature = "ssr")]
use crate::ssr::{accounts, handle};

/// How many people have signed up (the home page's live number).
#[server(endpoint = "count_users")]
pub async fn count_users() -> Result<i64, AppError> {
    handle(async |call| accounts::count_users(&call.state, call.freshness().await).await).await
}

/// On success the browser is sent to `/` with a page load (JavaScript or
/// not), so the whole page is rendered for the new session.
#[server(endpoint = "register")]
pub async fn register(
    username: String,
    email: String,
    password: String,
) -> Result<SignedInUser, AppError> {
    handle(async move |call| {
        let form = accounts::Registration::parse(&username, &email, &password)?;
        let session = accounts::register(&call.state, &call.meta, form).await?;
        call.reply.start_session(&session);
        call.reply.redirect("/");
        Ok(session.user)
    })
    .await
}

#[server(endpoint = "login")]
pub async fn login(identifier: String, password: String) -> Result<SignedInUser, AppError> {
    handle(async move |call| {
        let session = accounts::login(&call.state, &call.meta, &identifier, &password).await?;
        call.reply.start_session(&session);
        call.reply.redirect("/");
        Ok(session.user)
    })
    .await
}

#[server(endpoint = "logout")]
pub async fn logout() -> Result<(), AppError> {
    handle(async |call| {
        accounts::logout(&call.state, &call.meta).await?;
        call.reply.clear_session_cookie();
        call.reply.redirect("/");
        Ok(())
    })
    .await
}

#[server(endpoint = "current_user")]
pub async fn current_user() -> Result<Option<SignedInUser>, AppError> {
    handle(async |call| {
        Ok(call.session().await?.map(|s| SignedInUser {
            username: s.username,
        }))
    })
    .await
}

#[server(endpoint = "list_sessions")]
pub async fn list_sessions() -> Result<Vec<SessionInfo>, AppError> {
    handle(async |call| {
        let session = call.user().await?;
        accounts::list_sessions(&call.state, &session).await
    })
    .await
}

/// The account's recent security events, newest first.
#[server(endpoint = "list_activity")]
pub async fn list_activity() -> Result<Vec<ActivityEntry>, AppError> {
    handle(async |call| {
        let session = call.user().await?;
        accounts::recent_activity(&call.state, &session).await
    })
    .await
}

#[server(endpoint = "revoke_session")]
pub async fn revoke_session(id: String) -> Result<(), AppError> {
    handle(async move |call| {
        let session = call.user().await?;
        if accounts::revoke_session(&call.state, &call.meta, &session, &id).await?
            == accounts::Revoked::Own
        {
            call.reply.clear_session_cookie();
        }
        Ok(())
    })
    .await
}

#[server(endpoint = "logout_everywhere")]
pub async fn logout_everywhere() -> Result<u64, AppError> {
    handle(async |call| {
        let session = call.user().await?;
        let ended = accounts::logout_everywhere(&call.state, &call.meta, &session).await?;
        call.reply.clear_session_cookie();
        call.reply.redirect("/signin");
        Ok(ended)
    })
    .await
}

/// Ends every other session and gives this browser a new token: a session
/// stolen before the change is worth nothing after it.
#[server(endpoint = "change_password")]
pub async fn change_password(
    current_password: String,
    new_password: String,
) -> Result<(), AppError> {
    handle(async move |call| {
        let session = call.user().await?;
        let renewed = accounts::change_password(
            &call.state,
            &call.meta,
            &session,
            &current_password,
            &new_password,
        )
        .await?;
        call.reply.start_session(&renewed);
        call.reply.redirect_form_post("/account?password_changed=1");
        Ok(())
    })
    .await
}

/// "Forgot password": always the same answer, whether or not an account
/// uses the address (the mail, if any, follows through the events).
#[server(endpoint = "request_password_reset")]
pub async fn request_password_reset(email: String) -> Result<(), AppError> {
    handle(async move |call| {
        accounts::request_password_reset(&call.state, &call.meta, &email).await?;
        call.reply.redirect_form_post("/forgot?sent=1");
        Ok(())
    })
    .await
}

/// Whether a reset link still works (the reset page asks before showing
/// its form): `Link(…)` says why not.
#[server(endpoint = "check_reset_link")]
pub async fn check_reset_link(token: String) -> Result<(), AppError> {
    handle(async move |call| accounts::check_reset_link(&call.state, &token).await).await
}

/// Sets a new password with a reset link. Every session of the account
/// ends and nobody is signed in: the browser goes to the sign-in page.
#[server(endpoint = "reset_password")]
pub async fn reset_password(token: String, new_password: String) -> Result<(), AppError> {
    handle(async move |call| {
        // The reset page sends no Referer (its URL holds the token): a
        // failed plain post is sent back to it by name.
        let page = match crate::domain::LinkToken::parse(&token) {
            Ok(token) => format!("/reset?token={}", token.as_str()),
            Err(_) => "/reset".to_owned(),
        };
        call.reply.on_failure_return_to(&page);
        accounts::reset_password(&call.state, &call.meta, &token, &new_password).await?;
        call.reply.redirect("/signin?reset=1");
        Ok(())
    })
    .await
}

/// The signed-in user's address and whether it is proven.
#[server(endpoint = "account_email")]
pub async fn account_email() -> Result<EmailStatus, AppError> {
    handle(async |call| {
        let session = call.user().await?;
        accounts::account_email(&call.state, &session).await
    })
    .await
}

/// Mails the verification link again (rate limited).
#[server(endpoint = "resend_verification")]
pub async fn resend_verification() -> Result<(), AppError> {
    handle(async |call| {
        let session = call.user().await?;
        accounts::resend_verification(&call.state, &session).await?;
        call.reply
            .redirect_form_post("/account?verification_sent=1");
        Ok(())
    })
    .await
}

/// Marks the link's address verified (the `/verify` page calls it).
#[server(endpoint = "verify_email")]
pub async fn verify_email(token: String) -> Result<(), AppError> {
    handle(async move |call| accounts::verify_email(&call.state, &token).await).await
}

/// Deletes the signed-in user's account (their password confirms it): every
/// device is signed out, and the browser goes to the home page.
#[server(endpoint = "delete_account")]
pub async fn delete_account(password: String) -> Result<(), AppError> {
    handle(async move |call| {
        let session = call.user().await?;
        accounts::delete_account(&call.state, &call.meta, &session, &password).await?;
        call.reply.clear_session_cookie();
        call.reply.redirect("/");
        Ok(())
    })
    .await
}

/// Asks to move the account to `new_email` (the password confirms it): a
/// link goes to the new address, a notice to the current one.
#[server(endpoint = "request_email_change")]
pub async fn request_email_change(
    confirm_password: String,
    new_email: String,
) -> Result<(), AppError> {
    handle(async move |call| {
        let session = call.user().await?;
        accounts::request_email_change(
            &call.state,
            &call.meta,
            &session,
            &confirm_password,
            &new_email,
        )
        .await?;
        call.reply
            .redirect_form_post("/account?email_change_sent=1");
        Ok(())
    })
    .await
}

/// The address a confirmation link would move the account to (the
/// `/confirm-email` page shows it above its button): `Link(…)` says why not.
#[server(endpoint = "check_email_change_link")]
pub async fn check_email_change_link(token: String) -> Result<String, AppError> {
    handle(async move |call| accounts::check_email_change_link(&call.state, &token).await).await
}

/// Changes the address to the one the link was mailed to: the button of
/// the `/confirm-email` page, a plain form post.
#[server(endpoint = "confirm_email_change")]
pub async fn confirm_email_change(token: String) -> Result<(), AppError> {
    handle(async move |call| {
        call.reply
            .on_failure_return_to(&link_page("/confirm-email", &token));
        accounts::confirm_email_change(&call.state, &call.meta, &token).await?;
        call.reply.redirect_form_post("/confirm-email?changed=1");
        Ok(())
    })
    .await
}

/// Whether a "this wasn't me" link still works (its page asks before
/// showing the button): `Link(…)` says why not.
#[server(endpoint = "check_cancel_email_change_link")]
pub async fn check_cancel_email_change_link(token: String) -> Result<(), AppError> {
    handle(async move |call| accounts::check_cancel_link(&call.state, &token).await).await
}

/// "This wasn't me": cancels the pending address change the link was
/// mailed about. The button of the `/cancel-email-change` page.
#[server(endpoint = "cancel_email_change")]
pub async fn cancel_email_change(token: String) -> Result<(), AppError> {
    handle(async move |call| {
        call.reply
            .on_failure_return_to(&link_page("/cancel-email-change", &token));
        accounts::cancel_email_change(&call.state, &token).await?;
        call.reply
            .redirect_form_post("/cancel-email-change?cancelled=1");
        Ok(())
    })
    .await
}

/// The page of a link, named for a failed plain post to go back to (the
/// page sends no Referer): with its token only if it is one.
#[cfg(feature = "ssr")]
fn link_page(path: &str, token: &str) -> String {
    match crate::domain::LinkToken::parse(token) {
        Ok(token) => format!("{path}?token={}", token.as_str()),
        Err(_) => path.to_owned(),
    }
}
