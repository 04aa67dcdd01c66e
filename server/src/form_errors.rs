//! The answer to a plain form post (no JavaScript) is a redirect back to its
//! page, with the error, if any, in the URL (`__path`, `__err`: server_fn's
//! convention), which the page renders next to the right field. Two things
//! about that redirect are Folio's to make safe:
//!
//! - **Where it goes.** server_fn sends the browser back to the `Referer`,
//!   whatever its origin. Every `Location` of an answer to a post is cut down
//!   here to a path of this site: a forged `Referer` cannot turn Folio into a
//!   redirector to another site.
//! - **What it shows.** Anyone can write a link to `/signin?__err=…` with a
//!   message of their choosing ("Account locked, call …"). The error in the
//!   URL is therefore sealed when this server puts it there: an expiry and an
//!   HMAC over the page, the function and the error. A page request with an
//!   error that is not sealed by this deployment, or whose seal expired, is
//!   redirected to the same page without it, before anything renders, so
//!   neither the server's render nor the browser's islands ever see it.
//!
//! The key is shared by every instance (the post and the page that follows
//! may be served by different ones): a random secret kept in Postgres
//! (`deployment_secrets`), created by whichever instance starts first.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use app::ssr::infra::secrets::deployment_secret;
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::PgPool;

const PATH: &str = "__path";
const ERROR: &str = "__err";
const EXPIRES: &str = "__exp";
const SEAL: &str = "__sig";
const PARAMS: [&str; 4] = [PATH, ERROR, EXPIRES, SEAL];

/// How long a sealed error may be shown: long enough to read it, reload the
/// page or come back to the tab; a stale error after that is not worth a
/// forged one's risk.
const LIFETIME: Duration = Duration::from_secs(600);

/// The name of the key in `deployment_secrets`.
const KEY_NAME: &str = "form_errors";

#[derive(Clone)]
pub struct FormErrorSeal {
    key: [u8; 32],
}

impl FormErrorSeal {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    /// The deployment's key (`deployment_secrets`, created by whichever
    /// instance starts first).
    pub async fn load(db: &PgPool) -> Result<Self, sqlx::Error> {
        Ok(Self::new(deployment_secret(db, KEY_NAME).await?))
    }

    /// On the way out of every answer to a post: its `Location`, if any,
    /// made a path of this site, and the error it carries sealed.
    pub fn seal_redirect(&self, response: &mut Response) {
        self.seal_redirect_at(response, now());
    }

    fn seal_redirect_at(&self, response: &mut Response, now: u64) {
        let Some(location) = response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
        else {
            return;
        };
        let (path, query) = same_origin(location);
        let mut pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .filter(|(key, _)| key != EXPIRES && key != SEAL)
            .collect();
        let function = find(&pairs, PATH).map(str::to_owned);
        let error = find(&pairs, ERROR).map(str::to_owned);
        match (function, error) {
            (Some(function), Some(error)) => {
                let expires = (now + LIFETIME.as_secs()).to_string();
                let seal = self.seal(&path, &function, &error, &expires);
                pairs.push((EXPIRES.to_owned(), expires));
                pairs.push((SEAL.to_owned(), seal));
            }
            // Half an error is no error: server_fn strips both on success.
            _ => pairs.retain(|(key, _)| key != PATH && key != ERROR),
        }
        let target = with_query(&path, &pairs);
        if let Ok(value) = HeaderValue::from_str(&target) {
            response.headers_mut().insert(header::LOCATION, value);
        }
    }

    /// On the way in: a page request carrying an error this deployment did
    /// not seal (or sealed too long ago) is sent to the page without it.
    pub fn refuse_unsealed(&self, request: &Request) -> Option<Response> {
        self.refuse_unsealed_at(request, now())
    }

