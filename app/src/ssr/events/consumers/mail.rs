//! Mail, sent from events so that a slow or failing mail server never slows
//! a request: the request records an event, this consumer sends.
//!
//! What goes out is decided by [`compose`] (one arm per event type that
//! sends mail); how it goes out by a [`Mailer`] (`ssr::mail`: SMTP, or the
//! development mailbox), given to [`consumers::all`]. Without a mailer this
//! consumer does not run at all. Links are built from the deployment's
//! public address (`FOLIO_PUBLIC_URL`), never from a request's `Host`.
//!
//! What it acts on is the outbox row of the event (the authoritative
//! record, read by the entry's event id), never the stream entry alone:
//! whoever can write to the events Redis cannot make Folio mail a link, or
//! anything else, that no committed change asked for. An entry whose id no
//! outbox row has is acknowledged and sends nothing.
//!
//! Once and only once is impossible with an outside effect: the mail is sent
//! inside the consumer's transaction, before its commit. A send that fails
//! rolls the transaction back and is retried (then dead-lettered); a process
//! that dies between the send and the commit sends again on redelivery. The
//! message id is derived from the event id, so a receiving server (and the
//! person) can recognise the repeat.
//!
//! A link's token is committed before the mail is sent, on a transaction of
//! its own (`tokens::issue_for_event`): a mail that leaves always carries a
//! token that is there. The token is derived from the event, so a retry
//! (after a failed send, or a consumer that died after the commit) mails
//! the same link again; a link that died meanwhile (used, replaced, its
//! credentials changed) is not mailed again.
//!
//! [`consumers::all`]: super::all

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use tokio::sync::OnceCell;

use crate::domain::LinkToken;
use crate::ssr::accounts::tokens::{self, LinkRequest, Purpose};
use crate::ssr::events::outbox;
use crate::ssr::events::types::{
    EmailChangeRequested, EmailChanged, EmailVerificationRequested, LoginGuessing, PasswordChanged,
    PasswordResetRequested, UserRegistered,
};
use crate::ssr::events::{Consumer, Event, EventPayload};
use crate::ssr::infra::secrets::deployment_secret;
use crate::ssr::mail::escape_html;
pub use crate::ssr::mail::{Mailer, Message};
use crate::ssr::{Metrics, Result};
use metrics::Counter;

/// Events older than this send nothing: a notice that late is noise, and a
/// mail group started on a stream's history must not mail the past.
const MAX_AGE: Duration = Duration::from_secs(3600);

pub struct Mail {
    mailer: Arc<dyn Mailer>,
    /// `https://folio.example`, no trailing slash.
    public_url: String,
    /// `folio_mail_sent_total` and `folio_mail_failures_total`: the
    /// `FolioMailFailing` alert's ratio (deploy/monitoring/rules.yml).
    sent: Counter,
    failures: Counter,
    /// Links' tokens commit here, on transactions of their own, while the
    /// consumer's transaction holds a connection of the primary's pool: a
    /// pool of its own (on the primary), or every partition's consumer could
    /// hold one connection of a small pool and wait for a second.
    db: PgPool,
    /// The deployment's key of link tokens (`tokens::KEY_NAME`).
    key: OnceCell<[u8; 32]>,
}

impl Mail {
    /// `db` is the primary's pool; its connection settings open the links'.
    pub fn new(mailer: Arc<dyn Mailer>, public_url: &str, metrics: &Metrics, db: &PgPool) -> Self {
        let db = PgPoolOptions::new()
            .max_connections(2)
            .connect_lazy_with((*db.connect_options()).clone());
        Self {
            mailer,
            public_url: public_url.trim_end_matches('/').to_owned(),
            sent: metrics.counter("folio_mail_sent_total", &[]),
            failures: metrics.counter("folio_mail_failures_total", &[]),
            db,
            key: OnceCell::new(),
        }
    }

