//! People search: the `/people` page and the header's search box.
//!
//! Without JavaScript `/people?q=` is a plain GET form whose results and
//! page links the server renders. With it, the `PeopleSearch` island
//! searches as the person types (debounced), keeps the URL in step (the back
//! button returns to the previous search), and lets the keyboard move
//! through the results. Matches are highlighted by building text nodes
//! around `<mark>` elements: a name or bio is never parsed as markup.

use std::time::Duration;

use leptos::either::Either;
use leptos::prelude::*;
use leptos_meta::{Meta, Title};
use leptos_router::hooks::use_query_map;

use super::form::call;
use super::set_status;
use crate::api::{search_people, PersonHit, SearchPage, SearchPeople};
use crate::domain::{highlight, SearchQuery};
use crate::error::AppError;

/// How long typing must pause before a search is sent.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// The search box in every page's header: a plain GET form (Enter submits
/// a form with one field), no island.
#[component]
pub fn HeaderSearch() -> impl IntoView {
    view! {
        <form action="/people" method="get" role="search" class="header-search">
            <label for="header-q" class="visually-hidden">"Search people"</label>
            <input id="header-q" name="q" type="search" placeholder="Search people"
                autocomplete="off" data-testid="header-search"/>
        </form>
    }
}

#[component]
pub fn PeoplePage() -> impl IntoView {
    let query = use_query_map();
    let args = move || {
        let q = query.read();
        (
            q.get("q").unwrap_or_default(),
            q.get("after"),
            q.get("before"),
        )
    };
    let results = Resource::<_>::new_with_options(
        args,
        |(q, after, before)| search_people(q, after, before),
        false,
    );
    view! {
        <Title text="People"/>
        <Meta name="description" content="Find people on Folio by name, username, place or bio."/>
        <Suspense fallback=|| view! { <p class="muted">"Searching…"</p> }>
            {move || Suspend::new(async move {
                let (q, _, _) = args();
                match results.await {
                    Ok(page) => view! { <PeopleSearch q page error=None/> },
                    Err(error) => {
                        set_status(error.status_code());
                        let message = message(&error);
                        let page = SearchPage { query: q.clone(), ..SearchPage::default() };
                        view! { <PeopleSearch q page error=Some(message)/> }
                    }
                }
            })}
        </Suspense>
    }
}

/// What to say for a failed search: the field's message when there is one.
fn message(error: &AppError) -> String {
    // A page link the server did not seal for this query (an old one, or a
    // made-up one) is refused as a bad request: say what to do about it.
    if *error == AppError::BadRequest {
        return "This page of results has expired. Start the search again.".to_owned();
    }
    error
        .field("q")
        .or_else(|| error.field("cursor"))
        .unwrap_or_else(|| error.to_string())
}

/// `/people` with `q` and one cursor, percent-encoded.
fn people_url(q: &str, cursor: Option<(&str, &str)>) -> String {
    let mut url = format!("/people?q={}", encode(q));
    if let Some((name, value)) = cursor {
        url.push_str(&format!("&{name}={}", encode(value)));
    }
    url
}

/// Percent-encodes a query-string value (everything but unreserved bytes).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `text` with the words matching `terms` in `<mark>`, as text nodes.
fn marked(text: &str, terms: &[String]) -> impl IntoView {
    highlight(text, terms)
        .into_iter()
        .map(|(piece, hit)| {
            let piece = piece.to_owned();
            if hit {
                Either::Left(view! { <mark>{piece}</mark> })
            } else {
                Either::Right(piece)
            }
        })
        .collect_view()
}

/// How a search changes the browser's history.
#[derive(Clone, Copy, PartialEq)]
enum Url {
    /// A new search: a new history entry, so Back returns to the last one.
    Push,
    /// Back or Forward brought the URL: it is already right.
    Keep,
}

