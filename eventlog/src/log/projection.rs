//! The projection of the log: the events in offset order, stored a group
//! of batches at a time ("chunks") in sled, and a per-conversation index
//! in a redb file of its own (`log-index.redb`, [`crate::table_file`]),
//! written by the projector (off the acknowledgement path; the WAL made
//! each batch durable first): the chunks first, then the index. The index
//! records the offset up to which it is complete; an open indexes again
//! whatever the chunks hold past it (what a crash before the index's
//! durable commit lost). Its layout is the table in [`super`].
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
    decode_u64, RunBuilder, CHUNKED, CHUNKS, CONV_CHUNKS, DB_DIR, INDEXED, INDEX_FILE, INDEX_TABLE,
    LAYOUT, META, SEGMENT_SIZE, WAL_LSN,
};
use super::{legacy, LogError};
use crate::event::Offset;
use crate::table_file::TableFile;

/// Events indexed per commit when an open indexes the chunks' tail.
const INDEX_PER_COMMIT: usize = 1 << 20;

pub struct Projection {
    pub(super) db: sled::Db,
    pub(super) chunks: sled::Tree,
    /// The per-conversation index ([`INDEX_FILE`]).
    pub(super) index: TableFile,
    pub(super) meta: sled::Tree,
    /// sled's data file, kept open to fdatasync it after each flush.
    pub(super) data_file: File,
    /// Files in sled's `blobs/` directory already fsynced (see `sync`).
    pub(super) synced_blobs: Mutex<HashSet<OsString>>,
    pub(super) dir: PathBuf,
    /// The bound of each read cache: sled's page cache, the index's, and
    /// the history records' (which the snapshot opens beside the log).
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
        let index = TableFile::open(&dir.join(INDEX_FILE), INDEX_TABLE, cache_bytes)?;
        let log = Projection {
            chunks: db.open_tree(CHUNKS)?,
            index,
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
        log.move_index_from_sled()?;
        log.index_the_tail()?;
        Ok(log)
    }

    /// Directories written before the index had its file keep it in
    /// sled's tree [`CONV_CHUNKS`], complete up to the chunks' end (the
    /// two were written in one transaction): moved into the file, with
    /// that end as [`INDEXED`].
    fn move_index_from_sled(&self) -> Result<(), LogError> {
        let end = self.next_offset()?.to_be_bytes();
        let moved = self
            .index
            .migrate_from(&self.db, CONV_CHUNKS, &[(INDEXED, &end[..])])
            .map_err(|e| match e {
                crate::table_file::MigrateError::Sled(e) => LogError::Sled(e),
                crate::table_file::MigrateError::File(e) => LogError::Index(e),
            })?;
        if moved > 0 {
            self.sync()?;
        }
        Ok(())
    }

    /// The offset up to which the index holds every event of the chunks.
    pub(super) fn indexed(&self) -> Result<Offset, LogError> {
        match self.index.get(INDEXED).map_err(|e| self.index.error(e))? {
            Some(value) => decode_u64(&value),
            None => Ok(0),
        }
    }

    /// Indexes the events the chunks hold past [`Projection::indexed`]
    /// (after a crash: the index's commits since its last durable one), a
    /// bounded number of events per commit.
    fn index_the_tail(&self) -> Result<(), LogError> {
        let from = self.indexed()?;
        let end = self.next_offset()?;
        if from >= end {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let mut runs = RunBuilder::default();
        let mut count = 0usize;
        let mut at = from;
        for envelope in self.read_from(from) {
            let envelope = envelope?;
            if let Some((conv, seq)) = envelope.event.conv_seq() {
                runs.push(conv, seq, envelope.offset);
            }
            at = envelope.offset + 1;
            count += 1;
            if count.is_multiple_of(INDEX_PER_COMMIT) {
                self.write_runs(std::mem::take(&mut runs), at, false)?;
            }
        }
        self.write_runs(runs, at, true)?;
        tracing::info!(
            from,
            to = at,
            ms = started.elapsed().as_millis() as u64,
            "indexed the log's tail by conversation"
        );
        Ok(())
    }

    /// A new database: marks its layout and makes its files' names durable.
    fn initialize(&self) -> Result<(), LogError> {
        // Only a migration writes before `layout` is set, and a migration
        // keeps its source until `layout` is durable.
        if !self.chunks.is_empty() || !self.meta.is_empty() {
            return Err(LogError::Layout(format!(
                "{} holds entries but no layout marker, and there is no {} to migrate from",
                self.dir.join(DB_DIR).display(),
                legacy::DIR
            )));
        }
        // The index is derived from the chunks: one left beside a removed
        // database indexes nothing that is there.
        self.index.clear()?;
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

    /// Bytes sled and the index's file occupy on disk.
    pub fn size_on_disk(&self) -> Result<u64, LogError> {
        let index = std::fs::metadata(self.index.path())?.len();
        Ok(self.db.size_on_disk()? + index)
    }

    /// Test hook: sled itself, to damage the log below its API.
    #[doc(hidden)]
    pub fn sled(&self) -> &sled::Db {
        &self.db
    }
}
