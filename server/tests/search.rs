//! People search, end to end: profiles reach the index through the event
//! pipeline (real Postgres, Redis Streams, the consumers in the server),
//! and `search_people` answers over HTTP. Ranking and paging tests write
//! index rows directly (what the consumer would write), so that a hundred
//! profiles cost no hundred sign-ups.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use app::domain::{Direction, SearchMode};
use app::ssr::events::outbox;
use app::ssr::events::types::AccountDeleted;
use app::ssr::Limit;
use serde_json::json;

use support::{
    spawn_app, spawn_app_with, status_and_json, wait_for, Cookie, Edit, TestApp, STRONG_PASSWORD,
};

/// Generous: the machine is shared, and a debug build is slow.
const DELIVERY: Duration = Duration::from_secs(60);

fn with_workers(settings: &mut server::config::Settings) {
    settings.event_workers = true;
    settings.service.registrations_per_ip = Limit::new(10_000, 60);
}

impl TestApp {
    /// `search_people` as an anonymous reader: status and body.
    async fn search(&self, form: &[(&str, &str)]) -> (u16, serde_json::Value) {
        status_and_json(self.call("search_people", form, &Cookie::default()).await).await
    }

    /// The usernames of one page of `q`.
    async fn usernames(&self, q: &str) -> Vec<String> {
        let (status, page) = self.search(&[("q", q)]).await;
        assert_eq!(status, 200, "{q}: {page}");
        names(&page)
    }

    /// An index row as the consumer writes it: (username, display name,
    /// location, bio). Returns the user id.
    async fn index(&self, username: &str, display_name: &str, location: &str, bio: &str) -> i64 {
        sqlx::query_scalar(
            "INSERT INTO search_documents (user_id, username, version, display_name, location, bio)
             VALUES ((SELECT coalesce(max(user_id), 0) + 1 FROM search_documents), $1, 1, $2, $3, $4)
             RETURNING user_id",
        )
        .bind(username)
        .bind(display_name)
        .bind(location)
        .bind(bio)
        .fetch_one(self.state.db.primary())
        .await
        .unwrap()
    }
}

fn names(page: &serde_json::Value) -> Vec<String> {
    page["people"]
        .as_array()
        .unwrap_or_else(|| panic!("no people: {page}"))
        .iter()
        .map(|p| p["username"].as_str().unwrap().to_owned())
        .collect()
}

// --- the index, kept by the pipeline ------------------------------------------------

#[tokio::test]
async fn sign_ups_and_edits_reach_search_through_the_events() {
    let app = spawn_app_with(with_workers).await;
    let cookie = app.register("ada_l").await;

    wait_for("a new account is searchable", DELIVERY, || async {
        app.usernames("ada_l").await == ["ada_l"]
    })
    .await;

    let edit = Edit {
        display_name: "Ada Lovelace",
        bio: "Wrote the first published algorithm.",
        avatar_url: "",
        location: "London",
        website: "",
    };
    let (status, body) = app.update_profile(&cookie, &edit, 1).await;
    assert_eq!(status, 200, "{body}");
    wait_for("the edit is searchable", DELIVERY, || async {
        app.usernames("lovelace").await == ["ada_l"]
    })
    .await;
    assert_eq!(
        app.usernames("algorithms").await,
        ["ada_l"],
        "bio words are stemmed"
    );
    assert_eq!(app.usernames("london").await, ["ada_l"]);
    let (_, page) = app.search(&[("q", "lovelace")]).await;
    assert_eq!(page["people"][0]["display_name"], "Ada Lovelace");
    assert_eq!(page["people"][0]["location"], "London");

    // Nothing private is searchable: the email is in no document.
    let email: String = sqlx::query_scalar("SELECT email FROM users WHERE username = 'ada_l'")
        .fetch_one(app.state.db.primary())
        .await
        .unwrap();
    assert!(
        app.usernames(&email).await.is_empty(),
        "searching the email finds nobody"
    );

    // An older version arriving late (a redelivery) changes nothing.
    let version: i32 = sqlx::query_scalar("SELECT version FROM search_documents")
        .fetch_one(app.state.db.primary())
        .await
        .unwrap();
    assert_eq!(version, 2);
}

