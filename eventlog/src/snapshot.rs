//! Snapshots, so that a restart replays only the log's tail (issue 12).
//!
//! A snapshot lives in sled beside the log: the history's records in the
//! tree [`TREE`], the snapshot's own values in [`SNAPSHOT_TREE`]. It
//! commits the history changed since the previous one (messages,
//! idempotency keys) as one value, and the encoded small state (users,
//! conversations, counters), in *one* small sled batch of the snapshot
//! tree, and flushes: the commit point. Then it writes that layer's
//! records a leaf at a time into the records tree and drops the committed
//! value. A crash after the commit point leaves the value: the next open
//! writes its records again (they are final values, so writing twice is
//! writing once) before anything reads the tree. So the tree always
//! holds the history and the state of one and the same offset.
//!
//! Unlike the single-file snapshot of earlier versions (`snapshot.bin`,
//! read no more: a directory that has one is migrated by a full replay on
//! first open), this one is not a cache that can be dropped: the history
//! lives only here and in the log. A damaged tree is refused with an error
//! naming it; `vato-admin rebuild` makes it again from the log.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::codec;
use crate::log::{Log, LogError};
use crate::state::history::{Layer, PENDING_LAYER, STATE};
use crate::state::State;

pub use crate::state::history::{Trees, SNAPSHOT_TREE, STATE as STATE_KEY, TREE};

/// The snapshot file of versions before issue 12.
pub const LEGACY_FILE: &str = "snapshot.bin";

pub fn legacy_path(dir: &Path) -> PathBuf {
    dir.join(LEGACY_FILE)
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("the history tree `{SNAPSHOT_TREE}` is damaged ({0}); run `vato-admin rebuild` to make it again from the log")]
    Damaged(String),
    #[error(transparent)]
    Log(#[from] LogError),
}

/// A snapshot taken (the writer's short part) and not yet written.
pub struct Pending {
    trees: Trees,
    layer: Arc<Layer>,
    /// The state at the snapshot's offset, its history left out. Its
    /// collections share their nodes with the live state's (they are
    /// persistent B-trees), so taking it cost the writer microseconds; the
    /// writer's next changes copy the nodes they touch.
    state: State,
}

/// Freezes the history changed since the last snapshot and copies the
/// rest of the state: what the writer does, briefly, under its lock.
/// Encoding that copy (25-70 ms with 20,000 users when it was done here,
/// BENCHMARKS.md) is the snapshot thread's work, in [`Pending::write`].
/// `None` when the state has no tree or a snapshot is still being written.
pub fn take(state: &mut State) -> Option<Pending> {
    let trees = state.history.trees()?;
    let layer = state.history.freeze()?;
    Some(Pending {
        trees,
        layer,
        state: copy_without_history(state),
    })
}

/// Everything but the history, for the snapshot thread to encode. The
/// state's collections are persistent B-trees (imbl): this costs a
/// reference count per collection, whatever the state's size.
fn copy_without_history(state: &mut State) -> State {
    let history = std::mem::take(&mut state.history);
    let copy = state.clone();
    state.history = history;
    copy
}

impl Pending {
    /// Encodes the state, writes the snapshot in one batch and makes it
    /// durable. Then the caller thaws the state's history ([`finish`]),
    /// or unfreezes it on an error.
    pub fn write(&self) -> Result<(), LogError> {
        let started = std::time::Instant::now();
        let state = codec::encode(&self.state)
            .map_err(|e| LogError::Layout(format!("unencodable state: {e}")))?;
        let encoded = started.elapsed();
        let state_bytes = state.len();
        let layer = self
            .layer
            .to_record()
            .map_err(|e| LogError::Layout(format!("unencodable history: {e}")))?;
        let mut commit = sled::Batch::default();
        commit.insert(STATE, state);
        commit.insert(PENDING_LAYER, layer);
        self.trees.snapshot.apply_batch(commit)?;
        self.trees.snapshot.flush()?;
        let committed = started.elapsed();
        finish_layer(&self.trees, &self.layer)?;
        drop_from_cache(&self.trees);
        tracing::info!(
            messages = self.layer.len(),
            state_bytes,
            encode_ms = encoded.as_millis() as u64,
            commit_ms = committed.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "snapshot written"
        );
        Ok(())
    }
}

/// The encoded state is megabytes (29 MB with 20,000 users), read once at
/// start and written once a snapshot: sled's page cache would keep it in
/// RAM until its LRU reached it, a tenth of the process at 10M messages
/// (BENCHMARKS.md, #12). Dropped from the cache once read or written; a
/// failure only leaves it cached.
fn drop_from_cache(trees: &Trees) {
    if let Err(e) = trees.snapshot.page_out_leaf_of(STATE) {
        tracing::warn!("could not drop the snapshot's state from the cache: {e}");
    }
}

/// Writes a committed layer's records, then drops the committed value.
fn finish_layer(trees: &Trees, layer: &Layer) -> Result<(), LogError> {
    layer.write_records(&trees.records).map_err(|e| match e {
        crate::state::history::HistoryError::Sled(e) => LogError::Sled(e),
        crate::state::history::HistoryError::Codec(e) => {
            LogError::Layout(format!("unencodable message: {e}"))
        }
    })?;
    trees.snapshot.remove(PENDING_LAYER)?;
    Ok(())
}

/// After [`Pending::write`]: on success the frozen history is dropped from
/// RAM (reads find it in the tree); on failure it stays for the next one.
pub fn finish(state: &mut State, written: &Result<(), LogError>) {
    match written {
        Ok(()) => state.history.thaw(),
        Err(e) => {
            tracing::warn!("snapshot failed: {e}");
            state.history.unfreeze();
        }
    }
}

