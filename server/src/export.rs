//! `GET /account/export`: the signed-in user's data as a JSON download
//! (`app::ssr::accounts::export` gathers it). A plain route rather than a
//! server function: a link the browser saves as a file, with or without
//! JavaScript. Another site cannot read the answer (no CORS), but a GET
//! still spends one of the user's exports and drops a file into their
//! Downloads: so a request the browser says another site started (a link,
//! a redirect, `window.open` on a hostile page; `crate::csrf`'s rules) is
//! refused before the session is even read. The account page's link is
//! `same-origin`, a typed address `none`.

use app::ssr::accounts::{self, sessions};
use app::ssr::{AppState, RequestMeta};
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

pub const PATH: &str = "/account/export";

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S>
where
    AppState: axum::extract::FromRef<S>,
{
    Router::new().route(PATH, get(download))
}

async fn download(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    if crate::csrf::from_elsewhere(&parts.headers) {
        tracing::warn!(path = PATH, "cross-site export refused");
        return refused_from_elsewhere(&parts.headers);
    }
    let meta = RequestMeta::from_parts(&parts, &state.config.trusted_proxies);
    let session = match &meta.session_token {
        Some(token) => sessions::load(&state, token).await,
        None => Ok(None),
    };
    let session = match session {
        Ok(Some(session)) => session,
        // A link followed while signed out: sign in first.
        Ok(None) => {
            return (StatusCode::SEE_OTHER, [(header::LOCATION, "/signin")]).into_response()
        }
        Err(error) => return failed(error.into_app_error(&state.metrics)),
    };
    let data = match accounts::export(&state, &session).await {
        Ok(data) => data,
        Err(error) => return failed(error.into_app_error(&state.metrics)),
    };
    let Ok(json) = serde_json::to_vec_pretty(&data) else {
        return failed(app::error::AppError::Internal);
    };
    let mut response = (StatusCode::OK, json).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // The username is [a-z0-9_]: nothing to escape in the file name.
    if let Ok(disposition) = HeaderValue::from_str(&format!(
        "attachment; filename=\"folio-{}.json\"",
        session.username
    )) {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    // Personal data: no cache keeps a copy.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn failed(error: app::error::AppError) -> Response {
    let status =
        StatusCode::from_u16(error.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, error.to_string()).into_response()
}

/// 403: a page for a browser's navigation, the `AppError` for a script.
fn refused_from_elsewhere(headers: &header::HeaderMap) -> Response {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if !wants_html {
        let error = app::error::AppError::Forbidden;
        return (StatusCode::FORBIDDEN, axum::Json(error)).into_response();
    }
    let page = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
        <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
        <title>Download refused · Folio</title></head><body><main>\
        <h1>Download refused</h1>\
        <p>Another site tried to download your Folio data. Nothing was downloaded.</p>\
        <p>To download your data, use the button on <a href=\"/account\">your account page</a>.</p>\
        </main></body></html>\n";
    let mut response = (StatusCode::FORBIDDEN, page).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Every HTML answer carries a policy of its own (the edge refuses one
    // without: `hygiene::is_page_without_policy`). This page has no script,
    // style or image, so it needs nothing.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    response
}
