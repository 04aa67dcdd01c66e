//! Accounts and sessions against OWASP ASVS level 2: cookie
//! attributes, token entropy, fixation, logout, expiry, enumeration, rate
//! limits and cross-site request forgery.

use std::time::{Duration, Instant};

use app::ssr::Limit;
use redis::AsyncCommands;
use serde_json::json;

use crate::support::{
    error_fields, session_cookie_from, set_cookie_header, sha256_hex, spawn_app, spawn_app_with,
    status_and_json, Cookie, TestApp, SESSION_COOKIE, STRONG_PASSWORD,
};

const NEW_PASSWORD: &str = "cobalt-meadow-lantern-47";
const WRONG_PASSWORD: &str = "wrong-guess-of-password";

fn is_token(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

async fn login_cookie(app: &TestApp, username: &str, password: &str) -> Cookie {
    let response = app.login(username, password).await;
    assert_eq!(response.status(), 200, "login {username}");
    let token = session_cookie_from(&response).expect("login sets the session cookie");
    assert!(is_token(&token), "{token}");
    Cookie(Some(token))
}

async fn register_with(
    app: &TestApp,
    username: &str,
    email: &str,
    password: &str,
) -> reqwest::Response {
    app.call(
        "register",
        &[
            ("username", username),
            ("email", email),
            ("password", password),
        ],
        &Cookie::default(),
    )
    .await
}

/// A request as a browser on another site would send it.
async fn post_with(
    app: &TestApp,
    path: &str,
    form: &[(&str, &str)],
    cookie: &Cookie,
    header: (&str, &str),
) -> u16 {
    let mut request = app
        .client
        .post(app.url(path))
        .form(form)
        .header(header.0, header.1);
    if let Some(token) = cookie.token() {
        request = request.header(reqwest::header::COOKIE, format!("{SESSION_COOKIE}={token}"));
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn register_sets_a_host_only_secure_session_cookie() {
    let app = spawn_app().await;

    let response = register_with(&app, "alice", "alice@example.com", STRONG_PASSWORD).await;

    assert_eq!(response.status(), 200);
    let header = set_cookie_header(&response).expect("Set-Cookie for the session");
    let mut parts = header.split("; ");
    let (name, value) = parts.next().unwrap().split_once('=').unwrap();
    assert_eq!(name, SESSION_COOKIE);
    assert!(is_token(value), "{header}");
    let attributes: Vec<&str> = parts.collect();
    let max_age = app.settings.service.session_absolute.as_secs();
    assert_eq!(
        attributes,
        vec![
            "HttpOnly",
            "Secure",
            "SameSite=Lax",
            "Path=/",
            &format!("Max-Age={max_age}")
        ],
        "{header}"
    );
    assert!(!header.to_ascii_lowercase().contains("domain"), "{header}");
}

#[tokio::test]
async fn tokens_have_256_bits_and_redis_holds_only_their_digest() {
    let app = spawn_app().await;
    app.register("alice").await;

    let first = login_cookie(&app, "alice", STRONG_PASSWORD).await;
    let second = login_cookie(&app, "alice", STRONG_PASSWORD).await;

    let (first, second) = (first.token().unwrap(), second.token().unwrap());
    assert_ne!(first, second);
    let prefix = &app.settings.service.redis_prefix;
    let mut redis = app.state.redis.clone();
    let keys: Vec<String> = redis.keys(format!("{prefix}*")).await.unwrap();
    for token in [first, second] {
        let expected = format!("{prefix}session:{}", sha256_hex(token));
        assert!(keys.contains(&expected), "{expected} not in {keys:?}");
    }
    for key in &keys {
        assert!(
            !key.contains(first) && !key.contains(second),
            "raw token in key {key}"
        );
        let kind: String = redis::cmd("TYPE")
            .arg(key)
            .query_async(&mut redis)
            .await
            .unwrap();
        if kind == "string" {
            let value: String = redis.get(key).await.unwrap();
            assert!(
                !value.contains(first) && !value.contains(second),
                "raw token in value of {key}"
            );
        }
    }
}

#[tokio::test]
async fn login_replaces_a_pre_existing_session() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;

    // Arrives with another user's valid cookie.
    let response = app
        .call(
            "login",
            &[("identifier", "alice"), ("password", STRONG_PASSWORD)],
            &bob,
        )
        .await;
    assert_eq!(response.status(), 200);
    let fresh = Cookie(session_cookie_from(&response));
    assert_ne!(fresh.token(), bob.token());
    assert_eq!(app.whoami(&bob).await, None);
    assert_eq!(app.whoami(&fresh).await.as_deref(), Some("alice"));

    // Arrives with its own valid cookie.
    let response = app
        .call(
            "login",
            &[("identifier", "alice"), ("password", STRONG_PASSWORD)],
            &alice,
        )
        .await;
    assert_eq!(response.status(), 200);
    let renewed = Cookie(session_cookie_from(&response));
    assert!(is_token(renewed.token().unwrap()));
    assert_ne!(renewed.token(), alice.token());
    assert_eq!(app.whoami(&alice).await, None);
    assert_eq!(app.whoami(&renewed).await.as_deref(), Some("alice"));
}

#[tokio::test]
async fn logout_deletes_the_server_side_session() {
    let app = spawn_app().await;
    let cookie = app.register("alice").await;
    assert_eq!(app.whoami(&cookie).await.as_deref(), Some("alice"));

    let response = app.call("logout", &[], &cookie).await;

    assert_eq!(response.status(), 200);
    let header = set_cookie_header(&response).expect("logout clears the cookie");
    assert!(
        header.starts_with(&format!("{SESSION_COOKIE}=;")),
        "{header}"
    );
    assert!(header.contains("Max-Age=0"), "{header}");
    // Replaying the old cookie (a copy kept by an attacker) is anonymous.
    assert_eq!(app.whoami(&cookie).await, None);
}

#[tokio::test]
async fn change_password_checks_the_current_one_ends_other_sessions_and_renews_this_one() {
    let app = spawn_app().await;
    let caller = app.register("alice").await;
    let other = login_cookie(&app, "alice", STRONG_PASSWORD).await;

    let wrong = app
        .call(
            "change_password",
            &[
                ("current_password", WRONG_PASSWORD),
                ("new_password", NEW_PASSWORD),
            ],
            &caller,
        )
        .await;
    let (status, body) = status_and_json(wrong).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(error_fields(&body), vec!["current_password"], "{body}");
    assert_eq!(app.whoami(&other).await.as_deref(), Some("alice"));

    let right = app
        .call(
            "change_password",
            &[
                ("current_password", STRONG_PASSWORD),
                ("new_password", NEW_PASSWORD),
            ],
            &caller,
        )
        .await;
    assert_eq!(right.status(), 200);
    let renewed = Cookie(session_cookie_from(&right));
    assert_eq!(app.whoami(&other).await, None);
    // The browser that changed it stays signed in, with a new token: the
    // one it had before (perhaps stolen) is worth nothing now.
    assert_ne!(renewed.token(), caller.token());
    assert_eq!(app.whoami(&caller).await, None);
    assert_eq!(app.whoami(&renewed).await.as_deref(), Some("alice"));
    assert_eq!(app.login("alice", NEW_PASSWORD).await.status(), 200);
    assert_eq!(app.login("alice", STRONG_PASSWORD).await.status(), 401);
}

#[tokio::test]
async fn logout_everywhere_ends_every_session() {
    let app = spawn_app().await;
    let first = app.register("alice").await;
    let second = login_cookie(&app, "alice", STRONG_PASSWORD).await;

    let response = app.call("logout_everywhere", &[], &second).await;

    let (status, ended) = status_and_json(response).await;
    assert_eq!(status, 200);
    assert_eq!(ended, json!(2));
    assert_eq!(app.whoami(&first).await, None);
    assert_eq!(app.whoami(&second).await, None);
}

#[tokio::test]
async fn sessions_are_listed_and_one_can_be_revoked() {
    let app = spawn_app().await;
    let mine = app.register("alice").await;
    let other = login_cookie(&app, "alice", STRONG_PASSWORD).await;

    let (status, list) = status_and_json(app.call("list_sessions", &[], &mine).await).await;
    assert_eq!(status, 200);
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), 2, "{list:?}");
    let current: Vec<_> = list
        .iter()
        .filter(|s| s["current"] == json!(true))
        .collect();
    assert_eq!(current.len(), 1, "{list:?}");
    assert_eq!(current[0]["id"], json!(sha256_hex(mine.token().unwrap())));
    for session in &list {
        assert!(
            !session.to_string().contains(mine.token().unwrap()),
            "token in the listing"
        );
    }
    let other_id = list.iter().find(|s| s["current"] == json!(false)).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let revoked = app
        .call("revoke_session", &[("id", &other_id)], &mine)
        .await;
    assert_eq!(revoked.status(), 200);
    assert_eq!(app.whoami(&other).await, None);
    assert_eq!(app.whoami(&mine).await.as_deref(), Some("alice"));

    let unknown = app
        .call("revoke_session", &[("id", &"0".repeat(64))], &mine)
        .await;
    let (status, body) = status_and_json(unknown).await;
    assert_eq!(status, 404);
    assert_eq!(body, json!("NotFound"));
}