    fn refuse_unsealed_at(&self, request: &Request, now: u64) -> Option<Response> {
        if !matches!(*request.method(), Method::GET | Method::HEAD) {
            return None;
        }
        let query = request.uri().query()?;
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        if !pairs.iter().any(|(key, _)| PARAMS.contains(&key.as_str())) {
            return None;
        }
        let path = request.uri().path();
        if self.is_sealed(path, &pairs, now) {
            return None;
        }
        tracing::debug!("form error without a valid seal removed from the URL");
        let kept: Vec<(String, String)> = pairs
            .into_iter()
            .filter(|(key, _)| !PARAMS.contains(&key.as_str()))
            .collect();
        let target = with_query(path, &kept);
        let location = HeaderValue::from_str(&target).unwrap_or(HeaderValue::from_static("/"));
        Some((StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response())
    }

    fn is_sealed(&self, path: &str, pairs: &[(String, String)], now: u64) -> bool {
        let (Some(function), Some(error), Some(expires), Some(seal)) = (
            find(pairs, PATH),
            find(pairs, ERROR),
            find(pairs, EXPIRES),
            find(pairs, SEAL),
        ) else {
            return false;
        };
        let Ok(expiry) = expires.parse::<u64>() else {
            return false;
        };
        // A seal from the future beyond one lifetime was not made by us.
        if expiry <= now || expiry > now + LIFETIME.as_secs() + 60 {
            return false;
        }
        let Ok(given) = URL_SAFE_NO_PAD.decode(seal) else {
            return false;
        };
        self.mac(path, function, error, expires)
            .verify_slice(&given)
            .is_ok()
    }

    fn seal(&self, path: &str, function: &str, error: &str, expires: &str) -> String {
        URL_SAFE_NO_PAD.encode(
            self.mac(path, function, error, expires)
                .finalize()
                .into_bytes(),
        )
    }

    /// Over the page too: a sealed error cannot be moved to another page.
    /// Fields are length-prefixed so that no two inputs share a message.
    fn mac(&self, path: &str, function: &str, error: &str, expires: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC accepts a key of any length");
        for part in ["folio form error v1", path, function, error, expires] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn find<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

fn with_query(path: &str, pairs: &[(String, String)]) -> String {
    if pairs.is_empty() {
        return path.to_owned();
    }
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    format!("{path}?{query}")
}

/// The path and query of a redirect target, as a path of this site: an
/// absolute URL (server_fn copies the `Referer`) loses its scheme and host,
/// and anything a browser could read as another host (`//evil`, `/\evil`,
/// `javascript:`) becomes `/`. The fragment is dropped.
fn same_origin(location: &str) -> (String, String) {
    let base = url::Url::parse("http://folio.invalid/").expect("a valid base URL");
    let Ok(resolved) = base.join(location) else {
        return ("/".to_owned(), String::new());
    };
    let relative = !location.contains("://") && !location.starts_with("//");
    let looks_local =
        location.starts_with('/') && !location.starts_with("//") && !location.starts_with("/\\")
            || location.starts_with('?');
    if relative && !looks_local {
        return ("/".to_owned(), String::new());
    }
    if !matches!(resolved.scheme(), "http" | "https") {
        return ("/".to_owned(), String::new());
    }
    (
        resolved.path().to_owned(),
        resolved.query().unwrap_or_default().to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn redirect(location: &str) -> Response {
        (StatusCode::FOUND, [(header::LOCATION, location.to_owned())]).into_response()
    }

    fn location(response: &Response) -> String {
        response.headers()[header::LOCATION]
            .to_str()
            .unwrap()
            .to_owned()
    }

    fn get(target: &str) -> Request {
        Request::builder().uri(target).body(Body::empty()).unwrap()
    }

    #[test]
    fn redirects_stay_on_this_site() {
        let seal = FormErrorSeal::new([7; 32]);
        for (given, expected) in [
            ("https://evil.example/phish?x=1#f", "/phish?x=1"),
            ("http://127.0.0.1:3000/signin", "/signin"),
            ("//evil.example/x", "/x"),
            ("/\\evil.example", "/"),
            ("javascript:alert(1)", "/"),
            ("/account?tab=1", "/account?tab=1"),
            ("/", "/"),
        ] {
            let mut response = redirect(given);
            seal.seal_redirect_at(&mut response, 1000);
            assert_eq!(location(&response), expected, "{given}");
        }
    }

    #[test]
    fn an_error_this_server_sealed_is_shown_and_no_other() {
        let seal = FormErrorSeal::new([7; 32]);
        let mut response = redirect("http://h/signin?next=%2Fa&__path=%2Fapi%2Flogin&__err=e30");
        seal.seal_redirect_at(&mut response, 1000);
        let sealed = location(&response);
        assert!(sealed.starts_with("/signin?next=%2Fa&__path="), "{sealed}");

        assert!(seal.refuse_unsealed_at(&get(&sealed), 1001).is_none());
        // Expired.
        let expired = seal.refuse_unsealed_at(&get(&sealed), 1000 + 601).unwrap();
        assert_eq!(expired.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&expired), "/signin?next=%2Fa");
        // Another key, another page, another error, no seal at all.
        let other = FormErrorSeal::new([8; 32]);
        assert!(other.refuse_unsealed_at(&get(&sealed), 1001).is_some());
        let moved = sealed.replacen("/signin", "/signup", 1);
        assert!(seal.refuse_unsealed_at(&get(&moved), 1001).is_some());
        let forged = sealed.replacen("__err=e30", "__err=e31", 1);
        assert!(seal.refuse_unsealed_at(&get(&forged), 1001).is_some());
        let bare = seal
            .refuse_unsealed_at(&get("/signin?__path=%2Fapi%2Flogin&__err=e30"), 1001)
            .unwrap();
        assert_eq!(location(&bare), "/signin");
        // Pages without form errors are untouched.
        assert!(seal.refuse_unsealed_at(&get("/people?q=a"), 1001).is_none());
    }

    #[test]
    fn a_success_redirect_carries_no_stale_error() {
        let seal = FormErrorSeal::new([7; 32]);
        let mut response = redirect("/signin?__exp=1&__sig=x&__path=%2Fapi%2Flogin");
        seal.seal_redirect_at(&mut response, 1000);
        assert_eq!(location(&response), "/signin");
    }
}