#[tokio::test]
async fn a_deleted_account_leaves_search_within_seconds() {
    let app = spawn_app_with(with_workers).await;
    app.register("grace").await;
    wait_for("indexed", DELIVERY, || async {
        app.usernames("grace").await == ["grace"]
    })
    .await;

    let id = app.user_id("grace").await;
    let mut tx = app.state.db.begin().await.unwrap();
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await
        .unwrap();
    let deleted = AccountDeleted {
        username: "grace".into(),
    };
    outbox::record(&mut *tx, id, &deleted).await.unwrap();
    tx.commit().await.unwrap();

    let took = wait_for("the deleted account is gone", DELIVERY, || async {
        app.usernames("grace").await.is_empty()
    })
    .await;
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

// --- the query ----------------------------------------------------------------------

#[tokio::test]
async fn an_exact_username_ranks_first_then_names_then_places_then_bios() {
    let app = spawn_app().await;
    app.index("someone", "Ada Bio", "", "").await; // "ada" in the name only
    app.index("bob", "Bob Builder", "", "I admire ada and her notes")
        .await;
    app.index("carol", "Carol", "Ada, Oklahoma", "").await;
    app.index("ada", "Someone Else", "", "").await;
    app.index("zed", "Zed", "", "nothing to see").await;

    assert_eq!(
        app.usernames("ada").await,
        ["ada", "someone", "carol", "bob"]
    );
    assert_eq!(
        app.usernames("@ADA").await[0],
        "ada",
        "the username, as typed"
    );
}

#[tokio::test]
async fn typos_phrases_and_prefixes() {
    let app = spawn_app().await;
    app.index("jsmith", "John Smith", "", "").await;
    app.index("ada_l", "Ada Lovelace", "", "").await;
    app.index("reversed", "Lovelace Ada", "", "").await;
    app.index("other", "Mary Jones", "", "").await;

    // A typo: no word matches, the names' trigrams do ("Jones" is as near).
    assert!(app.usernames("jonh").await.contains(&"jsmith".to_owned()));
    assert_eq!(app.usernames("jonh smith").await[0], "jsmith");
    assert_eq!(app.usernames("lovelase").await.len(), 2);
    // A quoted phrase: these words, in this order.
    assert_eq!(app.usernames("\"ada lovelace\"").await, ["ada_l"]);
    let both = app.usernames("ada lovelace").await;
    assert_eq!(both.len(), 2, "{both:?}");
    // As typed: the last word is a prefix.
    for typed in ["lov", "lovel", "ada lov"] {
        let found: HashSet<String> = app.usernames(typed).await.into_iter().collect();
        assert_eq!(
            found,
            HashSet::from(["ada_l".into(), "reversed".into()]),
            "{typed}"
        );
    }
    assert_eq!(app.usernames("smi").await, ["jsmith"]);
    // Nobody.
    assert!(app.usernames("zzyzx").await.is_empty());
    // Excluded words: exact by intent, so no typo fallback either.
    assert_eq!(app.usernames("lovelace -ada").await, Vec::<String>::new());
}

#[tokio::test]
async fn a_bio_with_html_comes_back_as_text_and_the_page_escapes_it() {
    let app = spawn_app().await;
    let bio = "<script>alert(1)</script> <b>bold</b> ada";
    app.index("xss", "Ada <i>X</i>", "", bio).await;
    let (status, page) = app.search(&[("q", "ada")]).await;
    assert_eq!(status, 200);
    assert_eq!(
        page["people"][0]["bio"], bio,
        "the text as written, not cleaned"
    );
    assert_eq!(page["people"][0]["display_name"], "Ada <i>X</i>");

    // The page, without JavaScript: text, with the match marked.
    let (status, html) = app.page("/people?q=ada", &Cookie::default()).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(!html.contains("<script>alert(1)"), "{html}");
    assert!(!html.contains("<i>X</i>"), "{html}");
    assert!(html.contains("<mark>Ada</mark>"), "{html}");

    // A refused query or page link is the reader's mistake: a 4xx page.
    let (status, html) = app
        .page(
            &format!("/people?q={}", "a".repeat(101)),
            &Cookie::default(),
        )
        .await;
    assert_eq!(status, 422);
    assert!(html.contains("at most 100 characters"), "{html}");
    let (status, _) = app
        .page("/people?q=ada&after=nonsense", &Cookie::default())
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn an_empty_query_lists_recently_updated_profiles() {
    let app = spawn_app().await;
    for name in ["first", "second", "third"] {
        app.index(name, name, "", "").await;
        sqlx::query("UPDATE search_documents SET updated_at = now() + (user_id || ' seconds')::interval WHERE username = $1")
            .bind(name)
            .execute(app.state.db.primary())
            .await
            .unwrap();
    }
    assert_eq!(app.usernames("").await, ["third", "second", "first"]);
    assert_eq!(app.usernames("   ").await, ["third", "second", "first"]);
}

// --- paging -------------------------------------------------------------------------

/// Walks every page of `q` forwards, inserting `insert` more matching rows
/// after the first page; returns the usernames in order.
async fn walk(app: &TestApp, q: &str, mut insert: impl AsyncFnMut(usize)) -> Vec<String> {
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut form = vec![("q", q.to_owned())];
        if let Some(cursor) = &after {
            form.push(("after", cursor.clone()));
        }
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, page) = app.search(&form).await;
        assert_eq!(status, 200, "{page}");
        let people = names(&page);
        assert!(people.len() <= 20);
        seen.extend(people);
        pages += 1;
        insert(pages).await;
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
        assert!(pages < 50, "paging does not end");
    }
    seen
}

