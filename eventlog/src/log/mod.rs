//! The log: every event in offset order, durable before it is
//! acknowledged, readable by offset and by conversation.
//!
//! Two parts, so that the acknowledgement pays one device round trip:
//!
//! * **The WAL** (`<data dir>/wal/`, [`wal`]): the writer appends each
//!   group commit as one record (one `pwrite`, one `fdatasync`, on the
//!   writer's thread) and only then is the batch acknowledged.
//! * **The projection** (`<data dir>/sled`, [`projection`]): the same
//!   events in sled, in chunks, with a per-conversation index in a file of
//!   its own (`<data dir>/log-index.redb`), written by
//!   the projector thread ([`projector`]) up to
//!   [`projector::PROJECT_EVERY`] later, many batches per transaction, and made durable by its own flush + fdatasync every
//!   [`projector::SYNC_EVERY`]; the last WAL record it holds is recorded in
//!   the same transaction (`meta.wal_lsn`), and the WAL recycles the
//!   segments below it. Until a batch is in sled, readers take it from
//!   memory ([`pending`]).
//!
//! Opening the log projects whatever the WAL holds past `meta.wal_lsn`
//! (the batches acknowledged before a crash and not yet durable in sled)
//! before anything reads it, so every reader sees every acknowledged event.
//!
//! Layout of the projection (one sled database, 8 MiB segments, and the
//! index's redb file):
//!
//! | tree          | key                                     | value |
//! |---------------|-----------------------------------------|-------|
//! | `chunks`      | first offset of the chunk (u64 BE)      | the entries at that offset and the next ones: `[len: u32 BE][encoded Envelope]`… |
//! | `conv_chunks` (in `log-index.redb`; a sled tree before 2026-12-06, moved on open) | conv id (u64 BE) ++ first seq (u64 BE)  | the offsets (u64 BE each) of that conversation's seqs first, first+1, … |
//! | `conv_chunks` | the empty key                           | u64 BE: the offset up to which the index holds every event of the chunks; an open indexes the rest |
//! | `meta`        | `layout`                                | `chunked-1`: the layout above (absent: a migration did not finish) |
//! | `meta`        | `position`                              | u64 BE: the last command applied from an external sequencer (the cluster's JetStream stream sequence) |
//! | `meta`        | `wal_lsn`                               | u64 BE: the last WAL record the trees hold |
//!
//! Why chunks: sled costs ~10–20 µs of CPU per key inserted; a chunk is
//! one value per 64 KiB of entries plus one index key per conversation a
//! transaction touches (eventlog/BENCHMARKS-log.md). Each entry keeps its
//! own version byte and CRC ([`crate::codec`]), so a damaged entry is an
//! error naming its offset. Big-endian keys make "everything after seq N"
//! and "the page before seq N" range scans.
//!
//! Databases written by the per-event layout are migrated on open: see
//! [`legacy`].
//!
//! Files, in read order: this one (the [`Log`]: append, reads that overlay
//! the pending batches), `wal`, `pending`, `projector`, `projection`,
//! `format`, `write`, `read`, `error`, `legacy`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};

mod error;
mod format;
#[doc(hidden)]
pub mod legacy;
mod pending;
mod projection;
mod projector;
mod read;
pub mod wal;
mod write;

pub use error::LogError;
#[doc(hidden)]
pub use format::{CHUNKS, CONV_CHUNKS, INDEX_FILE, LAYOUT, META};
pub use projection::Projection;

use crate::event::{ConvId, Envelope, Offset, Seq};
use format::{decode_record, encode_record, WAL_DIR};
use pending::{Batch, Pending};
use projector::Projector;
use wal::Wal;

/// Length of a new WAL segment unless the store says otherwise.
pub const DEFAULT_WAL_SEGMENT_BYTES: u64 = 16 << 20;
/// Bound of sled's page cache unless the store says otherwise (the
/// server's `--cache-mib`).
pub const DEFAULT_CACHE_BYTES: u64 = 64 << 20;
/// Events the projector may fall behind by before appends wait for it.
const MAX_PENDING_EVENTS: usize = 1 << 18;
/// A group commit at least this slow is logged, with where its time went
/// (every command of it, and every one queued behind it, waited that long).
const SLOW_COMMIT: Duration = Duration::from_millis(50);

