use leptos::either::Either;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::Redirect;
use leptos_router::hooks::use_query_map;

use super::form::{
    call, server_field_error, Field, FormAction, FormError, ServerForm, SubmitButton,
};
use super::use_auth;
use crate::api::{
    account_email, list_activity, list_sessions, ActivityEntry, ActivityKind, ChangePassword,
    DeleteAccount, EmailStatus, ListSessions, LogoutEverywhere, RequestEmailChange,
    ResendVerification, RevokeSession, SessionInfo,
};
use crate::domain::{Device, Email, Password};
use crate::error::AppError;

fn check_password(s: &str) -> Option<String> {
    Password::parse(s).err()
}
fn check_email(s: &str) -> Option<String> {
    Email::parse(s).err()
}

/// A browser's user agent, shortened to what a person recognises.
fn device_name(user_agent: &str) -> String {
    Device::from_user_agent(user_agent).to_string()
}

fn minutes_ago(then_ms: u64) -> String {
    #[cfg(feature = "ssr")]
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(then_ms);
    #[cfg(all(not(feature = "ssr"), feature = "hydrate"))]
    let now = js_sys_now();
    #[cfg(not(any(feature = "ssr", feature = "hydrate")))]
    let now = then_ms;
    let minutes = now.saturating_sub(then_ms) / 60_000;
    match minutes {
        0 => "just now".to_owned(),
        1 => "1 minute ago".to_owned(),
        m if m < 120 => format!("{m} minutes ago"),
        m if m < 48 * 60 => format!("{} hours ago", m / 60),
        m => format!("{} days ago", m / (24 * 60)),
    }
}

#[cfg(all(not(feature = "ssr"), feature = "hydrate"))]
fn js_sys_now() -> u64 {
    js_sys::Date::now() as u64
}

#[component]
pub fn AccountPage() -> impl IntoView {
    let auth = use_auth();
    view! {
        <Title text="Account"/>
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match auth.user.await {
                    None => Either::Left(view! { <Redirect path="/signin"/> }),
                    Some(user) => Either::Right(view! { <AccountSettings username=user.username/> }),
                }
            })}
        </Transition>
    }
}

/// Loads the sessions on the server and hands them to the island.
#[component]
fn AccountSettings(username: String) -> impl IntoView {
    let sessions = Resource::<_>::new_with_options(|| (), |_| list_sessions(), false);
    let activity = Resource::<_>::new_with_options(|| (), |_| list_activity(), false);
    let email = Resource::<_>::new_with_options(|| (), |_| account_email(), false);
    // Set by the server's redirect after a change without JavaScript.
    let query = use_query_map();
    let password_changed = query.read_untracked().get("password_changed").is_some();
    let verification_sent = query.read_untracked().get("verification_sent").is_some();
    let email_change_sent = query.read_untracked().get("email_change_sent").is_some();
    view! {
        <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || {
                let username = username.clone();
                Suspend::new(async move {
                    let sessions = sessions.await;
                    let activity = activity.await;
                    let email = email.await.ok();
                    let current = email.as_ref().map(|e| e.email.clone()).unwrap_or_default();
                    let unverified = email.filter(|email| !email.verified);
                    view! {
                        {unverified.map(|EmailStatus { email, .. }| view! {
                            <VerifyBanner email sent=verification_sent/>
                        })}
                        <AccountForms username sessions password_changed/>
                        <ChangeEmailForm current sent=email_change_sent/>
                        <ActivityList activity/>
                        <DeleteAccountForm/>
                    }
                })
            }}
        </Suspense>
    }
}

/// Asks the owner of an unproven address to use the mailed link, and mails
/// it again on request (a plain form without JavaScript).
#[island]
fn VerifyBanner(email: String, sent: bool) -> impl IntoView {
    let resend = FormAction::of::<ResendVerification>();
    let value = resend.value();
    let resent = move || sent || matches!(value.get(), Some(Ok(())));
    view! {
        <section class="card banner banner-warning" data-testid="verify-banner" aria-labelledby="verify-heading">
            <h2 id="verify-heading">"Confirm your email address"</h2>
            <p>"We mailed a link to " <strong>{email}</strong> ". Use it to confirm the address is yours."</p>
            <Show when=resent>
                <p role="status" data-testid="verification-sent">"A new link is on its way."</p>
            </Show>
            <ServerForm action=resend class="inline-form">
                <FormError value=value/>
                <SubmitButton pending=resend.pending() label="Send the link again" busy="Sending…" testid="resend-verification"/>
            </ServerForm>
        </section>
    }
}

