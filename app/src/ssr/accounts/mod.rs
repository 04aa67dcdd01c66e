//! Accounts: sign-up, sign-in, passwords and the sessions they start.
//! Owns the `users` table's credentials, the tokens of mailed links
//! (`account_tokens`), every session in Redis and each user's recent writes
//! (read-your-writes); never sets a cookie or reads the
//! request (`api/` does, from what these return).

pub mod credentials;
mod deletion;
pub mod device_cookies;
pub mod devices;
mod email_change;
mod export;
pub mod passwords;
mod reauth;
pub mod recent_writes;
mod recovery;
mod service;
pub mod sessions;
pub mod tokens;
mod verification;

pub use deletion::delete_account;
pub use email_change::{
    cancel_email_change, check_cancel_link, check_email_change_link, confirm_email_change,
    request_email_change,
};
pub use export::export;
pub use recovery::{check_reset_link, request_password_reset, reset_password};
pub use service::{
    change_password, count_users, list_sessions, login, logout, logout_everywhere, recent_activity,
    register, revoke_session, Registration, Revoked,
};
pub use sessions::{NewSession, Session};
pub use verification::{account_email, resend_verification, verify_email};