pub struct Log {
    projection: Arc<Projection>,
    wal: Mutex<Wal>,
    shared: Arc<Shared>,
    projector: Mutex<Option<Projector>>,
}

/// What the writer, the projector and readers share.
pub(crate) struct Shared {
    pending: RwLock<Pending>,
    /// Wakes the projector (a batch arrived, or stop) and appenders
    /// waiting for room.
    signal: (Mutex<Signal>, Condvar),
}

#[derive(Default)]
pub(crate) struct Signal {
    /// The last LSN durable in the projection: WAL segments at or below it
    /// are recycled.
    checkpoint: u64,
    stop: bool,
    /// The projector failed: appends fail too (the store stops).
    failed: Option<String>,
    /// Project what is pending now, without waiting for
    /// [`projector::PROJECT_EVERY`] (test hook [`Log::settle`]).
    hurry: bool,
}

impl Log {
    /// Opens (or creates) the log in `dir` with WAL segments of the default
    /// length.
    pub fn open(dir: &Path) -> Result<Log, LogError> {
        Log::open_with(dir, DEFAULT_WAL_SEGMENT_BYTES, DEFAULT_CACHE_BYTES)
    }

    /// Opens the log in `dir` as [`Log::open`] does; if its index's file
    /// (`log-index.redb`) does not open, it is removed and made again from
    /// the chunks (`vato-admin rebuild`; the chunks are only read). sled's
    /// lock is taken before the index is opened, so this never removes
    /// the file of a log another process has open.
    pub fn open_reindexing(dir: &Path) -> Result<Log, LogError> {
        match Log::open(dir) {
            Err(LogError::Index(e)) => {
                tracing::warn!("{e}: making the index again from the log");
                crate::table_file::TableFile::remove(&dir.join(format::INDEX_FILE))?;
                Log::open(dir)
            }
            opened => opened,
        }
    }

    /// Opens (or creates) the log in `dir`: the projection (migrating a
    /// per-event database first), then the WAL, whose records past the
    /// projection's `wal_lsn` are projected and made durable before this
    /// returns.
    /// `cache_bytes` bounds sled's page cache: what reads keep of the
    /// log in memory.
    pub fn open_with(
        dir: &Path,
        wal_segment_bytes: u64,
        cache_bytes: u64,
    ) -> Result<Log, LogError> {
        let projection = Arc::new(Projection::open(dir, cache_bytes)?);
        let checkpoint = projection.wal_lsn()?;
        let (mut wal, records) = Wal::open(&dir.join(WAL_DIR), wal_segment_bytes, checkpoint)?;
        let mut recovered = Vec::with_capacity(records.len());
        for record in records {
            let (events, position) = decode_record(record.lsn, &record.payload)?;
            recovered.push(Batch {
                lsn: record.lsn,
                events: events.into(),
                record: record.payload.into(),
                position,
            });
        }
        if let Some(last) = recovered.last() {
            let lsn = last.lsn;
            projection.project(&recovered)?;
            projection.sync()?;
            wal.checkpoint(lsn);
        }
        let shared = Arc::new(Shared {
            pending: RwLock::new(Pending::default()),
            signal: (
                Mutex::new(Signal {
                    checkpoint: projection.wal_lsn()?,
                    ..Signal::default()
                }),
                Condvar::new(),
            ),
        });
        let projector = Projector::start(projection.clone(), shared.clone())?;
        Ok(Log {
            projection,
            wal: Mutex::new(wal),
            shared,
            projector: Mutex::new(Some(projector)),
        })
    }

    pub fn dir(&self) -> &Path {
        self.projection.dir()
    }

    /// True if `dir` holds a log (possibly one whose migration to this
    /// layout has not finished).
    pub fn exists_in(dir: &Path) -> bool {
        Projection::exists_in(dir)
    }

    /// Appends a batch of envelopes (offsets increasing, normally
    /// consecutive) and makes it durable.
    pub fn append_batch(&self, batch: &[Envelope]) -> Result<(), LogError> {
        self.append_batch_at(batch.to_vec().into(), None)
    }

