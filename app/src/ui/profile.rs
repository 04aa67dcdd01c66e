use leptos::either::{Either, EitherOf3};
use leptos::prelude::*;
use leptos_meta::{Link, Meta, Title};
use leptos_router::components::Redirect;
use leptos_router::hooks::{use_params_map, use_query_map};

use super::avatar::{AvatarEditor, AvatarNotice};
use super::form::{server_field_error, Field, FormAction, FormError, ServerForm, SubmitButton};
use super::{set_status, use_auth, NotFound};
use crate::api::{get_profile, my_profile, Profile, UpdateProfile};
use crate::domain::{AvatarUrl, Bio, DisplayName, Location, Website};
use crate::error::AppError;

/// A description for link previews: the bio's first line, shortened.
fn description(profile: &Profile) -> String {
    let first_line = profile.bio.lines().next().unwrap_or("").trim();
    if first_line.is_empty() {
        format!("{} (@{}) on Folio", profile.display_name, profile.username)
    } else {
        first_line.chars().take(160).collect()
    }
}

/// Folio's public address (`FOLIO_PUBLIC_URL`), without a trailing slash.
/// From the configuration, never from the request's `Host`: a stored page is
/// served to everyone, and a forged `Host` must not end up in its links.
fn public_url() -> String {
    #[cfg(feature = "ssr")]
    let url = use_context::<crate::ssr::AppState>()
        .map(|state| state.config.public_url.clone())
        .unwrap_or_default();
    #[cfg(not(feature = "ssr"))]
    let url = String::new();
    url
}

/// The picture a link preview shows: the avatar, or a generated one (a PNG:
/// most link-preview crawlers do not render SVG).
fn preview_image(base: &str, profile: &Profile) -> String {
    match &profile.avatar_url {
        Some(avatar) => avatar.clone(),
        None => format!("{base}/card/{}.png", profile.username),
    }
}

/// The page's canonical address and its link preview (Open Graph and Twitter
/// card tags), in the `<head>` through leptos_meta, which escapes them like
/// any attribute. Part of the rendered page, so a stored page carries the
/// tags of its version.
#[component]
fn LinkPreview(profile: Profile) -> impl IntoView {
    let base = public_url();
    let url = format!("{base}/u/{}", profile.username);
    let title = format!("{} (@{})", profile.display_name, profile.username);
    let generated = profile.avatar_url.is_none();
    view! {
        <Link rel="canonical" href=url.clone()/>
        <Meta property="og:type" content="profile"/>
        <Meta property="og:site_name" content="Folio"/>
        <Meta property="og:title" content=title/>
        <Meta property="og:description" content=description(&profile)/>
        <Meta property="og:url" content=url/>
        <Meta property="og:image" content=preview_image(&base, &profile)/>
        {generated.then(|| view! {
            <Meta property="og:image:width" content="600"/>
            <Meta property="og:image:height" content="600"/>
        })}
        <Meta property="profile:username" content=profile.username.clone()/>
        <Meta name="twitter:card" content="summary"/>
    }
}

#[component]
pub fn ProfilePage() -> impl IntoView {
    let params = use_params_map();
    let username = move || params.read().get("username").unwrap_or_default();
    let profile = Resource::<_>::new_with_options(username, get_profile, false);
    view! {
        <Suspense fallback=|| view! { <p class="muted">"Loading profile…"</p> }>
            {move || Suspend::new(async move {
                match profile.await {
                    Ok(profile) => EitherOf3::A(view! { <ProfileView profile/> }),
                    Err(AppError::NotFound) => EitherOf3::B(view! { <NotFound/> }),
                    Err(error) => {
                        set_status(error.status_code());
                        EitherOf3::C(view! {
                            <Title text="Profile unavailable"/>
                            <p class="banner banner-error" role="alert">{error.to_string()}</p>
                        })
                    }
                }
            })}
        </Suspense>
    }
}

#[component]
fn ProfileView(profile: Profile) -> impl IntoView {
    let initial = profile
        .display_name
        .chars()
        .next()
        .unwrap_or('?')
        .to_uppercase()
        .to_string();
    // The page changes only when the profile does (its version) or the build
    // does (the server adds that): a revalidating browser gets a 304.
    #[cfg(feature = "ssr")]
    if let (Some(response), Ok(etag)) = (
        use_context::<leptos_axum::ResponseOptions>(),
        http::HeaderValue::from_str(&profile.page_tag()),
    ) {
        response.insert_header(http::header::ETAG, etag);
    }
    view! {
        <Title text=format!("{} (@{})", profile.display_name, profile.username)/>
        <Meta name="description" content=description(&profile)/>
        <LinkPreview profile=profile.clone()/>
        <article class="card profile" data-testid="profile">
            <div class="profile-head">
                // Above the fold: not lazy. Width and height set: no layout
                // shift while it loads.
                {match (profile.avatar.clone(), profile.avatar_url.clone()) {
                    (Some(avatar), _) => EitherOf3::A(view! {
                        <img class="avatar" src=avatar.src srcset=avatar.srcset sizes="96px" width="96" height="96"
                            alt=format!("Avatar of {}", profile.display_name) data-testid="avatar"/>
                    }),
                    (None, Some(src)) => EitherOf3::B(view! { <img class="avatar" src=src alt="" width="96" height="96" referrerpolicy="no-referrer"/> }),
                    (None, None) => EitherOf3::C(view! { <div class="avatar avatar-initial" aria-hidden="true">{initial}</div> }),
                }}
                <div>
                    <h1 data-testid="display-name">{profile.display_name.clone()}</h1>
                    <p class="muted">"@"{profile.username.clone()}</p>
                </div>
            </div>
            <p class="bio" data-testid="bio">{profile.bio.clone()}</p>
            <ul class="facts">
                {profile.location.clone().map(|l| view! { <li data-testid="location">{l}</li> })}
                {profile.website.clone().map(|w| view! {
                    <li><a href=w.clone() rel="me nofollow noopener ugc" data-testid="website">{w.clone()}</a></li>
                })}
            </ul>
        </article>
    }
}

