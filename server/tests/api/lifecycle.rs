//! The account lifecycle over email: mail transport (SMTP against a real
//! server, the development mailbox), the forgotten password and the
//! verification of the address, changing it, deleting the account, and the
//! export.

use std::time::{Duration, Instant};

use app::ssr::accounts::tokens::Purpose;
use server::config::MailTransport;

use crate::support::{
    sha256_hex, spawn_app, spawn_app_mailing, spawn_app_with, status_and_json, Cookie,
    STRONG_PASSWORD,
};

const NEW_PASSWORD: &str = "copper-lantern-orchard-51";

// --- mail transport -----------------------------------------------------------

#[tokio::test]
async fn the_dev_mailbox_is_routed_only_when_it_is_the_mailer() {
    // What a release build without SMTP_URL gets (config::MailTransport).
    let off = spawn_app_with(|s| s.mail = MailTransport::Off).await;
    let (status, _) = off.page("/dev/mailbox", &Cookie::default()).await;
    assert_eq!(status, 404);

    let (smtp, _sink) = spawn_app_mailing(|_| {}).await;
    let (status, _) = smtp.page("/dev/mailbox", &Cookie::default()).await;
    assert_eq!(status, 404, "SMTP configured: no mailbox");

    let dev = spawn_app_with(|s| s.mail = MailTransport::DevMailbox).await;
    let (status, body) = dev.page("/dev/mailbox", &Cookie::default()).await;
    assert_eq!(status, 200);
    assert!(body.contains("No mail yet"), "{body}");
}

#[tokio::test]
async fn the_dev_mailbox_shows_the_mail_with_its_link() {
    let app = spawn_app_with(|s| {
        s.mail = MailTransport::DevMailbox;
        s.event_workers = true;
    })
    .await;
    app.register("ada").await;
    let response = app
        .call(
            "request_password_reset",
            &[("email", "ada@example.com")],
            &Cookie::default(),
        )
        .await;
    assert_eq!(response.status(), 200);
    let page = wait_for_page(&app, "Choose a new Folio password").await;
    let link = format!("{}/reset?token=", app.state.config.public_url);
    assert!(page.contains(&format!("<a href=\"{link}")), "{page}");
    assert!(page.contains("ada@example.com"));
}

