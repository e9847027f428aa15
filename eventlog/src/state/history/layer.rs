//! A layer of the history: what changed in one stretch of events (the
//! active layer, or a frozen one a snapshot writes), and how a snapshot
//! commits it and writes it as records.

use std::collections::{BTreeMap, BTreeSet};

use crate::codec;
use crate::event::{AttachmentId, ConvId, MessageId, Seq, UserId};

use super::super::model::Message;
use super::keys::*;
use redb::ReadableTable;

use super::Records;
use super::{HistoryError, IdempotencyKey};

/// What changed in one stretch of events.
///
/// The writer inserts into the active layer, which grows to
/// `--snapshot-every` messages (50,000) and, when snapshots fall behind a
/// closed-loop load, to hundreds of thousands. A std hash map doubles by
/// moving every entry at once: that stopped the writer for 0.1-1 s at a
/// time (perf of the store benchmark, BENCHMARKS.md #18). So messages are
/// in a B-tree (their ids grow: each insert lands at its right edge), and
/// the idempotency keys and attachments in a [`SpreadMap`].
#[derive(Clone, Default, Debug)]
pub struct Layer {
    pub(super) messages: BTreeMap<MessageId, Message>,
    pub(super) by_conv: BTreeSet<(ConvId, MessageId)>,
    pub(super) by_seq: BTreeMap<(ConvId, Seq), MessageId>,
    pub(super) keys: SpreadMap<IdempotencyKey, MessageId>,
    /// The attachments of this layer's messages (derived from them).
    pub(super) attachments: SpreadMap<AttachmentId, MessageId>,
}

/// A hash map that moves its entries into a doubled table a few per
/// insert instead of all at once (griddle). Keyed with std's `RandomState`
/// (SipHash with a random key): client ids are chosen by clients. A
/// B-tree of the keys cost the store benchmark 15 % of its appends/s
/// (string comparisons down a tree of 100,000s of keys).
pub(super) type SpreadMap<K, V> = griddle::HashMap<K, V, std::collections::hash_map::RandomState>;

impl Layer {
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// The layer as one value: what a snapshot commits, in one small sled
    /// batch, beside its state. (A sled batch holds a process-wide lock
    /// that stops every other read and write of sled while it is applied:
    /// 50,000 messages as records held it for 2-3 s.)
    ///
    /// The messages are encoded where they are, not cloned into the
    /// record first: a copy of the whole layer (50,000 messages at the
    /// default) was a fifth of the snapshot thread's CPU at 16,000 msg/s,
    /// and the server's peak RSS is ~6 MB lower without it (BENCHMARKS.md,
    /// "Where the two cores go at 16,000 msg/s").
    pub fn to_record(&self) -> Result<Vec<u8>, codec::CodecError> {
        let record = LayerRecordRef {
            messages: self.messages.values().collect(),
            keys: self
                .keys
                .iter()
                .map(|((sender, conv, client_id), id)| (*sender, *conv, client_id.as_str(), *id))
                .collect(),
        };
        codec::encode(&record)
    }