#[component]
pub fn EditProfilePage() -> impl IntoView {
    let auth = use_auth();
    view! {
        <Title text="Edit profile"/>
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match auth.user.await {
                    None => Either::Left(view! { <Redirect path="/signin"/> }),
                    Some(_) => Either::Right(view! { <EditProfileLoader/> }),
                }
            })}
        </Transition>
    }
}

#[component]
fn EditProfileLoader() -> impl IntoView {
    let profile = Resource::<_>::new_with_options(|| (), |_| my_profile(), false);
    // Set by the server's redirect after a save without JavaScript.
    let query = use_query_map().read_untracked();
    let saved_before = query.get("saved").is_some();
    let avatar_before = AvatarNotice::from_query(
        query.get("avatar").as_deref(),
        query.get("avatar_error").as_deref(),
    );
    view! {
        <Suspense fallback=|| view! { <p class="muted">"Loading your profile…"</p> }>
            {move || {
                let avatar_before = avatar_before.clone();
                Suspend::new(async move {
                match profile.await {
                    Ok(profile) => EitherOf3::A(view! { <EditProfileForm profile saved_before avatar_before/> }),
                    Err(AppError::Unauthorized) => EitherOf3::B(view! { <Redirect path="/signin"/> }),
                    Err(error) => EitherOf3::C(view! { <p class="banner banner-error">{error.to_string()}</p> }),
                }
            })}}
        </Suspense>
    }
}

fn optional(check: fn(&str) -> Result<(), String>, s: &str) -> Option<String> {
    if s.trim().is_empty() {
        None
    } else {
        check(s).err()
    }
}

/// The editor: counters, live validation, pending state, the saved and
/// conflict banners. `saved_before` is the server's word that the last save
/// (a plain form post) succeeded.
#[island]
fn EditProfileForm(
    profile: Profile,
    saved_before: bool,
    avatar_before: AvatarNotice,
) -> impl IntoView {
    let action = FormAction::of::<UpdateProfile>();
    let value = action.value();
    let version = RwSignal::new(profile.version);
    let display_name = RwSignal::new(profile.display_name.clone());
    let bio = RwSignal::new(profile.bio.clone());
    let avatar_url = RwSignal::new(profile.avatar_url.clone().unwrap_or_default());
    let location = RwSignal::new(profile.location.clone().unwrap_or_default());
    let website = RwSignal::new(profile.website.clone().unwrap_or_default());
    // A successful save moves the form to the new version, so the next save
    // from this tab is not mistaken for a stale one.
    Effect::new(move |_| {
        if let Some(Ok(saved)) = value.get() {
            version.set(saved.version);
        }
    });
    let saved = move || match value.get() {
        Some(Ok(_)) => true,
        Some(Err(_)) => false,
        None => saved_before,
    };
    let conflict = move || matches!(value.get(), Some(Err(AppError::Conflict { .. })));
    let username = profile.username.clone();

    view! {
        <section class="card">
            <h1>"Edit your profile"</h1>
            <p class="muted">"Everyone can see this at " <a href=format!("/u/{username}")>{format!("/u/{username}")}</a></p>
            <Show when=saved>
                <p class="banner banner-success" role="status" data-testid="saved">"Saved. Your public page is up to date."</p>
            </Show>
            <Show when=conflict>
                <p class="banner banner-error" role="alert" data-testid="conflict">
                    "This profile was changed in another tab or device since you opened it. "
                    <a href="/settings/profile" rel="external">"Reload to see the latest version"</a>
                    " (your edits here are not saved)."
                </p>
            </Show>
            <AvatarEditor avatar=profile.avatar.clone() version notice=avatar_before/>
            <ServerForm action=action novalidate=true class="form">
                <Show when=move || !conflict()>
                    <FormError value=value/>
                </Show>
                <input type="hidden" name="expected_version" prop:value=move || version.get().to_string() value=profile.version.to_string()/>
                <Field label="Display name" name="display_name" value=display_name max_chars=DisplayName::MAX
                    live=|s| DisplayName::parse(s).err() server=server_field_error(value, "display_name")/>
                <Field label="Bio" name="bio" kind="textarea" value=bio max_chars=Bio::MAX
                    live=|s| Bio::parse(s).err() server=server_field_error(value, "bio")/>
                <Field label="Avatar URL" name="avatar_url" kind="url" value=avatar_url hint="An https:// image address, shown when no photo is uploaded (optional)"
                    live=|s| optional(|s| AvatarUrl::parse(s).map(|_| ()), s) server=server_field_error(value, "avatar_url")/>
                <Field label="Location" name="location" value=location max_chars=Location::MAX
                    live=|s| optional(|s| Location::parse(s).map(|_| ()), s) server=server_field_error(value, "location")/>
                <Field label="Website" name="website" kind="url" value=website
                    live=|s| optional(|s| Website::parse(s).map(|_| ()), s) server=server_field_error(value, "website")/>
                <SubmitButton pending=action.pending() label="Save profile" busy="Saving…" testid="save"/>
            </ServerForm>
        </section>
    }
}
