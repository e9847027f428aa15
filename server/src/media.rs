//! The media store (issue 13's avatars; issue 14's attachments use it
//! too): content-addressed files, and their removal once nothing refers to
//! them.
//!
//! A file's key is `<sha256 of its bytes, 64 lowercase hex>.<ext>`, the
//! extension naming its type (for avatars: told from the bytes). Same
//! bytes, same key: a second upload stores nothing new. The key is what
//! events record and what `/media/<key>` serves; the hash is the `ETag`.
//!
//! * **Embedded mode**: `<data-dir>/media/<key>` (the directory 0700, files
//!   0600), written to a temporary file, fsynced, renamed, and the
//!   directory fsynced, all before [`Media::put`] returns: the event that
//!   refers to a key is submitted only after that, so an acknowledged
//!   avatar never points at a missing file.
//! * **Cluster mode**: the JetStream Object Store bucket `--media-bucket`:
//!   every node serves every file. [`Media::put`] returns once JetStream
//!   has acknowledged the object.
//!
//! **Removal.** The state machine counts, per key, the avatars and
//! attachments that refer to it (`State::media_references`). A handler
//! that replaced or removed a reference calls [`Media::collect_later`];
//! the key is then removed if nothing refers to it and no upload of the
//! same bytes is in flight on this node. Embedded mode does it at once
//! (this node sees every upload, so that is exact). In cluster mode another
//! node may be uploading the same bytes, its event still on its way, so
//! the check waits `--media-gc-grace-secs` first. At start, a sweep
//! removes whatever nothing refers to (files a crash left between their
//! write and their event, temporary files; in cluster mode only objects
//! older than the grace).

use std::collections::HashMap;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, object_store};
use bytes::Bytes;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use vato_eventlog::Store;

use crate::config::Config;

/// Why the store could not do something: the caller answers 503.
#[derive(Debug, thiserror::Error)]
#[error("media store: {0}")]
pub struct MediaError(String);

fn error(what: &str, e: impl std::fmt::Display) -> MediaError {
    MediaError(format!("{what}: {e}"))
}

/// The image types an avatar may be, told by their magic numbers (the
/// `infer` crate): the extension of their key.
pub fn image_extension(bytes: &[u8]) -> Option<&'static str> {
    if infer::image::is_jpeg(bytes) {
        Some("jpg")
    } else if infer::image::is_png(bytes) {
        Some("png")
    } else if infer::image::is_gif(bytes) {
        Some("gif")
    } else if infer::image::is_webp(bytes) {
        Some("webp")
    } else {
        None
    }
}

/// The key of `bytes` stored with extension `ext`.
pub fn key_for(bytes: &[u8], ext: &str) -> String {
    format!("{:x}.{ext}", Sha256::digest(bytes))
}

/// The content hash of a well-formed key (`<64 hex>.<ext>`, the extension
/// 1–10 lowercase letters or digits), `None` for anything else: no path
/// separator or dot-dot can pass.
pub fn key_hash(key: &str) -> Option<&str> {
    let (hash, ext) = key.split_once('.')?;
    let hex = hash.len() == 64
        && hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let ext_ok = (1..=10).contains(&ext.len())
        && ext
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    (hex && ext_ok).then_some(hash)
}

/// The `Content-Type` a key is served with.
pub fn content_type(key: &str) -> &'static str {
    match key.rsplit_once('.').map(|(_, ext)| ext) {
        Some("jpg") => "image/jpeg",
        Some("png") => "image/png",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        _ => "application/octet-stream",
    }
}

enum Backend {
    /// `<data-dir>/media/`.
    Files(PathBuf),
    /// The cluster's Object Store bucket (boxed: it is large).
    Bucket(Box<object_store::ObjectStore>),
}

pub struct Media {
    backend: Backend,
    /// The read model, for the reference counts.
    store: Store,
    /// Key → uploads of it on this node that have not learnt their
    /// event's outcome yet: never removed meanwhile.
    in_flight: Mutex<HashMap<String, usize>>,
    /// Held by a put's existence check and write, and by a removal's check
    /// and delete, so that neither runs in the middle of the other.
    writes: tokio::sync::Mutex<()>,
    /// How long an unreferenced key waits before it is checked and
    /// removed: 0 in embedded mode, `--media-gc-grace-secs` in cluster mode.
    grace: Duration,
}

/// An upload in flight: its key is not removed while this lives. Dropped
/// once the event that refers to it is applied or refused; then the key is
/// checked, so that the file of a refused or failed upload goes.
pub struct Upload {
    pub key: String,
    media: Arc<Media>,
}

impl Drop for Upload {
    fn drop(&mut self) {
        {
            let mut in_flight = self.media.in_flight.lock();
            if let Some(count) = in_flight.get_mut(&self.key) {
                *count -= 1;
                if *count == 0 {
                    in_flight.remove(&self.key);
                }
            }
        }
        self.media.collect_later(self.key.clone());
    }
}