#[tokio::test]
async fn pages_neither_repeat_nor_skip_rows_while_profiles_are_added() {
    let app = spawn_app().await;
    // Scores differ (name length, bio or name) and tie (same shape).
    let mut originals = HashSet::new();
    for i in 0..45 {
        let name = format!("smith{i}");
        let display = if i % 3 == 0 {
            "Smith".to_owned()
        } else {
            format!("Anna Smith {i}")
        };
        let bio = if i % 2 == 0 { "smith by trade" } else { "" };
        app.index(&name, &display, "", bio).await;
        originals.insert(name);
    }

    let mut added = 0;
    let seen = walk(&app, "smith", async |_| {
        // Between every two pages: rows that rank above, among and below.
        for display in ["Smith", "Anna Smith 1", "Zoe Smith Smith Smith"] {
            added += 1;
            app.index(&format!("new{added}"), display, "", "").await;
        }
    })
    .await;
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a row repeated: {seen:?}");
    for name in &originals {
        assert!(seen.contains(name), "{name} skipped: {seen:?}");
    }

    // The empty query pages by update time, the same way.
    let seen = walk(&app, "", async |_| {}).await;
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len());
    assert_eq!(seen.len(), 45 + added);
}

#[tokio::test]
async fn previous_pages_are_the_same_rows_as_before() {
    let app = spawn_app().await;
    for i in 0..50 {
        app.index(
            &format!("jones{i}"),
            &format!("Jones {}", "x".repeat(i % 7)),
            "",
            "",
        )
        .await;
    }
    let (_, first) = app.search(&[("q", "jones")]).await;
    assert!(first["prev"].is_null());
    let next = first["next"].as_str().unwrap().to_owned();
    let (_, second) = app.search(&[("q", "jones"), ("after", &next)]).await;
    let prev = second["prev"].as_str().unwrap().to_owned();
    let (_, back) = app.search(&[("q", "jones"), ("before", &prev)]).await;
    assert_eq!(names(&back), names(&first));
    assert!(back["prev"].is_null(), "the first page has no previous one");
    assert_eq!(back["next"], first["next"]);
}

// --- bad input ----------------------------------------------------------------------

