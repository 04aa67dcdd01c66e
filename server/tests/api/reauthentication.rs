//! Re-authentication (change password, change address, delete the account)
//! and the account's sign-in limit: strangers cannot lock the owner out of
//! their own account page, wrong passwords count per account whatever was
//! typed, and asking for an address change is limited and says nothing
//! about who else uses an address.

use std::time::Duration;

use app::ssr::Limit;

use crate::support::{
    session_cookie_from, spawn_app_mailing, spawn_app_with, status_and_json, wait_for, Cookie,
    TestApp, STRONG_PASSWORD,
};

// The same accounts, limits and cookie as the device-cookie tests.
use super::device_cookies::{device_cookie_from, tight, DEVICE_COOKIE, NEW_PASSWORD, WRONG};

impl TestApp {
    /// A server function called by a browser holding `session` and,
    /// optionally, a device cookie.
    async fn call_on(
        &self,
        function: &str,
        form: &[(&str, &str)],
        session: &Cookie,
        device: Option<&str>,
    ) -> reqwest::Response {
        let mut cookies = vec![format!("__Host-folio_session={}", session.token().unwrap())];
        if let Some(device) = device {
            cookies.push(format!("{DEVICE_COOKIE}={device}"));
        }
        self.client
            .post(self.url(&format!("/api/{function}")))
            .form(form)
            .header(reqwest::header::COOKIE, cookies.join("; "))
            .send()
            .await
            .expect("request sent")
    }

    async fn ask_email_change(
        &self,
        session: &Cookie,
        password: &str,
        new_email: &str,
    ) -> (u16, serde_json::Value) {
        status_and_json(
            self.call(
                "request_email_change",
                &[("confirm_password", password), ("new_email", new_email)],
                session,
            )
            .await,
        )
        .await
    }
}

