//! The read path: by offset (`get`, `read_from`), by conversation (pages
//! after or before a seq through the index runs), and where the log ends.

use std::ops::Range;

use crate::event::{ConvId, Envelope, Offset, Seq};

use super::format::{conv_key, decode_envelope, decode_u64, entries, run_entries, POSITION};
use super::projection::Projection;
use super::LogError;

impl Projection {
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

    /// The last external position recorded with a batch (cluster mode: the
    /// stream sequence of the last command applied).
    pub fn position(&self) -> Result<Option<u64>, LogError> {
        match self.meta.get(POSITION)? {
            Some(value) => Ok(Some(decode_u64(&value)?)),
            None => Ok(None),
        }
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
    pub(super) fn chunk_holding(
        &self,
        offset: Offset,
    ) -> Result<Option<(Offset, sled::IVec)>, LogError> {
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
        let index = &self.index;
        let failed = |e: redb::StorageError| LogError::from(index.error(e));
        // The run holding `want` may start before it.
        let start = match index
            .range(&conv_key(conv, 0)[..]..&conv_key(conv, want.saturating_add(1))[..])
            .map_err(|e| index.error(e))?
            .next_back()
        {
            Some(item) => item.map_err(failed)?.0,
            None => conv_key(conv, want).to_vec(),
        };
        let mut reader = ChunkReader::new(self);
        let mut out = Vec::new();
        let end = conv_key(conv, u64::MAX);
        for item in index
            .range(&start[..]..&end[..])
            .map_err(|e| index.error(e))?
        {
            let (key, value) = item.map_err(failed)?;
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
        let index = &self.index;
        let mut reader = ChunkReader::new(self);
        let mut out = Vec::new();
        for item in index
            .range(&conv_key(conv, 0)[..]..&conv_key(conv, before)[..])
            .map_err(|e| index.error(e))?
            .rev()
        {
            let (key, value) = item.map_err(|e| index.error(e))?;
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
}

/// Reads entries by offset, keeping the last chunk it loaded: index runs
/// point into the same few chunks, in order.
struct ChunkReader<'a> {
    log: &'a Projection,
    /// (first offset, the chunk, the byte ranges of its entries up to the
    /// first framing error if any).
    cached: Option<(Offset, sled::IVec, Vec<Range<usize>>)>,
}

impl<'a> ChunkReader<'a> {
    fn new(log: &'a Projection) -> ChunkReader<'a> {
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
