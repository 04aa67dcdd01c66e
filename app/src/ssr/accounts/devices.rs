//! The devices a user signs in from, so that a sign-in from a new one is
//! reported (a `session.created` event, shown on the account page).
//!
//! A device is the browser family, its operating system and the client's
//! network (IPv4 /24, IPv6 /48): a browser update or a new address from the
//! same provider is the same device; another browser, or the same one on
//! another network, is new. Only the SHA-256 of the three is stored.

use std::net::IpAddr;

use sha2::{Digest, Sha256};
use sqlx::PgConnection;

use crate::domain::Device;
use crate::ssr::events::types::Origin;
use crate::ssr::request::RequestMeta;
use crate::ssr::Result;

/// Where the request comes from, as events and the activity page show it.
pub fn origin(meta: &RequestMeta) -> Origin {
    Origin {
        ip: meta.client_ip.to_string(),
        device: Device::from_user_agent(&meta.user_agent).to_string(),
    }
}

fn network(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => network(IpAddr::V4(v4)),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
            }
        },
    }
}

fn device_key(meta: &RequestMeta) -> Vec<u8> {
    let device = Device::from_user_agent(&meta.user_agent);
    let key = format!(
        "{}|{}|{}",
        device.browser,
        device.os.unwrap_or("-"),
        network(meta.client_ip)
    );
    Sha256::digest(key.as_bytes()).to_vec()
}

/// Records that `user_id` signed in from the request's device, on the
/// caller's transaction; true when the device is new to this user.
pub async fn remember(tx: &mut PgConnection, user_id: i64, meta: &RequestMeta) -> Result<bool> {
    // xmax = 0 only on a freshly inserted row, not on one the conflict
    // clause updated.
    let inserted: bool = sqlx::query_scalar(
        "INSERT INTO known_devices (user_id, device_key) VALUES ($1, $2)
         ON CONFLICT (user_id, device_key) DO UPDATE SET last_seen_at = now()
         RETURNING xmax = 0",
    )
    .bind(user_id)
    .bind(device_key(meta))
    .fetch_one(tx)
    .await?;
    Ok(inserted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(ip: &str, ua: &str) -> RequestMeta {
        RequestMeta {
            client_ip: ip.parse().unwrap(),
            user_agent: ua.to_owned(),
            ..Default::default()
        }
    }

    const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
    const FIREFOX_NEXT: &str =
        "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0";
    const PHONE: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0 Mobile Safari/537.36";

    #[test]
    fn same_browser_same_network_is_the_same_device() {
        assert_eq!(
            device_key(&meta("203.0.113.7", FIREFOX)),
            device_key(&meta("203.0.113.99", FIREFOX_NEXT))
        );
        assert_eq!(
            device_key(&meta("2001:db8:1:2::1", FIREFOX)),
            device_key(&meta("2001:db8:1:77::5", FIREFOX))
        );
    }

    #[test]
    fn another_browser_or_network_is_new() {
        let home = device_key(&meta("203.0.113.7", FIREFOX));
        assert_ne!(home, device_key(&meta("203.0.113.7", PHONE)));
        assert_ne!(home, device_key(&meta("198.51.100.7", FIREFOX)));
    }
}