    /// Appends a batch and records `position` with it (so that events and
    /// "how far the stream was applied" never disagree after a crash):
    /// one WAL record, durable when this returns; readers see the batch at
    /// once; the projector writes it into sled a moment later.
    pub fn append_batch_at(
        &self,
        batch: Arc<[Envelope]>,
        position: Option<u64>,
    ) -> Result<(), LogError> {
        let mut previous: Option<Offset> = None;
        for envelope in batch.iter() {
            if let Some(previous) = previous.filter(|p| envelope.offset <= *p) {
                return Err(LogError::OutOfOrder {
                    offset: envelope.offset,
                    previous,
                });
            }
            previous = Some(envelope.offset);
        }
        let started = Instant::now();
        let record = encode_record(&batch, position)?;
        let encoded = Instant::now();
        let checkpoint = self.wait_for_room()?;
        let room = Instant::now();
        let (lsn, times) = {
            let mut wal = self.wal.lock();
            wal.checkpoint(checkpoint);
            let lsn = wal.append(&record)?;
            (lsn, wal.last_times())
        };
        let appended = Instant::now();
        let pending = {
            let mut pending = self.shared.pending.write();
            pending.push(Batch {
                lsn,
                events: batch,
                record: record.into(),
                position,
            });
            pending.len_events()
        };
        let total = started.elapsed();
        if total >= SLOW_COMMIT {
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            tracing::warn!(
                total_ms = ms(total),
                encode_ms = ms(encoded - started),
                wait_for_projector_ms = ms(room - encoded),
                roll_ms = ms(times.roll),
                write_ms = ms(times.write),
                fdatasync_ms = ms(times.sync),
                readers_lock_ms = ms(appended.elapsed()),
                "slow group commit"
            );
        }
        // The projector wakes by itself every `PROJECT_EVERY`; waking it
        // for each batch would cost a thread switch per group commit.
        if pending >= projector::PROJECT_AT_EVENTS {
            self.shared.signal.1.notify_all();
        }
        Ok(())
    }

    /// Waits while the projector is too far behind; returns its checkpoint.
    fn wait_for_room(&self) -> Result<u64, LogError> {
        let (lock, cond) = &self.shared.signal;
        let mut signal = lock.lock();
        loop {
            if let Some(failure) = &signal.failed {
                return Err(LogError::Projector(failure.clone()));
            }
            if self.shared.pending.read().len_events() < MAX_PENDING_EVENTS {
                return Ok(signal.checkpoint);
            }
            cond.wait_for(&mut signal, std::time::Duration::from_millis(10));
        }
    }

    /// Waits until the projector has written every appended batch into
    /// sled and made it durable, and stops it. Reads keep working; appends
    /// after this fail.
    pub fn close(&self) -> Result<(), LogError> {
        if let Some(projector) = self.projector.lock().take() {
            projector.stop()?;
        }
        Ok(())
    }

    /// Offset the next appended event will get.
    pub fn next_offset(&self) -> Result<Offset, LogError> {
        match self.shared.pending.read().view().next_offset() {
            Some(next) => Ok(next),
            None => self.projection.next_offset(),
        }
    }

    /// The last external position recorded with a batch (cluster mode: the
    /// stream sequence of the last command applied).
    pub fn position(&self) -> Result<Option<u64>, LogError> {
        match self.shared.pending.read().position() {
            Some(position) => Ok(Some(position)),
            None => self.projection.position(),
        }
    }

