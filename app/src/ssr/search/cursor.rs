//! Sealed cursors: a page link the client hands back cannot choose how the
//! search runs.
//!
//! A cursor's position (`domain::Cursor`: the mode, the last row's sort key
//! and user id) travels as `<position>.<seal>`, the seal an HMAC-SHA256
//! (first 128 bits, hex) over the position, the direction it was handed out
//! for (`after` or `before`) and the query, with a key every instance
//! shares (`deployment_secrets`, created by whichever instance needs it
//! first). Opening a cursor is a length check, one MAC and a parse: no
//! SQL, no Redis, so a forged one is refused in microseconds.
//!
//! The seal proves the server wrote the position, not that its mode is
//! still right: the data may have changed since. `search::people`
//! recomputes the mode on every page and starts over when it moved.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::{Cursor, Direction, SearchQuery};
use crate::ssr::infra::secrets::deployment_secret;
use crate::ssr::{AppState, Result};

/// The name of the key in `deployment_secrets`.
const KEY_NAME: &str = "search_cursors";

/// Bytes of the MAC kept: 128 bits are far past guessing over HTTP.
const SEAL_BYTES: usize = 16;

/// The longest sealed text: a position, a dot and the seal.
pub const MAX_LEN: usize = Cursor::MAX_LEN + 1 + SEAL_BYTES * 2;

/// The deployment's key for cursors, read from Postgres on first use.
pub async fn key(state: &AppState) -> Result<CursorSeal> {
    let key = state
        .search
        .key
        .get_or_try_init(|| deployment_secret(state.db.primary(), KEY_NAME))
        .await?;
    Ok(CursorSeal(*key))
}

/// Seals and opens cursors with one key.
#[derive(Clone)]
pub struct CursorSeal(pub [u8; 32]);

impl CursorSeal {
    fn mac(&self, position: &str, direction: Direction, query: &SearchQuery) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("any key length");
        let direction = match direction {
            Direction::After => "after",
            Direction::Before => "before",
        };
        // Lengths first: no two (position, query) pairs read as the same input.
        mac.update(
            format!(
                "folio search cursor|{direction}|{}|{position}|{}|{}",
                position.len(),
                query.as_str().len(),
                query.as_str()
            )
            .as_bytes(),
        );
        mac
    }

    /// The text a page hands out for `cursor`, valid for `query` only.
    pub fn seal(&self, cursor: &Cursor, query: &SearchQuery) -> String {
        let position = cursor.encode();
        let tag = self.mac(&position, cursor.direction, query).finalize();
        format!(
            "{position}.{}",
            hex::encode(&tag.into_bytes()[..SEAL_BYTES])
        )
    }

    /// The cursor `text` holds, if this key sealed it for `query` on the
    /// side `direction`; anything else is `None`. The seal is compared in
    /// constant time, before the position is read.
    pub fn open(&self, text: &str, direction: Direction, query: &SearchQuery) -> Option<Cursor> {
        if text.len() > MAX_LEN || !text.is_ascii() {
            return None;
        }
        let (position, seal) = text.rsplit_once('.')?;
        // One spelling only (lower-case hex): a flipped case bit is a
        // different cursor text, refused like any other change.
        if seal.len() != SEAL_BYTES * 2
            || !seal.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return None;
        }
        let seal = hex::decode(seal).ok()?;
        self.mac(position, direction, query)
            .verify_truncated_left(&seal)
            .ok()?;
        Cursor::parse(position, direction, query).ok()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::SearchMode;

    fn q(s: &str) -> SearchQuery {
        SearchQuery::parse(s).unwrap()
    }

    fn seal() -> CursorSeal {
        CursorSeal([7; 32])
    }

    #[test]
    fn a_cursor_opens_only_for_its_query_direction_and_key() {
        let query = q("ada");
        let cursor = Cursor::ranked(Direction::After, SearchMode::Words, 0.5, 42);
        let text = seal().seal(&cursor, &query);
        assert!(text.len() <= MAX_LEN);
        assert_eq!(seal().open(&text, Direction::After, &query), Some(cursor));
        assert_eq!(seal().open(&text, Direction::Before, &query), None);
        assert_eq!(seal().open(&text, Direction::After, &q("bob")), None);
        assert_eq!(seal().open(&text, Direction::After, &q("Ada")), None);
        assert_eq!(
            CursorSeal([8; 32]).open(&text, Direction::After, &query),
            None
        );
        // The position alone (today's unsealed form), or another mode.
        let (position, mac) = text.rsplit_once('.').unwrap();
        assert_eq!(seal().open(position, Direction::After, &query), None);
        let broad = format!("b{}.{mac}", &position[1..]);
        assert_eq!(seal().open(&broad, Direction::After, &query), None);
        for garbage in ["", ".", "w1.1.", &"a".repeat(500), "w1.1.zz"] {
            assert_eq!(seal().open(garbage, Direction::After, &query), None);
        }
    }

    fn cursor() -> impl Strategy<Value = (Cursor, SearchQuery)> {
        (
            prop_oneof![
                Just(SearchMode::Words),
                Just(SearchMode::Fuzzy),
                Just(SearchMode::Broad),
                Just(SearchMode::FuzzyBroad),
                Just(SearchMode::Recent),
            ],
            0.0f32..100.0,
            any::<i64>(),
            1..i64::MAX,
            any::<bool>(),
            "[a-z ]{1,20}",
        )
            .prop_map(|(mode, score, time, user_id, after, words)| {
                let direction = if after {
                    Direction::After
                } else {
                    Direction::Before
                };
                let (cursor, query) = if mode.by_time() {
                    let query = if mode == SearchMode::Recent {
                        q("")
                    } else {
                        q(&format!("x{words}"))
                    };
                    (
                        Cursor {
                            direction,
                            mode,
                            key: time,
                            user_id,
                        },
                        query,
                    )
                } else {
                    (
                        Cursor::ranked(direction, mode, score, user_id),
                        q(&format!("x{words}")),
                    )
                };
                (cursor, query)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1_000))]

        /// What the server seals, it opens, as it was.
        #[test]
        fn a_sealed_cursor_round_trips((cursor, query) in cursor()) {
            let text = seal().seal(&cursor, &query);
            prop_assert!(text.len() <= MAX_LEN);
            prop_assert_eq!(seal().open(&text, cursor.direction, &query), Some(cursor));
        }

        /// Any one bit flipped anywhere in the text: refused (or, for a
        /// flip that leaves no ASCII text, not even read).
        #[test]
        fn any_bit_flip_is_refused((cursor, query) in cursor(), bit in any::<prop::sample::Index>()) {
            let text = seal().seal(&cursor, &query);
            let mut bytes = text.clone().into_bytes();
            let at = bit.index(bytes.len() * 8);
            bytes[at / 8] ^= 1 << (at % 8);
            let flipped = String::from_utf8_lossy(&bytes).into_owned();
            prop_assert_ne!(&flipped, &text);
            prop_assert_eq!(seal().open(&flipped, cursor.direction, &query), None);
        }

        /// Any text at all: a cursor or `None`, never a panic.
        #[test]
        fn any_text_opens_or_is_refused(raw in any::<String>()) {
            prop_assert_eq!(seal().open(&raw, Direction::After, &q("ada")), None);
        }
    }
}
