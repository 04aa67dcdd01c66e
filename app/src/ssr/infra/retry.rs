//! Exponential backoff with jitter, for transient
//! infrastructure failures of idempotent reads only. Writes are never retried
//! here: a write that timed out may have committed, and doing it twice is
//! not the same as doing it once.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use crate::ssr::Error;

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub attempts: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// Reads: three tries within ~0.3 s, so a reconnecting pool or a failover
    /// is hidden from the user, and a real outage is reported quickly.
    pub const READ: Backoff = Backoff {
        attempts: 3,
        base: Duration::from_millis(50),
        max: Duration::from_millis(400),
    };

    /// The wait before try `attempt + 1`: base·2^(attempt-1), capped, plus up
    /// to 10 % jitter so that clients failing together do not retry together.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exponential = self
            .base
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
        let capped = exponential.min(self.max);
        let jitter = rand::thread_rng().gen_range(0.0..=0.1);
        capped.mul_f64(1.0 + jitter)
    }
}

/// Runs `operation` until it succeeds, fails for good, or has been tried
/// `policy.attempts` times. Only transient failures (connection refused or
/// reset, pool timeout, cancelled statement, Redis away) are worth another
/// try; a validation error or a bug is not.
pub async fn with_retry<T, F, Fut>(policy: Backoff, mut operation: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let mut attempt = 1;
    loop {
        match operation().await {
            Err(error) if error.is_transient() && attempt < policy.attempts => {
                tokio::time::sleep(policy.delay(attempt)).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::error::AppError;

    const FAST: Backoff = Backoff {
        attempts: 3,
        base: Duration::from_millis(1),
        max: Duration::from_millis(4),
    };

    #[tokio::test]
    async fn retries_transient_failures_then_succeeds() {
        let calls = AtomicU32::new(0);
        let result = with_retry(FAST, || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(Error::App(AppError::Unavailable))
            } else {
                Ok(7)
            }
        })
        .await;
        assert!(matches!(result, Ok(7)));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn gives_up_after_the_last_attempt() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = with_retry(FAST, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Error::App(AppError::Unavailable))
        })
        .await;
        assert!(matches!(result, Err(Error::App(AppError::Unavailable))));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn does_not_retry_what_another_try_cannot_fix() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = with_retry(FAST, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Error::App(AppError::NotFound))
        })
        .await;
        assert!(matches!(result, Err(Error::App(AppError::NotFound))));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn waits_grow_exponentially_and_are_capped() {
        let policy = Backoff {
            attempts: 10,
            base: Duration::from_millis(100),
            max: Duration::from_millis(400),
        };
        let d1 = policy.delay(1);
        let d2 = policy.delay(2);
        let d5 = policy.delay(5);
        assert!(d1 >= Duration::from_millis(100) && d1 <= Duration::from_millis(110));
        assert!(d2 >= Duration::from_millis(200) && d2 <= Duration::from_millis(220));
        assert!(d5 >= Duration::from_millis(400) && d5 <= Duration::from_millis(440));
    }
}
