//! The request fuzzer: a few thousand malformed requests, generated from a
//! fixed seed (`generate.rs`), to every server function and every page the
//! router serves, plus paths no route has and raw requests. The routes come
//! from the router's own sources (`server::startup::app_routes`: server_fn's
//! registry and leptos_router's route list), and each function's field
//! names from the forms the pages render for it, so a function or page
//! added later is fuzzed without a line here.
//!
//! It asserts what Folio promises about requests it did not expect: no 5xx
//! (those are for Folio's own failures) and no connection dropped without
//! an answer, no panic anywhere in the process (the log and a hook count
//! them), `/healthz` answering throughout, no answer that repeats the
//! deserializer's words, and the data of accounts the requests do not own
//! unchanged. A test binary of its own: it installs the process-wide log
//! subscriber and panic hook.

mod generate;
#[path = "../support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use app::ssr::Limit;
use futures::StreamExt;
use generate::{Class, Identity, Probe, RawProbe, Sampler};
use support::{
    count_panics, spawn_app_with, Cookie, Edit, LogCapture, TestApp, SESSION_COOKIE,
    STRONG_PASSWORD,
};

/// The same requests on every run; change it to explore others.
const SEED: u64 = 0x00f0_110f_2026;
const PER_FUNCTION: usize = 250;
const PER_PAGE: usize = 120;
const ODD_PATHS: usize = 250;
const RAW_GENERATED: usize = 60;
/// Requests in flight at once.
const CONCURRENCY: usize = 8;
/// Between batches the fuzzing account signs in again if a probe ended its
/// session (`logout` decodes from any form body).
const BATCH: usize = 250;
const BODY_LIMIT: usize = 64 * 1024;