impl Media {
    /// The files directory in embedded mode; the bucket (created if
    /// missing, with the stream's storage and replicas) in cluster mode.
    pub async fn open(
        config: &Config,
        jetstream: Option<&jetstream::Context>,
        store: Store,
    ) -> Result<Arc<Media>, MediaError> {
        let (backend, grace) = match jetstream {
            None => {
                let dir = config.data_dir.join("media");
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&dir)
                    .map_err(|e| error("create the media directory", e))?;
                (Backend::Files(dir), Duration::ZERO)
            }
            Some(jetstream) => (
                Backend::Bucket(Box::new(open_bucket(jetstream, config).await?)),
                Duration::from_secs(config.media_gc_grace_secs),
            ),
        };
        Ok(Arc::new(Media {
            backend,
            store,
            in_flight: Mutex::new(HashMap::new()),
            writes: tokio::sync::Mutex::new(()),
            grace,
        }))
    }

    /// Stores `bytes` under their key (nothing new when it exists) and
    /// returns once they are durable: fsynced (embedded) or acknowledged
    /// by JetStream (cluster). The key stays safe from removal while the
    /// returned [`Upload`] lives.
    pub async fn put(self: &Arc<Self>, bytes: Bytes, ext: &str) -> Result<Upload, MediaError> {
        // Hashed off the async workers: 25 MiB is tens of ms of SHA-256,
        // and every socket on the worker would wait for it.
        let key = {
            let (bytes, ext) = (bytes.clone(), ext.to_owned());
            tokio::task::spawn_blocking(move || key_for(&bytes, &ext))
                .await
                .map_err(|e| error("hash task", e))?
        };
        *self.in_flight.lock().entry(key.clone()).or_default() += 1;
        let upload = Upload {
            key: key.clone(),
            media: self.clone(),
        };
        let _writing = self.writes.lock().await;
        match &self.backend {
            Backend::Files(dir) => {
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || write_file(&dir, &key, &bytes))
                    .await
                    .map_err(|e| error("write task", e))?
                    .map_err(|e| error("write", e))?;
            }
            Backend::Bucket(bucket) => match bucket.info(&key).await {
                Ok(info) if !info.deleted => {}
                _ => {
                    bucket
                        .put(key.as_str(), &mut bytes.as_ref())
                        .await
                        .map_err(|e| error("put", e))?;
                }
            },
        }
        Ok(upload)
    }

    /// The bytes of `key`, or `None` when there is no such file.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, MediaError> {
        if key_hash(key).is_none() {
            return Ok(None);
        }
        match &self.backend {
            Backend::Files(dir) => match tokio::fs::read(dir.join(key)).await {
                Ok(bytes) => Ok(Some(bytes.into())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(error("read", e)),
            },
            Backend::Bucket(bucket) => {
                let mut object = match bucket.get(key).await {
                    Ok(object) => object,
                    Err(e) if e.kind() == object_store::GetErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(error("get", e)),
                };
                let mut bytes = Vec::with_capacity(object.info().size);
                object
                    .read_to_end(&mut bytes)
                    .await
                    .map_err(|e| error("read", e))?;
                Ok(Some(bytes.into()))
            }
        }
    }

    /// Removes `key` (after the grace) if nothing refers to it then and no
    /// upload of it is in flight here.
    pub fn collect_later(self: &Arc<Self>, key: String) {
        let media = self.clone();
        tokio::spawn(async move {
            if !media.grace.is_zero() {
                tokio::time::sleep(media.grace).await;
            }
            if let Err(e) = media.collect(&key).await {
                tracing::warn!("{e}; the sweep at the next start retries");
            }
        });
    }

    async fn collect(&self, key: &str) -> Result<(), MediaError> {
        let _writing = self.writes.lock().await;
        if self.in_flight.lock().contains_key(key) || self.store.state().media_references(key) > 0 {
            return Ok(());
        }
        self.delete(key).await
    }

    async fn delete(&self, key: &str) -> Result<(), MediaError> {
        match &self.backend {
            Backend::Files(dir) => remove_file(dir, key),
            Backend::Bucket(bucket) => match bucket.delete(key).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == object_store::DeleteErrorKind::NotFound => Ok(()),
                Err(e) => Err(error("delete", e)),
            },
        }
    }

    /// Removes every file nothing refers to (and, in embedded mode, the
    /// temporary files of writes and removals a crash interrupted, shrunk
    /// a megabyte at a time). Run at start, once
    /// the read model is complete; in cluster mode only objects older than
    /// the grace go (another node may be uploading them right now).
    pub async fn sweep(&self) -> Result<usize, MediaError> {
        let keys = match &self.backend {
            Backend::Files(dir) => {
                let mut keys = Vec::new();
                let entries = std::fs::read_dir(dir).map_err(|e| error("list", e))?;
                for entry in entries.flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if name.starts_with(".tmp-") {
                        // A megabyte at a time, as `remove_file` frees a
                        // big file: such a leftover may be an attachment's
                        // tens of MB.
                        let path = entry.path();
                        let removed = tokio::task::spawn_blocking(move || {
                            vato_eventlog::paced::remove(&path).map_err(|e| (path, e))
                        })
                        .await;
                        if let Ok(Err((path, e))) = removed {
                            tracing::warn!("removing {}: {e}", path.display());
                        }
                    } else {
                        keys.push(name);
                    }
                }
                keys
            }
            Backend::Bucket(bucket) => {
                use futures_util::StreamExt;
                let cutoff = time::OffsetDateTime::now_utc() - self.grace;
                let mut list = bucket.list().await.map_err(|e| error("list", e))?;
                let mut keys = Vec::new();
                while let Some(info) = list.next().await {
                    let info = info.map_err(|e| error("list", e))?;
                    if !info.deleted && info.modified.is_some_and(|m| m < cutoff) {
                        keys.push(info.name);
                    }
                }
                keys
            }
        };
        let mut removed = 0;
        for key in keys {
            if key_hash(&key).is_some() && self.store.state().media_references(&key) == 0 {
                let _writing = self.writes.lock().await;
                if !self.in_flight.lock().contains_key(&key)
                    && self.store.state().media_references(&key) == 0
                {
                    self.delete(&key).await?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

/// The bucket, created if missing. Retried for a while, as the stream is:
/// nodes starting together on a fresh replicated cluster may find
/// JetStream without a leader for a moment.
async fn open_bucket(
    jetstream: &jetstream::Context,
    config: &Config,
) -> Result<object_store::ObjectStore, MediaError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let bound = Duration::from_millis(config.nats_timeout_ms).max(Duration::from_secs(3));
        let attempt = tokio::time::timeout(bound, async {
            match jetstream.get_object_store(&config.media_bucket).await {
                Ok(bucket) => Ok(bucket),
                Err(_) => jetstream
                    .create_object_store(object_store::Config {
                        bucket: config.media_bucket.clone(),
                        description: Some("Vato media (avatars, attachments)".into()),
                        storage: if config.stream_storage == "memory" {
                            jetstream::stream::StorageType::Memory
                        } else {
                            jetstream::stream::StorageType::File
                        },
                        num_replicas: config.stream_replicas,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| error("create the bucket", e)),
            }
        })
        .await
        .unwrap_or_else(|_| Err(MediaError("opening the bucket timed out".into())));
        match attempt {
            Ok(bucket) => return Ok(bucket),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!("{e}; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Removes `dir/key`. A file over a megabyte goes at once from its key
/// (renamed to a temporary name, which the sweep at start removes if a
/// crash leaves it), and its blocks go back a megabyte at a time in the
/// background: an attachment of tens of MB freed at once held every
/// acknowledgement behind the device's discard ([`vato_eventlog::paced`]).
fn remove_file(dir: &Path, key: &str) -> Result<(), MediaError> {
    let path = dir.join(key);
    let removed = match std::fs::metadata(&path) {
        Ok(meta) if meta.len() > vato_eventlog::paced::REMOVE_STEP => {
            let doomed = dir.join(format!(".tmp-{:016x}", rand::random::<u64>()));
            std::fs::rename(&path, &doomed).map(|()| {
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = vato_eventlog::paced::remove(&doomed) {
                        tracing::warn!("removing {}: {e}", doomed.display());
                    }
                });
            })
        }
        Ok(_) => std::fs::remove_file(&path),
        Err(e) => Err(e),
    };
    match removed {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(error("remove", e)),
        _ => Ok(()),
    }
}

/// Writes `bytes` as `dir/key` durably: a temporary file (0600), written a
/// quarter megabyte at a time ([`vato_eventlog::paced`]: an attachment of tens of
/// MB handed to the device at once held the log's `fdatasync`s behind
/// it), fsynced, renamed over, the directory fsynced. An existing `key` is
/// left as it is (same key, same bytes).
fn write_file(dir: &Path, key: &str, bytes: &[u8]) -> std::io::Result<()> {
    let path = dir.join(key);
    if path.exists() {
        return Ok(());
    }
    let tmp = dir.join(format!(".tmp-{:016x}", rand::random::<u64>()));
    let written = (|| {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        vato_eventlog::paced::PacedWriter::new(&file).write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_strictly() {
        let key = key_for(b"hello", "png");
        assert_eq!(
            key,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824.png"
        );
        assert!(key_hash(&key).is_some());
        for bad in [
            "../etc/passwd",
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824.",
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824.p/g",
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824.png.png",
            "2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824.png",
            ".tmp-0000000000000000",
        ] {
            assert!(key_hash(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn image_types_come_from_the_bytes() {
        assert_eq!(image_extension(b"\xFF\xD8\xFF\xE0rest"), Some("jpg"));
        assert_eq!(image_extension(b"\x89PNG\r\n\x1a\nrest"), Some("png"));
        assert_eq!(image_extension(b"GIF89a...."), Some("gif"));
        assert_eq!(image_extension(b"RIFF\0\0\0\0WEBPVP8 "), Some("webp"));
        assert_eq!(image_extension(b"<html>not an image</html>"), None);
        assert_eq!(image_extension(b""), None);
    }
}
