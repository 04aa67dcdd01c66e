//! The consumers Folio runs. Each is one consumer group: adding one is a
//! file here and a line in [`all`] (see the events module's comment).

pub mod activity;
pub mod mail;
mod media;
mod search;

use std::sync::Arc;

use sqlx::PgPool;

pub use activity::Activity;
pub use mail::{Mail, Mailer, Message};
pub use media::MediaCleanUp;
pub use search::SearchIndex;

use super::Consumer;
use crate::ssr::Metrics;

/// Every consumer of this deployment but the media clean-up, which needs
/// the media store (`startup` adds `MediaCleanUp::new(store)`). Mail runs
/// only with a mailer: without one nothing would be sent, and the events
/// would still be marked done. `public_url` is where the mails' links
/// point (`FOLIO_PUBLIC_URL`); `metrics` counts mail sent and failed; mail
/// commits links' tokens on `db`, the primary, before sending them.
pub fn all(
    mailer: Option<Arc<dyn Mailer>>,
    public_url: &str,
    metrics: &Metrics,
    db: &PgPool,
) -> Vec<Arc<dyn Consumer>> {
    let mut consumers: Vec<Arc<dyn Consumer>> = vec![Arc::new(Activity), Arc::new(SearchIndex)];
    if let Some(mailer) = mailer {
        consumers.push(Arc::new(Mail::new(mailer, public_url, metrics, db)));
    }
    consumers
}
