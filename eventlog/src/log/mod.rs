//! The log on sled: the events in offset order, stored a group commit at a
//! time ("chunks"), and a per-conversation index, written together in one
//! transaction and made durable per batch.
//!
//! Layout (one sled database in `<data dir>/sled`, 8 MiB segments):
//!
//! | tree          | key                                     | value |
//! |---------------|-----------------------------------------|-------|
//! | `chunks`      | first offset of the chunk (u64 BE)      | the entries at that offset and the next ones: `[len: u32 BE][encoded Envelope]`… |
//! | `conv_chunks` | conv id (u64 BE) ++ first seq (u64 BE)  | the offsets (u64 BE each) of that conversation's seqs first, first+1, … |
//! | `meta`        | `layout`                                | `chunked-1`: the layout above (absent: a migration did not finish) |
//! | `meta`        | `position`                              | u64 BE: the last command applied from an external sequencer (the cluster's JetStream stream sequence) |
//!
//! Why chunks: sled costs ~10–20 µs of the writer's CPU per key inserted,
//! and the layout before this one (a key per event plus an index key per
//! event) capped the writer at ~35k appends/s. A group commit is now one
//! value per 64 KiB of entries plus one index key per conversation it
//! touches (eventlog/BENCHMARKS-log.md). Each entry keeps its own version
//! byte and CRC ([`crate::codec`]), so a damaged entry is still an error
//! naming its offset.
//!
//! Reads: `get(offset)` is one reverse range step on `chunks` (the last
//! chunk starting at or before the offset) and a walk over length
//! prefixes. Big-endian keys sort numerically, so "everything after seq N"
//! and "the page before seq N" are range scans over `conv_chunks` in either
//! direction, starting from the run that holds N.
//!
//! Durability: sled 0.34's `flush()` writes its buffers with
//! `sync_file_range`, which persists neither the file's metadata nor the
//! drive's write cache. After each flush we `fdatasync` sled's data file
//! (and any new blob file) ourselves; only then is a batch acknowledged.
//!
//! Databases written by the layout before (trees `events` and `by_conv`,
//! sled's default 512 KiB segments) are migrated on open: see [`legacy`].
//!
//! Files, in read order: this one (the [`Log`], opening it), `format`
//! (the bytes of the layout), `write` (the one transaction and the
//! durable point), `read` (by offset and by conversation), `error`, and
//! [`legacy`] (the layout before, and its migration).

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

mod error;
mod format;
#[doc(hidden)]
pub mod legacy;
mod read;
mod write;

pub use error::LogError;
use format::{CHUNKED, DB_DIR, SEGMENT_SIZE};
#[doc(hidden)]
pub use format::{CHUNKS, CONV_CHUNKS, LAYOUT, META};

pub struct Log {
    db: sled::Db,
    chunks: sled::Tree,
    conv_chunks: sled::Tree,
    meta: sled::Tree,
    /// sled's data file, kept open to fdatasync it after each flush.
    data_file: File,
    /// Files in sled's `blobs/` directory already fsynced (see `sync`).
    synced_blobs: Mutex<HashSet<OsString>>,
    dir: PathBuf,
}

impl Log {
    /// Opens (or creates) the log in `dir`, first migrating a database
    /// written by the per-event layout (see [`legacy`]).
    pub fn open(dir: &Path) -> Result<Log, LogError> {
        std::fs::create_dir_all(dir)?;
        let db_path = dir.join(DB_DIR);
        let legacy_path = dir.join(legacy::DIR);
        if legacy::is_legacy(&db_path)? {
            legacy::move_aside(&db_path, &legacy_path, dir)?;
        }
        let db = sled::Config::new()
            .path(&db_path)
            .segment_size(SEGMENT_SIZE)
            // Our own group commit decides when to flush; the background
            // flusher only adds I/O that nobody waits for.
            .flush_every_ms(None)
            .open()?;
        let log = Log {
            chunks: db.open_tree(CHUNKS)?,
            conv_chunks: db.open_tree(CONV_CHUNKS)?,
            meta: db.open_tree(META)?,
            data_file: File::open(db_path.join("db"))?,
            db,
            synced_blobs: Mutex::new(HashSet::new()),
            dir: dir.to_path_buf(),
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
