//! Snapshots, so that a restart replays only the log's tail (issue 12).
//!
//! A snapshot writes the encoded small state (users, conversations,
//! counters) in a file of its own ([`file`]), new for each snapshot,
//! written and synced; then, in one durable redb transaction of the
//! history's records' file (`history.redb`), the history changed since
//! the previous snapshot (messages, idempotency keys: one "layer") as
//! records, and the file's generation as the value [`FILE_KEY`] of a
//! second table ([`STATE_TABLE`](crate::state::history::records::STATE_TABLE)).
//! That transaction is the snapshot's commit: the records and the state
//! they belong to become durable at once, so a crash at any point leaves
//! the snapshot before or the one after, never records ahead of the
//! committed state or behind it. A file no commit names (a snapshot killed
//! before its commit, the one before the latest) is removed at the next
//! snapshot or load. The sled tree [`SNAPSHOT_TREE`] only says, once,
//! that the commit is in `history.redb`: an open then refuses a missing
//! `history.redb` instead of replaying the whole log into a new one.
//!
//! Until 2026-12-07 the file held the layer too, committed by a sled
//! batch, and the layer's records were written after that commit: each
//! message reached the disk twice (5.8 MB of file for 50,000 messages,
//! BENCHMARKS.md, "The commit in the records' transaction"). The records
//! could not go first: after a crash between them and the commit they
//! would be ahead of the committed state, and the replay of the log's
//! tail reads a message's previous state from the history as it applies
//! an event (a delete lowers the unread counts only for a message not
//! deleted yet; a reaction toggles); a test of that crash found an unread
//! count one too high ("Records before the file, tried and dropped"). The
//! state stays out of redb: as a 29 MB value (20,000 users) it doubled
//! what a snapshot wrote and its CPU (same section).
//!
//! A directory of the layouts before is read as it was (the file and its
//! sled commit, its layer's records written first if a crash left them
//! unwritten; before the files, the state as a value of a sled tree) and
//! the next snapshot replaces it. This is not a cache that can be dropped:
//! the history lives only here and in the log. A damaged file or commit
//! is refused with an error naming it; `vato-admin rebuild` makes them
//! again from the log.

mod before;
pub mod file;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::codec;
use crate::log::{Log, LogError};
use crate::state::history::{HistoryError, Layer, PENDING_LAYER, STATE};
use crate::state::State;
use before::{generation, load_file, load_inline, move_from_records};

pub use crate::state::history::{
    Trees, PENDING_LAYER as PENDING_LAYER_KEY, SNAPSHOT_TREE, STATE as STATE_KEY, TREE,
};

/// The snapshot file of versions before issue 12.
pub const LEGACY_FILE: &str = "snapshot.bin";

pub fn legacy_path(dir: &Path) -> PathBuf {
    dir.join(LEGACY_FILE)
}

