//! A forgotten password: `/forgot` asks for the address, `/reset?token=`
//! sets a new password with the mailed link. Both forms work without
//! JavaScript (plain posts to their server functions).

use leptos::either::Either;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;
use leptos_router::hooks::use_query_map;

use super::form::{server_field_error, Field, FormAction, FormError, ServerForm, SubmitButton};
use super::set_status;
use crate::api::{check_reset_link, RequestPasswordReset, ResetPassword};
use crate::domain::{Email, Password};

fn check_email(s: &str) -> Option<String> {
    Email::parse(s).err()
}
fn check_password(s: &str) -> Option<String> {
    Password::parse(s).err()
}

/// What the forgot form answers, whoever's address it was given.
const SENT: &str = "If an account uses this address, a link to choose a new password is on its way. It works once, for 30 minutes.";

#[component]
pub fn ForgotPage() -> impl IntoView {
    // Set by the server's redirect after a plain form post.
    let sent = use_query_map().read_untracked().get("sent").is_some();
    view! {
        <Title text="Forgot your password"/>
        <section class="card narrow">
            <h1>"Forgot your password?"</h1>
            <p class="muted">"Enter the address of your account: we will mail you a link to choose a new password."</p>
            <ForgotForm sent/>
            <p class="muted">"Remembered it? " <A href="/signin">"Sign in"</A></p>
        </section>
    }
}

#[island]
fn ForgotForm(sent: bool) -> impl IntoView {
    let action = FormAction::of::<RequestPasswordReset>();
    let value = action.value();
    let done = move || sent || matches!(value.get(), Some(Ok(())));
    view! {
        <Show when=done>
            <p class="banner banner-success" role="status" data-testid="reset-sent">{SENT}</p>
        </Show>
        <ServerForm action=action novalidate=true class="form">
            <FormError value=value/>
            <Field label="Email" name="email" kind="email" autocomplete="email"
                live=check_email server=server_field_error(value, "email")/>
            <SubmitButton pending=action.pending() label="Send me a link" busy="Sending…" testid="submit"/>
        </ServerForm>
    }
}

/// Answers in one piece (`SsrMode::Async`), so a link that no longer works
/// gets its status (400, 404 or 410) with the page that says why.
#[component]
pub fn ResetPage() -> impl IntoView {
    // The URL holds the token: no Referer may carry it to another site (or
    // to a log), whatever this page links to or loads.
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.insert_header(
            http::header::REFERRER_POLICY,
            http::HeaderValue::from_static("no-referrer"),
        );
    }
    let token = use_query_map()
        .read_untracked()
        .get("token")
        .unwrap_or_default();
    let check = Resource::<_>::new_with_options(
        {
            let token = token.clone();
            move || token.clone()
        },
        check_reset_link,
        false,
    );
    view! {
        <Title text="Choose a new password"/>
        <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || {
                let token = token.clone();
                Suspend::new(async move {
                    match check.await {
                        Ok(()) => Either::Left(view! {
                            <section class="card narrow">
                                <h1>"Choose a new password"</h1>
                                <p class="muted">"Every device signed in to your account will be signed out; then sign in with the new password."</p>
                                <ResetForm token/>
                            </section>
                        }),
                        Err(error) => {
                            set_status(error.status_code());
                            Either::Right(view! {
                                <section class="card narrow" data-testid="link-refused">
                                    <h1>"This link does not work"</h1>
                                    <p class="banner banner-error" role="alert">{error.to_string()}</p>
                                    <A href="/forgot" attr:class="button">"Ask for a new link"</A>
                                </section>
                            })
                        }
                    }
                })
            }}
        </Suspense>
    }
}

/// On success the server function sends the browser to the sign-in page.
#[island]
fn ResetForm(token: String) -> impl IntoView {
    let action = FormAction::of::<ResetPassword>();
    let value = action.value();
    view! {
        <ServerForm action=action novalidate=true class="form">
            <FormError value=value/>
            <input type="hidden" name="token" value=token/>
            <Field label="New password" name="new_password" kind="password" autocomplete="new-password"
                hint="At least 8 characters; a few unrelated words work well."
                live=check_password server=server_field_error(value, "new_password")/>
            <SubmitButton pending=action.pending() label="Set new password" busy="Saving…" testid="submit"/>
        </ServerForm>
    }
}
