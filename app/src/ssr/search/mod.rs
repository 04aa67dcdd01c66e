//! People search: reads `search_documents` (kept current by the `search`
//! event consumer) and answers a page of public profiles. Owns the query
//! and its ranking; never writes, and never reads anything but the search
//! documents (no email, nothing the public page does not show).
//!
//! A query is full-text first (`people_tsquery`: words, "phrases", the last
//! word as a prefix), ranked by an exact username match, then `ts_rank`
//! (names weigh more than the place, the place more than the bio), then the
//! user id. When no word matches at all, each word of the query is
//! corrected to the nearest known name words by trigram similarity
//! (`people_fuzzy_tsquery`: "jonh" becomes john | jones) and the
//! corrections are searched and ranked the same way. A query matching more
//! than [`RANK_LIMIT`] profiles is not ranked (that costs per match): its
//! exact username first, then its matches by recency; corrections matching
//! more than [`FUZZY_RANK_LIMIT`] are listed by recency too. An empty query
//! lists recently updated profiles.
//!
//! Pages are keyset pages: a cursor holds the last row's sort key (score or
//! update time, then user id), and the next page is "the rows after it", so
//! rows added between two pages can neither repeat a row nor skip one.
//! Scores depend on nothing but the row and the query (no corpus
//! statistics), so a row keeps its place while others are added.

use std::time::{Duration, Instant};

use sqlx::{PgConnection, Row};
use time::OffsetDateTime;

use crate::domain::{Cursor, Direction, SearchMode, SearchQuery};
use crate::dto::{PersonHit, SearchPage};
use crate::error::AppError;
use crate::ssr::infra::db::Freshness;
use crate::ssr::{AppState, Error, Result};

/// Results per page.
pub const PAGE: usize = 20;

/// An expensive query (a one-letter prefix at a million profiles) is
/// cancelled rather than allowed to hold a replica connection.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_millis(500);

/// When the planner expects more matches than this, ranking them all would
/// cost too much (a three-letter prefix matches a tenth of a million
/// profiles, and each match costs microseconds to fetch and rank): such a
/// query lists its matches by recency instead ([`SearchMode::Broad`]),
/// walking an index in order until a page is full. The estimate (from the
/// column's statistics, prefixes included) costs a plan, not a scan; it is
/// often twice the truth, and a query expected to match fewer is ranked.
pub const RANK_LIMIT: f64 = 5_000.0;

/// The same for the corrections of a typo, lower: ranking costs about
/// 2.5 µs per match, walking the recency index about 0.3 µs per row read,
/// and a walk reads about 21 / (matches / profiles) rows to fill a page, so
/// at a million profiles the two cost the same near 1 600 matches
/// (measured at a million profiles: `hopper`'s 3 800 matches ranked in
/// 9.5 ms, walked in 2.3 ms; three corrections of a common surname, 15 800
/// matches, ranked in 64 ms, walked in 0.6 ms). A correction is a guess:
/// its matches gain little from ranking (every one matched a name word),
/// so the cheaper order wins sooner than for words typed right.
pub const FUZZY_RANK_LIMIT: f64 = 2_000.0;

/// The columns every search answers, after its sort key.
const COLUMNS: &str = "d.user_id, d.username, d.display_name, d.location, d.bio";

