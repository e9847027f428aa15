//! The projection's write path: batches the WAL made durable become chunks
//! and index runs, written with the external position and the last WAL
//! record they hold in one sled transaction; `sync` (flush, then fdatasync
//! of sled's data file and any new blob file) makes them durable, after
//! which the WAL may drop those records. [`super::legacy`] reuses the
//! transaction for the per-event layout.

use std::collections::HashSet;
use std::fs::File;
use std::ops::Range;
use std::path::Path;

use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use crate::event::Offset;

use super::format::{
    entries, frame, record_frames, ChunkBuilder, RunBuilder, DB_DIR, INDEXED, POSITION, WAL_LSN,
};
use super::pending::Batch;
use super::projection::Projection;
use super::LogError;

impl Projection {
    /// Writes batches (in WAL order) into the chunks and the index, with
    /// the newest position among them and the last one's LSN, in one
    /// transaction. Not yet durable: see [`Projection::sync`].
    pub(super) fn project(&self, batches: &[Batch]) -> Result<(), LogError> {
        let Some(last) = batches.last() else {
            return Ok(());
        };
        let mut chunks = ChunkBuilder::default();
        let mut runs = RunBuilder::default();
        let mut end = None;
        for batch in batches {
            for (envelope, range) in batch.events.iter().zip(record_frames(&batch.record)) {
                chunks.push(envelope.offset, &batch.record[range?])?;
                end = Some(envelope.offset + 1);
                if let Some((conv, seq)) = envelope.event.conv_seq() {
                    runs.push(conv, seq, envelope.offset);
                }
            }
        }
        let position = batches.iter().rev().find_map(|b| b.position);
        write_together(
            [&self.chunks, &self.meta],
            &chunks.into_batch(),
            None,
            position,
            Some(last.lsn),
        )?;
        // The index after the chunks: a reader that finds a run finds its
        // events. Durable with the next `sync`; after a crash, `open`
        // indexes again whatever the chunks hold past `INDEXED`.
        match end {
            Some(end) => self.write_runs(runs, end, false),
            None => Ok(()),
        }
    }

    /// Writes `runs` into the index and marks it complete up to `end`.
    pub(super) fn write_runs(
        &self,
        runs: RunBuilder,
        end: Offset,
        durable: bool,
    ) -> Result<(), LogError> {
        let index = &self.index;
        index.write(durable, |table| {
            for (key, offsets) in runs.into_entries() {
                table
                    .insert(&key[..], &offsets[..])
                    .map_err(|e| index.error(e))?;
            }
            table
                .insert(INDEXED, &end.to_be_bytes()[..])
                .map_err(|e| index.error(e))?;
            Ok::<(), LogError>(())
        })
    }

    /// Flushes sled and then fsyncs its data file: the durable point.
    /// Then the index's commits since the last sync are made durable.
    pub fn sync(&self) -> Result<(), LogError> {
        self.db.flush()?;
        self.sync_blobs()?;
        self.data_file.sync_data()?;
        self.index.sync()?;
        Ok(())
    }

    /// sled 0.34 writes a page bigger than a quarter segment (2 MiB: a
    /// leaf holding a chunk with a message over ~2 MiB, or many big chunks)
    /// to its own file under `blobs/`, and never fsyncs it; the data file
    /// only points to it. Blob files are written once and never modified,
    /// so each is synced once, before the data file that refers to it.
    fn sync_blobs(&self) -> Result<(), LogError> {
        let dir = self.dir.join(DB_DIR).join("blobs");
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
            sync_dir(&dir)?;
        }
        Ok(())
    }

    /// Makes the names of sled's files durable (its `conf`, its data file,
    /// the `blobs/` directory): once, when a database is created, since
    /// `sync` only syncs file contents.
    pub(super) fn sync_directories(&self) -> Result<(), LogError> {
        let db_path = self.dir.join(DB_DIR);
        File::open(db_path.join("conf"))?.sync_all()?;
        sync_dir(&db_path.join("blobs"))?;
        sync_dir(&db_path)?;
        sync_dir(&self.dir)?;
        Ok(())
    }

    /// Test and repair hook: overwrite the raw bytes of the entry at
    /// `offset` inside its chunk (or store them as a chunk of their own if
    /// no chunk holds `offset`).
    #[doc(hidden)]
    pub fn put_raw(&self, offset: Offset, bytes: &[u8]) -> Result<(), LogError> {
        let mut chunk = Vec::new();
        let mut first = offset;
        if let Some((start, value)) = self.chunk_holding(offset)? {
            let parsed: Vec<(Offset, Range<usize>)> =
                entries(start, &value).collect::<Result<_, _>>()?;
            if parsed.iter().any(|(at, _)| *at == offset) {
                first = start;
                for (at, range) in parsed {
                    frame(
                        &mut chunk,
                        at,
                        if at == offset { bytes } else { &value[range] },
                    )?;
                }
            }
        }
        if chunk.is_empty() {
            frame(&mut chunk, offset, bytes)?;
        }
        self.chunks.insert(first.to_be_bytes(), chunk)?;
        self.sync()
    }
}

/// Writes a batch of entries, (the per-event layout's) its index entries
/// and (if given) the external position and the last WAL record they hold
/// in one sled transaction over the entry, index and meta trees: this
/// layout's (whose index is a file of its own), and the per-event
/// layout's in [`legacy`].
pub(super) fn write_together(
    [entries, meta]: [&sled::Tree; 2],
    entry_batch: &sled::Batch,
    index: Option<(&sled::Tree, &sled::Batch)>,
    position: Option<u64>,
    wal_lsn: Option<u64>,
) -> Result<(), LogError> {
    let (index, index_batch) = match index {
        Some((tree, batch)) => (tree, Some(batch)),
        // An unused third tree of the transaction: the meta tree.
        None => (meta, None),
    };
    (entries, index, meta)
        .transaction(|(e, i, m)| {
            e.apply_batch(entry_batch)?;
            if let Some(index_batch) = index_batch {
                i.apply_batch(index_batch)?;
            }
            if let Some(position) = position {
                m.insert(POSITION, &position.to_be_bytes())?;
            }
            if let Some(lsn) = wal_lsn {
                m.insert(WAL_LSN, &lsn.to_be_bytes())?;
            }
            Ok::<(), ConflictableTransactionError<()>>(())
        })
        .map_err(|e| match e {
            TransactionError::Storage(s) => LogError::Sled(s),
            TransactionError::Abort(()) => unreachable!("the transaction never aborts"),
        })
}

pub(super) fn sync_dir(path: &Path) -> std::io::Result<()> {
    File::open(path)?.sync_all()
}
