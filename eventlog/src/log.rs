//! The log on sled: a global offset-ordered tree of events and a
//! per-conversation index, written together and made durable per batch.
//!
//! Layout (one sled database in the data directory):
//!
//! | tree      | key                                  | value                 |
//! |-----------|--------------------------------------|-----------------------|
//! | `events`  | offset (u64 big-endian)              | encoded [`Envelope`]  |
//! | `by_conv` | conv id (u64 BE) ++ seq (u64 BE)     | offset (u64 BE)       |
//! | `meta`    | `position`                           | u64 BE: the last command applied from an external sequencer (the cluster's JetStream stream sequence) |
//!
//! Big-endian keys sort numerically, so "everything after seq N" and
//! "the page before seq N" are plain range scans in either direction.
//!
//! Durability: sled 0.34's `flush()` writes its buffers with
//! `sync_file_range`, which persists neither the file's metadata nor the
//! drive's write cache. After each flush we `fdatasync` sled's data file
//! ourselves; only then is a batch acknowledged.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use crate::codec::{self, CodecError};
use crate::event::{ConvId, Envelope, Offset, Seq};

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("corrupt log entry at offset {offset}: {source}")]
    Corrupt {
        offset: Offset,
        #[source]
        source: CodecError,
    },
    #[error("corrupt log key {0:?}")]
    BadKey(Vec<u8>),
}

pub struct Log {
    db: sled::Db,
    events: sled::Tree,
    by_conv: sled::Tree,
    meta: sled::Tree,
    /// sled's data file, kept open to fdatasync it after each flush.
    data_file: File,
    /// Files in sled's `blobs/` directory already fsynced (see `sync`).
    synced_blobs: Mutex<HashSet<OsString>>,
    dir: PathBuf,
}