#[tokio::test]
async fn bad_queries_are_field_errors_and_forged_cursors_bad_requests() {
    let app = spawn_app().await;
    app.index("ada", "Ada", "", "").await;

    let long = "a".repeat(101);
    for (q, why) in [
        (long.as_str(), "too long"),
        ("ada\u{7}", "control character"),
        ("a\nb", "line break"),
    ] {
        let (status, body) = app.search(&[("q", q)]).await;
        assert_eq!(status, 422, "{why}: {body}");
        assert_eq!(support::error_fields(&body), ["q"], "{why}");
    }
    // Odd, but searches: unclosed quotes, operators alone, quotes in words.
    for q in [
        "-\"a b",
        "\"ada",
        "-",
        "\"\"",
        "or",
        "o'brien",
        "a:*",
        "!(ada)",
        "\\",
        "ada & | !",
    ] {
        let (status, body) = app.search(&[("q", q)]).await;
        assert_eq!(status, 200, "{q}: {body}");
    }
    // At the limit, after trimming: fine.
    let (status, _) = app
        .search(&[("q", &format!("  {}  ", "a".repeat(100)))])
        .await;
    assert_eq!(status, 200);

    // A cursor is no one's typing: one this server did not seal is a
    // malformed request (400), not a field to correct.
    for cursor in [
        "garbage",
        "w1.1.0",
        "r0.0.0",
        "w7fc00000.1.00000000",
        &"9".repeat(500),
        "%00",
    ] {
        let (status, body) = app.search(&[("q", "ada"), ("after", cursor)]).await;
        assert_eq!((status, &body), (400, &json!("BadRequest")), "{cursor}");
    }
    // A real cursor, for another query, or on the other side.
    for i in 0..25 {
        app.index(&format!("ada{i}"), "Ada", "", "").await;
    }
    let (_, page) = app.search(&[("q", "ada")]).await;
    let next = page["next"].as_str().unwrap();
    let (status, _) = app.search(&[("q", "ada"), ("after", next)]).await;
    assert_eq!(status, 200);
    for form in [
        vec![("q", "bob"), ("after", next)],
        vec![("q", "ada"), ("before", next)],
        vec![("q", "ada"), ("after", next), ("before", next)],
    ] {
        let (status, body) = app.search(&form).await;
        assert_eq!((status, &body), (400, &json!("BadRequest")), "{form:?}");
    }
}

// --- the plan -----------------------------------------------------------------------