#[tokio::test]
async fn mail_a_server_refuses_is_retried_then_dead_lettered_without_holding_up_the_rest() {
    // Nothing listens there: every send fails.
    let closed = crate::support::free_port();
    let app = spawn_app_with(move |s| {
        s.mail = MailTransport::Smtp(format!("smtp://127.0.0.1:{closed}"));
        s.event_workers = true;
        s.service.events.max_deliveries = 2;
    })
    .await;
    app.register("ada").await;
    crate::support::wait_for(
        "the mail dead-lettered",
        Duration::from_secs(30),
        || async {
            app.labelled_metric("folio_dead_letters_total", r#"group="mail""#)
                .await
                == 1
        },
    )
    .await;
    assert_eq!(app.applied_by("mail").await, 0, "nothing counts as sent");
    // What the FolioMailFailing alert reads: both attempts failed.
    assert_eq!(app.metric("folio_mail_failures_total").await, 2);
    // The request never waited for it, and the other consumers go on.
    crate::support::wait_for("indexed", Duration::from_secs(15), || async {
        app.count("SELECT count(*) FROM search_documents").await == 1
    })
    .await;
}

async fn wait_for_page(app: &crate::support::TestApp, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, body) = app.page("/dev/mailbox", &Cookie::default()).await;
        if body.contains(text) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{text:?} not in the mailbox: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// --- forgotten password -------------------------------------------------------

#[tokio::test]
async fn a_reset_mail_arrives_over_smtp_and_its_link_sets_a_new_password() {
    let (app, sink) = spawn_app_mailing(|_| {}).await;
    let cookie = app.register("ada").await;

    let response = app
        .call(
            "request_password_reset",
            &[("email", "ada@example.com")],
            &Cookie::default(),
        )
        .await;
    assert_eq!(response.status(), 200);

    // After the sign-up's verification mail.
    let mail = sink.wait_for("ada@example.com", 2).await.remove(1);
    assert_eq!(mail.subject, "Choose a new Folio password");
    assert!(mail.from.starts_with("no-reply@"), "{}", mail.from);
    assert!(mail.message_id.ends_with("@folio>"), "{}", mail.message_id);
    // Links from the configured public address, never from a Host header.
    let prefix = format!("{}/reset?token=", app.state.config.public_url);
    let link = mail.link(&prefix).expect("a reset link in the text body");
    let html = mail.html.as_deref().expect("an HTML body");
    assert!(html.contains(&format!("href=\"{link}\"")), "{html}");
    let token = link.strip_prefix(&prefix).unwrap().to_owned();
    assert_eq!(token.len(), 64);

    // Only the hash is stored; the raw token is nowhere in the database.
    let hashes: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT token_hash FROM account_tokens WHERE purpose = 'password_reset'",
    )
    .fetch_all(app.state.db.primary())
    .await
    .unwrap();
    assert_eq!(hashes.len(), 1);
    assert_eq!(hex(&hashes[0]), sha256_hex(&token));
    let mentions: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM outbox WHERE payload::text LIKE '%' || $1 || '%')
              + (SELECT count(*) FROM account_tokens WHERE encode(token_hash, 'hex') = $1)",
    )
    .bind(&token)
    .fetch_one(app.state.db.primary())
    .await
    .unwrap();
    assert_eq!(mentions, 0);

    // The page works, and sends no Referer anywhere.
    let response = app
        .client
        .get(app.url(&format!("/reset?token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().get("referrer-policy").unwrap(),
        "no-referrer"
    );
    let body = response.text().await.unwrap();
    assert!(body.contains("name=\"new_password\""), "{body}");

    let response = app
        .call(
            "reset_password",
            &[("token", &token), ("new_password", NEW_PASSWORD)],
            &Cookie::default(),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert!(
        crate::support::session_cookie_from(&response).is_none(),
        "a reset signs no one in"
    );
    // Every session ended: the cookie from before is refused.
    assert_eq!(app.whoami(&cookie).await, None);
    assert_eq!(app.login("ada", STRONG_PASSWORD).await.status(), 401);
    assert_eq!(app.login("ada", NEW_PASSWORD).await.status(), 200);
    // And the "your password was changed" mail follows.
    let mails = sink.wait_for("ada@example.com", 3).await;
    assert_eq!(mails[2].subject, "Your Folio password was changed");
    assert!(app.metric("folio_mail_sent_total").await >= 2);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn forgot_answers_the_same_in_comparable_time_for_known_and_unknown_addresses() {
    let app = spawn_app_with(|s| {
        s.service.reset_requests_per_ip = app::ssr::Limit::new(1000, 3600);
        s.service.reset_requests_per_address = app::ssr::Limit::new(1000, 3600);
    })
    .await;
    app.register("ada").await;

    let ask = |email: &'static str| {
        let app = &app;
        async move {
            let start = Instant::now();
            let response = app
                .call(
                    "request_password_reset",
                    &[("email", email)],
                    &Cookie::default(),
                )
                .await;
            let status = response.status().as_u16();
            let body = response.text().await.unwrap();
            (status, body, start.elapsed())
        }
    };
    // Warm up both paths (connections, prepared statements).
    ask("ada@example.com").await;
    ask("nobody@example.com").await;
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        let (status_a, body_a, time_a) = ask("ada@example.com").await;
        let (status_b, body_b, time_b) = ask("nobody@example.com").await;
        assert_eq!((status_a, &body_a), (status_b, &body_b));
        assert_eq!(status_a, 200);
        known.push(time_a);
        unknown.push(time_b);
    }
    let median = |times: &mut Vec<Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    let (known, unknown) = (median(&mut known), median(&mut unknown));
    assert!(
        known < unknown * 3 && unknown < known * 3,
        "medians: known {known:?}, unknown {unknown:?}"
    );
    // The work differs only where nobody sees it: an event for the account.
    assert_eq!(
        app.events_of_type("password_reset.requested").await.len(),
        11
    );

    // Without JavaScript too: the same redirect.
    let a = app
        .form_post("request_password_reset", &[("email", "ada@example.com")])
        .await;
    let b = app
        .form_post("request_password_reset", &[("email", "nobody@example.com")])
        .await;
    assert_eq!(a, "/forgot?sent=1");
    assert_eq!(a, b);
    let (status, page) = app.page(&a, &Cookie::default()).await;
    assert_eq!(status, 200);
    assert!(page.contains("If an account uses this address"), "{page}");
}

#[tokio::test]
async fn forgot_refuses_a_malformed_address_and_is_rate_limited() {
    let app = spawn_app_with(|s| {
        s.service.reset_requests_per_address = app::ssr::Limit::new(2, 3600);
    })
    .await;
    let (status, body) = status_and_json(
        app.call(
            "request_password_reset",
            &[("email", "not an address")],
            &Cookie::default(),
        )
        .await,
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(crate::support::error_fields(&body), ["email"]);
    for _ in 0..2 {
        let response = app
            .call(
                "request_password_reset",
                &[("email", "x@example.com")],
                &Cookie::default(),
            )
            .await;
        assert_eq!(response.status(), 200);
    }
    let response = app
        .call(
            "request_password_reset",
            &[("email", "x@example.com")],
            &Cookie::default(),
        )
        .await;
    assert_eq!(response.status(), 429);
}

#[tokio::test]
async fn two_concurrent_redemptions_of_one_link_give_exactly_one_success() {
    let app = spawn_app().await;
    app.register("ada").await;
    for round in 0..3 {
        let token = app.issue_link_token("ada", Purpose::PasswordReset).await;
        let password = format!("{NEW_PASSWORD}-{round}");
        let form = [
            ("token", token.as_str()),
            ("new_password", password.as_str()),
        ];
        let anonymous = Cookie::default();
        let (a, b) = tokio::join!(
            app.call("reset_password", &form, &anonymous),
            app.call("reset_password", &form, &anonymous)
        );
        let mut statuses = [a.status().as_u16(), b.status().as_u16()];
        statuses.sort();
        assert_eq!(statuses, [200, 410], "round {round}");
        assert_eq!(
            app.events_of_type("password.changed").await.len(),
            round + 1
        );
    }
}

#[tokio::test]
async fn expired_used_replaced_forged_and_malformed_links_each_get_a_clear_page() {
    let app = spawn_app().await;
    app.register("ada").await;
    let page = |token: String| {
        let app = &app;
        async move {
            app.page(&format!("/reset?token={token}"), &Cookie::default())
                .await
        }
    };

    let (status, body) = page("abc123".into()).await;
    assert_eq!(status, 400);
    assert!(body.contains("incomplete or damaged"), "{body}");

    let (status, body) = page("ab".repeat(32)).await;
    assert_eq!(status, 404);
    assert!(body.contains("This link is not valid"), "{body}");

    let expired = app.issue_link_token("ada", Purpose::PasswordReset).await;
    sqlx::query(
        "UPDATE account_tokens SET created_at = now() - interval '31 minutes',
                expires_at = now() - interval '1 minute'
         WHERE token_hash = sha256(convert_to($1, 'UTF8'))",
    )
    .bind(&expired)
    .execute(app.state.db.primary())
    .await
    .unwrap();
    let (status, body) = page(expired.clone()).await;
    assert_eq!(status, 410);
    assert!(body.contains("has expired"), "{body}");

    let replaced = app.issue_link_token("ada", Purpose::PasswordReset).await;
    let used = app.issue_link_token("ada", Purpose::PasswordReset).await;
    let (status, body) = page(replaced.clone()).await;
    assert_eq!(status, 410);
    assert!(body.contains("replaced by a newer one"), "{body}");

    let (status, _) = page(used.clone()).await;
    assert_eq!(status, 200, "the newest link works");
    let response = app
        .call(
            "reset_password",
            &[("token", &used), ("new_password", NEW_PASSWORD)],
            &Cookie::default(),
        )
        .await;
    assert_eq!(response.status(), 200);
    let (status, body) = page(used.clone()).await;
    assert_eq!(status, 410);
    assert!(body.contains("already used"), "{body}");

    // The server function says the same, typed: never a 500.
    for (token, status, problem) in [
        ("abc123".to_owned(), 400, "Malformed"),
        ("ab".repeat(32), 404, "Unknown"),
        (expired, 410, "Expired"),
        (replaced, 410, "Replaced"),
        (used, 410, "Used"),
    ] {
        let (got, body) = status_and_json(
            app.call(
                "reset_password",
                &[
                    ("token", &token),
                    ("new_password", "another-fine-phrase-42"),
                ],
                &Cookie::default(),
            )
            .await,
        )
        .await;
        assert_eq!(got, status, "{problem}: {body}");
        assert_eq!(body, serde_json::json!({ "Link": problem }));
    }
}

#[tokio::test]
async fn without_javascript_a_failed_reset_returns_to_its_page_with_the_error() {
    let app = spawn_app().await;
    app.register("ada").await;
    let token = app.issue_link_token("ada", Purpose::PasswordReset).await;
    // The page sends no Referer: the server names the page to go back to.
    let location = app
        .form_post(
            "reset_password",
            &[("token", &token), ("new_password", "short")],
        )
        .await;
    assert!(
        location.starts_with(&format!("/reset?token={token}&__path=")),
        "{location}"
    );
    let (status, body) = app.page(&location, &Cookie::default()).await;
    assert_eq!(status, 200);
    assert!(body.contains("at least 8 characters"), "{body}");

    let location = app
        .form_post(
            "reset_password",
            &[("token", &token), ("new_password", NEW_PASSWORD)],
        )
        .await;
    assert_eq!(location, "/signin?reset=1");
    let (_, body) = app.page(&location, &Cookie::default()).await;
    assert!(body.contains("Sign in with your new password"), "{body}");
}

#[tokio::test]
async fn a_password_change_revokes_outstanding_reset_links() {
    let app = spawn_app().await;
    let cookie = app.register("ada").await;
    let token = app.issue_link_token("ada", Purpose::PasswordReset).await;
    let response = app
        .call(
            "change_password",
            &[
                ("current_password", STRONG_PASSWORD),
                ("new_password", NEW_PASSWORD),
            ],
            &cookie,
        )
        .await;
    assert_eq!(response.status(), 200);
    let (status, body) = app
        .page(&format!("/reset?token={token}"), &Cookie::default())
        .await;
    assert_eq!(status, 410);
    assert!(body.contains("replaced by a newer one"), "{body}");
}

// --- email verification -------------------------------------------------------

#[tokio::test]
async fn sign_up_mails_a_link_that_verifies_the_address() {
    let (app, sink) = spawn_app_mailing(|_| {}).await;
    let cookie = app.register("ada").await;
    let verified = || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT email_verified_at IS NOT NULL FROM users WHERE username = 'ada'",
        )
        .fetch_one(app.state.db.primary())
        .await
        .unwrap()
    };
    assert!(!verified().await);
    // Unverified accounts work; the account page asks to confirm.
    let (status, page) = app.page("/account", &cookie).await;
    assert_eq!(status, 200);
    assert!(page.contains("data-testid=\"verify-banner\""), "{page}");

    let mail = sink.wait_for("ada@example.com", 1).await.remove(0);
    assert_eq!(mail.subject, "Confirm your Folio email address");
    let prefix = format!("{}/verify?token=", app.state.config.public_url);
    let link = mail.link(&prefix).expect("a verification link");
    let token = link.strip_prefix(&prefix).unwrap();
    assert!(mail.html.unwrap().contains(&format!("href=\"{link}\"")));

    // Following it needs no session: the link is the proof.
    let (status, page) = app
        .page(&format!("/verify?token={token}"), &Cookie::default())
        .await;
    assert_eq!(status, 200);
    assert!(page.contains("data-testid=\"email-verified\""), "{page}");
    assert!(verified().await);
    let (_, page) = app.page("/account", &cookie).await;
    assert!(!page.contains("verify-banner"), "{page}");

    // Once: a second visit says the link was used.
    let (status, page) = app
        .page(&format!("/verify?token={token}"), &Cookie::default())
        .await;
    assert_eq!(status, 410);
    assert!(page.contains("already used"), "{page}");
    let (status, _) = app.page("/verify?token=nope", &Cookie::default()).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn resending_the_verification_link_replaces_the_old_one_and_is_rate_limited() {
    let (app, sink) = spawn_app_mailing(|s| {
        s.service.verification_resends_per_user = app::ssr::Limit::new(2, 3600);
    })
    .await;
    let cookie = app.register("ada").await;
    let first = sink.wait_for("ada@example.com", 1).await.remove(0);
    for _ in 0..2 {
        let response = app.call("resend_verification", &[], &cookie).await;
        assert_eq!(response.status(), 200);
    }
    let response = app.call("resend_verification", &[], &cookie).await;
    assert_eq!(response.status(), 429);
    let mails = sink.wait_for("ada@example.com", 3).await;
    let prefix = format!("{}/verify?token=", app.state.config.public_url);
    let old = first.link(&prefix).unwrap();
    let newest = mails[2].link(&prefix).unwrap();
    let (status, page) = app
        .page(
            old.strip_prefix(&app.state.config.public_url).unwrap(),
            &Cookie::default(),
        )
        .await;
    assert_eq!(status, 410);
    assert!(page.contains("replaced by a newer one"), "{page}");
    let (status, _) = app
        .page(
            newest.strip_prefix(&app.state.config.public_url).unwrap(),
            &Cookie::default(),
        )
        .await;
    assert_eq!(status, 200);
    // Without JavaScript: back to the account page, which says it was sent.
    let other = app.register("bob").await;
    let response = app
        .client
        .post(app.url("/api/resend_verification"))
        .header(reqwest::header::ACCEPT, "text/html")
        .header(
            reqwest::header::COOKIE,
            format!(
                "{}={}",
                crate::support::SESSION_COOKIE,
                other.token().unwrap()
            ),
        )
        .send()
        .await
        .unwrap();
    assert!(response.status().is_redirection());
    assert_eq!(
        response.headers()["location"],
        "/account?verification_sent=1"
    );
    // Signed out, nothing to resend.
    let response = app
        .call("resend_verification", &[], &Cookie::default())
        .await;
    assert_eq!(response.status(), 401);
}

// --- deleting the account -----------------------------------------------------

#[tokio::test]
async fn deleting_needs_the_password() {
    let app = spawn_app().await;
    let cookie = app.register("ada").await;
    for (password, message) in [
        ("", "Enter your password."),
        ("wrong-password-1", "Your password is incorrect."),
    ] {
        let (status, body) = status_and_json(
            app.call("delete_account", &[("password", password)], &cookie)
                .await,
        )
        .await;
        assert_eq!(status, 422);
        assert_eq!(body["Validation"]["password"], message);
    }
    assert_eq!(app.whoami(&cookie).await.as_deref(), Some("ada"));
    let response = app
        .call(
            "delete_account",
            &[("password", STRONG_PASSWORD)],
            &Cookie::default(),
        )
        .await;
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn deleting_removes_the_account_everywhere_within_seconds() {
    let app = spawn_app_with(|s| s.event_workers = true).await;
    let peer = app.spawn_peer_with(|s| s.event_workers = false).await;
    let cookie = app.register("ada").await;
    let phone = app.login_from("ada", crate::support::PHONE).await;
    let upload = app
        .upload_avatar(
            &cookie,
            &crate::support::jpeg(&crate::support::halves(300, 200)),
        )
        .await;
    assert_eq!(upload.status(), 200, "{}", upload.text().await.unwrap());
    assert!(!app.media_files().await.is_empty());
    // Wait until search has the profile, and warm every cache: both
    // instances' pages, Redis, the stored pages.
    crate::support::wait_for("indexed", Duration::from_secs(15), || async {
        app.count("SELECT count(*) FROM search_documents").await == 1
    })
    .await;
    for instance in [&app, &peer] {
        for _ in 0..2 {
            let (status, _) = instance.page("/u/ada", &Cookie::default()).await;
            assert_eq!(status, 200);
        }
    }

    let response = app
        .call("delete_account", &[("password", STRONG_PASSWORD)], &cookie)
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        crate::support::session_cookie_from(&response).as_deref(),
        Some("")
    );

    // Every device signed out; nothing of the account left in Postgres.
    assert_eq!(app.whoami(&cookie).await, None);
    assert_eq!(app.whoami(&phone).await, None);
    for table in [
        "SELECT count(*) FROM users",
        "SELECT count(*) FROM profiles",
        "SELECT count(*) FROM known_devices",
        "SELECT count(*) FROM account_tokens",
    ] {
        assert_eq!(app.count(table).await, 0, "{table}");
    }
    // Both instances answer 404 within seconds (at once here: the L1s
    // heard of it by pub/sub, and Redis's entry is gone).
    for instance in [&app, &peer] {
        crate::support::wait_for("404", Duration::from_secs(5), || async {
            instance.page("/u/ada", &Cookie::default()).await.0 == 404
        })
        .await;
        assert_eq!(instance.get_profile("ada").await.0, 404);
    }
    // The consumers forget it: search document, security history, picture.
    crate::support::wait_for("forgotten", Duration::from_secs(15), || async {
        app.count("SELECT count(*) FROM search_documents").await == 0
            && app.count("SELECT count(*) FROM account_activity").await == 0
            && app.media_files().await.is_empty()
    })
    .await;
    let (_, results) = app.page("/people?q=ada", &Cookie::default()).await;
    assert!(!results.contains("/u/ada\""), "{results}");
    assert_eq!(app.login("ada", STRONG_PASSWORD).await.status(), 401);

    // The name rests: nobody takes it at once.
    let (status, body) = status_and_json(app.try_register("ada").await).await;
    assert_eq!(status, 422);
    assert_eq!(body["Validation"]["username"], "This username is taken.");
    drop(peer);
}

// --- export -------------------------------------------------------------------

#[tokio::test]
async fn a_signed_in_user_downloads_their_data_as_json() {
    let app = spawn_app_with(|s| s.event_workers = true).await;
    let cookie = app.register("ada").await;
    let phone = app.login_from("ada", crate::support::PHONE).await;
    crate::support::wait_for(
        "the new sign-in in the history",
        Duration::from_secs(15),
        || async { app.count("SELECT count(*) FROM account_activity").await == 1 },
    )
    .await;

    let download = |cookie: &Cookie| {
        let mut request = app.client.get(app.url("/account/export"));
        if let Some(token) = cookie.token() {
            request = request.header(
                reqwest::header::COOKIE,
                format!("{}={token}", crate::support::SESSION_COOKIE),
            );
        }
        request.send()
    };
    let response = download(&cookie).await.unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"folio-ada.json\""
    );
    assert!(
        headers["cache-control"]
            .to_str()
            .unwrap()
            .contains("no-store"),
        "{headers:?}"
    );
    let text = response.text().await.unwrap();
    let data: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(data["account"]["username"], "ada");
    assert_eq!(data["account"]["email"], "ada@example.com");
    assert_eq!(data["account"]["email_verified"], false);
    assert_eq!(data["profile"]["username"], "ada");
    assert_eq!(data["sessions"].as_array().unwrap().len(), 2);
    assert_eq!(data["activity"][0]["kind"], "NewSignIn");
    // No secret of any kind: no hash, no session token.
    assert!(!text.contains("argon2"), "{text}");
    for token in [cookie.token().unwrap(), phone.token().unwrap()] {
        assert!(!text.contains(token));
    }

    // Signed out: to the sign-in page, nothing else.
    let response = download(&Cookie::default()).await.unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/signin");
}