/// Words of serde's and server_fn's messages: an answer must not describe
/// Folio's argument types to whoever sent a bad request.
const DESERIALIZER_WORDS: &[&str] = &[
    "missing field",
    "deserializ",
    "invalid type",
    "invalid digit",
    "number too large",
    "invalid utf-8",
    "unknown variant",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_requests_never_get_a_5xx_a_panic_or_anyone_elses_data() {
    let capture = LogCapture::install_at(tracing::Level::INFO);
    let panics = count_panics();
    let generous = Limit::new(1_000_000, 60);
    let app = spawn_app_with(|s| {
        // Limits would answer most probes 429 before they reach the code
        // worth fuzzing; the limiter has tests of its own.
        s.service.login_failures_per_account = generous;
        s.service.login_failures_per_ip = generous;
        s.service.registrations_per_ip = generous;
        s.service.profile_edits_per_user = generous;
        s.service.exports_per_user = generous;
        s.service.avatar_uploads_per_user = generous;
        s.service.searches_per_ip = generous;
        // The per-instance search cap answers "busy" (503) by design, and
        // has its own test (tests/search.rs); the probes come many at once.
        s.service.search_concurrency = 1_000;
    })
    .await;

    // Arrange: two accounts the probes never act as, and the fuzzer's own.
    let alice = app.register("alice").await;
    let edit = Edit {
        display_name: "Alice \u{1F98A}",
        bio: "Line one.\nLine two.",
        avatar_url: "https://img.example.com/a.png",
        location: "Zürich",
        website: "https://alice.example",
    };
    assert_eq!(app.update_profile(&alice, &edit, 1).await.0, 200);
    let bob = app.register("bob").await;
    let mallory = app.register("mallory").await;
    // A second session, so that the account page shows a form to end it.
    assert_eq!(app.login("mallory", STRONG_PASSWORD).await.status(), 200);
    let untouched = ["alice", "bob"];
    let stored_before = app.stored_accounts(&untouched).await;
    let profiles_before = (app.get_profile("alice").await, app.get_profile("bob").await);

    let routes = server::startup::app_routes();
    assert!(routes.server_functions.len() >= 12 && !routes.pages.is_empty());
    let forms = harvest_forms(&app, &routes.pages, &mallory).await;
    let vocabulary: Vec<String> = forms
        .values()
        .flatten()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(
        vocabulary.len() >= 5,
        "the pages' forms name their fields: {forms:?}"
    );

    // The probes, all generated before the first is sent.
    let mut sampler = Sampler::new(SEED);
    let mut probes: Vec<Probe> = Vec::new();
    for (path, _method) in &routes.server_functions {
        let own = forms.get(*path).cloned().unwrap_or_default();
        let strategy = generate::function_probe(path, own, vocabulary.clone());
        probes.extend(sampler.sample(&strategy, PER_FUNCTION));
    }
    // The avatar upload is the one route that reads multipart bodies.
    let upload = app::domain::AVATAR_UPLOAD_PATH;
    let own = forms.get(upload).cloned().unwrap_or_default();
    probes.extend(sampler.sample(&generate::multipart_probe(upload, own), PER_FUNCTION));
    let usernames: Vec<String> = ["alice", "bob", "mallory", "nobody_here"]
        .map(str::to_owned)
        .to_vec();
    for page in &routes.pages {
        let strategy = generate::page_probe(page.clone(), usernames.clone());
        probes.extend(sampler.sample(&strategy, PER_PAGE));
    }
    let functions: Vec<&'static str> = routes.server_functions.iter().map(|(p, _)| *p).collect();
    probes.extend(sampler.sample(&generate::odd_path_probe(functions), ODD_PATHS));
    let mut raw = generate::fixed_raw_probes();
    raw.extend(sampler.sample(&generate::raw_probe(routes.pages.clone()), RAW_GENERATED));

    // Act, with /healthz watched throughout.
    let started = Instant::now();
    let watch = HealthWatch::start(&app);
    let report = Report::default();
    let client = client();
    let mut session = mallory.clone();
    for batch in probes.chunks(BATCH) {
        session = signed_in_again(&app, session).await;
        let token = session.token().unwrap_or_default().to_owned();
        futures::stream::iter(batch)
            .for_each_concurrent(CONCURRENCY, |probe| {
                let (client, app, report, token) = (&client, &app, &report, token.as_str());
                async move {
                    let outcome = send(client, app, probe, token).await;
                    report.record(probe, outcome);
                }
            })
            .await;
    }
    futures::stream::iter(&raw)
        .for_each_concurrent(CONCURRENCY, |probe| {
            let (app, report) = (&app, &report);
            async move {
                let status = app.raw_status(&probe.bytes).await;
                report.record_raw(probe, status);
            }
        })
        .await;
    let elapsed = started.elapsed();
    let health = watch.stop().await;

    // Assert.
    let report = report.0.into_inner().unwrap();
    eprintln!("panics seen by the hook: {}", panics.load(Ordering::SeqCst));
    eprintln!(
        "{}",
        report.summary(probes.len() + raw.len(), elapsed, &health, &forms)
    );
    assert!(
        report.failures.is_empty(),
        "{} requests were answered 5xx or not at all (first 30):\n{}",
        report.failures.len(),
        report
            .failures
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        report.echoes.is_empty(),
        "answers repeating the deserializer (first 10):\n{}",
        report
            .echoes
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        health.failures.is_empty() && health.answered >= 5,
        "/healthz stopped answering: {health:?}"
    );
    assert_eq!(panics.load(Ordering::SeqCst), 0, "panics in the process");
    assert_eq!(app.metric("folio_panics_total").await, 0);
    let log = capture.text();
    assert!(
        !log.to_lowercase().contains("panic"),
        "a panic in the log:\n{}",
        log.lines()
            .filter(|l| l.to_lowercase().contains("panic"))
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
    for class in Class::ALL {
        assert!(
            report.by_class.contains_key(class),
            "no probe of class {class:?}"
        );
    }

    // The probes reached what they are for: the decoder, and the export.
    for result in ["stored", "not_an_image"] {
        let series = format!("result=\"{result}\"");
        assert!(
            app.labelled_metric("folio_avatar_uploads_total", &series)
                .await
                > 0,
            "no upload {result}"
        );
    }
    assert!(
        app.labelled_metric(
            "folio_http_requests_total",
            r#"route="/account/export",method="GET",status="200""#
        )
        .await
            > 0,
        "no export downloaded"
    );

    assert_eq!(app.stored_accounts(&untouched).await, stored_before);
    assert_eq!(
        (app.get_profile("alice").await, app.get_profile("bob").await),
        profiles_before
    );
    assert_eq!(app.whoami(&alice).await.as_deref(), Some("alice"));
    assert_eq!(app.whoami(&bob).await.as_deref(), Some("bob"));
    assert_eq!(
        app.login("alice", STRONG_PASSWORD).await.status(),
        200,
        "and Folio still works"
    );
}

/// The field names of the forms the pages render, by the server function
/// each posts to: the pages as anyone sees them, and as the fuzzing account.
async fn harvest_forms(
    app: &TestApp,
    pages: &[String],
    signed_in: &Cookie,
) -> BTreeMap<String, Vec<String>> {
    let mut forms: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for page in pages {
        let path = page.replace("{username}", "alice");
        for cookie in [None, signed_in.token()] {
            let mut request = app.client.get(app.url(&path));
            if let Some(token) = cookie {
                request = request.header("cookie", format!("{SESSION_COOKIE}={token}"));
            }
            let html = request.send().await.unwrap().text().await.unwrap();
            for (action, names) in forms_in(&html) {
                forms.entry(action).or_default().extend(names);
            }
        }
    }
    forms
        .into_iter()
        .map(|(action, names)| (action, names.into_iter().collect()))
        .collect()
}

/// `(action, field names)` of every `<form>` in `html` (Folio's own
/// markup: double-quoted attributes).
fn forms_in(html: &str) -> Vec<(String, Vec<String>)> {
    let mut forms = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<form") {
        rest = &rest[start..];
        let end = rest.find("</form>").unwrap_or(rest.len());
        let form = &rest[..end];
        let tag_end = form.find('>').unwrap_or(form.len());
        if let Some(action) = attribute_values(&form[..tag_end], "action").first() {
            forms.push((action.clone(), attribute_values(&form[tag_end..], "name")));
        }
        rest = &rest[end..];
    }
    forms
}

fn attribute_values(html: &str, name: &str) -> Vec<String> {
    let needle = format!(" {name}=\"");
    html.match_indices(&needle)
        .filter_map(|(at, _)| {
            let value = &html[at + needle.len()..];
            value.find('"').map(|end| value[..end].to_owned())
        })
        .collect()
}

/// The fuzzing account's session, signed in again if a probe ended it.
async fn signed_in_again(app: &TestApp, session: Cookie) -> Cookie {
    if app.whoami(&session).await.is_some() {
        return session;
    }
    let response = app.login("mallory", STRONG_PASSWORD).await;
    Cookie(support::session_cookie_from(&response))
}

enum Outcome {
    Answered { status: u16, body: Vec<u8> },
    Unsendable,
    Failed(String),
}

/// A connection per request: the server closes a connection whose request
/// body it did not read (a 405, a 413), and a pooled client may send the
/// next request on it at that moment. That race is HTTP/1.1's; with fresh
/// connections, a connection closed without an answer is the server's.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn send(client: &reqwest::Client, app: &TestApp, probe: &Probe, token: &str) -> Outcome {
    let Ok(method) = reqwest::Method::from_bytes(probe.method.as_bytes()) else {
        return Outcome::Unsendable;
    };
    let Ok(url) = reqwest::Url::parse(&format!("{}{}", app.address, probe.target)) else {
        return Outcome::Unsendable;
    };
    let mut request = client.request(method, url).body(probe.body.clone());
    for (name, value) in &probe.headers {
        if let (Ok(name), Ok(value)) = (
            reqwest::header::HeaderName::from_bytes(name.as_bytes()),
            reqwest::header::HeaderValue::from_bytes(value),
        ) {
            request = request.header(name, value);
        }
    }
    let cookie = match probe.identity {
        Identity::Anonymous => None,
        Identity::ForgedCookie if probe.body.len().is_multiple_of(2) => Some("0".repeat(64)),
        Identity::ForgedCookie => Some("not-a-token".to_owned()),
        Identity::SignedIn => Some(token.to_owned()),
    };
    if let Some(value) = cookie {
        request = request.header("cookie", format!("{SESSION_COOKIE}={value}"));
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            match response.bytes().await {
                Ok(body) => Outcome::Answered {
                    status,
                    body: body.to_vec(),
                },
                Err(error) => Outcome::Failed(format!("body of a {status}: {error}")),
            }
        }
        // A client still sending a body past the limit may see the
        // connection reset by the early 413: HTTP/1.1's race, not Folio's.
        Err(_) if probe.body.len() > BODY_LIMIT => Outcome::Answered {
            status: 413,
            body: Vec::new(),
        },
        // A URL the `url` crate parses but `http` refuses as a URI never
        // leaves the client: unsendable, like one neither parses.
        Err(error) if error.is_builder() => Outcome::Unsendable,
        Err(error) => Outcome::Failed(format!("{error:?}")),
    }
}