    /// Every event from `offset` on, in order (see
    /// [`Projection::read_from`] for how damage shows).
    pub fn read_from(
        &self,
        offset: Offset,
    ) -> impl Iterator<Item = Result<Envelope, LogError>> + '_ {
        let view = self.shared.pending.read().view();
        let bound = view.first_offset();
        let tail: Vec<Envelope> = view
            .events()
            .filter(|e| e.offset >= offset)
            .cloned()
            .collect();
        self.projection
            .read_from(offset)
            .take_while(move |item| !matches!(item, Ok(e) if e.offset >= bound))
            .chain(tail.into_iter().map(Ok))
    }

    pub fn get(&self, offset: Offset) -> Result<Option<Envelope>, LogError> {
        let view = self.shared.pending.read().view();
        if offset >= view.first_offset() {
            return Ok(view.get(offset).cloned());
        }
        self.projection.get(offset)
    }

    /// Up to `limit` events of `conv` with seq > `after`, oldest first.
    pub fn conv_after(
        &self,
        conv: ConvId,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<Envelope>, LogError> {
        let view = self.shared.pending.read().view();
        let bound = view.first_offset();
        let mut out: Vec<Envelope> = self
            .projection
            .conv_after(conv, after, limit)?
            .into_iter()
            .take_while(|e| e.offset < bound)
            .collect();
        let from = out
            .last()
            .and_then(|e| e.event.conv_seq())
            .map_or(after, |(_, s)| s);
        let room = limit - out.len();
        out.extend(view.conv_after(conv, from).take(room).cloned());
        Ok(out)
    }

    /// Up to `limit` events of `conv` with seq < `before`, newest first.
    pub fn conv_before(
        &self,
        conv: ConvId,
        before: Seq,
        limit: usize,
    ) -> Result<Vec<Envelope>, LogError> {
        let view = self.shared.pending.read().view();
        let mut out: Vec<Envelope> = view
            .conv_before(conv, before)
            .take(limit)
            .cloned()
            .collect();
        // Everything of `conv` from the first pending offset on is in the
        // view, so sled is read below the oldest seq the view gave.
        let below = out
            .last()
            .and_then(|e| e.event.conv_seq())
            .map_or(before, |(_, s)| s);
        let room = limit - out.len();
        if room > 0 {
            out.extend(self.projection.conv_before(conv, below, room)?);
        }
        Ok(out)
    }

    /// Bytes the projection (sled) occupies on disk; the WAL's segments
    /// are a bounded few on top.
    pub fn size_on_disk(&self) -> Result<u64, LogError> {
        self.projection.size_on_disk()
    }

    /// Test and repair hook: overwrite the raw bytes of the entry at
    /// `offset` in the projection (see [`Projection::put_raw`]).
    #[doc(hidden)]
    pub fn put_raw(&self, offset: Offset, bytes: &[u8]) -> Result<(), LogError> {
        self.projection.put_raw(offset, bytes)
    }

    /// Test hook: waits until every appended batch is in sled (readable
    /// there, not necessarily durable), so that a test knows how batches
    /// were grouped into chunks.
    #[doc(hidden)]
    pub fn settle(&self) {
        let (lock, cond) = &self.shared.signal;
        let mut signal = lock.lock();
        while !self.shared.pending.read().is_empty() && signal.failed.is_none() {
            signal.hurry = true;
            cond.notify_all();
            cond.wait_for(&mut signal, std::time::Duration::from_millis(5));
        }
    }

    /// Writes sled's snapshot of its page table now, so that its next
    /// open replays sled's log only from here (vendor/sled/VATO.md, the
    /// thirteenth change); `false` if nothing was written since the last.
    pub fn write_page_table_snapshot(&self) -> Result<bool, LogError> {
        Ok(self.projection.sled().write_page_table_snapshot(true)?)
    }

    /// Test hook: makes what sled holds now durable (after writing to it
    /// below the API).
    #[doc(hidden)]
    pub fn sync(&self) -> Result<(), LogError> {
        self.projection.sync()
    }

    /// The bound of each read cache this log was opened with (sled's, the
    /// index's; the history's records are opened with the same).
    pub fn cache_bytes(&self) -> u64 {
        self.projection.cache_bytes
    }

    /// Test hook: sled itself, to damage the log below its API.
    #[doc(hidden)]
    pub fn sled(&self) -> &sled::Db {
        self.projection.sled()
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::warn!("the projector stopped with an error: {e}");
        }
    }
}

/// Puts the calling thread behind the latency-critical ones: CPU nice 19
/// and the idle I/O class (Linux; elsewhere nothing). For the threads
/// whose work no acknowledgement waits on: the projector, the snapshot,
/// the WAL's segment preparer (sled's IO threads call the same
/// `sled::background_thread`, in the vendored sled, where the syscalls
/// live). On two shared cores a snapshot's sled writes and their
/// I/O competed with the writer, the sockets and the WAL's `fdatasync`s:
/// with them lowered, delivery p99 on disk went 14.4 -> 11.6 ms in the
/// minute after a snapshot at 2,000 msg/s and 59.5 -> 48.3 ms at 8,000
/// msg/s, and the store benchmark did not lose (BENCHMARKS.md, #18). Both
/// only order who goes first when the machine is busy: an idle machine
/// runs these threads at once.
pub fn background_thread() {
    sled::background_thread();
}