// --- changing the address -----------------------------------------------------

#[tokio::test]
async fn changing_the_address_needs_the_password_and_happens_on_confirmation() {
    let (app, sink) = spawn_app_mailing(|_| {}).await;
    let cookie = app.register("ada").await;
    app.register("bob").await;
    let ask = |password: &'static str, new_email: &'static str| {
        let app = &app;
        let cookie = cookie.clone();
        async move {
            status_and_json(
                app.call(
                    "request_email_change",
                    &[("confirm_password", password), ("new_email", new_email)],
                    &cookie,
                )
                .await,
            )
            .await
        }
    };
    for (password, new_email, field, message) in [
        (
            "wrong-password-1",
            "ada@new.example",
            "confirm_password",
            "Your password is incorrect.",
        ),
        (
            STRONG_PASSWORD,
            "not an address",
            "new_email",
            "Enter a valid email address.",
        ),
        (
            STRONG_PASSWORD,
            "ada@example.com",
            "new_email",
            "This is already your address.",
        ),
    ] {
        let (status, body) = ask(password, new_email).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["Validation"][field], message, "{body}");
    }
    let (status, _) = ask(STRONG_PASSWORD, "ada@new.example").await;
    assert_eq!(status, 200);

    // A link to the new address, a notice to the current one; nothing
    // changes yet.
    let confirm = sink.wait_for("ada@new.example", 1).await.remove(0);
    assert_eq!(confirm.subject, "Confirm your new Folio email address");
    let notices = sink.wait_for("ada@example.com", 2).await;
    let notice = notices
        .iter()
        .find(|m| m.subject == "A change of your Folio email address was asked for")
        .expect("a notice to the current address");
    assert!(notice.text.as_deref().unwrap().contains("ada@new.example"));
    assert_eq!(
        app.login("ada@example.com", STRONG_PASSWORD).await.status(),
        200
    );

    let prefix = format!("{}/confirm-email?token=", app.state.config.public_url);
    let link = confirm.link(&prefix).expect("a confirmation link");
    let path = link.strip_prefix(&app.state.config.public_url).unwrap();
    // Opening the link asks; the button (a form post) confirms.
    let (status, page) = app.page(path, &Cookie::default()).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("data-testid=\"confirm-email-form\""),
        "{page}"
    );
    let token = link.rsplit_once("token=").unwrap().1.to_owned();
    let location = app
        .form_post("confirm_email_change", &[("token", &token)])
        .await;
    let (status, page) = app.page(&location, &Cookie::default()).await;
    assert_eq!(status, 200);
    assert!(page.contains("data-testid=\"email-changed\""), "{page}");
    let (email, verified): (String, bool) = sqlx::query_as(
        "SELECT email, email_verified_at IS NOT NULL FROM users WHERE username = 'ada'",
    )
    .fetch_one(app.state.db.primary())
    .await
    .unwrap();
    assert_eq!((email.as_str(), verified), ("ada@new.example", true));
    assert_eq!(
        app.login("ada@example.com", STRONG_PASSWORD).await.status(),
        401
    );
    assert_eq!(
        app.login("ada@new.example", STRONG_PASSWORD).await.status(),
        200
    );
    // The old address is told it happened.
    let old = sink.wait_for("ada@example.com", 3).await;
    assert!(old
        .iter()
        .any(|m| m.subject == "Your Folio email address was changed"));
    // Once only.
    let location = app
        .form_post("confirm_email_change", &[("token", &token)])
        .await;
    let (status, page) = app.page(&location, &Cookie::default()).await;
    assert_eq!(status, 410);
    assert!(page.contains("already used"), "{page}");
}

#[tokio::test]
async fn an_address_taken_before_confirmation_is_not_moved_to() {
    let app = spawn_app().await;
    app.register("ada").await;
    let user_id = app.user_id("ada").await;
    let mut tx = app.state.db.begin().await.unwrap();
    let token =
        app::ssr::accounts::tokens::issue_email_change(&mut tx, user_id, "carol@example.com")
            .await
            .unwrap();
    tx.commit().await.unwrap();
    app.register("carol").await; // carol@example.com, meanwhile
    let (status, page) = app
        .page(
            &format!("/confirm-email?token={}", token.as_str()),
            &Cookie::default(),
        )
        .await;
    assert_eq!(status, 409);
    assert!(page.contains("Another account uses this address"), "{page}");
    let email: String = sqlx::query_scalar("SELECT email FROM users WHERE username = 'ada'")
        .fetch_one(app.state.db.primary())
        .await
        .unwrap();
    assert_eq!(email, "ada@example.com");
}
