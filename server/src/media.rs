//! The avatar routes: the upload (a multipart form, with a body limit of
//! its own) and the stored files under `/media/`.
//!
//! The upload is a plain axum handler, not a server function: a file is a
//! multipart body that server functions would read whole before any check.
//! Here the declared length is checked before a byte is read (413 at
//! once), then the session and the user's upload quota (429 at once); the
//! file is read in chunks up to the limit, and only then processed. It
//! answers a browser's plain form post (no JavaScript) with a redirect
//! back to the editor, the result in the URL; a script's request
//! (`Accept` without `text/html`) with JSON: the profile, or an `AppError`
//! (the refusal as the `avatar` field's error), as server functions do.
//! Cross-site posts never get here (`crate::csrf`, in the edge).

use app::domain::{parse_object_name, AvatarRefusal, AVATAR_UPLOAD_PATH, MAX_AVATAR_BYTES};
use app::error::AppError;
use app::ssr::accounts::sessions;
use app::ssr::media::{self, refused, AVATAR_FIELD};
use app::ssr::{AppState, RequestMeta};
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

/// The whole multipart body: the file and the form's few other bytes.
pub const UPLOAD_BODY_LIMIT_BYTES: usize = MAX_AVATAR_BYTES + 64 * 1024;

/// A stored file's name never changes what it holds (`<sha256>-<size>`):
/// any browser or CDN may keep it forever.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The upload route, with its own body limit; `crate::hygiene::limits`
/// keeps the 64 KiB limit of every other route off it.
pub fn upload_routes<S: Clone + Send + Sync + 'static>() -> Router<S>
where
    AppState: axum::extract::FromRef<S>,
{
    Router::new().route(
        AVATAR_UPLOAD_PATH,
        post(upload).layer(DefaultBodyLimit::max(UPLOAD_BODY_LIMIT_BYTES)),
    )
}

/// `GET /media/<key>-<size>.webp`.
pub fn file_routes<S: Clone + Send + Sync + 'static>() -> Router<S>
where
    AppState: axum::extract::FromRef<S>,
{
    Router::new().route("/media/{name}", get(serve))
}

async fn serve(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    // Only names Folio writes are looked up: no path of the client's making
    // reaches the store.
    let Some((key, size)) = parse_object_name(&name) else {
        return not_found();
    };
    let etag = format!("\"{}-{size}\"", key.as_str());
    let revalidating = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|list| list.split(',').any(|tag| tag.trim() == etag));
    let bytes = match media::file(&state, &name).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return not_found(),
        Err(error) => {
            error.into_app_error(&state.metrics);
            return (StatusCode::SERVICE_UNAVAILABLE, "Try again in a moment.").into_response();
        }
    };
    let mut response = if revalidating {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        Response::new(Body::from(bytes))
    };
    let headers = response.headers_mut();
    let pairs = [
        (header::CONTENT_TYPE, "image/webp".to_owned()),
        (header::CACHE_CONTROL, IMMUTABLE.to_owned()),
        (header::ETAG, etag),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        (
            header::CONTENT_DISPOSITION,
            format!("inline; filename=\"avatar-{size}.webp\""),
        ),
        // An image needs nothing; opened on its own it may run nothing.
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'; sandbox".to_owned(),
        ),
        (
            header::HeaderName::from_static("cross-origin-resource-policy"),
            "same-site".to_owned(),
        ),
    ];
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    response
}

