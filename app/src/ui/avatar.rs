//! The profile editor's photo: the current avatar, the upload form, and the
//! remove button. Part of the editor island.
//!
//! Without JavaScript (and before the island hydrates) the upload is a plain
//! multipart form: the server redirects back with the result in the URL
//! (`AvatarNotice`). Once hydrated, choosing or dropping a file shows a
//! preview (an object URL: nothing leaves the browser before "Upload"), and
//! the upload goes through `XMLHttpRequest`, whose upload events drive the
//! progress bar (fetch reports no upload progress).

use leptos::prelude::*;
use leptos::wasm_bindgen::closure::Closure;
use leptos::wasm_bindgen::JsCast;
use leptos::web_sys;
use serde::{Deserialize, Serialize};

use super::form::{FormAction, ServerForm};
use crate::api::{AvatarImage, Profile, RemoveAvatar};
use crate::domain::{AvatarRefusal, AVATAR_UPLOAD_PATH, MAX_AVATAR_BYTES};
use crate::error::AppError;

/// What the last plain form post of the photo did, from the URL the server
/// redirected to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AvatarNotice {
    pub saved: Option<String>,
    pub error: Option<String>,
}

impl AvatarNotice {
    /// `?avatar=saved|removed` or `?avatar_error=<code>`.
    pub fn from_query(avatar: Option<&str>, error: Option<&str>) -> Self {
        let saved = match avatar {
            Some("saved") => Some("Your new photo is saved.".to_owned()),
            Some("removed") => Some("Your photo is removed.".to_owned()),
            _ => None,
        };
        let error = error.map(|code| {
            match (AvatarRefusal::from_code(code), code) {
                (Some(refusal), _) => refusal.message(),
                (None, "rate_limited") => "Too many uploads. Please try again later.",
                (None, _) => "The upload did not go through. Please try again in a moment.",
            }
            .to_owned()
        });
        Self { saved, error }
    }
}