#[tokio::test]
async fn strangers_guessing_at_sign_in_do_not_lock_the_owner_out_of_their_account_page() {
    let app = spawn_app_with(tight).await;
    let session = app.register("alice").await;
    for _ in 0..3 {
        assert_eq!(app.login("alice", WRONG).await.status(), 401);
    }
    assert_eq!(app.login("alice", STRONG_PASSWORD).await.status(), 429);

    // The signed-in owner still re-authenticates: strangers' guesses are
    // not the owner's.
    let (status, body) = app
        .ask_email_change(&session, STRONG_PASSWORD, "alice@new.example")
        .await;
    assert_eq!(status, 200, "{body}");
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
    let session = Cookie(session_cookie_from(&changed));
    let (status, body) = status_and_json(
        app.call("delete_account", &[("password", NEW_PASSWORD)], &session)
            .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn reauthentication_failures_count_per_signed_in_user_and_the_owners_device_is_its_own() {
    let app = spawn_app_with(tight).await;
    let registered = app.try_register("alice").await;
    let device = device_cookie_from(&registered).expect("a device cookie");
    let owner = Cookie(session_cookie_from(&registered));
    // A second session of alice's, in a browser that is no device of hers
    // (a stolen session, say), guesses at the account page.
    let thief = Cookie(session_cookie_from(
        &app.login("alice", STRONG_PASSWORD).await,
    ));
    for _ in 0..3 {
        let (status, body) = app.ask_email_change(&thief, WRONG, "x@new.example").await;
        assert_eq!(status, 422, "{body}");
    }
    let (status, _) = app
        .ask_email_change(&thief, STRONG_PASSWORD, "x@new.example")
        .await;
    assert_eq!(status, 429, "the user's re-authentication bucket is full");

    // Sign-in is not the account page: nobody is locked out of it.
    assert_eq!(app.login("alice", STRONG_PASSWORD).await.status(), 200);
    // The owner's own browser (its device cookie) is counted on its own.
    let response = app
        .call_on(
            "change_password",
            &[
                ("current_password", STRONG_PASSWORD),
                ("new_password", NEW_PASSWORD),
            ],
            &owner,
            Some(&device),
        )
        .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn sign_in_failures_count_per_account_whatever_identifier_was_typed() {
    let app = spawn_app_with(tight).await;
    app.register("alice").await;
    assert_eq!(app.login("alice", WRONG).await.status(), 401);
    assert_eq!(app.login("alice@example.com", WRONG).await.status(), 401);
    assert_eq!(app.login("ALICE@example.com", WRONG).await.status(), 401);
    let (status, body) = status_and_json(app.login("alice", STRONG_PASSWORD).await).await;
    assert_eq!(status, 429, "three wrong passwords for one account: {body}");
    let (status, _) = status_and_json(app.login("alice@example.com", STRONG_PASSWORD).await).await;
    assert_eq!(status, 429);
}

#[tokio::test]
async fn asking_for_a_taken_address_answers_as_for_a_free_one_and_tells_its_owner() {
    let (app, sink) = spawn_app_mailing(|_| {}).await;
    let ada = app.register("ada").await;
    app.register("bob").await;
    // A proven address hears of every request (an unproven one, rarely).
    sqlx::query("UPDATE users SET email_verified_at = now() WHERE username = 'ada'")
        .execute(app.state.db.primary())
        .await
        .unwrap();

    let (status, body) = app
        .ask_email_change(&ada, STRONG_PASSWORD, "bob@example.com")
        .await;
    assert_eq!(status, 200, "no answer says the address is taken: {body}");
    let (status, body) = app
        .ask_email_change(&ada, STRONG_PASSWORD, "ada@new.example")
        .await;
    assert_eq!(status, 200, "{body}");

    // The free address gets its link; the taken one a warning and no link.
    let confirm = sink.wait_for("ada@new.example", 1).await.remove(0);
    assert_eq!(confirm.subject, "Confirm your new Folio email address");
    let to_bob = sink.wait_for("bob@example.com", 2).await;
    let tried = to_bob
        .iter()
        .find(|m| m.subject.contains("tried to add this address"))
        .unwrap_or_else(|| panic!("no warning among {to_bob:?}"));
    let text = tried.text.as_deref().unwrap_or("");
    assert!(!text.contains("token="), "{text}");
    // Ada's current address hears of both the same way.
    let notices = || {
        sink.messages()
            .into_iter()
            .filter(|m| m.to.iter().any(|t| t == "ada@example.com"))
            .filter(|m| m.subject == "A change of your Folio email address was asked for")
            .count()
    };
    wait_for("two notices to ada", Duration::from_secs(15), || async {
        notices() == 2
    })
    .await;
}

#[tokio::test]
async fn asking_for_an_address_change_is_limited_per_user_and_per_address() {
    let app = spawn_app_with(|s| s.service.registrations_per_ip = Limit::new(1_000, 900)).await;
    let ada = app.register("ada").await;
    for n in 0..5 {
        let (status, body) = app
            .ask_email_change(&ada, STRONG_PASSWORD, &format!("ada{n}@new.example"))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = app
        .ask_email_change(&ada, STRONG_PASSWORD, "ada5@new.example")
        .await;
    assert_eq!(status, 429, "per user: {body}");

    // Three accounts ask for one address: the fourth is refused.
    for name in ["bea", "cyd", "dot"] {
        let session = app.register(name).await;
        let (status, body) = app
            .ask_email_change(&session, STRONG_PASSWORD, "target@new.example")
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let eve = app.register("eve").await;
    let (status, body) = app
        .ask_email_change(&eve, STRONG_PASSWORD, "target@new.example")
        .await;
    assert_eq!(status, 429, "per address: {body}");
}

#[tokio::test]
async fn an_unverified_address_gets_one_change_notice_a_day() {
    // Anyone can sign up with someone else's address: its owner must not
    // be mailed a notice per request.
    let (app, sink) = spawn_app_mailing(|_| {}).await;
    let ada = app.register("ada").await;
    for new_email in ["one@new.example", "two@new.example", "three@new.example"] {
        let (status, body) = app.ask_email_change(&ada, STRONG_PASSWORD, new_email).await;
        assert_eq!(status, 200, "{body}");
    }
    // Events of one account are mailed in order: once the third link is
    // out, every mail of the first two requests is too.
    sink.wait_for("three@new.example", 1).await;
    let notices = sink
        .messages()
        .into_iter()
        .filter(|m| m.to.iter().any(|t| t == "ada@example.com"))
        .filter(|m| m.subject == "A change of your Folio email address was asked for")
        .count();
    assert_eq!(notices, 1);
}
