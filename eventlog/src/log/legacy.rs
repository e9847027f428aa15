//! The per-event layout that came before chunks, kept to migrate the
//! databases it wrote (and, for tests, to write one):
//!
//! | tree      | key                              | value                |
//! |-----------|----------------------------------|----------------------|
//! | `events`  | offset (u64 BE)                  | encoded [`Envelope`] |
//! | `by_conv` | conv id (u64 BE) ++ seq (u64 BE) | offset (u64 BE)      |
//! | `meta`    | `position`                       | u64 BE               |
//!
//! in a sled database with sled's default 512 KiB segments. sled cannot
//! change the segment size of a database, so the migration copies into a
//! new one:
//!
//! 1. `sled/`, recognized as per-event by the segment size in sled's
//!    `conf`, is renamed to `sled.legacy/` (under sled's file lock, so never
//!    under a process that has it open), and the data directory fsynced.
//! 2. A new `sled/` is opened and anything a previous attempt copied into
//!    it is cleared. The events are copied into `chunks` and the index into
//!    `conv_chunks`, in batches; flush + fsync. Then `meta.position` and
//!    `meta.layout` are written; flush + fsync again, plus the directories.
//!    `layout` is the commit point.
//! 3. `sled.legacy/` is removed.
//!
//! A crash anywhere leaves a state the next open finishes: a per-event
//! `sled/` → from step 1; `sled.legacy/` with no `sled/`, or with a `sled/`
//! lacking `layout` → step 2 from the start; `sled.legacy/` with `layout`
//! set → step 3.
//!
//! The copy is raw: each entry keeps its bytes (a damaged one stays an
//! error naming its offset), a gap in the offsets stays a gap, and the
//! index is `by_conv` regrouped into runs.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Instant;

use super::format::{
    conv_key, decode_u64, encode_envelope, ChunkBuilder, RunBuilder, CHUNKED, DB_DIR, LAYOUT, META,
    POSITION, SEGMENT_SIZE,
};
use super::projection::Projection;
use super::write::{sync_dir, write_together};
use super::LogError;
use crate::event::Envelope;

/// Where the per-event database waits while it is copied.
pub(super) const DIR: &str = "sled.legacy";
const EVENTS: &str = "events";
const BY_CONV: &str = "by_conv";
/// sled 0.34's default, which the per-event layout used.
const LEGACY_SEGMENT_SIZE: usize = 512 << 10;
/// Bytes of entries (or index entries) handed to sled at once.
const COPY_BYTES: usize = 4 << 20;

fn config(path: &Path) -> sled::Config {
    sled::Config::new().path(path).flush_every_ms(None)
}

