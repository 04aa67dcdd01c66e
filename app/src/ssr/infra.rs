//! How infrastructure failures become [`AppError`]s: the cause is logged here,
//! once, with its chain; the browser only learns whether retrying may help.

use crate::error::AppError;

fn is_transient_db(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
    ) || matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("57014"))
}

impl From<sqlx::Error> for AppError {
    fn from(error: sqlx::Error) -> Self {
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
