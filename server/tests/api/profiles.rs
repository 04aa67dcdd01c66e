//! Public profiles: the DTO, cache-aside reads, invalidation,
//! validation, optimistic concurrency, stampede protection and Redis outages.

use std::time::{Duration, Instant};

use app::ssr::Limit;
use serde_json::json;

use crate::support::{
    error_fields, spawn_app, spawn_app_with, status_and_json, Cookie, Edit, RedisProcess, TestApp,
    PLAIN, SESSION_COOKIE,
};

#[tokio::test]
async fn a_new_profile_is_public_data_only() {
    let app = spawn_app().await;
    app.register("frank").await;

    let (status, profile) = app.get_profile("frank").await;

    assert_eq!(status, 200);
    assert_eq!(
        profile,
        json!({
            "username": "frank",
            "display_name": "frank",
            "bio": "",
            "avatar_url": null,
            "location": null,
            "website": null,
            "version": 1,
        })
    );
    let text = profile.to_string();
    assert!(
        !text.contains("email") && !text.contains("password") && !text.contains("example.com"),
        "{text}"
    );
}

#[tokio::test]
async fn profiles_are_read_through_the_cache() {
    let app = spawn_app().await;
    app.register("frank").await;
    assert_eq!(app.metric("folio_profile_db_queries_total").await, 0);

    assert_eq!(app.get_profile("frank").await.0, 200);
    assert_eq!(app.metric("folio_profile_db_queries_total").await, 1);
    assert_eq!(app.metric("folio_profile_cache_misses_total").await, 1);
    assert_eq!(app.metric("folio_profile_cache_hits_total").await, 0);

    assert_eq!(app.get_profile("frank").await.0, 200);
    assert_eq!(app.metric("folio_profile_db_queries_total").await, 1);
    assert_eq!(app.metric("folio_profile_cache_hits_total").await, 1);
}

#[tokio::test]
async fn an_update_is_visible_to_the_next_read() {
    let app = spawn_app().await;
    let cookie = app.register("frank").await;
    assert_eq!(app.get_profile("frank").await.1["display_name"], "frank"); // now cached

    let edit = Edit {
        display_name: "Frank Zappa",
        bio: "Composer.\nGuitarist.",
        avatar_url: "https://img.example.com/frank.png",
        location: "Baltimore",
        website: "http://frank.example.org/",
    };
    let (status, saved) = app.update_profile(&cookie, &edit, 1).await;
    assert_eq!(status, 200, "{saved}");

    let (status, profile) = app.get_profile("frank").await;
    assert_eq!(status, 200);
    assert_eq!(
        profile,
        json!({
            "username": "frank",
            "display_name": "Frank Zappa",
            "bio": "Composer.\nGuitarist.",
            "avatar_url": "https://img.example.com/frank.png",
            "location": "Baltimore",
            "website": "http://frank.example.org/",
            "version": 2,
        })
    );
    assert_eq!(saved, profile);
}

#[tokio::test]
async fn without_replicas_every_read_goes_to_the_primary() {
    let app = spawn_app_with(|s| s.service.profile_cache_enabled = false).await;
    let cookie = app.register("frank").await;

    assert_eq!(app.get_profile("frank").await.0, 200);
    assert_eq!(app.get_profile_as("frank", &cookie).await.0, 200);

    assert_eq!(app.db_reads().await, (0, 2));
    for reason in ["error", "timeout", "lagging", "conflict"] {
        assert_eq!(app.replica_fallbacks(reason).await, 0, "{reason}");
    }
}

#[tokio::test]
async fn unknown_names_are_cached_as_absent() {
    let app = spawn_app().await;

    let first = app.get_profile("nobody_here").await;
    let second = app.get_profile("nobody_here").await;

    assert_eq!(first, (404, json!("NotFound")));
    assert_eq!(second, (404, json!("NotFound")));
    assert_eq!(app.metric("folio_profile_db_queries_total").await, 1);
}

#[tokio::test]
async fn invalid_fields_are_reported_each_and_nothing_is_saved() {
    let app = spawn_app().await;
    let cookie = app.register("frank").await;
    let (_, before) = app.get_profile("frank").await;

    let long_bio = "a".repeat(501);
    let edit = Edit {
        display_name: "   ",
        bio: &long_bio,
        avatar_url: "http://x.com/a.png",
        location: "Berlin",
        website: "https://frank.example.org",
    };
    let (status, body) = app.update_profile(&cookie, &edit, 1).await;

    assert_eq!(status, 422, "{body}");
    assert_eq!(
        error_fields(&body),
        vec!["avatar_url", "bio", "display_name"],
        "{body}"
    );
    assert_eq!(app.get_profile("frank").await, (200, before));
    let (status, mine) = status_and_json(app.call("my_profile", &[], &cookie).await).await;
    assert_eq!(status, 200);
    assert_eq!(mine["version"], 1);
}

