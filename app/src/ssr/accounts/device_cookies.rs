//! Device cookies (OWASP's "Slow Down Online Guessing Attacks with Device
//! Cookies"): a browser that has signed in to an account gets a signed
//! cookie naming that account. Sign-in attempts carrying a live one for
//! the account are counted per device, not against the account, so the
//! owner can still sign in while strangers' guesses keep the account locked
//! for everyone else; a few wrong passwords from one device lock only that
//! device (and are reported as guessing, like a locked account).
//!
//! The cookie is `<user id>.<nonce>.<HMAC-SHA256>` (hex). The MAC covers the
//! account, the nonce and the account's credential epoch when it was issued
//! (`users.credential_epoch`, moved on by a password change, a reset and
//! "sign out everywhere"), so a cookie dies with the credentials it was
//! issued under even if a row outlived them. A signature alone is not
//! enough: the device must also have its row in `trusted_devices` (the
//! SHA-256 of its nonce), which goes when the device is unused for
//! [`DEVICE_LIFE`], when the account's [`DEVICES_PER_ACCOUNT`] newer
//! devices push it out, or with the account. A cookie that does not verify,
//! names another account or has no live row counts as no cookie at all.
//!
//! A browser that signs in again with a live cookie keeps it (sent back
//! with a new lifetime): a thousand sign-ins make one device, not a
//! thousand.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::ssr::infra::secrets::deployment_secret;
use crate::ssr::{AppState, Result};

/// The browser's cookie. `__Host-`: only this origin, over HTTPS, path /.
pub const DEVICE_COOKIE: &str = "__Host-folio_device";

/// A device unused this long is forgotten. 180 days: someone who signs in
/// twice a year keeps their browser; a browser left behind is not trusted
/// forever.
pub const DEVICE_LIFE: std::time::Duration = std::time::Duration::from_secs(180 * 24 * 3600);

/// The cookie lives as long as the device would unused (renewed at each
/// sign-in that presents it).
pub const MAX_AGE_SECS: u64 = DEVICE_LIFE.as_secs();

/// The devices an account keeps, most recently used first. Ten covers
/// a person's phones, computers and browsers; an eleventh pushes out the
/// least recently used. It also bounds how many per-device buckets of
/// guesses someone who knew the password once can hold.
pub const DEVICES_PER_ACCOUNT: i64 = 10;

const KEY_NAME: &str = "device_cookies";
const NONCE_BYTES: usize = 16;

/// A cookie that verified: the account it names, the device's nonce (its
/// rate-limit bucket) and the cookie's value, which a sign-in sends back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedDevice {
    pub user_id: i64,
    pub nonce: String,
    pub cookie: String,
}

/// The MAC key: derived from the deployment's secret with a label of its
/// own (HKDF-Expand, RFC 5869, one block: `HMAC(secret, label || 0x01)`;
/// the secret is already uniformly random, so the Extract step adds
/// nothing, §3.3), so the stored secret is never itself a MAC key and any
/// other use of it gets an unrelated key.
///
/// The secret sits in clear in Postgres (`deployment_secrets`): whoever
/// reads that table can mint device cookies, which buys per-device guessing
/// buckets (still under the per-network limit and [`DEVICES_PER_ACCOUNT`]),
/// never a session. Protecting it further needs a key Postgres never sees:
/// a KMS or an environment secret to seal the row with (the secret then
/// stored encrypted, unsealed here), which Folio's deployment does not have
/// yet.
async fn key(state: &AppState) -> Result<[u8; 32]> {
    let key = state
        .device_key
        .get_or_try_init(|| async {
            let secret = deployment_secret(state.db.primary(), KEY_NAME).await?;
            let mut expand = Hmac::<Sha256>::new_from_slice(&secret).expect("any key length");
            expand.update(b"folio device cookie MAC key v1");
            expand.update(&[1]);
            Ok::<_, sqlx::Error>(<[u8; 32]>::from(expand.finalize().into_bytes()))
        })
        .await?;
    Ok(*key)
}

