//! `/verify?token=`: the link mailed to prove an address. Using it is the
//! proof, so the page redeems it as it renders (no form to press): a link
//! scanner at the person's mail server that opens it first proves no less.

use leptos::either::Either;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;
use leptos_router::hooks::use_query_map;

use super::set_status;
use crate::api::{confirm_email_change, verify_email};

/// Answers in one piece (`SsrMode::Async`), with the status of a link that
/// did not work.
#[component]
pub fn VerifyPage() -> impl IntoView {
    // The URL holds a token, as the reset page's does.
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
    let verified = Resource::<_>::new_with_options(move || token.clone(), verify_email, false);
    view! {
        <Title text="Confirm your address"/>
        <Suspense fallback=|| view! { <p class="muted">"Confirming…"</p> }>
            {move || Suspend::new(async move {
                match verified.await {
                    Ok(()) => Either::Left(view! {
                        <section class="card narrow" data-testid="email-verified">
                            <h1>"Address confirmed"</h1>
                            <p class="banner banner-success" role="status">"Thank you: your email address is confirmed."</p>
                            <A href="/account" attr:class="button">"Go to your account"</A>
                        </section>
                    }),
                    Err(error) => {
                        set_status(error.status_code());
                        Either::Right(view! {
                            <section class="card narrow" data-testid="link-refused">
                                <h1>"This link does not work"</h1>
                                <p class="banner banner-error" role="alert">{error.to_string()}</p>
                                <p class="muted">"Your account page can send a new link."</p>
                                <A href="/account" attr:class="button">"Go to your account"</A>
                            </section>
                        })
                    }
                }
            })}
        </Suspense>
    }
}

/// `/confirm-email?token=`: the link mailed to a new address. Using it is
/// the confirmation, as for `/verify`; the account's address changes now.
#[component]
pub fn ConfirmEmailPage() -> impl IntoView {
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
    let changed =
        Resource::<_>::new_with_options(move || token.clone(), confirm_email_change, false);
    view! {
        <Title text="Confirm your new address"/>
        <Suspense fallback=|| view! { <p class="muted">"Confirming…"</p> }>
            {move || Suspend::new(async move {
                match changed.await {
                    Ok(()) => Either::Left(view! {
                        <section class="card narrow" data-testid="email-changed">
                            <h1>"Address changed"</h1>
                            <p class="banner banner-success" role="status">"Your account uses its new address from now on."</p>
                            <A href="/account" attr:class="button">"Go to your account"</A>
                        </section>
                    }),
                    Err(error) => {
                        set_status(error.status_code());
                        Either::Right(view! {
                            <section class="card narrow" data-testid="link-refused">
                                <h1>"This link does not work"</h1>
                                <p class="banner banner-error" role="alert">{error.to_string()}</p>
                                <p class="muted">"Your account page can ask for the change again."</p>
                                <A href="/account" attr:class="button">"Go to your account"</A>
                            </section>
                        })
                    }
                }
            })}
        </Suspense>
    }
}