#[tokio::test]
async fn an_unused_session_expires_after_the_idle_timeout() {
    let app = spawn_app_with(|s| s.service.session_idle = Duration::from_secs(1)).await;
    let idle = app.register("alice").await;
    let active = login_cookie(&app, "alice", STRONG_PASSWORD).await;
    let start = Instant::now();

    while start.elapsed() < Duration::from_millis(1800) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            app.whoami(&active).await.as_deref(),
            Some("alice"),
            "used session died after {:?}",
            start.elapsed()
        );
    }

    assert_eq!(app.whoami(&idle).await, None);
    assert_eq!(app.whoami(&active).await.as_deref(), Some("alice"));
}

#[tokio::test]
async fn a_session_ends_at_the_absolute_timeout_however_active() {
    let app = spawn_app_with(|s| {
        s.service.session_absolute = Duration::from_secs(2);
        s.service.session_idle = Duration::from_secs(3600);
    })
    .await;
    let cookie = app.register("alice").await;
    let start = Instant::now();

    while start.elapsed() < Duration::from_millis(1500) {
        assert_eq!(app.whoami(&cookie).await.as_deref(), Some("alice"));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    while start.elapsed() < Duration::from_millis(2300) {
        app.whoami(&cookie).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    assert_eq!(app.whoami(&cookie).await, None);
}

#[tokio::test]
async fn protected_functions_refuse_anonymous_callers() {
    let app = spawn_app().await;
    let calls: [(&str, &[(&str, &str)]); 6] = [
        ("list_sessions", &[]),
        (
            "change_password",
            &[
                ("current_password", STRONG_PASSWORD),
                ("new_password", NEW_PASSWORD),
            ],
        ),
        ("logout_everywhere", &[]),
        ("revoke_session", &[("id", "abc")]),
        (
            "update_profile",
            &[
                ("display_name", "Mallory"),
                ("bio", ""),
                ("avatar_url", ""),
                ("location", ""),
                ("website", ""),
                ("expected_version", "1"),
            ],
        ),
        ("my_profile", &[]),
    ];

    for (function, form) in calls {
        let (status, body) =
            status_and_json(app.call(function, form, &Cookie::default()).await).await;
        assert_eq!(status, 401, "{function}: {body}");
        assert_eq!(body, json!("Unauthorized"), "{function}");
    }
}

#[tokio::test]
async fn taken_or_malformed_usernames_and_emails_are_field_errors() {
    let app = spawn_app().await;
    app.register("carol").await;

    for (username, email, field) in [
        ("carol", "other@example.com", "username"),
        ("CaRoL", "other@example.com", "username"),
        ("dave", "carol@example.com", "email"),
        ("dave", "Carol@Example.COM", "email"),
        ("no spaces!", "erin@example.com", "username"),
        ("x", "erin@example.com", "username"),
    ] {
        let (status, body) =
            status_and_json(register_with(&app, username, email, STRONG_PASSWORD).await).await;
        assert_eq!(status, 422, "{username}/{email}: {body}");
        assert_eq!(error_fields(&body), vec![field], "{username}/{email}");
    }
}

#[tokio::test]
async fn weak_passwords_are_refused() {
    let app = spawn_app().await;

    for (username, password) in [
        ("alice", "password123"),
        ("quentin_mercer", "quentin_mercer2024"),
        ("bob", "short"),
    ] {
        let response =
            register_with(&app, username, &format!("{username}@example.com"), password).await;
        let (status, body) = status_and_json(response).await;
        assert_eq!(status, 422, "{password}: {body}");
        assert_eq!(error_fields(&body), vec!["password"], "{password}");
    }
    assert_eq!(app.login("alice", "password123").await.status(), 401);
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::test]
async fn login_failures_do_not_reveal_whether_the_account_exists() {
    let app = spawn_app_with(|s| {
        s.service.login_failures_per_account = Limit::new(100, 60);
        s.service.login_failures_per_ip = Limit::new(100, 60);
    })
    .await;
    app.register("erin").await;

    let mut bodies = Vec::new();
    let (mut unknown, mut wrong) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        for (identifier, times) in [("nobody_here", &mut unknown), ("erin", &mut wrong)] {
            let start = Instant::now();
            let response = app.login(identifier, WRONG_PASSWORD).await;
            times.push(start.elapsed());
            assert_eq!(response.status(), 401, "{identifier}");
            bodies.push(response.bytes().await.unwrap());
        }
    }

    assert!(bodies.iter().all(|b| *b == bodies[0]), "{bodies:?}");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&bodies[0]).unwrap(),
        json!("InvalidCredentials")
    );
    let (unknown, wrong) = (median(unknown), median(wrong));
    assert!(
        unknown * 3 >= wrong && wrong * 3 >= unknown,
        "unknown {unknown:?} vs wrong password {wrong:?}"
    );
}