#[derive(Default)]
struct Report(Mutex<Findings>);

#[derive(Default)]
struct Findings {
    by_class: BTreeMap<Class, BTreeMap<u16, usize>>,
    unsendable: usize,
    failures: Vec<String>,
    echoes: Vec<String>,
}

impl Report {
    fn record(&self, probe: &Probe, outcome: Outcome) {
        let mut findings = self.0.lock().unwrap();
        match outcome {
            Outcome::Unsendable => findings.unsendable += 1,
            Outcome::Failed(error) => findings.failures.push(format!("{probe:?} -> {error}")),
            Outcome::Answered { status, body } => {
                *findings
                    .by_class
                    .entry(probe.class)
                    .or_default()
                    .entry(status)
                    .or_default() += 1;
                if status >= 500 {
                    let body = String::from_utf8_lossy(&body);
                    findings.failures.push(format!(
                        "{probe:?} -> {status} {}",
                        &body[..body.len().min(200)]
                    ));
                }
                let text = String::from_utf8_lossy(&body).to_lowercase();
                if probe.target.starts_with("/api/")
                    && DESERIALIZER_WORDS.iter().any(|w| text.contains(w))
                {
                    findings
                        .echoes
                        .push(format!("{probe:?} -> {status} {text}"));
                }
            }
        }
    }

