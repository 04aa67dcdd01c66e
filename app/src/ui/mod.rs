//! The Leptos UI, in islands mode: every page is rendered on the server, and
//! only the `#[island]` components (the forms, the home page's toggle, the
//! hydration marker) are compiled to WASM and hydrated in the browser. Links
//! are plain links: a navigation is a page load.

mod account;
mod auth;
mod avatar;
mod form;
mod home;
mod profile;
mod recovery;
mod search;
mod verify;

use leptos::either::Either;
use leptos::prelude::*;
use leptos_meta::{provide_meta_context, HashedStylesheet, Link, MetaTags, Title};
use leptos_router::components::{Route, Router, Routes, A};
use leptos_router::{ParamSegment, SsrMode, StaticSegment};

use crate::api::{current_user, Logout, SignedInUser};
use leptos::server_fn::ServerFn;

/// The browser side, called by the WASM entry point (`frontend`): server
/// functions that redirect (sign in, sign up, sign out, sign out everywhere)
/// do so with a full page load, so the whole page (header included) is
/// rendered anew for the new session; then the islands hydrate.
#[cfg(feature = "hydrate")]
pub fn hydrate() {
    let _ = leptos::server_fn::redirect::set_redirect_hook(|location: &str| {
        let _ = window().location().set_href(location);
    });
    leptos::mount::hydrate_islands();
    provide_server_action_error();
}

/// A plain form post that failed (sent before the WASM loaded, or without
/// JavaScript) comes back with the error in the URL (`__path`, `__err`). On
/// the server the router hands it to the page's `FormAction`s; in the browser
/// there is no router, so this does the same for the islands, which then
/// hydrate with the error the server rendered.
#[cfg(feature = "hydrate")]
fn provide_server_action_error() {
    let Ok(search) = window().location().search() else {
        return;
    };
    let param = |name: &str| {
        search
            .trim_start_matches('?')
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, _)| *key == name)
            .and_then(|(_, value)| js_sys::decode_uri_component(&value.replace('+', " ")).ok())
            .map(String::from)
    };
    if let (Some(path), Some(err)) = (param("__path"), param("__err")) {
        provide_context(leptos::server::ServerActionError::new(&path, &err));
    }
}

/// The HTML document around the app (server side only renders this).
pub fn shell(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    set_content_security_policy(&options);
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <AutoReload options=options.clone()/>
                <HashedStylesheet options=options.clone() id="leptos"/>
                <HydrationScripts options islands=true/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// The page's Content-Security-Policy, with this response's nonce: Leptos
/// puts the nonce on every inline script it emits (hydration, streamed
/// resources), so no `unsafe-inline` is needed; `wasm-unsafe-eval` lets the
/// page compile its WASM and nothing else.
#[cfg(feature = "ssr")]
fn set_content_security_policy(options: &LeptosOptions) {
    use leptos::nonce::use_nonce;
    let (Some(nonce), Some(response)) =
        (use_nonce(), use_context::<leptos_axum::ResponseOptions>())
    else {
        // The edge refuses the page (a 500, counted): say which was missing.
        tracing::error!(
            nonce = use_nonce().is_some(),
            response_options = use_context::<leptos_axum::ResponseOptions>().is_some(),
            "no Content-Security-Policy for this page"
        );
        return;
    };
    // `cargo leptos watch` reloads the page over a websocket on its own port.
    let reload = if options.env == leptos::config::Env::DEV {
        format!(" ws://{}:{}", options.site_addr.ip(), options.reload_port)
    } else {
        String::new()
    };
    let policy = format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self'; img-src 'self' https: data: blob:; connect-src 'self'{reload}; \
         frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
    );
    if let Ok(value) = http::HeaderValue::from_str(&policy) {
        response.insert_header(http::header::CONTENT_SECURITY_POLICY, value);
    }
}

/// Who is signed in, shared by the header and every page, read once per
/// page render on the server (a sign-in or sign-out is followed by a page
/// load, which reads it again).
#[derive(Clone, Copy)]
pub struct Auth {
    pub user: Resource<Option<SignedInUser>>,
}

pub fn use_auth() -> Auth {
    expect_context::<Auth>()
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();

    view! {
        <Link rel="icon" href="/favicon.svg"/>
        <Title formatter=|title: String| escape_title(if title.is_empty() { "Folio".to_owned() } else { format!("{title} · Folio") })/>
        <Router>
            <Pages/>
        </Router>
        <HydrationMarker/>
    }
}

/// leptos_meta writes the `<title>` into the server's HTML as it is, and a
/// title holds people's display names: `</title><meta http-equiv=refresh …>`
/// would become markup. Escaped here, on the server only (islands never set
/// the title in the browser, where `document.title` takes plain text).
fn escape_title(title: String) -> String {
    if cfg!(feature = "ssr") {
        title
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    } else {
        title
    }
}

/// Browser tests wait for `data-hydrated` on `<body>` before clicking. This
/// island is on every page, and the islands of a page hydrate in document
/// order, so it is set (by its first effect, which runs only in the browser)
/// once every other island of the page is interactive.
#[island]
fn HydrationMarker() -> impl IntoView {
    Effect::new(move |_| {
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });
}

