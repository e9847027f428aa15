//! A layer of the history: what changed in one stretch of events (the
//! active layer, or a frozen one a snapshot writes), and how a snapshot
//! commits it and writes it as records.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use crate::codec;
use crate::event::{AttachmentId, ConvId, MessageId, Seq, UserId};

use super::super::model::Message;
use super::keys::*;
use redb::ReadableTable;

use super::Records;
use super::{HistoryError, IdempotencyKey};
use crate::table_file::Table;

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

    /// The layer encoded once, for both what a snapshot writes: the layer
    /// as one value, its record ([`EncodedLayer::record`]), which the
    /// snapshot commits in its file, and its messages' records
    /// ([`EncodedLayer::write_records`]).
    ///
    /// A message is encoded where it is, not cloned first (a copy of the
    /// whole layer was a fifth of the snapshot thread's CPU at 16,000
    /// msg/s, BENCHMARKS.md, "Where the two cores go at 16,000 msg/s"),
    /// and only once: its MessagePack is at once an element of the
    /// record's message array and the payload of its own record. Encoded
    /// twice, they were 28 % of the snapshot thread's samples (`perf`,
    /// 8,000 msg/s); encoded once, a snapshot of 50,000 messages takes
    /// 260 ms of CPU instead of 310 on tmpfs and 312 instead of 376 on
    /// disk (medians of 9, `cpu_ms` in its `snapshot written` line;
    /// BENCHMARKS.md, "A snapshot's CPU").
    pub fn encode(&self) -> Result<EncodedLayer<'_>, codec::CodecError> {
        let failed = |e: &dyn std::fmt::Display| codec::CodecError::Encode(e.to_string());
        // The record is the codec's frame around the MessagePack of
        // `LayerRecord` (a struct is an array of its fields).
        let mut record = codec::frame_start();
        rmp::encode::write_array_len(&mut record, 2).map_err(|e| failed(&e))?;
        rmp::encode::write_array_len(&mut record, self.messages.len() as u32)
            .map_err(|e| failed(&e))?;
        let mut messages = Vec::with_capacity(self.messages.len());
        for m in self.messages.values() {
            let start = record.len();
            rmp_serde::encode::write(&mut record, m).map_err(|e| failed(&e))?;
            messages.push((m.conv_id, m.id, start..record.len()));
        }
        let keys: Vec<(UserId, ConvId, &str, MessageId)> = self
            .keys
            .iter()
            .map(|((sender, conv, client_id), id)| (*sender, *conv, client_id.as_str(), *id))
            .collect();
        rmp_serde::encode::write(&mut record, &keys).map_err(|e| failed(&e))?;
        codec::frame_finish(&mut record);
        Ok(EncodedLayer {
            layer: self,
            record,
            messages,
        })
    }

    /// Writes the layer's records into `records`
    /// ([`EncodedLayer::write_records`]).
    pub fn write_records(&self, records: &Records) -> Result<(), HistoryError> {
        self.encode()?.write_records(records)
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

    /// The layer whose [`EncodedLayer::record`] `bytes` are.
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

/// A layer encoded once ([`Layer::encode`]).
pub struct EncodedLayer<'a> {
    /// The layer encoded (its keys and attachments are written from it).
    layer: &'a Layer,
    /// The layer's record: the codec's frame around a [`LayerRecord`].
    record: Vec<u8>,
    /// Each message's conversation, id and MessagePack (where it is in
    /// `record`), in id order.
    messages: Vec<(ConvId, MessageId, Range<usize>)>,
}

