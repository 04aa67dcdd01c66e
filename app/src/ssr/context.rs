//! What a server function knows about the request it serves: the shared
//! state, the caller's session, the client address; and how its answer's
//! status and cookies are set.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use http::header::{ACCEPT, COOKIE, SET_COOKIE, USER_AGENT};
use http::request::Parts;
use http::{HeaderValue, StatusCode};
use leptos::prelude::use_context;
use leptos_axum::ResponseOptions;

use super::sessions::{self, Session};
use super::AppState;
use crate::error::AppError;

pub const SESSION_COOKIE: &str = "__Host-folio_session";

pub fn state() -> Result<AppState, AppError> {
    use_context::<AppState>().ok_or_else(|| {
        tracing::error!("AppState missing from context");
        AppError::Internal
    })
}

fn parts() -> Result<Parts, AppError> {
    use_context::<Parts>().ok_or_else(|| {
        tracing::error!("request parts missing from context");
        AppError::Internal
    })
}

/// A plain HTML form post (no JavaScript) accepts `text/html`; the server
/// function client asks for its encoding only.
fn is_form_post() -> bool {
    use_context::<Parts>()
        .and_then(|p| p.headers.get(ACCEPT).cloned())
        .and_then(|v| v.to_str().ok().map(|s| s.contains("text/html")))
        .unwrap_or(false)
}

/// Sets the HTTP status of a failed server function, except for plain form
/// posts (no JavaScript): those must stay redirects, the error travels in the
/// URL and is rendered by the page the browser is sent back to.
pub fn respond<T>(result: Result<T, AppError>) -> Result<T, AppError> {
    if let Err(error) = &result {
        if !is_form_post() {
            if let (Some(response), Ok(status)) = (
                use_context::<ResponseOptions>(),
                StatusCode::from_u16(error.status_code()),
            ) {
                response.set_status(status);
            }
        }
    }
    result
}

/// The client's address: the TCP peer, or the last `X-Forwarded-For` hop when
/// the peer is a load balancer we trust. Never the header alone, which any
/// client can forge to dodge the rate limiter.
pub fn client_ip(state: &AppState) -> IpAddr {
    let Ok(parts) = parts() else {
        return IpAddr::from([0, 0, 0, 0]);
    };
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    if !state.config.trusted_proxies.contains(&peer) {
        return peer;
    }
    parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
        .next_back()
        .unwrap_or(peer)
}

pub fn user_agent() -> String {
    parts()
        .ok()
        .and_then(|p| p.headers.get(USER_AGENT).cloned())
        .and_then(|v| v.to_str().ok().map(|s| s.chars().take(200).collect()))
        .unwrap_or_default()
}

/// The raw session token from the request's cookie, if any.
pub fn session_token() -> Option<String> {
    let parts = parts().ok()?;
    parts
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|token| sessions::is_well_formed(token))
}

/// Sends a browser without JavaScript (a plain form post) to `path` after a
/// successful action. JavaScript callers get their typed result instead and
/// update the page in place.
pub fn redirect_form_post(path: &str) {
    if is_form_post() {
        leptos_axum::redirect(path);
    }
}

/// `__Host-` prefix: the browser refuses it unless Secure, Path=/ and no
/// Domain, so a sibling subdomain cannot plant or overwrite it.
pub fn set_session_cookie(token: &str, max_age_secs: u64) {
    append_cookie(format!(
        "{SESSION_COOKIE}={token}; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age={max_age_secs}"
    ));
}

pub fn clear_session_cookie() {
    append_cookie(format!(
        "{SESSION_COOKIE}=; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age=0"
    ));
}

fn append_cookie(cookie: String) {
    if let (Some(response), Ok(value)) = (
        use_context::<ResponseOptions>(),
        HeaderValue::from_str(&cookie),
    ) {
        response.append_header(SET_COOKIE, value);
    }
}

/// The caller's live session, if the cookie names one.
pub async fn current_session(state: &AppState) -> Result<Option<Session>, AppError> {
    match session_token() {
        Some(token) => sessions::load(state, &token).await,
        None => Ok(None),
    }
}

/// The one gate for protected server functions.
pub async fn require_user(state: &AppState) -> Result<Session, AppError> {
    current_session(state).await?.ok_or(AppError::Unauthorized)
}
