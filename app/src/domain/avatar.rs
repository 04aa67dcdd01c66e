//! Avatars as the browser and the server both see them: the sizes the pages
//! use, the content-addressed key that names a stored avatar, the name of
//! each stored object, and why an upload was refused.
//!
//! The server is the authority on every check (it reads the real bytes);
//! the browser uses the same limits and messages to refuse a file before
//! sending it.

use serde::{Deserialize, Serialize};

/// The square sizes, in pixels, every avatar is stored at: 64 for lists,
/// 128 for the profile page (96 CSS px at 1×, and the 2× screens' srcset
/// choice below 128), 256 for 2× screens. Largest last.
pub const AVATAR_SIZES: [u32; 3] = [64, 128, 256];

/// The largest upload accepted, in bytes: a phone's 12 MP JPEG is 3 to 5 MB.
pub const MAX_AVATAR_BYTES: usize = 8 * 1024 * 1024;

/// The largest width or height decoded, in pixels: a 50 MP phone photo is
/// 8160 × 6120. A header claiming more is refused before any pixel is
/// allocated.
pub const MAX_AVATAR_SIDE: u32 = 8192;

/// Where the upload form posts (a multipart form, not a server function).
pub const AVATAR_UPLOAD_PATH: &str = "/settings/profile/avatar";

/// The SHA-256 (lower-case hex) of an avatar's largest stored encoding: the
/// same picture uploaded twice has the same key and is stored once.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AvatarKey(String);

impl AvatarKey {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.len() == 64
            && raw
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(Self(raw.to_owned()))
        } else {
            Err("An avatar key is 64 lower-case hex digits.".to_owned())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The stored object of one size: `<key>-<size>.webp`.
    pub fn object_name(&self, size: u32) -> String {
        format!("{}-{size}.webp", self.0)
    }

    /// Where the browser fetches one size.
    pub fn url(&self, size: u32) -> String {
        format!("/media/{}", self.object_name(size))
    }
}

/// A stored object's name, as a `/media/` URL names it: a key and one of
/// [`AVATAR_SIZES`]. Anything else names nothing.
pub fn parse_object_name(name: &str) -> Option<(AvatarKey, u32)> {
    let stem = name.strip_suffix(".webp")?;
    let (key, digits) = stem.split_once('-')?;
    // One spelling per object: "064" or "+64" name nothing.
    let size = AVATAR_SIZES
        .into_iter()
        .find(|size| size.to_string() == digits)?;
    Some((AvatarKey::parse(key).ok()?, size))
}

/// Why an upload was not taken. Each has a short code (the no-JavaScript
/// form's redirect carries it in the URL) and the message shown next to the
/// file field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AvatarRefusal {
    /// No file, or a file of zero bytes.
    Empty,
    /// More than [`MAX_AVATAR_BYTES`].
    TooLarge,
    /// Not an image Folio can read: another kind of file, or a damaged or
    /// truncated image.
    NotAnImage,
    /// An iPhone's HEIC/HEIF photo: recognised, not decoded.
    Heic,
    /// An image in a format Folio does not take (GIF, SVG, BMP, TIFF…).
    Unsupported,
    /// Wider or taller than [`MAX_AVATAR_SIDE`], or more pixels than the
    /// decoder may allocate memory for.
    TooManyPixels,
}

impl AvatarRefusal {
    pub const ALL: [AvatarRefusal; 6] = [
        AvatarRefusal::Empty,
        AvatarRefusal::TooLarge,
        AvatarRefusal::NotAnImage,
        AvatarRefusal::Heic,
        AvatarRefusal::Unsupported,
        AvatarRefusal::TooManyPixels,
    ];

    pub fn code(self) -> &'static str {
        match self {
            AvatarRefusal::Empty => "empty",
            AvatarRefusal::TooLarge => "too_large",
            AvatarRefusal::NotAnImage => "not_an_image",
            AvatarRefusal::Heic => "heic",
            AvatarRefusal::Unsupported => "unsupported",
            AvatarRefusal::TooManyPixels => "too_many_pixels",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }

    pub fn message(self) -> &'static str {
        match self {
            AvatarRefusal::Empty => "Choose an image file to upload.",
            AvatarRefusal::TooLarge => "This file is larger than 8 MB. Choose a smaller image.",
            AvatarRefusal::NotAnImage => {
                "This file is not an image Folio can read, or it is damaged."
            }
            AvatarRefusal::Heic => {
                "HEIC photos are not supported yet. Choose a JPEG, PNG or WebP image \
                 (on an iPhone: Settings, Camera, Formats, Most Compatible)."
            }
            AvatarRefusal::Unsupported => "Only JPEG, PNG and WebP images are accepted.",
            AvatarRefusal::TooManyPixels => {
                "This image is too large: at most 8192 × 8192 pixels (fewer with transparency or 16-bit colour)."
            },
        }
    }
}

impl std::fmt::Display for AvatarRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn keys_are_sha256_hex_only() {
        assert!(AvatarKey::parse(KEY).is_ok());
        assert!(AvatarKey::parse(&KEY.to_uppercase()).is_err());
        assert!(AvatarKey::parse(&KEY[1..]).is_err());
        assert!(AvatarKey::parse("../../etc/passwd").is_err());
    }

    #[test]
    fn object_names_round_trip_and_nothing_else_parses() {
        let key = AvatarKey::parse(KEY).unwrap();
        for size in AVATAR_SIZES {
            assert_eq!(
                parse_object_name(&key.object_name(size)),
                Some((key.clone(), size))
            );
        }
        for bad in [
            format!("{KEY}-65.webp"),
            format!("{KEY}-064.webp"),
            format!("{KEY}-64.png"),
            format!("{KEY}.webp"),
            format!("{KEY}-+64.webp"),
            "x-64.webp".to_owned(),
        ] {
            assert_eq!(parse_object_name(&bad), None, "{bad}");
        }
    }

    #[test]
    fn refusal_codes_round_trip() {
        for refusal in AvatarRefusal::ALL {
            assert_eq!(AvatarRefusal::from_code(refusal.code()), Some(refusal));
        }
        assert_eq!(AvatarRefusal::from_code("nope"), None);
    }
}
