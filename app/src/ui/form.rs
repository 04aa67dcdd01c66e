//! Form pieces shared by every page: a labelled field with its error, and the
//! banner for errors that belong to no field.

use leptos::either::Either;
use leptos::prelude::*;

use leptos::server::ServerActionError;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr, ServerFnUrlError};
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

/// A form's server function, called with the form's own fields: the
/// browser's side of `ServerForm`. Like Leptos's `ServerAction` (pending
/// state, value, version, and the error a plain form post brought back in
/// the URL), but dispatched with the form's URL-encoded body instead of the
/// function's argument struct.
///
/// Written for the WASM size (bench/NOTES.md, "WASM size"): a
/// `ServerAction<S>` compiles, for every server function `S`, a `serde_qs`
/// decoder of the form into `S` and an encoder of `S` back into the same
/// URL-encoded text, and the whole client call around them. The form's
/// fields are already that text (a plain post without JavaScript sends the
/// same body), so the call is compiled once per output type instead.
pub struct FormAction<O: 'static> {
    action: Action<String, Result<O, AppError>>,
    /// The server function's URL: the form's `action`, and where it posts.
    path: &'static str,
}

impl<O: 'static> Clone for FormAction<O> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<O: 'static> Copy for FormAction<O> {}

impl<O: 'static> std::ops::Deref for FormAction<O> {
    type Target = Action<String, Result<O, AppError>>;
    fn deref(&self) -> &Self::Target {
        &self.action
    }
}

impl<O> FormAction<O>
where
    O: DeserializeOwned + Send + Sync + 'static,
{
    /// The action of the server function `S` (`FormAction::of::<Login>()`).
    pub fn of<S>() -> Self
    where
        S: ServerFn<Output = O, Error = AppError>,
    {
        Self::at(S::PATH)
    }

    fn at(path: &'static str) -> Self {
        // A plain form post that failed comes back with its error in the URL
        // (see `ui::hydrate`): the form shows it as its last answer.
        let failed = use_context::<ServerActionError>()
            .filter(|error| error.path() == path)
            .map(|error| Err(ServerFnUrlError::<AppError>::decode_err(error.err())));
        let action = Action::new_with_value(failed, move |body: &String| {
            post_form::<O>(path, body.clone())
        });
        Self { action, path }
    }
}

/// Calls the server function at `path` with a URL-encoded body, and reads
/// its JSON answer as an `O`.
async fn post_form<O: DeserializeOwned>(path: &'static str, body: String) -> Result<O, AppError> {
    let (text, redirect) = post(path, body).await?;
    // Read from text, like island props and `ErrorJson`: one deserializer
    // per type in the WASM.
    let output = serde_json::from_str(&text).map_err(|error| {
        AppError::from_server_fn_error(ServerFnErrorErr::Deserialization(error.to_string()))
    })?;
    if let Some(location) = redirect {
        leptos::server_fn::redirect::call_redirect_hook(&location);
    }
    Ok(output)
}

/// Calls the server function `S` from an island with the URL-encoded body
/// its form would post: `ServerFn::run_on_client` would compile a `serde_qs`
/// encoder of `S`'s arguments, and a client call, for each function.
pub async fn call<S>(body: String) -> Result<S::Output, AppError>
where
    S: ServerFn<Error = AppError>,
    S::Output: DeserializeOwned,
{
    post_form(S::PATH, body).await
}

/// POSTs a URL-encoded body as a server function's own client does
/// (`Accept: application/json`: the server answers with JSON, and with a
/// redirect header instead of a redirect); the answer's text, and where it
/// redirects to. Not generic: compiled once.
#[cfg(feature = "hydrate")]
async fn post(path: &'static str, body: String) -> Result<(String, Option<String>), AppError> {
    use leptos::server_fn::client::{browser::BrowserClient, Client};
    use leptos::server_fn::request::{browser::BrowserRequest, ClientReq};
    use leptos::server_fn::response::ClientRes;

    let request = <BrowserRequest as ClientReq<AppError>>::try_new_post(
        path,
        "application/x-www-form-urlencoded",
        "application/json",
        body,
    )?;
    let response = <BrowserClient as Client<AppError>>::send(request).await?;
    let status = ClientRes::<AppError>::status(&response);
    let redirects = (300..=399).contains(&status) || ClientRes::<AppError>::has_redirect(&response);
    let redirect = redirects.then(|| ClientRes::<AppError>::location(&response));
    if (400..=599).contains(&status) {
        return Err(AppError::de(
            ClientRes::<AppError>::try_into_bytes(response).await?,
        ));
    }
    let text = ClientRes::<AppError>::try_into_string(response).await?;
    Ok((text, redirect))
}

/// Never called: only the browser dispatches a form's action.
#[cfg(not(feature = "hydrate"))]
async fn post(_path: &'static str, _body: String) -> Result<(String, Option<String>), AppError> {
    Err(AppError::Internal)
}

/// The body a submit event's form posts: its fields, and the pressed
/// button's name and value when it has a name, URL-encoded.
fn form_body(ev: &SubmitEvent) -> Option<String> {
    use leptos::wasm_bindgen::JsCast;
    use leptos::web_sys::{FormData, HtmlButtonElement, HtmlFormElement, UrlSearchParams};

    let form = ev.target()?.dyn_into::<HtmlFormElement>().ok()?;
    let data = FormData::new_with_form(&form).ok()?;
    if let Some(button) = ev
        .submitter()
        .and_then(|submitter| submitter.dyn_into::<HtmlButtonElement>().ok())
    {
        if !button.name().is_empty() {
            data.append_with_str(&button.name(), &button.value()).ok()?;
        }
    }
    let params = UrlSearchParams::new_with_str_sequence_sequence(&data).ok()?;
    params.to_string().as_string()
}

/// A form bound to a server function: without JavaScript a plain HTML POST
/// to the function's URL, with it the same body sent through `action`
/// (pending state, value, errors), like Leptos's `ActionForm`.
///
/// Written here for the WASM size: nothing in it depends on the server
/// function, so the `<form>` element and its event listener are compiled
/// once, and the children keep their type instead of becoming an `AnyView`.
/// In the browser the redirect hook is installed by `ui::hydrate` (a server
/// function's redirect becomes a page load), so this does not set one.
#[component]
pub fn ServerForm<O, Chil>(
    action: FormAction<O>,
    class: &'static str,
    /// Leave validation to the shared domain types (and the server).
    #[prop(optional)]
    novalidate: bool,
    children: TypedChildren<Chil>,
) -> impl IntoView
where
    O: DeserializeOwned + Send + Sync + 'static,
    Chil: IntoView + 'static,
{
    let on_submit: SubmitHandler = Box::new(move |ev: SubmitEvent| {
        if ev.default_prevented() {
            return;
        }
        ev.prevent_default();
        match form_body(&ev) {
            Some(body) => {
                action.dispatch(body);
            }
            None => {
                action.value().set(Some(Err(AppError::BadRequest)));
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
    form_element(action.path, class, novalidate, on_submit, children)
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
