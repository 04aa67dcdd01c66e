//! Form pieces shared by every page: a labelled field with its error, and the
//! banner for errors that belong to no field.

use leptos::either::Either;
use leptos::prelude::*;

use leptos::form::FromFormData;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use leptos::server_fn::ServerFn;
use leptos::web_sys::SubmitEvent;
use serde::de::DeserializeOwned;

use crate::error::AppError;

/// The error of the last submission, for one field.
pub fn server_field_error<T, V>(value: V, field: &'static str) -> Signal<Option<String>>
where
    T: Send + Sync + 'static,
    V: Get<Value = Option<Result<T, AppError>>> + Copy + Send + Sync + 'static,
{
    Signal::derive(move || match value.get() {
        Some(Err(error)) => error.field(field),
        _ => None,
    })
}

/// A labelled input. `live` validates while typing (from the shared domain
/// types); `server` shows what the server said about the last submission.
/// The live message wins once the person has typed something.
///
/// The input is not controlled by `value`: the DOM keeps what is typed and
/// `value` follows it. A controlled input (`prop:value`) would be set from
/// the signal when the island hydrates, erasing whatever a person or a
/// password manager put there before the WASM arrived; instead the island
/// adopts the field's current value once it is hydrated. The form is
/// submitted from the DOM (`FromFormData`), so the value posted is always
/// the one shown.
#[component]
pub fn Field(
    label: &'static str,
    name: &'static str,
    #[prop(default = "text")] kind: &'static str,
    #[prop(optional)] autocomplete: &'static str,
    #[prop(optional)] hint: &'static str,
    #[prop(into, optional)] value: RwSignal<String>,
    #[prop(optional)] live: Option<fn(&str) -> Option<String>>,
    #[prop(into)] server: Signal<Option<String>>,
    #[prop(optional)] max_chars: Option<usize>,
) -> impl IntoView {
    let touched = RwSignal::new(false);
    // A new answer from the server is newer than anything typed before it.
    Effect::watch(
        move || server.track(),
        move |_, _, _| touched.set(false),
        false,
    );
    let input_ref = NodeRef::<leptos::html::Input>::new();
    let textarea_ref = NodeRef::<leptos::html::Textarea>::new();
    // Effects run once the island is hydrated: take what the field holds by
    // then. Typed before hydration counts as typed (the live check speaks),
    // unless the server already said something about this field.
    Effect::new(move |_| {
        let current = match (input_ref.get(), textarea_ref.get()) {
            (Some(input), _) => input.value(),
            (None, Some(textarea)) => textarea.value(),
            (None, None) => return,
        };
        if current != value.get_untracked() {
            value.set(current);
            if server.get_untracked().is_none() {
                touched.set(true);
            }
        }
    });
    let error = Signal::derive(move || {
        if touched.get() {
            live.and_then(|check| check(&value.get()))
        } else {
            server.get()
        }
    });
    let id = format!("field-{name}");
    let error_id = format!("{id}-error");
    let counter = move || {
        max_chars.map(|max| {
            let used = crate::domain::char_count(value.get().trim());
            let over = used > max;
            view! {
                <span class="counter" class:over=over data-testid=format!("{name}-counter")>
                    {used}" / "{max}
                </span>
            }
        })
    };
    view! {
        <div class="field" class:has-error=move || error.get().is_some()>
            <label for=id.clone()>{label}</label>
            {if kind == "textarea" {
                Either::Left(view! {
                    <textarea
                        id=id.clone()
                        name=name
                        rows="5"
                        aria-invalid=move || error.get().is_some().to_string()
                        aria-describedby=error_id.clone()
                        node_ref=textarea_ref
                        on:input=move |ev| { value.set(event_target_value(&ev)); touched.set(true); }
                    >{value.get_untracked()}</textarea>
                })
            } else {
                Either::Right(view! {
                    <input
                        id=id.clone()
                        name=name
                        type=kind
                        autocomplete=autocomplete
                        aria-invalid=move || error.get().is_some().to_string()
                        aria-describedby=error_id.clone()
                        node_ref=input_ref
                        value=value.get_untracked()
                        on:input=move |ev| { value.set(event_target_value(&ev)); touched.set(true); }
                    />
                })
            }}
            <div class="field-meta">
                <span class="field-error" id=error_id role="alert" data-testid=format!("{name}-error")>
                    {move || error.get()}
                </span>
                {(!hint.is_empty()).then(|| view! { <span class="hint">{hint}</span> })}
                {counter}
            </div>
        </div>
    }
}

/// A form's submit button: disabled, and saying so, while the form's server
/// function runs. One component rather than the same two closures in every
/// form, so the WASM carries them once.
#[component]
pub fn SubmitButton(
    #[prop(into)] pending: Signal<bool>,
    label: &'static str,
    /// What the button says while the submission is pending.
    busy: &'static str,
    #[prop(optional)] testid: Option<&'static str>,
) -> impl IntoView {
    view! {
        <button type="submit" class="button" disabled=move || pending.get() data-testid=testid>
            {move || if pending.get() { busy } else { label }}
        </button>
    }
}

/// Errors that are not about one field (wrong password, rate limited,
/// service unavailable).
#[component]
pub fn FormError<T, V>(value: V) -> impl IntoView
where
    T: Send + Sync + 'static,
    V: Get<Value = Option<Result<T, AppError>>> + Copy + Send + Sync + 'static,
{
    view! {
        {move || match value.get() {
            Some(Err(error)) => Some(view! {
                <p class="banner banner-error" role="alert" data-testid="form-error">{error.to_string()}</p>
            }),
            _ => None,
        }}
    }
}

/// A form bound to a server function: without JavaScript a plain HTML POST
/// to the function's URL, with it a typed call through `action` (pending
/// state, value, errors), exactly like Leptos's `ActionForm`.
///
/// Written here for the WASM size (bench/NOTES.md, "WASM size"): only the
/// submit handler depends on the server function, so the `<form>` element
/// and its event listener are compiled once instead of once per function,
/// and the children keep their type instead of becoming an `AnyView`. In the
/// browser the redirect hook is installed by `ui::hydrate` (a server
/// function's redirect becomes a page load), so this does not set one.
#[component]
pub fn ServerForm<ServFn, Chil>(
    action: ServerAction<ServFn>,
    class: &'static str,
    /// Leave validation to the shared domain types (and the server).
    #[prop(optional)]
    novalidate: bool,
    children: TypedChildren<Chil>,
) -> impl IntoView
where
    ServFn: ServerFn + DeserializeOwned + Clone + Send + Sync + 'static,
    ServFn::Output: Send + Sync + 'static,
    ServFn::Error: Send + Sync + 'static,
    Chil: IntoView + 'static,
{
    let on_submit: SubmitHandler = Box::new(move |ev: SubmitEvent| {
        if ev.default_prevented() {
            return;
        }
        ev.prevent_default();
        match ServFn::from_event(&ev) {
            Ok(input) => {
                action.dispatch(input);
            }
            Err(error) => {
                leptos::logging::error!(
                    "Error converting form field into server function arguments: {error:?}"
                );
                action
                    .value()
                    .set(Some(Err(ServFn::Error::from_server_fn_error(
                        ServerFnErrorErr::Serialization(error.to_string()),
                    ))));
                action.version().update(|n| *n += 1);
            }
        }
    });
    let children = children.into_inner()();
    // The server erases the form's content: with every field's type nested
    // inside each page's type, laying out the server's async render of the
    // sign-up page exceeds rustc's query depth limit. The HTML is the same
    // either way, and the browser keeps the typed (smaller) version.
    #[cfg(feature = "ssr")]
    let children = children.into_any();
    form_element(ServFn::url(), class, novalidate, on_submit, children)
}

type SubmitHandler = Box<dyn FnMut(SubmitEvent) + Send + 'static>;

fn form_element(
    url: &'static str,
    class: &'static str,
    novalidate: bool,
    on_submit: SubmitHandler,
    children: impl IntoView,
) -> impl IntoView {
    view! {
        <form action=url method="post" novalidate=novalidate class=class on:submit=on_submit>
            {children}
        </form>
    }
}