/// Inside the router. Server actions whose errors must show without
/// JavaScript are made in the pages, under `<Routes>`: that is where the
/// router provides the error a plain form post brought back in the URL.
#[component]
fn Pages() -> impl IntoView {
    let user = Resource::<_>::new_with_options(
        || (),
        |_| async move { current_user().await.ok().flatten() },
        false,
    );
    provide_context(Auth { user });

    view! {
        <Header/>
        <main class="page">
            // In-order streaming: each Suspense is rendered in place as
            // its data arrives, so every page (and the signed-in header)
            // is complete without JavaScript; out-of-order streaming
            // would need JavaScript to move the late chunks into place.
            <Routes fallback=|| view! { <NotFound/> }>
                <Route path=StaticSegment("") view=|| view! { <home::HomePage/> } ssr=SsrMode::InOrder/>
                <Route path=StaticSegment("signup") view=|| view! { <auth::SignUpPage/> } ssr=SsrMode::InOrder/>
                <Route path=StaticSegment("signin") view=|| view! { <auth::SignInPage/> } ssr=SsrMode::InOrder/>
                <Route path=StaticSegment("forgot") view=|| view! { <recovery::ForgotPage/> } ssr=SsrMode::InOrder/>
                // Async: a link that no longer works answers with its status.
                <Route path=StaticSegment("reset") view=|| view! { <recovery::ResetPage/> } ssr=SsrMode::Async/>
                <Route path=StaticSegment("verify") view=|| view! { <verify::VerifyPage/> } ssr=SsrMode::Async/>
                <Route path=StaticSegment("confirm-email") view=|| view! { <verify::ConfirmEmailPage/> } ssr=SsrMode::Async/>
                <Route path=StaticSegment("cancel-email-change") view=|| view! { <verify::CancelEmailChangePage/> } ssr=SsrMode::Async/>
                <Route path=StaticSegment("account") view=|| view! { <account::AccountPage/> } ssr=SsrMode::InOrder/>
                <Route path=(StaticSegment("settings"), StaticSegment("profile")) view=|| view! { <profile::EditProfilePage/> } ssr=SsrMode::InOrder/>
                // Async: a refused query or page link answers with its 4xx status.
                <Route path=StaticSegment("people") view=|| view! { <search::PeoplePage/> } ssr=SsrMode::Async/>
                // Async: a public profile arrives complete (title, meta
                // description, 404 status) for crawlers and link previews.
                <Route path=(StaticSegment("u"), ParamSegment("username")) view=|| view! { <profile::ProfilePage/> } ssr=SsrMode::Async/>
            </Routes>
        </main>
        <footer class="footer">"Folio · typed RPC, Redis sessions, cache-aside reads"</footer>
    }
}

#[component]
fn Header() -> impl IntoView {
    let auth = use_auth();
    // Read now, while the router's context is certainly there: the links
    // below are built after an await, and a request that ends meanwhile
    // (the client went away) disposes the owner that held the router, so a
    // router `<A>` built then panicked looking it up (seen in the fuzzer).
    // Every navigation here is a page load: a plain link does the same.
    let path = leptos_router::hooks::use_location()
        .pathname
        .get_untracked();
    let current = move |href: &str| (path == href).then_some("page");
    view! {
        <header class="header">
            <A href="/" attr:class="brand">"Folio"</A>
            <search::HeaderSearch/>
            <nav class="nav">
                <Transition fallback=|| ()>
                    {move || {
                        let current = current.clone();
                        Suspend::new(async move {
                        match auth.user.await {
                            Some(user) => Either::Left(view! {
                                <a href=format!("/u/{}", user.username) class="nav-user"
                                    aria-current=current(&format!("/u/{}", user.username))>"@"{user.username.clone()}</a>
                                <a href="/settings/profile" aria-current=current("/settings/profile")>"Edit profile"</a>
                                <a href="/account" aria-current=current("/account")>"Account"</a>
                                // A plain form, no island: the server
                                // signs out and redirects to a fresh page.
                                <form action=Logout::url() method="post" class="inline-form">
                                    <button type="submit" class="link-button" data-testid="sign-out">"Sign out"</button>
                                </form>
                            }),
                            None => Either::Right(view! {
                                <a href="/signin" aria-current=current("/signin")>"Sign in"</a>
                                <a href="/signup" class="button button-small" aria-current=current("/signup")>"Sign up"</a>
                            }),
                        }
                    })
                    }}
                </Transition>
            </nav>
        </header>
    }
}

/// Sets the response status during server rendering (no-op in the browser).
pub fn set_status(code: u16) {
    #[cfg(feature = "ssr")]
    if let (Some(response), Ok(status)) = (
        use_context::<leptos_axum::ResponseOptions>(),
        http::StatusCode::from_u16(code),
    ) {
        response.set_status(status);
    }
    #[cfg(not(feature = "ssr"))]
    let _ = code;
}

#[component]
pub fn NotFound() -> impl IntoView {
    set_status(404);
    view! {
        <Title text="Page not found"/>
        <section class="card narrow center">
            <h1>"Page not found"</h1>
            <p class="muted">"There is nothing at this address."</p>
            <A href="/" attr:class="button">"Back to the home page"</A>
        </section>
    }
}
