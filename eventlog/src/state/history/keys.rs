//! The history tree's key layout (see the parent module's list) and the
//! merged, ordered read of ids over its layers.

use crate::codec;
use crate::event::{ConvId, MessageId, Seq, UserId};

use super::super::model::Message;
use super::Records;

pub(super) const MESSAGE: u8 = b'm';
/// Written before owner blocks (one record per message); still read.
pub(super) const OWNER: u8 = b'x';
pub(super) const OWNER_BLOCK: u8 = b'X';
/// Messages an owner block holds: ids `block * OWNERS_PER_BLOCK ..`.
pub(super) const OWNERS_PER_BLOCK: u64 = 64;
pub(super) const KEY: u8 = b'i';
pub(super) const ATTACHMENT: u8 = b'a';

/// The k-way merge of sorted id streams, each id once.
pub(super) struct Merge<'a> {
    sources: Vec<std::iter::Peekable<Box<dyn Iterator<Item = MessageId> + 'a>>>,
    newest_first: bool,
}

impl<'a> Merge<'a> {
    pub(super) fn new(
        sources: Vec<Box<dyn Iterator<Item = MessageId> + 'a>>,
        newest_first: bool,
    ) -> Self {
        Merge {
            sources: sources.into_iter().map(Iterator::peekable).collect(),
            newest_first,
        }
    }
}

impl Iterator for Merge<'_> {
    type Item = MessageId;

    fn next(&mut self) -> Option<MessageId> {
        let heads = self.sources.iter_mut().filter_map(|s| s.peek().copied());
        let next = if self.newest_first {
            heads.max()
        } else {
            heads.min()
        }?;
        for source in &mut self.sources {
            if source.peek() == Some(&next) {
                source.next();
            }
        }
        Some(next)
    }
}

pub(super) fn read(tree: &Records, key: &[u8]) -> Option<Vec<u8>> {
    match tree.get(key) {
        Ok(value) => value,
        Err(e) => {
            unreadable(tree, e);
            None
        }
    }
}

/// Logs a read of the records that failed (the read then finds nothing).
pub(super) fn unreadable(tree: &Records, e: impl Into<redb::Error>) {
    tracing::error!("unreadable: {}", tree.error(e));
}

pub(super) fn decode(bytes: &[u8]) -> Option<Message> {
    match codec::decode(bytes) {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::error!(
                "the history's records hold a damaged message: {e}; run `vato-admin rebuild`"
            );
            None
        }
    }
}

pub(super) fn be_u64(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    let n = bytes.len().min(8);
    buf[..n].copy_from_slice(&bytes[..n]);
    u64::from_be_bytes(buf)
}

pub(super) fn id_key(tag: u8, id: u64) -> [u8; 9] {
    let mut key = [tag; 9];
    key[1..].copy_from_slice(&id.to_be_bytes());
    key
}

pub(super) fn pair_key(tag: u8, a: u64, b: u64) -> [u8; 17] {
    let mut key = [tag; 17];
    key[1..9].copy_from_slice(&a.to_be_bytes());
    key[9..].copy_from_slice(&b.to_be_bytes());
    key
}

pub(super) fn message_key(conv: ConvId, id: MessageId) -> Vec<u8> {
    pair_key(MESSAGE, conv, id).to_vec()
}

pub(super) fn idempotency_key(sender: UserId, conv: ConvId, client_id: &str) -> Vec<u8> {
    let mut key = pair_key(KEY, sender, conv).to_vec();
    key.extend_from_slice(client_id.as_bytes());
    key
}

/// The conversation of message `id`: its owner block, or its `x` record
/// (written by earlier versions).
pub(super) fn owner(tree: &Records, id: MessageId) -> Option<ConvId> {
    let slot = (id % OWNERS_PER_BLOCK) as usize * 8;
    let in_block = read(tree, &id_key(OWNER_BLOCK, id / OWNERS_PER_BLOCK))
        .filter(|block| block.len() >= slot + 8)
        .map(|block| be_u64(&block[slot..slot + 8]))
        .filter(|conv| *conv != 0);
    in_block.or_else(|| read(tree, &id_key(OWNER, id)).map(|v| be_u64(&v)))
}

/// The first message of `conv` in the tree whose seq is ≥ `seq`: a
/// bisection over the conversation's `m` keys (ids and seqs grow
/// together), one seek and one decode a step.
pub(super) fn first_at_seq_in(tree: &Records, conv: ConvId, seq: Seq) -> Option<MessageId> {
    let end_key = message_key(conv, MessageId::MAX);
    let entry = |item: Result<(Vec<u8>, Vec<u8>), redb::StorageError>| match item {
        Ok((key, value)) => Some((be_u64(&key[9..]), decode(&value)?.seq)),
        Err(e) => {
            unreadable(tree, e);
            None
        }
    };
    let range = |from: MessageId| match tree.range(&message_key(conv, from)[..]..&end_key[..]) {
        Ok(entries) => Some(entries),
        Err(e) => {
            unreadable(tree, e);
            None
        }
    };
    // The first message at or after id `from`.
    let first_from = |from: MessageId| range(from)?.next().and_then(entry);
    let (first, first_seq) = first_from(0)?;
    if first_seq >= seq {
        return Some(first);
    }
    let (last, last_seq) = range(0)?.next_back().and_then(entry)?;
    if last_seq < seq {
        return None;
    }
    // The answer is in (lo, found]; no message has an id in [end, found).
    let (mut lo, mut found, mut end) = (first, last, last);
    while end > lo + 1 {
        let mid = lo + (end - lo) / 2;
        let (id, id_seq) = first_from(mid)?;
        if id >= end {
            end = mid;
        } else if id_seq >= seq {
            found = id;
            end = id;
        } else {
            lo = id;
        }
    }
    Some(found)
}
