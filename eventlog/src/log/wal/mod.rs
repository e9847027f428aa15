//! The write-ahead log: the acknowledgement path's one device round trip.
//!
//! A group commit is one record, appended to the current segment with one
//! `pwrite` and made durable with one `fdatasync` on the writer's own
//! thread: no hand-off to another thread, no B-tree work, nothing else
//! between a batch and its acknowledgement. What makes the log readable
//! (the chunks and the per-conversation index in sled) is written later,
//! off that path, by the projector, which tells the WAL how far it has made
//! sled durable ([`Wal::checkpoint`]); segments wholly at or before that
//! point are recycled.
//!
//! Files: `<dir>/NNNNNNNNNNNNNNNN.wal` (the segment's number, hex), each of a
//! fixed size, **zero-filled and fsynced before first use** by a preparer
//! thread one segment ahead of the writer, or a recycled segment renamed.
//! Writing inside blocks that exist already changes neither the file's
//! size nor its block map, so an `fdatasync` flushes the data and nothing
//! else: no journal commit on the ack path, and a fresh store does not pay
//! for growing its files while it serves its first clients.
//!
//! Where the file system allows it (ext4 and xfs; tmpfs too on this
//! machine's kernel), a
//! segment is opened with `O_DIRECT`: a group commit writes the
//! [`BLOCK`]s its record covers straight from the writer's buffer to the
//! device, the block it starts in rewritten with the bytes already there
//! (kept in memory) and the rest of the last block zeros, and then
//! `fdatasync`s (the device's cache flush; no data is left in the page
//! cache to write back). That halves the kernel's CPU per commit on the
//! writer's thread: a buffered `pwrite` + `fdatasync` copies the record
//! into the page cache, then has the writeback machinery find the dirty
//! pages and build their I/O, ~45 µs of system time per commit on this
//! machine against ~22 µs direct (BENCHMARKS.md, #18). A torn rewrite of
//! the first block loses nothing: old and new hold the same bytes up to
//! the end of the previous record. Elsewhere segments are written through
//! the page cache as before.
//!
//! A record is `[len: u32 LE][crc32: u32 LE][lsn: u64 LE][payload]`, the CRC
//! over the LSN and the payload. LSNs number records from 1, without gaps,
//! across segments; segments are used in number order. Recovery, given the
//! checkpoint C, follows the chain C+1, C+2, ... through the segments in
//! number order. Records at or below C are skipped (checkpointed, or stale
//! ones in a recycled segment: a segment is recycled only once C covers it,
//! so all its old records are at or below C). The chain ends at the first
//! record that is not the next one: zeros, a torn write, a stale record.
//! Damage to acknowledged records is an error naming the segment, never a
//! silent cut: a record that fails its CRC while the one after it continues
//! the chain, a later segment that continues the chain after a break, or a
//! chain that starts past C+1.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use aligned_vec::{AVec, ConstAlign};

mod scan;
mod segments;

use scan::scan;
use segments::{
    grow_zeroed, open_segment, prepare, segment_numbers, segment_path, Opened, Preparer, Zeroing,
};

/// A record's place in the WAL: 1, 2, 3, ... without gaps.
pub type Lsn = u64;

const HEADER: usize = 16;
const EXTENSION: &str = "wal";
const TMP_NAME: &str = "preparing.tmp";
/// The smallest segment (tests use small ones to cross segments often).
pub const MIN_SEGMENT_BYTES: u64 = 64 << 10;
/// The unit of direct writes: 4 KiB, the physical block of today's
/// devices and a multiple of every logical block Linux allows `O_DIRECT`
/// to use. New segments are a whole number of blocks.
pub const BLOCK: u64 = 4096;
/// A buffer direct I/O accepts: aligned to a [`BLOCK`].
type BlockBuf = AVec<u8, ConstAlign<{ BLOCK as usize }>>;

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("WAL I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("WAL segment {segment} is damaged at byte {at}: {detail}")]
    Damaged {
        segment: String,
        at: u64,
        detail: String,
    },
    #[error("a WAL record of {0} bytes is too large")]
    TooLarge(usize),
}

/// A record read back at recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub lsn: Lsn,
    pub payload: Vec<u8>,
}

/// The segment being written.
struct Segment {
    number: u64,
    file: File,
    /// Opened with `O_DIRECT`: written a whole [`BLOCK`] at a time.
    direct: bool,
    /// Direct: the bytes from the start of the block holding `pos` up to
    /// it, which the next append writes again (empty otherwise).
    tail: Vec<u8>,
    /// Where the next record goes.
    pos: u64,
    /// The file's (preallocated) size.
    len: u64,
    /// The last LSN written into it (0: none yet).
    last_lsn: Lsn,
}

