use serde::{Deserialize, Serialize};

use super::text::{char_count, clean};
use crate::error::FieldErrors;

macro_rules! text_newtype {
    ($(#[$doc:meta])* $name:ident, $label:literal, $min:expr, $max:expr, $multiline:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        pub struct $name(String);

        impl $name {
            pub const MAX: usize = $max;

            pub fn parse(raw: &str) -> Result<Self, String> {
                clean(raw, $label, $min, $max, $multiline).map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

text_newtype!(
    /// 1–100 characters after trimming, one line.
    DisplayName, "Display name", 1, 100, false
);
text_newtype!(
    /// Up to 500 characters, may be empty, may have line breaks.
    Bio, "Bio", 0, 500, true
);
text_newtype!(
    /// Free text such as a city; optional.
    Location, "Location", 1, 100, false
);

fn parse_url(raw: &str, label: &str, schemes: &[&str], max: usize) -> Result<String, String> {
    let url = raw.trim();
    if char_count(url) > max {
        return Err(format!("{label} must be at most {max} characters."));
    }
    let Some(rest) = schemes.iter().find_map(|scheme| url.strip_prefix(scheme)) else {
        return Err(format!("{label} must start with {}.", schemes.join(" or ")));
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_ok = !host.is_empty()
        && !host.contains('@') // no credentials in URLs we display
        && host
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '.' | ':' | '[' | ']'));
    if !host_ok {
        return Err(format!("{label} must be a valid web address."));
    }
    if url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '<' | '>'))
    {
        return Err(format!("{label} must not contain spaces or quotes."));
    }
    Ok(url.to_owned())
}

/// An `https` image address, at most 2048 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AvatarUrl(String);

impl AvatarUrl {
    pub const MAX: usize = 2048;

    pub fn parse(raw: &str) -> Result<Self, String> {
        parse_url(raw, "Avatar URL", &["https://"], Self::MAX).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A personal web site, `http` or `https`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Website(String);

impl Website {
    pub const MAX: usize = 2048;

    pub fn parse(raw: &str) -> Result<Self, String> {
        parse_url(raw, "Website", &["https://", "http://"], Self::MAX).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The profile form as it arrives: raw strings, one per field. The field names
/// are the form's input names and the keys of [`FieldErrors`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileForm {
    pub display_name: String,
    pub bio: String,
    pub avatar_url: String,
    pub location: String,
    pub website: String,
}

/// A validated profile edit. Empty optional fields mean "none".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileUpdate {
    pub display_name: DisplayName,
    pub bio: Bio,
    pub avatar_url: Option<AvatarUrl>,
    pub location: Option<Location>,
    pub website: Option<Website>,
}

fn optional<T>(raw: &str, parse: impl Fn(&str) -> Result<T, String>) -> Result<Option<T>, String> {
    if raw.trim().is_empty() {
        Ok(None)
    } else {
        parse(raw).map(Some)
    }
}

impl ProfileUpdate {
    /// Parses every field and reports all problems at once, per field.
    pub fn parse(form: &ProfileForm) -> Result<Self, FieldErrors> {
        let mut errors = FieldErrors::new();
        let display_name = errors.check("display_name", DisplayName::parse(&form.display_name));
        let bio = errors.check("bio", Bio::parse(&form.bio));
        let avatar_url = errors.check("avatar_url", optional(&form.avatar_url, AvatarUrl::parse));
        let location = errors.check("location", optional(&form.location, Location::parse));
        let website = errors.check("website", optional(&form.website, Website::parse));
        match (display_name, bio, avatar_url, location, website) {
            (Some(display_name), Some(bio), Some(avatar_url), Some(location), Some(website)) => {
                Ok(Self {
                    display_name,
                    bio,
                    avatar_url,
                    location,
                    website,
                })
            }
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form() -> ProfileForm {
        ProfileForm {
            display_name: "Ada Lovelace".into(),
            bio: "Analyst.".into(),
            ..Default::default()
        }
    }

    #[test]
    fn display_name_is_trimmed_and_bounded_in_characters() {
        assert_eq!(DisplayName::parse("  Zoë  ").unwrap().as_str(), "Zoë");
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse(&"é".repeat(100)).is_ok());
        assert!(DisplayName::parse(&"é".repeat(101)).is_err());
        assert!(DisplayName::parse("two\nlines").is_err());
    }

    #[test]
    fn bio_allows_paragraphs_and_500_characters() {
        assert!(Bio::parse("").is_ok());
        assert!(Bio::parse("one\n\ntwo").is_ok());
        assert!(Bio::parse(&"日".repeat(500)).is_ok());
        assert!(Bio::parse(&"日".repeat(501)).is_err());
        assert!(Bio::parse("tab\u{0000}null").is_err());
    }

    #[test]
    fn avatar_must_be_https() {
        assert!(AvatarUrl::parse("https://img.example.com/a.png").is_ok());
        assert!(AvatarUrl::parse("http://img.example.com/a.png").is_err());
        assert!(AvatarUrl::parse("javascript:alert(1)").is_err());
        assert!(AvatarUrl::parse("https://").is_err());
        assert!(AvatarUrl::parse("https://user:pw@example.com/").is_err());
        assert!(AvatarUrl::parse(&format!("https://x.com/{}", "a".repeat(2040))).is_err());
        assert!(Website::parse("http://example.com").is_ok());
        assert!(Website::parse("https://exa mple.com").is_err());
    }

    #[test]
    fn profile_update_reports_every_bad_field() {
        let mut bad = form();
        bad.display_name = " ".into();
        bad.bio = "x".repeat(501);
        bad.avatar_url = "ftp://x".into();
        let errors = ProfileUpdate::parse(&bad).unwrap_err();
        assert!(errors.get("display_name").is_some());
        assert!(errors.get("bio").is_some());
        assert!(errors.get("avatar_url").is_some());
        assert!(errors.get("website").is_none());
    }

    #[test]
    fn empty_optional_fields_are_none() {
        let update = ProfileUpdate::parse(&form()).unwrap();
        assert_eq!(update.avatar_url, None);
        assert_eq!(update.location, None);
        assert_eq!(update.display_name.as_str(), "Ada Lovelace");
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::properties::{config, near, text};

    /// The form that would save `update` again.
    fn form_of(update: &ProfileUpdate) -> ProfileForm {
        ProfileForm {
            display_name: update.display_name.as_str().to_owned(),
            bio: update.bio.as_str().to_owned(),
            avatar_url: update
                .avatar_url
                .as_ref()
                .map(|u| u.as_str().to_owned())
                .unwrap_or_default(),
            location: update
                .location
                .as_ref()
                .map(|l| l.as_str().to_owned())
                .unwrap_or_default(),
            website: update
                .website
                .as_ref()
                .map(|w| w.as_str().to_owned())
                .unwrap_or_default(),
        }
    }

    const URL: &str =
        "[ ]{0,2}(https://|http://|HTTPS://|ftp://|)[a-zA-Z0-9.:@\\[\\]-]{0,24}([/?#][ -~]{0,40})?";

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn free_text_fields_round_trip_and_fit_the_table(raw in near("[ ]{0,3}[a-zA-Z0-9 .,!?'\\n\\r-]{0,120}[ ]{0,3}")) {
            if let Ok(name) = DisplayName::parse(&raw) {
                prop_assert_eq!(DisplayName::parse(name.as_str()), Ok(name.clone()));
                prop_assert!((1..=DisplayName::MAX).contains(&name.as_str().chars().count()));
                prop_assert!(!name.as_str().contains('\n'));
            }
            if let Ok(bio) = Bio::parse(&raw) {
                prop_assert_eq!(Bio::parse(bio.as_str()), Ok(bio.clone()));
                // profiles.bio's CHECK: at most 500 characters.
                prop_assert!(bio.as_str().chars().count() <= Bio::MAX);
                prop_assert!(!bio.as_str().contains('\r'));
            }
            if let Ok(location) = Location::parse(&raw) {
                prop_assert_eq!(Location::parse(location.as_str()), Ok(location.clone()));
            }
        }

        #[test]
        fn web_addresses_round_trip_and_fit_the_table(raw in near(URL)) {
            if let Ok(avatar) = AvatarUrl::parse(&raw) {
                prop_assert_eq!(AvatarUrl::parse(avatar.as_str()), Ok(avatar.clone()));
                // profiles.avatar_url's CHECK: https, at most 2048 characters.
                prop_assert!(avatar.as_str().starts_with("https://"));
                prop_assert!(avatar.as_str().chars().count() <= AvatarUrl::MAX);
            }
            if let Ok(website) = Website::parse(&raw) {
                prop_assert_eq!(Website::parse(website.as_str()), Ok(website.clone()));
                prop_assert!(!website.as_str().chars().any(|c| c.is_whitespace() || c == '"' || c == '<'));
            }
        }

        #[test]
        fn profile_updates_round_trip(
            display_name in near("[a-zA-Z ]{0,20}"),
            bio in text(),
            avatar_url in near(URL),
            location in near("[a-zA-Z ]{0,12}"),
            website in near(URL),
        ) {
            let form = ProfileForm { display_name, bio, avatar_url, location, website };
            match ProfileUpdate::parse(&form) {
                Ok(update) => prop_assert_eq!(ProfileUpdate::parse(&form_of(&update)), Ok(update.clone())),
                Err(errors) => {
                    prop_assert!(!errors.is_empty());
                    for field in errors.0.keys() {
                        prop_assert!(
                            ["display_name", "bio", "avatar_url", "location", "website"].contains(&field.as_str()),
                            "an error under a field the form has: {}", field
                        );
                    }
                }
            }
        }
    }
}
