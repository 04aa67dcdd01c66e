//! The services' error type, and how it becomes the wire's [`AppError`].
//!
//! Services return [`Error`]: either an answer for the user (`App`: a field
//! error, "not found", "rate limited"…) or an infrastructure failure with its
//! cause. At the boundary (`crate::ssr::handle`, a background task) the
//! failure is logged once and counted, and only then reduced to what the
//! browser may learn: whether retrying may help (`Unavailable`) or not
//! (`Internal`).

use std::fmt;

use crate::error::{AppError, FieldErrors};

use super::infra::metrics::Metrics;

#[derive(thiserror::Error)]
pub enum Error {
    /// An answer the user interface shows as it is.
    #[error(transparent)]
    App(#[from] AppError),
    #[error("postgres: {}", describe_db(.0))]
    Postgres(#[from] sqlx::Error),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The media store (a directory, S3).
    #[error("media store: {0}")]
    Storage(#[from] object_store::Error),
    /// The mail server refused or did not answer (only the `mail` consumer
    /// sends). Not transient: a mail server down is retried a few times,
    /// then the message goes to the dead letters, rather than holding every
    /// later mail of the partition behind it.
    #[error("mail: {0}")]
    Mail(String),
    /// A bug or an impossible state (a hashing job that panicked, a value
    /// that would not serialize): logged, never shown.
    #[error("internal: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<FieldErrors> for Error {
    fn from(errors: FieldErrors) -> Self {
        Error::App(AppError::Validation(errors))
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(error: tokio::task::JoinError) -> Self {
        Error::Internal(format!("blocking task failed: {error}"))
    }
}

/// The log line's view of an error: never a row's contents.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A Postgres error without its DETAIL: a constraint violation's detail is
/// "Failing row contains (…)", which can hold an email or a password hash.
/// The SQLSTATE, the constraint and the message say what went wrong.
fn describe_db(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(db) => format!(
            "{} (sqlstate {}, constraint {}, table {})",
            db.message(),
            db.code().as_deref().unwrap_or("-"),
            db.constraint().unwrap_or("-"),
            db.table().unwrap_or("-"),
        ),
        other => other.to_string(),
    }
}

pub fn is_transient_db(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| is_transient_sqlstate(&code)),
        _ => false,
    }
}

/// SQLSTATEs of a server that is going away, not there yet, or full: the
/// same request may succeed in a moment. A query in flight when Postgres
/// stops ends with 57P01, not with an I/O error.
fn is_transient_sqlstate(code: &str) -> bool {
    code.starts_with("08") // connection_exception
        || matches!(
            code,
            "57014" // query_canceled (statement_timeout)
                | "25006" // read_only_sql_transaction: a primary demoted under us
                | "57P01" // admin_shutdown
                | "57P02" // crash_shutdown
                | "57P03" // cannot_connect_now (starting up, shutting down)
                | "53300" // too_many_connections
        )
}

/// How long a person is asked to wait before sending a refused write again:
/// a Patroni failover takes 10–20 s from the leader's death, a planned
/// switchover a few seconds; a form sent again too early is refused again,
/// just as fast, so the number is a hint, not a promise.
pub const WRITES_PAUSED_RETRY_SECS: u64 = 5;

/// Whether a Postgres failure means "no primary takes writes right now":
/// the connection broke or could not be made (the leader died, or HAProxy
/// has no leader to send it to), the server is shutting down or starting
/// up (a switchover demotes the old leader with a fast shutdown), or it is a
/// standby now (25006: a demoted primary refuses writes as read-only). Not
/// a pool that is merely full or a statement that ran too long: those are
/// load, not a changeover.
pub fn is_primary_outage(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "25006")
        }),
        _ => false,
    }
}

impl Error {
    /// Whether the same operation may succeed if tried again in a moment.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::App(error) => matches!(error, AppError::Unavailable),
            Error::Postgres(error) => is_transient_db(error),
            // Any Redis failure means "not now": there is no Redis error a
            // user could fix.
            Error::Redis(_) => true,
            // A full disk or an unreachable bucket: nothing the user did.
            Error::Storage(_) => true,
            Error::Mail(_) => false,
            Error::Internal(_) => false,
        }
    }

    /// Logs and counts an infrastructure failure, once, and returns what the
    /// browser may know of it.
    pub fn into_app_error(self, metrics: &Metrics) -> AppError {
        match self {
            Error::App(error) => error,
            Error::Postgres(ref error) => {
                metrics.postgres_errors.increment(1);
                if is_primary_outage(error) {
                    metrics.writes_paused.increment(1);
                    tracing::warn!(error = %self, "no primary takes writes; answered \"saving is paused\"");
                    AppError::WritesPaused {
                        retry_after_secs: WRITES_PAUSED_RETRY_SECS,
                    }
                } else if is_transient_db(error) {
                    tracing::warn!(error = %self, "postgres unavailable");
                    AppError::Unavailable
                } else {
                    tracing::error!(error = %self, "postgres error");
                    AppError::Internal
                }
            }
            Error::Redis(ref error) => {
                metrics.redis_errors.increment(1);
                tracing::warn!(error = %error, "redis unavailable");
                AppError::Unavailable
            }
            Error::Storage(ref error) => {
                tracing::warn!(error = %error, "media store unavailable");
                AppError::Unavailable
            }
            Error::Mail(ref what) => {
                tracing::warn!(error = %what, "mail not sent");
                AppError::Unavailable
            }
            Error::Internal(ref what) => {
                tracing::error!(error = %what, "internal error");
                AppError::Internal
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_going_away_is_transient_a_bad_query_is_not() {
        for code in [
            "57P01", "57P02", "57P03", "57014", "53300", "08006", "08001",
        ] {
            assert!(is_transient_sqlstate(code), "{code}");
        }
        for code in ["23505", "42P01", "22001", "40001"] {
            assert!(!is_transient_sqlstate(code), "{code}");
        }
    }

    #[test]
    fn a_missing_primary_pauses_writes_and_a_busy_one_does_not() {
        let metrics = Metrics::new();
        let refused = Error::Postgres(sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert!(refused.is_transient());
        assert_eq!(
            refused.into_app_error(&metrics),
            AppError::WritesPaused {
                retry_after_secs: WRITES_PAUSED_RETRY_SECS
            }
        );
        let busy = Error::Postgres(sqlx::Error::PoolTimedOut);
        assert_eq!(busy.into_app_error(&metrics), AppError::Unavailable);
        for code in ["57P01", "57P03", "08006", "25006"] {
            assert!(is_transient_sqlstate(code), "{code}");
        }
    }

    #[test]
    fn user_facing_errors_pass_through_unchanged() {
        let metrics = Metrics::new();
        let error = Error::from(FieldErrors::single("bio", "too long"));
        assert!(matches!(
            error.into_app_error(&metrics),
            AppError::Validation(_)
        ));
        assert_eq!(
            Error::Internal("boom".into()).into_app_error(&metrics),
            AppError::Internal
        );
    }
}
