//! What a server function knows about its request, read once, and how its
//! answer is shaped.
//!
//! `handle` is the one wrapper every server function body runs in: it finds
//! the application state, reads the request into a [`RequestMeta`] (client
//! address, user agent, session token, whether it is a plain form post),
//! runs the body with them, and on failure logs and counts the cause and
//! sets the status. Services get the `RequestMeta` as an argument and return
//! values (a `NewSession`, say); the body turns those into cookies and
//! redirects through [`Reply`]. Nothing below `api/` calls `use_context`.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use http::header::{ACCEPT, COOKIE, SET_COOKIE, USER_AGENT};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode};
use leptos::prelude::use_context;
use leptos_axum::ResponseOptions;

use super::accounts::sessions::{self, NewSession, Session};
use super::{AppState, Error};
use crate::error::AppError;

pub const SESSION_COOKIE: &str = "__Host-folio_session";

/// The value of cookie `name`, from every `Cookie` header of the request.
///
/// One parser for every reader (the edge deciding whether a page may be
/// shared, the renderer deciding who is signed in): when two readers parse
/// differently, a request can be anonymous to one and signed in to the
/// other. HTTP/2 may split cookies over several header lines, so all are
/// read. The first occurrence of the name wins.
pub fn find_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim())
}

/// Whether the request carries a session cookie at all (well-formed or not):
/// such a visitor's pages show who is signed in, so they are never shared.
pub fn has_session_cookie(headers: &HeaderMap) -> bool {
    find_cookie(headers, SESSION_COOKIE).is_some()
}

/// The request, as the services need it.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    /// The TCP peer, or the last `X-Forwarded-For` hop when the peer is a
    /// trusted proxy.
    pub client_ip: IpAddr,
    /// At most 200 characters of it (it is stored with the session).
    pub user_agent: String,
    /// The session cookie's token, when it is well formed.
    pub session_token: Option<String>,
    /// A plain HTML form post (no JavaScript): its answers are redirects.
    pub form_post: bool,
}

impl Default for RequestMeta {
    fn default() -> Self {
        Self {
            client_ip: IpAddr::from([0, 0, 0, 0]),
            user_agent: String::new(),
            session_token: None,
            form_post: false,
        }
    }
}

impl RequestMeta {
    pub fn from_parts(parts: &Parts, trusted_proxies: &[IpAddr]) -> Self {
        let headers = &parts.headers;
        Self {
            client_ip: client_ip(parts, trusted_proxies),
            user_agent: headers
                .get(USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.chars().take(200).collect())
                .unwrap_or_default(),
            session_token: find_cookie(headers, SESSION_COOKIE)
                .filter(|token| sessions::is_well_formed(token))
                .map(str::to_owned),
            // The server-function client asks for its own encoding only; a
            // browser submitting a form accepts HTML.
            form_post: headers
                .get(ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|s| s.contains("text/html")),
        }
    }

    /// The client's network for per-address limits: the address itself for
    /// IPv4, its /64 for IPv6, where one subscriber is usually given a whole
    /// /64 and could otherwise take a fresh address per attempt.
    pub fn client_network(&self) -> String {
        network_of(self.client_ip)
    }
}