#[tokio::test]
async fn a_bio_of_500_non_ascii_characters_is_accepted() {
    let app = spawn_app().await;
    let cookie = app.register("frank").await;
    let bio = "é".repeat(500);

    let (status, body) = app
        .update_profile(&cookie, &Edit { bio: &bio, ..PLAIN }, 1)
        .await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(app.get_profile("frank").await.1["bio"], json!(bio));
}

#[tokio::test]
async fn a_stale_version_is_a_conflict() {
    let app = spawn_app().await;
    let cookie = app.register("frank").await;

    let (first, _) = app
        .update_profile(
            &cookie,
            &Edit {
                display_name: "First tab",
                ..PLAIN
            },
            1,
        )
        .await;
    let (second, body) = app
        .update_profile(
            &cookie,
            &Edit {
                display_name: "Second tab",
                ..PLAIN
            },
            1,
        )
        .await;

    assert_eq!(first, 200);
    assert_eq!(second, 409, "{body}");
    assert_eq!(body, json!({ "Conflict": { "current_version": 2 } }));
    assert_eq!(
        app.get_profile("frank").await.1["display_name"],
        "First tab"
    );
}

#[tokio::test]
async fn a_user_can_only_edit_their_own_profile() {
    let app = spawn_app().await;
    app.register("alice").await;
    let bob = app.register("bob").await;
    let (_, alice_before) = app.get_profile("alice").await;

    let (status, saved) = app
        .update_profile(
            &bob,
            &Edit {
                display_name: "Hacked",
                bio: "pwned",
                ..PLAIN
            },
            1,
        )
        .await;

    assert_eq!(status, 200);
    assert_eq!(saved["username"], "bob");
    assert_eq!(app.get_profile("alice").await, (200, alice_before));
    assert_eq!(app.get_profile("bob").await.1["display_name"], "Hacked");
}

#[tokio::test]
async fn a_cold_stampede_queries_postgres_once() {
    let app = spawn_app().await;
    app.register("frank").await;

    let form = [("username", "frank")];
    let anonymous = Cookie::default();
    let reads = (0..200).map(|_| app.call("get_profile", &form, &anonymous));
    let responses = futures::future::join_all(reads).await;

    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(app.metric("folio_profile_db_queries_total").await, 1);
}