    /// Writes the layer's records into `records`, in one durable
    /// transaction, in key order, each kind in turn: consecutive inserts
    /// land in the same leaf (ids grow, a conversation's keys are
    /// adjacent), so a history far larger than the cache is written
    /// without reading a random page per record (hash order fell to 6,900
    /// msg/s at 4M stored messages in sled).
    /// Idempotent: every record is the final value at the snapshot, so
    /// writing them again after a crash gives the same records.
    pub fn write_records(&self, records: &Records) -> Result<(), HistoryError> {
        let failed = |e: redb::StorageError| records.error(e);
        records.write(true, |table| {
            for (conv, id) in &self.by_conv {
                let value = codec::encode(&self.messages[id])?;
                table
                    .insert(&message_key(*conv, *id)[..], &value[..])
                    .map_err(failed)?;
            }
            let mut ids: Vec<(MessageId, ConvId)> =
                self.messages.values().map(|m| (m.id, m.conv_id)).collect();
            ids.sort_unstable();
            for block in ids.chunk_by(|a, b| a.0 / OWNERS_PER_BLOCK == b.0 / OWNERS_PER_BLOCK) {
                let key = id_key(OWNER_BLOCK, block[0].0 / OWNERS_PER_BLOCK);
                let mut value = table
                    .get(&key[..])
                    .map_err(failed)?
                    .map(|v| v.value().to_vec())
                    .unwrap_or_default();
                value.resize(OWNERS_PER_BLOCK as usize * 8, 0);
                for (id, conv) in block {
                    let slot = (id % OWNERS_PER_BLOCK) as usize * 8;
                    value[slot..slot + 8].copy_from_slice(&conv.to_be_bytes());
                }
                table.insert(&key[..], &value[..]).map_err(failed)?;
            }
            let mut keys: Vec<(Vec<u8>, MessageId)> = self
                .keys
                .iter()
                .map(|((sender, conv, client_id), id)| {
                    (idempotency_key(*sender, *conv, client_id), *id)
                })
                .collect();
            keys.sort_unstable();
            for (key, id) in keys {
                table
                    .insert(&key[..], &id.to_be_bytes()[..])
                    .map_err(failed)?;
            }
            let mut attachments: Vec<(AttachmentId, MessageId)> =
                self.attachments.iter().map(|(a, m)| (*a, *m)).collect();
            attachments.sort_unstable();
            for (attachment, message) in attachments {
                table
                    .insert(
                        &id_key(ATTACHMENT, attachment)[..],
                        &message.to_be_bytes()[..],
                    )
                    .map_err(failed)?;
            }
            Ok(())
        })
    }

    pub(super) fn note_attachments(&mut self, m: &Message) {
        for a in &m.attachments {
            self.attachments.insert(a.id, m.id);
        }
    }

    /// Adds message `m`, new to this layer, with its places in the
    /// layer's indexes.
    pub(super) fn insert(&mut self, m: Message) {
        self.by_conv.insert((m.conv_id, m.id));
        self.by_seq.insert((m.conv_id, m.seq), m.id);
        self.messages.insert(m.id, m);
    }

    /// The layer [`Layer::to_record`] made.
    pub fn from_record(bytes: &[u8]) -> Result<Layer, codec::CodecError> {
        let record: LayerRecord = codec::decode(bytes)?;
        let mut layer = Layer::default();
        for m in record.messages {
            layer.note_attachments(&m);
            layer.insert(m);
        }
        for (sender, conv, client_id, id) in record.keys {
            layer.keys.insert((sender, conv, client_id), id);
        }
        Ok(layer)
    }
}

#[derive(serde::Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct LayerRecord {
    messages: Vec<Message>,
    keys: Vec<(UserId, ConvId, String, MessageId)>,
}

/// [`LayerRecord`] borrowing the layer: the same fields in the same
/// order, so the same bytes.
#[derive(serde::Serialize)]
struct LayerRecordRef<'a> {
    messages: Vec<&'a Message>,
    keys: Vec<(UserId, ConvId, &'a str, MessageId)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_borrowed_record_is_the_owned_ones_bytes_and_reads_back() {
        let mut layer = Layer::default();
        for id in 1..=5u64 {
            let m = Message {
                id,
                conv_id: 10 + id % 2,
                seq: id,
                sender: 1,
                content: format!("m{id} \u{e9}"),
                message_type: "text".into(),
                reply_to: (id > 1).then_some(id - 1),
                forwarded_from: None,
                client_id: Some(format!("c{id}")),
                created_at: 1_000 + id as i64,
                edited_at: None,
                is_deleted: id == 3,
                reactions: Vec::new(),
                attachments: Vec::new(),
            };
            layer.keys.insert((1, m.conv_id, format!("c{id}")), id);
            layer.insert(m);
        }
        let owned = LayerRecord {
            messages: layer.messages.values().cloned().collect(),
            keys: layer
                .keys
                .iter()
                .map(|((s, c, k), id)| (*s, *c, k.clone(), *id))
                .collect(),
        };
        let bytes = layer.to_record().unwrap();
        assert_eq!(bytes, codec::encode(&owned).unwrap());
        let back = Layer::from_record(&bytes).unwrap();
        assert_eq!(back.messages, layer.messages);
        assert_eq!(back.by_conv, layer.by_conv);
        assert_eq!(back.by_seq, layer.by_seq);
        assert_eq!(back.keys.len(), 5);
        assert_eq!(back.keys.get(&(1, 11, "c3".to_string())), Some(&3));
    }
}
