//! Sign-in throttling that never locks the owner out: device cookies.
//! Strangers' wrong passwords lock the account for browsers that never
//! signed in to it; the owner's browser (its device cookie) still signs in;
//! a device's own wrong passwords lock only that device; a forged or
//! foreign cookie counts as none; the owner is told of the attack.

use std::time::Duration;

use app::ssr::Limit;

use crate::support::{
    session_cookie_from, spawn_app_mailing, spawn_app_with, status_and_json, Cookie, TestApp,
    STRONG_PASSWORD,
};

pub(super) const WRONG: &str = "not-the-password-1";
pub(super) const NEW_PASSWORD: &str = "copper-lantern-orchard-51";
pub(super) const DEVICE_COOKIE: &str = "__Host-folio_device";

pub(super) fn tight(settings: &mut server::config::Settings) {
    settings.service.login_failures_per_account = Limit::new(3, 900);
    settings.service.login_failures_per_device = Limit::new(3, 900);
    settings.service.login_failures_per_ip = Limit::new(1_000, 900);
    settings.service.registrations_per_ip = Limit::new(1_000, 900);
}

/// The device cookie a response sets, if any.
pub(super) fn device_cookie_from(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix(&format!("{DEVICE_COOKIE}=")))
        .map(|v| v.split(';').next().unwrap_or("").to_owned())
}

impl TestApp {
    /// A sign-in from a browser holding `device` (its device cookie).
    async fn login_on(
        &self,
        device: Option<&str>,
        username: &str,
        password: &str,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(self.url("/api/login"))
            .form(&[("identifier", username), ("password", password)]);
        if let Some(device) = device {
            request = request.header(reqwest::header::COOKIE, format!("{DEVICE_COOKIE}={device}"));
        }
        request.send().await.expect("request sent")
    }

    /// Signs up `username`: the session and the device cookie it got.
    async fn register_both(&self, username: &str) -> (Cookie, String) {
        let response = self.try_register(username).await;
        assert_eq!(response.status(), 200);
        let session = Cookie(session_cookie_from(&response));
        let device = device_cookie_from(&response).expect("sign-up sets a device cookie");
        (session, device)
    }

    /// Locks `username` for browsers without its device cookie (the
    /// account limit of `tight`).
    async fn lock_out_strangers(&self, username: &str) {
        for _ in 0..3 {
            assert_eq!(self.login_on(None, username, WRONG).await.status(), 401);
        }
        let (status, body) =
            status_and_json(self.login_on(None, username, STRONG_PASSWORD).await).await;
        assert_eq!(status, 429, "{body}");
    }

    /// Signs up `username` and returns the device cookie the browser got.
    async fn register_device(&self, username: &str) -> String {
        let response = self.try_register(username).await;
        assert_eq!(response.status(), 200);
        let device = device_cookie_from(&response).expect("sign-up sets a device cookie");
        let header = response
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(DEVICE_COOKIE))
            .unwrap()
            .to_owned();
        for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/", "Max-Age="] {
            assert!(header.contains(attribute), "{header}");
        }
        device
    }
}

#[tokio::test]
async fn the_owners_browser_signs_in_while_strangers_are_locked_out() {
    let app = spawn_app_with(tight).await;
    let device = app.register_device("alice").await;

    // Strangers guess until the account is locked for browsers without a
    // device cookie: even the right password is refused there.
    for _ in 0..3 {
        assert_eq!(app.login_on(None, "alice", WRONG).await.status(), 401);
    }
    let (status, body) = status_and_json(app.login_on(None, "alice", STRONG_PASSWORD).await).await;
    assert_eq!(status, 429, "{body}");

    // The owner's browser still signs in, and keeps its device cookie
    // (sent again, for another lifetime): a sign-in does not mint a second
    // device for a browser that already is one.
    let response = app.login_on(Some(&device), "alice", STRONG_PASSWORD).await;
    assert_eq!(response.status(), 200);
    let renewed = device_cookie_from(&response).expect("the device cookie, refreshed");
    assert_eq!(renewed, device);
    // By email too: the cookie names the account, not what was typed.
    let by_email = app
        .login_on(Some(&renewed), "alice@example.com", STRONG_PASSWORD)
        .await;
    assert_eq!(by_email.status(), 200);

    // Strangers stay locked out.
    let (status, _) = status_and_json(app.login_on(None, "alice", STRONG_PASSWORD).await).await;
    assert_eq!(status, 429);
}

