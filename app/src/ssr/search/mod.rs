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
//!
//! Cost, guarded at every step: a cursor is sealed (`cursor`), so a client
//! cannot pick the mode or the position's kind; the mode is recomputed on
//! every page (the planner's estimate again), never read from the cursor;
//! each client network has a sliding-window limit, and each instance runs at
//! most `search_concurrency` searches at once, answering "busy" at once past
//! that rather than queueing for pool connections that sign-ins need; the
//! whole search, every statement together, has [`BUDGET`], well under the
//! replica read timeout, and a statement cancelled for it is an answer
//! ("try again"), never a failing replica.

pub mod cursor;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use sqlx::{PgConnection, Row};
use time::OffsetDateTime;
use tokio::sync::{OnceCell, Semaphore};

use self::cursor::CursorSeal;
use crate::domain::{Cursor, Direction, SearchMode, SearchQuery};
use crate::dto::{PersonHit, SearchPage};
use crate::error::AppError;
use crate::ssr::infra::db::Freshness;
use crate::ssr::infra::rate_limit::{self, Decision};
use crate::ssr::{AppState, Error, RequestMeta, Result, ServiceConfig};

/// What search keeps per instance: the cursor key, once read, and the slots
/// of the concurrency cap.
pub struct SearchGuard {
    pub(crate) key: OnceCell<[u8; 32]>,
    slots: Semaphore,
}

impl SearchGuard {
    /// `pool`: the primary pool's size, half of which searches may take
    /// when `search_concurrency` is 0.
    pub fn new(config: &ServiceConfig, pool: usize) -> Self {
        let slots = match config.search_concurrency {
            0 => (pool / 2).max(1),
            n => n,
        };
        Self {
            key: OnceCell::new(),
            slots: Semaphore::new(slots),
        }
    }
}

/// Results per page.
pub const PAGE: usize = 20;

/// All the statements of one search together: past it, the statement
/// running is cancelled (its `statement_timeout` is what is left) and the
/// reader is told to try again. Under the replica read timeout (1 s), so
/// that an expensive search is never taken for a failing replica.
pub const BUDGET: Duration = Duration::from_millis(500);

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
/// cursor's key and user id (NULL on the first page), $6 the limit; in
/// `Fuzzy` also $7, $8, $9: each correction's query word (a number), its
/// tsquery and its closeness ([`Corrections`]).
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
    let ranked = |score: &str, tsquery: &str, with: &str| {
        format!(
            "WITH {with}m AS (
                 SELECT {COLUMNS}, ({score})::real AS score
                 FROM search_documents d
                 WHERE d.document @@ {tsquery}
             )
             SELECT d.*, d.score AS key FROM m d
             WHERE $4::real IS NULL OR d.score {cmp} $4 OR (d.score = $4 AND d.user_id {tie} $5)
             ORDER BY d.score {order}, d.user_id {id_order}
             LIMIT $6"
        )
    };
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
        // An exact username, then ts_rank (names weigh A, the place B, the
        // bio C).
        SearchMode::Words => ranked(
            &format!(
                "(CASE WHEN d.username = $2 THEN 2 ELSE 0 END) + ts_rank(d.document, {WORDS})"
            ),
            WORDS,
            "",
        ),
        // Corrections: closeness first. For each word of the query, the
        // closest of its corrections the row matches; summed over the words;
        // ts_rank (a thousandth) only breaks ties. The corrections are a
        // handful of rows, parsed once.
        SearchMode::Fuzzy => ranked(
            "(SELECT coalesce(sum(best), 0) FROM (
                  SELECT max(c.closeness) AS best FROM c
                  WHERE d.document @@ c.q GROUP BY c.w) b)
             + ts_rank(d.document, $1::tsquery) / 1000",
            "$1::tsquery",
            "c AS MATERIALIZED (
                 SELECT w, q::tsquery AS q, closeness
                 FROM unnest($7::int4[], $8::text[], $9::float4[]) AS c(w, q, closeness)
             ),
             ",
        ),
    }
}