/// In [`SNAPSHOT_TREE`]: the snapshot is in the records' file (its state
/// in [`STATE_TABLE`](crate::state::history::records::STATE_TABLE)). Written once, after the first snapshot
/// there, with the keys of the layouts before removed.
pub const IN_RECORDS_KEY: &[u8] = b"r";
/// In [`SNAPSHOT_TREE`], the layout with snapshot files: the generation
/// of the latest snapshot's file (u64, big-endian), its commit.
pub const FILE_KEY: &[u8] = b"f";
/// In [`SNAPSHOT_TREE`], the layout with snapshot files: the generation
/// whose layer's records are all written.
pub const LAYER_DONE_KEY: &[u8] = b"d";

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("the history tree `{SNAPSHOT_TREE}` is damaged ({0}); run `vato-admin rebuild` to make it again from the log")]
    Damaged(String),
    #[error("the snapshot file {path} is damaged ({reason}); run `vato-admin rebuild` to make it again from the log")]
    DamagedFile { path: PathBuf, reason: String },
    #[error("the snapshot's commit in {path} is damaged ({reason}); run `vato-admin rebuild` to make it again from the log")]
    DamagedCommit { path: PathBuf, reason: String },
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
    /// Encodes the state and the layer, writes the state's file, then
    /// commits: the layer's records and the file's generation in one
    /// durable transaction of the records' file. Then the caller thaws the
    /// state's history ([`finish`]), or unfreezes it on an error.
    pub fn write(&self) -> Result<(), LogError> {
        let started = std::time::Instant::now();
        let cpu_started = thread_cpu();
        let state = codec::encode(&self.state)
            .map_err(|e| LogError::Layout(format!("unencodable state: {e}")))?;
        let layer = self
            .layer
            .encode()
            .map_err(|e| LogError::Layout(format!("unencodable history: {e}")))?;
        let encoded = started.elapsed();
        // Past every generation either layout has committed: a new file.
        let generation = committed_generation(&self.trees)
            .map_err(|e| LogError::Layout(e.to_string()))?
            .max(generation(&self.trees.snapshot).map_err(|e| LogError::Layout(e.to_string()))?)
            .map_or(1, |g| g + 1);
        file::write(&self.trees.files, generation, &state, &[])?;
        let written = started.elapsed();
        let cpu_written = thread_cpu();
        layer
            .commit_with(&self.trees.records, FILE_KEY, &generation.to_be_bytes())
            .map_err(history_error)?;
        let committed = started.elapsed();
        let cpu_committed = thread_cpu();
        mark_in_records(&self.trees)?;
        file::remove_others(&self.trees.files, Some(generation));
        // sled's own snapshot of its page table, so that the next open
        // replays sled's log from here rather than from the previous open
        // (vendor/sled/VATO.md, the thirteenth change), once sled's log
        // has grown by four times its size since the last. Only time is
        // at stake: on an error the next open replays more.
        let page_table_started = started.elapsed();
        let page_table = match self.trees.snapshot.write_page_table_snapshot(false) {
            Ok(written) => written,
            Err(e) => {
                tracing::warn!("sled's page table snapshot was not written: {e}");
                false
            }
        };
        tracing::info!(
            messages = self.layer.len(),
            state_bytes = state.len(),
            layer_bytes = layer.record().len(),
            encode_ms = encoded.as_millis() as u64,
            file_ms = (written - encoded).as_millis() as u64,
            records_ms = (committed - written).as_millis() as u64,
            page_table,
            page_table_ms = (started.elapsed() - page_table_started).as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            file_cpu_ms = cpu_written.saturating_sub(cpu_started).as_millis() as u64,
            records_cpu_ms = cpu_committed.saturating_sub(cpu_written).as_millis() as u64,
            cpu_ms = thread_cpu().saturating_sub(cpu_started).as_millis() as u64,
            "snapshot written"
        );
        Ok(())
    }
}

/// After the first commit in the records' file: [`SNAPSHOT_TREE`] says
/// so, and the commits of the layouts before go (a crash before that
/// leaves them, older than the commit in the records, which an open reads
/// first). Nothing to do after that.
fn mark_in_records(trees: &Trees) -> Result<(), LogError> {
    let only_the_mark =
        trees.snapshot.get(IN_RECORDS_KEY)?.is_some() && trees.snapshot.iter().keys().count() == 1;
    if only_the_mark {
        return Ok(());
    }
    let mut mark = sled::Batch::default();
    mark.insert(IN_RECORDS_KEY, &[1u8][..]);
    for key in [FILE_KEY, LAYER_DONE_KEY, STATE, PENDING_LAYER] {
        mark.remove(key);
    }
    trees.snapshot.apply_batch(mark)?;
    trees.snapshot.flush()?;
    Ok(())
}

/// The CPU time this thread has used: a snapshot's log line says how much
/// of its wall time was CPU (the rest is waiting for the device, or for a
/// core the other threads hold).
fn thread_cpu() -> std::time::Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given, nothing else.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } != 0 {
        return std::time::Duration::ZERO;
    }
    std::time::Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// The generation of the snapshot file the records' file commits, if it
/// commits one.
fn committed_generation(trees: &Trees) -> Result<Option<u64>, SnapshotError> {
    let records = &trees.records;
    let damaged = |reason: String| SnapshotError::DamagedCommit {
        path: records.path().to_path_buf(),
        reason,
    };
    let Some(bytes) = records
        .get_side(FILE_KEY)
        .map_err(|e| layout(records.error(e)))?
    else {
        return Ok(None);
    };
    decode_generation(&bytes).map(Some).map_err(damaged)
}