pub struct Wal {
    dir: PathBuf,
    current: Segment,
    next_lsn: Lsn,
    /// Segments before the current one, oldest first, with the last LSN
    /// each holds: recycled once a checkpoint covers them.
    sealed: Vec<(u64, Lsn)>,
    /// The highest LSN whose effects are durable elsewhere.
    checkpointed: Lsn,
    preparer: Preparer,
    /// What one append writes (the record, and around it the rest of the
    /// blocks it touches when direct), reused across appends.
    buf: BlockBuf,
    /// Where the last append spent its time.
    last: AppendTimes,
}

/// Where one append spent its time: for the log's warning about a slow
/// group commit.
#[derive(Clone, Copy, Debug, Default)]
pub struct AppendTimes {
    /// Moving to the next segment (waiting for the preparer if it was
    /// not done).
    pub roll: std::time::Duration,
    /// The `pwrite`.
    pub write: std::time::Duration,
    /// The `fdatasync`.
    pub sync: std::time::Duration,
}

impl Segment {
    /// Where the next append's write starts: at `pos`, or when direct at
    /// the start of its block.
    fn write_start(&self) -> u64 {
        if self.direct {
            self.pos - self.pos % BLOCK
        } else {
            self.pos
        }
    }

    /// Whether a record of `size` bytes fits, its last block included
    /// when direct.
    fn fits(&self, size: u64) -> bool {
        let end = self.pos + size;
        let end = if self.direct {
            end.next_multiple_of(BLOCK)
        } else {
            end
        };
        end <= self.len
    }
}

impl Wal {
    /// Opens (or creates) the WAL in `dir` and returns every record after
    /// `checkpoint`, in order. New segments are `segment_bytes` long.
    pub fn open(
        dir: &Path,
        segment_bytes: u64,
        checkpoint: Lsn,
    ) -> Result<(Wal, Vec<Record>), WalError> {
        Wal::open_with(dir, segment_bytes, checkpoint, true)
    }

    /// [`Wal::open`], but writing through the page cache even where
    /// `O_DIRECT` would do: what a file system without it gets (tests).
    #[doc(hidden)]
    pub fn open_buffered(
        dir: &Path,
        segment_bytes: u64,
        checkpoint: Lsn,
    ) -> Result<(Wal, Vec<Record>), WalError> {
        Wal::open_with(dir, segment_bytes, checkpoint, false)
    }

