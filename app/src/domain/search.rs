//! People search's input: the query as typed, the page cursor a results
//! page hands back, and which words of a result to highlight. Shared with
//! the browser, which checks a query before sending it and highlights the
//! results it draws.

use std::fmt;

/// A search as typed: trimmed, at most [`SearchQuery::MAX`] characters, no
/// control or invisible formatting characters. Empty means "recently
/// updated profiles".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SearchQuery(String);

impl SearchQuery {
    pub const MAX: usize = 100;

    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim();
        let len = trimmed.chars().count();
        if len > Self::MAX {
            return Err(format!(
                "A search is at most {} characters (now {len}).",
                Self::MAX
            ));
        }
        // A tab or line break typed or pasted into a search box has no
        // meaning for the search; refused rather than silently changed, like
        // every other text field.
        if trimmed
            .chars()
            .any(|c| c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200B}' | '\u{FEFF}'))
        {
            return Err("A search cannot contain control characters.".to_owned());
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the last word is still being typed, so matched as a prefix:
    /// always, except after a closing quote (a finished phrase).
    pub fn last_word_is_prefix(&self) -> bool {
        !self.0.ends_with('"')
    }

    /// Whether the query uses the search syntax ("a phrase", -excluded):
    /// it asks for exactly that, so no typo of it is looked for.
    pub fn is_exact(&self) -> bool {
        self.0.contains('"')
            || self
                .0
                .split_whitespace()
                .any(|w| w.starts_with('-') && w.len() > 1)
    }

    /// The query as a username would be stored (usernames are lower case):
    /// a profile whose username is exactly this ranks first.
    pub fn as_username(&self) -> String {
        self.0.trim_start_matches('@').to_lowercase()
    }

    /// The words to highlight in results: lower case, without the
    /// operators of the query syntax (quotes, `or`, excluded `-words`).
    pub fn terms(&self) -> Vec<String> {
        self.0
            .split_whitespace()
            .filter(|w| !w.starts_with('-') && !w.eq_ignore_ascii_case("or"))
            .flat_map(words)
            .map(str::to_lowercase)
            .filter(|w| !w.is_empty())
            .collect()
    }
}

impl fmt::Display for SearchQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The runs of letters and digits of `text`.
fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
}

/// How a result list is ordered, which decides what a cursor holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchMode {
    /// Full-text matches, best score first.
    Words,
    /// No word matched: names similar to the query (typos), most similar first.
    Fuzzy,
    /// Too many matches to rank (a short prefix at a million profiles):
    /// the matches, most recently updated first, after an exact username.
    Broad,
    /// A typo whose corrections match too many to rank (a misspelt common
    /// surname): the corrections' matches, most recently updated first.
    FuzzyBroad,
    /// The empty query: most recently updated first.
    Recent,
}

impl SearchMode {
    /// Whether rows are ordered by update time (else by score).
    pub fn by_time(self) -> bool {
        matches!(
            self,
            SearchMode::Recent | SearchMode::Broad | SearchMode::FuzzyBroad
        )
    }

    /// Whether the query's words were replaced by their corrections.
    pub fn corrected(self) -> bool {
        matches!(self, SearchMode::Fuzzy | SearchMode::FuzzyBroad)
    }
}

/// Which side of the cursor's row a page lies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    After,
    Before,
}

/// A position in a result list: the sort key of a row (its score or update
/// time, then its user id, which makes every key unique). Keyset paging: a
/// page is "the next 20 rows after this key", so rows inserted meanwhile
/// can neither repeat a row nor push one off the list.
///
/// The text form ([`Cursor::encode`]) is only the position: the server seals
/// it with a key of its own, with the direction and the query
/// (`ssr::search::cursor`), and opens only what it sealed. The browser
/// never reads a cursor, it hands it back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cursor {
    pub direction: Direction,
    pub mode: SearchMode,
    /// Ranked modes: the score's bits (an `f32`); modes ordered by time
    /// ([`SearchMode::by_time`]): the update time, microseconds since the
    /// Unix epoch.
    pub key: i64,
    pub user_id: i64,
}

impl Cursor {
    /// The longest text [`Cursor::parse`] reads: a mode letter, two 16-digit
    /// numbers and a dot.
    pub const MAX_LEN: usize = 34;

    /// The score of a `Words` or `Fuzzy` cursor.
    pub fn score(&self) -> f32 {
        f32::from_bits(self.key as u32)
    }

    pub fn ranked(direction: Direction, mode: SearchMode, score: f32, user_id: i64) -> Self {
        Self {
            direction,
            mode,
            key: i64::from(score.to_bits()),
            user_id,
        }
    }