/// The SQL of one page, for a mode and direction. The parameters: $1 the
/// query (the corrections, as a tsquery's text, in the corrected modes), $2
/// it as a username, $3 whether its last word is a prefix, $4 and $5 the
/// cursor's key and user id (NULL on the first page), $6 the limit.
/// Public so that a test (and the benchmark) can EXPLAIN what is run.
pub fn sql(mode: SearchMode, direction: Direction) -> String {
    let after = direction == Direction::After;
    let (cmp, order, tie, id_order) = if after {
        ("<", "DESC", ">", "ASC")
    } else {
        (">", "ASC", "<", "DESC")
    };
    // The transaction plans every statement with its values (see
    // `search`), so `people_tsquery` of constants is computed once, at
    // planning, and the planner sees the real query's selectivity.
    const WORDS: &str = "people_tsquery($1, $3)";
    match mode {
        SearchMode::Recent | SearchMode::Broad | SearchMode::FuzzyBroad => {
            // Walks search_documents_recent in order, stopping at a page.
            let matches = match mode {
                SearchMode::Broad => format!("d.document @@ {WORDS} AND d.username <> $2"),
                SearchMode::FuzzyBroad => "d.document @@ $1::tsquery".to_owned(),
                _ => "true".to_owned(),
            };
            format!(
                "SELECT {COLUMNS}, d.updated_at AS key FROM search_documents d
                 WHERE {matches}
                   AND ($4::timestamptz IS NULL OR (d.updated_at, d.user_id) {cmp} ($4, $5))
                 ORDER BY d.updated_at {order}, d.user_id {order}
                 LIMIT $6"
            )
        }
        SearchMode::Words | SearchMode::Fuzzy => {
            // An exact username, then ts_rank (names weigh A, the place B,
            // the bio C). Fuzzy: the same, for the corrected words, which
            // `search` passes as $1 (a tsquery's text).
            let tsquery = if mode == SearchMode::Words {
                WORDS
            } else {
                "$1::tsquery"
            };
            format!(
                "WITH m AS (
                     SELECT {COLUMNS},
                            ((CASE WHEN d.username = $2 THEN 2 ELSE 0 END)
                             + ts_rank(d.document, {tsquery}))::real AS score
                     FROM search_documents d
                     WHERE d.document @@ {tsquery}
                 )
                 SELECT d.*, d.score AS key FROM m d
                 WHERE $4::real IS NULL OR d.score {cmp} $4 OR (d.score = $4 AND d.user_id {tie} $5)
                 ORDER BY d.score {order}, d.user_id {id_order}
                 LIMIT $6"
            )
        }
    }
}

/// How many profiles the planner expects the words of `$1` (prefix `$2`)
/// to match: planned with the values, not run.
const ESTIMATE: &str =
    "EXPLAIN (FORMAT JSON) SELECT 1 FROM search_documents d WHERE d.document @@ people_tsquery($1, $2)";

/// The same for corrections (`$1`, a tsquery's text).
const ESTIMATE_CORRECTED: &str =
    "EXPLAIN (FORMAT JSON) SELECT 1 FROM search_documents d WHERE d.document @@ $1::tsquery";

/// The profile whose username is exactly the query, if the words match it.
const EXACT: &str =
    "SELECT d.user_id, d.username, d.display_name, d.location, d.bio, d.updated_at AS key
     FROM search_documents d
     WHERE d.username = $1 AND d.document @@ people_tsquery($2, $3)";

/// One row and its sort key.
struct Found {
    hit: PersonHit,
    user_id: i64,
    key: Key,
}

#[derive(Clone, Copy)]
enum Key {
    Score(f32),
    Time(OffsetDateTime),
}

/// A page of people for `query`, after or before `cursor` (the first page
/// without one). Read from a replica when the reader's freshness allows.
pub async fn people(
    state: &AppState,
    freshness: Freshness,
    query: &SearchQuery,
    cursor: Option<Cursor>,
) -> Result<SearchPage> {
    let started = Instant::now();
    let (mode, page) = state
        .db
        .read(freshness, |pool| async move {
            let mut tx = pool.begin().await?;
            let found = search(&mut tx, query, cursor).await;
            // Read only: nothing to commit, and a cancelled statement has
            // already ended the transaction.
            let _ = tx.rollback().await;
            found
        })
        .await?;
    let label = match mode {
        SearchMode::Words => "words",
        SearchMode::Fuzzy => "fuzzy",
        SearchMode::Broad => "broad",
        SearchMode::FuzzyBroad => "fuzzy_broad",
        SearchMode::Recent => "recent",
    };
    state
        .metrics
        .counter("folio_search_queries_total", &[("mode", label.into())])
        .increment(1);
    state
        .metrics
        .histogram("folio_search_duration_seconds", &[])
        .record(started.elapsed().as_secs_f64());
    Ok(page)
}