    fn record_raw(&self, probe: &RawProbe, status: Option<u16>) {
        let mut findings = self.0.lock().unwrap();
        match status {
            Some(status) => {
                *findings
                    .by_class
                    .entry(Class::Raw)
                    .or_default()
                    .entry(status)
                    .or_default() += 1;
                if status >= 500 {
                    findings.failures.push(format!("raw {probe:?} -> {status}"));
                }
            }
            None if probe.may_close => {
                *findings
                    .by_class
                    .entry(Class::Raw)
                    .or_default()
                    .entry(0)
                    .or_default() += 1;
            }
            None => findings
                .failures
                .push(format!("raw {probe:?} -> closed without an answer")),
        }
    }
}

impl Findings {
    fn summary(
        &self,
        sent: usize,
        elapsed: Duration,
        health: &Health,
        forms: &BTreeMap<String, Vec<String>>,
    ) -> String {
        let mut lines = vec![format!(
            "request fuzzer: {sent} requests (seed {SEED:#x}) in {:.1} s; {} not sendable by an HTTP client; /healthz answered {} times",
            elapsed.as_secs_f64(),
            self.unsendable,
            health.answered,
        )];
        for (class, statuses) in &self.by_class {
            let total: usize = statuses.values().sum();
            let statuses: Vec<String> = statuses
                .iter()
                .map(|(status, n)| match status {
                    0 => format!("closed by hyper ×{n}"),
                    _ => format!("{status} ×{n}"),
                })
                .collect();
            lines.push(format!("  {class:?}: {total} ({})", statuses.join(", ")));
        }
        lines.push(format!("  fields from the pages' forms: {forms:?}"));
        lines.join("\n")
    }
}

impl Class {
    const ALL: &'static [Class] = &[
        Class::Fields,
        Class::Encoding,
        Class::RandomBody,
        Class::HugeBody,
        Class::ContentType,
        Class::WrongMethod,
        Class::FormPost,
        Class::Headers,
        Class::PageParams,
        Class::PageQuery,
        Class::OddPath,
        Class::Raw,
        Class::Multipart,
    ];
}

#[derive(Debug, Default)]
struct Health {
    answered: usize,
    failures: Vec<String>,
}

/// Asks `/healthz` every 100 ms until stopped; each must answer 200 within
/// 5 s.
struct HealthWatch {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Health>,
}

impl HealthWatch {
    fn start(app: &TestApp) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (client, url) = (app.client.clone(), app.url("/healthz"));
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut health = Health::default();
                while !stop.load(Ordering::SeqCst) {
                    let asked = Instant::now();
                    let answer = client
                        .get(&url)
                        .timeout(Duration::from_secs(5))
                        .send()
                        .await;
                    match answer {
                        Ok(r) if r.status() == 200 => health.answered += 1,
                        Ok(r) => health.failures.push(format!("status {}", r.status())),
                        Err(e) => health
                            .failures
                            .push(format!("after {:?}: {e}", asked.elapsed())),
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                health
            }
        });
        Self { stop, task }
    }

    async fn stop(self) -> Health {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap()
    }
}

#[test]
fn forms_are_read_from_the_markup() {
    let html = r#"<header><form action="/api/logout" method="post"><button>x</button></form></header>
        <form action="/api/login" method="post" class="form"><input id="a" name="identifier"/>
        <textarea id="b" name="password"></textarea></form><meta name="description">"#;
    assert_eq!(
        forms_in(html),
        vec![
            ("/api/logout".to_owned(), vec![]),
            (
                "/api/login".to_owned(),
                vec!["identifier".to_owned(), "password".to_owned()]
            ),
        ]
    );
}