#[tokio::test]
async fn an_update_on_one_instance_reaches_the_in_process_cache_of_another() {
    let a = spawn_app().await;
    // A long in-process TTL: only the invalidation message can refresh B.
    let b = a
        .spawn_peer_with(|s| s.service.profile_l1_ttl = Duration::from_secs(600))
        .await;
    let cookie = a.register("frank").await;
    assert_eq!(b.get_profile("frank").await.1["display_name"], "frank");
    assert_eq!(b.get_profile("frank").await.1["display_name"], "frank");
    assert!(
        b.metric("folio_profile_l1_hits_total").await >= 1,
        "B answers from its in-process cache"
    );

    let edit = Edit {
        display_name: "Frank Zappa",
        ..PLAIN
    };
    let (status, saved) = a.update_profile(&cookie, &edit, 1).await;
    assert_eq!(status, 200, "{saved}");

    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let (status, profile) = b.get_profile("frank").await;
        assert_eq!(status, 200);
        if profile == saved {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B still serves {profile} a second after the update"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn reads_survive_redis_going_away() {
    let mut redis = RedisProcess::start();
    let url = redis.url();
    let app = spawn_app_with(|s| s.redis_url = url).await;
    app.register("frank").await;
    let (status, cached) = app.get_profile("frank").await;
    assert_eq!(status, 200);

    redis.stop();
    assert!(!redis.answers_ping());
    // The in-process cache answers until this instance notices that its
    // invalidation subscription is gone (then it is cleared and bypassed):
    // what follows is the path without any cache.
    assert!(app.state.profiles.l1_live());
    let deadline = Instant::now() + Duration::from_secs(2);
    while app.state.profiles.l1_live() {
        assert!(
            Instant::now() < deadline,
            "the lost subscription went unnoticed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (status, profile) = app.get_profile("frank").await;

    assert_eq!(status, 200, "{profile}");
    assert_eq!(profile, cached);
    assert!(app.metric("folio_profile_cache_errors_total").await > 0);
    assert_eq!(app.metric("folio_profile_db_queries_total").await, 2);
}

#[tokio::test]
async fn profile_edits_are_rate_limited() {
    let app = spawn_app_with(|s| s.service.profile_edits_per_user = Limit::new(2, 60)).await;
    let cookie = app.register("frank").await;

    assert_eq!(app.update_profile(&cookie, &PLAIN, 1).await.0, 200);
    assert_eq!(app.update_profile(&cookie, &PLAIN, 2).await.0, 200);
    let (status, body) = app.update_profile(&cookie, &PLAIN, 3).await;

    assert_eq!(status, 429, "{body}");
    assert!(
        body["RateLimited"]["retry_after_secs"].as_u64().unwrap() > 0,
        "{body}"
    );
    assert_eq!(app.get_profile("frank").await.1["version"], 3);
}

#[tokio::test]
async fn anonymous_profile_pages_revalidate_with_an_etag() {
    let app = spawn_app().await;
    let cookie = app.register("etag_user").await;
    let page = |tag: Option<String>| {
        let mut request = app.client.get(app.url("/u/etag_user"));
        if let Some(tag) = tag {
            request = request.header("if-none-match", tag);
        }
        request.send()
    };

    let first = page(None).await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["cache-control"], "public, max-age=30");
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    let again = page(Some(etag.clone())).await.unwrap();
    assert_eq!(again.status(), 304);

    let saved = app
        .call(
            "update_profile",
            &[
                ("display_name", "Etag"),
                ("bio", "new"),
                ("avatar_url", ""),
                ("location", ""),
                ("website", ""),
                ("expected_version", "1"),
            ],
            &cookie,
        )
        .await;
    assert_eq!(saved.status(), 200);
    let after_edit = page(Some(etag.clone())).await.unwrap();
    assert_eq!(after_edit.status(), 200);
    assert_ne!(after_edit.headers()["etag"].to_str().unwrap(), etag);
}

/// An anonymous visit to a profile page: status, the CSP nonce, the body.
async fn visit(app: &TestApp, path: &str, cookie: &Cookie) -> (u16, String, String) {
    let mut request = app.client.get(app.url(path));
    if let Some(token) = cookie.token() {
        request = request.header("cookie", format!("{SESSION_COOKIE}={token}"));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.unwrap();
    let policy = headers["content-security-policy"].to_str().unwrap();
    // Everything about an unexpected answer, to diagnose a rare failure
    // seen once in a full parallel run (a response without the page's CSP).
    let nonce = policy
        .split("'nonce-")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .unwrap_or_else(|| {
            panic!("no nonce in {policy}; status {status}, headers {headers:?}, body {body}")
        })
        .to_owned();
    (status, nonce, body)
}

#[tokio::test]
async fn anonymous_profile_pages_are_rendered_once_per_version() {
    let app = spawn_app().await;
    let cookie = app.register("page_user").await;

    let (first_status, first_nonce, first) = visit(&app, "/u/page_user", &Cookie::default()).await;
    let (second_status, second_nonce, second) =
        visit(&app, "/u/page_user", &Cookie::default()).await;

    assert_eq!((first_status, second_status), (200, 200));
    assert_eq!(app.metric("folio_page_cache_misses_total").await, 1);
    assert_eq!(app.metric("folio_page_cache_hits_total").await, 1);
    // The stored page is served with a nonce of its own, everywhere.
    assert_ne!(first_nonce, second_nonce);
    assert!(first.contains(&first_nonce), "{first}");
    assert!(second.contains(&second_nonce) && !second.contains(&first_nonce));
    assert_eq!(
        first.replace(&first_nonce, "NONCE"),
        second.replace(&second_nonce, "NONCE")
    );

    let edit = Edit {
        bio: "Fresh words.",
        ..PLAIN
    };
    let (status, saved) = app.update_profile(&cookie, &edit, 1).await;
    assert_eq!(status, 200, "{saved}");
    let (_, _, after_edit) = visit(&app, "/u/page_user", &Cookie::default()).await;

    assert!(after_edit.contains("Fresh words."), "{after_edit}");
    assert_eq!(app.metric("folio_page_cache_misses_total").await, 2);
}

#[tokio::test]
async fn signed_in_visitors_get_a_page_of_their_own() {
    let app = spawn_app().await;
    let cookie = app.register("page_user").await;
    visit(&app, "/u/page_user", &Cookie::default()).await;
    visit(&app, "/u/page_user", &Cookie::default()).await;

    let (status, _, page) = visit(&app, "/u/page_user", &cookie).await;

    assert_eq!(status, 200);
    assert!(page.contains("data-testid=\"sign-out\""), "{page}");
    assert_eq!(app.metric("folio_page_cache_hits_total").await, 1);
    assert_eq!(app.metric("folio_page_cache_misses_total").await, 1);
    let (_, _, anonymous) = visit(&app, "/u/page_user", &Cookie::default()).await;
    assert!(!anonymous.contains("data-testid=\"sign-out\""));
}

#[tokio::test]
async fn an_edit_on_one_instance_refreshes_the_stored_page_of_another() {
    let a = spawn_app().await;
    let b = a
        .spawn_peer_with(|s| s.service.profile_l1_ttl = Duration::from_secs(600))
        .await;
    let cookie = a.register("page_user").await;
    visit(&b, "/u/page_user", &Cookie::default()).await;
    visit(&b, "/u/page_user", &Cookie::default()).await;
    assert_eq!(b.metric("folio_page_cache_hits_total").await, 1);

    let edit = Edit {
        bio: "Written on A.",
        ..PLAIN
    };
    assert_eq!(a.update_profile(&cookie, &edit, 1).await.0, 200);

    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let (status, _, page) = visit(&b, "/u/page_user", &Cookie::default()).await;
        assert_eq!(status, 200);
        if page.contains("Written on A.") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B still serves the old page a second after the edit"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