/// A file generation as either layout commits it: 8 bytes, big-endian;
/// otherwise why it is damaged.
fn decode_generation(bytes: &[u8]) -> Result<u64, String> {
    let bytes: [u8; 8] = bytes
        .try_into()
        .map_err(|_| format!("a file generation of {} bytes", bytes.len()))?;
    Ok(u64::from_be_bytes(bytes))
}

/// A history error as the log's (what the store's callers see).
pub fn history_error(e: HistoryError) -> LogError {
    match e {
        HistoryError::Sled(e) => LogError::Sled(e),
        HistoryError::Codec(e) => LogError::Layout(format!("unencodable message: {e}")),
        HistoryError::Records(e) => LogError::Layout(e.to_string()),
    }
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

/// The state the latest snapshot holds, with the trees attached; `None`
/// when there is none (a new directory, or one from before issue 12).
pub fn load(trees: &Trees) -> Result<Option<State>, SnapshotError> {
    move_from_records(trees)?;
    let mut state = match load_from_records(trees)? {
        Some((state, generation)) => {
            file::remove_others(&trees.files, Some(generation));
            state
        }
        None => {
            let generation = generation(&trees.snapshot)?;
            let state = match generation {
                Some(generation) => load_file(trees, generation)?,
                None => match load_inline(trees)? {
                    Some(state) => state,
                    None => {
                        file::remove_others(&trees.files, None);
                        return Ok(None);
                    }
                },
            };
            file::remove_others(&trees.files, generation);
            state
        }
    };
    // Indexes derived from `users` are not stored, nor the revoked tokens'
    // expiry index: rebuilt here.
    state.rebuild_user_indexes();
    state.rebuild_token_index();
    state.rebuild_ringing_index();
    state.history.attach(trees.clone());
    Ok(Some(state))
}

/// The state of the file the records' file commits, and its generation;
/// `None` when it commits none (an error when [`SNAPSHOT_TREE`] says it
/// does).
fn load_from_records(trees: &Trees) -> Result<Option<(State, u64)>, SnapshotError> {
    let Some(generation) = committed_generation(trees)? else {
        if trees
            .snapshot
            .get(IN_RECORDS_KEY)
            .map_err(LogError::from)?
            .is_some()
        {
            return Err(SnapshotError::DamagedCommit {
                path: trees.records.path().to_path_buf(),
                reason: "no commit, and the history tree says it is there".into(),
            });
        }
        return Ok(None);
    };
    let path = file::path(&trees.files, generation);
    let damaged = |reason: String| SnapshotError::DamagedFile {
        path: path.clone(),
        reason,
    };
    let contents = file::read(&trees.files, generation).map_err(damaged)?;
    if contents.layer().is_some() {
        return Err(damaged("a layer, where its records are committed".into()));
    }
    let state = codec::decode(contents.state()).map_err(|e| damaged(format!("state: {e}")))?;
    Ok(Some((state, generation)))
}

fn layout(e: crate::state::history::RecordsError) -> LogError {
    LogError::Layout(e.to_string())
}

/// The history's trees and records beside `log` (their read cache the
/// size of the log's).
pub fn trees(log: &Log) -> Result<Trees, LogError> {
    Trees::open(log.sled(), log.dir(), log.cache_bytes()).map_err(history_error)
}

/// The trees of the closed store in `dir`, with its log (open while they
/// are used).
fn closed(dir: &Path) -> Result<(Log, Trees), SnapshotError> {
    let log = Log::open(dir)?;
    let trees = trees(&log)?;
    Ok((log, trees))
}

/// The offset the snapshot of the closed store in `dir` was taken at
/// (`None`: no snapshot). What tests check a clean stop by.
pub fn stored_offset(dir: &Path) -> Result<Option<u64>, SnapshotError> {
    let (_log, trees) = closed(dir)?;
    Ok(load(&trees)?.map(|state| state.next_offset))
}

/// The latest snapshot file of the closed store in `dir` (`None`: no
/// snapshot, or one from before the files).
pub fn latest_file(dir: &Path) -> Result<Option<PathBuf>, SnapshotError> {
    let (_log, trees) = closed(dir)?;
    let generation = committed_generation(&trees)?.or(generation(&trees.snapshot)?);
    Ok(generation.map(|g| file::path(&trees.files, g)))
}

/// The directory of the closed store in `dir`'s snapshot files, and the
/// generation its records' file commits (an error when there is none).
#[cfg(feature = "testing")]
fn committed_file(dir: &Path) -> Result<(PathBuf, u64), SnapshotError> {
    let (_log, trees) = closed(dir)?;
    let generation = committed_generation(&trees)?
        .ok_or_else(|| SnapshotError::Damaged("no snapshot committed in the records".into()))?;
    Ok((trees.files, generation))
}

/// Test hook: the encoded state in the latest snapshot file of the closed
/// store in `dir`.
#[cfg(feature = "testing")]
pub fn stored_state(dir: &Path) -> Result<Vec<u8>, SnapshotError> {
    let (files, generation) = committed_file(dir)?;
    let contents = file::read(&files, generation).map_err(SnapshotError::Damaged)?;
    Ok(contents.state().to_vec())
}

/// Test hook: rewrites the latest snapshot file of the closed store in
/// `dir` with `state` (encoded).
#[cfg(feature = "testing")]
pub fn replace_state(dir: &Path, state: &[u8]) -> Result<(), SnapshotError> {
    let (files, generation) = committed_file(dir)?;
    file::write(&files, generation, state, &[]).map_err(LogError::Io)?;
    Ok(())
}

/// Test hook: turns the snapshot of the closed store in `dir` (a clean
/// stop's) into the layout before 2026-12-07, its file committed in
/// [`SNAPSHOT_TREE`] and holding the layer too, as that layout left it;
/// when `crashed`, as its crash between the commit and the records did:
/// the layer (here the whole history) not marked written, the records
/// empty. Returns the file's path.
#[cfg(feature = "testing")]
pub fn to_file_layout(dir: &Path, crashed: bool) -> Result<PathBuf, SnapshotError> {
    let (log, trees) = closed(dir)?;
    let generation = committed_generation(&trees)?
        .ok_or_else(|| SnapshotError::Damaged("no snapshot committed in the records".into()))?;
    let state = file::read(&trees.files, generation)
        .map_err(SnapshotError::Damaged)?
        .state()
        .to_vec();
    // Everything is in the log: replayed with no trees, the whole history
    // is one layer in RAM.
    let mut full = State::default();
    crate::store::replay_into(&log, &mut full).map_err(|e| LogError::Layout(e.to_string()))?;
    let layer = full
        .history
        .active_layer()
        .encode()
        .map_err(|e| LogError::Layout(e.to_string()))?;
    file::write(&trees.files, generation, &state, layer.record()).map_err(LogError::Io)?;
    if crashed {
        trees.records.clear().map_err(layout)?;
    } else {
        trees
            .records
            .write_both(true, |_, side| {
                side.remove(FILE_KEY).map_err(|e| trees.records.error(e))?;
                Ok::<(), crate::table_file::TableFileError>(())
            })
            .map_err(layout)?;
    }
    let mut commit = sled::Batch::default();
    commit.remove(IN_RECORDS_KEY);
    commit.insert(FILE_KEY, &generation.to_be_bytes());
    if crashed {
        commit.remove(LAYER_DONE_KEY);
    } else {
        commit.insert(LAYER_DONE_KEY, &generation.to_be_bytes());
    }
    trees.snapshot.apply_batch(commit).map_err(LogError::from)?;
    trees.snapshot.flush().map_err(LogError::from)?;
    Ok(file::path(&trees.files, generation))
}

/// Test and admin hook: drops the snapshot and history of the closed store
/// in `dir`, so that its next open replays (and projects) the whole log.
pub fn discard(dir: &Path) -> Result<(), LogError> {
    let log = Log::open(dir)?;
    // The commit first: then no open reads the records (see
    // `store::rebuild_history`).
    log.sled().drop_tree(SNAPSHOT_TREE)?;
    log.sync()?;
    crate::state::history::Records::remove(&dir.join(crate::state::history::records::FILE))?;
    log.sled().drop_tree(TREE)?;
    log.sync()?;
    let _ = std::fs::remove_file(legacy_path(dir));
    file::remove_others(&dir.join(file::DIR), None);
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
        let trees = Trees::open(&db, dir.path(), 1 << 20).unwrap();
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