/// Takes and writes a snapshot now (replay, clean close).
pub fn write_now(state: &mut State) -> Result<(), LogError> {
    let Some(pending) = take(state) else {
        return Ok(());
    };
    let written = pending.write();
    finish(state, &written);
    written
}

/// The state the snapshot tree holds, with the trees attached; `None`
/// when it holds none (a new directory, or one from before issue 12).
pub fn load(trees: &Trees) -> Result<Option<State>, SnapshotError> {
    move_from_records(trees)?;
    let Some(bytes) = trees.snapshot.get(STATE).map_err(LogError::from)? else {
        return Ok(None);
    };
    let mut state: State =
        codec::decode(&bytes).map_err(|e| SnapshotError::Damaged(e.to_string()))?;
    // Our handle on the cached value: released before the leaf leaves the
    // cache (`drop_from_cache` below), or the value would stay alive.
    drop(bytes);
    // A snapshot committed but not finished (the process died while it
    // wrote its records): finish it before anything reads the tree.
    if let Some(pending) = trees.snapshot.get(PENDING_LAYER).map_err(LogError::from)? {
        let layer = Layer::from_record(&pending)
            .map_err(|e| SnapshotError::Damaged(format!("pending layer: {e}")))?;
        finish_layer(trees, &layer)?;
        trees.snapshot.flush().map_err(LogError::from)?;
        tracing::info!(
            messages = layer.len(),
            "finished the last snapshot's records"
        );
    }
    // Indexes derived from `users` are not stored, nor the revoked tokens'
    // expiry index: rebuilt here.
    state.rebuild_user_indexes();
    state.rebuild_token_index();
    state.rebuild_ringing_index();
    drop_from_cache(trees);
    state.history.attach(trees.clone());
    Ok(Some(state))
}

/// The first layout of issue 12 kept the state and the pending layer
/// among the records: they move to the snapshot tree (one batch there,
/// flushed, before they go from the records; a crash in between leaves
/// both copies, equal, and the move is done again).
fn move_from_records(trees: &Trees) -> Result<(), LogError> {
    let Some(state) = trees.records.get(STATE)? else {
        return Ok(());
    };
    let pending = trees.records.get(PENDING_LAYER)?;
    let mut moved = sled::Batch::default();
    moved.insert(STATE, state);
    match pending {
        Some(pending) => moved.insert(PENDING_LAYER, pending),
        None => moved.remove(PENDING_LAYER),
    }
    trees.snapshot.apply_batch(moved)?;
    trees.snapshot.flush()?;
    trees.records.remove(PENDING_LAYER)?;
    trees.records.remove(STATE)?;
    trees.records.flush()?;
    tracing::info!("moved the snapshot to the `{SNAPSHOT_TREE}` tree");
    Ok(())
}

/// The offset the snapshot of the closed store in `dir` was taken at
/// (`None`: no snapshot). What tests check a clean stop by.
pub fn stored_offset(dir: &Path) -> Result<Option<u64>, SnapshotError> {
    let log = Log::open(dir)?;
    let trees = Trees::open(log.sled()).map_err(LogError::from)?;
    Ok(load(&trees)?.map(|state| state.next_offset))
}

/// Test and admin hook: drops the snapshot and history of the closed store
/// in `dir`, so that its next open replays (and projects) the whole log.
pub fn discard(dir: &Path) -> Result<(), LogError> {
    let log = Log::open(dir)?;
    log.sled().drop_tree(TREE)?;
    log.sled().drop_tree(SNAPSHOT_TREE)?;
    log.sync()?;
    let _ = std::fs::remove_file(legacy_path(dir));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;
    use crate::state::testing::three_in_a_group;

    fn post(state: &mut State, sender: u64, content: &str) {
        let command = Command::PostMessage {
            sender,
            conv_id: 1,
            content: content.into(),
            message_type: "text".into(),
            reply_to: None,
            forwarded_from: None,
            client_id: Some(content.into()),
            at: 0,
        };
        state.execute(&command, &mut Vec::new()).expect("post");
    }

    /// The writer goes on changing the state while the snapshot thread
    /// encodes its copy: what is written is the state at the snapshot's
    /// offset, none of the later changes.
    #[test]
    fn a_snapshot_holds_the_state_it_was_taken_at() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let trees = Trees::open(&db).unwrap();
        let mut state = three_in_a_group();
        state.history.attach(trees.clone());
        post(&mut state, 1, "before");
        let at_take = state.clone();

        let pending = take(&mut state).expect("a snapshot");
        // Later changes: a message, its read mark, a new user and group.
        post(&mut state, 2, "after");
        let read = Command::MarkRead {
            by: 3,
            conv_id: 1,
            message_id: 2,
            at: 1,
        };
        state.execute(&read, &mut Vec::new()).expect("read");
        let register = Command::Register {
            username: "dee".into(),
            password_hash: "x".into(),
            email: String::new(),
            display_name: String::new(),
            phone_number: None,
            at: 2,
        };
        state.execute(&register, &mut Vec::new()).expect("register");
        let written = pending.write();
        finish(&mut state, &written);
        written.unwrap();

        let loaded = load(&trees).unwrap().expect("a stored state");
        assert_eq!(loaded, at_take);
        assert_ne!(loaded.next_offset, state.next_offset);
        let unread = |s: &State| s.unread_count(s.conversation(1).unwrap(), 3);
        assert_eq!(unread(&loaded), 1);
        assert_eq!(unread(&state), 0);
        assert!(loaded.user_by_name("dee").is_none());
    }
}