/// The search form and its results. `q` is the query as the URL had it,
/// `page` what the server found, `error` why it found nothing.
#[island]
fn PeopleSearch(q: String, page: SearchPage, error: Option<String>) -> impl IntoView {
    let page = RwSignal::new(page);
    let error = RwSignal::new(error);
    let busy = RwSignal::new(false);
    // Answers can arrive out of order: each search gets a number, and an
    // answer older than the one shown is dropped.
    let issued = StoredValue::new(0_u64);
    let shown = StoredValue::new(0_u64);
    let timer = StoredValue::new(None::<TimeoutHandle>);
    let input = NodeRef::<leptos::html::Input>::new();

    let search = move |text: String, url: Url| {
        let seq = issued.get_value() + 1;
        issued.set_value(seq);
        if url == Url::Push {
            push_url(&people_url(text.trim(), None));
        }
        if let Err(message) = SearchQuery::parse(&text) {
            shown.set_value(seq);
            error.set(Some(message));
            return;
        }
        busy.set(true);
        leptos::task::spawn_local(async move {
            let answer = call::<SearchPeople>(format!("q={}", encode(&text))).await;
            if seq <= shown.get_value() {
                return; // a newer search is already on screen
            }
            shown.set_value(seq);
            if seq == issued.get_value() {
                busy.set(false);
            }
            match answer {
                Ok(found) => {
                    error.set(None);
                    page.set(found);
                }
                Err(failure) => error.set(Some(message(&failure))),
            }
        });
    };
    let search_soon = move |text: String| {
        if let Some(pending) = timer.get_value() {
            pending.clear();
        }
        let handle = set_timeout_with_handle(move || search(text, Url::Push), DEBOUNCE).ok();
        timer.set_value(handle);
    };

    // Once hydrated: what was typed before the WASM arrived is searched
    // (the input is not bound to a signal, so hydration leaves it alone),
    // and Back / Forward between searches show that search again.
    let initial_q = q.clone();
    Effect::new(move |_| {
        if let Some(element) = input.get_untracked() {
            let typed = element.value();
            if typed != initial_q {
                search(typed, Url::Push);
            }
        }
        // The listener lives as long as the page (its handle only removes).
        let _ = window_event_listener(leptos::ev::popstate, move |_| {
            let q = url_query();
            if let Some(element) = input.get_untracked() {
                element.set_value(&q);
            }
            search(q, Url::Keep);
        });
    });

    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if let Some(pending) = timer.get_value() {
            pending.clear();
        }
        if let Some(element) = input.get_untracked() {
            search(element.value(), Url::Push);
        }
    };
    // Down from the box enters the results; Up from the first returns.
    let on_input_key = move |ev: leptos::ev::KeyboardEvent| {
        if ev.key() == "ArrowDown" && focus_result(0) {
            ev.prevent_default();
        }
    };
    let on_list_key = move |ev: leptos::ev::KeyboardEvent| {
        let Some(current) = focused_result() else {
            return;
        };
        match ev.key().as_str() {
            "ArrowDown" => {
                ev.prevent_default();
                focus_result(current + 1);
            }
            "ArrowUp" => {
                ev.prevent_default();
                if current == 0 || !focus_result(current - 1) {
                    if let Some(element) = input.get_untracked() {
                        let _ = element.focus();
                    }
                }
            }
            "Escape" => {
                if let Some(element) = input.get_untracked() {
                    let _ = element.focus();
                }
            }
            _ => {}
        }
    };

    let count = move || {
        if let Some(message) = error.get() {
            return message;
        }
        page.with(|p| match (p.people.len(), p.query.is_empty()) {
            (0, true) => "Nobody has a profile yet.".to_owned(),
            (0, false) => format!("No one matches “{}”.", p.query),
            (n, true) => format!(
                "{n} recently updated {}.",
                if n == 1 { "profile" } else { "profiles" }
            ),
            (n, false) if p.next.is_some() || p.prev.is_some() => {
                format!("{n} people on this page.")
            }
            (1, false) => "1 person found.".to_owned(),
            (n, false) => format!("{n} people found."),
        })
    };

    view! {
        <section class="card people">
            <h1>"People"</h1>
            <form action="/people" method="get" role="search" class="search-form" on:submit=on_submit>
                <label for="people-q">"Search by name, username, place or bio"</label>
                <div class="search-row">
                    <input id="people-q" name="q" type="search" value=q node_ref=input
                        autocomplete="off" spellcheck="false" data-testid="people-q"
                        aria-describedby="people-count" aria-controls="people-results"
                        aria-invalid=move || error.get().is_some().to_string()
                        on:input=move |ev| search_soon(event_target_value(&ev))
                        on:keydown=on_input_key/>
                    <button type="submit" class="button">"Search"</button>
                </div>
                <p class="hint">"Use quotes for a phrase (\"ada lovelace\") and - to leave a word out."</p>
            </form>
            <p id="people-count" class="result-count" class:banner-error=move || error.get().is_some()
                role="status" aria-live="polite" data-testid="result-count">{count}</p>
            <ol id="people-results" class="people-list" aria-label="Search results"
                aria-busy=move || busy.get().to_string() data-testid="results" on:keydown=on_list_key>
                {move || page.with(|p| {
                    let terms = SearchQuery::parse(&p.query).map(|q| q.terms()).unwrap_or_default();
                    p.people
                        .iter()
                        .enumerate()
                        .map(|(i, person)| view! { <Person i person=person.clone() terms=terms.clone()/> })
                        .collect_view()
                })}
            </ol>
            <nav class="pager" aria-label="Result pages">
                {move || page.with(|p| p.prev.as_deref().map(|c| view! {
                    <a rel="prev" href=people_url(&p.query, Some(("before", c))) data-testid="prev">"← Previous"</a>
                }))}
                {move || page.with(|p| p.next.as_deref().map(|c| view! {
                    <a rel="next" href=people_url(&p.query, Some(("after", c))) data-testid="next">"Next →"</a>
                }))}
            </nav>
        </section>
    }
}