/// How many profiles the planner expects the words of `$1` (prefix `$2`)
/// to match: planned with the values, not run.
const ESTIMATE: &str =
    "EXPLAIN (FORMAT JSON) SELECT 1 FROM search_documents d WHERE d.document @@ people_tsquery($1, $2)";

/// The same for corrections (`$1`, a tsquery's text).
const ESTIMATE_CORRECTED: &str =
    "EXPLAIN (FORMAT JSON) SELECT 1 FROM search_documents d WHERE d.document @@ $1::tsquery";

/// Whether the words of `$1` (prefix `$2`) match anything: asked on the
/// pages after the first, where an empty page says nothing about it. Only
/// asked when the estimate allowed ranking every match, so bounded by that.
const ANY_MATCH: &str =
    "SELECT EXISTS (SELECT 1 FROM search_documents d WHERE d.document @@ people_tsquery($1, $2))";

/// The profile whose username is exactly the query, if the words match it.
const EXACT: &str =
    "SELECT d.user_id, d.username, d.display_name, d.location, d.bio, d.updated_at AS key
     FROM search_documents d
     WHERE d.username = $1 AND d.document @@ people_tsquery($2, $3)";

/// The candidate corrections of each word of `$1` (the words names are made
/// of, as `name_words` cuts them): its nearest known words by trigram
/// distance (from the GiST index, in order, so a few probes), and every
/// known word that is the query word with two neighbouring letters swapped
/// (primary-key look-ups: trigrams barely see a swap, "jnoes" shares two of
/// six with "jones"). A word with no candidate comes back with a NULL.
const CANDIDATES: &str = "
    SELECT q.w AS word, near.word AS candidate, similarity(near.word, q.w)::float4 AS similarity
    FROM name_words($1) AS q(w)
    LEFT JOIN LATERAL (
        (SELECT s.word FROM search_words s ORDER BY s.word <-> q.w LIMIT 20)
        UNION
        (SELECT s.word FROM search_words s
         WHERE s.word IN (
             SELECT overlay(q.w PLACING substr(q.w, i + 1, 1) || substr(q.w, i, 1) FROM i FOR 2)
             FROM generate_series(1, char_length(q.w) - 1) AS i))
    ) near ON true";

/// Corrections kept per word of the query.
const CORRECTIONS_PER_WORD: usize = 3;

/// The typo corrections of a query: for each of its words, the nearest
/// known name words, closest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Corrections {
    /// The tsquery's text: each word's corrections OR'ed, the words AND'ed
    /// (`('johnson' | 'jones') & ('ada')`).
    pub tsquery: String,
    /// One entry per correction: the number of the query word it corrects,
    /// the correction as a tsquery's text, and its closeness (`closeness`).
    pub words: Vec<i32>,
    pub queries: Vec<String>,
    pub closeness: Vec<f32>,
}

/// The most edits a correction of a word of this many letters may need to
/// be taken for a typo of it: a short word has few neighbours worth a
/// guess, a long one may hold two slips.
fn edits_allowed(letters: usize) -> usize {
    match letters {
        0..=2 => 0,
        3..=5 => 1,
        6..=9 => 2,
        _ => 3,
    }
}

/// How close a correction is: fewer edits first (optimal string alignment:
/// a swap of two neighbouring letters is one edit, as people make it), then
/// trigram similarity (below 1 unless equal). Higher is closer; a
/// difference of one edit outweighs any difference of similarity.
fn closeness(edits: usize, similarity: f32) -> f32 {
    (10 - edits.min(9)) as f32 + similarity.clamp(0.0, 0.999)
}