fn mac(key: &[u8; 32], user_id: i64, nonce: &str, epoch: i64) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(format!("folio device cookie|{user_id}|{nonce}|{epoch}").as_bytes());
    mac
}

fn row_id(nonce: &str) -> Vec<u8> {
    Sha256::digest(nonce.as_bytes()).to_vec()
}

/// A new device for `user_id`, under the account's current credentials:
/// its row, and the cookie value. The account's dead devices (unused past
/// their life, of older credentials) go, and the least recently used ones
/// past [`DEVICES_PER_ACCOUNT`].
pub async fn issue(state: &AppState, user_id: i64) -> Result<String> {
    let key = key(state).await?;
    let mut nonce = [0u8; NONCE_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let nonce = hex::encode(nonce);
    let mut tx = state.db.begin().await?;
    let epoch: i64 =
        sqlx::query_scalar("SELECT credential_epoch FROM users WHERE id = $1 FOR UPDATE")
            .bind(user_id)
            .fetch_one(&mut *tx)
            .await?;
    sqlx::query("INSERT INTO trusted_devices (id, user_id, epoch) VALUES ($1, $2, $3)")
        .bind(row_id(&nonce))
        .bind(user_id)
        .bind(epoch)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "DELETE FROM trusted_devices
         WHERE user_id = $1
           AND (epoch <> $2
                OR last_used_at <= now() - make_interval(secs => $3)
                OR id NOT IN (SELECT id FROM trusted_devices
                              WHERE user_id = $1 AND epoch = $2
                              ORDER BY last_used_at DESC, created_at DESC
                              LIMIT $4))",
    )
    .bind(user_id)
    .bind(epoch)
    .bind(DEVICE_LIFE.as_secs_f64())
    .bind(DEVICES_PER_ACCOUNT)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let signature = hex::encode(mac(&key, user_id, &nonce, epoch).finalize().into_bytes());
    Ok(format!("{user_id}.{nonce}.{signature}"))
}

/// The device `value` proves for `user_id`, or None: malformed, forged,
/// issued for another account or under older credentials, unused past its
/// life, or pushed out by newer devices. The signature is compared in
/// constant time.
pub async fn verify(state: &AppState, value: &str, user_id: i64) -> Result<Option<TrustedDevice>> {
    let mut parts = value.split('.');
    let (Some(id), Some(nonce), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Ok(None);
    };
    let well_formed = nonce.len() == NONCE_BYTES * 2
        && nonce
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && signature.len() == 64;
    let (Ok(named), Ok(signature)) = (id.parse::<i64>(), hex::decode(signature)) else {
        return Ok(None);
    };
    if !well_formed || named != user_id {
        return Ok(None);
    }
    let epoch: Option<i64> = sqlx::query_scalar(
        "SELECT u.credential_epoch
         FROM trusted_devices d JOIN users u ON u.id = d.user_id
         WHERE d.id = $1 AND d.user_id = $2 AND d.epoch = u.credential_epoch
           AND d.last_used_at > now() - make_interval(secs => $3)",
    )
    .bind(row_id(nonce))
    .bind(user_id)
    .bind(DEVICE_LIFE.as_secs_f64())
    .fetch_optional(state.db.primary())
    .await?;
    let Some(epoch) = epoch else {
        return Ok(None);
    };
    let key = key(state).await?;
    Ok(mac(&key, named, nonce, epoch)
        .verify_slice(&signature)
        .is_ok()
        .then(|| TrustedDevice {
            user_id,
            nonce: nonce.to_owned(),
            cookie: value.to_owned(),
        }))
}

/// The device proved the password again: its life starts over.
pub async fn touch(state: &AppState, device: &TrustedDevice) -> Result<()> {
    sqlx::query("UPDATE trusted_devices SET last_used_at = now() WHERE id = $1 AND user_id = $2")
        .bind(row_id(&device.nonce))
        .bind(device.user_id)
        .execute(state.db.primary())
        .await?;
    Ok(())
}