/// At a size where a sequential scan would be the planner's choice if the
/// indexes did not fit, each kind of query reads through its index.
#[tokio::test]
async fn every_kind_of_query_uses_its_index() {
    let app = spawn_app().await;
    let db = app.state.db.primary();
    // Large enough that reading the table is dearer than the index. The
    // name words are learnt in one statement rather than by the trigger,
    // row by row (as scripts/bench-search.sh does).
    let mut seed = db.begin().await.unwrap();
    for statement in [
        "SET LOCAL statement_timeout = 0",
        "ALTER TABLE search_documents DISABLE TRIGGER search_documents_words",
    ] {
        sqlx::query(statement).execute(&mut *seed).await.unwrap();
    }
    sqlx::query(
        "INSERT INTO search_documents (user_id, username, version, display_name, location, bio, updated_at)
         SELECT i, 'user' || i, 1,
                (ARRAY['Ada','John','Mary','Li','Olu','Grace'])[1 + i % 6] || ' ' ||
                chr(97 + i % 26) || chr(97 + (i / 26) % 26) || 'berg',
                (ARRAY['London','Lagos','Tokyo',''])[1 + i % 4],
                'writes about ' || (ARRAY['maths','gardens','compilers','birds'])[1 + i % 4],
                now() - i * interval '1 second'
         FROM generate_series(1, 100000) AS i",
    )
    .execute(&mut *seed)
    .await
    .unwrap();
    for statement in [
        "ALTER TABLE search_documents ENABLE TRIGGER search_documents_words",
        "INSERT INTO search_words (word, uses)
         SELECT w, count(*) FROM search_documents, name_words(display_name || ' ' || username) AS w
         GROUP BY w",
    ] {
        sqlx::query(statement).execute(&mut *seed).await.unwrap();
    }
    seed.commit().await.unwrap();
    sqlx::query("VACUUM ANALYZE search_documents")
        .execute(db)
        .await
        .unwrap();

    for (mode, q, index) in [
        (SearchMode::Words, "kqberg", "search_documents_document"),
        (SearchMode::Words, "grace kqb", "search_documents_document"),
        (SearchMode::Broad, "ada", "search_documents_recent"),
        (SearchMode::Fuzzy, "kqbreg", "search_documents_document"),
        (SearchMode::FuzzyBroad, "gracr", "search_documents_recent"),
        (SearchMode::Recent, "", "search_documents_recent"),
    ] {
        let mut tx = db.begin().await.unwrap();
        if matches!(mode, SearchMode::Broad | SearchMode::FuzzyBroad) {
            sqlx::query("SET LOCAL enable_bitmapscan = off")
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        let explain = format!(
            "EXPLAIN (ANALYZE, FORMAT TEXT) {}",
            app::ssr::search::sql(mode, Direction::After)
        );
        // The corrected modes run with the corrected words as their $1.
        let corrections = if mode.corrected() {
            let query = app::domain::SearchQuery::parse(q).unwrap();
            app::ssr::search::corrections(&mut tx, &query)
                .await
                .unwrap()
        } else {
            None
        };
        let first = corrections
            .as_ref()
            .map_or_else(|| q.to_owned(), |c| c.tsquery.clone());
        let statement = sqlx::query_scalar(sqlx::AssertSqlSafe(explain))
            .bind(first)
            .bind(q)
            .bind(true);
        let statement = if mode.by_time() {
            statement.bind(None::<time::OffsetDateTime>)
        } else {
            statement.bind(None::<f32>)
        };
        let statement = statement.bind(0_i64).bind(21_i64);
        let statement = match (mode, &corrections) {
            (SearchMode::Fuzzy, Some(c)) => statement
                .bind(c.words.clone())
                .bind(c.queries.clone())
                .bind(c.closeness.clone()),
            _ => statement,
        };
        let plan: Vec<String> = statement
            .fetch_all(&mut *tx)
            .await
            .unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        let plan = plan.join("\n");
        assert!(
            plan.contains(index),
            "{mode:?} {q}: not through {index}:\n{plan}"
        );
        assert!(
            !plan.contains("Seq Scan on search_documents"),
            "{mode:?} {q}:\n{plan}"
        );
    }
}

/// More matches than are worth ranking (as the planner expects): the exact username, then the
/// matches newest first, paged without repeats while rows are added.
#[tokio::test]
async fn a_query_matching_too_many_to_rank_lists_the_exact_username_then_the_newest() {
    let app = spawn_app().await;
    let many = app::ssr::search::RANK_LIMIT as i64 + 10_000;
    let mut seed = app.state.db.begin().await.unwrap();
    sqlx::query("SET LOCAL statement_timeout = 0")
        .execute(&mut *seed)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO search_documents (user_id, username, version, display_name, updated_at)
         SELECT i, 'mar' || i, 1, 'Mark ' || i, now() - i * interval '1 second'
         FROM generate_series(1, $1) AS i",
    )
    .bind(many)
    .execute(&mut *seed)
    .await
    .unwrap();
    seed.commit().await.unwrap();
    // The choice rests on the planner's estimate, from the statistics.
    sqlx::query("ANALYZE search_documents")
        .execute(app.state.db.primary())
        .await
        .unwrap();
    let exact = app.index("mar", "Someone Old", "", "").await;
    sqlx::query(
        "UPDATE search_documents SET updated_at = now() - interval '1 day' WHERE user_id = $1",
    )
    .bind(exact)
    .execute(app.state.db.primary())
    .await
    .unwrap();

    let first = app.usernames("mar").await;
    assert_eq!(&first[..3], ["mar", "mar1", "mar2"]);
    assert_eq!(first.len(), 20);

    // Three pages, with newer matches added in between: none repeats.
    let mut seen: Vec<String> = Vec::new();
    let mut after: Option<String> = None;
    for round in 0..3 {
        let mut form = vec![("q", "mar".to_owned())];
        if let Some(cursor) = &after {
            form.push(("after", cursor.clone()));
        }
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, page) = app.search(&form).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(names(&page));
        app.index(&format!("marnew{round}"), "Mark New", "", "")
            .await;
        after = Some(page["next"].as_str().expect("more pages").to_owned());
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), 60, "{seen:?}");
    assert_eq!(seen[20], "mar20", "the second page follows the first");
}