impl Log {
    pub fn open(dir: &Path) -> Result<Log, LogError> {
        std::fs::create_dir_all(dir)?;
        let db = sled::Config::new()
            .path(dir.join("sled"))
            // Our own group commit decides when to flush; the background
            // flusher only adds I/O that nobody waits for.
            .flush_every_ms(None)
            .open()?;
        let events = db.open_tree("events")?;
        let by_conv = db.open_tree("by_conv")?;
        let meta = db.open_tree("meta")?;
        let data_file = File::open(dir.join("sled").join("db"))?;
        Ok(Log {
            db,
            events,
            by_conv,
            meta,
            data_file,
            synced_blobs: Mutex::new(HashSet::new()),
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Offset the next appended event will get.
    pub fn next_offset(&self) -> Result<Offset, LogError> {
        match self.events.last()? {
            Some((key, _)) => Ok(decode_u64(&key)? + 1),
            None => Ok(0),
        }
    }

    /// Writes a batch of consecutive envelopes and its index entries in one
    /// sled transaction, then makes it durable (flush + fdatasync).
    pub fn append_batch(&self, batch: &[Envelope]) -> Result<(), LogError> {
        self.append_batch_at(batch, None)
    }

    /// The last external position recorded with a batch (cluster mode: the
    /// stream sequence of the last command applied).
    pub fn position(&self) -> Result<Option<u64>, LogError> {
        match self.meta.get(POSITION)? {
            Some(value) => Ok(Some(decode_u64(&value)?)),
            None => Ok(None),
        }
    }

    /// [`Log::append_batch`], also recording `position` in the same
    /// transaction, so that events and "how far the stream was applied"
    /// can never disagree after a crash.
    pub fn append_batch_at(
        &self,
        batch: &[Envelope],
        position: Option<u64>,
    ) -> Result<(), LogError> {
        let mut events = sled::Batch::default();
        let mut index = sled::Batch::default();
        for envelope in batch {
            let bytes = codec::encode(envelope).map_err(|source| LogError::Corrupt {
                offset: envelope.offset,
                source,
            })?;
            events.insert(&envelope.offset.to_be_bytes(), bytes);
            if let Some((conv, seq)) = envelope.event.conv_seq() {
                index.insert(&conv_key(conv, seq), &envelope.offset.to_be_bytes());
            }
        }
        (&self.events, &self.by_conv, &self.meta)
            .transaction(|(e, c, m)| {
                e.apply_batch(&events)?;
                c.apply_batch(&index)?;
                if let Some(position) = position {
                    m.insert(POSITION, &position.to_be_bytes())?;
                }
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                TransactionError::Storage(s) => LogError::Sled(s),
                TransactionError::Abort(()) => unreachable!("the transaction never aborts"),
            })?;
        self.sync()
    }

    /// Flushes sled and then fsyncs its data file: the durable point.
    pub fn sync(&self) -> Result<(), LogError> {
        self.db.flush()?;
        self.sync_blobs()?;
        self.data_file.sync_data()?;
        Ok(())
    }

    /// sled 0.34 writes a page bigger than ~128 KiB (a leaf of up to 16
    /// large values: 16 KiB messages suffice) to its own file under
    /// `blobs/`, and never fsyncs it; the data file only points to it.
    /// Blob files are written once and never modified, so each is synced
    /// once, before the data file that refers to it.
    fn sync_blobs(&self) -> Result<(), LogError> {
        let dir = self.dir.join("sled").join("blobs");
        let mut synced = self.synced_blobs.lock();
        let mut present = HashSet::new();
        let mut new = false;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            if !synced.contains(&name) {
                match File::open(entry.path()) {
                    Ok(file) => file.sync_data()?,
                    // Collected by sled since the listing: nothing to sync.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e.into()),
                }
                new = true;
            }
            present.insert(name);
        }
        *synced = present;
        if new {
            File::open(&dir)?.sync_all()?;
        }
        Ok(())
    }

    /// Every event from `offset` on, in order.
    pub fn read_from(
        &self,
        offset: Offset,
    ) -> impl Iterator<Item = Result<Envelope, LogError>> + '_ {
        self.events.range(offset.to_be_bytes()..).map(|item| {
            let (key, value) = item?;
            let offset = decode_u64(&key)?;
            decode_envelope(offset, &value)
        })
    }

    pub fn get(&self, offset: Offset) -> Result<Option<Envelope>, LogError> {
        match self.events.get(offset.to_be_bytes())? {
            Some(value) => decode_envelope(offset, &value).map(Some),
            None => Ok(None),
        }
    }

    /// Up to `limit` events of `conv` with seq > `after`, oldest first.
    pub fn conv_after(
        &self,
        conv: ConvId,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<Envelope>, LogError> {
        let start = conv_key(conv, after.saturating_add(1));
        let end = conv_key(conv, u64::MAX);
        self.by_conv
            .range(start..=end)
            .take(limit)
            .map(|item| self.resolve(item))
            .collect()
    }

    /// Up to `limit` events of `conv` with seq < `before`, newest first.
    pub fn conv_before(
        &self,
        conv: ConvId,
        before: Seq,
        limit: usize,
    ) -> Result<Vec<Envelope>, LogError> {
        let start = conv_key(conv, 0);
        let end = conv_key(conv, before);
        self.by_conv
            .range(start..end)
            .rev()
            .take(limit)
            .map(|item| self.resolve(item))
            .collect()
    }

    fn resolve(&self, item: sled::Result<(sled::IVec, sled::IVec)>) -> Result<Envelope, LogError> {
        let (key, value) = item?;
        let offset = decode_u64(&value)?;
        self.get(offset)?.ok_or(LogError::BadKey(key.to_vec()))
    }

    /// Bytes sled occupies on disk.
    pub fn size_on_disk(&self) -> Result<u64, LogError> {
        Ok(self.db.size_on_disk()?)
    }

    /// Test and repair hook: overwrite the raw bytes stored at `offset`.
    #[doc(hidden)]
    pub fn put_raw(&self, offset: Offset, bytes: &[u8]) -> Result<(), LogError> {
        self.events.insert(offset.to_be_bytes(), bytes)?;
        self.sync()
    }
}

fn decode_envelope(offset: Offset, value: &[u8]) -> Result<Envelope, LogError> {
    let envelope: Envelope =
        codec::decode(value).map_err(|source| LogError::Corrupt { offset, source })?;
    if envelope.offset != offset {
        return Err(LogError::Corrupt {
            offset,
            source: CodecError::Payload(format!("envelope says offset {}", envelope.offset)),
        });
    }
    Ok(envelope)
}

const POSITION: &[u8] = b"position";

fn conv_key(conv: ConvId, seq: Seq) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&conv.to_be_bytes());
    key[8..].copy_from_slice(&seq.to_be_bytes());
    key
}

fn decode_u64(bytes: &[u8]) -> Result<u64, LogError> {
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| LogError::BadKey(bytes.to_vec()))?;
    Ok(u64::from_be_bytes(array))
}
