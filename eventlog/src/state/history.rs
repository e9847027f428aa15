//! Message history (issue 12): every message (its current state after
//! edits, deletes, reactions and attachments) and every idempotency key
//! lives on disk, in the sled tree `history` beside the log; RAM holds only
//! what changed since the last snapshot.
//!
//! Three layers, newest first:
//! * `active`: what `apply` changed since the last freeze (the writer's);
//! * `frozen`: the previous `active`, being written to the tree by a
//!   snapshot (read-only, shared with the snapshot thread);
//! * the tree: everything up to the last snapshot.
//!
//! A snapshot commits the frozen layer *and* the encoded small state
//! (users, conversations, counters) at once (`crate::snapshot`), so the
//! tree always equals the state at the snapshot's offset: after a crash the store loads that
//! state and replays the log's tail into a fresh `active` layer; nothing
//! is applied twice, nothing is missing. Without a tree (a `State` built in
//! a test, a full replay for `verify`) everything stays in `active`.
//!
//! Keys (ids big-endian, so that sled's order is numeric order):
//! * `m` conv id → message (codec-encoded);
//! * `X` block → the conversations of the 64 messages `block * 64 ..`
//!   (8 bytes each, big-endian, 0 where none): find a message by id alone.
//!   One record per 64 messages, not per message: the snapshot's record
//!   writing is what bounds the write rate (BENCHMARKS.md, #12);
//! * `i` sender conv client_id → id: idempotency keys, for ever;
//! * `a` attachment id → message id: a download finds its message.
//!
//! Read, never written any more (data directories of earlier versions):
//! `x` id → conv, and `q` conv seq → id (seq cursors now bisect a
//! conversation's `m` keys: its ids and seqs grow together).
//!
//! The snapshot's state is a file of its own (`crate::snapshot::file`),
//! committed by a value of a second table in the records' file
//! ([`records::STATE_TABLE`]), in the transaction that writes the
//! snapshot's records. Earlier layouts, read once and replaced by the
//! next snapshot, kept the state and the layer in the file, committed in
//! the sled tree [`SNAPSHOT_TREE`], and before that the state (`s`) and
//! the pending layer (`p`) as values: first among the
//! records (sled rewrites a leaf whole whenever a key lands beside it:
//! every snapshot rewrote a 12 MB leaf per record, 60 GB of sled blobs in
//! a minute of the store benchmark), then in the snapshot tree (whose
//! commit held sled's process-wide batch lock while it wrote them).

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use crate::codec;
use crate::event::{AttachmentId, ConvId, MessageId, Seq, UserId};

use super::model::Message;

mod keys;
mod layer;
mod probe;
#[cfg(test)]
mod tests;

pub use crate::table_file::{TableFile as Records, TableFileError as RecordsError};
use keys::*;
pub use layer::{EncodedLayer, Layer};
use probe::KeyHints;
pub use probe::KeyProbe;

/// The history's records' file in the data directory, and its table.
pub mod records {
    pub const FILE: &str = "history.redb";
    pub const TABLE: &str = "history";
    /// The snapshot's commit, in the same file: the generation of the
    /// file that holds the state at the snapshot's offset
    /// (`crate::snapshot::file`), written in the transaction that writes
    /// the snapshot's records ([`super::EncodedLayer::commit_with`]).
    pub const STATE_TABLE: &str = "snapshot";
}

/// The sled tree the history's records lived in before they moved to
/// their own file ([`records::FILE`]); migrated on open.
pub const TREE: &str = "history";
/// The sled tree that says the snapshot is committed in [`records::FILE`]
/// (so that an open refuses a missing file rather than replay the whole
/// log into a new one). In the layouts before, the snapshot's commit:
/// which snapshot file is the latest, and whether its layer's records
/// are written.
pub const SNAPSHOT_TREE: &str = "history-snapshot";

/// In [`SNAPSHOT_TREE`], before the snapshot files: the state of the
/// snapshot (read once, then replaced by a file).
pub const STATE: &[u8] = b"s";
/// In [`SNAPSHOT_TREE`], before the snapshot files: the layer a snapshot
/// committed and had not finished writing as records.
pub const PENDING_LAYER: &[u8] = b"p";

/// The trees of a history on disk, and the directory of its snapshot
/// files.
#[derive(Clone)]
pub struct Trees {
    /// [`records::FILE`]: messages, indexes, idempotency keys.
    pub records: Records,
    /// [`SNAPSHOT_TREE`]: the snapshot's commit.
    pub snapshot: sled::Tree,
    /// The snapshot files (`crate::snapshot::file`).
    pub files: std::path::PathBuf,
}