fn not_found() -> Response {
    let mut response = (StatusCode::NOT_FOUND, "Not found.").into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// How the answer is shaped: a redirect for a plain form post, JSON for a
/// script.
struct Answer {
    form_post: bool,
}

impl Answer {
    fn saved(&self, profile: app::dto::Profile) -> Response {
        if self.form_post {
            redirect("/settings/profile?avatar=saved")
        } else {
            axum::Json(profile).into_response()
        }
    }

    fn refused(&self, refusal: AvatarRefusal) -> Response {
        if self.form_post {
            redirect(&format!(
                "/settings/profile?avatar_error={}",
                refusal.code()
            ))
        } else {
            let status = match refusal {
                AvatarRefusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            (status, axum::Json(refused(refusal))).into_response()
        }
    }

    fn failed(&self, error: AppError) -> Response {
        if self.form_post {
            return match error {
                AppError::Unauthorized => redirect("/signin"),
                AppError::Validation(ref errors) => {
                    // A refusal's message, back to its code.
                    let code = AvatarRefusal::ALL
                        .into_iter()
                        .find(|r| errors.get(AVATAR_FIELD) == Some(r.message()))
                        .map_or("other", AvatarRefusal::code);
                    redirect(&format!("/settings/profile?avatar_error={code}"))
                }
                AppError::RateLimited { .. } => {
                    redirect("/settings/profile?avatar_error=rate_limited")
                }
                _ => redirect("/settings/profile?avatar_error=unavailable"),
            };
        }
        let status =
            StatusCode::from_u16(error.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(error)).into_response()
    }
}

fn redirect(to: &str) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(location) = HeaderValue::from_str(to) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

async fn upload(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let meta = RequestMeta::from_parts(&parts, &state.config.trusted_proxies);
    let answer = Answer {
        form_post: meta.form_post,
    };
    // Refused before reading a byte of the body.
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > UPLOAD_BODY_LIMIT_BYTES) {
        count_refusal(&state, AvatarRefusal::TooLarge);
        let mut response = answer.refused(AvatarRefusal::TooLarge);
        // The rest of the body is not read: the connection cannot be reused.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    let session = match &meta.session_token {
        Some(token) => sessions::load(&state, token).await,
        None => Ok(None),
    };
    let session = match session {
        Ok(Some(session)) => session,
        Ok(None) => return answer.failed(AppError::Unauthorized),
        Err(error) => return answer.failed(error.into_app_error(&state.metrics)),
    };
    // The quota before the body: a refused upload is not read.
    let admitted = match media::admit(&state, &session).await {
        Ok(admitted) => admitted,
        Err(error) => {
            let mut response = answer.failed(error.into_app_error(&state.metrics));
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return response;
        }
    };
    let request = Request::from_parts(parts, body);
    let file = match read_file(request).await {
        Ok(file) => file,
        Err(Unreadable::Refused(refusal)) => {
            count_refusal(&state, refusal);
            return answer.refused(refusal);
        }
        Err(Unreadable::Malformed) => {
            state
                .metrics
                .counter(
                    "folio_bad_requests_total",
                    &[("route", AVATAR_UPLOAD_PATH.to_owned())],
                )
                .increment(1);
            return answer.failed(AppError::BadRequest);
        }
    };
    match media::upload_avatar(&state, &session, admitted, file).await {
        Ok(profile) => answer.saved(profile),
        Err(error) => answer.failed(error.into_app_error(&state.metrics)),
    }
}

enum Unreadable {
    Refused(AvatarRefusal),
    Malformed,
}

/// The `avatar` field's bytes, read chunk by chunk and refused as soon as
/// they pass the limit. Other fields are skipped.
async fn read_file(request: Request) -> Result<Vec<u8>, Unreadable> {
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|_| Unreadable::Malformed)?;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => return Err(Unreadable::Refused(AvatarRefusal::Empty)),
            Err(error) => return Err(multipart_failure(&error)),
        };
        if field.name() != Some(AVATAR_FIELD) {
            continue;
        }
        let mut field = field;
        let mut bytes = Vec::new();
        loop {
            match field.chunk().await {
                Ok(Some(chunk)) => {
                    if bytes.len() + chunk.len() > MAX_AVATAR_BYTES {
                        return Err(Unreadable::Refused(AvatarRefusal::TooLarge));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(error) => return Err(multipart_failure(&error)),
            }
        }
        if bytes.is_empty() {
            return Err(Unreadable::Refused(AvatarRefusal::Empty));
        }
        return Ok(bytes);
    }
}

/// A body past the route's limit (sent without a length, or longer than it
/// said) is "too large"; anything else is a body that is not a form.
fn multipart_failure(error: &axum::extract::multipart::MultipartError) -> Unreadable {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Unreadable::Refused(AvatarRefusal::TooLarge)
    } else {
        Unreadable::Malformed
    }
}

fn count_refusal(state: &AppState, refusal: AvatarRefusal) {
    state
        .metrics
        .counter(
            "folio_avatar_uploads_total",
            &[("result", refusal.code().to_owned())],
        )
        .increment(1);
}