/// The account page's forms, and the session list they change (a revoked
/// session, or a password change, reloads it from the server).
#[island]
fn AccountForms(
    username: String,
    sessions: Result<Vec<SessionInfo>, AppError>,
    password_changed: bool,
) -> impl IntoView {
    let change = FormAction::of::<ChangePassword>();
    let revoke = FormAction::of::<RevokeSession>();
    let everywhere = FormAction::of::<LogoutEverywhere>();
    let sessions = RwSignal::new(sessions);
    Effect::watch(
        move || (revoke.version().get(), change.version().get()),
        move |_, _, _| {
            leptos::task::spawn_local(async move {
                sessions.set(call::<ListSessions>(String::new()).await);
            });
        },
        false,
    );
    let changed = move || matches!(change.value().get(), Some(Ok(()))) || password_changed;
    let value = change.value();
    // Signing out everywhere ends this session too: the server function
    // redirects to sign-in (this is the fallback should it not).
    Effect::new(move |_| {
        if matches!(everywhere.value().get(), Some(Ok(_))) {
            let _ = leptos::prelude::window().location().set_href("/signin");
        }
    });

    view! {
        <section class="card">
            <h1>"Account"</h1>
            <p class="muted">"Signed in as @" {username}</p>
            <p><a href="/account/export" download="" data-testid="export">"Download your data (JSON)"</a></p>
        </section>
        <section class="card">
            <h2>"Change password"</h2>
            <p class="muted">"Changing your password signs out every other device."</p>
            <Show when=changed>
                <p class="banner banner-success" role="status" data-testid="password-changed">"Password changed. Other devices were signed out."</p>
            </Show>
            <ServerForm action=change novalidate=true class="form">
                <FormError value=value/>
                <Field label="Current password" name="current_password" kind="password" autocomplete="current-password"
                    server=server_field_error(value, "current_password")/>
                <Field label="New password" name="new_password" kind="password" autocomplete="new-password"
                    live=check_password server=server_field_error(value, "new_password")/>
                <SubmitButton pending=change.pending() label="Change password" busy="Changing…"/>
            </ServerForm>
        </section>
        <section class="card">
            <h2>"Where you are signed in"</h2>
            {move || match sessions.get() {
                Ok(list) => Either::Left(view! { <SessionList list=list revoke=revoke/> }),
                Err(error) => Either::Right(view! { <p class="banner banner-error">{error.to_string()}</p> }),
            }}
            <ServerForm action=everywhere class="form">
                <button type="submit" class="button button-danger" data-testid="sign-out-everywhere">
                    "Sign out everywhere"
                </button>
            </ServerForm>
        </section>
    }
}
#[component]
fn SessionList(list: Vec<SessionInfo>, revoke: FormAction<()>) -> impl IntoView {
    view! {
        <ul class="sessions" data-testid="sessions">
            {list.into_iter().map(|session| view! {
                <li class="session">
                    <div>
                        <strong>{device_name(&session.user_agent)}</strong>
                        {session.current.then(|| view! { <span class="badge">"This device"</span> })}
                        <div class="muted small">
                            {session.ip.clone()} " · last active " {minutes_ago(session.last_seen_ms)}
                            " · signed in " {minutes_ago(session.created_at_ms)}
                        </div>
                    </div>
                    {(!session.current).then(|| view! {
                        <ServerForm action=revoke class="inline-form">
                            <input type="hidden" name="id" value=session.id.clone()/>
                            <button type="submit" class="link-button">"Sign out"</button>
                        </ServerForm>
                    })}
                </li>
            }).collect_view()}
        </ul>
    }
}

