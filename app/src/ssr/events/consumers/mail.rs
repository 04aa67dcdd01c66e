//! Mail, sent from events so that a slow or failing mail server never slows
//! a request: the request records an event, this consumer sends.
//!
//! What goes out is decided by [`compose`] (one arm per event type that
//! sends mail); how it goes out by a [`Mailer`], given to [`consumers::all`]
//! (an SMTP client, or a development mailbox). Without a mailer this
//! consumer does not run at all.
//!
//! Once and only once is impossible with an outside effect: the mail is sent
//! inside the consumer's transaction, before its commit. A send that fails
//! rolls the transaction back and is retried (then dead-lettered); a process
//! that dies between the send and the commit sends again on redelivery. The
//! message id is derived from the event id, so a receiving server (and the
//! person) can recognise the repeat.
//!
//! [`consumers::all`]: super::all

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::PgConnection;
use time::OffsetDateTime;

use crate::ssr::events::types::PasswordChanged;
use crate::ssr::events::{Consumer, Event, EventPayload};
use crate::ssr::Result;

/// A message ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `<event id>@folio`: the same event always makes the same message id.
    pub message_id: String,
    pub to: String,
    pub subject: String,
    pub text: String,
}

/// Sends a message, or fails (the consumer retries).
pub trait Mailer: Send + Sync + 'static {
    fn send<'a>(&'a self, message: &'a Message) -> BoxFuture<'a, Result<()>>;
}

/// Events older than this send nothing: a notice that late is noise, and a
/// mail group started on a stream's history must not mail the past.
const MAX_AGE: Duration = Duration::from_secs(3600);

pub struct Mail {
    mailer: Arc<dyn Mailer>,
}

impl Mail {
    pub fn new(mailer: Arc<dyn Mailer>) -> Self {
        Self { mailer }
    }
}

impl Consumer for Mail {
    fn group(&self) -> &'static str {
        "mail"
    }

    fn wants(&self, event_type: &str) -> bool {
        [PasswordChanged::TYPE].contains(&event_type)
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
            if let Some(message) = compose(tx, event).await? {
                self.mailer.send(&message).await?;
            }
            Ok(())
        })
    }
}

/// The message an event sends, if any, to the account's current address.
async fn compose(tx: &mut PgConnection, event: &Event) -> Result<Option<Message>> {
    let Some(to): Option<String> = sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
        .bind(event.user_id)
        .fetch_optional(&mut *tx)
        .await?
    else {
        return Ok(None); // the account is gone
    };
    let message_id = format!("<{}@folio>", event.id);
    Ok(match event.event_type.as_str() {
        PasswordChanged::TYPE => {
            let changed: PasswordChanged = event.decode()?;
            Some(Message {
                message_id,
                to,
                subject: "Your Folio password was changed".to_owned(),
                text: format!(
                    "Your password was changed from {} ({}), and every device was signed out.\n\n\
                     If this was not you, reset your password at once.\n",
                    changed.origin.device, changed.origin.ip
                ),
            })
        }
        _ => None,
    })
}
