//! The bytes of the layout (see the table in [`super`]): sizes and names,
//! keys, the length-prefixed framing of chunks, the runs of the
//! conversation index, and the builders that turn a batch into both.
//! Pure: no I/O beyond filling a `sled::Batch`.

use std::collections::HashMap;
use std::ops::Range;

use crate::codec::{self, CodecError};
use crate::event::{ConvId, Envelope, Offset, Seq};

use super::LogError;

/// sled writes a page above a quarter segment to a blob file of its own.
/// A leaf holds up to 16 values: with the default 512 KiB segments, a leaf
/// of chunks would be a blob on most batches.
pub(super) const SEGMENT_SIZE: usize = 8 << 20;
/// A chunk ends before the entry that would take it past this size (an
/// entry bigger than this is a chunk of its own), so that a leaf of 16
/// chunks of contract-sized messages (≤ 16 KiB) stays below the 2 MiB blob
/// threshold, and `get` walks a bounded number of prefixes.
pub(super) const CHUNK_BYTES: usize = 64 << 10;
/// Most offsets in one `conv_chunks` value (32 KiB).
pub(super) const RUN_LEN: usize = 4096;

/// The database directory inside the data directory.
pub(super) const DB_DIR: &str = "sled";
#[doc(hidden)]
pub const CHUNKS: &str = "chunks";
/// The sled tree the per-conversation index was kept in before its own
/// file ([`INDEX_FILE`]); moved there on open.
#[doc(hidden)]
pub const CONV_CHUNKS: &str = "conv_chunks";
/// The per-conversation index's file in the data directory, and its table.
pub const INDEX_FILE: &str = "log-index.redb";
pub(super) const INDEX_TABLE: &str = "conv_chunks";
/// In the index's table: the offset up to which (exclusive) the index
/// holds every event of the chunks (u64 BE). The empty key sorts before
/// every run's key.
pub(super) const INDEXED: &[u8] = b"";
#[doc(hidden)]
pub const META: &str = "meta";
pub(super) const POSITION: &[u8] = b"position";
/// u64 BE: the last WAL record projected into these trees and made durable
/// with them (absent: none, or a database from before the WAL).
pub(super) const WAL_LSN: &[u8] = b"wal_lsn";
/// The WAL's directory inside the data directory.
pub(super) const WAL_DIR: &str = "wal";
/// The version byte of a WAL record's payload.
const RECORD_V1: u8 = 1;
const NO_POSITION: u64 = u64::MAX;
#[doc(hidden)]
pub const LAYOUT: &[u8] = b"layout";
pub(super) const CHUNKED: &[u8] = b"chunked-1";

/// Splits a batch's encoded entries into chunks: a new chunk at a jump in
/// the offsets or when the current one would pass [`CHUNK_BYTES`].
#[derive(Default)]
pub(super) struct ChunkBuilder {
    chunks: Vec<(Offset, Vec<u8>)>,
    next: Offset,
    bytes: usize,
}

