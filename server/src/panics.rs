//! Panics: contained, counted, and logged once without flooding.
//!
//! A panic in a handler is a bug of ours, not a reason to drop the
//! client's connection: tower-http's `CatchPanicLayer` answers that request
//! 500 (the process serves on) and counts it in `folio_panics_total`.
//!
//! The panic hook writes the panic to the log as one event, inside the
//! request's span (so with its request id), and nothing else writes it
//! (the default hook's stderr text and the layer's own log line are both
//! replaced). A client who found a way to make Folio panic must not be able
//! to fill the disk with it: a backtrace only for the first panic at each
//! place, and only when `RUST_BACKTRACE` asks for one; at most
//! `MAX_LINES_PER_WINDOW` events per minute, the next one saying how many
//! were left out. The count in `/metrics` stays exact.
//!
//! A panic while a response body streams, or in a background task, is not a
//! handler's: the connection or the task ends (tokio contains it), and the
//! hook logs it the same way, but it is not counted.

use std::any::Any;
use std::backtrace::{Backtrace, BacktraceStatus};
use std::collections::HashSet;
use std::panic::PanicHookInfo;
use std::sync::{Mutex, Once, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics::Counter;
use tower_http::catch_panic::{CatchPanicLayer, ResponseForPanic};

use app::error::AppError;
use app::ssr::Metrics;

const WINDOW: Duration = Duration::from_secs(60);
const MAX_LINES_PER_WINDOW: u32 = 10;
/// Places remembered for "first panic here" (each gets one backtrace).
const MAX_PLACES: usize = 64;

/// Marks the answer to a panic, for the edge: the panic is logged already,
/// and a server function's caller gets it as JSON.
#[derive(Clone, Copy)]
pub struct PanicCaught;

/// The layer that turns a handler's panic into a 500 (see the module
/// comment).
pub fn layer(metrics: &Metrics) -> CatchPanicLayer<AnswerPanic> {
    CatchPanicLayer::custom(AnswerPanic {
        panics: metrics.panics.clone(),
    })
}

#[derive(Clone)]
pub struct AnswerPanic {
    panics: Counter,
}

impl ResponseForPanic for AnswerPanic {
    type ResponseBody = Body;

    fn response_for_panic(&mut self, _payload: Box<dyn Any + Send + 'static>) -> Response<Body> {
        self.panics.increment(1);
        let mut response = (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(CONTENT_TYPE, "text/plain; charset=utf-8")],
            "Something went wrong on our side. Please try again.",
        )
            .into_response();
        response.extensions_mut().insert(PanicCaught);
        response
    }
}

/// A server function's caller decodes an `AppError`; a page gets the text.
pub fn answer_for_route(response: Response, route: &str) -> Response {
    if !route.starts_with("/api/") {
        return response;
    }
    let body = serde_json::to_string(&AppError::Internal).unwrap_or_default();
    let mut json = (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    json.extensions_mut().insert(PanicCaught);
    json
}

/// Routes that panic on purpose, mounted only by tests
/// (`Settings::panic_routes`): a page and a server-function path.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    async fn panic_on_purpose() -> &'static str {
        panic!("a panic on purpose (Settings::panic_routes)")
    }
    Router::new()
        .route("/test/panic", get(panic_on_purpose))
        .route(
            "/api/test_panic",
            get(panic_on_purpose).post(panic_on_purpose),
        )
}

/// Installs the hook that logs panics (see the module comment). Once per
/// process; later calls do nothing.
pub fn install_hook() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| std::panic::set_hook(Box::new(log_panic)));
}

static LOG: Mutex<Option<PanicLog>> = Mutex::new(None);

fn log_panic(info: &PanicHookInfo<'_>) {
    let message = info
        .payload_as_str()
        .unwrap_or("(a panic without a message)");
    let place = info
        .location()
        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
        .unwrap_or_default();
    let admitted = {
        let mut log = LOG.lock().unwrap_or_else(PoisonError::into_inner);
        log.get_or_insert_with(PanicLog::default)
            .admit(&place, Instant::now())
    };
    let Some(Admitted {
        not_logged_before,
        first_here,
    }) = admitted
    else {
        return;
    };
    let backtrace = first_here
        .then(Backtrace::capture)
        .filter(|b| b.status() == BacktraceStatus::Captured);
    match backtrace {
        Some(backtrace) => tracing::error!(
            panic.message = message,
            panic.place = place,
            not_logged_before,
            backtrace = %backtrace,
            "panic"
        ),
        None => tracing::error!(
            panic.message = message,
            panic.place = place,
            not_logged_before,
            "panic"
        ),
    }
}

/// The rate limit of panic events, and the places already seen. Written
/// here rather than taken from a log-throttling crate: only panics need a
/// limit (every other event is one per request at most), and a fixed window
/// of a few lines is all it takes.
#[derive(Default)]
struct PanicLog {
    window_started: Option<Instant>,
    logged_in_window: u32,
    not_logged: u64,
    places: HashSet<String>,
}

#[derive(Debug, PartialEq, Eq)]
struct Admitted {
    /// Panics left out of the log since the last one written.
    not_logged_before: u64,
    /// The first panic at this place: worth a backtrace.
    first_here: bool,
}

impl PanicLog {
    fn admit(&mut self, place: &str, now: Instant) -> Option<Admitted> {
        let window_over = self
            .window_started
            .is_none_or(|started| now.duration_since(started) >= WINDOW);
        if window_over {
            self.window_started = Some(now);
            self.logged_in_window = 0;
        }
        if self.logged_in_window >= MAX_LINES_PER_WINDOW {
            self.not_logged += 1;
            return None;
        }
        self.logged_in_window += 1;
        let first_here = self.places.len() < MAX_PLACES && self.places.insert(place.to_owned());
        Some(Admitted {
            not_logged_before: std::mem::take(&mut self.not_logged),
            first_here,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_panics_is_logged_ten_times_a_minute_with_one_backtrace() {
        let mut log = PanicLog::default();
        let start = Instant::now();
        let admitted: Vec<_> = (0..1000)
            .map(|i| log.admit("src/x.rs:1:1", start + Duration::from_millis(i)))
            .collect();
        let written: Vec<_> = admitted.iter().flatten().collect();
        assert_eq!(written.len(), MAX_LINES_PER_WINDOW as usize);
        assert_eq!(written.iter().filter(|a| a.first_here).count(), 1);

        let next = log.admit("src/x.rs:1:1", start + WINDOW + Duration::from_secs(1));
        assert_eq!(
            next,
            Some(Admitted {
                not_logged_before: 1000 - u64::from(MAX_LINES_PER_WINDOW),
                first_here: false,
            })
        );
        let elsewhere = log.admit("src/y.rs:2:2", start + WINDOW + Duration::from_secs(2));
        assert_eq!(elsewhere.map(|a| a.first_here), Some(true));
    }
}
