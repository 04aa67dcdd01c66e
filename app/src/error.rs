//! The one error type that crosses the wire between server and browser.
//!
//! Every server function answers `Result<T, AppError>`. The variants are the
//! things a user interface can act on (show next to a field, offer a retry,
//! ask to sign in); everything else is logged on the server and crosses as
//! `Internal`, which carries no detail an attacker could use.
//!
//! The framework's own failures (a request that does not decode, a network
//! that is down) become variants too, in `from_server_fn_error`: never with
//! the deserializer's text, which describes our argument types to whoever
//! sent the request.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use server_fn::error::{FromServerFnError, ServerFnErrorErr};
use server_fn::{Bytes, ContentType, Decodes, Encodes, Format, FormatType};

/// Messages keyed by the form field they belong to (`"username"`, `"bio"`, …).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldErrors(pub BTreeMap<String, String>);

impl FieldErrors {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn single(field: &str, message: impl Into<String>) -> Self {
        let mut errors = Self::new();
        errors.add(field, message);
        errors
    }

    /// Keeps the first message for a field: it is the most specific one.
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0
            .entry(field.to_owned())
            .or_insert_with(|| message.into());
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Records the error of a parse under `field`, returning the parsed value.
    pub fn check<T, E: ToString>(&mut self, field: &str, parsed: Result<T, E>) -> Option<T> {
        match parsed {
            Ok(value) => Some(value),
            Err(error) => {
                self.add(field, error.to_string());
                None
            }
        }
    }

    pub fn into_result(self) -> Result<(), AppError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(AppError::Validation(self))
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    #[error("Please correct the highlighted fields.")]
    Validation(FieldErrors),
    /// Same message for unknown account and wrong password: no enumeration.
    #[error("Incorrect username, email or password.")]
    InvalidCredentials,
    #[error("Please sign in to continue.")]
    Unauthorized,
    #[error("You are not allowed to do that.")]
    Forbidden,
    #[error("Not found.")]
    NotFound,
    #[error("This was changed elsewhere since you loaded it. Reload to see the latest version.")]
    Conflict { current_version: i32 },
    #[error("Too many attempts. Try again in {}.", format_wait(*retry_after_secs))]
    RateLimited { retry_after_secs: u64 },
    #[error("The service is temporarily unavailable. Please try again in a moment.")]
    Unavailable,
    /// The primary database is changing over (a failover or a planned
    /// switchover: seconds, usually): nothing can be saved, everything can
    /// still be read. Told apart from `Unavailable` so a form can say that
    /// what was typed is kept and sending it again will work; never retried
    /// automatically (a write is not idempotent).
    #[error("Saving is paused for a moment while the database changes over. What you typed is kept here: send it again in {}.", format_wait(*retry_after_secs))]
    WritesPaused { retry_after_secs: u64 },
    #[error("Something went wrong on our side. Please try again.")]
    Internal,
    /// The request could not be decoded (missing or repeated fields, a number
    /// out of range, a body that is not UTF-8): the sender's mistake, which a
    /// page of Folio's own does not make, so reloading it is the remedy.
    #[error("This request could not be read. Please reload the page and try again.")]
    BadRequest,
    /// A body in another encoding than a form's (JSON, plain text…).
    #[error("This request was sent in a format Folio does not accept.")]
    UnsupportedMediaType,
    /// What the browser's side of a call reports by itself: the server could
    /// not be reached, or its answer could not be read (a proxy's error
    /// page). The detail is for the console (`Debug`), not for the page.
    #[error("The request did not go through. Check your connection and try again.")]
    Transport(String),
    /// A link Folio mailed (a password reset, an address to verify) that
    /// cannot be used, and why: each case tells the person what to do.
    #[error("{0}")]
    Link(LinkProblem),
}