/// The page, and the mode that found it.
async fn search(
    conn: &mut PgConnection,
    query: &SearchQuery,
    cursor: Option<Cursor>,
) -> Result<(SearchMode, SearchPage)> {
    // SET LOCAL, as a function that takes a parameter. Custom plans: each
    // statement is planned with its values, so the planner knows how many
    // rows the query's words match (a cached generic plan would not, and
    // would build the query once per row).
    sqlx::query(
        "SELECT set_config('statement_timeout', $1, true),
                set_config('plan_cache_mode', 'force_custom_plan', true)",
    )
    .bind(STATEMENT_TIMEOUT.as_millis().to_string())
    .execute(&mut *conn)
    .await?;

    if let Some(cursor) = cursor {
        let rows = fetch(conn, query, cursor.mode, Some(cursor)).await?;
        // Back at the start of the list: the first page, as it is now (an
        // exact username leads it, which keyset pages do not carry).
        if cursor.direction == Direction::Before && rows.len() <= PAGE {
            return Box::pin(search(conn, query, None)).await;
        }
        return Ok((
            cursor.mode,
            page(query, cursor.mode, Some(cursor.direction), rows),
        ));
    }
    if query.is_empty() {
        let rows = fetch(conn, query, SearchMode::Recent, None).await?;
        return Ok((
            SearchMode::Recent,
            page(query, SearchMode::Recent, None, rows),
        ));
    }
    let expected = planned_rows(
        sqlx::query_scalar(ESTIMATE)
            .bind(query.as_str())
            .bind(query.last_word_is_prefix())
            .fetch_one(&mut *conn)
            .await,
    )?;
    if expected > RANK_LIMIT {
        let mut rows = fetch(conn, query, SearchMode::Broad, None).await?;
        let exact = sqlx::query(EXACT)
            .bind(query.as_username())
            .bind(query.as_str())
            .bind(query.last_word_is_prefix())
            .fetch_optional(&mut *conn)
            .await
            .map_err(cancelled)?;
        if let Some(row) = exact {
            rows.insert(0, found(&row, SearchMode::Broad)?);
        }
        return Ok((
            SearchMode::Broad,
            page(query, SearchMode::Broad, None, rows),
        ));
    }
    let rows = fetch(conn, query, SearchMode::Words, None).await?;
    // No word matched anywhere: the query may hold a typo.
    if rows.is_empty() && !query.is_exact() {
        let Some(corrected) = correct(conn, query).await? else {
            // A word with no near name: nobody.
            return Ok((
                SearchMode::Fuzzy,
                page(query, SearchMode::Fuzzy, None, Vec::new()),
            ));
        };
        let expected = planned_rows(
            sqlx::query_scalar(ESTIMATE_CORRECTED)
                .bind(&corrected)
                .fetch_one(&mut *conn)
                .await,
        )?;
        let mode = if expected > FUZZY_RANK_LIMIT {
            SearchMode::FuzzyBroad
        } else {
            SearchMode::Fuzzy
        };
        let rows = fetch_with(conn, query, mode, None, corrected).await?;
        return Ok((mode, page(query, mode, None, rows)));
    }
    Ok((
        SearchMode::Words,
        page(query, SearchMode::Words, None, rows),
    ))
}

/// Turns the fetched rows (one more than a page, to tell whether more
/// exist) into a page with its cursors. `direction` is the cursor's, if
/// the page was asked for with one.
fn page(
    query: &SearchQuery,
    mode: SearchMode,
    direction: Option<Direction>,
    mut rows: Vec<Found>,
) -> SearchPage {
    let more = rows.len() > PAGE;
    rows.truncate(PAGE);
    let (more_before, more_after) = match direction {
        None => (false, more),
        Some(Direction::After) => (true, more),
        Some(Direction::Before) => {
            rows.reverse();
            (more, true)
        }
    };
    let cursor_at = |found: &Found, direction| {
        match found.key {
            Key::Score(score) => Cursor::ranked(direction, mode, score, found.user_id, query.tag()),
            Key::Time(at) => Cursor {
                direction,
                mode,
                key: i64::try_from(at.unix_timestamp_nanos() / 1000).unwrap_or(0),
                user_id: found.user_id,
                tag: query.tag(),
            },
        }
        .encode()
    };
    let next = rows
        .last()
        .filter(|_| more_after)
        .map(|f| cursor_at(f, Direction::After));
    let prev = rows
        .first()
        .filter(|_| more_before)
        .map(|f| cursor_at(f, Direction::Before));
    SearchPage {
        query: query.as_str().to_owned(),
        people: rows.into_iter().map(|f| f.hit).collect(),
        next,
        prev,
    }
}

