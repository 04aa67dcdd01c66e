//! Connection URLs in messages and `{:?}` without their secrets: the
//! password of the user part and any query parameter that holds one
//! (libpq's `?password=`, `sslpassword`, a token), read with the `url`
//! crate rather than by searching for `:` and `@`.
//! A URL listing several hosts (`redis+cluster://u:p@a:1,b:2`, libpq's
//! `h1,h2`) is not one the parser reads; its hosts stand aside while the
//! rest is parsed. What cannot be parsed at all is not shown.

use url::Url;

/// What replaces a secret.
const MASK: &str = "***";
/// Stands in for a list of hosts while the parser reads the rest.
const STAND_IN: &str = "hosts.invalid";

/// `url` with every secret replaced by `***`.
pub fn redact(url: &str) -> String {
    if let Ok(parsed) = Url::parse(url) {
        return masked(parsed);
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return format!("({} characters, not a URL)", url.chars().count());
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (user, hosts) = match authority.rsplit_once('@') {
        Some((user, hosts)) => (format!("{user}@"), hosts),
        None => (String::new(), authority),
    };
    match Url::parse(&format!("{scheme}://{user}{STAND_IN}{tail}")) {
        Ok(parsed) => masked(parsed).replacen(STAND_IN, hosts, 1),
        Err(_) => format!("{scheme}://(an address that does not parse)"),
    }
}

fn masked(mut url: Url) -> String {
    if url.password().is_some() {
        let _ = url.set_password(Some(MASK));
    }
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(name, value)| {
                let value = if is_secret(&name) {
                    MASK.to_owned()
                } else {
                    value.into_owned()
                };
                (name.into_owned(), value)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.set_fragment(None);
    url.to_string()
}

/// A query parameter whose value is a credential.
fn is_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["pass", "secret", "token", "key", "auth"]
        .iter()
        .any(|word| name.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_things_are_stays_readable() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(
            redact("postgres://h/db?sslmode=require&password=x"),
            "postgres://h/db?sslmode=require&password=***"
        );
        assert_eq!(
            redact("redis+cluster://u:secret@a:1,b:2"),
            "redis+cluster://u:***@a:1,b:2"
        );
    }
}
