//! Domain types: parsed once at the edge, trusted everywhere after.
//!
//! Each type has a private field and a fallible `parse`. The same code runs in
//! the browser (instant feedback while typing) and on the server (the
//! authority: every server function parses its input again). Nothing here may
//! depend on the `ssr` feature.

mod account;
mod avatar;
mod device;
mod profile;
mod search;
mod text;
mod token;

pub use account::{Email, LoginIdentifier, Password, Username};
pub use avatar::{
    parse_object_name, AvatarKey, AvatarRefusal, AVATAR_SIZES, AVATAR_UPLOAD_PATH,
    MAX_AVATAR_BYTES, MAX_AVATAR_SIDE,
};
pub use device::Device;
pub use profile::{AvatarUrl, Bio, DisplayName, Location, ProfileForm, ProfileUpdate, Website};
pub use search::{highlight, Cursor, Direction, SearchMode, SearchQuery};
pub use text::char_count;
pub use token::LinkToken;

/// What the parsers' property tests share: one configuration and the
/// inputs. Every parser must never panic, whatever it is given, and what
/// it accepts must parse again to the same value (so a value read back
/// from the database, or sent back by a form, is still itself).
#[cfg(test)]
pub(crate) mod properties {
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::select;
    use proptest::test_runner::{Config, RngSeed};

    /// A fixed seed: a failure is reproduced by running the test again. No
    /// regression files written into the source tree.
    pub fn config() -> Config {
        Config {
            cases: 2000,
            rng_seed: RngSeed::Fixed(0x00f0_110d_a7a5),
            failure_persistence: None,
            ..Config::default()
        }
    }

    /// Characters that have broken text handling somewhere: controls, line
    /// and paragraph separators, bidirectional overrides, zero-width and
    /// combining marks, letters whose case mapping changes their length,
    /// characters outside the BMP, and a form's own syntax.
    const TRICKY: &[char] = &[
        '\0',
        '\u{1}',
        '\t',
        '\n',
        '\r',
        '\u{b}',
        '\u{c}',
        '\u{1b}',
        '\u{7f}',
        '\u{85}',
        '\u{a0}',
        '\u{2028}',
        '\u{2029}',
        '\u{202a}',
        '\u{202e}',
        '\u{2066}',
        '\u{2069}',
        '\u{200b}',
        '\u{200d}',
        '\u{200f}',
        '\u{feff}',
        '\u{fffd}',
        '\u{10ffff}',
        '\u{301}',
        '\u{130}',
        '\u{1e9e}',
        '\u{1c5}',
        '\u{3a3}',
        '\u{ff21}',
        '\u{212a}',
        '\u{1f469}',
        'ß',
        'İ',
        'K',
        '@',
        '.',
        '-',
        '_',
        ':',
        '/',
        '[',
        ']',
        '%',
        '&',
        '=',
        '"',
        '<',
        '>',
        ' ',
        'a',
        'Z',
        '0',
    ];

    /// Anything: arbitrary Unicode, tricky characters mixed with ordinary
    /// ones, and long runs for the length limits.
    pub fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => any::<String>(),
            4 => vec(prop_oneof![3 => select(TRICKY), 1 => any::<char>()], 0..60)
                .prop_map(String::from_iter),
            1 => (select(TRICKY), 0..3000usize).prop_map(|(c, n)| c.to_string().repeat(n)),
        ]
    }

    /// Mostly the shape a parser accepts, so that the round trip is tested
    /// on many accepted values, with the tricky characters in between.
    pub fn near(shape: &'static str) -> impl Strategy<Value = String> {
        prop_oneof![
            3 => shape,
            2 => (shape, vec(select(TRICKY), 0..4), any::<prop::sample::Index>())
                .prop_map(|(text, extra, at)| {
                    let mut chars: Vec<char> = text.chars().collect();
                    let at = at.index(chars.len() + 1);
                    chars.splice(at..at, extra);
                    chars.into_iter().collect()
                }),
            1 => text(),
        ]
    }
}