impl Trees {
    /// The snapshot tree in `db`; the records' file (its read cache
    /// `cache_bytes`) and the snapshot files in `dir` (the data
    /// directory). Records still in sled's [`TREE`] (the layout before)
    /// move to the file first.
    pub fn open(
        db: &sled::Db,
        dir: &std::path::Path,
        cache_bytes: u64,
    ) -> Result<Trees, HistoryError> {
        let path = dir.join(records::FILE);
        let snapshot = db.open_tree(SNAPSHOT_TREE)?;
        let migrating = db.tree_names().iter().any(|n| n == TREE.as_bytes());
        if !snapshot.is_empty() && !migrating && !path.exists() {
            // A snapshot's commit whose records are gone (the file
            // removed by hand, or a rebuild killed half-way): opening on
            // an empty file would lose the history without a word.
            return Err(RecordsError {
                path,
                source: redb::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "missing, and the latest snapshot's records were in it",
                )),
            }
            .into());
        }
        let records = Records::open(&path, records::TABLE, cache_bytes)?
            .with_side_table(records::STATE_TABLE);
        records.migrate_from(db, TREE, &[]).map_err(|e| match e {
            crate::table_file::MigrateError::Sled(e) => HistoryError::Sled(e),
            crate::table_file::MigrateError::File(e) => HistoryError::Records(e),
        })?;
        Ok(Trees {
            records,
            snapshot,
            files: dir.join(crate::snapshot::file::DIR),
        })
    }

    /// Empties both (a full replay follows).
    pub fn clear(&self) -> Result<(), HistoryError> {
        self.snapshot.clear()?;
        Ok(self.records.clear()?)
    }
}

