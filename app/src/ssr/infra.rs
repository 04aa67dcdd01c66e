//! How infrastructure failures become [`AppError`]s: the cause is logged here,
//! once, with its chain; the browser only learns whether retrying may help.

use crate::error::AppError;

fn is_transient_db(error: &sqlx::Error) -> bool {
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
                | "57P01" // admin_shutdown
                | "57P02" // crash_shutdown
                | "57P03" // cannot_connect_now (starting up, shutting down)
                | "53300" // too_many_connections
        )
}

impl From<sqlx::Error> for AppError {
    fn from(error: sqlx::Error) -> Self {
        metrics::counter!("folio_postgres_errors_total").increment(1);
        if is_transient_db(&error) {
            tracing::warn!(error = %error, "postgres unavailable");
            AppError::Unavailable
        } else {
            tracing::error!(error = ?error, "postgres error");
            AppError::Internal
        }
    }
}

impl From<redis::RedisError> for AppError {
    fn from(error: redis::RedisError) -> Self {
        metrics::counter!("folio_redis_errors_total").increment(1);
        // Any Redis failure on a path that needs Redis (sessions, limits) means
        // "not now": there is no Redis error a user could fix.
        tracing::warn!(error = %error, "redis unavailable");
        AppError::Unavailable
    }
}

impl From<tokio::task::JoinError> for AppError {
    fn from(error: tokio::task::JoinError) -> Self {
        tracing::error!(error = %error, "blocking task failed");
        AppError::Internal
    }
}

#[cfg(test)]
mod tests {
    use super::is_transient_sqlstate;

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
}