#[component]
pub fn AvatarEditor(
    avatar: Option<AvatarImage>,
    /// The editor's profile version: an upload moves it on, so the text
    /// form's next save is not mistaken for a stale one.
    version: RwSignal<i32>,
    notice: AvatarNotice,
) -> impl IntoView {
    let current = RwSignal::new(avatar);
    let preview = RwSignal::new(None::<String>);
    let progress = RwSignal::new(None::<u32>);
    let error = RwSignal::new(notice.error);
    let status = RwSignal::new(notice.saved);
    let dragging = RwSignal::new(false);
    let input = NodeRef::<leptos::html::Input>::new();
    let remove = FormAction::of::<RemoveAvatar>();

    Effect::new(move |_| match remove.value().get() {
        Some(Ok(profile)) => {
            current.set(profile.avatar);
            version.set(profile.version);
            status.set(Some("Your photo is removed.".to_owned()));
            error.set(None);
        }
        Some(Err(failure)) => error.set(Some(failure.to_string())),
        None => {}
    });

    let chosen = move || {
        input
            .get_untracked()
            .and_then(|input| input.files())
            .and_then(|files| files.get(0))
    };
    // A new preview for the chosen file, or the reason it will be refused.
    let show_choice = move || {
        if let Some(old) = preview.get_untracked() {
            let _ = web_sys::Url::revoke_object_url(&old);
        }
        preview.set(None);
        status.set(None);
        error.set(None);
        let Some(file) = chosen() else { return };
        if file.size() > MAX_AVATAR_BYTES as f64 {
            error.set(Some(AvatarRefusal::TooLarge.message().to_owned()));
            return;
        }
        if let Ok(url) = web_sys::Url::create_object_url_with_blob(&file) {
            preview.set(Some(url));
        }
    };

    let on_drop = move |ev: web_sys::DragEvent| {
        ev.prevent_default();
        dragging.set(false);
        let files = ev.data_transfer().and_then(|data| data.files());
        if let (Some(files), Some(input)) = (files, input.get_untracked()) {
            if files.length() > 0 {
                input.set_files(Some(&files));
                show_choice();
            }
        }
    };

    let on_submit = move |ev: web_sys::SubmitEvent| {
        ev.prevent_default();
        let Some(file) = chosen() else {
            error.set(Some(AvatarRefusal::Empty.message().to_owned()));
            return;
        };
        if file.size() > MAX_AVATAR_BYTES as f64 {
            error.set(Some(AvatarRefusal::TooLarge.message().to_owned()));
            return;
        }
        error.set(None);
        status.set(None);
        progress.set(Some(0));
        let done = move |code: u16, body: String| {
            progress.set(None);
            if code == 200 {
                if let Ok(profile) = serde_json::from_str::<Profile>(&body) {
                    current.set(profile.avatar);
                    version.set(profile.version);
                    if let Some(old) = preview.get_untracked() {
                        let _ = web_sys::Url::revoke_object_url(&old);
                    }
                    preview.set(None);
                    if let Some(input) = input.get_untracked() {
                        input.set_value("");
                    }
                    status.set(Some("Your new photo is saved.".to_owned()));
                    return;
                }
            }
            let message = match serde_json::from_str::<AppError>(&body) {
                Ok(failure) => failure.field("avatar").unwrap_or(failure.to_string()),
                Err(_) if code == 413 => AvatarRefusal::TooLarge.message().to_owned(),
                Err(_) => {
                    "The upload did not go through. Check your connection and try again.".to_owned()
                }
            };
            error.set(Some(message));
        };
        if send(file, progress, done).is_err() {
            progress.set(None);
            error.set(Some(
                "The upload could not start. Please reload the page and try again.".to_owned(),
            ));
        }
    };

    view! {
        <section class="avatar-editor" aria-labelledby="avatar-heading">
            <h2 id="avatar-heading">"Photo"</h2>
            <div class="avatar-row">
                {move || match current.get() {
                    Some(avatar) => leptos::either::Either::Left(view! {
                        <img class="avatar" src=avatar.src srcset=avatar.srcset sizes="96px"
                            width="96" height="96" alt="Your current photo" data-testid="current-avatar"/>
                    }),
                    None => leptos::either::Either::Right(view! {
                        <div class="avatar avatar-empty" data-testid="no-avatar">"No photo"</div>
                    }),
                }}
                <form method="post" action=AVATAR_UPLOAD_PATH enctype="multipart/form-data"
                    class="avatar-form" on:submit=on_submit>
                    <div class="dropzone" class:dragging=move || dragging.get()
                        on:dragover=move |ev: web_sys::DragEvent| { ev.prevent_default(); dragging.set(true); }
                        on:dragleave=move |_| dragging.set(false)
                        on:drop=on_drop
                        data-testid="avatar-dropzone">
                        <label for="field-avatar">"Choose a photo, or drop one here"</label>
                        <input id="field-avatar" type="file" name="avatar" node_ref=input
                            accept="image/jpeg,image/png,image/webp"
                            aria-describedby="field-avatar-hint field-avatar-error"
                            aria-invalid=move || error.get().is_some().to_string()
                            on:change=move |_| show_choice()
                            data-testid="avatar-input"/>
                        <span class="hint" id="field-avatar-hint">
                            "JPEG, PNG or WebP, up to 8 MB. It is cropped to a square around its centre."
                        </span>
                    </div>
                    {move || preview.get().map(|url| view! {
                        <img class="avatar avatar-preview" src=url width="96" height="96"
                            alt="Preview of the chosen photo" data-testid="avatar-preview"/>
                    })}
                    {move || progress.get().map(|percent| view! {
                        <progress max="100" value=percent aria-label="Upload progress" data-testid="avatar-progress">
                            {format!("{percent} %")}
                        </progress>
                    })}
                    <span class="field-error" id="field-avatar-error" role="alert" data-testid="avatar-error">
                        {move || error.get()}
                    </span>
                    <span class="avatar-status" role="status" data-testid="avatar-status">{move || status.get()}</span>
                    <button type="submit" class="button" disabled=move || progress.get().is_some()
                        data-testid="avatar-upload">
                        {move || if progress.get().is_some() { "Uploading…" } else { "Upload photo" }}
                    </button>
                </form>
            </div>
            <Show when=move || current.get().is_some()>
                <ServerForm action=remove class="inline-form">
                    <button type="submit" class="link-button" data-testid="avatar-remove">"Remove photo"</button>
                </ServerForm>
            </Show>
        </section>
    }
}

/// POSTs `file` as the form would, reporting upload progress; `done` gets
/// the status and the body.
fn send(
    file: web_sys::File,
    progress: RwSignal<Option<u32>>,
    done: impl FnOnce(u16, String) + 'static,
) -> Result<(), leptos::wasm_bindgen::JsValue> {
    let request = web_sys::XmlHttpRequest::new()?;
    request.open("POST", AVATAR_UPLOAD_PATH)?;
    request.set_request_header("Accept", "application/json")?;
    let on_progress =
        Closure::<dyn FnMut(web_sys::ProgressEvent)>::new(move |event: web_sys::ProgressEvent| {
            if event.length_computable() && event.total() > 0.0 {
                let percent = (event.loaded() / event.total() * 100.0).round();
                progress.set(Some(percent.clamp(0.0, 100.0) as u32));
            }
        });
    request
        .upload()?
        .set_onprogress(Some(on_progress.as_ref().unchecked_ref()));
    on_progress.forget();
    let finished = request.clone();
    let on_end = Closure::once(move || {
        let code = finished.status().unwrap_or(0);
        let body = finished.response_text().ok().flatten().unwrap_or_default();
        done(code, body);
    });
    request.set_onloadend(Some(on_end.as_ref().unchecked_ref()));
    on_end.forget();
    let form = web_sys::FormData::new()?;
    form.append_with_blob("avatar", &file)?;
    request.send_with_opt_form_data(Some(&form))
}