/// A typo whose corrections match more than are worth ranking (a misspelt
/// common surname): the matches newest first, paged without repeats while
/// rows are added, and counted as their own mode.
#[tokio::test]
async fn a_typo_of_a_common_name_lists_the_newest_matches() {
    let app = spawn_app().await;
    let many = app::ssr::search::FUZZY_RANK_LIMIT as i64 + 3_000;
    let mut seed = app.state.db.begin().await.unwrap();
    sqlx::query("SET LOCAL statement_timeout = 0")
        .execute(&mut *seed)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO search_documents (user_id, username, version, display_name, updated_at)
         SELECT i, 'hop' || i, 1, 'Grace Hopper', now() - i * interval '1 second'
         FROM generate_series(1, $1) AS i",
    )
    .bind(many)
    .execute(&mut *seed)
    .await
    .unwrap();
    seed.commit().await.unwrap();
    sqlx::query("ANALYZE search_documents")
        .execute(app.state.db.primary())
        .await
        .unwrap();

    let mut seen: Vec<String> = Vec::new();
    let mut after: Option<String> = None;
    for round in 0..3 {
        let mut form = vec![("q", "hoppre".to_owned())];
        if let Some(cursor) = &after {
            form.push(("after", cursor.clone()));
        }
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, page) = app.search(&form).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(names(&page));
        // A newer match meanwhile: it belongs before the pages already
        // shown, so it neither repeats nor pushes a row off.
        app.index(&format!("hopnew{round}"), "Ada Hopper", "", "")
            .await;
        after = Some(page["next"].as_str().expect("more pages").to_owned());
        assert!(
            after.as_deref().unwrap().starts_with('g'),
            "a page of the corrections by recency: {after:?}"
        );
    }
    let expected: Vec<String> = (1..=60).map(|i| format!("hop{i}")).collect();
    assert_eq!(seen, expected, "newest first, no repeats, no skips");
    let counted = app
        .metric("folio_search_queries_total{mode=\"fuzzy_broad\"}")
        .await;
    assert_eq!(counted, 3);
}

// --- typos, ranked by closeness ---------------------------------------------------

/// Two people, signed up in either order: a typo lists the nearer name
/// first (fewer edits; a swap of two letters is one), and a swap that
/// trigrams barely see still finds its name.
#[tokio::test]
async fn typos_rank_by_closeness_whatever_the_sign_up_order() {
    for order in [["annabel", "bart"], ["bart", "annabel"]] {
        let app = spawn_app().await;
        for who in order {
            match who {
                "annabel" => app.index("annabel", "Annabel Jones", "", "").await,
                _ => app.index("bart", "Bartholomew Johnson", "", "").await,
            };
        }
        let found = app.usernames("jonhson").await;
        assert_eq!(
            found.first().map(String::as_str),
            Some("bart"),
            "{order:?}: {found:?}"
        );
        let found = app.usernames("jnoes").await;
        assert_eq!(
            found.first().map(String::as_str),
            Some("annabel"),
            "{order:?}: {found:?}"
        );
        let found = app.usernames("bartholomew jnoes").await;
        assert!(found.is_empty(), "nobody is both: {found:?}");
        let found = app.usernames("annabel jnoes").await;
        assert_eq!(found, ["annabel"], "{order:?}");
    }
}

// --- what a deleted account leaves behind ------------------------------------------

/// The words typo corrections are made of come from names: a deleted
/// person's rare surname leaves with their search document.
#[tokio::test]
async fn a_deleted_persons_name_words_leave_the_correction_table() {
    let app = spawn_app_with(with_workers).await;
    let cookie = app.register("quetzalina").await;
    let edit = Edit {
        display_name: "Quetzalina Vorobyaninova",
        bio: "",
        avatar_url: "",
        location: "",
        website: "",
    };
    let (status, body) = app.update_profile(&cookie, &edit, 1).await;
    assert_eq!(status, 200, "{body}");
    let words = async || -> Vec<String> {
        sqlx::query_scalar(
            "SELECT word FROM search_words WHERE word IN ('quetzalina', 'vorobyaninova') ORDER BY word",
        )
        .fetch_all(app.state.db.primary())
        .await
        .unwrap()
    };
    wait_for("the name is learnt", DELIVERY, || async {
        words().await == ["quetzalina", "vorobyaninova"]
    })
    .await;
    // Another person shares one word: it stays for them.
    app.index("other", "Quetzalina Other", "", "").await;
    // A typo of the surname finds them, while they are here.
    assert_eq!(app.usernames("vorobyaninvoa").await, ["quetzalina"]);

    let (status, body) = status_and_json(
        app.call("delete_account", &[("password", STRONG_PASSWORD)], &cookie)
            .await,
    )
    .await;
    assert!(status == 200 || status == 303, "{status}: {body}");
    wait_for("the surname is forgotten", DELIVERY, || async {
        words().await == ["quetzalina"]
    })
    .await;
    assert!(app.usernames("vorobyaninvoa").await.is_empty());
}