#[tokio::test]
async fn a_forged_or_foreign_device_cookie_counts_as_none() {
    let app = spawn_app_with(tight).await;
    let alices = app.register_device("alice").await;
    let bobs = app.register_device("bob").await;
    for _ in 0..3 {
        app.login_on(None, "alice", WRONG).await;
    }

    let (id, rest) = alices.split_once('.').unwrap();
    let (nonce, signature) = rest.split_once('.').unwrap();
    let flipped = format!(
        "{}{}",
        &signature[..63],
        if signature.ends_with('0') { "1" } else { "0" }
    );
    let forged = [
        format!("{id}.{nonce}.{flipped}"), // signature changed
        format!("{}.{nonce}.{signature}", id.parse::<i64>().unwrap() + 1), // another account's id
        format!("{id}.{}.{signature}", "0".repeat(32)), // another nonce
        "garbage".to_owned(),
        "1.2.3.4".to_owned(),
        bobs.clone(), // valid, but Bob's browser's
    ];
    for cookie in &forged {
        let (status, body) =
            status_and_json(app.login_on(Some(cookie), "alice", STRONG_PASSWORD).await).await;
        assert_eq!(status, 429, "{cookie}: {body}");
    }
    // Bob's own cookie still works for Bob, and Alice's for Alice.
    assert_eq!(
        app.login_on(Some(&bobs), "bob", STRONG_PASSWORD)
            .await
            .status(),
        200
    );
    assert_eq!(
        app.login_on(Some(&alices), "alice", STRONG_PASSWORD)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn wrong_passwords_on_one_device_lock_only_that_device() {
    let app = spawn_app_with(tight).await;
    let phone = app.register_device("alice").await;
    let laptop = device_cookie_from(&app.login_on(None, "alice", STRONG_PASSWORD).await)
        .expect("a second browser's cookie");

    for _ in 0..3 {
        assert_eq!(
            app.login_on(Some(&phone), "alice", WRONG).await.status(),
            401
        );
    }
    let (status, _) =
        status_and_json(app.login_on(Some(&phone), "alice", STRONG_PASSWORD).await).await;
    assert_eq!(status, 429, "the phone is locked");

    // The laptop and a browser without a cookie are not: the phone's
    // mistakes did not count against the account.
    assert_eq!(
        app.login_on(Some(&laptop), "alice", STRONG_PASSWORD)
            .await
            .status(),
        200
    );
    assert_eq!(
        app.login_on(None, "alice", STRONG_PASSWORD).await.status(),
        200
    );
}

#[tokio::test]
async fn the_owner_is_told_once_when_strangers_lock_the_account() {
    let (app, sink) = spawn_app_mailing(tight).await;
    let device = app.register_device("alice").await;
    let cookie = Cookie(session_cookie_from(
        &app.login_on(Some(&device), "alice", STRONG_PASSWORD).await,
    ));

    for _ in 0..3 {
        app.login_on(None, "alice", WRONG).await;
    }
    // Refused twice more: reported once.
    for _ in 0..2 {
        assert_eq!(app.login_on(None, "alice", WRONG).await.status(), 429);
    }

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let activity = loop {
        let (status, body) = status_and_json(app.call("list_activity", &[], &cookie).await).await;
        assert_eq!(status, 200, "{body}");
        if body
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["kind"] == "SignInsBlocked"))
        {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no activity entry after 30 s: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let blocked = activity
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "SignInsBlocked")
        .count();
    assert_eq!(blocked, 1, "{activity}");

    // The verification mail of the sign-up, then the notice.
    let mails = sink.wait_for("alice@example.com", 2).await;
    let notice = mails
        .iter()
        .find(|m| m.subject.contains("guessing"))
        .unwrap_or_else(|| panic!("no notice among {mails:?}"));
    assert!(notice.text.as_deref().unwrap_or("").contains("/forgot"));
}

#[tokio::test]
async fn a_device_cookie_dies_with_the_credentials_it_was_issued_under() {
    let app = spawn_app_with(tight).await;
    let (session, device) = app.register_both("alice").await;

    // The owner changes the password: this browser gets a device cookie
    // under the new credentials; the old one is worth nothing.
    let changed = app
        .call(
            "change_password",
            &[
                ("current_password", STRONG_PASSWORD),
                ("new_password", NEW_PASSWORD),
            ],
            &session,
        )
        .await;
    assert_eq!(changed.status(), 200);
    let renewed = device_cookie_from(&changed).expect("a device cookie for the new password");
    assert_ne!(renewed, device);
    let session = Cookie(session_cookie_from(&changed));

    app.lock_out_strangers("alice").await;
    let (status, body) =
        status_and_json(app.login_on(Some(&device), "alice", NEW_PASSWORD).await).await;
    assert_eq!(
        status, 429,
        "the old password's cookie is no cookie: {body}"
    );
    let response = app.login_on(Some(&renewed), "alice", NEW_PASSWORD).await;
    assert_eq!(response.status(), 200);

    // "Sign out everywhere" forgets every browser too.
    let ended = app.call("logout_everywhere", &[], &session).await;
    assert_eq!(ended.status(), 200);
    let (status, body) =
        status_and_json(app.login_on(Some(&renewed), "alice", NEW_PASSWORD).await).await;
    assert_eq!(
        status, 429,
        "signed out everywhere, forgotten everywhere: {body}"
    );
}

#[tokio::test]
async fn devices_are_capped_per_account_and_expire_unused() {
    let app = spawn_app_with(tight).await;
    let first = app.register_device("alice").await;
    // Ten more browsers sign in: the least recently used device goes.
    let mut latest = Vec::new();
    for _ in 0..10 {
        let response = app.login_on(None, "alice", STRONG_PASSWORD).await;
        assert_eq!(response.status(), 200);
        latest.push(device_cookie_from(&response).expect("a device cookie"));
    }
    let newest = latest.pop().unwrap();

    app.lock_out_strangers("alice").await;
    let (status, _) =
        status_and_json(app.login_on(Some(&first), "alice", STRONG_PASSWORD).await).await;
    assert_eq!(status, 429, "the oldest of eleven devices is forgotten");
    assert_eq!(
        app.login_on(Some(&newest), "alice", STRONG_PASSWORD)
            .await
            .status(),
        200
    );

    // A device unused for longer than its life is forgotten too.
    sqlx::query("UPDATE trusted_devices SET last_used_at = now() - interval '400 days'")
        .execute(app.state.db.primary())
        .await
        .expect("devices are kept in Postgres");
    let (status, _) =
        status_and_json(app.login_on(Some(&newest), "alice", STRONG_PASSWORD).await).await;
    assert_eq!(status, 429, "an expired device is no device");
}

#[tokio::test]
async fn trusted_attempts_still_meet_the_per_network_limit() {
    let app = spawn_app_with(|settings| {
        tight(settings);
        // The device itself would never lock: only the network's limit,
        // four times the strangers' for browsers that signed in before,
        // stops a pile of cookies from guessing without end.
        settings.service.login_failures_per_device = Limit::new(1_000, 900);
        settings.service.login_failures_per_ip = Limit::new(3, 900);
    })
    .await;
    let device = app.register_device("alice").await;
    for attempt in 0..12 {
        let status = app.login_on(Some(&device), "alice", WRONG).await.status();
        assert_eq!(status, 401, "attempt {attempt}");
    }
    let (status, body) = status_and_json(app.login_on(Some(&device), "alice", WRONG).await).await;
    assert_eq!(status, 429, "{body}");
}

#[tokio::test]
async fn a_locked_device_is_reported_like_other_guessing() {
    let (app, sink) = spawn_app_mailing(tight).await;
    let (session, device) = app.register_both("alice").await;

    for _ in 0..3 {
        assert_eq!(
            app.login_on(Some(&device), "alice", WRONG).await.status(),
            401
        );
    }
    let (status, _) =
        status_and_json(app.login_on(Some(&device), "alice", STRONG_PASSWORD).await).await;
    assert_eq!(status, 429, "the device is locked");
    assert!(
        app.labelled_metric(
            "folio_rate_limit_rejections_total",
            "limiter=\"login:device\""
        )
        .await
            >= 1
    );

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = status_and_json(app.call("list_activity", &[], &session).await).await;
        assert_eq!(status, 200, "{body}");
        if body
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["kind"] == "SignInsBlocked"))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no activity entry after 30 s: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mails = sink.wait_for("alice@example.com", 2).await;
    assert!(
        mails.iter().any(|m| m.subject.contains("guessing")),
        "{mails:?}"
    );
}
