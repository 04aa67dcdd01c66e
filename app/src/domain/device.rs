//! What a person recognises of a browser: "Chrome on Android".
//!
//! Shared by the session list (in the browser) and sign-in (on the server,
//! where it names the device of a new sign-in). A dozen substrings cover the
//! browsers people use; a full user-agent database (woothee, uap-core) would
//! add a dependency and a regex engine to the WASM for a label that decides
//! nothing about security.

/// The browser family and operating system a user agent names, without
/// versions (a browser update is not a new device).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub browser: &'static str,
    pub os: Option<&'static str>,
}

impl Device {
    pub fn from_user_agent(user_agent: &str) -> Self {
        // Order matters: Edge and Opera also say "Chrome/", Chrome also says
        // "Safari/", Android also says "Linux", iOS also says "Mac OS X".
        const BROWSERS: &[(&str, &str)] = &[
            ("Edg/", "Edge"),
            ("OPR/", "Opera"),
            ("Firefox/", "Firefox"),
            ("Chrome/", "Chrome"),
            ("CriOS/", "Chrome"),
            ("Safari/", "Safari"),
            ("curl/", "curl"),
        ];
        const SYSTEMS: &[(&str, &str)] = &[
            ("Windows", "Windows"),
            ("Android", "Android"),
            ("iPhone", "iOS"),
            ("iPad", "iPadOS"),
            ("Mac OS X", "macOS"),
            ("CrOS", "ChromeOS"),
            ("Linux", "Linux"),
        ];
        let find = |table: &[(&str, &'static str)]| {
            table
                .iter()
                .find(|(marker, _)| user_agent.contains(marker))
                .map(|(_, name)| *name)
        };
        Self {
            browser: find(BROWSERS).unwrap_or("Unknown browser"),
            os: find(SYSTEMS),
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.os {
            Some(os) => write!(f, "{} on {os}", self.browser),
            None => f.write_str(self.browser),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(ua: &str) -> String {
        Device::from_user_agent(ua).to_string()
    }

    #[test]
    fn names_the_common_browsers() {
        assert_eq!(
            name("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/140.0.0.0 Safari/537.36"),
            "Chrome on Linux"
        );
        assert_eq!(
            name("Mozilla/5.0 (Linux; Android 14; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0.0.0 Mobile Safari/537.36"),
            "Chrome on Android"
        );
        assert_eq!(
            name("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"),
            "Safari on iOS"
        );
        assert_eq!(
            name("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36 Edg/120.0"),
            "Edge on Windows"
        );
        assert_eq!(
            name("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
            "Firefox on Linux"
        );
        assert_eq!(name(""), "Unknown browser");
    }

    #[test]
    fn a_browser_update_is_the_same_device() {
        assert_eq!(
            Device::from_user_agent(
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
            ),
            Device::from_user_agent(
                "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0"
            ),
        );
    }
}
