//! The projection of the log into sled: the events in offset order, stored
//! a group of batches at a time ("chunks"), and a per-conversation index,
//! written together in one transaction by the projector (off the
//! acknowledgement path; the WAL made each batch durable first). Its layout
//! is the table in [`super`].
//!
//! Files of this part: this one (opening the database), `format` (the bytes
//! of the layout), `write` (the one transaction and sled's durable point),
//! `read` (by offset and by conversation), and [`super::legacy`] (the layout
//! before, and its migration).

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use super::format::{
    decode_u64, CHUNKED, CHUNKS, CONV_CHUNKS, DB_DIR, LAYOUT, META, SEGMENT_SIZE, WAL_LSN,
};
use super::{legacy, LogError};

pub struct Projection {
    pub(super) db: sled::Db,
    pub(super) chunks: sled::Tree,
    pub(super) conv_chunks: sled::Tree,
    pub(super) meta: sled::Tree,
    /// sled's data file, kept open to fdatasync it after each flush.
    pub(super) data_file: File,
    /// Files in sled's `blobs/` directory already fsynced (see `sync`).
    pub(super) synced_blobs: Mutex<HashSet<OsString>>,
    pub(super) dir: PathBuf,
    /// The bound of sled's page cache (and of the history records' cache,
    /// which the snapshot opens beside the log).
    pub(super) cache_bytes: u64,
}

impl Projection {
    /// Opens (or creates) the log in `dir`, first migrating a database
    /// written by the per-event layout (see [`legacy`]).
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Projection, LogError> {
        std::fs::create_dir_all(dir)?;
        let db_path = dir.join(DB_DIR);
        let legacy_path = dir.join(legacy::DIR);
        if legacy::is_legacy(&db_path)? {
            legacy::move_aside(&db_path, &legacy_path, dir)?;
        }
        let db = sled::Config::new()
            .path(&db_path)
            .segment_size(SEGMENT_SIZE)
            // sled's default is 1 GiB: a server would grow towards it as
            // history is read (replays, history pages).
            .cache_capacity(cache_bytes)
            // Our own group commit decides when to flush; the background
            // flusher only adds I/O that nobody waits for.
            .flush_every_ms(None)
            .open()?;
        let log = Projection {
            chunks: db.open_tree(CHUNKS)?,
            conv_chunks: db.open_tree(CONV_CHUNKS)?,
            meta: db.open_tree(META)?,
            data_file: File::open(db_path.join("db"))?,
            db,
            synced_blobs: Mutex::new(HashSet::new()),
            dir: dir.to_path_buf(),
            cache_bytes,
        };
        match log.meta.get(LAYOUT)? {
            Some(layout) if layout == CHUNKED => {
                if legacy_path.exists() {
                    // The copy finished, its removal did not.
                    legacy::remove(&legacy_path, dir)?;
                }
            }
            Some(other) => {
                return Err(LogError::Layout(format!(
                    "meta.layout is {:?}",
                    String::from_utf8_lossy(&other)
                )))
            }
            None if legacy_path.exists() => {
                legacy::migrate(&legacy_path, &log)?;
                legacy::remove(&legacy_path, dir)?;
            }
            None => log.initialize()?,
        }
        Ok(log)
    }

    /// A new database: marks its layout and makes its files' names durable.
    fn initialize(&self) -> Result<(), LogError> {
        // Only a migration writes before `layout` is set, and a migration
        // keeps its source until `layout` is durable.
        if !self.chunks.is_empty() || !self.conv_chunks.is_empty() || !self.meta.is_empty() {
            return Err(LogError::Layout(format!(
                "{} holds entries but no layout marker, and there is no {} to migrate from",
                self.dir.join(DB_DIR).display(),
                legacy::DIR
            )));
        }
        self.meta.insert(LAYOUT, CHUNKED)?;
        self.sync()?;
        self.sync_directories()
    }

    /// The last WAL record whose batch these trees hold durably.
    pub(super) fn wal_lsn(&self) -> Result<u64, LogError> {
        match self.meta.get(WAL_LSN)? {
            Some(value) => decode_u64(&value),
            None => Ok(0),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// True if `dir` holds a log (possibly one whose migration to this
    /// layout has not finished).
    pub fn exists_in(dir: &Path) -> bool {
        dir.join(DB_DIR).exists() || dir.join(legacy::DIR).exists()
    }

    /// Bytes sled occupies on disk.
    pub fn size_on_disk(&self) -> Result<u64, LogError> {
        Ok(self.db.size_on_disk()?)
    }

    /// Test hook: sled itself, to damage the log below its API.
    #[doc(hidden)]
    pub fn sled(&self) -> &sled::Db {
        &self.db
    }
}