/// Why a mailed link was refused. Told apart on purpose: "expired" and
/// "already used" say what to do next, and none of them says anything about
/// an account that a person without the link could learn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum LinkProblem {
    /// Not the shape of a token: cut short or mangled on its way.
    #[error("This link is incomplete or damaged. Open it again from the mail, or copy the whole link into the address bar.")]
    Malformed,
    /// The shape of one, but never issued (or its account is gone).
    #[error("This link is not valid. Ask for a new one.")]
    Unknown,
    #[error("This link has expired. Ask for a new one.")]
    Expired,
    #[error("This link was already used. Each link works once: ask for a new one if you need it.")]
    Used,
    /// A newer link of the same kind was sent, or the account's credential
    /// epoch moved (a new password, "sign out everywhere", a new address).
    #[error("This link was replaced by a newer one, or your password, your address or your signed-in devices changed since. Use the newest mail, or ask for a new link.")]
    Replaced,
    /// An address change whose new address another account took meanwhile.
    #[error("Another account uses this address now: your address was not changed.")]
    AddressTaken,
}

fn format_wait(secs: u64) -> String {
    // Rounded up: "try again in 1 minute" must not be too early.
    match secs {
        0..=1 => "1 second".to_owned(),
        2..=59 => format!("{secs} seconds"),
        _ => match secs.div_ceil(60) {
            1 => "1 minute".to_owned(),
            minutes => format!("{minutes} minutes"),
        },
    }
}

impl AppError {
    pub fn field(&self, name: &str) -> Option<String> {
        match self {
            AppError::Validation(errors) => errors.get(name).map(str::to_owned),
            _ => None,
        }
    }

    /// The HTTP status a server function answers with for this error.
    pub fn status_code(&self) -> u16 {
        match self {
            AppError::Validation(_) => 422,
            AppError::InvalidCredentials | AppError::Unauthorized => 401,
            AppError::Forbidden => 403,
            AppError::NotFound => 404,
            AppError::Conflict { .. } => 409,
            AppError::RateLimited { .. } => 429,
            AppError::Unavailable | AppError::WritesPaused { .. } => 503,
            AppError::Internal => 500,
            AppError::BadRequest => 400,
            AppError::UnsupportedMediaType => 415,
            // Never sent by the server: the browser makes it up itself.
            AppError::Transport(_) => 502,
            AppError::Link(LinkProblem::Malformed) => 400,
            AppError::Link(LinkProblem::Unknown) => 404,
            AppError::Link(LinkProblem::AddressTaken) => 409,
            AppError::Link(_) => 410,
        }
    }

    /// Seconds after which the same request may succeed (`Retry-After`).
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            AppError::RateLimited { retry_after_secs }
            | AppError::WritesPaused { retry_after_secs } => Some(*retry_after_secs),
            _ => None,
        }
    }

    /// What a failure of the server-function machinery means to the user,
    /// wherever it happens: the request's arguments did not decode (the
    /// sender's mistake), the call did not go through (the browser's side),
    /// or the server failed (ours). On the server, inside a server function's
    /// request, `crate::ssr::request::framework_failure` decides instead: it
    /// knows the request.
    pub fn from_framework(error: ServerFnErrorErr) -> Self {
        match error {
            ServerFnErrorErr::Args(_) | ServerFnErrorErr::MissingArg(_) => AppError::BadRequest,
            ServerFnErrorErr::Request(_)
            | ServerFnErrorErr::Deserialization(_)
            | ServerFnErrorErr::Serialization(_)
            | ServerFnErrorErr::Response(_)
            | ServerFnErrorErr::UnsupportedRequestMethod(_) => {
                AppError::Transport(error.to_string())
            }
            ServerFnErrorErr::Registration(_)
            | ServerFnErrorErr::ServerError(_)
            | ServerFnErrorErr::MiddlewareError(_) => AppError::Internal,
        }
    }
}

/// `AppError` as JSON, the same as server_fn's `JsonEncoding`, but read
/// from text: island props are read with `serde_json::from_str`, and an
/// error read the same way (not with `from_slice`) keeps one copy of its
/// deserializer in the WASM instead of two (bench/NOTES.md, "WASM size").
pub struct ErrorJson;

impl ContentType for ErrorJson {
    const CONTENT_TYPE: &'static str = "application/json";
}

