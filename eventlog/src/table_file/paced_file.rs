//! redb's file backend, its writes handed to the device a
//! [`crate::paced::STEP`] at a time, a [`crate::paced::PAUSE`] apart.
//!
//! A snapshot's commit writes its layer's pages (tens of MB at 2,000
//! msg/s) and then syncs the file. Handed to the device at once, that
//! queues every WAL `fdatasync` behind it, and so every acknowledgement
//! (16-23 ms for 32 MiB in `loadtest/bigfile-probe.py`; BENCHMARKS.md,
//! "Big files a megabyte at a time"). So every [`crate::paced::STEP`]
//! bytes written, the file's dirty pages are written back and waited
//! for (`sync_file_range`), and the writer pauses, as
//! [`crate::paced::PacedWriter`] does for the snapshot files: the commit's
//! final sync finds at most a step left.
//! Reads, locks and the rest go to redb's own [`FileBackend`].

use std::fs::File;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

#[derive(Debug)]
pub(super) struct PacedFile {
    inner: FileBackend,
    /// The same file, for the write-back.
    file: File,
    /// Bytes written since the last write-back.
    unwritten: AtomicU64,
}

impl PacedFile {
    pub(super) fn new(file: File) -> std::io::Result<PacedFile> {
        Ok(PacedFile {
            inner: FileBackend::new(file.try_clone()?),
            file,
            unwritten: AtomicU64::new(0),
        })
    }

    /// Writes back (and waits for) every dirty page of the file.
    fn write_back(&self) -> std::io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::io::AsRawFd;
            // SAFETY: sync_file_range(2) on a descriptor this struct owns.
            let ret = unsafe {
                libc::sync_file_range(
                    self.file.as_raw_fd(),
                    0,
                    0,
                    libc::SYNC_FILE_RANGE_WAIT_BEFORE
                        | libc::SYNC_FILE_RANGE_WRITE
                        | libc::SYNC_FILE_RANGE_WAIT_AFTER,
                )
            };
            if ret < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

impl StorageBackend for PacedFile {
    fn len(&self) -> Result<u64, BackendError> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), BackendError> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), BackendError> {
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> Result<(), BackendError> {
        self.unwritten.store(0, Ordering::Relaxed);
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), BackendError> {
        self.inner.write(offset, data)?;
        let len = data.len() as u64;
        if self.unwritten.fetch_add(len, Ordering::Relaxed) + len >= crate::paced::STEP {
            self.unwritten.store(0, Ordering::Relaxed);
            self.write_back()?;
            std::thread::sleep(crate::paced::PAUSE);
        }
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
