//! Rules shared by every free-text field: trim, count characters (not
//! bytes), refuse control characters.

/// Length as the user sees it: Unicode scalar values, not UTF-8 bytes.
pub fn char_count(s: &str) -> usize {
    s.chars().count()
}

/// Trims, normalises line endings and checks length and characters.
/// `multiline` allows `\n` (a bio has paragraphs; a name does not).
pub(crate) fn clean(
    raw: &str,
    label: &str,
    min: usize,
    max: usize,
    multiline: bool,
) -> Result<String, String> {
    let normalised = raw.replace("\r\n", "\n");
    let trimmed = normalised.trim();
    let len = char_count(trimmed);
    if len < min {
        return Err(if min == 1 {
            format!("{label} is required.")
        } else {
            format!("{label} must be at least {min} characters.")
        });
    }
    if len > max {
        return Err(format!(
            "{label} must be at most {max} characters (now {len})."
        ));
    }
    let bad = trimmed
        .chars()
        .any(|c| (c.is_control() && !(multiline && c == '\n')) || is_invisible_format(c));
    if bad {
        return Err(format!("{label} contains characters that are not allowed."));
    }
    Ok(trimmed.to_owned())
}

/// Bidirectional overrides and similar formatting characters let a name
/// display as something else than what it is; refuse them.
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200B}' | '\u{FEFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_characters_not_bytes() {
        assert_eq!(char_count("héllo"), 5);
        assert_eq!(char_count("日本語"), 3);
        assert_eq!(char_count("👩‍💻"), 3); // ZWJ sequence: three scalar values
    }

    #[test]
    fn trims_and_rejects_control_characters() {
        assert_eq!(clean("  hi  ", "Name", 1, 5, false).unwrap(), "hi");
        assert!(clean("a\u{0007}b", "Name", 1, 5, false).is_err());
        assert!(clean("a\nb", "Name", 1, 5, false).is_err());
        assert_eq!(clean("a\r\nb", "Bio", 0, 5, true).unwrap(), "a\nb");
        assert!(clean("a\u{202E}b", "Name", 1, 5, false).is_err());
    }

    #[test]
    fn length_limits_are_in_characters() {
        let five_accented = "ééééé"; // 10 bytes
        assert!(clean(five_accented, "Name", 1, 5, false).is_ok());
        assert!(clean("éééééé", "Name", 1, 5, false).is_err());
        assert!(clean("   ", "Name", 1, 5, false).is_err());
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::properties::{config, text};

    proptest! {
        #![proptest_config(config())]

        /// What `clean` keeps is clean: trimmed, within bounds, free of
        /// controls (but `\n` where allowed) and of invisible formatting,
        /// and cleaning it again changes nothing.
        #[test]
        fn cleaning_is_idempotent(raw in text(), multiline in any::<bool>(), min in 0usize..3) {
            if let Ok(kept) = clean(&raw, "Field", min, 200, multiline) {
                prop_assert_eq!(clean(&kept, "Field", min, 200, multiline), Ok(kept.clone()));
                prop_assert_eq!(kept.trim(), kept.as_str());
                prop_assert!((min..=200).contains(&char_count(&kept)));
                prop_assert!(!kept.chars().any(|c| (c.is_control() && c != '\n') || is_invisible_format(c)));
                prop_assert!(multiline || !kept.contains('\n'));
            }
        }
    }
}
