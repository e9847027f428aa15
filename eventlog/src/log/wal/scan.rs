//! Recovery: reading the segments back and following the LSN chain (the
//! rules are in the parent module's docs).

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::{crc, segment_path, Lsn, Record, WalError, HEADER};

/// What recovery found (see the module docs for the rules).
pub(super) struct Scan {
    pub(super) records: Vec<Record>,
    /// The last LSN of the chain, if it has any record after the checkpoint.
    pub(super) last_lsn: Option<Lsn>,
    /// The segment the chain ends in: (number, end of its last record, its
    /// last LSN).
    pub(super) tail: Option<(u64, u64, Lsn)>,
    /// Segments before the tail holding records, with their last LSN.
    pub(super) sealed: Vec<(u64, Lsn)>,
    /// Segments with nothing after the checkpoint in them.
    pub(super) stale: Vec<u64>,
}

pub(super) fn scan(dir: &Path, numbers: &[u64], checkpoint: Lsn) -> Result<Scan, WalError> {
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