type IdempotencyKey = (UserId, ConvId, String);

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error(transparent)]
    Sled(#[from] sled::Error),
    #[error(transparent)]
    Codec(#[from] codec::CodecError),
    #[error(transparent)]
    Records(#[from] RecordsError),
}

#[derive(Clone, Default)]
pub struct History {
    tree: Option<Records>,
    /// The snapshot tree and files (`Trees::snapshot`, `Trees::files`).
    snapshot: Option<(sled::Tree, std::path::PathBuf)>,
    active: Layer,
    frozen: Option<Arc<Layer>>,
    /// Keys found absent from the tree before their command was decided.
    hints: KeyHints,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("on_disk", &self.tree.is_some())
            .field("active", &self.active.messages.len())
            .field("frozen", &self.frozen.as_ref().map(|l| l.messages.len()))
            .finish()
    }
}

/// Equal when they hold the same messages and idempotency keys, wherever
/// they are kept (what `verify` and the replay tests compare).
impl PartialEq for History {
    fn eq(&self, other: &History) -> bool {
        self.all_messages() == other.all_messages() && self.all_keys() == other.all_keys()
    }
}

impl History {
    /// Keeps the history in `tree` from now on (its content must be the
    /// state's, as [`super::State`]'s loader ensures).
    pub fn attach(&mut self, trees: Trees) {
        self.tree = Some(trees.records);
        self.snapshot = Some((trees.snapshot, trees.files));
    }

    /// What `Store::enqueue` reads idempotency keys in the tree with,
    /// ahead of the writer; `None` when the history is all in RAM.
    pub fn probe(&self) -> Option<KeyProbe> {
        Some(KeyProbe {
            tree: self.tree.clone()?,
            hints: self.hints.clone(),
        })
    }

    /// The trees the history is kept in; `None` when it is all in RAM.
    pub fn trees(&self) -> Option<Trees> {
        let (snapshot, files) = self.snapshot.clone()?;
        Some(Trees {
            records: self.tree.clone()?,
            snapshot,
            files,
        })
    }

    /// What changed since the last freeze (with no trees: the whole
    /// history).
    #[cfg(feature = "testing")]
    pub fn active_layer(&self) -> &Layer {
        &self.active
    }

    // ---- reads ---------------------------------------------------------

    pub fn get(&self, id: MessageId) -> Option<Message> {
        if let Some(m) = self.in_layers(id) {
            return Some(m.clone());
        }
        let tree = self.tree.as_ref()?;
        self.in_tree(owner(tree, id)?, id)
    }

    /// Message `id` if it belongs to `conv`: one look-up on disk.
    pub fn get_in(&self, conv: ConvId, id: MessageId) -> Option<Message> {
        if let Some(m) = self.in_layers(id) {
            return (m.conv_id == conv).then(|| m.clone());
        }
        self.in_tree(conv, id)
    }

    fn in_layers(&self, id: MessageId) -> Option<&Message> {
        self.active
            .messages
            .get(&id)
            .or_else(|| self.frozen.as_ref()?.messages.get(&id))
    }

    fn in_tree(&self, conv: ConvId, id: MessageId) -> Option<Message> {
        let tree = self.tree.as_ref()?;
        let bytes = read(tree, &message_key(conv, id))?;
        decode(&bytes)
    }

    /// The message attachment `id` belongs to.
    pub fn attachment_message(&self, id: AttachmentId) -> Option<MessageId> {
        if let Some(m) = self.active.attachments.get(&id) {
            return Some(*m);
        }
        if let Some(m) = self.frozen.as_ref().and_then(|l| l.attachments.get(&id)) {
            return Some(*m);
        }
        let tree = self.tree.as_ref()?;
        read(tree, &id_key(ATTACHMENT, id)).map(|v| be_u64(&v))
    }

    /// Records that attachment `id` belongs to `message` (its apply).
    pub fn insert_attachment(&mut self, id: AttachmentId, message: MessageId) {
        self.active.attachments.insert(id, message);
    }

    pub fn key(&self, sender: UserId, conv: ConvId, client_id: &str) -> Option<MessageId> {
        let key = (sender, conv, client_id.to_string());
        if let Some(id) = self.active.keys.get(&key) {
            return Some(*id);
        }
        if let Some(id) = self.frozen.as_ref().and_then(|l| l.keys.get(&key)) {
            return Some(*id);
        }
        let tree = self.tree.as_ref()?;
        let on_disk = idempotency_key(sender, conv, client_id);
        if self.hints.known_absent(&on_disk) {
            return None;
        }
        read(tree, &on_disk).map(|v| be_u64(&v))
    }

    /// The ids of `conv`'s messages within `ids`, oldest first, or newest
    /// first when `newest_first`.
    pub fn ids(
        &self,
        conv: ConvId,
        ids: Range<MessageId>,
        newest_first: bool,
    ) -> impl Iterator<Item = MessageId> + '_ {
        let layer = |layer: &Layer| -> Vec<MessageId> {
            // Layers are small (what changed since the last snapshot), but
            // a range of one conversation is smaller still.
            let range = layer
                .by_conv
                .range((conv, ids.start)..(conv, ids.end.max(ids.start)));
            if newest_first {
                range.rev().map(|(_, id)| *id).collect()
            } else {
                range.map(|(_, id)| *id).collect()
            }
        };
        let mut sources: Vec<Box<dyn Iterator<Item = MessageId> + '_>> = vec![
            Box::new(layer(&self.active).into_iter()),
            Box::new(
                self.frozen
                    .as_deref()
                    .map(layer)
                    .unwrap_or_default()
                    .into_iter(),
            ),
        ];
        if let Some(tree) = &self.tree {
            let range = message_key(conv, ids.start)..message_key(conv, ids.end.max(ids.start));
            match tree.range(&range.start[..]..&range.end[..]) {
                Ok(keys) => {
                    let id_of = |item: Result<(Vec<u8>, Vec<u8>), redb::StorageError>| match item {
                        Ok((key, _)) => Some(be_u64(&key[9..])),
                        Err(e) => {
                            unreadable(tree, e);
                            None
                        }
                    };
                    if newest_first {
                        sources.push(Box::new(keys.rev().map_while(id_of)));
                    } else {
                        sources.push(Box::new(keys.map_while(id_of)));
                    }
                }
                Err(e) => unreadable(tree, e),
            }
        }
        Merge::new(sources, newest_first)
    }

    /// `conv`'s messages within `ids`, in the order of [`History::ids`].
    pub fn messages(
        &self,
        conv: ConvId,
        ids: Range<MessageId>,
        newest_first: bool,
    ) -> impl Iterator<Item = Message> + '_ {
        self.ids(conv, ids, newest_first)
            .filter_map(move |id| self.get_in(conv, id))
    }

    /// The first message of `conv` posted with a seq ≥ `seq`.
    pub fn first_at_seq(&self, conv: ConvId, seq: Seq) -> Option<MessageId> {
        let layer = |l: &Layer| {
            l.by_seq
                .range((conv, seq)..=(conv, Seq::MAX))
                .next()
                .map(|(_, id)| *id)
        };
        let tree = self
            .tree
            .as_ref()
            .and_then(|tree| first_at_seq_in(tree, conv, seq));
        [
            layer(&self.active),
            self.frozen.as_deref().and_then(layer),
            tree,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Every message, by id (tests, `verify`: not for a large history).
    pub fn all_messages(&self) -> BTreeMap<MessageId, Message> {
        let mut all = BTreeMap::new();
        if let Some(tree) = &self.tree {
            for item in tree.with_tag(MESSAGE).into_iter().flatten() {
                let Ok((_, bytes)) = item else { continue };
                if let Some(m) = decode(&bytes) {
                    all.insert(m.id, m);
                }
            }
        }
        for layer in self.frozen.as_deref().into_iter().chain([&self.active]) {
            for (id, m) in &layer.messages {
                all.insert(*id, m.clone());
            }
        }
        all
    }

    /// Every idempotency key (tests, `verify`).
    pub fn all_keys(&self) -> BTreeMap<IdempotencyKey, MessageId> {
        let mut all = BTreeMap::new();
        if let Some(tree) = &self.tree {
            for item in tree.with_tag(KEY).into_iter().flatten() {
                let Ok((key, id)) = item else { continue };
                if key.len() < 17 {
                    continue;
                }
                let client_id = String::from_utf8_lossy(&key[17..]).into_owned();
                all.insert(
                    (be_u64(&key[1..9]), be_u64(&key[9..17]), client_id),
                    be_u64(&id),
                );
            }
        }
        for layer in self.frozen.as_deref().into_iter().chain([&self.active]) {
            for (key, id) in &layer.keys {
                all.insert(key.clone(), *id);
            }
        }
        all
    }

    /// The same history wholly in RAM, tied to no tree: a copy that
    /// outlives the store (tests; `verify`).
    pub fn detached(&self) -> History {
        let mut active = Layer::default();
        for (id, m) in self.all_messages() {
            active.by_conv.insert((m.conv_id, id));
            active.by_seq.insert((m.conv_id, m.seq), id);
            active.note_attachments(&m);
            active.messages.insert(id, m);
        }
        active.keys = self.all_keys().into_iter().collect();
        History {
            tree: None,
            snapshot: None,
            active,
            frozen: None,
            hints: KeyHints::default(),
        }
    }

    // ---- writes (apply only) -------------------------------------------

    pub fn insert(&mut self, message: Message) {
        self.active.insert(message);
    }

    pub fn insert_key(&mut self, sender: UserId, conv: ConvId, client_id: &str, id: MessageId) {
        self.active
            .keys
            .insert((sender, conv, client_id.to_string()), id);
    }

    /// Changes message `id` in the active layer (copying it there first);
    /// `None` when there is no such message.
    pub fn update<R>(
        &mut self,
        id: MessageId,
        change: impl FnOnce(&mut Message) -> R,
    ) -> Option<R> {
        if !self.active.messages.contains_key(&id) {
            let message = self.get(id)?;
            self.active.by_conv.insert((message.conv_id, id));
            self.active.messages.insert(id, message);
        }
        self.active.messages.get_mut(&id).map(change)
    }

    // ---- snapshots -----------------------------------------------------

    /// Moves the active layer to `frozen` for a snapshot to write, and
    /// returns it; `None` without a tree (nothing is ever written then) or
    /// while an earlier frozen layer is not written yet.
    pub fn freeze(&mut self) -> Option<Arc<Layer>> {
        self.tree.as_ref()?;
        if self.frozen.is_some() {
            return None;
        }
        let layer = Arc::new(std::mem::take(&mut self.active));
        self.frozen = Some(layer.clone());
        Some(layer)
    }

    /// The frozen layer is in the tree now: reads find it there.
    pub fn thaw(&mut self) {
        self.frozen = None;
        self.hints.thawed();
    }

    /// The frozen layer could not be written: it goes back under the
    /// active one (whose entries are newer), for the next snapshot.
    pub fn unfreeze(&mut self) {
        let Some(frozen) = self.frozen.take() else {
            return;
        };
        let frozen = Arc::try_unwrap(frozen).unwrap_or_else(|shared| (*shared).clone());
        for (id, m) in frozen.messages {
            if let std::collections::btree_map::Entry::Vacant(slot) = self.active.messages.entry(id)
            {
                self.active.by_conv.insert((m.conv_id, id));
                slot.insert(m);
            }
        }
        self.active.by_seq.extend(frozen.by_seq);
        for (attachment, message) in frozen.attachments {
            self.active.attachments.entry(attachment).or_insert(message);
        }
        for (key, id) in frozen.keys {
            self.active.keys.entry(key).or_insert(id);
        }
    }
}
