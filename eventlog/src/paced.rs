//! Big files on the log's device, written a quarter megabyte at a time
//! with a pause between pieces, and freed a megabyte at a time.
//!
//! Every acknowledgement waits for the WAL's write and `fdatasync`, on the
//! same device as the snapshot files, the WAL's new segments and the media
//! store. A big file handed to the device at once queues the commits in
//! flight behind it. What a probe doing a group commit's I/O (a 4 KiB
//! direct write + `fdatasync`, every 0.5 ms) saw as its slowest commit on
//! this machine's disk (`loadtest/bigfile-probe.py`):
//! - 32 MiB written into a new file and then synced: 16-23 ms (256 MiB:
//!   59-65 ms); written a megabyte at a time, each piece written back
//!   before the next: 0.9-1.3 ms (256 MiB: 1.2-7.3 ms);
//! - 32 MiB removed: up to 8 ms (256 MiB: 23-36 ms). On a file system
//!   mounted with `discard` (this machine's, and many cloud disks')
//!   freeing a file's blocks sends the device a discard of all of them at
//!   once. Shrunk a megabyte at a time, a millisecond apart: at most
//!   0.9 ms.
//!
//! On a busier device (2026-12-06, `loadtest/step-probe.py`; BENCHMARKS.md,
//! "A quarter megabyte and a pause") a megabyte piece still cost the
//! commits while it was written up to 4.3 ms; a quarter megabyte followed
//! by a millisecond's pause, at most 1.1 ms, the file still written at
//! ~180 MB/s.
//!
//! End to end (BENCHMARKS.md, "Big files a megabyte at a time"): with a
//! 25 MiB attachment written and removed every 2 s beside 2,000 msg/s,
//! delivery p99.9 went from 25 to 10 ms (medians of 6 alternated runs).

use std::fs::File;
use std::io;
use std::path::Path;

/// Bytes written at a time: the vendored sled's step, which
/// [`PacedWriter`] and redb's paced backend go by.
pub const STEP: u64 = sled::WRITE_BACK_BYTES as u64;

/// The pause after each [`STEP`] written, before the next: the device's
/// time in between is the WAL's.
pub const PAUSE: std::time::Duration = sled::WRITE_BACK_PAUSE;

/// Bytes freed at a time by [`remove`].
pub const REMOVE_STEP: u64 = sled::REMOVE_STEP_BYTES;

/// Writes a file a [`STEP`] at a time, each piece written back (and
/// waited for), with a [`PAUSE`] before the next, whether the pieces come
/// in one call or many. Not a durability point: sync the file at the end.
pub struct PacedWriter<'a> {
    file: &'a File,
    /// Where the next bytes go.
    at: u64,
    /// Bytes written since the last pause.
    unpaused: u64,
}

impl<'a> PacedWriter<'a> {
    /// Writes from the start of `file`.
    pub fn new(file: &'a File) -> PacedWriter<'a> {
        PacedWriter::at(file, 0)
    }

    /// Writes from `offset` on.
    pub fn at(file: &'a File, offset: u64) -> PacedWriter<'a> {
        PacedWriter {
            file,
            at: offset,
            unpaused: 0,
        }
    }

    /// Writes `bytes` where the last write ended, through the vendored
    /// sled's `pwrite_written_back` (which writes sled's own buffers back
    /// the same way), at most what is left of a [`STEP`] at a time.
    pub fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            if self.unpaused >= STEP {
                std::thread::sleep(PAUSE);
                self.unpaused = 0;
            }
            let n = bytes.len().min((STEP - self.unpaused) as usize);
            #[cfg(target_os = "linux")]
            sled::pwrite_written_back(self.file, &bytes[..n], self.at).map_err(io::Error::from)?;
            #[cfg(not(target_os = "linux"))]
            std::os::unix::fs::FileExt::write_all_at(self.file, &bytes[..n], self.at)?;
            self.at += n as u64;
            self.unpaused += n as u64;
            bytes = &bytes[n..];
        }
        Ok(())
    }
}

/// Removes the file at `path`, first shrinking it [`REMOVE_STEP`] at a time, a
/// millisecond apart, so that its blocks go back to the file system (and,
/// under `discard`, to the device) a megabyte at a time: the vendored
/// sled's `remove_paced`, which removes sled's replaced page-table
/// snapshots the same way. Takes a millisecond per MiB: call it where
/// nobody waits (a background thread, `spawn_blocking`). The name stays
/// until the file is empty: callers remove only names nobody reads, or
/// rename the file to such a name first. Not durable by itself, as
/// `remove_file` is not.
pub fn remove(path: &Path) -> io::Result<()> {
    sled::remove_paced(path)
}