    /// The token of a link, committed before this returns (see the module
    /// comment); None when no link is worth mailing.
    async fn link(&self, request: LinkRequest<'_>) -> Result<Option<LinkToken>> {
        let key = self
            .key
            .get_or_try_init(|| deployment_secret(&self.db, tokens::KEY_NAME))
            .await?;
        let mut tx = self.db.begin().await?;
        let token = tokens::issue_for_event(&mut tx, key, &request).await?;
        tx.commit().await?;
        if token.is_none() {
            tracing::info!(event = %request.event_id, purpose = ?request.purpose,
                "mail: no link to send (its credentials changed, or it was used or replaced)");
        }
        Ok(token)
    }
}

impl Consumer for Mail {
    fn group(&self) -> &'static str {
        "mail"
    }

    fn wants(&self, event_type: &str) -> bool {
        [
            PasswordChanged::TYPE,
            PasswordResetRequested::TYPE,
            UserRegistered::TYPE,
            EmailVerificationRequested::TYPE,
            EmailChangeRequested::TYPE,
            EmailChanged::TYPE,
            LoginGuessing::TYPE,
        ]
        .contains(&event_type)
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        event: &'a Event,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            // The entry only names the event; the outbox says what it is.
            let Some(recorded) = outbox::find(&mut *tx, event.id).await? else {
                tracing::warn!(event = %event.id, event_type = %event.event_type,
                    "mail: an entry with no outbox row; nothing sent");
                return Ok(());
            };
            if (recorded.user_id, &recorded.event_type) != (event.user_id, &event.event_type) {
                tracing::warn!(event = %event.id,
                    "mail: an entry that differs from its outbox row; acting on the row");
            }
            let event = &recorded;
            let age = OffsetDateTime::now_utc() - event.occurred_at;
            if age > MAX_AGE {
                tracing::info!(event = %event.id, "mail: event too old to send for");
                return Ok(());
            }
            for message in self.compose(tx, event, age).await? {
                if let Err(error) = self.mailer.send(&message).await {
                    self.failures.increment(1);
                    return Err(error);
                }
                self.sent.increment(1);
            }
            Ok(())
        })
    }
}

