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
//!
//! A request whose arguments do not decode never reaches `handle`: server_fn
//! answers it by itself. [`framework_failure`] is where Folio's code still
//! runs on that path (through `AppError::from_server_fn_error`), so that such
//! a request is answered like any other client mistake: a 400 (or 415) with
//! a typed error, a redirect for a plain form post, and a count per route.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::extract::ConnectInfo;
use http::header::{ACCEPT, CONTENT_TYPE, COOKIE, RETRY_AFTER, SET_COOKIE, USER_AGENT};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode};
use leptos::prelude::use_context;
use leptos_axum::ResponseOptions;
use server_fn::error::{ServerFnErrorErr, ServerFnUrlError};

use super::accounts::device_cookies::{self, DEVICE_COOKIE};
use super::accounts::recent_writes;
use super::accounts::sessions::{self, NewSession, Session};
use super::infra::db::Freshness;
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
    /// The device cookie, unverified (`accounts::device_cookies`).
    pub device_cookie: Option<String>,
    /// A plain HTML form post (no JavaScript): its answers are redirects.
    pub form_post: bool,
}

impl Default for RequestMeta {
    fn default() -> Self {
        Self {
            client_ip: IpAddr::from([0, 0, 0, 0]),
            user_agent: String::new(),
            session_token: None,
            device_cookie: None,
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
            device_cookie: find_cookie(headers, DEVICE_COOKIE)
                .filter(|value| value.len() <= 128)
                .map(str::to_owned),
            form_post: is_form_post(headers),
        }
    }

    /// The client's network for per-address limits: the address itself for
    /// IPv4, its /64 for IPv6, where one subscriber is usually given a whole
    /// /64 and could otherwise take a fresh address per attempt.
    pub fn client_network(&self) -> String {
        network_of(self.client_ip)
    }
}

/// The server-function client asks for its own encoding only; a browser
/// submitting a form accepts HTML. The same test as server_fn's and
/// leptos_axum's, which redirect such a request back to its page.
fn is_form_post(headers: &HeaderMap) -> bool {
    headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|s| s.contains("text/html"))
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
    client_ip_of(&parts.headers, &parts.extensions, trusted_proxies)
}

