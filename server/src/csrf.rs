//! Cross-site request forgery defence for every state-changing request
//! (server functions included): browsers say where a request comes from, and
//! we refuse what comes from elsewhere.
//!
//! `Sec-Fetch-Site` (all current browsers) is decisive when present: only
//! `same-origin` and `none` (typed URL, bookmark) pass; `same-site` is refused
//! too, since a sibling subdomain is not us. Without it, `Origin` must be our
//! own. A request with neither is not from a browser that could be forged
//! into sending it (browsers send `Origin` on cross-origin POSTs), so it
//! passes: that is how `curl` and the integration tests call the API.
//! `SameSite=Lax` on the session cookie is the second, independent layer.

use axum::extract::Request;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use app::ssr::accounts::sessions;
use app::ssr::request::{find_cookie, SESSION_COOKIE};
use app::ssr::AppState;

/// Whether a state-changing request comes from another site.
pub fn is_cross_site(request: &Request) -> bool {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return false;
    }
    from_elsewhere(request.headers())
}

/// Whether the browser says the request was started by another site (the
/// rules of the module comment), whatever its method: for the few GETs
/// that spend something (`crate::export`).
pub fn from_elsewhere(headers: &HeaderMap) -> bool {
    let allowed = match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some(site) => matches!(site, "same-origin" | "none"),
        None => match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
            None => true,
            Some(origin) => {
                let host = headers
                    .get(header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let origin_host = origin.split_once("://").map(|(_, rest)| rest).unwrap_or("");
                !host.is_empty() && origin_host == host
            }
        },
    };
    !allowed
}

/// The session cookie of a request, owned (a `&Request` cannot be held
/// across an await: the body is not `Sync`).
pub fn session_token(request: &Request) -> Option<String> {
    find_cookie(request.headers(), SESSION_COOKIE).map(str::to_owned)
}

/// Whose browser a cross-site request came through, for the log: the
/// session its cookie names, if any (a Redis read, only for a refused
/// request). Best effort: the refusal does not depend on it.
pub async fn signed_in_user(state: &AppState, token: Option<String>) -> Option<i64> {
    match sessions::peek(state, &token?).await {
        Ok(session) => session.map(|s| s.user_id),
        Err(_) => None,
    }
}

/// The answer to a cross-site request: nothing behind it runs. Logged with
/// the account it would have acted as (the client is the request span's).
pub fn refuse(request: &Request, user_id: Option<i64>) -> Response {
    match user_id {
        Some(user_id) => tracing::warn!(
            path = %request.uri().path(),
            user_id,
            "cross-site request refused"
        ),
        None => tracing::warn!(path = %request.uri().path(), "cross-site request refused"),
    }
    (StatusCode::FORBIDDEN, "Cross-site request refused.").into_response()
}
