//! The log on sled: the events in offset order, stored a group commit at a
//! time ("chunks"), and a per-conversation index, written together in one
//! transaction and made durable per batch.
//!
//! Layout (one sled database in `<data dir>/sled`, 8 MiB segments):
//!
//! | tree          | key                                     | value |
//! |---------------|-----------------------------------------|-------|
//! | `chunks`      | first offset of the chunk (u64 BE)      | the entries at that offset and the next ones: `[len: u32 BE][encoded Envelope]`… |
//! | `conv_chunks` | conv id (u64 BE) ++ first seq (u64 BE)  | the offsets (u64 BE each) of that conversation's seqs first, first+1, … |
//! | `meta`        | `layout`                                | `chunked-1`: the layout above (absent: a migration did not finish) |
//! | `meta`        | `position`                              | u64 BE: the last command applied from an external sequencer (the cluster's JetStream stream sequence) |
//!
//! Why chunks: sled costs ~10–20 µs of the writer's CPU per key inserted,
//! and the layout before this one (a key per event plus an index key per
//! event) capped the writer at ~35k appends/s. A group commit is now one
//! value per 64 KiB of entries plus one index key per conversation it
//! touches (eventlog/BENCHMARKS-log.md). Each entry keeps its own version
//! byte and CRC ([`crate::codec`]), so a damaged entry is still an error
//! naming its offset.
//!
//! Reads: `get(offset)` is one reverse range step on `chunks` (the last
//! chunk starting at or before the offset) and a walk over length
//! prefixes. Big-endian keys sort numerically, so "everything after seq N"
//! and "the page before seq N" are range scans over `conv_chunks` in either
//! direction, starting from the run that holds N.
//!
//! Durability: sled 0.34's `flush()` writes its buffers with
//! `sync_file_range`, which persists neither the file's metadata nor the
//! drive's write cache. After each flush we `fdatasync` sled's data file
//! (and any new blob file) ourselves; only then is a batch acknowledged.
//!
//! Databases written by the layout before (trees `events` and `by_conv`,
//! sled's default 512 KiB segments) are migrated on open: see [`legacy`].

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use crate::codec::{self, CodecError};
use crate::event::{ConvId, Envelope, Offset, Seq};

#[doc(hidden)]
pub mod legacy;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("corrupt log entry at offset {offset}: {source}")]
    Corrupt {
        offset: Offset,
        #[source]
        source: CodecError,
    },
    /// A chunk whose length prefixes do not add up: the entries from
    /// `offset` on (to the end of that chunk) cannot be located.
    #[error("corrupt log chunk at offset {offset}: {detail}")]
    Framing { offset: Offset, detail: String },
    #[error("corrupt log key {0:?}")]
    BadKey(Vec<u8>),
    #[error("corrupt conversation index entry at key {0:?}")]
    BadIndex(Vec<u8>),
    /// Offsets within one batch must increase.
    #[error("batch offsets out of order: {offset} after {previous}")]
    OutOfOrder { offset: Offset, previous: Offset },
    #[error("unexpected log layout: {0}")]
    Layout(String),
}

/// sled writes a page above a quarter segment to a blob file of its own.
/// A leaf holds up to 16 values: with the default 512 KiB segments, a leaf
/// of chunks would be a blob on most batches.
const SEGMENT_SIZE: usize = 8 << 20;
/// A chunk ends before the entry that would take it past this size (an
/// entry bigger than this is a chunk of its own), so that a leaf of 16
/// chunks of contract-sized messages (≤ 16 KiB) stays below the 2 MiB blob
/// threshold, and `get` walks a bounded number of prefixes.
const CHUNK_BYTES: usize = 64 << 10;
/// Most offsets in one `conv_chunks` value (32 KiB).
const RUN_LEN: usize = 4096;

/// The database directory inside the data directory.
const DB_DIR: &str = "sled";
#[doc(hidden)]
pub const CHUNKS: &str = "chunks";
#[doc(hidden)]
pub const CONV_CHUNKS: &str = "conv_chunks";
#[doc(hidden)]
pub const META: &str = "meta";
const POSITION: &[u8] = b"position";
#[doc(hidden)]
pub const LAYOUT: &[u8] = b"layout";
const CHUNKED: &[u8] = b"chunked-1";

pub struct Log {
    db: sled::Db,
    chunks: sled::Tree,
    conv_chunks: sled::Tree,
    meta: sled::Tree,
    /// sled's data file, kept open to fdatasync it after each flush.
    data_file: File,
    /// Files in sled's `blobs/` directory already fsynced (see `sync`).
    synced_blobs: Mutex<HashSet<OsString>>,
    dir: PathBuf,
}

