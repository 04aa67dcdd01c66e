//! Device cookies (OWASP's "Slow Down Online Guessing Attacks with Device
//! Cookies"): a browser that has signed in to an account gets a signed
//! cookie naming that account. Sign-in attempts carrying a valid one for
//! the account are counted per device, not against the account, so the
//! owner can still sign in while strangers' guesses keep the account locked
//! for everyone else; a few wrong passwords from one device lock only that
//! device.
//!
//! The cookie is `<user id>.<nonce>.<HMAC-SHA256>` (hex), signed with a key
//! every instance shares, kept in Postgres (`deployment_secrets`, created by
//! whichever instance needs it first). A cookie whose signature does not
//! verify, or that names another account, counts as no cookie at all.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::ssr::infra::secrets::deployment_secret;
use crate::ssr::{AppState, Result};

/// The browser's cookie. `__Host-`: only this origin, over HTTPS, path /.
pub const DEVICE_COOKIE: &str = "__Host-folio_device";

/// A year: a device stays trusted for as long as people keep a browser.
pub const MAX_AGE_SECS: u64 = 365 * 24 * 3600;

const KEY_NAME: &str = "device_cookies";
const NONCE_BYTES: usize = 16;

/// A cookie that verified: the account it names and the device's nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedDevice {
    pub user_id: i64,
    pub nonce: String,
}

async fn key(state: &AppState) -> Result<[u8; 32]> {
    let key = state
        .device_key
        .get_or_try_init(|| deployment_secret(state.db.primary(), KEY_NAME))
        .await?;
    Ok(*key)
}

fn mac(key: &[u8; 32], user_id: i64, nonce: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(format!("folio device cookie|{user_id}|{nonce}").as_bytes());
    mac
}

/// A new cookie value for `user_id` (a new nonce each sign-in).
pub async fn issue(state: &AppState, user_id: i64) -> Result<String> {
    let key = key(state).await?;
    let mut nonce = [0u8; NONCE_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let nonce = hex::encode(nonce);
    let signature = hex::encode(mac(&key, user_id, &nonce).finalize().into_bytes());
    Ok(format!("{user_id}.{nonce}.{signature}"))
}

/// The device `value` proves for `user_id`, or None: malformed, forged, or
/// issued for another account. The signature is compared in constant time.
pub async fn verify(state: &AppState, value: &str, user_id: i64) -> Result<Option<TrustedDevice>> {
    let mut parts = value.split('.');
    let (Some(id), Some(nonce), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Ok(None);
    };
    let well_formed = nonce.len() == NONCE_BYTES * 2
        && nonce.bytes().all(|b| b.is_ascii_hexdigit())
        && signature.len() == 64;
    let (Ok(named), Ok(signature)) = (id.parse::<i64>(), hex::decode(signature)) else {
        return Ok(None);
    };
    if !well_formed || named != user_id {
        return Ok(None);
    }
    let key = key(state).await?;
    Ok(mac(&key, named, nonce)
        .verify_slice(&signature)
        .is_ok()
        .then(|| TrustedDevice {
            user_id,
            nonce: nonce.to_ascii_lowercase(),
        }))
}
