//! The Leptos UI. Rendered on the server, hydrated in the browser; the same
//! components run in both places.

mod account;
mod auth;
mod form;
mod home;
mod profile;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, Link, MetaTags, Stylesheet, Title};
use leptos_router::components::{Route, Router, Routes, A};
use leptos_router::{ParamSegment, SsrMode, StaticSegment};

use crate::api::{current_user, SignedInUser, Login, Logout, Register};

/// The HTML document around the app (server side only renders this).
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// Who is signed in, shared by the header and every page. Refetched whenever
/// an action that changes it completes.
#[derive(Clone, Copy)]
pub struct Auth {
    pub user: Resource<Option<SignedInUser>>,
    pub login: ServerAction<Login>,
    pub register: ServerAction<Register>,
    pub logout: ServerAction<Logout>,
}

pub fn use_auth() -> Auth {
    expect_context::<Auth>()
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    let login = ServerAction::<Login>::new();
    let register = ServerAction::<Register>::new();
    let logout = ServerAction::<Logout>::new();
    let user = Resource::new(
        move || (login.version().get(), register.version().get(), logout.version().get()),
        |_| async move { current_user().await.ok().flatten() },
    );
    provide_context(Auth { user, login, register, logout });

    // Browser tests wait for this marker before clicking: it is set by the
    // first effect, which only ever runs once the WASM has hydrated the page.
    Effect::new(move |_| {
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });

    view! {
        <Stylesheet id="leptos" href="/pkg/folio.css"/>
        <Link rel="icon" href="/favicon.svg"/>
        <Title formatter=|title: String| if title.is_empty() { "Folio".to_owned() } else { format!("{title} · Folio") }/>
        <Router>
            <Header/>
            <main class="page">
                <Routes fallback=|| view! { <NotFound/> }>
                    <Route path=StaticSegment("") view=home::HomePage/>
                    <Route path=StaticSegment("signup") view=auth::SignUpPage/>
                    <Route path=StaticSegment("signin") view=auth::SignInPage/>
                    <Route path=StaticSegment("account") view=account::AccountPage/>
                    <Route path=(StaticSegment("settings"), StaticSegment("profile")) view=profile::EditProfilePage/>
                    // Async: a public profile arrives complete (title, meta
                    // description, 404 status) for crawlers and link previews.
                    <Route path=(StaticSegment("u"), ParamSegment("username")) view=profile::ProfilePage ssr=SsrMode::Async/>
                </Routes>
            </main>
            <footer class="footer">"Folio · typed RPC, Redis sessions, cache-aside reads"</footer>
        </Router>
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
                            Some(user) => view! {
                                <A href=format!("/u/{}", user.username) attr:class="nav-user">"@"{user.username.clone()}</A>
                                <A href="/settings/profile">"Edit profile"</A>
                                <A href="/account">"Account"</A>
                                <ActionForm action=auth.logout attr:class="inline-form">
                                    <button type="submit" class="link-button" data-testid="sign-out">"Sign out"</button>
                                </ActionForm>
                            }.into_any(),
                            None => view! {
                                <A href="/signin">"Sign in"</A>
                                <A href="/signup" attr:class="button button-small">"Sign up"</A>
                            }.into_any(),
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