/// Changing the address: a link goes to the new one, which changes only
/// when it is used.
#[island]
fn ChangeEmailForm(current: String, sent: bool) -> impl IntoView {
    let action = FormAction::of::<RequestEmailChange>();
    let value = action.value();
    let done = move || sent || matches!(value.get(), Some(Ok(())));
    view! {
        <section class="card" aria-labelledby="email-heading">
            <h2 id="email-heading">"Email address"</h2>
            <p class="muted">"Your address is " <strong>{current}</strong> ". A new one is used once you confirm it from the mail we send there."</p>
            <Show when=done>
                <p class="banner banner-success" role="status" data-testid="email-change-sent">"We mailed a link to the new address. Your address changes when you use it."</p>
            </Show>
            <ServerForm action=action novalidate=true class="form">
                <FormError value=value/>
                <Field label="New email address" name="new_email" kind="email" autocomplete="email"
                    live=check_email server=server_field_error(value, "new_email")/>
                <Field label="Password, to confirm" name="confirm_password" kind="password" autocomplete="current-password"
                    server=server_field_error(value, "confirm_password")/>
                <SubmitButton pending=action.pending() label="Change email" busy="Sending…" testid="change-email"/>
            </ServerForm>
        </section>
    }
}

/// Deleting the account, confirmed with the password. On success the server
/// function sends the browser to the home page, signed out.
#[island]
fn DeleteAccountForm() -> impl IntoView {
    let action = FormAction::of::<DeleteAccount>();
    let value = action.value();
    view! {
        <section class="card" aria-labelledby="delete-heading">
            <h2 id="delete-heading">"Delete your account"</h2>
            <p class="muted">"Your account, profile and picture are deleted and every device is signed out, at once. Your username cannot be taken by anyone for 30 days."</p>
            <ServerForm action=action novalidate=true class="form">
                <FormError value=value/>
                <Field label="Your password" name="password" kind="password" autocomplete="current-password"
                    server=server_field_error(value, "password")/>
                <button type="submit" class="button button-danger" disabled=move || action.pending().get() data-testid="delete-account">
                    "Delete my account"
                </button>
            </ServerForm>
        </section>
    }
}

/// The account's security history: rendered on the server only (no island,
/// nothing to click), so it reads the same with JavaScript or without.
#[component]
fn ActivityList(activity: Result<Vec<ActivityEntry>, AppError>) -> impl IntoView {
    view! {
        <section class="card" aria-labelledby="activity-heading">
            <h2 id="activity-heading">"Security activity"</h2>
            {match activity {
                Ok(entries) if entries.is_empty() => Either::Left(view! {
                    <p class="muted">"Nothing yet. New sign-ins, password changes and sign-outs of other devices will show here."</p>
                }.into_any()),
                Ok(entries) => Either::Left(view! {
                    <ul class="activity" data-testid="activity">
                        {entries.into_iter().map(|entry| view! {
                            <li class="activity-entry">
                                <strong>{describe(&entry)}</strong>
                                <div class="muted small">{entry.ip} " · " {minutes_ago(entry.occurred_at_ms)}</div>
                            </li>
                        }).collect_view()}
                    </ul>
                }.into_any()),
                Err(error) => Either::Right(view! { <p class="banner banner-error">{error.to_string()}</p> }),
            }}
        </section>
    }
}

fn describe(entry: &ActivityEntry) -> String {
    match entry.kind {
        ActivityKind::NewSignIn => format!("New sign-in from {}", entry.device),
        ActivityKind::PasswordChanged => format!("Password changed from {}", entry.device),
        ActivityKind::EmailChanged => format!("Email address changed from {}", entry.device),
        ActivityKind::SessionsRevoked if entry.count == 1 => {
            format!("Another device signed out from {}", entry.device)
        }
        ActivityKind::SessionsRevoked => {
            format!("{} sessions signed out from {}", entry.count, entry.device)
        }
        ActivityKind::SignInsBlocked => format!(
            "Too many wrong passwords: sign-ins were paused for a while, from browsers new to this account or from one of yours (first from {})",
            entry.device
        ),
    }
}