#[tokio::test]
async fn failed_logins_are_limited_per_account() {
    let app = spawn_app_with(|s| s.service.login_failures_per_account = Limit::new(3, 60)).await;
    app.register("alice").await;

    for attempt in 1..=3 {
        assert_eq!(
            app.login("alice", WRONG_PASSWORD).await.status(),
            401,
            "attempt {attempt}"
        );
    }
    let (status, body) = status_and_json(app.login("alice", WRONG_PASSWORD).await).await;

    assert_eq!(status, 429, "{body}");
    let retry = body["RateLimited"]["retry_after_secs"]
        .as_u64()
        .unwrap_or_else(|| panic!("{body}"));
    assert!(retry > 0 && retry <= 60, "{body}");
    let (status, body) = status_and_json(app.login("alice", STRONG_PASSWORD).await).await;
    assert_eq!(
        status, 429,
        "the right password is refused too while limited: {body}"
    );
}

#[tokio::test]
async fn failed_logins_are_limited_per_client_address() {
    let app = spawn_app_with(|s| s.service.login_failures_per_ip = Limit::new(4, 60)).await;

    for name in ["user_one", "user_two", "user_three", "user_four"] {
        assert_eq!(
            app.login(name, WRONG_PASSWORD).await.status(),
            401,
            "{name}"
        );
    }
    let (status, body) = status_and_json(app.login("user_five", WRONG_PASSWORD).await).await;

    assert_eq!(status, 429, "{body}");
    assert!(body["RateLimited"]["retry_after_secs"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn concurrent_guesses_never_exceed_the_account_limit() {
    let app = spawn_app_with(|s| {
        s.service.login_failures_per_account = Limit::new(5, 60);
        s.service.login_failures_per_ip = Limit::new(1000, 60);
    })
    .await;
    app.register("alice").await;

    let responses =
        futures::future::join_all((0..30).map(|_| app.login("alice", WRONG_PASSWORD))).await;

    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        25,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn registrations_are_limited_per_client_address() {
    let app = spawn_app_with(|s| s.service.registrations_per_ip = Limit::new(2, 60)).await;
    app.register("first").await;
    app.register("second").await;

    let (status, body) =
        status_and_json(register_with(&app, "third", "third@example.com", STRONG_PASSWORD).await)
            .await;

    assert_eq!(status, 429, "{body}");
    assert!(body["RateLimited"]["retry_after_secs"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn cross_site_posts_are_refused() {
    let app = spawn_app().await;
    let cookie = app.register("alice").await;

    let forged = post_with(
        &app,
        "/api/logout",
        &[],
        &cookie,
        ("Sec-Fetch-Site", "cross-site"),
    )
    .await;
    assert_eq!(forged, 403);
    assert_eq!(app.whoami(&cookie).await.as_deref(), Some("alice"));

    let forged = post_with(
        &app,
        "/api/logout",
        &[],
        &cookie,
        ("Origin", "https://evil.example"),
    )
    .await;
    assert_eq!(forged, 403);
    assert_eq!(app.whoami(&cookie).await.as_deref(), Some("alice"));

    let form = [
        ("current_password", STRONG_PASSWORD),
        ("new_password", NEW_PASSWORD),
    ];
    let forged = post_with(
        &app,
        "/api/change_password",
        &form,
        &cookie,
        ("Sec-Fetch-Site", "cross-site"),
    )
    .await;
    assert_eq!(forged, 403);
    assert_eq!(
        app.login("alice", STRONG_PASSWORD).await.status(),
        200,
        "password unchanged"
    );
    assert_eq!(app.whoami(&cookie).await.as_deref(), Some("alice"));

    let genuine = post_with(
        &app,
        "/api/logout",
        &[],
        &cookie,
        ("Sec-Fetch-Site", "same-origin"),
    )
    .await;
    assert_eq!(genuine, 200);
    assert_eq!(app.whoami(&cookie).await, None);
}
