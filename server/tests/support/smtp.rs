//! A real SMTP server for the mail tests: `scripts/smtp_sink.py` (Debian's
//! python3-aiosmtpd, installed by `scripts/common.sh`'s `ensure_aiosmtpd`),
//! started on a spare port, appending each message it accepts to a file
//! this side reads. And the `TestApp` methods that start an app mailing it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use server::config::{MailTransport, Settings};

use super::events::wait_for;
use super::{free_port, spawn_app_with, TestApp};

/// One message as the sink received and decoded it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Delivered {
    pub from: String,
    pub to: Vec<String>,
    /// The message as sent: headers and MIME body.
    pub data: String,
    pub subject: String,
    pub message_id: String,
    pub text: Option<String>,
    pub html: Option<String>,
}

impl Delivered {
    /// The first address in the text body that starts with `prefix`.
    pub fn link(&self, prefix: &str) -> Option<String> {
        self.text
            .as_deref()?
            .split_whitespace()
            .find(|word| word.starts_with(prefix))
            .map(str::to_owned)
    }
}

/// The sink process, killed on drop.
pub struct SmtpSink {
    child: Child,
    pub port: u16,
    file: PathBuf,
}

impl SmtpSink {
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    /// A sink on `port`: a mail server coming back where it was.
    pub fn start_on(port: u16) -> Self {
        let python = std::env::var("FOLIO_SMTP_PYTHON").unwrap_or_else(|_| {
            // Debian's python3-aiosmtpd is for Debian's Python, which may not
            // be the python3 first on PATH.
            if std::path::Path::new("/usr/bin/python3").exists() {
                "/usr/bin/python3".to_owned()
            } else {
                "python3".to_owned()
            }
        });
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/smtp_sink.py");
        let file = std::env::temp_dir().join(format!(
            "folio-smtp-{}.jsonl",
            uuid::Uuid::new_v4().simple()
        ));
        let mut child = Command::new(&python)
            .arg(script)
            .arg(port.to_string())
            .arg(&file)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{python} {script}: {e} (scripts/common.sh: ensure_aiosmtpd)")
            });
        let mut ready = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut ready)
            .expect("the sink says ready");
        assert_eq!(
            ready.trim(),
            "ready",
            "the SMTP sink did not start (is python3-aiosmtpd installed? scripts/common.sh: ensure_aiosmtpd)"
        );
        Self { child, port, file }
    }

    /// `SMTP_URL` for this sink: plain SMTP on loopback.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Everything received so far, oldest first.
    pub fn messages(&self) -> Vec<Delivered> {
        std::fs::read_to_string(&self.file)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect()
    }

    /// The messages to `to`, once there are at least `n` (at most 15 s).
    pub async fn wait_for(&self, to: &str, n: usize) -> Vec<Delivered> {
        let to_them = || {
            self.messages()
                .into_iter()
                .filter(|m| m.to.iter().any(|t| t == to))
                .collect::<Vec<_>>()
        };
        wait_for(
            &format!("{n} messages to {to}"),
            Duration::from_secs(15),
            || async { to_them().len() >= n },
        )
        .await;
        to_them()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.file);
    }
}

/// An app whose event workers run and whose mail goes to a fresh sink;
/// `configure` adjusts the rest.
pub async fn spawn_app_mailing(configure: impl FnOnce(&mut Settings)) -> (TestApp, SmtpSink) {
    let sink = SmtpSink::start();
    let url = sink.url();
    let app = spawn_app_with(move |settings| {
        settings.mail = MailTransport::Smtp(url);
        settings.event_workers = true;
        // A server's own pool (FOLIO_DB_MAX_CONNECTIONS): its consumers
        // (four groups × four partitions) each hold a connection while they
        // apply an event, the mail consumer while it sends; with the test
        // default of five, a page rendered meanwhile on a loaded machine
        // waited past the pool's 3 s and answered 503.
        settings.db_max_connections = 10;
        configure(settings);
    })
    .await;
    (app, sink)
}

impl TestApp {
    /// Issues a link token for `username` as the mail consumer does (the
    /// same function, on its own transaction), for tests about using links
    /// rather than mailing them.
    pub async fn issue_link_token(
        &self,
        username: &str,
        purpose: app::ssr::accounts::tokens::Purpose,
    ) -> String {
        let user_id = self.user_id(username).await;
        let mut tx = self.state.db.begin().await.unwrap();
        let token = app::ssr::accounts::tokens::issue(&mut tx, user_id, purpose)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        token.as_str().to_owned()
    }

    /// A server function called as a browser without JavaScript does: a
    /// form post that accepts HTML, with no `Referer`. The answer is a
    /// redirect; returns its `Location`.
    pub async fn form_post(&self, function: &str, form: &[(&str, &str)]) -> String {
        let response = self
            .client
            .post(self.url(&format!("/api/{function}")))
            .header(reqwest::header::ACCEPT, "text/html")
            .form(form)
            .send()
            .await
            .expect("request sent");
        assert!(
            response.status().is_redirection(),
            "{function}: {}",
            response.status()
        );
        response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .expect("a Location")
            .to_owned()
    }
}