// --- cost: cursors, limits, the cap ------------------------------------------------

/// The fingerprint cursors carried before they were sealed (FNV-1a of the
/// query, lower case): what a forger could compute.
fn unkeyed_tag(query: &str) -> u32 {
    query.to_lowercase().bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Cursors a client can make without the server's key: positions in a
/// mode of its choosing (a walk of the whole recency index, a ranking of
/// every match), and real cursors with their mode or one character changed.
fn forged_cursors(q: &str, real: &str) -> Vec<String> {
    let tag = unkeyed_tag(q);
    let flipped_last = {
        let (head, last) = real.split_at(real.len() - 1);
        format!("{head}{}", if last == "0" { "1" } else { "0" })
    };
    vec![
        format!("b{:x}.1.{tag:08x}", i64::MAX),
        format!("w{:x}.1.{tag:08x}", 1.0e9_f32.to_bits()),
        format!("g{:x}.1.{tag:08x}", i64::MAX),
        format!("b{}", &real[1..]),
        format!("g{}", &real[1..]),
        flipped_last,
        real.rsplit_once('.')
            .map_or_else(String::new, |(position, _)| position.to_owned()),
    ]
}

/// A forged cursor is refused before any SQL: with the index locked (any
/// statement on it would wait), each is a 400 in milliseconds.
#[tokio::test]
async fn a_forged_cursor_is_a_400_answered_before_any_sql() {
    let app = spawn_app().await;
    for i in 0..25 {
        app.index(&format!("ada{i}"), "Ada", "", "").await;
    }
    let (status, page) = app.search(&[("q", "ada")]).await;
    assert_eq!(status, 200, "{page}");
    let real = page["next"].as_str().expect("a second page").to_owned();

    let mut lock = app.state.db.primary().begin().await.unwrap();
    sqlx::query("LOCK TABLE search_documents IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    for cursor in forged_cursors("ada", &real) {
        let started = Instant::now();
        let (status, body) = app.search(&[("q", "ada"), ("after", &cursor)]).await;
        let took = started.elapsed();
        assert_eq!((status, &body), (400, &json!("BadRequest")), "{cursor}");
        assert!(took < Duration::from_millis(250), "{cursor}: {took:?}");
    }
    lock.rollback().await.unwrap();

    let (status, page) = app.search(&[("q", "ada"), ("after", &real)]).await;
    assert_eq!(status, 200, "the real cursor still works: {page}");
    assert_eq!(names(&page).len(), 5);
}

/// Forty searches at once, forged cursors asking for the dearest plans and
/// first pages of the dearest queries, while a person signs in and a
/// profile is read: those two answer, at once, and no search fails with a
/// server error.
#[tokio::test]
async fn forty_concurrent_forged_and_expensive_searches_leave_profile_reads_and_sign_ins_answering()
{
    let app = spawn_app().await;
    app.register("reader").await;
    // A real cursor first, to forge from (its mode changed, its seal kept).
    for i in 0..25 {
        app.index(&format!("a{i}"), "Ada", "", "").await;
    }
    let (status, page) = app.search(&[("q", "a")]).await;
    assert_eq!(status, 200, "{page}");
    let real = page["next"].as_str().expect("a second page").to_owned();
    // The name words are counted in one statement rather than by the
    // trigger, row by row (as scripts/bench-search.sh does).
    let mut seed = app.state.db.begin().await.unwrap();
    for statement in [
        "SET LOCAL statement_timeout = 0",
        "ALTER TABLE search_documents DISABLE TRIGGER search_documents_words",
    ] {
        sqlx::query(statement).execute(&mut *seed).await.unwrap();
    }
    sqlx::query(
        "INSERT INTO search_documents (user_id, username, version, display_name, bio, updated_at)
         SELECT 1000 + i, 'ab' || i, 1,
                (ARRAY['Ada','Alan','Anna','Amir','Aiko'])[1 + i % 5] || ' ' || chr(97 + i % 26) || 'berg',
                'about ' || chr(97 + i % 26) || 'things',
                now() - i * interval '1 second'
         FROM generate_series(1, 150000) AS i",
    )
    .execute(&mut *seed)
    .await
    .unwrap();
    for statement in [
        "ALTER TABLE search_documents ENABLE TRIGGER search_documents_words",
        "INSERT INTO search_words (word, uses)
         SELECT w, count(*) FROM search_documents, name_words(display_name || ' ' || username) AS w
         GROUP BY w
         ON CONFLICT (word) DO UPDATE SET uses = EXCLUDED.uses",
    ] {
        sqlx::query(statement).execute(&mut *seed).await.unwrap();
    }
    seed.commit().await.unwrap();
    sqlx::query("VACUUM ANALYZE search_documents")
        .execute(app.state.db.primary())
        .await
        .unwrap();

    let searches = (0..40).map(|i| {
        let app = &app;
        let forged = forged_cursors("a", &real);
        async move {
            let form: Vec<(String, String)> = match i % 4 {
                // Rank every one of 150 000 matches, or walk every row.
                0 => vec![
                    ("q".into(), "a".into()),
                    ("after".into(), forged[1].clone()),
                ],
                1 => vec![
                    ("q".into(), "a".into()),
                    ("after".into(), forged[0].clone()),
                ],
                2 => vec![("q".into(), format!("a{}", i % 3))],
                _ => vec![("q".into(), "zzqx".into())],
            };
            let form: Vec<(&str, &str)> =
                form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            app.search(&form).await
        }
    });
    let person = async {
        let started = Instant::now();
        let login = app.login("reader", STRONG_PASSWORD).await.status().as_u16();
        let signed_in = started.elapsed();
        let started = Instant::now();
        let (profile, _) = app.get_profile("reader").await;
        (login, signed_in, profile, started.elapsed())
    };
    let (answers, (login, signed_in, profile, read)) =
        tokio::join!(futures::future::join_all(searches), person);

    assert_eq!((login, profile), (200, 200));
    assert!(
        signed_in < Duration::from_secs(2),
        "sign-in took {signed_in:?}"
    );
    assert!(read < Duration::from_secs(1), "profile read took {read:?}");
    for (status, body) in &answers {
        assert!(matches!(status, 200 | 400 | 429 | 503), "{status}: {body}");
    }
    let forged = answers
        .iter()
        .step_by(4)
        .chain(answers.iter().skip(1).step_by(4));
    for (status, body) in forged {
        assert_eq!((*status, body), (400, &json!("BadRequest")));
    }
}

/// A client network has its limit of searches; an instance has its cap of
/// searches at once, past which it says "busy" at once instead of queueing.
#[tokio::test]
async fn searches_are_limited_per_client_and_capped_per_instance() {
    let app = spawn_app_with(|settings| {
        settings.service.searches_per_ip = Limit::new(4, 60);
        settings.service.search_concurrency = 1;
    })
    .await;
    app.index("ada", "Ada", "", "").await;

    // One search holds the only slot: it waits on the locked index.
    let mut lock = app.state.db.primary().begin().await.unwrap();
    sqlx::query("LOCK TABLE search_documents IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let held = tokio::spawn({
        let client = reqwest::Client::new();
        let url = app.url("/api/search_people");
        async move {
            client
                .post(url)
                .form(&[("q", "ada")])
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    wait_for(
        "a search waits on the lock",
        Duration::from_secs(10),
        || async {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(app.state.db.primary())
            .await
            .unwrap();
            waiting > 0
        },
    )
    .await;
    let started = Instant::now();
    let (status, body) = app.search(&[("q", "ada")]).await;
    let took = started.elapsed();
    assert_eq!((status, &body), (503, &json!("Unavailable")));
    assert!(took < Duration::from_millis(250), "busy took {took:?}");
    assert_eq!(
        app.metric("folio_search_refusals_total{reason=\"busy\"}")
            .await,
        1
    );
    lock.rollback().await.unwrap();
    held.await.unwrap();

    // Two searches counted so far: two more pass, the fifth is refused.
    for _ in 0..2 {
        let (status, body) = app.search(&[("q", "ada")]).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = app.search(&[("q", "ada")]).await;
    assert_eq!(status, 429, "{body}");
    assert!(body.get("RateLimited").is_some(), "{body}");
}
