//! The secret of a link Folio mails (a password reset, an address to
//! verify): 256 random bits, written as 64 lower-case hex digits.
//!
//! Parsing only says whether a string has the shape of one; whether it is
//! a live token is the server's question (`ssr::accounts::tokens`), which
//! stores only its SHA-256. A malformed one (a link cut short by a mail
//! client) is told apart from one Folio never issued, so the page can say
//! "copy the whole link" rather than "this link is not valid".

use serde::{Deserialize, Serialize};

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkToken(String);

impl LinkToken {
    /// Hex digits of a 256-bit token.
    pub const LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.len() == Self::LEN && raw.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(raw.to_owned()))
        } else {
            Err("This link is incomplete or damaged. Open it again from the mail, or copy the whole link into the address bar.".to_owned())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Redacted: a token in a log line would be a working link for whoever
/// reads the log.
impl std::fmt::Debug for LinkToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkToken(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_64_lower_case_hex_digits_only() {
        let good = "0123456789abcdef".repeat(4);
        assert_eq!(LinkToken::parse(&good).unwrap().as_str(), good);
        assert_eq!(
            LinkToken::parse(&format!(" {good}\n")).unwrap().as_str(),
            good
        );
        for bad in [
            "",
            &good[..63],
            &format!("{good}0"),
            &good.to_uppercase(),
            &format!("{}g", &good[..63]),
            &format!("{}é", &good[..62]),
        ] {
            assert!(LinkToken::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn debug_does_not_show_the_token() {
        let token = LinkToken::parse(&"a".repeat(64)).unwrap();
        assert!(!format!("{token:?}").contains("aaaa"));
    }

    proptest! {
        #![proptest_config(crate::domain::properties::config())]
        #[test]
        fn never_panics_and_what_it_accepts_parses_again(raw in crate::domain::properties::near("[0-9a-f]{64}")) {
            if let Ok(token) = LinkToken::parse(&raw) {
                prop_assert_eq!(LinkToken::parse(token.as_str()).unwrap(), token);
            }
        }
    }
}
