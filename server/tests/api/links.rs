//! Mailed links and the credentials they were issued under (issue 23 items 1
//! and 12, issue 24 item 4): a link dies when the account's credentials
//! move, the address-change confirmation is a button press, the old address
//! can cancel a change, the mail consumer mints links only for events of the
//! outbox, and a mailed link's token is committed before the mail leaves.

use std::time::Duration;

use app::ssr::accounts::tokens::{self, Purpose};
use redis::AsyncCommands;

use crate::support::{
    session_cookie_from, sha256_hex, spawn_app, spawn_app_mailing, status_and_json, wait_for,
    Cookie, SmtpSink, TestApp, STRONG_PASSWORD,
};

const NEW_PASSWORD: &str = "copper-lantern-orchard-51";

fn token_of(link: &str) -> String {
    link.rsplit_once("token=")
        .map(|(_, token)| token.to_owned())
        .expect("a token in the link")
}

/// The attack of issue 23: someone signs up with another person's address,
/// asks to move the account to an address of their own and keeps that link;
/// the real owner of the address recovers the account with "forgot
/// password"; the kept link must not move the account away afterwards.
#[tokio::test]
async fn an_address_change_link_asked_for_before_a_reset_cannot_take_the_account() {
    let (app, sink) = spawn_app_mailing(|_| {}).await;
    // "ada@example.com" belongs to Ada; Mallory signed up with it.
    let mallory = app.register("ada").await;
    let (status, body) = status_and_json(
        app.call(
            "request_email_change",
            &[
                ("confirm_password", STRONG_PASSWORD),
                ("new_email", "mallory@evil.example"),
            ],
            &mallory,
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let kept = sink.wait_for("mallory@evil.example", 1).await.remove(0);
    let kept = token_of(
        &kept
            .link(&format!(
                "{}/confirm-email?token=",
                app.state.config.public_url
            ))
            .expect("a confirmation link"),
    );

    // Ada recovers "her" account by mail and sets a password of her own.
    let response = app
        .call(
            "request_password_reset",
            &[("email", "ada@example.com")],
            &Cookie::default(),
        )
        .await;
    assert_eq!(response.status(), 200);
    // Her sign-up's verification mail, the notice of the change, the link.
    let reset = sink
        .wait_for("ada@example.com", 3)
        .await
        .into_iter()
        .find_map(|m| m.link(&format!("{}/reset?token=", app.state.config.public_url)))
        .expect("a reset link");
    let response = app
        .call(
            "reset_password",
            &[("token", &token_of(&reset)), ("new_password", NEW_PASSWORD)],
            &Cookie::default(),
        )
        .await;
    assert_eq!(response.status(), 200);

    // Mallory's kept link: refused, with no session needed to say so.
    let (status, body) = status_and_json(
        app.call(
            "confirm_email_change",
            &[("token", &kept)],
            &Cookie::default(),
        )
        .await,
    )
    .await;
    assert_eq!(status, 410, "{body}");
    assert_eq!(body, serde_json::json!({ "Link": "Replaced" }));
    let email: String = sqlx::query_scalar("SELECT email FROM users WHERE username = 'ada'")
        .fetch_one(app.state.db.primary())
        .await
        .unwrap();
    assert_eq!(email, "ada@example.com");
}

/// Every live link of each kind, issued as the mail consumer issues them.
async fn issue_all(app: &TestApp, username: &str) -> Vec<(Purpose, String)> {
    let user_id = app.user_id(username).await;
    let mut issued = Vec::new();
    for purpose in [Purpose::PasswordReset, Purpose::EmailVerification] {
        issued.push((purpose, app.issue_link_token(username, purpose).await));
    }
    let mut tx = app.state.db.begin().await.unwrap();
    let change = tokens::issue_email_change(&mut tx, user_id, "elsewhere@example.net")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    issued.push((Purpose::EmailChange, change.as_str().to_owned()));
    issued
}

/// What a link's page or server function says about it now.
async fn link_status(app: &TestApp, purpose: Purpose, token: &str) -> u16 {
    let function = match purpose {
        Purpose::PasswordReset => "check_reset_link",
        Purpose::EmailVerification => "verify_email",
        // Asking, not confirming: the check the confirmation page makes.
        _ => "check_email_change_link",
    };
    app.call(function, &[("token", token)], &Cookie::default())
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_password_change_sign_out_everywhere_and_a_reset_each_revoke_every_mailed_link() {
    let app = spawn_app().await;
    let mut cookie = app.register("ada").await;
    let mut password = STRONG_PASSWORD.to_owned();
    for action in ["change_password", "logout_everywhere", "reset_password"] {
        let links = issue_all(&app, "ada").await;
        let response = match action {
            "change_password" => {
                let response = app
                    .call(
                        "change_password",
                        &[
                            ("current_password", &password),
                            ("new_password", NEW_PASSWORD),
                        ],
                        &cookie,
                    )
                    .await;
                password = NEW_PASSWORD.to_owned();
                response
            }
            "logout_everywhere" => app.call("logout_everywhere", &[], &cookie).await,
            _ => {
                let reset = app.issue_link_token("ada", Purpose::PasswordReset).await;
                password = format!("{NEW_PASSWORD}-again");
                app.call(
                    "reset_password",
                    &[("token", &reset), ("new_password", &password)],
                    &Cookie::default(),
                )
                .await
            }
        };
        assert_eq!(response.status(), 200, "{action}");
        for (purpose, token) in links {
            assert_eq!(
                link_status(&app, purpose, &token).await,
                410,
                "{purpose:?} link after {action}"
            );
        }
        let response = app.login("ada", &password).await;
        assert_eq!(response.status(), 200);
        cookie = Cookie(session_cookie_from(&response));
    }
    let email: String = sqlx::query_scalar("SELECT email FROM users WHERE username = 'ada'")
        .fetch_one(app.state.db.primary())
        .await
        .unwrap();
    assert_eq!(email, "ada@example.com");
}

#[tokio::test]
async fn a_link_minted_under_an_older_epoch_is_refused() {
    let app = spawn_app().await;
    app.register("ada").await;
    let token = app.issue_link_token("ada", Purpose::PasswordReset).await;
    // The epoch moved without the revocation that normally goes with it
    // (as for a link minted from a request older than the change).
    sqlx::query("UPDATE users SET credential_epoch = credential_epoch + 1 WHERE username = 'ada'")
        .execute(app.state.db.primary())
        .await
        .unwrap();
    assert_eq!(link_status(&app, Purpose::PasswordReset, &token).await, 410);
    let response = app
        .call(
            "reset_password",
            &[("token", &token), ("new_password", NEW_PASSWORD)],
            &Cookie::default(),
        )
        .await;
    assert_eq!(response.status(), 410);
}

#[tokio::test]
async fn confirming_a_new_address_ends_other_sessions_and_revokes_links_mailed_to_the_old_one() {
    let app = spawn_app().await;
    let first = app.register("ada").await;
    let other = Cookie(session_cookie_from(
        &app.login("ada", STRONG_PASSWORD).await,
    ));
    assert_eq!(app.whoami(&other).await.as_deref(), Some("ada"));
    let reset = app.issue_link_token("ada", Purpose::PasswordReset).await;
    let links = issue_all(&app, "ada").await;
    let (_, change) = links.last().unwrap().clone();

    let response = app
        .call(
            "confirm_email_change",
            &[("token", &change)],
            &Cookie::default(),
        )
        .await;
    assert_eq!(response.status(), 200);
    let email: String = sqlx::query_scalar("SELECT email FROM users WHERE username = 'ada'")
        .fetch_one(app.state.db.primary())
        .await
        .unwrap();
    assert_eq!(email, "elsewhere@example.net");
    assert_eq!(
        app.whoami(&first).await,
        None,
        "sessions end with the change"
    );
    assert_eq!(app.whoami(&other).await, None);
    assert_eq!(link_status(&app, Purpose::PasswordReset, &reset).await, 410);
    for (purpose, token) in &links[..2] {
        assert_eq!(link_status(&app, *purpose, token).await, 410, "{purpose:?}");
    }
}

#[tokio::test]
async fn a_mail_scanner_opening_the_confirmation_link_changes_nothing() {
    let app = spawn_app().await;
    app.register("ada").await;
    let links = issue_all(&app, "ada").await;
    let (_, change) = links.last().unwrap().clone();
    let path = format!("/confirm-email?token={change}");
    for _ in 0..2 {
        let (status, page) = app.page(&path, &Cookie::default()).await;
        assert_eq!(status, 200);
        assert!(
            page.contains("data-testid=\"confirm-email-form\""),
            "{page}"
        );
        assert!(page.contains("method=\"post\""), "{page}");
        assert!(page.contains("elsewhere@example.net"), "{page}");
    }
    let email: String = sqlx::query_scalar("SELECT email FROM users WHERE username = 'ada'")
        .fetch_one(app.state.db.primary())
        .await
        .unwrap();
    assert_eq!(email, "ada@example.com", "a GET changes nothing");

    // The button: a plain form post, as without JavaScript.
    let location = app
        .form_post("confirm_email_change", &[("token", &change)])
        .await;
    assert_eq!(location, "/confirm-email?changed=1");
    let (status, page) = app.page(&location, &Cookie::default()).await;
    assert_eq!(status, 200);
    assert!(page.contains("data-testid=\"email-changed\""), "{page}");
    // Pressed again (a second tab): the page says why not, with its status.
    let location = app
        .form_post("confirm_email_change", &[("token", &change)])
        .await;
    let (status, page) = app.page(&location, &Cookie::default()).await;
    assert_eq!(status, 410, "{location}");
    assert!(page.contains("already used"), "{page}");
}

#[tokio::test]
async fn this_was_not_me_on_the_old_address_cancels_the_change_without_signing_in() {
    let (app, sink) = spawn_app_mailing(|_| {}).await;
    let cookie = app.register("ada").await;
    let response = app
        .call(
            "request_email_change",
            &[
                ("confirm_password", STRONG_PASSWORD),
                ("new_email", "mallory@evil.example"),
            ],
            &cookie,
        )
        .await;
    assert_eq!(response.status(), 200);
    let confirm = sink.wait_for("mallory@evil.example", 1).await.remove(0);
    let confirm = token_of(
        &confirm
            .link(&format!(
                "{}/confirm-email?token=",
                app.state.config.public_url
            ))
            .unwrap(),
    );
    let notices = sink.wait_for("ada@example.com", 2).await;
    let notice = notices
        .iter()
        .find(|m| m.subject == "A change of your Folio email address was asked for")
        .expect("a notice to the current address");
    let prefix = format!("{}/cancel-email-change?token=", app.state.config.public_url);
    let cancel = notice.link(&prefix).expect("a \"this wasn't me\" link");
    assert!(notice
        .html
        .as_deref()
        .unwrap()
        .contains(&format!("href=\"{cancel}\"")));

    // Opening it changes nothing (a mail scanner may); its button cancels.
    let path = cancel.strip_prefix(&app.state.config.public_url).unwrap();
    for _ in 0..2 {
        let (status, page) = app.page(path, &Cookie::default()).await;
        assert_eq!(status, 200);
        assert!(
            page.contains("data-testid=\"cancel-email-change-form\""),
            "{page}"
        );
    }
    assert_eq!(link_status(&app, Purpose::EmailChange, &confirm).await, 200);

    let location = app
        .form_post("cancel_email_change", &[("token", &token_of(&cancel))])
        .await;
    assert_eq!(location, "/cancel-email-change?cancelled=1");
    let (status, page) = app.page(&location, &Cookie::default()).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("data-testid=\"email-change-cancelled\""),
        "{page}"
    );
    assert_eq!(
        app.whoami(&cookie).await.as_deref(),
        Some("ada"),
        "no one signed out"
    );

    assert_eq!(link_status(&app, Purpose::EmailChange, &confirm).await, 410);
    let email: String = sqlx::query_scalar("SELECT email FROM users WHERE username = 'ada'")
        .fetch_one(app.state.db.primary())
        .await
        .unwrap();
    assert_eq!(email, "ada@example.com");
    let (status, body) = status_and_json(
        app.call(
            "confirm_email_change",
            &[("token", &confirm)],
            &Cookie::default(),
        )
        .await,
    )
    .await;
    assert_eq!(status, 410, "{body}");
    // A used cancel link says so.
    let (status, _) = app.page(path, &Cookie::default()).await;
    assert_eq!(status, 410);
}

/// Issue 23 item 12: whoever can write to the events Redis must not be able
/// to make Folio mail a link for someone else's account.
#[tokio::test]
async fn an_event_written_straight_into_the_stream_mints_no_link_and_sends_no_mail() {
    let (app, sink) = spawn_app_mailing(|_| {}).await;
    app.register("ada").await;
    let bob = app.register("bob").await;
    sink.wait_for("bob@example.com", 1).await;
    let bob_id = app.user_id("bob").await;
    let partition =
        app::ssr::events::streams::partition_of(bob_id, app.state.config.events.partitions);
    let stream = app::ssr::events::streams::stream_key(&app.state, partition);
    let now_us = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000;
    let payload = serde_json::json!({
        "origin": { "ip": "203.0.113.9", "device": "Firefox on Linux" },
        "new_email": "mallory@evil.example",
        "epoch": 0,
    })
    .to_string();
    let mut redis = app.events_redis().await;
    let _: String = redis
        .xadd(
            &stream,
            "*",
            &[
                ("id", uuid::Uuid::new_v4().to_string()),
                ("type", "email_change.requested".to_owned()),
                ("v", "1".to_owned()),
                ("user", bob_id.to_string()),
                ("seq", "99".to_owned()),
                ("at", now_us.to_string()),
                ("payload", payload),
            ],
        )
        .await
        .unwrap();
    // A genuine mail of Bob's, later in the same partition: once it is out,
    // the forged entry before it was handled.
    let response = app.call("resend_verification", &[], &bob).await;
    assert_eq!(response.status(), 200);
    sink.wait_for("bob@example.com", 2).await;

    assert!(
        !sink
            .messages()
            .iter()
            .any(|m| m.to.iter().any(|to| to == "mallory@evil.example")),
        "no mail to the forged address"
    );
    let changes: i64 =
        sqlx::query_scalar("SELECT count(*) FROM account_tokens WHERE purpose = 'email_change'")
            .fetch_one(app.state.db.primary())
            .await
            .unwrap();
    assert_eq!(changes, 0, "no link minted");
}

/// Issue 24 item 4: the token is committed before the mail leaves, and a
/// retry mails the same link again.
#[tokio::test]
async fn a_mail_that_failed_after_its_token_committed_carries_the_same_working_link_on_retry() {
    let (app, sink) = spawn_app_mailing(|s| s.service.events.max_deliveries = 1000).await;
    app.register("ada").await;
    sink.wait_for("ada@example.com", 1).await;
    let port = sink.port;
    drop(sink); // the mail server goes away

    let failures_before = app.metric("folio_mail_failures_total").await;
    let response = app
        .call(
            "request_password_reset",
            &[("email", "ada@example.com")],
            &Cookie::default(),
        )
        .await;
    assert_eq!(response.status(), 200);
    // The send failed after the token was committed.
    let reset_tokens = || async {
        sqlx::query_scalar::<_, String>(
            "SELECT encode(token_hash, 'hex') FROM account_tokens
             WHERE purpose = 'password_reset' ORDER BY created_at",
        )
        .fetch_all(app.state.db.primary())
        .await
        .unwrap()
    };
    wait_for(
        "a failed send with its token committed",
        Duration::from_secs(15),
        || async {
            app.metric("folio_mail_failures_total").await > failures_before
                && reset_tokens().await.len() == 1
        },
    )
    .await;
    let committed = reset_tokens().await;

    // The mail server is back: the retry sends the link of that token.
    let sink = SmtpSink::start_on(port);
    let mails = sink.wait_for("ada@example.com", 1).await;
    let link = mails[0]
        .link(&format!("{}/reset?token=", app.state.config.public_url))
        .expect("a reset link");
    let token = token_of(&link);
    // Checked as soon as the mail is there: no waiting for a commit.
    assert_eq!(
        reset_tokens().await,
        committed,
        "the same token, not a new one"
    );
    assert_eq!(sha256_hex(&token), committed[0]);
    let response = app
        .call(
            "reset_password",
            &[("token", &token), ("new_password", NEW_PASSWORD)],
            &Cookie::default(),
        )
        .await;
    assert_eq!(response.status(), 200);
}
