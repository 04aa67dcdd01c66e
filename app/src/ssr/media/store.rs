//! Where avatar files live: a directory (`FOLIO_AVATAR_DIR`) or an S3
//! bucket (`AVATAR_STORE_URL=s3://bucket`), through the `object_store`
//! crate, so both are one interface and one set of tests.
//!
//! Objects are named by their content (`avatars/<key>-<size>.webp`), so a
//! write never changes what a name holds: writing the same name again is a
//! no-op at worst, and any cache in front may keep a file forever.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};

use crate::ssr::Result;

/// The folder of the avatars inside the store (a bucket may hold more).
const PREFIX: &str = "avatars";

/// Which store, from the settings (`server/src/config.rs`).
#[derive(Clone)]
pub enum MediaStoreConfig {
    /// A local directory, created if missing.
    Local { dir: PathBuf },
    /// An S3 bucket; `endpoint` for an S3-compatible service other than
    /// AWS (MinIO, moto…); credentials from the settings, or none.
    S3 {
        bucket: String,
        prefix: String,
        endpoint: Option<String>,
        region: String,
        access_key_id: Option<String>,
        secret_access_key: Option<String>,
    },
}

impl Default for MediaStoreConfig {
    /// For development: under the build directory, which git ignores.
    fn default() -> Self {
        MediaStoreConfig::Local {
            dir: PathBuf::from("target/media"),
        }
    }
}

/// Never prints the secret key.
impl fmt::Debug for MediaStoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MediaStoreConfig::Local { dir } => write!(f, "Local({})", dir.display()),
            MediaStoreConfig::S3 {
                bucket,
                prefix,
                endpoint,
                region,
                ..
            } => write!(
                f,
                "S3(s3://{bucket}/{prefix} at {} in {region})",
                endpoint.as_deref().unwrap_or("AWS")
            ),
        }
    }
}

#[derive(Clone)]
pub struct MediaStore {
    store: Arc<dyn ObjectStore>,
    prefix: String,
}

impl fmt::Debug for MediaStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MediaStore({}, {})", self.store, self.prefix)
    }
}

impl MediaStore {
    /// Opens the configured store; the message says what is wrong.
    pub fn open(config: &MediaStoreConfig) -> std::result::Result<Self, String> {
        match config {
            MediaStoreConfig::Local { dir } => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                let store = LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| format!("cannot use {}: {e}", dir.display()))?;
                Ok(Self {
                    store: Arc::new(store),
                    prefix: PREFIX.to_owned(),
                })
            }
            MediaStoreConfig::S3 {
                bucket,
                prefix,
                endpoint,
                region,
                access_key_id,
                secret_access_key,
            } => {
                let mut builder = AmazonS3Builder::new()
                    .with_bucket_name(bucket)
                    .with_region(region);
                if let Some(endpoint) = endpoint {
                    builder = builder
                        .with_endpoint(endpoint)
                        .with_allow_http(endpoint.starts_with("http://"));
                }
                if let (Some(id), Some(secret)) = (access_key_id, secret_access_key) {
                    builder = builder
                        .with_access_key_id(id)
                        .with_secret_access_key(secret);
                }
                let store = builder
                    .build()
                    .map_err(|e| format!("cannot use s3://{bucket}: {e}"))?;
                let prefix = [prefix.trim_matches('/'), PREFIX]
                    .iter()
                    .filter(|part| !part.is_empty())
                    .copied()
                    .collect::<Vec<_>>()
                    .join("/");
                Ok(Self {
                    store: Arc::new(store),
                    prefix,
                })
            }
        }
    }

    fn path(&self, name: &str) -> Path {
        Path::from(format!("{}/{name}", self.prefix))
    }

    /// Writes `bytes` as `name` unless it is there already (same name, same
    /// bytes). True when it wrote.
    pub async fn put_if_absent(&self, name: &str, bytes: Vec<u8>) -> Result<bool> {
        let path = self.path(name);
        match self.store.head(&path).await {
            Ok(_) => return Ok(false),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(error) => return Err(error.into()),
        }
        self.store.put(&path, PutPayload::from(bytes)).await?;
        Ok(true)
    }

    pub async fn get(&self, name: &str) -> Result<Option<bytes::Bytes>> {
        match self.store.get(&self.path(name)).await {
            Ok(result) => Ok(Some(result.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Deletes `name`; one already gone is no error (a clean-up may run twice).
    pub async fn delete(&self, name: &str) -> Result<()> {
        match self.store.delete(&self.path(name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Every object's name, sorted (tests, operators).
    pub async fn names(&self) -> Result<Vec<String>> {
        let prefix = Path::from(self.prefix.clone());
        let mut names: Vec<String> = self
            .store
            .list(Some(&prefix))
            .map_ok(|meta| meta.location.filename().unwrap_or_default().to_owned())
            .try_collect()
            .await?;
        names.sort();
        Ok(names)
    }
}