impl Mail {
    /// The messages an event sends: most send one, to the account's current
    /// address; an address change also writes to the other address.
    async fn compose(
        &self,
        tx: &mut PgConnection,
        event: &Event,
        age: time::Duration,
    ) -> Result<Vec<Message>> {
        let Some((to, epoch)): Option<(String, i64)> =
            sqlx::query_as("SELECT email, credential_epoch FROM users WHERE id = $1")
                .bind(event.user_id)
                .fetch_optional(&mut *tx)
                .await?
        else {
            return Ok(Vec::new()); // the account is gone
        };
        // A reset or verification link goes to the account's address of
        // now, under its epoch of now: what a new request would get.
        let request = |purpose| LinkRequest {
            event_id: event.id,
            user_id: event.user_id,
            purpose,
            epoch,
            new_email: None,
        };
        // Each message of an event has an id of its own, the same on every
        // redelivery.
        let id = |n: usize| match n {
            0 => format!("<{}@folio>", event.id),
            n => format!("<{}.{n}@folio>", event.id),
        };
        let letter = match event.event_type.as_str() {
            PasswordChanged::TYPE => {
                let changed: PasswordChanged = event.decode()?;
                Letter {
                    subject: "Your Folio password was changed".to_owned(),
                    paragraphs: vec![
                        format!(
                            "Your password was changed from {} ({}), and every device was signed out.",
                            changed.origin.device, changed.origin.ip
                        ),
                        "If this was not you, ask for a password reset link at once:".to_owned(),
                    ],
                    link: Some(format!("{}/forgot", self.public_url)),
                    after: Vec::new(),
                }
            }
            LoginGuessing::TYPE => {
                let guessing: LoginGuessing = event.decode()?;
                let what = if guessing.one_device {
                    format!(
                        "Too many wrong passwords were typed for your account in a browser that had signed in to it before, most recently from {} ({}). \
                         That browser cannot sign in for a while; your other browsers still sign in as usual.",
                        guessing.origin.device, guessing.origin.ip
                    )
                } else {
                    format!(
                        "Too many wrong passwords were typed for your account, most recently from {} ({}). \
                         Sign-ins from browsers that have never signed in to your account are paused for a while; \
                         the browsers you use still sign in as usual.",
                        guessing.origin.device, guessing.origin.ip
                    )
                };
                Letter {
                    subject: "Someone is guessing your Folio password".to_owned(),
                    paragraphs: vec![
                        what,
                        "If you think someone knows your password, choose a new one:".to_owned(),
                    ],
                    link: Some(format!("{}/forgot", self.public_url)),
                    after: Vec::new(),
                }
            }
            PasswordResetRequested::TYPE => {
                let asked: PasswordResetRequested = event.decode()?;
                // A link that would be dead on arrival is not worth a mail.
                if age.unsigned_abs() >= Purpose::PasswordReset.lifetime() {
                    tracing::info!(event = %event.id, "mail: reset request older than a link's life");
                    return Ok(Vec::new());
                }
                let Some(token) = self.link(request(Purpose::PasswordReset)).await? else {
                    return Ok(Vec::new());
                };
                Letter {
                    subject: "Choose a new Folio password".to_owned(),
                    paragraphs: vec![
                        format!(
                            "Someone (we hope you) asked to reset the password of the Folio account of this address, from {} ({}).",
                            asked.origin.device, asked.origin.ip
                        ),
                        "Choose a new password here; the link works once, for 30 minutes:"
                            .to_owned(),
                    ],
                    link: Some(format!("{}/reset?token={}", self.public_url, token.as_str())),
                    after: vec![
                        "If you did not ask, ignore this mail: your password stays as it is."
                            .to_owned(),
                    ],
                }
            }
            // A new account, or its owner asked again: the address needs proving.
            UserRegistered::TYPE | EmailVerificationRequested::TYPE => {
                if event.event_type == UserRegistered::TYPE {
                    event.decode::<UserRegistered>()?;
                } else {
                    event.decode::<EmailVerificationRequested>()?;
                }
                let verified: bool = sqlx::query_scalar(
                    "SELECT email_verified_at IS NOT NULL FROM users WHERE id = $1",
                )
                .bind(event.user_id)
                .fetch_one(&mut *tx)
                .await?;
                if verified {
                    return Ok(Vec::new()); // proven since it was asked for
                }
                let Some(token) = self.link(request(Purpose::EmailVerification)).await? else {
                    return Ok(Vec::new());
                };
                Letter {
                    subject: "Confirm your Folio email address".to_owned(),
                    paragraphs: vec![
                        "Welcome to Folio. Please confirm that this address is yours; the link works for a day:".to_owned(),
                    ],
                    link: Some(format!("{}/verify?token={}", self.public_url, token.as_str())),
                    after: vec![
                        "If you did not make a Folio account, ignore this mail.".to_owned(),
                    ],
                }
            }
            EmailChangeRequested::TYPE => {
                let asked: EmailChangeRequested = event.decode()?;
                if age.unsigned_abs() >= Purpose::EmailChange.lifetime() {
                    return Ok(Vec::new());
                }
                // An address that is not the account's gets a link whose
                // power comes from the credentials of the request: under
                // the epoch it was asked under, never a later one.
                let Some(asked_epoch) = asked.epoch else {
                    tracing::info!(event = %event.id, "mail: an address change asked for before links carried epochs");
                    return Ok(Vec::new());
                };
                let cancel = LinkRequest {
                    epoch: asked_epoch,
                    ..request(Purpose::EmailChangeCancel)
                };
                let Some(cancel) = self.link(cancel).await? else {
                    return Ok(Vec::new());
                };
                // The request answered the same whether or not the address
                // was taken; whether it is, is decided here, as the mail is
                // sent: its owner is warned, and no link is issued.
                let taken: bool =
                    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE email = $1)")
                        .bind(&asked.new_email)
                        .fetch_one(&mut *tx)
                        .await?;
                let confirm = if taken {
                    Letter {
                        subject: "Someone tried to add this address to a Folio account".to_owned(),
                        paragraphs: vec![
                            "The owner of another Folio account asked to use this address for it. It already belongs to a Folio account, so nothing changed.".to_owned(),
                            "If it was you, you already have an account with this address: sign in with it, or ask for a new password:".to_owned(),
                        ],
                        link: Some(format!("{}/forgot", self.public_url)),
                        after: vec!["If it was not you, ignore this mail.".to_owned()],
                    }
                } else {
                    let change = LinkRequest {
                        epoch: asked_epoch,
                        new_email: Some(&asked.new_email),
                        ..request(Purpose::EmailChange)
                    };
                    let Some(token) = self.link(change).await? else {
                        return Ok(Vec::new());
                    };
                    Letter {
                    subject: "Confirm your new Folio email address".to_owned(),
                    paragraphs: vec![
                        "The owner of a Folio account asked to use this address for it. Confirm that it is yours; the link works once, for an hour:".to_owned(),
                    ],
                    link: Some(format!(
                        "{}/confirm-email?token={}",
                        self.public_url,
                        token.as_str()
                    )),
                    after: vec!["If you did not ask, ignore this mail.".to_owned()],
                }
                };
                let confirm = confirm.into_message(id(0), asked.new_email.clone());
                if !asked.notify_current {
                    return Ok(vec![confirm]);
                }
                // OWASP: the current address hears of it before anything
                // changes, so a session thief's change does not go unseen.
                let notice = Letter {
                    subject: "A change of your Folio email address was asked for".to_owned(),
                    paragraphs: vec![
                        format!(
                            "Someone signed in to your account asked, from {} ({}), to change its address to {}. It changes only once the link mailed there is used.",
                            asked.origin.device, asked.origin.ip, asked.new_email
                        ),
                        "If this was not you, cancel the change here (no need to sign in), then change your password:".to_owned(),
                    ],
                    link: Some(format!(
                        "{}/cancel-email-change?token={}",
                        self.public_url,
                        cancel.as_str()
                    )),
                    after: Vec::new(),
                };
                return Ok(vec![confirm, notice.into_message(id(1), to)]);
            }
            EmailChanged::TYPE => {
                let changed: EmailChanged = event.decode()?;
                let notice = Letter {
                    subject: "Your Folio email address was changed".to_owned(),
                    paragraphs: vec![
                        format!(
                            "The address of your Folio account is now {}; this one will get no more mail from it.",
                            changed.new_email
                        ),
                        "If this was not you, someone else has access to your account.".to_owned(),
                    ],
                    link: None,
                    after: Vec::new(),
                };
                return Ok(vec![notice.into_message(id(0), changed.old_email)]);
            }
            _ => return Ok(Vec::new()),
        };
        Ok(vec![letter.into_message(id(0), to)])
    }
}

