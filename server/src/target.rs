//! Request targets refused before any handler sees them: a target that is
//! not a path (`CONNECT host:443`), and a path or query string that is not
//! UTF-8 once percent-decoded (`/u/%ff%fe`).
//!
//! Every handler behind the edge assumes a path and text: leptos_axum
//! unwraps the path of the request it renders (a `CONNECT` reached the 404
//! page's renderer and panicked there), and the router, the page cache and
//! the pages all read the path and the query as UTF-8 (leptos_router
//! decodes them lossily, older versions panicked). Such a request is the
//! client's mistake and is answered 400 here, once, for every route.

use axum::extract::Request;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;

use app::error::AppError;

/// Why the request's target is refused, if it is.
pub fn malformed(request: &Request) -> Option<&'static str> {
    let uri = request.uri();
    if uri.path_and_query().is_none() || (!uri.path().starts_with('/') && uri.path() != "*") {
        return Some("the target is not a path");
    }
    if !decodes_to_utf8(uri.path()) {
        return Some("the path is not UTF-8 once decoded");
    }
    if !uri.query().is_none_or(decodes_to_utf8) {
        return Some("the query is not UTF-8 once decoded");
    }
    None
}

/// A `&str` is UTF-8 already; only its percent-escapes can make bytes that
/// are not (`%ff`, an overlong `%c0%af`, half of a character).
fn decodes_to_utf8(text: &str) -> bool {
    !text.contains('%') || percent_decode_str(text).decode_utf8().is_ok()
}

/// The answer: for a server function, the typed error its client decodes;
/// for anything else, one line of text.
pub fn refuse(route: &str) -> Response {
    if route.starts_with("/api/") {
        let body = serde_json::to_string(&AppError::BadRequest).unwrap_or_default();
        return (
            StatusCode::BAD_REQUEST,
            [(CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
    }
    (
        StatusCode::BAD_REQUEST,
        [(CONTENT_TYPE, "text/plain; charset=utf-8")],
        "Bad request: this address is not valid.",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(uri: &str) -> Option<&'static str> {
        let request = Request::builder()
            .uri(uri)
            .body(axum::body::Body::empty())
            .unwrap();
        malformed(&request)
    }

    #[test]
    fn paths_and_queries_must_decode_to_utf8() {
        assert_eq!(target("/u/ada"), None);
        assert_eq!(target("/u/zo%C3%AB?saved=1&x=%E2%9C%93"), None);
        // A stray % is not an escape: it stays itself, and is text.
        assert_eq!(target("/u/100%?q=%zz"), None);
        assert!(target("/u/%ff%fe").is_some());
        assert!(target("/u/%C0%AF").is_some());
        assert!(target("/signin?__err=%ff").is_some());
        assert!(target("/u/%E2%9C").is_some(), "half a character");
    }

    #[test]
    fn a_target_must_be_a_path() {
        assert!(target("example.com:443").is_some());
        assert_eq!(
            target("*"),
            None,
            "OPTIONS * is a 404 like any unknown path"
        );
    }
}