    /// The position as text (`w3f1b.2a`): the mode, the key and the user id.
    /// The direction is not in it: it is the parameter the text comes back
    /// in (`after` or `before`), and the seal covers it.
    pub fn encode(&self) -> String {
        let mode = match self.mode {
            SearchMode::Words => 'w',
            SearchMode::Fuzzy => 'f',
            SearchMode::Broad => 'b',
            SearchMode::FuzzyBroad => 'g',
            SearchMode::Recent => 'r',
        };
        format!("{mode}{:x}.{:x}", self.key, self.user_id)
    }

    /// Reads a position back, on the side `direction`, for `query` (the
    /// empty query pages by recency, any other never does). Anything
    /// [`Cursor::encode`] could not have written is refused; what it could
    /// have written is only trusted once the seal around it verified.
    pub fn parse(text: &str, direction: Direction, query: &SearchQuery) -> Result<Self, String> {
        const INVALID: &str = "This page of results has expired. Start the search again.";
        let invalid = || INVALID.to_owned();
        if text.len() > Self::MAX_LEN || !text.is_ascii() {
            return Err(invalid());
        }
        let mut chars = text.chars();
        let mode = match chars.next() {
            Some('w') => SearchMode::Words,
            Some('f') => SearchMode::Fuzzy,
            Some('b') => SearchMode::Broad,
            Some('g') => SearchMode::FuzzyBroad,
            Some('r') => SearchMode::Recent,
            _ => return Err(invalid()),
        };
        let mut parts = chars.as_str().split('.');
        let (Some(key), Some(user_id), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(invalid());
        };
        let hex = |s: &str| {
            if s.is_empty()
                || s.len() > 16
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            {
                None
            } else {
                u64::from_str_radix(s, 16).ok()
            }
        };
        let (Some(key), Some(user_id)) = (hex(key), hex(user_id)) else {
            return Err(invalid());
        };
        let key = key as i64;
        let user_id = i64::try_from(user_id).map_err(|_| invalid())?;
        let fits_query = (mode == SearchMode::Recent) == query.is_empty();
        let score_ok =
            mode.by_time() || u32::try_from(key).is_ok_and(|bits| f32::from_bits(bits).is_finite());
        if user_id <= 0 || !fits_query || !score_ok {
            return Err(invalid());
        }
        Ok(Self {
            direction,
            mode,
            key,
            user_id,
        })
    }
}

