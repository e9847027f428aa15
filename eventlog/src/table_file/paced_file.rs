//! redb's file backend, its writes handed to the device a
//! [`crate::paced::STEP`] at a time, a [`crate::paced::PAUSE`] apart,
//! when redb syncs the file.
//!
//! A snapshot's commit writes its layer's pages (tens of MB at 2,000
//! msg/s) and then syncs the file. Handed to the device at once, that
//! queues every WAL `fdatasync` behind it, and so every acknowledgement
//! (16-23 ms for 32 MiB in `loadtest/bigfile-probe.py`; BENCHMARKS.md,
//! "Big files a megabyte at a time"). So the sync writes the file's dirty
//! pages back a [`crate::paced::STEP`] at a time, waiting for each piece
//! (`sync_file_range`) and pausing before the next, as
//! [`crate::paced::PacedWriter`] does for the snapshot files; the final
//! `fdatasync` finds nothing left to write.
//!
//! The pieces are written back in [`StorageBackend::sync_data`] when a
//! commit syncs, never in [`StorageBackend::write`]: redb writes a
//! commit's pages holding the lock of the page's stripe of its write
//! buffer (and its header holding the header's lock), and every read
//! takes those locks, so a pause there stopped the readers, the request
//! tasks looking up an idempotency key among them, for the pause and the
//! device's time (BENCHMARKS.md, "Readers behind a paced commit"). `write`
//! only puts the bytes in the page cache and notes where; a commit calls
//! `sync_data` after it has let go of those locks. A file that grows or
//! shrinks is synced holding redb's state lock, which every new read
//! transaction takes too: after a `set_len` the sync is one `fdatasync`,
//! unpaced.
//! Reads, locks and the rest go to redb's own [`FileBackend`].

use std::collections::BTreeMap;
use std::fs::File;
use std::ops::{Bound, Range};
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

use crate::paced::{PAUSE, STEP};

#[derive(Debug)]
pub(super) struct PacedFile {
    inner: FileBackend,
    /// The same file, for the write-back.
    file: File,
    /// Bytes written since the last sync, per [`STEP`]-sized slot of the
    /// file (slot = offset / STEP).
    unwritten: Mutex<BTreeMap<u64, u64>>,
    /// The length changed since the last sync (redb syncs that holding
    /// its state lock).
    resized: AtomicBool,
}

impl PacedFile {
    pub(super) fn new(file: File) -> std::io::Result<PacedFile> {
        Ok(PacedFile {
            inner: FileBackend::new(file.try_clone()?),
            file,
            unwritten: Mutex::new(BTreeMap::new()),
            resized: AtomicBool::new(false),
        })
    }

    /// Writes back (and waits for) the dirty pages of `range`.
    fn write_back(&self, range: Range<u64>) -> std::io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::io::AsRawFd;
            // SAFETY: sync_file_range(2) on a descriptor this struct owns.
            let ret = unsafe {
                libc::sync_file_range(
                    self.file.as_raw_fd(),
                    range.start as libc::off64_t,
                    (range.end - range.start) as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WAIT_BEFORE
                        | libc::SYNC_FILE_RANGE_WRITE
                        | libc::SYNC_FILE_RANGE_WAIT_AFTER,
                )
            };
            if ret < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = range;
        Ok(())
    }
}

/// Notes `len` bytes written at `offset` in `unwritten`'s slots.
fn note_written(unwritten: &mut BTreeMap<u64, u64>, offset: u64, len: u64) {
    let mut at = offset;
    let end = offset + len;
    while at < end {
        let slot = at / STEP;
        let upto = end.min((slot + 1) * STEP);
        *unwritten.entry(slot).or_default() += upto - at;
        at = upto;
    }
}