/// True if `db_path` holds a database of the per-event layout, as told by
/// the segment size in sled's `conf` (`segment_size: N` on a line).
pub(super) fn is_legacy(db_path: &Path) -> Result<bool, LogError> {
    let conf = match std::fs::read(db_path.join("conf")) {
        Ok(conf) => conf,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    // A `conf` that fails its crc (the last 4 bytes) was torn while its
    // database was being created: sled treats it as absent, and so do we.
    let Some(split) = conf.len().checked_sub(4) else {
        return Ok(false);
    };
    let (text, crc) = conf.split_at(split);
    if crc32fast::hash(text).to_le_bytes() != crc {
        return Ok(false);
    }
    let segment_size = String::from_utf8_lossy(text)
        .lines()
        .find_map(|line| line.strip_prefix("segment_size: "))
        .and_then(|n| n.trim().parse::<usize>().ok());
    match segment_size {
        Some(LEGACY_SEGMENT_SIZE) => Ok(true),
        // Unreadable: let sled judge it, as before.
        Some(SEGMENT_SIZE) | None => Ok(false),
        Some(other) => Err(LogError::Layout(format!(
            "{} has sled segments of {other} bytes, neither the per-event layout's nor this one's",
            db_path.display()
        ))),
    }
}

/// Step 1: renames the per-event database out of the way.
pub(super) fn move_aside(db_path: &Path, legacy_path: &Path, dir: &Path) -> Result<(), LogError> {
    if legacy_path.exists() {
        return Err(LogError::Layout(format!(
            "both {} (per-event layout) and {} exist",
            db_path.display(),
            legacy_path.display()
        )));
    }
    // Renaming the directory of a database another process has open would
    // split its files between two names: take sled's own lock first (an
    // exclusive flock on `db`), failing with sled's words if it is held.
    let data_file = File::open(db_path.join("db"))?;
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    if unsafe { libc::flock(data_file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(LogError::Io(std::io::Error::other(format!(
            "could not acquire lock on {}: {}",
            db_path.join("db").display(),
            std::io::Error::last_os_error()
        ))));
    }
    tracing::info!(
        "{} uses the per-event layout: moving it to {} to migrate it",
        db_path.display(),
        legacy_path.display()
    );
    std::fs::rename(db_path, legacy_path)?;
    sync_dir(dir)?;
    // Closing the file releases the lock.
    drop(data_file);
    Ok(())
}

/// Step 2: copies the per-event database into `log`, which has no
/// `layout` yet, and sets it.
pub(super) fn migrate(legacy_path: &Path, log: &Projection) -> Result<(), LogError> {
    let started = Instant::now();
    let db = config(legacy_path).open()?;
    let events = db.open_tree(EVENTS)?;
    let by_conv = db.open_tree(BY_CONV)?;
    let meta = db.open_tree(META)?;

    // Whatever an interrupted attempt copied: start over.
    log.chunks.clear()?;
    log.index.clear()?;
    // An interrupted copy by a version that kept the index in sled.
    log.db.drop_tree(super::format::CONV_CHUNKS)?;
    log.meta.clear()?;

    let mut copied = 0u64;
    let mut chunks = ChunkBuilder::default();
    for item in events.iter() {
        let (key, entry) = item?;
        let offset = decode_u64(&key)?;
        chunks.push(offset, &entry)?;
        copied += 1;
        if chunks.bytes() >= COPY_BYTES {
            log.chunks
                .apply_batch(std::mem::take(&mut chunks).into_batch())?;
        }
    }
    log.chunks.apply_batch(chunks.into_batch())?;

    let mut runs = RunBuilder::default();
    let mut pending = 0;
    for item in by_conv.iter() {
        let (key, value) = item?;
        if key.len() != 16 {
            return Err(LogError::BadKey(key.to_vec()));
        }
        runs.push(
            decode_u64(&key[..8])?,
            decode_u64(&key[8..])?,
            decode_u64(&value)?,
        );
        pending += 8;
        if pending >= COPY_BYTES {
            log.write_runs(std::mem::take(&mut runs), 0, true)?;
            pending = 0;
        }
    }
    // Complete once every run is in: up to the end of the copied chunks.
    let end = log.next_offset()?;
    log.write_runs(runs, end, true)?;
    // Everything copied is durable before `layout` can be.
    log.sync()?;

    let mut commit = sled::Batch::default();
    if let Some(position) = meta.get(POSITION)? {
        commit.insert(POSITION, position);
    }
    commit.insert(LAYOUT, CHUNKED);
    log.meta.apply_batch(commit)?;
    log.sync()?;
    log.sync_directories()?;
    tracing::info!(
        events = copied,
        seconds = started.elapsed().as_secs_f64(),
        "migrated the log to the chunked layout"
    );
    Ok(())
}

/// Step 3: removes the per-event database once its copy is durable.
pub(super) fn remove(legacy_path: &Path, dir: &Path) -> Result<(), LogError> {
    std::fs::remove_dir_all(legacy_path)?;
    sync_dir(dir)?;
    Ok(())
}

/// Test fixture: writes `batches` into a new database in `dir` exactly as
/// the per-event layout did (one transaction per batch over `events`,
/// `by_conv` and, with the last batch, `meta.position`).
#[doc(hidden)]
pub fn write(dir: &Path, batches: &[Vec<Envelope>], position: Option<u64>) -> Result<(), LogError> {
    let db = config(&dir.join(DB_DIR)).open()?;
    let events = db.open_tree(EVENTS)?;
    let by_conv = db.open_tree(BY_CONV)?;
    let meta = db.open_tree(META)?;
    for (i, batch) in batches.iter().enumerate() {
        let mut entries = sled::Batch::default();
        let mut index = sled::Batch::default();
        for envelope in batch {
            entries.insert(&envelope.offset.to_be_bytes(), encode_envelope(envelope)?);
            if let Some((conv, seq)) = envelope.event.conv_seq() {
                index.insert(&conv_key(conv, seq), &envelope.offset.to_be_bytes());
            }
        }
        let position = position.filter(|_| i + 1 == batches.len());
        write_together(
            [&events, &meta],
            &entries,
            Some((&by_conv, &index)),
            position,
            None,
        )?;
    }
    db.flush()?;
    Ok(())
}
