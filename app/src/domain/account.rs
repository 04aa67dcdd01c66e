use std::fmt;

use serde::{Deserialize, Serialize};

use super::text::char_count;

/// 3–30 characters of `[a-z0-9_]`, stored in lower case so that uniqueness
/// is case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Username(String);

impl Username {
    pub const MIN: usize = 3;
    pub const MAX: usize = 30;

    pub fn parse(raw: &str) -> Result<Self, String> {
        let name = raw.trim().to_lowercase();
        let len = char_count(&name);
        if !(Self::MIN..=Self::MAX).contains(&len) {
            return Err(format!(
                "Username must be {}–{} characters.",
                Self::MIN,
                Self::MAX
            ));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err("Username may contain only letters, digits and _.".to_owned());
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An address of a plausible shape, lower-cased. Deliverability is not
/// checked here: that needs a confirmation mail, not a regex.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Email(String);

impl Email {
    pub const MAX: usize = 254;

    pub fn parse(raw: &str) -> Result<Self, String> {
        let email = raw.trim().to_lowercase();
        let invalid = || Err("Enter a valid email address.".to_owned());
        if email.is_empty() {
            return Err("Email is required.".to_owned());
        }
        if char_count(&email) > Self::MAX {
            return Err(format!("Email must be at most {} characters.", Self::MAX));
        }
        let Some((local, domain)) = email.rsplit_once('@') else {
            return invalid();
        };
        let domain_ok = !domain.starts_with('.')
            && !domain.ends_with('.')
            && domain.contains('.')
            && !domain.contains("..")
            && domain
                .chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '.');
        let local_ok = !local.is_empty()
            && char_count(local) <= 64
            && !local.contains('@')
            && local
                .chars()
                .all(|c| !c.is_whitespace() && !c.is_control() && !"<>()[],;:\"\\".contains(c));
        if !(domain_ok && local_ok) {
            return invalid();
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a person types into the sign-in form: a username or an email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginIdentifier {
    Username(Username),
    Email(Email),
}

impl LoginIdentifier {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.trim().is_empty() {
            return Err("Enter your username or email.".to_owned());
        }
        if raw.contains('@') {
            Email::parse(raw).map(Self::Email)
        } else {
            Username::parse(raw).map(Self::Username)
        }
    }

    /// The key the failed-login limiter counts under.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Username(u) => u.as_str(),
            Self::Email(e) => e.as_str(),
        }
    }
}

/// A candidate password: 8–128 characters. Strength (zxcvbn) is judged on the
/// server only, since its dictionaries would multiply the WASM size.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub const MIN: usize = 8;
    pub const MAX: usize = 128;

    /// Not trimmed: spaces are legitimate password characters.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let len = char_count(raw);
        if len < Self::MIN {
            return Err(format!(
                "Password must be at least {} characters.",
                Self::MIN
            ));
        }
        if len > Self::MAX {
            return Err(format!(
                "Password must be at most {} characters.",
                Self::MAX
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Never print a password, not even in debug logs.
impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(\"[redacted]\")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_normalised_to_lower_case() {
        assert_eq!(Username::parse("  Alice_01 ").unwrap().as_str(), "alice_01");
    }

    #[test]
    fn usernames_reject_bad_shapes() {
        for bad in [
            "ab",
            "a".repeat(31).as_str(),
            "al ice",
            "alice!",
            "ålice",
            "al-ice",
            "",
        ] {
            assert!(Username::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(Username::parse(&"a".repeat(30)).is_ok());
    }

    #[test]
    fn emails() {
        assert_eq!(
            Email::parse(" Bob@Example.COM ").unwrap().as_str(),
            "bob@example.com"
        );
        for bad in [
            "",
            "bob",
            "bob@",
            "@x.com",
            "bob@localhost",
            "bo b@x.com",
            "bob@x..com",
            "a@b@c.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn login_identifier_picks_the_kind() {
        assert!(matches!(
            LoginIdentifier::parse("bob@x.com"),
            Ok(LoginIdentifier::Email(_))
        ));
        assert!(matches!(
            LoginIdentifier::parse("Bob"),
            Ok(LoginIdentifier::Username(_))
        ));
        assert!(LoginIdentifier::parse(" ").is_err());
    }

    #[test]
    fn password_length_counts_characters_and_is_redacted() {
        assert!(Password::parse("1234567").is_err());
        assert!(Password::parse("ééééééé").is_err()); // 7 chars, 14 bytes
        assert!(Password::parse("éééééééé").is_ok());
        assert!(Password::parse(&"x".repeat(129)).is_err());
        let p = Password::parse("correct horse").unwrap();
        assert!(!format!("{p:?}").contains("horse"));
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::properties::{config, near, text};

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn usernames_round_trip_and_fit_the_table(raw in near("[ ]{0,2}[a-zA-Z0-9_]{1,32}[ ]{0,2}")) {
            if let Ok(name) = Username::parse(&raw) {
                prop_assert_eq!(Username::parse(name.as_str()), Ok(name.clone()));
                // users.username's CHECK: lower case, ^[a-z0-9_]{3,30}$.
                let stored = name.as_str();
                prop_assert!((3..=30).contains(&stored.len()));
                prop_assert!(stored.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
            }
        }

        #[test]
        fn emails_round_trip_and_fit_the_table(
            raw in near("[ ]{0,2}[a-zA-Z0-9._%+-]{1,24}@[a-zA-Z0-9-]{1,12}(\\.[a-zA-Z0-9-]{1,8}){1,3}[ ]{0,2}")
        ) {
            if let Ok(email) = Email::parse(&raw) {
                prop_assert_eq!(Email::parse(email.as_str()), Ok(email.clone()));
                // users.email's CHECK: lower case, at most 254 characters.
                let stored = email.as_str();
                prop_assert_eq!(stored.to_lowercase(), stored);
                prop_assert!(stored.chars().count() <= Email::MAX);
                prop_assert!(!stored.chars().any(char::is_control));
            }
        }

        #[test]
        fn login_identifiers_round_trip(raw in near("[a-zA-Z0-9_@.]{1,30}")) {
            if let Ok(identifier) = LoginIdentifier::parse(&raw) {
                prop_assert_eq!(LoginIdentifier::parse(identifier.as_str()), Ok(identifier.clone()));
            }
        }

        #[test]
        fn passwords_round_trip_unchanged(raw in text()) {
            match Password::parse(&raw) {
                Ok(password) => {
                    prop_assert_eq!(password.expose(), raw.as_str(), "never trimmed or changed");
                    prop_assert_eq!(Password::parse(password.expose()), Ok(password.clone()));
                    let shown = format!("{password:?}");
                    prop_assert!(!shown.contains(&raw), "Debug shows the password");
                }
                Err(_) => {
                    let len = raw.chars().count();
                    prop_assert!(!(Password::MIN..=Password::MAX).contains(&len));
                }
            }
        }
    }
}