/// A mail's content, written once and rendered as text and as HTML.
struct Letter {
    subject: String,
    paragraphs: Vec<String>,
    /// Written out in full in the text body (some clients show no links).
    link: Option<String>,
    after: Vec<String>,
}

impl Letter {
    fn into_message(self, message_id: String, to: String) -> Message {
        let mut text = String::new();
        let mut html = String::from(
            "<!DOCTYPE html><html><body style=\"font-family: sans-serif; line-height: 1.5\">",
        );
        for paragraph in &self.paragraphs {
            text.push_str(paragraph);
            text.push_str("\n\n");
            html.push_str(&format!("<p>{}</p>", escape_html(paragraph)));
        }
        if let Some(link) = &self.link {
            text.push_str(link);
            text.push_str("\n\n");
            let link = escape_html(link);
            html.push_str(&format!("<p><a href=\"{link}\">{link}</a></p>"));
        }
        for paragraph in &self.after {
            text.push_str(paragraph);
            text.push_str("\n\n");
            html.push_str(&format!("<p>{}</p>", escape_html(paragraph)));
        }
        text.push_str("— Folio\n");
        html.push_str("<p>— Folio</p></body></html>");
        Message {
            message_id,
            to,
            subject: self.subject,
            text,
            html,
        }
    }
}
