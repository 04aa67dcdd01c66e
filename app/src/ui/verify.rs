//! The pages of mailed links about the address.
//!
//! `/verify?token=`: the link mailed to prove an address. Using it is the
//! proof, so the page redeems it as it renders (no form to press): a link
//! scanner at the person's mail server that opens it first proves no less.
//! `/confirm-email` and `/cancel-email-change` change something a scanner
//! must not: they ask, and a button (a POST) acts.

use leptos::either::Either;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;
use leptos_router::hooks::use_query_map;

use leptos::server_fn::ServerFn;

use super::set_status;
use crate::api::{
    check_cancel_email_change_link, check_email_change_link, verify_email, CancelEmailChange,
    ConfirmEmailChange,
};
use crate::error::AppError;

/// Answers in one piece (`SsrMode::Async`), with the status of a link that
/// did not work.
#[component]
pub fn VerifyPage() -> impl IntoView {
    no_referrer();
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

/// The URL holds a token: no Referer may carry it to another site (or to a
/// log), whatever the page links to or loads.
fn no_referrer() {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.insert_header(
            http::header::REFERRER_POLICY,
            http::HeaderValue::from_static("no-referrer"),
        );
    }
}

/// A refused link's page, with the status that says why (`set_status`).
fn link_refused(error: AppError, next: &'static str) -> impl IntoView {
    set_status(error.status_code());
    view! {
        <section class="card narrow" data-testid="link-refused">
            <h1>"This link does not work"</h1>
            <p class="banner banner-error" role="alert">{error.to_string()}</p>
            <p class="muted">{next}</p>
            <A href="/account" attr:class="button">"Go to your account"</A>
        </section>
    }
}

/// `/confirm-email?token=`: the link mailed to a new address. Opening it
/// only asks: the address changes when its button is pressed (a plain form
/// post, with or without JavaScript), so a mail scanner that opens every
/// link changes nothing. After the post, `?changed=1` says it is done.
#[component]
pub fn ConfirmEmailPage() -> impl IntoView {
    no_referrer();
    let (changed, token) = {
        let query = use_query_map().read_untracked();
        (
            query.get("changed").is_some(),
            query.get("token").unwrap_or_default(),
        )
    };
    if changed {
        return Either::Left(view! {
            <Title text="Address changed"/>
            <section class="card narrow" data-testid="email-changed">
                <h1>"Address changed"</h1>
                <p class="banner banner-success" role="status">"Your account uses its new address from now on. Every other device was signed out."</p>
                <A href="/account" attr:class="button">"Go to your account"</A>
            </section>
        });
    }
    let check = Resource::<_>::new_with_options(
        {
            let token = token.clone();
            move || token.clone()
        },
        check_email_change_link,
        false,
    );
    Either::Right(view! {
        <Title text="Confirm your new address"/>
        <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || {
                let token = token.clone();
                Suspend::new(async move {
                    match check.await {
                        Ok(new_email) => Either::Left(view! {
                            <section class="card narrow">
                                <h1>"Confirm your new address"</h1>
                                <p>"Your Folio account will use " <strong>{new_email}</strong> " from now on, and every other device signed in to it will be signed out."</p>
                                <form method="post" action=ConfirmEmailChange::PATH class="form" data-testid="confirm-email-form">
                                    <input type="hidden" name="token" value=token/>
                                    <button type="submit" class="button" data-testid="confirm">"Confirm new address"</button>
                                </form>
                            </section>
                        }),
                        Err(error) => Either::Right(link_refused(
                            error,
                            "Your account page can ask for the change again.",
                        )),
                    }
                })
            }}
        </Suspense>
    })
}

/// `/cancel-email-change?token=`: "this wasn't me", mailed to the old
/// address with the notice of a change. Like the confirmation, opening it
/// only asks; its button cancels, without signing in.
#[component]
pub fn CancelEmailChangePage() -> impl IntoView {
    no_referrer();
    let (cancelled, token) = {
        let query = use_query_map().read_untracked();
        (
            query.get("cancelled").is_some(),
            query.get("token").unwrap_or_default(),
        )
    };
    if cancelled {
        return Either::Left(view! {
            <Title text="Change cancelled"/>
            <section class="card narrow" data-testid="email-change-cancelled">
                <h1>"Change cancelled"</h1>
                <p class="banner banner-success" role="status">"The address of your account stays as it is: the confirmation link no longer works."</p>
                <p>"Whoever asked for the change knew your password or was signed in as you. Choose a new password now: that signs every device out."</p>
                <A href="/forgot" attr:class="button">"Choose a new password"</A>
            </section>
        });
    }
    let check = Resource::<_>::new_with_options(
        {
            let token = token.clone();
            move || token.clone()
        },
        check_cancel_email_change_link,
        false,
    );
    Either::Right(view! {
        <Title text="Cancel the change of address"/>
        <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || {
                let token = token.clone();
                Suspend::new(async move {
                    match check.await {
                        Ok(()) => Either::Left(view! {
                            <section class="card narrow">
                                <h1>"Cancel the change of address"</h1>
                                <p>"Someone asked to move your Folio account to another address. If it was not you, cancel it: the address stays as it is, and nobody is signed in or out."</p>
                                <form method="post" action=CancelEmailChange::PATH class="form" data-testid="cancel-email-change-form">
                                    <input type="hidden" name="token" value=token/>
                                    <button type="submit" class="button" data-testid="cancel-change">"Cancel the change"</button>
                                </form>
                            </section>
                        }),
                        Err(error) => Either::Right(link_refused(
                            error,
                            "The change may already be confirmed or cancelled: your account page shows the address in use.",
                        )),
                    }
                })
            }}
        </Suspense>
    })
}