impl ChunkBuilder {
    pub(super) fn push(&mut self, offset: Offset, entry: &[u8]) -> Result<(), LogError> {
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
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(super) fn into_batch(self) -> sled::Batch {
        let mut batch = sled::Batch::default();
        for (first, chunk) in self.chunks {
            batch.insert(&first.to_be_bytes(), chunk);
        }
        batch
    }
}

/// Appends `[len: u32 BE][entry]` to a chunk.
pub(super) fn frame(chunk: &mut Vec<u8>, offset: Offset, entry: &[u8]) -> Result<(), LogError> {
    frame_with(chunk, offset, |chunk| {
        chunk.extend_from_slice(entry);
        Ok(())
    })
}

/// [`frame`] of the entry `write` appends: written in place, its length
/// filled in after.
fn frame_with(
    chunk: &mut Vec<u8>,
    offset: Offset,
    write: impl FnOnce(&mut Vec<u8>) -> Result<(), CodecError>,
) -> Result<(), LogError> {
    let at = chunk.len();
    chunk.extend_from_slice(&[0; 4]);
    let written = write(chunk).and_then(|()| {
        let entry = chunk.len() - at - 4;
        u32::try_from(entry).map_err(|_| CodecError::Encode(format!("entry of {entry} bytes")))
    });
    match written {
        Ok(len) => {
            chunk[at..at + 4].copy_from_slice(&len.to_be_bytes());
            Ok(())
        }
        Err(source) => {
            chunk.truncate(at);
            Err(LogError::Corrupt { offset, source })
        }
    }
}

/// Groups (conv, seq, offset) into runs of consecutive seqs per
/// conversation: one `conv_chunks` key per run. The state machine gives a
/// conversation's events consecutive seqs, so a batch makes one run per
/// conversation it touches; anything else still gets a correct index
/// (more, shorter runs).
#[derive(Default)]
pub(super) struct RunBuilder {
    /// (conv, first seq, offsets as u64 BE).
    runs: Vec<(ConvId, Seq, Vec<u8>)>,
    /// The run each conversation may still extend.
    open: HashMap<ConvId, usize>,
}

impl RunBuilder {
    pub(super) fn push(&mut self, conv: ConvId, seq: Seq, offset: Offset) {
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

    /// The runs as (key, offsets) entries of the index.
    pub(super) fn into_entries(self) -> Vec<([u8; 16], Vec<u8>)> {
        self.runs
            .into_iter()
            .map(|(conv, first, offsets)| (conv_key(conv, first), offsets))
            .collect()
    }
}

/// The (offset, byte range) of each entry of the chunk starting at
/// `first`, by its length prefixes; stops after the first framing error.
pub(super) fn entries(
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
pub(super) fn run_entries<'a>(
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

pub(super) fn encode_envelope(envelope: &Envelope) -> Result<Vec<u8>, LogError> {
    codec::encode(envelope).map_err(|source| LogError::Corrupt {
        offset: envelope.offset,
        source,
    })
}

pub(super) fn decode_envelope(offset: Offset, value: &[u8]) -> Result<Envelope, LogError> {
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

pub(super) fn conv_key(conv: ConvId, seq: Seq) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&conv.to_be_bytes());
    key[8..].copy_from_slice(&seq.to_be_bytes());
    key
}

pub(super) fn decode_u64(bytes: &[u8]) -> Result<u64, LogError> {
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| LogError::BadKey(bytes.to_vec()))?;
    Ok(u64::from_be_bytes(array))
}

/// A batch as one WAL record's payload: `[version: u8][position: u64 LE,
/// u64::MAX for none]` and then the entries framed as in a chunk, the i-th
/// frame holding the batch's i-th envelope. The projector copies the
/// frames into chunks as they are: each event is encoded once.
pub(super) fn encode_record(
    batch: &[Envelope],
    position: Option<u64>,
) -> Result<Vec<u8>, LogError> {
    let mut record = Vec::with_capacity(9 + batch.len() * 256);
    record.push(RECORD_V1);
    record.extend_from_slice(&position.unwrap_or(NO_POSITION).to_le_bytes());
    for envelope in batch {
        // Encoded straight into the record: no buffer per event.
        frame_with(&mut record, envelope.offset, |record| {
            codec::encode_into(record, envelope)
        })?;
    }
    Ok(record)
}

/// The byte ranges of a record's frames, in order.
pub(super) fn record_frames(
    record: &[u8],
) -> impl Iterator<Item = Result<Range<usize>, LogError>> + '_ {
    let body = record.get(9..).unwrap_or_default();
    // A record of no events (in cluster mode: only a new stream position,
    // for commands the state machine refused) has an empty body, which is
    // no error here, unlike an empty chunk.
    (!body.is_empty())
        .then(|| entries(0, body))
        .into_iter()
        .flatten()
        .map(|entry| entry.map(|(_, range)| range.start + 9..range.end + 9))
}

/// A record back into its batch (at recovery).
pub(super) fn decode_record(
    lsn: u64,
    record: &[u8],
) -> Result<(Vec<Envelope>, Option<u64>), LogError> {
    let layout = |detail: String| LogError::Layout(format!("WAL record {lsn}: {detail}"));
    if record.first() != Some(&RECORD_V1) || record.len() < 9 {
        return Err(layout(format!("unknown version or {} bytes", record.len())));
    }
    let position = u64::from_le_bytes(record[1..9].try_into().expect("8 bytes"));
    let mut events = Vec::new();
    for range in record_frames(record) {
        let range = range?;
        let envelope: Envelope =
            codec::decode(&record[range]).map_err(|e| layout(e.to_string()))?;
        events.push(envelope);
    }
    Ok((events, (position != NO_POSITION).then_some(position)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cluster mode logs a record of no events when a command is refused
    /// (only the stream position moves); recovery must read it back, not
    /// take its empty body for a damaged one (a node killed with such a
    /// record in its WAL failed to start).
    #[test]
    fn a_record_of_no_events_decodes() {
        let record = encode_record(&[], Some(42)).expect("encode");
        assert_eq!(record_frames(&record).count(), 0);
        let (events, position) = decode_record(7, &record).expect("decode");
        assert!(events.is_empty());
        assert_eq!(position, Some(42));
        let (events, position) =
            decode_record(8, &encode_record(&[], None).expect("encode")).expect("decode");
        assert!(events.is_empty());
        assert_eq!(position, None);
    }
}