/// Chooses the corrections among the candidates: those within the edits
/// allowed, or as similar as the trigram cut-off (0.2) asks, closest first,
/// at most [`CORRECTIONS_PER_WORD`] a word. `None` when a word has none:
/// the query matches nobody.
fn choose(candidates: BTreeMap<String, Vec<(String, f32)>>) -> Option<Corrections> {
    if candidates.is_empty() {
        return None;
    }
    let mut corrections = Corrections {
        tsquery: String::new(),
        words: Vec::new(),
        queries: Vec::new(),
        closeness: Vec::new(),
    };
    let mut clauses = Vec::new();
    for (number, (word, near)) in candidates.into_iter().enumerate() {
        let letters = word.chars().count();
        let mut near: Vec<(String, f32)> = near
            .into_iter()
            .filter_map(|(candidate, similarity)| {
                let edits = strsim::osa_distance(&word, &candidate);
                (edits <= edits_allowed(letters) || similarity >= 0.2)
                    .then(|| (candidate, closeness(edits, similarity)))
            })
            .collect();
        if near.is_empty() {
            return None;
        }
        // Closest first; equal closeness in word order, so that the same
        // words always give the same corrections.
        near.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        near.truncate(CORRECTIONS_PER_WORD);
        let mut alternatives = Vec::new();
        for (candidate, close) in near {
            // Name words are letters and digits only; quoted all the same.
            let literal = format!("'{}'", candidate.replace('\\', "\\\\").replace('\'', "''"));
            corrections.words.push(number as i32);
            corrections.queries.push(literal.clone());
            corrections.closeness.push(close);
            alternatives.push(literal);
        }
        clauses.push(format!("({})", alternatives.join(" | ")));
    }
    corrections.tsquery = clauses.join(" & ");
    Some(corrections)
}

/// The corrections of `query`'s words, or None when a word has no near
/// known word (or the query has no word to correct).
pub async fn corrections(
    conn: &mut PgConnection,
    query: &SearchQuery,
) -> Result<Option<Corrections>> {
    let rows = sqlx::query(CANDIDATES)
        .bind(query.as_str())
        .fetch_all(&mut *conn)
        .await
        .map_err(cancelled)?;
    let mut candidates: BTreeMap<String, Vec<(String, f32)>> = BTreeMap::new();
    for row in &rows {
        let word: String = row.try_get("word")?;
        let near = candidates.entry(word).or_default();
        if let Some(candidate) = row.try_get::<Option<String>, _>("candidate")? {
            near.push((candidate, row.try_get("similarity")?));
        }
    }
    Ok(choose(candidates))
}

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

/// Which results a query gets, decided afresh for every page.
enum Plan {
    /// The empty query, `Broad`, `Words`: the query's own words.
    Words(SearchMode),
    /// `Fuzzy` or `FuzzyBroad`: the corrections'.
    Corrected(SearchMode, Corrections),
    /// No word matched and a word has no correction: nobody.
    Nobody,
}

impl Plan {
    fn mode(&self) -> SearchMode {
        match self {
            Plan::Words(mode) | Plan::Corrected(mode, _) => *mode,
            Plan::Nobody => SearchMode::Fuzzy,
        }
    }
}

