//! argon2id hashing, off the async runtime and bounded.
//!
//! One hash costs ~19 MiB and tens of milliseconds of one core. Running it on
//! the async workers would stall every other request; running unboundedly many
//! on the blocking pool would exhaust memory under a login flood. So each hash
//! or verify takes a permit from a semaphore sized to the cores, then runs on
//! one of as many dedicated hashing threads.
//!
//! Dedicated threads, not `spawn_blocking`: glibc gives each thread that
//! allocates its own malloc arena (up to 8 per core), and after the first
//! 19 MiB block is freed it raises its mmap threshold, so later blocks come
//! from, and stay in, those arenas. Hashing on whichever of the blocking pool's
//! threads is free left ~19 MiB resident per arena: 350 MiB after a login
//! burst on 2 cores. A fixed set of threads bounds it to one block each.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::domain::Password;
use crate::error::{AppError, FieldErrors};
use crate::ssr::{Error, Result};

/// OWASP's argon2id parameters (m = 19 MiB, t = 2, p = 1). The one place they
/// are defined: stored hashes carry theirs, and a login with older ones
/// re-hashes.
pub const MEMORY_KIB: u32 = 19_456;
pub const ITERATIONS: u32 = 2;
pub const PARALLELISM: u32 = 1;

fn argon2() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
        .expect("argon2 parameters are valid constants");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

pub struct Verified {
    pub ok: bool,
    pub needs_rehash: bool,
}

type Job = Box<dyn FnOnce() + Send>;

/// Starts `count` hashing threads; they end when the returned sender (every
/// clone of the hasher) is dropped.
fn start_workers(count: usize) -> mpsc::Sender<Job> {
    let (sender, receiver) = mpsc::channel::<Job>();
    let receiver = Arc::new(Mutex::new(receiver));
    for i in 0..count {
        let receiver = receiver.clone();
        std::thread::Builder::new()
            .name(format!("folio-hash-{i}"))
            .spawn(move || loop {
                let job = receiver.lock().unwrap_or_else(|e| e.into_inner()).recv();
                let Ok(job) = job else { return };
                // A panicking job drops its reply sender (the caller gets
                // `Internal`); the thread lives on.
                let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
            })
            .expect("cannot start a hashing thread");
    }
    sender
}

#[derive(Clone)]
pub struct PasswordHasher {
    workers: mpsc::Sender<Job>,
    permits: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    /// Verified against when the account does not exist, so that "no such
    /// user" costs the same time as "wrong password".
    dummy_hash: Arc<String>,
}

impl PasswordHasher {
    pub async fn new() -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let mut hasher = Self {
            workers: start_workers(cores),
            permits: Arc::new(Semaphore::new(cores)),
            waiting: Arc::new(AtomicUsize::new(0)),
            dummy_hash: Arc::default(),
        };
        let dummy_hash = hasher
            .run(|| hash_now("folio-dummy-password-for-timing"))
            .await
            .expect("hashing a constant cannot fail");
        hasher.dummy_hash = Arc::new(dummy_hash);
        hasher
    }

    /// Requests waiting for a hashing permit (exported as a metric).
    pub fn queue_depth(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let permit = self.permits.clone().acquire_owned().await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        let permit = permit.map_err(|_| Error::App(AppError::Unavailable))?;
        let span = tracing::Span::current();
        let (reply, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _entered = span.enter();
            let _permit = permit;
            let _ = reply.send(work());
        });
        self.workers
            .send(job)
            .map_err(|_| Error::Internal("the hashing threads are gone".into()))?;
        result
            .await
            .map_err(|_| Error::Internal("a hashing job panicked".into()))
    }

    pub async fn hash(&self, password: &Password) -> Result<String> {
        let password = password.expose().to_owned();
        self.run(move || hash_now(&password)).await
    }

    /// Verifies against `stored`, or against the dummy hash when there is no
    /// account (the answer is then always "no").
    pub async fn verify(&self, password: &Password, stored: Option<String>) -> Result<Verified> {
        let password = password.expose().to_owned();
        let exists = stored.is_some();
        let phc = stored.unwrap_or_else(|| self.dummy_hash.as_ref().clone());
        self.run(move || {
            let Ok(parsed) = PasswordHash::new(&phc) else {
                return Verified {
                    ok: false,
                    needs_rehash: false,
                };
            };
            let ok = argon2()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
                && exists;
            Verified {
                ok,
                needs_rehash: ok && is_outdated(&parsed),
            }
        })
        .await
    }

    /// zxcvbn's verdict (score ≥ 3), with the user's own words as context so
    /// that "alice2024!" is weak for alice. Runs on the hashing threads too: its
    /// matching is cheap but not free for 128 characters.
    pub async fn check_strength(
        &self,
        password: &Password,
        context: Vec<String>,
    ) -> Result<Result<(), FieldErrors>> {
        let password = password.expose().to_owned();
        self.run(move || {
            let inputs: Vec<&str> = context.iter().map(String::as_str).collect();
            let entropy = zxcvbn::zxcvbn(&password, &inputs);
            if entropy.score() >= zxcvbn::Score::Three {
                Ok(())
            } else {
                let hint = entropy
                    .feedback()
                    .and_then(|f| f.warning().map(|w| w.to_string()))
                    .unwrap_or_else(|| "It is too easy to guess.".to_owned());
                Err(FieldErrors::single(
                    "password",
                    format!("This password is too weak: {hint} Add more words or characters."),
                ))
            }
        })
        .await
    }
}

fn hash_now(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashing with valid parameters cannot fail")
        .to_string()
}

/// True when the stored hash was made with other parameters or algorithm
/// than today's: re-hash it while we hold the plaintext.
fn is_outdated(hash: &PasswordHash<'_>) -> bool {
    let current = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None).expect("valid");
    let Ok(stored) = Params::try_from(hash) else {
        return true;
    };
    hash.algorithm != Algorithm::Argon2id.ident()
        || stored.m_cost() != current.m_cost()
        || stored.t_cost() != current.t_cost()
        || stored.p_cost() != current.p_cost()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_with_owasp_parameters() {
        let phc = hash_now("correct horse battery staple");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(!is_outdated(&PasswordHash::new(&phc).unwrap()));
    }

    #[test]
    fn weaker_hashes_are_flagged_for_rehash() {
        let weak = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(4096, 1, 1, None).unwrap(),
        );
        let salt = SaltString::generate(&mut OsRng);
        let phc = weak.hash_password(b"pw", &salt).unwrap().to_string();
        assert!(is_outdated(&PasswordHash::new(&phc).unwrap()));
    }
}
