use leptos::prelude::*;
use leptos_meta::{Meta, Title};

use crate::api::count_users;

#[component]
pub fn HomePage() -> impl IntoView {
    let users = Resource::<_>::new_with_options(|| (), |_| count_users(), false);
    view! {
        <Title text=""/>
        <Meta name="description" content="Folio: a public profile page that stays fast and available."/>
        <Hero>
            <p class="stat" data-testid="user-count">
                <Suspense fallback=|| view! { <span class="muted">"Counting people…"</span> }>
                    {move || Suspend::new(async move {
                        match users.await {
                            Ok(1) => "1 person has a Folio.".to_owned(),
                            Ok(n) => format!("{n} people have a Folio."),
                            Err(_) => "People are signing up right now.".to_owned(),
                        }
                    })}
                </Suspense>
            </p>
        </Hero>
    }
}

/// The hero and its "How it works" toggle. An island around the whole hero
/// (the toggle's section follows it), the user count passed in as children:
/// rendered on the server, never hydrated.
#[island]
fn Hero(children: Children) -> impl IntoView {
    let (show_how, set_show_how) = signal(false);
    view! {
        <section class="hero">
            <h1>"Your public profile, fast everywhere."</h1>
            <p class="lead">"Sign up, write a few lines about yourself, and share one link."</p>
            {children()}
            <div class="actions">
                <a href="/signup" class="button">"Create your profile"</a>
                <button
                    type="button"
                    class="button button-secondary"
                    data-testid="how-toggle"
                    aria-expanded=move || show_how.get().to_string()
                    on:click=move |_| set_show_how.update(|v| *v = !*v)
                >
                    {move || if show_how.get() { "Hide how it works" } else { "How it works" }}
                </button>
            </div>
        </section>
        <Show when=move || show_how.get()>
            <section class="card how" data-testid="how-it-works">
                <h2>"How Folio works"</h2>
                <ul>
                    <li>"Pages are rendered on the server, then the browser takes over."</li>
                    <li>"Sessions live in Redis, so any server can answer you."</li>
                    <li>"Profiles are read from a cache first, and Postgres only on a miss."</li>
                </ul>
            </section>
        </Show>
    }
}