/// `text` cut into pieces, each marked whether it is a word starting with
/// one of `terms` (lower case, from [`SearchQuery::terms`]). The pieces,
/// concatenated, are `text`: the caller renders them as text nodes (a
/// `<mark>` around the matches), so nothing in `text` is ever markup.
pub fn highlight<'a>(text: &'a str, terms: &[String]) -> Vec<(&'a str, bool)> {
    let mut pieces: Vec<(&'a str, bool)> = Vec::new();
    let mut push = |piece: &'a str, hit: bool| {
        if piece.is_empty() {
            return;
        }
        match pieces.last_mut() {
            // Neighbours of the same kind merge: fewer nodes to render.
            Some((last, last_hit)) if *last_hit == hit => {
                let start = last.as_ptr() as usize - text.as_ptr() as usize;
                *last = &text[start..start + last.len() + piece.len()];
            }
            _ => pieces.push((piece, hit)),
        }
    };
    let mut rest_start = 0;
    let mut word_start: Option<usize> = None;
    let boundaries = text
        .char_indices()
        .map(|(i, c)| (i, c.is_alphanumeric()))
        .chain(std::iter::once((text.len(), false)));
    for (i, alnum) in boundaries {
        match (word_start, alnum) {
            (None, true) => word_start = Some(i),
            (Some(start), false) => {
                let word = &text[start..i];
                let lower = word.to_lowercase();
                if terms.iter().any(|t| lower.starts_with(t.as_str())) {
                    push(&text[rest_start..start], false);
                    push(word, true);
                    rest_start = i;
                }
                word_start = None;
            }
            _ => {}
        }
    }
    push(&text[rest_start..], false);
    pieces
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn q(s: &str) -> SearchQuery {
        SearchQuery::parse(s).unwrap()
    }

    #[test]
    fn queries_are_trimmed_bounded_and_free_of_control_characters() {
        assert_eq!(q("  ada  ").as_str(), "ada");
        assert!(q("   ").is_empty());
        assert!(SearchQuery::parse(&"a".repeat(100)).is_ok());
        assert!(SearchQuery::parse(&"é".repeat(101)).is_err());
        assert!(SearchQuery::parse(&format!("  {}  ", "a".repeat(100))).is_ok());
        assert!(SearchQuery::parse("ada\nlovelace").is_err());
        assert!(SearchQuery::parse("ada\u{0}").is_err());
        assert!(SearchQuery::parse("a\u{202e}b").is_err());
    }

    #[test]
    fn prefix_terms_and_username() {
        assert!(q("ada lov").last_word_is_prefix());
        assert!(!q("\"ada lovelace\"").last_word_is_prefix());
        assert_eq!(q("@Ada_L").as_username(), "ada_l");
        assert_eq!(
            q("\"Ada Lovelace\" or -babbage Maths").terms(),
            ["ada", "lovelace", "maths"]
        );
    }

    #[test]
    fn cursors_round_trip_and_refuse_what_encode_cannot_write() {
        let query = q("ada");
        let cursor = Cursor::ranked(Direction::After, SearchMode::Words, 0.607_927_1, 42);
        let text = cursor.encode();
        assert_eq!(Cursor::parse(&text, Direction::After, &query), Ok(cursor));
        assert_eq!(
            Cursor::parse(&text, Direction::After, &query)
                .unwrap()
                .score(),
            0.607_927_1
        );
        // A ranked position for the empty query, garbage, overlong, negative ids.
        assert!(Cursor::parse(&text, Direction::After, &q("")).is_err());
        for forged in [
            "",
            "x1.2",
            "w",
            "w1",
            "w1.2.3",
            "wzz.1",
            "w1.0",
            "w7fc00000.1",
            &"w1".repeat(40),
            "w1.-2",
            "wA.1",
        ] {
            assert!(
                Cursor::parse(forged, Direction::After, &query).is_err(),
                "{forged}"
            );
        }
        let recent = Cursor {
            direction: Direction::Before,
            mode: SearchMode::Recent,
            key: -5,
            user_id: 7,
        };
        assert!(recent.encode().len() <= Cursor::MAX_LEN);
        assert_eq!(
            Cursor::parse(&recent.encode(), Direction::Before, &q("")),
            Ok(recent)
        );
    }

    fn mode() -> impl Strategy<Value = SearchMode> {
        prop_oneof![
            Just(SearchMode::Words),
            Just(SearchMode::Fuzzy),
            Just(SearchMode::Broad),
            Just(SearchMode::FuzzyBroad),
            Just(SearchMode::Recent),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// Any text is a query or a refusal with a message, never a panic;
        /// what is accepted is within the bounds the server relies on.
        #[test]
        fn any_text_parses_or_is_refused(raw in any::<String>()) {
            match SearchQuery::parse(&raw) {
                Ok(query) => {
                    prop_assert!(query.as_str().chars().count() <= SearchQuery::MAX);
                    prop_assert!(!query.as_str().chars().any(char::is_control));
                    prop_assert_eq!(query.as_str(), query.as_str().trim());
                    // Everything the server derives from it is total too.
                    let _ = (query.terms(), query.as_username(), query.is_exact());
                }
                Err(message) => prop_assert!(!message.is_empty()),
            }
        }

        /// Any text is a cursor or a refusal, never a panic.
        #[test]
        fn any_text_is_a_cursor_or_refused(raw in any::<String>(), empty in any::<bool>()) {
            let query = if empty { q("") } else { q("ada") };
            if let Ok(cursor) = Cursor::parse(&raw, Direction::After, &query) {
                prop_assert!(cursor.user_id > 0);
                prop_assert_eq!(cursor.mode == SearchMode::Recent, empty);
            }
        }

        /// Text shaped like a cursor (the likeliest forgery) neither.
        #[test]
        fn cursor_shaped_text_is_a_cursor_or_refused(raw in "[wfbgrx]-?[0-9a-fA-F]{0,18}\\.-?[0-9a-f]{0,18}(\\.[0-9a-f]{0,3})?") {
            let _ = Cursor::parse(&raw, Direction::Before, &q("ada"));
            let _ = Cursor::parse(&raw, Direction::After, &q(""));
        }

        /// Every position `encode` writes reads back as itself.
        #[test]
        fn every_cursor_round_trips(
            mode in mode(),
            score in 0.0f32..1e6,
            time in any::<i64>(),
            user_id in 1..i64::MAX,
            after in any::<bool>(),
        ) {
            let direction = if after { Direction::After } else { Direction::Before };
            let cursor = if mode.by_time() {
                Cursor { direction, mode, key: time, user_id }
            } else {
                Cursor::ranked(direction, mode, score, user_id)
            };
            let query = if mode == SearchMode::Recent { q("") } else { q("ada") };
            let text = cursor.encode();
            prop_assert!(text.len() <= Cursor::MAX_LEN);
            prop_assert_eq!(Cursor::parse(&text, direction, &query), Ok(cursor));
        }
    }

    #[test]
    fn highlighting_keeps_the_text_and_marks_whole_words() {
        let terms = q("ada lov").terms();
        let pieces = highlight("<b>Ada</b> loves Lovelace, not adam", &terms);
        assert_eq!(
            pieces.iter().map(|p| p.0).collect::<String>(),
            "<b>Ada</b> loves Lovelace, not adam"
        );
        let marked: Vec<&str> = pieces.iter().filter(|p| p.1).map(|p| p.0).collect();
        assert_eq!(marked, ["Ada", "loves", "Lovelace", "adam"]);
        assert_eq!(highlight("", &terms), vec![]);
        assert_eq!(highlight("nothing", &terms), vec![("nothing", false)]);
    }
}