/// [`client_ip`], for what is not yet split into `Parts` (the edge's
/// request, whose span names the client).
pub fn client_ip_of(
    headers: &HeaderMap,
    extensions: &http::Extensions,
    trusted_proxies: &[IpAddr],
) -> IpAddr {
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    if !trusted_proxies.contains(&peer) {
        return peer;
    }
    headers
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
    /// The server function's path (`/api/reset_password`).
    function: String,
    /// Where a failed plain form post goes back to, when its page said so
    /// (see [`Reply::on_failure_return_to`]).
    failure_page: Arc<Mutex<Option<String>>>,
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
        if let Some(device) = &session.device_cookie {
            self.append_cookie(format!(
                "{DEVICE_COOKIE}={device}; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age={}",
                device_cookies::MAX_AGE_SECS
            ));
        }
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

    /// Where a failed plain form post is sent back to, with its error.
    /// server_fn sends it back to the `Referer`, which a page with
    /// `Referrer-Policy: no-referrer` (the password reset page, whose URL
    /// holds a token) never lets the browser send: such a page names
    /// itself. `page` is a path of this site.
    pub fn on_failure_return_to(&self, page: &str) {
        if let Ok(mut failure_page) = self.failure_page.lock() {
            *failure_page = Some(page.to_owned());
        }
    }

    /// The status of a failed call, except for plain form posts: those stay
    /// redirects, the error travels in the URL and is rendered by the page
    /// the browser is sent back to.
    fn fail(&self, error: &AppError) {
        if self.form_post {
            let page = self.failure_page.lock().ok().and_then(|page| page.clone());
            if let Some(page) = page {
                // server_fn's own encoding of the error, so the page's
                // action reads it as it reads any other.
                let back = ServerFnUrlError::new(&self.function, error.clone())
                    .to_url(&format!("http://folio.invalid{page}"));
                if let Ok(url) = back {
                    let query = url.query().map(|q| format!("?{q}")).unwrap_or_default();
                    leptos_axum::redirect(&format!("{}{query}", url.path()));
                }
            }
            return;
        }
        if let (Some(options), Ok(status)) =
            (&self.options, StatusCode::from_u16(error.status_code()))
        {
            options.set_status(status);
            // A 429 or a paused write says when to come back (RFC 9110 §10.2.3).
            if let Some(secs) = error.retry_after_secs() {
                options.insert_header(RETRY_AFTER, HeaderValue::from(secs));
            }
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

    /// How fresh this caller's public reads must be: anonymous callers
    /// take any replica's answer; a caller who wrote recently sees their
    /// write (`accounts::recent_writes`). Costs one Redis round trip with a
    /// session cookie, none without.
    pub async fn freshness(&self) -> Freshness {
        match &self.meta.session_token {
            Some(token) => recent_writes::freshness(&self.state, token).await,
            None => Freshness::Any,
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
    let parts = use_context::<Parts>();
    let meta = parts
        .as_ref()
        .map(|parts| RequestMeta::from_parts(parts, &state.config.trusted_proxies))
        .unwrap_or_default();
    let reply = Reply {
        options: use_context::<ResponseOptions>(),
        form_post: meta.form_post,
        function: parts
            .as_ref()
            .map(|parts| parts.uri.path().to_owned())
            .unwrap_or_default(),
        failure_page: Arc::default(),
    };
    // Arguments without fields decode from any body at all: the encoding is
    // checked here too, so that every function refuses the same requests.
    if let Some(parts) = parts
        .as_ref()
        .filter(|parts| !is_form_encoded(&parts.headers))
    {
        let error = AppError::UnsupportedMediaType;
        count_bad_request(&state, parts.uri.path());
        reply.fail(&error);
        return Err(error);
    }
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

/// Whether the body is in an encoding a server function reads: a form, as
/// the browser sends one (url-encoded, the `#[server]` default, or
/// multipart, for uploads), or no declared type at all (`curl -X POST`, an
/// empty body). JSON, plain text and the rest are refused with 415 rather
/// than read as if they were a form.
fn is_form_encoded(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return true;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/x-www-form-urlencoded")
        || essence.eq_ignore_ascii_case("multipart/form-data")
}

/// `folio_bad_requests_total{route}`: requests refused as malformed. The
/// route is a server function's path, a fixed set: never a path the client
/// made up.
fn count_bad_request(state: &AppState, route: &str) {
    state
        .metrics
        .counter("folio_bad_requests_total", &[("route", route.to_owned())])
        .increment(1);
}

/// The server side of `AppError::from_server_fn_error`: a failure of
/// server_fn itself while it answers a server function's request. One that
/// decoding the request raised (missing, repeated or malformed fields, a body
/// that is not UTF-8 or too long) is the client's: 400, or 415 when the body
/// is not a form at all, counted per function. Any other (an answer that
/// would not serialize) is Folio's: logged, and `Internal`.
///
/// server_fn has already chosen its answer, a 500 with the error as JSON (or,
/// for a plain form post, a redirect with the error in the URL); the status
/// set here replaces the 500, as `Reply::fail` does for the body's errors.
/// Outside a server function's request (a page render decoding a form
/// post's error from its URL) it gives the error back untouched.
pub fn framework_failure(error: ServerFnErrorErr) -> Result<AppError, ServerFnErrorErr> {
    let (Some(parts), Some(state)) = (use_context::<Parts>(), use_context::<AppState>()) else {
        return Err(error);
    };
    let path = parts.uri.path();
    if !server_fn::axum::server_fn_paths().any(|(function, _)| function == path) {
        return Err(error);
    }
    let answer = match error {
        ServerFnErrorErr::Args(_)
        | ServerFnErrorErr::MissingArg(_)
        | ServerFnErrorErr::Deserialization(_) => {
            count_bad_request(&state, path);
            if is_form_encoded(&parts.headers) {
                AppError::BadRequest
            } else {
                AppError::UnsupportedMediaType
            }
        }
        other => {
            tracing::error!(error = %other, "server function failed outside its body");
            AppError::Internal
        }
    };
    let reply = Reply {
        options: use_context::<ResponseOptions>(),
        form_post: is_form_post(&parts.headers),
        function: path.to_owned(),
        failure_page: Arc::default(),
    };
    reply.fail(&answer);
    Ok(answer)
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