#[component]
fn Person(i: usize, person: PersonHit, terms: Vec<String>) -> impl IntoView {
    view! {
        <li class="person" data-testid="person">
            <a id=format!("person-{i}") class="person-link" href=format!("/u/{}", person.username)>
                <span class="person-name">{marked(&person.display_name, &terms)}</span>
                " "
                <span class="person-username">"@"{marked(&person.username, &terms)}</span>
            </a>
            {person.location.map(|place| view! { <span class="person-place">{marked(&place, &terms)}</span> })}
            {(!person.bio.is_empty()).then(|| view! { <p class="person-bio">{marked(&person.bio, &terms)}</p> })}
        </li>
    }
}

/// The `q` of the page's URL.
fn url_query() -> String {
    window()
        .location()
        .search()
        .ok()
        .and_then(|search| leptos::web_sys::UrlSearchParams::new_with_str(&search).ok())
        .and_then(|params| params.get("q"))
        .unwrap_or_default()
}

fn push_url(url: &str) {
    let Ok(history) = window().history() else {
        return;
    };
    let current = window().location().href().unwrap_or_default();
    if !current.ends_with(url) {
        let _ = history.push_state_with_url(&leptos::wasm_bindgen::JsValue::NULL, "", Some(url));
    }
}

/// Focuses the `i`th result's link; false when there is none.
fn focus_result(i: usize) -> bool {
    use leptos::wasm_bindgen::JsCast;
    document()
        .get_element_by_id(&format!("person-{i}"))
        .and_then(|element| element.dyn_into::<leptos::web_sys::HtmlElement>().ok())
        .map(|element| element.focus().is_ok())
        .unwrap_or(false)
}

/// Which result's link has the focus.
fn focused_result() -> Option<usize> {
    document()
        .active_element()?
        .id()
        .strip_prefix("person-")?
        .parse()
        .ok()
}