impl FormatType for ErrorJson {
    const FORMAT_TYPE: Format = Format::Text;
}

impl Encodes<AppError> for ErrorJson {
    type Error = serde_json::Error;

    fn encode(error: &AppError) -> Result<Bytes, Self::Error> {
        serde_json::to_vec(error).map(Bytes::from)
    }
}

impl Decodes<AppError> for ErrorJson {
    type Error = serde_json::Error;

    fn decode(bytes: Bytes) -> Result<AppError, Self::Error> {
        let text = std::str::from_utf8(&bytes).map_err(serde::de::Error::custom)?;
        serde_json::from_str(text)
    }
}

impl FromServerFnError for AppError {
    type Encoder = ErrorJson;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        // A request that fails to decode never reaches `ssr::handle`: server_fn
        // answers it by itself, and this conversion is the one place where
        // Folio's code runs on that path.
        #[cfg(feature = "ssr")]
        let value = match crate::ssr::request::framework_failure(value) {
            Ok(error) => return error,
            Err(value) => value,
        };
        AppError::from_framework(value)
    }
}

impl From<FieldErrors> for AppError {
    fn from(errors: FieldErrors) -> Self {
        AppError::Validation(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_message_names_the_wait() {
        let msg = AppError::RateLimited {
            retry_after_secs: 90,
        }
        .to_string();
        assert!(msg.contains("2 minutes"), "{msg}");
        let msg = AppError::RateLimited {
            retry_after_secs: 5,
        }
        .to_string();
        assert!(msg.contains("5 seconds"), "{msg}");
    }

    #[test]
    fn paused_writes_are_a_503_that_says_when_to_send_again() {
        let paused = AppError::WritesPaused {
            retry_after_secs: 5,
        };
        assert_eq!(paused.status_code(), 503);
        assert_eq!(paused.retry_after_secs(), Some(5));
        let message = paused.to_string();
        assert!(message.contains("5 seconds"), "{message}");
        assert!(message.contains("kept"), "{message}");
        assert_ne!(message, AppError::Unavailable.to_string());
        assert_eq!(AppError::Unavailable.retry_after_secs(), None);
    }

    #[test]
    fn framework_failures_never_repeat_the_deserializer() {
        let missing =
            AppError::from_framework(ServerFnErrorErr::Args("missing field `email`".into()));
        assert_eq!(missing, AppError::BadRequest);
        assert_eq!(missing.status_code(), 400);
        assert!(!missing.to_string().contains("email"));
        let offline = AppError::from_framework(ServerFnErrorErr::Request(
            "TypeError: Failed to fetch".into(),
        ));
        assert!(matches!(offline, AppError::Transport(_)));
        assert!(!offline.to_string().contains("TypeError"), "{offline}");
        assert_eq!(
            AppError::from_framework(ServerFnErrorErr::ServerError("boom".into())),
            AppError::Internal
        );
        assert_eq!(AppError::UnsupportedMediaType.status_code(), 415);
    }

    #[test]
    fn error_json_reads_what_it_writes_and_refuses_what_is_not_text() {
        let error = AppError::Validation(FieldErrors::single("email", "Email is required."));
        let bytes = <ErrorJson as Encodes<AppError>>::encode(&error).unwrap();
        assert_eq!(
            <ErrorJson as Decodes<AppError>>::decode(bytes).unwrap(),
            error
        );
        let not_text = Bytes::from_static(b"\"\xff\"");
        assert!(<ErrorJson as Decodes<AppError>>::decode(not_text).is_err());
        // What a failed decode becomes: a transport failure, not a panic.
        assert!(matches!(
            AppError::de(Bytes::from_static(b"<html>")),
            AppError::Transport(_)
        ));
    }

    #[test]
    fn field_errors_keep_the_first_message() {
        let mut errors = FieldErrors::new();
        errors.add("bio", "too long");
        errors.add("bio", "other");
        assert_eq!(errors.get("bio"), Some("too long"));
        assert!(matches!(errors.into_result(), Err(AppError::Validation(_))));
    }
}
