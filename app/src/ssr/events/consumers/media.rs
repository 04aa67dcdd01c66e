//! The clean-up of uploaded avatars: when a picture is released (replaced,
//! removed, or written by an upload that did not commit), its files are
//! deleted unless a profile still names it. `media::collect` re-checks the
//! references under the picture's lock, inside this consumer's transaction,
//! so the same picture uploaded by someone else meanwhile is kept.

use futures::future::BoxFuture;
use sqlx::PgConnection;

use crate::domain::AvatarKey;
use crate::ssr::events::types::AvatarReleased;
use crate::ssr::events::{Consumer, Event, EventPayload};
use crate::ssr::media::{self, MediaStore};
use crate::ssr::Result;

pub struct MediaCleanUp {
    store: MediaStore,
}

impl MediaCleanUp {
    pub fn new(store: MediaStore) -> Self {
        Self { store }
    }
}

impl Consumer for MediaCleanUp {
    fn group(&self) -> &'static str {
        "media"
    }

    fn wants(&self, event_type: &str) -> bool {
        event_type == AvatarReleased::TYPE
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        event: &'a Event,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let released: AvatarReleased = event.decode()?;
            // A key that does not parse names no file (the column's CHECK
            // makes this impossible for keys read from a profile).
            let Ok(key) = AvatarKey::parse(&released.key) else {
                tracing::warn!(event = %event.id, "avatar.released with a malformed key");
                return Ok(());
            };
            let deleted = media::collect(tx, &self.store, &key).await?;
            tracing::info!(key = key.as_str(), deleted, "released avatar collected");
            Ok(())
        })
    }
}
