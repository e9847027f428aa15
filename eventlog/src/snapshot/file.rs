//! The snapshot's file: the encoded state a snapshot commits, written and
//! synced before the commit, outside any lock of sled's or redb's. Until
//! 2026-12-07 it held the frozen layer too, committed by a sled batch;
//! now the layer's records and the commit are one transaction of the
//! records' file (`super`'s module doc), and a file of that layout is
//! read (and migrated).
//!
//! They were values in the snapshot tree until this file. sled's
//! `apply_batch` holds a process-wide write lock while it serializes and
//! writes a batch's values: a 29 MB state (20,000 users) held every sled
//! read in the process, the idempotency probe of each send among them, for
//! 160-200 ms a snapshot (BENCHMARKS.md, "the writer's snapshot pause").
//! And sled writes a value that large as a blob file it never syncs: a
//! power cut could leave the committed snapshot torn. Here the commit
//! batch holds only the file's generation; the file is `fdatasync`ed, and
//! its directory synced, before that batch is.
//!
//! A file is `[MAGIC][state length: u64 LE][layer length: u64 LE][state]
//! [layer]`, each part a [`crate::codec`] entry with its own checksum; a
//! layer length of 0 means no layer (its records are all written). Files
//! are private (0600, in a 0700 directory) and named by generation; a
//! file no commit names (a snapshot killed before its commit, or the one
//! before the latest) is removed at the next load.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::paced::PacedWriter;

/// The directory, in the data directory, of the snapshot files.
pub const DIR: &str = "snapshots";
const MAGIC: &[u8; 8] = b"VATOSNP1";
const HEADER: usize = 24;

pub fn path(files: &Path, generation: u64) -> PathBuf {
    files.join(format!("{generation:020}.snap"))
}

/// Writes generation `generation` and makes it durable: its contents, its
/// name and (the first time) the directory's.
pub fn write(files: &Path, generation: u64, state: &[u8], layer: &[u8]) -> io::Result<()> {
    if !files.is_dir() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(files)?;
        if let Some(parent) = files.parent() {
            File::open(parent)?.sync_all()?;
        }
    }
    let mut header = Vec::with_capacity(HEADER);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&(state.len() as u64).to_le_bytes());
    header.extend_from_slice(&(layer.len() as u64).to_le_bytes());
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path(files, generation))?;
    // A piece at a time ([`crate::paced`]): tens of MB queued at once made the log's
    // `fdatasync`s wait behind them.
    let mut paced = PacedWriter::new(&file);
    for part in [&header[..], state, layer] {
        paced.write_all(part)?;
    }
    file.sync_data()?;
    File::open(files)?.sync_all()
}

/// A file read whole: its state and, if its records were not all written,
/// its layer.
pub struct Contents {
    bytes: Vec<u8>,
    state_len: usize,
    layer_len: usize,
}

impl Contents {
    pub fn state(&self) -> &[u8] {
        &self.bytes[HEADER..HEADER + self.state_len]
    }

    pub fn layer(&self) -> Option<&[u8]> {
        let start = HEADER + self.state_len;
        (self.layer_len > 0).then(|| &self.bytes[start..start + self.layer_len])
    }
}

/// Reads generation `generation`; `Err` says how it is damaged (the parts'
/// checksums are checked by their decoders).
pub fn read(files: &Path, generation: u64) -> Result<Contents, String> {
    let mut bytes = Vec::new();
    File::open(path(files, generation))
        .and_then(|mut file| file.read_to_end(&mut bytes))
        .map_err(|e| e.to_string())?;
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err("not a snapshot file".into());
    }
    let length = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    let (state_len, layer_len) = (length(8), length(16));
    let expected = (HEADER as u64)
        .checked_add(state_len)
        .and_then(|n| n.checked_add(layer_len));
    if expected != Some(bytes.len() as u64) {
        return Err(format!(
            "{} bytes, its header says {}",
            bytes.len(),
            expected.map_or("more".into(), |n| n.to_string())
        ));
    }
    Ok(Contents {
        bytes,
        state_len: state_len as usize,
        layer_len: layer_len as usize,
    })
}

/// Removes every snapshot file but `keep`'s: files no commit names, a
/// megabyte at a time ([`crate::paced::remove`]; tens of MB freed at once
/// held the log's `fdatasync`s). A failure is only logged (the file is
/// removed at a later load).
pub fn remove_others(files: &Path, keep: Option<u64>) {
    let entries = match std::fs::read_dir(files) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => {
            tracing::warn!("could not list {}: {e}", files.display());
            return;
        }
    };
    let kept = keep.map(|generation| path(files, generation));
    for entry in entries.flatten() {
        let path = entry.path();
        let ours = path.extension().is_some_and(|e| e == "snap");
        if ours && Some(&path) != kept.as_ref() {
            if let Err(e) = crate::paced::remove(&path) {
                tracing::warn!("could not remove {}: {e}", path.display());
            }
        }
    }
}