impl EncodedLayer<'_> {
    /// The layer as one value, what a snapshot commits in its file
    /// beside its state ([`Layer::from_record`] reads it back). (It was a
    /// value in one small sled batch before the files: a sled batch holds
    /// a process-wide lock that stops every other read and write of sled
    /// while it is applied, and 50,000 messages as records held it for
    /// 2-3 s.)
    pub fn record(&self) -> &[u8] {
        &self.record
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
        records.write(true, |table| self.insert_records(records, table))
    }

    /// Writes the layer's records ([`EncodedLayer::write_records`]) and,
    /// in the same durable transaction, `value` under `key` in the side
    /// table ([`super::records::STATE_TABLE`]): a snapshot's commit, which
    /// names its state's file. The records and the commit become durable
    /// at once.
    pub fn commit_with(
        &self,
        records: &Records,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), HistoryError> {
        records.write_both(true, |table, side| {
            self.insert_records(records, table)?;
            side.insert(key, value).map_err(|e| records.error(e))?;
            Ok(())
        })
    }

    /// The layer's records, inserted into `table` in the order
    /// [`EncodedLayer::write_records`] gives.
    fn insert_records(&self, records: &Records, table: &mut Table<'_>) -> Result<(), HistoryError> {
        let failed = |e: redb::StorageError| records.error(e);
        let mut by_conv: Vec<&(ConvId, MessageId, Range<usize>)> = self.messages.iter().collect();
        by_conv.sort_unstable_by_key(|(conv, id, _)| (*conv, *id));
        let mut value = Vec::new();
        for (conv, id, payload) in by_conv {
            value.clear();
            codec::frame(&mut value, &self.record[payload.clone()]);
            table
                .insert(&message_key(*conv, *id)[..], &value[..])
                .map_err(failed)?;
        }
        // `self.messages` is in id order.
        let ids = &self.messages;
        for block in ids.chunk_by(|a, b| a.1 / OWNERS_PER_BLOCK == b.1 / OWNERS_PER_BLOCK) {
            let key = id_key(OWNER_BLOCK, block[0].1 / OWNERS_PER_BLOCK);
            let mut value = table
                .get(&key[..])
                .map_err(failed)?
                .map(|v| v.value().to_vec())
                .unwrap_or_default();
            value.resize(OWNERS_PER_BLOCK as usize * 8, 0);
            for (conv, id, _) in block {
                let slot = (id % OWNERS_PER_BLOCK) as usize * 8;
                value[slot..slot + 8].copy_from_slice(&conv.to_be_bytes());
            }
            table.insert(&key[..], &value[..]).map_err(failed)?;
        }
        let mut keys: Vec<(Vec<u8>, MessageId)> = self
            .layer
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
        let mut attachments: Vec<(AttachmentId, MessageId)> = self
            .layer
            .attachments
            .iter()
            .map(|(a, m)| (*a, *m))
            .collect();
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layer of `n` messages in two conversations, each with a key.
    fn layer_of(n: u64) -> Layer {
        let mut layer = Layer::default();
        for id in 1..=n {
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
        layer
    }

    /// The record assembled from the messages' encodings is the bytes of
    /// the owned record encoded whole (5 and 20 messages: MessagePack's
    /// short and 16-bit array lengths), and reads back.
    #[test]
    fn the_assembled_record_is_the_owned_ones_bytes_and_reads_back() {
        for n in [5, 20] {
            let layer = layer_of(n);
            let owned = LayerRecord {
                messages: layer.messages.values().cloned().collect(),
                keys: layer
                    .keys
                    .iter()
                    .map(|((s, c, k), id)| (*s, *c, k.clone(), *id))
                    .collect(),
            };
            let bytes = layer.encode().unwrap().record().to_vec();
            assert_eq!(bytes, codec::encode(&owned).unwrap(), "{n} messages");
            let back = Layer::from_record(&bytes).unwrap();
            assert_eq!(back.messages, layer.messages);
            assert_eq!(back.by_conv, layer.by_conv);
            assert_eq!(back.by_seq, layer.by_seq);
            assert_eq!(back.keys.len(), n as usize);
            assert_eq!(back.keys.get(&(1, 11, "c3".to_string())), Some(&3));
        }
    }

    /// Each message's record is what `codec::encode` gives for it: the
    /// records written from the layer's one encoding read as before.
    #[test]
    fn a_message_record_is_its_own_encoding() {
        let layer = layer_of(20);
        let encoded = layer.encode().unwrap();
        assert_eq!(encoded.messages.len(), 20);
        for (conv, id, payload) in &encoded.messages {
            let m = &layer.messages[id];
            assert_eq!(m.conv_id, *conv);
            let mut value = Vec::new();
            codec::frame(&mut value, &encoded.record[payload.clone()]);
            assert_eq!(value, codec::encode(m).unwrap(), "message {id}");
        }
    }
}