impl Log {
    /// Opens (or creates) the log in `dir`, first migrating a database
    /// written by the per-event layout (see [`legacy`]).
    pub fn open(dir: &Path) -> Result<Log, LogError> {
        std::fs::create_dir_all(dir)?;
        let db_path = dir.join(DB_DIR);
        let legacy_path = dir.join(legacy::DIR);
        if legacy::is_legacy(&db_path)? {
            legacy::move_aside(&db_path, &legacy_path, dir)?;
        }
        let db = sled::Config::new()
            .path(&db_path)
            .segment_size(SEGMENT_SIZE)
            // Our own group commit decides when to flush; the background
            // flusher only adds I/O that nobody waits for.
            .flush_every_ms(None)
            .open()?;
        let log = Log {
            chunks: db.open_tree(CHUNKS)?,
            conv_chunks: db.open_tree(CONV_CHUNKS)?,
            meta: db.open_tree(META)?,
            data_file: File::open(db_path.join("db"))?,
            db,
            synced_blobs: Mutex::new(HashSet::new()),
            dir: dir.to_path_buf(),
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
        Ok(log)
    }

    /// A new database: marks its layout and makes its files' names durable.
    fn initialize(&self) -> Result<(), LogError> {
        // Only a migration writes before `layout` is set, and a migration
        // keeps its source until `layout` is durable.
        if !self.chunks.is_empty() || !self.conv_chunks.is_empty() || !self.meta.is_empty() {
            return Err(LogError::Layout(format!(
                "{} holds entries but no layout marker, and there is no {} to migrate from",
                self.dir.join(DB_DIR).display(),
                legacy::DIR
            )));
        }
        self.meta.insert(LAYOUT, CHUNKED)?;
        self.sync()?;
        self.sync_directories()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// True if `dir` holds a log (possibly one whose migration to this
    /// layout has not finished).
    pub fn exists_in(dir: &Path) -> bool {
        dir.join(DB_DIR).exists() || dir.join(legacy::DIR).exists()
    }

    /// Offset the next appended event will get.
    pub fn next_offset(&self) -> Result<Offset, LogError> {
        match self.chunks.last()? {
            Some((key, value)) => {
                let first = decode_u64(&key)?;
                let mut next = first;
                for entry in entries(first, &value) {
                    next = entry?.0 + 1;
                }
                Ok(next)
            }
            None => Ok(0),
        }
    }

    /// Writes a batch of envelopes (offsets increasing, normally
    /// consecutive) and their index entries in one sled transaction, then
    /// makes it durable (flush + fdatasync).
    pub fn append_batch(&self, batch: &[Envelope]) -> Result<(), LogError> {
        self.append_batch_at(batch, None)
    }

    /// The last external position recorded with a batch (cluster mode: the
    /// stream sequence of the last command applied).
    pub fn position(&self) -> Result<Option<u64>, LogError> {
        match self.meta.get(POSITION)? {
            Some(value) => Ok(Some(decode_u64(&value)?)),
            None => Ok(None),
        }
    }

    /// [`Log::append_batch`], also recording `position` in the same
    /// transaction, so that events and "how far the stream was applied"
    /// can never disagree after a crash.
    pub fn append_batch_at(
        &self,
        batch: &[Envelope],
        position: Option<u64>,
    ) -> Result<(), LogError> {
        let mut chunks = ChunkBuilder::default();
        let mut runs = RunBuilder::default();
        let mut previous: Option<Offset> = None;
        for envelope in batch {
            if let Some(previous) = previous.filter(|p| envelope.offset <= *p) {
                return Err(LogError::OutOfOrder {
                    offset: envelope.offset,
                    previous,
                });
            }
            previous = Some(envelope.offset);
            chunks.push(envelope.offset, &encode_envelope(envelope)?)?;
            if let Some((conv, seq)) = envelope.event.conv_seq() {
                runs.push(conv, seq, envelope.offset);
            }
        }
        write_together(
            [&self.chunks, &self.conv_chunks, &self.meta],
            &chunks.into_batch(),
            &runs.into_batch(),
            position,
        )?;
        self.sync()
    }

    /// Flushes sled and then fsyncs its data file: the durable point.
    pub fn sync(&self) -> Result<(), LogError> {
        self.db.flush()?;
        self.sync_blobs()?;
        self.data_file.sync_data()?;
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
    fn sync_directories(&self) -> Result<(), LogError> {
        let db_path = self.dir.join(DB_DIR);
        File::open(db_path.join("conf"))?.sync_all()?;
        sync_dir(&db_path.join("blobs"))?;
        sync_dir(&db_path)?;
        sync_dir(&self.dir)?;
        Ok(())
    }

    /// Every event from `offset` on, in order. A damaged entry is an error
    /// item (the entries after it in a chunk with broken framing are
    /// skipped); a missing chunk is a jump in the offsets, which the
    /// caller sees (`store::replay_into` reports it).
    pub fn read_from(
        &self,
        offset: Offset,
    ) -> impl Iterator<Item = Result<Envelope, LogError>> + '_ {
        // The chunk holding `offset` may start before it.
        let (start, failed) = match self.chunk_holding(offset) {
            Ok(Some((first, _))) => (first, None),
            Ok(None) => (offset, None),
            Err(e) => (offset, Some(e)),
        };
        let mut chunk_end: Option<Offset> = None;
        let chunks = self
            .chunks
            .range(start.to_be_bytes()..)
            .flat_map(move |item| {
                let (first, value) = match item
                    .map_err(LogError::from)
                    .and_then(|(key, value)| Ok((decode_u64(&key)?, value)))
                {
                    Ok(chunk) => chunk,
                    Err(e) => return vec![Err(e)],
                };
                if let Some(end) = chunk_end.filter(|end| first < *end) {
                    return vec![Err(LogError::Framing {
                        offset: first,
                        detail: format!("chunk overlaps the previous one, which ends at {end}"),
                    })];
                }
                let mut out = Vec::new();
                for entry in entries(first, &value) {
                    match entry {
                        Ok((at, range)) => {
                            chunk_end = Some(at + 1);
                            if at >= offset {
                                out.push(decode_envelope(at, &value[range]));
                            }
                        }
                        Err(e) => {
                            out.push(Err(e));
                            break;
                        }
                    }
                }
                out
            });
        failed.map(Err).into_iter().chain(chunks)
    }

    pub fn get(&self, offset: Offset) -> Result<Option<Envelope>, LogError> {
        ChunkReader::new(self).get(offset)
    }

    /// The last chunk starting at or before `offset`: the only one that can
    /// hold it.
    fn chunk_holding(&self, offset: Offset) -> Result<Option<(Offset, sled::IVec)>, LogError> {
        match self.chunks.range(..=offset.to_be_bytes()).next_back() {
            Some(item) => {
                let (key, value) = item?;
                Ok(Some((decode_u64(&key)?, value)))
            }
            None => Ok(None),
        }
    }

    /// Up to `limit` events of `conv` with seq > `after`, oldest first.
    pub fn conv_after(
        &self,
        conv: ConvId,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<Envelope>, LogError> {
        let want = after.saturating_add(1);
        // The run holding `want` may start before it.
        let start = match self
            .conv_chunks
            .range(conv_key(conv, 0)..=conv_key(conv, want))
            .next_back()
        {
            Some(item) => item?.0,
            None => sled::IVec::from(&conv_key(conv, want)),
        };
        let mut reader = ChunkReader::new(self);
        let mut out = Vec::new();
        let end = sled::IVec::from(&conv_key(conv, u64::MAX));
        for item in self.conv_chunks.range(start..=end) {
            let (key, value) = item?;
            for (seq, offset) in run_entries(&key, &value)? {
                if out.len() >= limit {
                    return Ok(out);
                }
                if seq >= want {
                    out.push(reader.resolve(&key, offset)?);
                }
            }
        }
        Ok(out)
    }

    /// Up to `limit` events of `conv` with seq < `before`, newest first.
    pub fn conv_before(
        &self,
        conv: ConvId,
        before: Seq,
        limit: usize,
    ) -> Result<Vec<Envelope>, LogError> {
        let mut reader = ChunkReader::new(self);
        let mut out = Vec::new();
        for item in self
            .conv_chunks
            .range(conv_key(conv, 0)..conv_key(conv, before))
            .rev()
        {
            let (key, value) = item?;
            for (seq, offset) in run_entries(&key, &value)?.rev() {
                if out.len() >= limit {
                    return Ok(out);
                }
                if seq < before {
                    out.push(reader.resolve(&key, offset)?);
                }
            }
        }
        Ok(out)
    }

    /// Bytes sled occupies on disk.
    pub fn size_on_disk(&self) -> Result<u64, LogError> {
        Ok(self.db.size_on_disk()?)
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

    /// Test hook: sled itself, to damage the log below its API.
    #[doc(hidden)]
    pub fn sled(&self) -> &sled::Db {
        &self.db
    }
}

/// Reads entries by offset, keeping the last chunk it loaded: index runs
/// point into the same few chunks, in order.
struct ChunkReader<'a> {
    log: &'a Log,
    /// (first offset, the chunk, the byte ranges of its entries up to the
    /// first framing error if any).
    cached: Option<(Offset, sled::IVec, Vec<Range<usize>>)>,
}

impl<'a> ChunkReader<'a> {
    fn new(log: &'a Log) -> ChunkReader<'a> {
        ChunkReader { log, cached: None }
    }

    fn get(&mut self, offset: Offset) -> Result<Option<Envelope>, LogError> {
        if let Some(found) = self.cached_entry(offset) {
            return found.map(Some);
        }
        let Some((first, value)) = self.log.chunk_holding(offset)? else {
            return Ok(None);
        };
        let mut ranges = Vec::new();
        for entry in entries(first, &value) {
            match entry {
                Ok((_, range)) => ranges.push(range),
                // Entries before the damage are still readable.
                Err(e) if offset >= first + ranges.len() as Offset => return Err(e),
                Err(_) => break,
            }
        }
        self.cached = Some((first, value, ranges));
        // Past the end of the last chunk starting at or before `offset`:
        // not in the log.
        self.cached_entry(offset).transpose()
    }

    /// The entry at `offset` if the cached chunk holds it.
    fn cached_entry(&self, offset: Offset) -> Option<Result<Envelope, LogError>> {
        let (first, value, ranges) = self.cached.as_ref()?;
        let index = usize::try_from(offset.checked_sub(*first)?).ok()?;
        let range = ranges.get(index)?;
        Some(decode_envelope(offset, &value[range.clone()]))
    }

    /// The entry an index run points to; its absence is index damage.
    fn resolve(&mut self, key: &[u8], offset: Offset) -> Result<Envelope, LogError> {
        self.get(offset)?
            .ok_or_else(|| LogError::BadKey(key.to_vec()))
    }
}

/// Splits a batch's encoded entries into chunks: a new chunk at a jump in
/// the offsets or when the current one would pass [`CHUNK_BYTES`].
#[derive(Default)]
struct ChunkBuilder {
    chunks: Vec<(Offset, Vec<u8>)>,
    next: Offset,
    bytes: usize,
}

impl ChunkBuilder {
    fn push(&mut self, offset: Offset, entry: &[u8]) -> Result<(), LogError> {
        let fits = self.chunks.last().is_some_and(|(_, chunk)| {
            offset == self.next && chunk.len() + 4 + entry.len() <= CHUNK_BYTES
        });
        if !fits {
            self.chunks.push((offset, Vec::new()));
        }
        let (_, chunk) = self.chunks.last_mut().expect("a chunk was started");
        frame(chunk, offset, entry)?;
        self.next = offset + 1;
        self.bytes += 4 + entry.len();
        Ok(())
    }

    /// Bytes collected so far.
    fn bytes(&self) -> usize {
        self.bytes
    }

    fn into_batch(self) -> sled::Batch {
        let mut batch = sled::Batch::default();
        for (first, chunk) in self.chunks {
            batch.insert(&first.to_be_bytes(), chunk);
        }
        batch
    }
}

/// Appends `[len: u32 BE][entry]` to a chunk.
fn frame(chunk: &mut Vec<u8>, offset: Offset, entry: &[u8]) -> Result<(), LogError> {
    let len = u32::try_from(entry.len()).map_err(|_| LogError::Corrupt {
        offset,
        source: CodecError::Encode(format!("entry of {} bytes", entry.len())),
    })?;
    chunk.extend_from_slice(&len.to_be_bytes());
    chunk.extend_from_slice(entry);
    Ok(())
}

/// Groups (conv, seq, offset) into runs of consecutive seqs per
/// conversation: one `conv_chunks` key per run. The state machine gives a
/// conversation's events consecutive seqs, so a batch makes one run per
/// conversation it touches; anything else still gets a correct index
/// (more, shorter runs).
#[derive(Default)]
struct RunBuilder {
    /// (conv, first seq, offsets as u64 BE).
    runs: Vec<(ConvId, Seq, Vec<u8>)>,
    /// The run each conversation may still extend.
    open: HashMap<ConvId, usize>,
}

impl RunBuilder {
    fn push(&mut self, conv: ConvId, seq: Seq, offset: Offset) {
        if let Some(&i) = self.open.get(&conv) {
            let (_, first, offsets) = &mut self.runs[i];
            let len = offsets.len() / 8;
            if len < RUN_LEN && first.checked_add(len as Seq) == Some(seq) {
                offsets.extend_from_slice(&offset.to_be_bytes());
                return;
            }
        }
        self.open.insert(conv, self.runs.len());
        self.runs.push((conv, seq, offset.to_be_bytes().to_vec()));
    }

    fn into_batch(self) -> sled::Batch {
        let mut batch = sled::Batch::default();
        for (conv, first, offsets) in self.runs {
            batch.insert(&conv_key(conv, first), offsets);
        }
        batch
    }
}

/// The (offset, byte range) of each entry of the chunk starting at
/// `first`, by its length prefixes; stops after the first framing error.
fn entries(
    first: Offset,
    chunk: &[u8],
) -> impl Iterator<Item = Result<(Offset, Range<usize>), LogError>> + '_ {
    let mut pos = 0usize;
    let mut offset = first;
    let mut failed = chunk.is_empty();
    let empty = failed.then(|| {
        Err(LogError::Framing {
            offset: first,
            detail: "empty chunk".into(),
        })
    });
    empty.into_iter().chain(std::iter::from_fn(move || {
        if failed || pos == chunk.len() {
            return None;
        }
        let left = chunk.len() - pos;
        let len = match chunk.get(pos..pos + 4) {
            Some(prefix) => u32::from_be_bytes(prefix.try_into().expect("4 bytes")) as usize,
            None => {
                failed = true;
                return Some(Err(LogError::Framing {
                    offset,
                    detail: format!("{left} bytes left, less than a length prefix"),
                }));
            }
        };
        if len > left - 4 {
            failed = true;
            return Some(Err(LogError::Framing {
                offset,
                detail: format!("entry claims {len} bytes, {} left in its chunk", left - 4),
            }));
        }
        let range = pos + 4..pos + 4 + len;
        pos = range.end;
        offset += 1;
        Some(Ok((offset - 1, range)))
    }))
}

/// The (seq, offset) pairs of one `conv_chunks` entry.
fn run_entries<'a>(
    key: &[u8],
    value: &'a [u8],
) -> Result<impl DoubleEndedIterator<Item = (Seq, Offset)> + 'a, LogError> {
    if key.len() != 16 || value.is_empty() || !value.len().is_multiple_of(8) {
        return Err(LogError::BadIndex(key.to_vec()));
    }
    let first = decode_u64(&key[8..])?;
    Ok(value.chunks_exact(8).enumerate().map(move |(i, offset)| {
        let offset = u64::from_be_bytes(offset.try_into().expect("8 bytes"));
        (first.saturating_add(i as Seq), offset)
    }))
}

/// Writes a batch of entries, its index entries and (if given) the
/// external position in one sled transaction over the entry, index and
/// meta trees: this layout's, and the per-event layout's in [`legacy`].
fn write_together(
    [entries, index, meta]: [&sled::Tree; 3],
    entry_batch: &sled::Batch,
    index_batch: &sled::Batch,
    position: Option<u64>,
) -> Result<(), LogError> {
    (entries, index, meta)
        .transaction(|(e, i, m)| {
            e.apply_batch(entry_batch)?;
            i.apply_batch(index_batch)?;
            if let Some(position) = position {
                m.insert(POSITION, &position.to_be_bytes())?;
            }
            Ok::<(), ConflictableTransactionError<()>>(())
        })
        .map_err(|e| match e {
            TransactionError::Storage(s) => LogError::Sled(s),
            TransactionError::Abort(()) => unreachable!("the transaction never aborts"),
        })
}

fn encode_envelope(envelope: &Envelope) -> Result<Vec<u8>, LogError> {
    codec::encode(envelope).map_err(|source| LogError::Corrupt {
        offset: envelope.offset,
        source,
    })
}

fn decode_envelope(offset: Offset, value: &[u8]) -> Result<Envelope, LogError> {
    let envelope: Envelope =
        codec::decode(value).map_err(|source| LogError::Corrupt { offset, source })?;
    if envelope.offset != offset {
        return Err(LogError::Corrupt {
            offset,
            source: CodecError::Payload(format!("envelope says offset {}", envelope.offset)),
        });
    }
    Ok(envelope)
}

fn conv_key(conv: ConvId, seq: Seq) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&conv.to_be_bytes());
    key[8..].copy_from_slice(&seq.to_be_bytes());
    key
}

fn decode_u64(bytes: &[u8]) -> Result<u64, LogError> {
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| LogError::BadKey(bytes.to_vec()))?;
    Ok(u64::from_be_bytes(array))
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    File::open(path)?.sync_all()
}
