//! `/dev/mailbox`: the development mailbox's messages, newest first, as a
//! plain HTML page (no app shell, no script). Routed only in a debug build
//! without `SMTP_URL` (`config::MailTransport::DevMailbox`, and
//! `cfg!(debug_assertions)` again in `startup`): it shows every reset link
//! to whoever opens it.

use std::sync::Arc;

use app::ssr::mail::{escape_html, DevMailbox};
use axum::extract::State;
use axum::response::Html;
use axum::routing::get;
use axum::Router;

pub const PATH: &str = "/dev/mailbox";

pub fn routes<S: Clone + Send + Sync + 'static>(mailbox: Arc<DevMailbox>) -> Router<S> {
    Router::new().route(PATH, get(page).with_state(mailbox))
}

/// No script and no style: the strictest policy, set here because an HTML
/// answer without a policy of its own is refused at the edge (`crate::edge`).
async fn page(
    State(mailbox): State<Arc<DevMailbox>>,
) -> ([(axum::http::HeaderName, &'static str); 1], Html<String>) {
    let messages = mailbox.messages();
    let mut html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Mailbox · Folio (development)</title></head><body>\
         <h1>Development mailbox</h1>\
         <p>Mail this development server would have sent, from {}: the last {} messages, \
         newest first, kept in memory until it stops. Set <code>SMTP_URL</code> to send \
         real mail.</p>",
        escape_html(mailbox.sender()),
        DevMailbox::KEEP
    );
    if messages.is_empty() {
        html.push_str("<p data-testid=\"empty\">No mail yet.</p>");
    }
    for delivered in messages {
        let m = &delivered.message;
        html.push_str(&format!(
            "<article class=\"message\"><h2>{}</h2><dl>\
             <dt>To</dt><dd class=\"to\">{}</dd><dt>Date</dt><dd>{}</dd>\
             <dt>Message-ID</dt><dd>{}</dd></dl><pre class=\"text\">{}</pre>\
             <details><summary>HTML body (source)</summary><pre>{}</pre></details></article><hr>",
            escape_html(&m.subject),
            escape_html(&m.to),
            delivered.at,
            escape_html(&m.message_id),
            linked(&m.text),
            escape_html(&m.html),
        ));
    }
    html.push_str("</body></html>");
    (
        [(
            axum::http::header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'",
        )],
        Html(html),
    )
}

/// The text body, escaped, with its http(s) addresses made links to click.
fn linked(text: &str) -> String {
    text.split_inclusive(char::is_whitespace)
        .map(|word| {
            let trimmed = word.trim_end();
            if trimmed.starts_with("http://") || trimmed.starts_with("https://") {
                let link = escape_html(trimmed);
                format!("<a href=\"{link}\">{link}</a>{}", &word[trimmed.len()..])
            } else {
                escape_html(word)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_addresses_and_escapes_the_rest() {
        assert_eq!(
            linked("go to https://f.example/reset?token=a&b=<c>\n<b>x</b>"),
            "go to <a href=\"https://f.example/reset?token=a&amp;b=&lt;c&gt;\">https://f.example/reset?token=a&amp;b=&lt;c&gt;</a>\n&lt;b&gt;x&lt;/b&gt;"
        );
    }
}