pub fn network_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// The client's address: the TCP peer, or the last `X-Forwarded-For` hop
/// when the peer is a load balancer we trust. Never the header alone, which
/// any client can forge to dodge the rate limiter.
fn client_ip(parts: &Parts, trusted_proxies: &[IpAddr]) -> IpAddr {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    if !trusted_proxies.contains(&peer) {
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

/// The answer's side of a server function: cookies, redirects and status.
#[derive(Clone)]
pub struct Reply {
    options: Option<ResponseOptions>,
    form_post: bool,
}

impl Reply {
    /// `__Host-` prefix: the browser refuses it unless Secure, Path=/ and no
    /// Domain, so a sibling subdomain cannot plant or overwrite it.
    pub fn start_session(&self, session: &NewSession) {
        self.append_cookie(format!(
            "{SESSION_COOKIE}={}; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age={}",
            session.token,
            session.max_age.as_secs()
        ));
    }

    pub fn clear_session_cookie(&self) {
        self.append_cookie(format!(
            "{SESSION_COOKIE}=; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age=0"
        ));
    }

    /// Sends the browser to `path` (a page load, with JavaScript or not).
    pub fn redirect(&self, path: &str) {
        leptos_axum::redirect(path);
    }

    /// Sends a browser without JavaScript (a plain form post) to `path`
    /// after a success. JavaScript callers get their typed result instead and
    /// update the page in place.
    pub fn redirect_form_post(&self, path: &str) {
        if self.form_post {
            leptos_axum::redirect(path);
        }
    }

    /// The status of a failed call, except for plain form posts: those stay
    /// redirects, the error travels in the URL and is rendered by the page
    /// the browser is sent back to.
    fn fail(&self, error: &AppError) {
        if self.form_post {
            return;
        }
        if let (Some(options), Ok(status)) =
            (&self.options, StatusCode::from_u16(error.status_code()))
        {
            options.set_status(status);
        }
    }

    fn append_cookie(&self, cookie: String) {
        if let (Some(options), Ok(value)) = (&self.options, HeaderValue::from_str(&cookie)) {
            options.append_header(SET_COOKIE, value);
        }
    }
}

/// What a server function body gets: the state, the request, the answer.
pub struct Call {
    pub state: AppState,
    pub meta: RequestMeta,
    pub reply: Reply,
}

impl Call {
    /// The caller's live session, if the cookie names one.
    pub async fn session(&self) -> Result<Option<Session>, Error> {
        match &self.meta.session_token {
            Some(token) => sessions::load(&self.state, token).await,
            None => Ok(None),
        }
    }

    /// The one gate for protected server functions.
    pub async fn user(&self) -> Result<Session, Error> {
        self.session()
            .await?
            .ok_or(Error::App(AppError::Unauthorized))
    }
}

/// Runs a server function's body (see the module comment).
pub async fn handle<T, F, Fut>(body: F) -> Result<T, AppError>
where
    F: FnOnce(Call) -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let Some(state) = use_context::<AppState>() else {
        tracing::error!("AppState missing from the server function's context");
        return Err(AppError::Internal);
    };
    let meta = use_context::<Parts>()
        .map(|parts| RequestMeta::from_parts(&parts, &state.config.trusted_proxies))
        .unwrap_or_default();
    let reply = Reply {
        options: use_context::<ResponseOptions>(),
        form_post: meta.form_post,
    };
    let metrics = state.metrics.clone();
    let result = body(Call {
        state,
        meta,
        reply: reply.clone(),
    })
    .await
    .map_err(|error| error.into_app_error(&metrics));
    if let Err(error) = &result {
        reply.fail(error);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cookies: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for cookie in cookies {
            headers.append(COOKIE, HeaderValue::from_str(cookie).unwrap());
        }
        headers
    }

    #[test]
    fn cookies_are_read_from_every_cookie_header() {
        let two_lines = headers(&["theme=dark", "__Host-folio_session=abc; other=1"]);
        assert_eq!(find_cookie(&two_lines, SESSION_COOKIE), Some("abc"));
        assert!(has_session_cookie(&two_lines));
        assert!(!has_session_cookie(&headers(&["theme=dark"])));
        assert_eq!(
            find_cookie(&headers(&["a=1;  __Host-folio_session = x"]), "a"),
            Some("1")
        );
    }

    #[test]
    fn ipv6_clients_are_limited_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(network_of(a), network_of(b));
        assert_ne!(network_of(a), network_of(other));
        assert_eq!(network_of("203.0.113.7".parse().unwrap()), "203.0.113.7");
        assert_eq!(
            network_of("::ffff:203.0.113.7".parse().unwrap()),
            "203.0.113.7"
        );
    }
}