    fn open_with(
        dir: &Path,
        segment_bytes: u64,
        checkpoint: Lsn,
        allow_direct: bool,
    ) -> Result<(Wal, Vec<Record>), WalError> {
        let segment_bytes = segment_bytes.max(MIN_SEGMENT_BYTES).next_multiple_of(BLOCK);
        std::fs::create_dir_all(dir)?;
        // A segment half prepared when the process died.
        match std::fs::remove_file(dir.join(TMP_NAME)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        let numbers = segment_numbers(dir)?;
        let scan = scan(dir, &numbers, checkpoint)?;
        let next_number = numbers.last().map_or(0, |n| n + 1);
        let mut recyclable = scan.stale;
        let (current, sealed) = match scan.tail {
            Some((number, end, last_lsn)) => {
                let path = segment_path(dir, number);
                let Opened { file, direct } = open_segment(&path, allow_direct)?;
                let mut tail = Vec::new();
                if direct {
                    // Read through the page cache: direct reads need
                    // aligned lengths.
                    tail.resize((end % BLOCK) as usize, 0);
                    File::open(&path)?.read_exact_at(&mut tail, end - end % BLOCK)?;
                }
                let len = file.metadata()?.len();
                let current = Segment {
                    number,
                    file,
                    direct,
                    tail,
                    pos: end,
                    len,
                    last_lsn,
                };
                (current, scan.sealed)
            }
            None => {
                // Nothing after the checkpoint: every segment is reusable.
                recyclable.extend(scan.sealed.iter().map(|(n, _)| *n));
                recyclable.sort_unstable();
                let Opened { file, direct } = prepare(
                    dir,
                    next_number,
                    segment_bytes,
                    recyclable.pop(),
                    allow_direct,
                    Zeroing::Whole,
                )?;
                let current = Segment {
                    number: next_number,
                    len: file.metadata()?.len(),
                    file,
                    direct,
                    tail: Vec::new(),
                    pos: 0,
                    last_lsn: 0,
                };
                (current, Vec::new())
            }
        };
        let next_lsn = match scan.last_lsn {
            Some(last) => last + 1,
            None => checkpoint + 1,
        };
        let preparer = Preparer::start(
            dir.to_path_buf(),
            segment_bytes,
            next_number.max(current.number + 1),
            recyclable,
            allow_direct,
        );
        let mut wal = Wal {
            dir: dir.to_path_buf(),
            current,
            next_lsn,
            sealed,
            checkpointed: checkpoint,
            preparer,
            buf: BlockBuf::new(0),
            last: AppendTimes::default(),
        };
        wal.checkpoint(checkpoint);
        Ok((wal, scan.records))
    }

    /// Whether the segment being written is written with `O_DIRECT`.
    pub fn is_direct(&self) -> bool {
        self.current.direct
    }

    /// The LSN the next record will get.
    pub fn next_lsn(&self) -> Lsn {
        self.next_lsn
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the last append spent its time.
    pub fn last_times(&self) -> AppendTimes {
        self.last
    }

    /// Appends one record and makes it durable: one `pwrite`, one
    /// `fdatasync`. Returns its LSN.
    pub fn append(&mut self, payload: &[u8]) -> Result<Lsn, WalError> {
        let len = u32::try_from(payload.len()).map_err(|_| WalError::TooLarge(payload.len()))?;
        let size = (HEADER + payload.len()) as u64;
        let started = Instant::now();
        if !self.current.fits(size) {
            self.roll(size)?;
        }
        let rolled = Instant::now();
        let lsn = self.next_lsn;
        let start = self.current.write_start();
        self.buf.clear();
        self.buf.extend_from_slice(&self.current.tail);
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(&crc(lsn, payload).to_le_bytes());
        self.buf.extend_from_slice(&lsn.to_le_bytes());
        self.buf.extend_from_slice(payload);
        if self.current.direct {
            self.buf
                .resize(self.buf.len().next_multiple_of(BLOCK as usize), 0);
        }
        match self.current.file.write_all_at(&self.buf, start) {
            // A device whose blocks are larger than `BLOCK`: the same
            // bytes at the same place through the page cache, and this
            // segment written that way from now on.
            Err(e) if self.current.direct && e.raw_os_error() == Some(libc::EINVAL) => {
                self.current.file =
                    open_segment(&segment_path(&self.dir, self.current.number), false)?.file;
                self.current.direct = false;
                self.current.file.write_all_at(&self.buf, start)?;
            }
            written => written?,
        }
        let written = Instant::now();
        self.current.file.sync_data()?;
        let synced = Instant::now();
        self.last = AppendTimes {
            roll: rolled - started,
            write: written - rolled,
            sync: synced - written,
        };
        let end = self.current.pos + size;
        self.current.tail.clear();
        if self.current.direct {
            let from = (end - end % BLOCK - start) as usize;
            let to = (end - start) as usize;
            self.current.tail.extend_from_slice(&self.buf[from..to]);
        }
        self.current.pos = end;
        self.current.last_lsn = lsn;
        self.next_lsn += 1;
        Ok(lsn)
    }

    /// Every record up to `lsn` is durable elsewhere: the sealed segments
    /// that hold only such records are handed back for reuse.
    pub fn checkpoint(&mut self, lsn: Lsn) {
        self.checkpointed = self.checkpointed.max(lsn);
        let covered = self
            .sealed
            .iter()
            .take_while(|(_, last)| *last <= self.checkpointed)
            .count();
        for (number, _) in self.sealed.drain(..covered) {
            self.preparer.recycle(number);
        }
    }

    /// Moves to the segment the preparer has ready. A record larger than
    /// it grows it first (once, before any record is in it).
    fn roll(&mut self, record: u64) -> Result<(), WalError> {
        let (number, Opened { file, direct }) = self.preparer.take()?;
        let mut next = Segment {
            number,
            len: file.metadata()?.len(),
            file,
            direct,
            tail: Vec::new(),
            pos: 0,
            last_lsn: 0,
        };
        if !next.fits(record) {
            next.len = record.next_multiple_of(BLOCK);
            // Through the page cache: direct writes need aligned buffers.
            let buffered = std::fs::OpenOptions::new()
                .write(true)
                .open(segment_path(&self.dir, number))?;
            grow_zeroed(&buffered, next.len, Zeroing::Whole)?;
        }
        let old = std::mem::replace(&mut self.current, next);
        if old.last_lsn > 0 {
            self.sealed.push((old.number, old.last_lsn));
        } else {
            self.preparer.recycle(old.number);
        }
        self.checkpoint(self.checkpointed);
        Ok(())
    }
}
pub(super) fn crc(lsn: Lsn, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&lsn.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}
