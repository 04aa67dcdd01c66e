//! The Leptos UI. Rendered on the server, hydrated in the browser; the same
//! components run in both places.

mod account;
mod auth;
mod codec;
mod form;
mod home;
mod page;
mod profile;

use leptos::either::Either;
use leptos::prelude::*;
use leptos_meta::{provide_meta_context, HashedStylesheet, Link, MetaTags, Title};
use leptos_router::components::{Route, Router, Routes, A};
use leptos_router::{ParamSegment, SsrMode, StaticSegment};

use crate::api::{current_user, Logout, SignedInUser};
use codec::WireJson;
use form::ServerForm;
use page::SyncPage;

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
                <HydrationScripts options/>
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
         style-src 'self'; img-src 'self' https: data:; connect-src 'self'{reload}; \
         frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
    );
    if let Ok(value) = http::HeaderValue::from_str(&policy) {
        response.insert_header(http::header::CONTENT_SECURITY_POLICY, value);
    }
}

/// Who is signed in, shared by the header and every page. Refetched whenever
/// sign-in, sign-up or sign-out completes (`changed`).
#[derive(Clone, Copy)]
pub struct Auth {
    pub user: Resource<Option<SignedInUser>, WireJson>,
    pub logout: ServerAction<Logout>,
    changed: RwSignal<u64>,
}

impl Auth {
    /// Refetches the user after `action` succeeds.
    pub fn refresh_after<T: Send + Sync + 'static, E: Send + Sync + 'static>(
        self,
        value: impl Get<Value = Option<Result<T, E>>> + Send + Sync + 'static,
    ) {
        Effect::new(move |_| {
            if matches!(value.get(), Some(Ok(_))) {
                self.changed.update(|n| *n += 1);
            }
        });
    }
}

pub fn use_auth() -> Auth {
    expect_context::<Auth>()
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();

    // Browser tests wait for this marker before clicking: it is set by the
    // first effect, which only ever runs once the WASM has hydrated the page.
    Effect::new(move |_| {
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });

    view! {
        <Link rel="icon" href="/favicon.svg"/>
        <Title formatter=|title: String| if title.is_empty() { "Folio".to_owned() } else { format!("{title} · Folio") }/>
        <Router>
            <Pages/>
        </Router>
    }
}

/// Inside the router. Server actions whose errors must show without
/// JavaScript are made in the pages, under `<Routes>`: that is where the
/// router provides the error a plain form post brought back in the URL.
#[component]
fn Pages() -> impl IntoView {
    let logout = ServerAction::<Logout>::new();
    let changed = RwSignal::new(0);
    let user = Resource::new_with_options(
        move || (changed.get(), logout.version().get()),
        |_| async move { current_user().await.ok().flatten() },
        false,
    );
    provide_context(Auth {
        user,
        logout,
        changed,
    });

    view! {
        <Header/>
        <main class="page">
            // In-order streaming: each Suspense is rendered in place as
            // its data arrives, so every page (and the signed-in header)
            // is complete without JavaScript; out-of-order streaming
            // would need JavaScript to move the late chunks into place.
            <Routes fallback=|| SyncPage(view! { <NotFound/> })>
                <Route path=StaticSegment("") view=|| SyncPage(view! { <home::HomePage/> }) ssr=SsrMode::InOrder/>
                <Route path=StaticSegment("signup") view=|| SyncPage(view! { <auth::SignUpPage/> }) ssr=SsrMode::InOrder/>
                <Route path=StaticSegment("signin") view=|| SyncPage(view! { <auth::SignInPage/> }) ssr=SsrMode::InOrder/>
                <Route path=StaticSegment("account") view=|| SyncPage(view! { <account::AccountPage/> }) ssr=SsrMode::InOrder/>
                <Route path=(StaticSegment("settings"), StaticSegment("profile")) view=|| SyncPage(view! { <profile::EditProfilePage/> }) ssr=SsrMode::InOrder/>
                // Async: a public profile arrives complete (title, meta
                // description, 404 status) for crawlers and link previews.
                <Route path=(StaticSegment("u"), ParamSegment("username")) view=|| SyncPage(view! { <profile::ProfilePage/> }) ssr=SsrMode::Async/>
            </Routes>
        </main>
        <footer class="footer">"Folio · typed RPC, Redis sessions, cache-aside reads"</footer>
    }
}

#[component]
fn Header() -> impl IntoView {
    let auth = use_auth();
    view! {
        <header class="header">
            <A href="/" attr:class="brand">"Folio"</A>
            <nav class="nav">
                <Transition fallback=|| ()>
                    {move || Suspend::new(async move {
                        match auth.user.await {
                            Some(user) => Either::Left(view! {
                                <A href=format!("/u/{}", user.username) attr:class="nav-user">"@"{user.username.clone()}</A>
                                <A href="/settings/profile">"Edit profile"</A>
                                <A href="/account">"Account"</A>
                                <ServerForm action=auth.logout class="inline-form">
                                    <button type="submit" class="link-button" data-testid="sign-out">"Sign out"</button>
                                </ServerForm>
                            }),
                            None => Either::Right(view! {
                                <A href="/signin">"Sign in"</A>
                                <A href="/signup" attr:class="button button-small">"Sign up"</A>
                            }),
                        }
                    })}
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
