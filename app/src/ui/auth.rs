use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::{Redirect, A};
use leptos_router::hooks::use_query_map;

use super::form::{server_field_error, Field, FormAction, FormError, ServerForm, SubmitButton};
use super::use_auth;
use crate::api::{Login, Register};
use crate::domain::{Email, Password, Username};

fn check_username(s: &str) -> Option<String> {
    Username::parse(s).err()
}
fn check_email(s: &str) -> Option<String> {
    Email::parse(s).err()
}
fn check_password(s: &str) -> Option<String> {
    Password::parse(s).err()
}

/// Once signed in, the sign-in and sign-up pages have nothing to offer.
#[component]
fn RedirectIfSignedIn() -> impl IntoView {
    let auth = use_auth();
    view! {
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                auth.user.await.map(|_| view! { <Redirect path="/"/> })
            })}
        </Transition>
    }
}

#[component]
pub fn SignUpPage() -> impl IntoView {
    view! {
        <Title text="Sign up"/>
        <RedirectIfSignedIn/>
        <section class="card narrow">
            <h1>"Create your Folio"</h1>
            <SignUpForm/>
            <p class="muted">"Already have an account? " <A href="/signin">"Sign in"</A></p>
        </section>
    }
}

/// On success the server function redirects to `/`: a page load, so the
/// header shows who is signed in.
#[island]
fn SignUpForm() -> impl IntoView {
    let action = FormAction::of::<Register>();
    let value = action.value();
    view! {
        <ServerForm action=action novalidate=true class="form">
            <FormError value=value/>
            <Field label="Username" name="username" autocomplete="username"
                hint="3–30 characters: letters, digits, _"
                live=check_username server=server_field_error(value, "username")/>
            <Field label="Email" name="email" kind="email" autocomplete="email"
                live=check_email server=server_field_error(value, "email")/>
            <Field label="Password" name="password" kind="password" autocomplete="new-password"
                hint="At least 8 characters; a few unrelated words work well."
                live=check_password server=server_field_error(value, "password")/>
            <SubmitButton pending=action.pending() label="Sign up" busy="Creating your account…" testid="submit"/>
        </ServerForm>
    }
}

#[component]
pub fn SignInPage() -> impl IntoView {
    // Where a password reset sends the browser (it signs no one in).
    let reset = use_query_map().read_untracked().get("reset").is_some();
    view! {
        <Title text="Sign in"/>
        <RedirectIfSignedIn/>
        <section class="card narrow">
            <h1>"Sign in"</h1>
            {reset.then(|| view! {
                <p class="banner banner-success" role="status" data-testid="password-reset">
                    "Your password was changed and every device signed out. Sign in with your new password."
                </p>
            })}
            <SignInForm/>
            <p class="muted"><A href="/forgot">"Forgot your password?"</A></p>
            <p class="muted">"New here? " <A href="/signup">"Create an account"</A></p>
        </section>
    }
}

/// Like `SignUpForm`: a success redirects to `/` with a page load.
#[island]
fn SignInForm() -> impl IntoView {
    let action = FormAction::of::<Login>();
    let value = action.value();
    view! {
        <ServerForm action=action novalidate=true class="form">
            <FormError value=value/>
            <Field label="Username or email" name="identifier" autocomplete="username"
                server=server_field_error(value, "identifier")/>
            <Field label="Password" name="password" kind="password" autocomplete="current-password"
                server=server_field_error(value, "password")/>
            <SubmitButton pending=action.pending() label="Sign in" busy="Signing in…" testid="submit"/>
        </ServerForm>
    }
}