/// A page of people for `query`, after or before the cursor `cursor` (a
/// direction and the text a previous page handed out; the first page
/// without one), for the client `client`. Read from a replica when the
/// reader's freshness (asked only once the search is let through) allows.
///
/// Refused, in this order and before any SQL: a cursor this deployment did
/// not seal for this query and direction (`BadRequest`, 400), a client
/// network past its limit (`RateLimited`), an instance already running its
/// `search_concurrency` searches (`Unavailable`, "try again", at once).
pub async fn people(
    state: &AppState,
    client: &RequestMeta,
    freshness: impl Future<Output = Freshness>,
    query: &SearchQuery,
    cursor: Option<(Direction, &str)>,
) -> Result<SearchPage> {
    let started = Instant::now();
    let seal = cursor::key(state).await?;
    let cursor = match cursor {
        None => None,
        Some((direction, text)) => match seal.open(text, direction, query) {
            Some(cursor) => Some(cursor),
            None => {
                tracing::info!("search cursor refused: not sealed here for this query");
                state
                    .metrics
                    .counter(
                        "folio_search_refusals_total",
                        &[("reason", "cursor".into())],
                    )
                    .increment(1);
                return Err(AppError::BadRequest.into());
            }
        },
    };
    let limit = state.config.searches_per_ip;
    let name = format!("search:ip:{}", client.client_network());
    match rate_limit::acquire(state, &name, limit).await {
        Ok(Decision::Allowed(_)) => {}
        Ok(Decision::Refused { retry_after }) => {
            return Err(AppError::RateLimited {
                retry_after_secs: retry_after.as_secs_f64().ceil() as u64,
            }
            .into())
        }
        // Search is a public read: it goes on without Redis (the
        // concurrency cap below still bounds what one instance spends).
        Err(error) => {
            state.metrics.redis_errors.increment(1);
            tracing::warn!(error = %error, "search rate limit unknown (Redis); searching anyway");
        }
    }
    let Ok(_slot) = state.search.slots.try_acquire() else {
        tracing::info!("search refused: every search slot of this instance is busy");
        state
            .metrics
            .counter("folio_search_refusals_total", &[("reason", "busy".into())])
            .increment(1);
        return Err(AppError::Unavailable.into());
    };
    let freshness = freshness.await;
    let seal = &seal;
    let (mode, page) = state
        .db
        .read(freshness, |pool| async move {
            let mut tx = pool.begin().await?;
            let budget = Budget::new();
            let found = search(&mut tx, &budget, seal, query, cursor).await;
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

/// What is left of [`BUDGET`] for one search.
struct Budget {
    deadline: Instant,
    first: std::sync::atomic::AtomicBool,
}

impl Budget {
    fn new() -> Self {
        Self {
            deadline: Instant::now() + BUDGET,
            first: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// Gives the next statement what is left as its `statement_timeout`
    /// (SET LOCAL, as a function that takes a parameter), or answers "try
    /// again" when nothing is. The first call also asks for custom plans:
    /// each statement is planned with its values, so the planner knows how
    /// many rows the query's words match (a cached generic plan would not,
    /// and would build the query once per row).
    async fn arm(&self, conn: &mut PgConnection) -> Result<()> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left < Duration::from_millis(1) {
            tracing::warn!("search stopped: its time budget is spent");
            return Err(Error::App(AppError::Unavailable));
        }
        let ms = left.as_millis().to_string();
        if self.first.swap(false, std::sync::atomic::Ordering::Relaxed) {
            sqlx::query(
                "SELECT set_config('statement_timeout', $1, true),
                        set_config('plan_cache_mode', 'force_custom_plan', true)",
            )
            .bind(ms)
            .execute(&mut *conn)
            .await?;
        } else {
            sqlx::query("SELECT set_config('statement_timeout', $1, true)")
                .bind(ms)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
}

/// Which results `query` gets now, on a page after the first: the first
/// page's questions again, on today's data. There the ranked rows are not
/// at hand to tell whether any word matched, so that is asked.
async fn plan(conn: &mut PgConnection, budget: &Budget, query: &SearchQuery) -> Result<Plan> {
    if query.is_empty() {
        return Ok(Plan::Words(SearchMode::Recent));
    }
    let expected = estimate(conn, budget, query).await?;
    if expected > RANK_LIMIT {
        return Ok(Plan::Words(SearchMode::Broad));
    }
    // A query that asks for exactly its words has no typo.
    if query.is_exact() {
        return Ok(Plan::Words(SearchMode::Words));
    }
    budget.arm(conn).await?;
    let any: bool = sqlx::query_scalar(ANY_MATCH)
        .bind(query.as_str())
        .bind(query.last_word_is_prefix())
        .fetch_one(&mut *conn)
        .await
        .map_err(cancelled)?;
    if any {
        return Ok(Plan::Words(SearchMode::Words));
    }
    corrected(conn, budget, query).await
}

/// No word of `query` matched: its corrections, ranked or (too many to
/// rank) by recency, or nobody.
async fn corrected(conn: &mut PgConnection, budget: &Budget, query: &SearchQuery) -> Result<Plan> {
    budget.arm(conn).await?;
    let Some(corrections) = corrections(conn, query).await? else {
        return Ok(Plan::Nobody);
    };
    budget.arm(conn).await?;
    let expected = planned_rows(
        sqlx::query_scalar(ESTIMATE_CORRECTED)
            .bind(&corrections.tsquery)
            .fetch_one(&mut *conn)
            .await,
    )?;
    let mode = if expected > FUZZY_RANK_LIMIT {
        SearchMode::FuzzyBroad
    } else {
        SearchMode::Fuzzy
    };
    Ok(Plan::Corrected(mode, corrections))
}

/// The page, and the mode that found it.
async fn search(
    conn: &mut PgConnection,
    budget: &Budget,
    seal: &CursorSeal,
    query: &SearchQuery,
    cursor: Option<Cursor>,
) -> Result<(SearchMode, SearchPage)> {
    if let Some(cursor) = cursor {
        let plan = plan(conn, budget, query).await?;
        if plan.mode() != cursor.mode {
            // The matches changed since the page before (a word is known
            // now, or many more match): that list is gone; its start, as
            // it is now.
            return Box::pin(search(conn, budget, seal, query, None)).await;
        }
        let rows = fetch(conn, budget, query, &plan, Some(cursor)).await?;
        // Back at the start of the list: the first page, as it is now (an
        // exact username leads it, which keyset pages do not carry).
        if cursor.direction == Direction::Before && rows.len() <= PAGE {
            return Box::pin(search(conn, budget, seal, query, None)).await;
        }
        let mode = plan.mode();
        return Ok((mode, page(seal, query, mode, Some(cursor.direction), rows)));
    }
    if query.is_empty() {
        let plan = Plan::Words(SearchMode::Recent);
        let rows = fetch(conn, budget, query, &plan, None).await?;
        return Ok((
            SearchMode::Recent,
            page(seal, query, SearchMode::Recent, None, rows),
        ));
    }
    // The first page: the estimate first; when it allows ranking, the
    // ranked rows themselves say whether any word matched.
    let expected = estimate(conn, budget, query).await?;
    if expected > RANK_LIMIT {
        let mut rows = fetch(conn, budget, query, &Plan::Words(SearchMode::Broad), None).await?;
        budget.arm(conn).await?;
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
            page(seal, query, SearchMode::Broad, None, rows),
        ));
    }
    let rows = fetch(conn, budget, query, &Plan::Words(SearchMode::Words), None).await?;
    if !rows.is_empty() || query.is_exact() {
        return Ok((
            SearchMode::Words,
            page(seal, query, SearchMode::Words, None, rows),
        ));
    }
    // No word matched anywhere: the query may hold a typo.
    let plan = corrected(conn, budget, query).await?;
    let mode = plan.mode();
    let rows = fetch(conn, budget, query, &plan, None).await?;
    Ok((mode, page(seal, query, mode, None, rows)))
}

/// Turns the fetched rows (one more than a page, to tell whether more
/// exist) into a page with its sealed cursors. `direction` is the cursor's,
/// if the page was asked for with one.
fn page(
    seal: &CursorSeal,
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
        let cursor = match found.key {
            Key::Score(score) => Cursor::ranked(direction, mode, score, found.user_id),
            Key::Time(at) => Cursor {
                direction,
                mode,
                key: i64::try_from(at.unix_timestamp_nanos() / 1000).unwrap_or(0),
                user_id: found.user_id,
            },
        };
        seal.seal(&cursor, query)
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
/// The planner's estimate of the rows `query` matches (no scan), under the
/// search's budget: the first page and every later one decide by it.
async fn estimate(conn: &mut PgConnection, budget: &Budget, query: &SearchQuery) -> Result<f64> {
    budget.arm(conn).await?;
    planned_rows(
        sqlx::query_scalar(ESTIMATE)
            .bind(query.as_str())
            .bind(query.last_word_is_prefix())
            .fetch_one(&mut *conn)
            .await,
    )
}

fn planned_rows(plan: std::result::Result<serde_json::Value, sqlx::Error>) -> Result<f64> {
    let plan = plan.map_err(cancelled)?;
    Ok(plan[0]["Plan"]["Plan Rows"].as_f64().unwrap_or(0.0))
}

/// One page of rows of `plan` (one more than a page).
async fn fetch(
    conn: &mut PgConnection,
    budget: &Budget,
    query: &SearchQuery,
    plan: &Plan,
    cursor: Option<Cursor>,
) -> Result<Vec<Found>> {
    let (mode, corrections) = match plan {
        Plan::Nobody => return Ok(Vec::new()),
        Plan::Words(mode) => (*mode, None),
        Plan::Corrected(mode, corrections) => (*mode, Some(corrections)),
    };
    let direction = cursor.map_or(Direction::After, |c| c.direction);
    if matches!(mode, SearchMode::Broad | SearchMode::FuzzyBroad) {
        // Many matches: walking search_documents_recent until a page is full
        // reads a few hundred rows; a bitmap of every match reads them all.
        // The planner cannot know how many match (the query is a parameter).
        sqlx::query("SELECT set_config('enable_bitmapscan', 'off', true)")
            .execute(&mut *conn)
            .await?;
    }
    budget.arm(conn).await?;
    let sql = sql(mode, direction);
    let first = corrections.map_or_else(|| query.as_str().to_owned(), |c| c.tsquery.clone());
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
    let statement = statement.bind((PAGE + 1) as i64);
    let statement = match (mode, corrections) {
        (SearchMode::Fuzzy, Some(c)) => statement
            .bind(c.words.clone())
            .bind(c.queries.clone())
            .bind(c.closeness.clone()),
        _ => statement,
    };
    let rows = statement.fetch_all(&mut *conn).await.map_err(cancelled)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn candidates(word: &str, near: &[(&str, f32)]) -> BTreeMap<String, Vec<(String, f32)>> {
        BTreeMap::from([(
            word.to_owned(),
            near.iter().map(|(w, s)| ((*w).to_owned(), *s)).collect(),
        )])
    }

    #[test]
    fn corrections_are_ranked_by_edits_then_similarity() {
        // "jonhson": Johnson is one swap away, Jones three edits (though
        // 0.27 similar): Johnson first, whatever order they came in.
        let chosen = choose(candidates(
            "jonhson",
            &[("jones", 0.27), ("johnson", 0.33), ("annabel", 0.0)],
        ))
        .unwrap();
        assert_eq!(chosen.queries, ["'johnson'", "'jones'"]);
        assert!(chosen.closeness[0] > chosen.closeness[1] + 1.0);
        assert_eq!(chosen.tsquery, "('johnson' | 'jones')");
        // A swap trigrams barely see (0.2) is one edit: kept, and first.
        let chosen = choose(candidates("jnoes", &[("james", 0.3), ("jones", 0.2)])).unwrap();
        assert_eq!(chosen.queries, ["'jones'", "'james'"]);
        // Equal closeness: word order, so the same words give the same list.
        assert_eq!(closeness(1, 0.5), closeness(1, 0.5));
        assert!(closeness(1, 0.0) > closeness(2, 0.999));
    }

    #[test]
    fn a_word_without_a_near_word_matches_nobody() {
        assert_eq!(choose(candidates("zzyzx", &[("ada", 0.0)])), None);
        assert_eq!(choose(candidates("zzyzx", &[])), None);
        assert_eq!(choose(BTreeMap::new()), None);
        let mut two = candidates("jnoes", &[("jones", 0.2)]);
        two.insert("zzyzx".into(), vec![("ada".into(), 0.0)]);
        assert_eq!(choose(two), None, "every word needs a correction");
    }
}
