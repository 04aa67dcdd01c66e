//! Mail, sent from events so that a slow or failing mail server never slows
//! a request: the request records an event, this consumer sends.
//!
//! What goes out is decided by [`compose`] (one arm per event type that
//! sends mail); how it goes out by a [`Mailer`] (`ssr::mail`: SMTP, or the
//! development mailbox), given to [`consumers::all`]. Without a mailer this
//! consumer does not run at all. Links are built from the deployment's
//! public address (`FOLIO_PUBLIC_URL`), never from a request's `Host`.
//!
//! Once and only once is impossible with an outside effect: the mail is sent
//! inside the consumer's transaction, before its commit. A send that fails
//! rolls the transaction back and is retried (then dead-lettered); a process
//! that dies between the send and the commit sends again on redelivery. The
//! message id is derived from the event id, so a receiving server (and the
//! person) can recognise the repeat. A link's token is issued on the same
//! transaction: a rolled-back send leaves no token behind, and the mail of
//! the retry carries a new one.
//!
//! [`consumers::all`]: super::all

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::PgConnection;
use time::OffsetDateTime;

use crate::ssr::accounts::tokens::{self, Purpose};
use crate::ssr::events::types::{
    EmailChangeRequested, EmailChanged, EmailVerificationRequested, LoginGuessing, PasswordChanged,
    PasswordResetRequested, UserRegistered,
};
use crate::ssr::events::{Consumer, Event, EventPayload};
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
}

impl Mail {
    pub fn new(mailer: Arc<dyn Mailer>, public_url: &str, metrics: &Metrics) -> Self {
        Self {
            mailer,
            public_url: public_url.trim_end_matches('/').to_owned(),
            sent: metrics.counter("folio_mail_sent_total", &[]),
            failures: metrics.counter("folio_mail_failures_total", &[]),
        }
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
        let Some(to): Option<String> = sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
            .bind(event.user_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(Vec::new()); // the account is gone
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
                let token = tokens::issue(tx, event.user_id, Purpose::PasswordReset).await?;
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
                let token = tokens::issue(tx, event.user_id, Purpose::EmailVerification).await?;
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
                    let token =
                        tokens::issue_email_change(tx, event.user_id, &asked.new_email).await?;
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
                        "If this was not you, change your password at once:".to_owned(),
                    ],
                    link: Some(format!("{}/account", self.public_url)),
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
