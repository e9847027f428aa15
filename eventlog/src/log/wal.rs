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

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

/// A record's place in the WAL: 1, 2, 3, ... without gaps.
pub type Lsn = u64;

const HEADER: usize = 16;
const EXTENSION: &str = "wal";
const TMP_NAME: &str = "preparing.tmp";
/// The smallest segment (tests use small ones to cross segments often).
pub const MIN_SEGMENT_BYTES: u64 = 64 << 10;

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
    /// The record being written, reused across appends.
    buf: Vec<u8>,
}

impl Wal {
    /// Opens (or creates) the WAL in `dir` and returns every record after
    /// `checkpoint`, in order. New segments are `segment_bytes` long.
    pub fn open(
        dir: &Path,
        segment_bytes: u64,
        checkpoint: Lsn,
    ) -> Result<(Wal, Vec<Record>), WalError> {
        let segment_bytes = segment_bytes.max(MIN_SEGMENT_BYTES);
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
                let file = open_segment(&segment_path(dir, number))?;
                let len = file.metadata()?.len();
                let current = Segment {
                    number,
                    file,
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
                let file = prepare(dir, next_number, segment_bytes, recyclable.pop())?;
                let current = Segment {
                    number: next_number,
                    len: file.metadata()?.len(),
                    file,
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
        );
        let mut wal = Wal {
            dir: dir.to_path_buf(),
            current,
            next_lsn,
            sealed,
            checkpointed: checkpoint,
            preparer,
            buf: Vec::new(),
        };
        wal.checkpoint(checkpoint);
        Ok((wal, scan.records))
    }

    /// The LSN the next record will get.
    pub fn next_lsn(&self) -> Lsn {
        self.next_lsn
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends one record and makes it durable: one `pwrite`, one
    /// `fdatasync`. Returns its LSN.
    pub fn append(&mut self, payload: &[u8]) -> Result<Lsn, WalError> {
        let len = u32::try_from(payload.len()).map_err(|_| WalError::TooLarge(payload.len()))?;
        let lsn = self.next_lsn;
        self.buf.clear();
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(&crc(lsn, payload).to_le_bytes());
        self.buf.extend_from_slice(&lsn.to_le_bytes());
        self.buf.extend_from_slice(payload);
        let size = self.buf.len() as u64;
        if self.current.pos + size > self.current.len {
            self.roll(size)?;
        }
        self.current
            .file
            .write_all_at(&self.buf, self.current.pos)?;
        self.current.file.sync_data()?;
        self.current.pos += size;
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
        let (number, mut file) = self.preparer.take()?;
        let mut len = file.metadata()?.len();
        if record > len {
            len = record.div_ceil(4096) * 4096;
            grow_zeroed(&mut file, len)?;
        }
        let next = Segment {
            number,
            file,
            pos: 0,
            len,
            last_lsn: 0,
        };
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

fn crc(lsn: Lsn, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&lsn.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// What recovery found (see the module docs for the rules).
struct Scan {
    records: Vec<Record>,
    /// The last LSN of the chain, if it has any record after the checkpoint.
    last_lsn: Option<Lsn>,
    /// The segment the chain ends in: (number, end of its last record, its
    /// last LSN).
    tail: Option<(u64, u64, Lsn)>,
    /// Segments before the tail holding records, with their last LSN.
    sealed: Vec<(u64, Lsn)>,
    /// Segments with nothing after the checkpoint in them.
    stale: Vec<u64>,
}

fn scan(dir: &Path, numbers: &[u64], checkpoint: Lsn) -> Result<Scan, WalError> {
    let mut found = Scan {
        records: Vec::new(),
        last_lsn: None,
        tail: None,
        sealed: Vec::new(),
        stale: Vec::new(),
    };
    let mut expected = checkpoint + 1;
    // The chain ended inside a segment: later ones must not continue it.
    let mut ended = false;
    for &number in numbers {
        let path = segment_path(dir, number);
        let mut bytes = Vec::new();
        File::open(&path)?.read_to_end(&mut bytes)?;
        if ended {
            if let Parsed::Record { lsn, .. } = parse(&bytes, 0) {
                if lsn >= expected {
                    return Err(damaged(&path, 0, "continues the log after a break"));
                }
            }
            found.stale.push(number);
            continue;
        }
        let mut pos = 0usize;
        // The highest LSN in this segment, skipped (≤ checkpoint) or not.
        let mut highest = 0;
        let mut chained = false;
        loop {
            match parse(&bytes, pos) {
                Parsed::Record { lsn, next, .. } if lsn <= checkpoint && !chained => {
                    highest = highest.max(lsn);
                    pos = next;
                }
                Parsed::Record { lsn, payload, next } if lsn == expected => {
                    found.records.push(Record {
                        lsn,
                        payload: payload.to_vec(),
                    });
                    found.last_lsn = Some(lsn);
                    highest = lsn;
                    chained = true;
                    expected += 1;
                    pos = next;
                }
                Parsed::Record { lsn, .. } if lsn > expected => {
                    return Err(damaged(
                        &path,
                        pos as u64,
                        &format!("record {lsn} where {expected} was expected"),
                    ));
                }
                Parsed::Bad { len } => {
                    // A torn write ends the log; a bad record followed by
                    // the next one of the chain is damage.
                    if let Parsed::Record { lsn, .. } = parse(&bytes, pos + HEADER + len) {
                        if lsn == expected + 1 {
                            return Err(damaged(&path, pos as u64, "checksum mismatch"));
                        }
                    }
                    break;
                }
                // Zeros, no room for a header, or a stale record.
                _ => break,
            }
        }
        if chained {
            if let Some((previous, _, last)) = found.tail.take() {
                found.sealed.push((previous, last));
            }
            found.tail = Some((number, pos as u64, highest));
        } else {
            // Nothing after the checkpoint here: before the chain, a
            // checkpointed or stale segment; after it, the chain has ended
            // (a writer starts every segment it rolls to with a record).
            if found.last_lsn.is_some() {
                ended = true;
            }
            found.stale.push(number);
        }
    }
    Ok(found)
}

/// What is at a position of a segment.
enum Parsed<'a> {
    Record {
        lsn: Lsn,
        payload: &'a [u8],
        next: usize,
    },
    /// A header is there but the record does not check out (`len` as its
    /// header says).
    Bad { len: usize },
    /// No room for a header, or zeros.
    Nothing,
}

fn parse(bytes: &[u8], pos: usize) -> Parsed<'_> {
    let Some(header) = pos.checked_add(HEADER).and_then(|end| bytes.get(pos..end)) else {
        return Parsed::Nothing;
    };
    if header.iter().all(|b| *b == 0) {
        return Parsed::Nothing;
    }
    let word = |at: usize| {
        u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let len = word(0) as usize;
    let stored = word(4);
    let lsn = u64::from(word(8)) | u64::from(word(12)) << 32;
    let end = pos + HEADER + len;
    match bytes.get(pos + HEADER..end) {
        Some(payload) if lsn != 0 && crc(lsn, payload) == stored => Parsed::Record {
            lsn,
            payload,
            next: end,
        },
        Some(_) => Parsed::Bad { len },
        None => Parsed::Bad { len: 0 },
    }
}

fn damaged(path: &Path, at: u64, detail: &str) -> WalError {
    WalError::Damaged {
        segment: path.display().to_string(),
        at,
        detail: detail.into(),
    }
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:016x}.{EXTENSION}"))
}

fn segment_numbers(dir: &Path) -> Result<Vec<u64>, WalError> {
    let mut numbers = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(stem) = name
            .to_str()
            .and_then(|n| n.strip_suffix(EXTENSION))
            .and_then(|n| n.strip_suffix('.'))
        else {
            continue;
        };
        if let Ok(number) = u64::from_str_radix(stem, 16) {
            numbers.push(number);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

fn open_segment(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().read(true).write(true).open(path)
}

/// Makes segment `number` ready and durable under its name: a recycled
/// segment renamed (its old records are all at or below the checkpoint),
/// or a new one zero-filled under a temporary name, fsynced, renamed.
fn prepare(dir: &Path, number: u64, len: u64, recycled: Option<u64>) -> std::io::Result<File> {
    let path = segment_path(dir, number);
    match recycled {
        Some(old) => std::fs::rename(segment_path(dir, old), &path)?,
        None => {
            let tmp = dir.join(TMP_NAME);
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            grow_zeroed(&mut file, len)?;
            std::fs::rename(&tmp, &path)?;
        }
    }
    File::open(dir)?.sync_all()?;
    open_segment(&path)
}

/// Writes zeros up to `len` (real blocks, not a hole or an unwritten
/// extent, so later writes change no metadata) and fsyncs the file.
fn grow_zeroed(file: &mut File, len: u64) -> std::io::Result<()> {
    let zeros = vec![0u8; 1 << 20];
    let mut at = file.metadata()?.len();
    while at < len {
        let n = (len - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    file.flush()?;
    file.sync_all()
}

/// What the writer and the preparer thread share.
struct Shared {
    /// The segment ready for the writer, once prepared.
    ready: Option<std::io::Result<(u64, File)>>,
    /// Segments whose records are all checkpointed.
    recyclable: Vec<u64>,
    /// The number the next prepared segment gets.
    next_number: u64,
    stop: bool,
}

/// Keeps one segment ready ahead of the writer, on its own thread, so that
/// rolling to the next segment costs the writer nothing but a hand-over.
struct Preparer {
    shared: Arc<(Mutex<Shared>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Preparer {
    fn start(dir: PathBuf, segment_bytes: u64, first: u64, recyclable: Vec<u64>) -> Preparer {
        let shared = Arc::new((
            Mutex::new(Shared {
                ready: None,
                recyclable,
                next_number: first,
                stop: false,
            }),
            Condvar::new(),
        ));
        let theirs = shared.clone();
        let thread = std::thread::Builder::new()
            .name("vato-wal-prepare".into())
            .spawn(move || prepare_ahead(&dir, segment_bytes, &theirs))
            .ok();
        Preparer { shared, thread }
    }

    /// The next segment, waiting for it if the preparer is not done.
    fn take(&self) -> std::io::Result<(u64, File)> {
        let (lock, ready) = &*self.shared;
        let mut shared = lock.lock();
        loop {
            if let Some(prepared) = shared.ready.take() {
                ready.notify_all();
                return prepared;
            }
            if self.thread.is_none() {
                return Err(std::io::Error::other("the WAL preparer did not start"));
            }
            ready.wait(&mut shared);
        }
    }

    fn recycle(&self, number: u64) {
        self.shared.0.lock().recyclable.push(number);
    }
}

fn prepare_ahead(dir: &Path, segment_bytes: u64, shared: &(Mutex<Shared>, Condvar)) {
    let (lock, ready) = shared;
    loop {
        let (number, recycled) = {
            let mut state = lock.lock();
            while state.ready.is_some() && !state.stop {
                ready.wait(&mut state);
            }
            if state.stop {
                return;
            }
            let number = state.next_number;
            state.next_number += 1;
            state.recyclable.sort_unstable();
            (number, state.recyclable.pop())
        };
        let prepared = prepare(dir, number, segment_bytes, recycled).map(|file| (number, file));
        let mut state = lock.lock();
        state.ready = Some(prepared);
        ready.notify_all();
    }
}

impl Drop for Preparer {
    fn drop(&mut self) {
        self.shared.0.lock().stop = true;
        self.shared.1.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
