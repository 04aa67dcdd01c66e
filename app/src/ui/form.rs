//! Form pieces shared by every page: a labelled field with its error, and the
//! banner for errors that belong to no field.

use leptos::either::Either;
use leptos::prelude::*;

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
    Effect::new(move |_| {
        server.track();
        touched.set(false);
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
                        prop:value=move || value.get()
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
                        prop:value=move || value.get()
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