/// The rows the planner expects, from an `EXPLAIN (FORMAT JSON)`.
fn planned_rows(plan: std::result::Result<serde_json::Value, sqlx::Error>) -> Result<f64> {
    let plan = plan.map_err(cancelled)?;
    Ok(plan[0]["Plan"]["Plan Rows"].as_f64().unwrap_or(0.0))
}

/// The query's words replaced by the nearest known name words (a tsquery's
/// text), or None when a word has no near name.
async fn correct(conn: &mut PgConnection, query: &SearchQuery) -> Result<Option<String>> {
    sqlx::query_scalar("SELECT people_fuzzy_tsquery($1)::text")
        .bind(query.as_str())
        .fetch_one(&mut *conn)
        .await
        .map_err(cancelled)
}

/// One page of rows of `mode` (one more than a page).
async fn fetch(
    conn: &mut PgConnection,
    query: &SearchQuery,
    mode: SearchMode,
    cursor: Option<Cursor>,
) -> Result<Vec<Found>> {
    let first = if mode.corrected() {
        // Corrected again for each page: the words known may have grown.
        match correct(conn, query).await? {
            Some(tsquery) => tsquery,
            None => return Ok(Vec::new()),
        }
    } else {
        query.as_str().to_owned()
    };
    fetch_with(conn, query, mode, cursor, first).await
}

/// [`fetch`], with `$1` given: the query, or its corrections.
async fn fetch_with(
    conn: &mut PgConnection,
    query: &SearchQuery,
    mode: SearchMode,
    cursor: Option<Cursor>,
    first: String,
) -> Result<Vec<Found>> {
    let direction = cursor.map_or(Direction::After, |c| c.direction);
    if matches!(mode, SearchMode::Broad | SearchMode::FuzzyBroad) {
        // Many matches: walking search_documents_recent until a page is full
        // reads a few hundred rows; a bitmap of every match reads them all.
        // The planner cannot know how many match (the query is a parameter).
        sqlx::query("SELECT set_config('enable_bitmapscan', 'off', true)")
            .execute(&mut *conn)
            .await?;
    }
    let sql = sql(mode, direction);
    let statement = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(first)
        .bind(query.as_username())
        .bind(query.last_word_is_prefix());
    let statement = match (mode.by_time(), cursor) {
        (true, Some(c)) => statement
            .bind(OffsetDateTime::from_unix_timestamp_nanos(i128::from(c.key) * 1000).ok())
            .bind(c.user_id),
        (true, None) => statement.bind(None::<OffsetDateTime>).bind(0_i64),
        (false, Some(c)) => statement.bind(Some(c.score())).bind(c.user_id),
        (false, None) => statement.bind(None::<f32>).bind(0_i64),
    };
    let rows = statement
        .bind((PAGE + 1) as i64)
        .fetch_all(&mut *conn)
        .await
        .map_err(cancelled)?;
    rows.iter().map(|row| found(row, mode)).collect()
}

fn found(row: &sqlx::postgres::PgRow, mode: SearchMode) -> Result<Found> {
    let key = if mode.by_time() {
        Key::Time(row.try_get("key")?)
    } else {
        Key::Score(row.try_get("key")?)
    };
    let location: String = row.try_get("location")?;
    let bio: String = row.try_get("bio")?;
    Ok(Found {
        user_id: row.try_get("user_id")?,
        key,
        hit: PersonHit {
            username: row.try_get("username")?,
            display_name: row.try_get("display_name")?,
            location: (!location.is_empty()).then_some(location),
            bio: excerpt(&bio),
        },
    })
}

/// A query the statement timeout cancelled is an answer ("try again"), not
/// a failing database: `Db::read` would otherwise rest the replica and run
/// the same expensive query again on the primary.
fn cancelled(error: sqlx::Error) -> Error {
    match &error {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("57014") => {
            tracing::warn!("search query cancelled by its statement timeout");
            Error::App(AppError::Unavailable)
        }
        _ => Error::Postgres(error),
    }
}

/// The start of a bio for a result list: its first 160 characters, with
/// line breaks as spaces.
fn excerpt(bio: &str) -> String {
    let flat = bio.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= 160 {
        flat
    } else {
        let mut cut: String = flat.chars().take(159).collect();
        cut.push('…');
        cut
    }
}
