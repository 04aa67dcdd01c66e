//! How a composed message leaves Folio: over SMTP ([`SmtpMailer`], lettre),
//! or, in a development build without SMTP, into a mailbox kept in memory
//! and shown at `/dev/mailbox` ([`DevMailbox`]). Owns the SMTP connections;
//! never decides what to send (the `mail` event consumer composes every
//! message) and is never called from a request: a slow or failing mail
//! server must not slow a page.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use time::OffsetDateTime;

use crate::ssr::{Error, Result};

/// A message ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `<event id>@folio>`: the same event always makes the same message id.
    pub message_id: String,
    pub to: String,
    pub subject: String,
    /// The plain-text body: complete by itself (every link written out).
    pub text: String,
    /// The same content as HTML, for the clients that prefer it.
    pub html: String,
}

/// Sends a message, or fails (the consumer retries, then dead-letters).
pub trait Mailer: Send + Sync + 'static {
    fn send<'a>(&'a self, message: &'a Message) -> BoxFuture<'a, Result<()>>;
}

/// SMTP through lettre's pooled async transport. `SMTP_URL` says how:
/// `smtps://user:pass@host:465` (TLS from the first byte),
/// `smtp://user:pass@host:587?tls=required` (STARTTLS, refusing a server
/// that does not offer it), or plain `smtp://host:port` for a relay on the
/// same machine or a test sink.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpMailer {
    /// A send that has not finished in this time fails (and is retried):
    /// a mail server that hangs must not hold a consumer's partition.
    const TIMEOUT: Duration = Duration::from_secs(10);

    /// `url` as above; `from` a mailbox (`Folio <no-reply@folio.example>`).
    /// Connects lazily: a mail server that is down at start delays mail,
    /// not Folio.
    pub fn new(url: &str, from: &str) -> std::result::Result<Self, String> {
        let from: Mailbox = from
            .parse()
            .map_err(|e| format!("the sender {from:?} is not a mailbox: {e}"))?;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| e.to_string())?
            .timeout(Some(Self::TIMEOUT))
            .build();
        Ok(Self { transport, from })
    }
}

impl Mailer for SmtpMailer {
    fn send<'a>(&'a self, message: &'a Message) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let to: Mailbox = message.to.parse().map_err(|e| {
                Error::Mail(format!("recipient is not an address lettre accepts: {e}"))
            })?;
            let email = lettre::Message::builder()
                .message_id(Some(message.message_id.clone()))
                .from(self.from.clone())
                .to(to)
                .subject(message.subject.clone())
                .multipart(MultiPart::alternative_plain_html(
                    message.text.clone(),
                    message.html.clone(),
                ))
                .map_err(|e| Error::Mail(format!("building the message: {e}")))?;
            self.transport
                .send(email)
                .await
                .map_err(|e| Error::Mail(e.to_string()))?;
            Ok(())
        })
    }
}

/// A development build's mail server: keeps the last [`DevMailbox::KEEP`]
/// messages in this process's memory, newest first, for `/dev/mailbox`
/// (the convention of Rails' letter_opener and Phoenix's Swoosh mailbox).
/// Never used by a release build: `server::config` chooses it only with
/// `debug_assertions`, and the page is routed only then.
pub struct DevMailbox {
    from: String,
    kept: Mutex<VecDeque<Delivered>>,
}

/// A message the mailbox received, and when.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub at: OffsetDateTime,
    pub message: Message,
}

impl DevMailbox {
    /// Enough to follow a session of clicking through the app; older ones
    /// are dropped, so a long-running dev server does not grow.
    pub const KEEP: usize = 50;

    pub fn new(from: &str) -> Self {
        Self {
            from: from.to_owned(),
            kept: Mutex::new(VecDeque::new()),
        }
    }

    /// The sender every message would have had.
    pub fn sender(&self) -> &str {
        &self.from
    }

    /// Newest first.
    pub fn messages(&self) -> Vec<Delivered> {
        self.kept
            .lock()
            .map(|kept| kept.iter().cloned().collect())
            .unwrap_or_default()
    }
}

impl Mailer for DevMailbox {
    fn send<'a>(&'a self, message: &'a Message) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut kept = self
                .kept
                .lock()
                .map_err(|_| Error::Internal("dev mailbox lock poisoned".into()))?;
            kept.push_front(Delivered {
                at: OffsetDateTime::now_utc(),
                message: message.clone(),
            });
            kept.truncate(Self::KEEP);
            tracing::info!(to = %message.to, subject = %message.subject, "mail kept in the dev mailbox (/dev/mailbox)");
            Ok(())
        })
    }
}

/// Text made safe to put between HTML tags or in a quoted attribute.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(n: usize) -> Message {
        Message {
            message_id: format!("<{n}@folio>"),
            to: "ada@example.com".into(),
            subject: format!("message {n}"),
            text: "text".into(),
            html: "<p>html</p>".into(),
        }
    }

    #[tokio::test]
    async fn the_dev_mailbox_keeps_the_newest_messages_first() {
        let mailbox = DevMailbox::new("Folio <no-reply@localhost>");
        for n in 0..DevMailbox::KEEP + 3 {
            mailbox.send(&message(n)).await.unwrap();
        }
        let kept = mailbox.messages();
        assert_eq!(kept.len(), DevMailbox::KEEP);
        assert_eq!(
            kept[0].message.subject,
            format!("message {}", DevMailbox::KEEP + 2)
        );
        assert_eq!(kept.last().unwrap().message.subject, "message 3");
    }

    // In a runtime: the pooled transport may start its clean-up task.
    #[tokio::test]
    async fn smtp_urls_are_read_by_lettre_and_bad_senders_refused() {
        for url in [
            "smtp://127.0.0.1:2525",
            "smtps://user:secret@smtp.example.com",
            "smtp://user:secret@smtp.example.com:587?tls=required",
        ] {
            assert!(
                SmtpMailer::new(url, "Folio <no-reply@folio.example>").is_ok(),
                "{url}"
            );
        }
        assert!(SmtpMailer::new("http://smtp.example.com", "no-reply@folio.example").is_err());
        assert!(SmtpMailer::new("smtp://127.0.0.1:2525", "not a mailbox").is_err());
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape_html(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