/// The ranges to write back one after another: each spans consecutive
/// written slots, in file order, holding at least [`STEP`] bytes written
/// (the last may hold less). A range may span slots nothing was written
/// to; the write-back finds nothing dirty there.
fn pieces(unwritten: &BTreeMap<u64, u64>) -> Vec<Range<u64>> {
    let mut pieces = Vec::new();
    let mut current: Option<(Range<u64>, u64)> = None;
    for (&slot, &bytes) in unwritten {
        let (range, held) = current.get_or_insert((slot * STEP..slot * STEP, 0));
        range.end = (slot + 1) * STEP;
        *held += bytes;
        if *held >= STEP {
            pieces.extend(current.take().map(|(range, _)| range));
        }
    }
    pieces.extend(current.map(|(range, _)| range));
    pieces
}

impl StorageBackend for PacedFile {
    fn len(&self) -> Result<u64, BackendError> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), BackendError> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), BackendError> {
        self.resized.store(true, Ordering::Relaxed);
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> Result<(), BackendError> {
        let unwritten = std::mem::take(&mut *self.unwritten.lock());
        if self.resized.swap(false, Ordering::Relaxed) {
            return self.inner.sync_data();
        }
        for (i, piece) in pieces(&unwritten).into_iter().enumerate() {
            if i > 0 {
                std::thread::sleep(PAUSE);
            }
            self.write_back(piece)?;
        }
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), BackendError> {
        self.inner.write(offset, data)?;
        note_written(&mut self.unwritten.lock(), offset, data.len() as u64);
        Ok(())
    }

    fn close(&self) -> Result<(), BackendError> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};

    #[test]
    fn writes_are_noted_in_their_slots() {
        let mut unwritten = BTreeMap::new();
        note_written(&mut unwritten, 4096, 4096);
        note_written(&mut unwritten, STEP - 100, 300);
        note_written(&mut unwritten, 5 * STEP, 2 * STEP + 1);
        let expected: BTreeMap<u64, u64> =
            [(0, 4096 + 100), (1, 200), (5, STEP), (6, STEP), (7, 1)].into();
        assert_eq!(unwritten, expected);
    }

    #[test]
    fn pieces_hold_a_step_each_in_file_order_and_cover_every_write() {
        assert!(pieces(&BTreeMap::new()).is_empty());
        // Scattered pages: a piece gathers slots until it holds a step.
        let page = 4096;
        let per_step = STEP / page;
        let mut unwritten = BTreeMap::new();
        for i in 0..(2 * per_step + 3) {
            note_written(&mut unwritten, i * 3 * STEP, page);
        }
        let got = pieces(&unwritten);
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0], 0..((per_step - 1) * 3 + 1) * STEP);
        assert_eq!(got[1].start, per_step * 3 * STEP);
        for pair in got.windows(2) {
            assert!(pair[0].end <= pair[1].start, "{got:?}");
        }
        for (&slot, _) in &unwritten {
            let at = slot * STEP;
            assert!(got.iter().any(|r| r.contains(&at)), "slot {slot} left out");
        }
        // One big run: a step a piece.
        let mut big = BTreeMap::new();
        note_written(&mut big, 0, 3 * STEP + 5);
        assert_eq!(
            pieces(&big),
            vec![
                0..STEP,
                STEP..2 * STEP,
                2 * STEP..3 * STEP,
                3 * STEP..4 * STEP
            ]
        );
    }

    /// Through redb: what a durable commit wrote is all in the file when
    /// it returns (a second open reads every entry).
    #[test]
    fn a_durable_commit_writes_everything_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.redb");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .expect("open");
        let backend = PacedFile::new(file).expect("backend");
        let db = redb::Database::builder()
            .create_with_backend(backend)
            .expect("db");
        let table: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("t");
        let value = vec![7u8; 1000];
        let txn = db.begin_write().expect("begin");
        {
            let mut t = txn.open_table(table).expect("table");
            for k in 0..3000u64 {
                t.insert(k, value.as_slice()).expect("insert");
            }
        }
        txn.commit().expect("commit");
        drop(db);
        let db = redb::Database::open(&path).expect("reopen");
        let read = db.begin_read().expect("read");
        let t = read.open_table(table).expect("table");
        assert_eq!(t.len().expect("len"), 3000);
        assert_eq!(
            t.get(2999).expect("get").expect("present").value(),
            &value[..]
        );
    }
}
