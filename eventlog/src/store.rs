//! The store: the log, the live state, and the single writer that turns
//! commands into durable events with group commit.
//!
//! The writer is one OS thread (`writer.rs`). It takes every command
//! waiting in its queue (up to `max_batch`), decides and applies each
//! against the live state in arrival order, appends the resulting events
//! to the log as one WAL record made durable once (one `fdatasync`), and
//! only then answers every waiter and hands the batch to the fan-out. One
//! sync thus pays for the whole batch: durability does not cost
//! throughput.
//!
//! Readers see the state through a read lock. They may see a batch a few
//! hundred microseconds before it is durable; nobody is *told* it is done
//! before it is. If the disk fails, the writer stops, every waiter gets an
//! error, and [`Store::failed`] turns true: the process should exit and
//! restart from the log.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use tokio::sync::{mpsc, oneshot};

mod writer;

use writer::Writer;

use crate::command::{Command, Rejection, Reply};
use crate::event::{ConvId, Envelope, Seq};
use crate::log::{Log, LogError};
use crate::snapshot;
use crate::state::history::KeyProbe;
use crate::state::State;

#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub dir: PathBuf,
    /// Write a snapshot every this many events (and on clean close): the
    /// history changed since the last one is what the store keeps in RAM.
    pub snapshot_every: u64,
    /// Most commands one group commit takes.
    pub max_batch: usize,
    /// Commands that may wait for the writer before `submit` waits too.
    pub queue: usize,
    /// Length of each WAL segment (preallocated; a few are kept).
    pub wal_segment_bytes: u64,
    /// Bound of the log's page cache in memory (sled's `cache_capacity`).
    pub cache_bytes: u64,
    /// The time slice the writer's thread asks the kernel for, µs (0: the
    /// kernel's default); see [`crate::sched`].
    pub writer_slice_us: u64,
    /// When the last group commit took at least [`GATHER_AFTER`] commands,
    /// the writer waits this long, µs, for more before deciding the next
    /// (0: never waits).
    pub gather_us: u64,
}

impl StoreConfig {
    pub fn new(dir: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig {
            dir: dir.into(),
            snapshot_every: DEFAULT_SNAPSHOT_EVERY,
            max_batch: 4096,
            queue: 65_536,
            wal_segment_bytes: crate::log::DEFAULT_WAL_SEGMENT_BYTES,
            cache_bytes: crate::log::DEFAULT_CACHE_BYTES,
            writer_slice_us: DEFAULT_WRITER_SLICE_US,
            gather_us: DEFAULT_GATHER_US,
        }
    }
}

/// The writer's time slice, µs: the shortest the kernel grants.
pub const DEFAULT_WRITER_SLICE_US: u64 = 100;

/// How long a busy log's writer waits for more commands, µs. At 16,000
/// msg/s on a real disk it cut the p99 by 40-50 % (BENCHMARKS.md,
/// "Gathered commits"); below a few thousand a second it seldom waits.
pub const DEFAULT_GATHER_US: u64 = 250;

/// A group commit of this many commands or more makes the writer gather
/// before the next. On this project's test machine's disk a commit holds
/// one or two commands at 2,000 msg/s and about eight at 16,000.
pub const GATHER_AFTER: usize = 4;

/// Events between snapshots: bounds the history held in RAM (about 30 MiB
/// of messages) and the tail a restart replays.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 50_000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Snapshot(#[from] snapshot::SnapshotError),
    #[error("the store is closed")]
    Closed,
    #[error("the store stopped after a storage failure")]
    Failed,
}

/// A command that was accepted and is durable.
#[derive(Clone, Debug)]
pub struct Applied {
    pub reply: Reply,
    /// The group commit the command's events were written in, shared by
    /// every command of it (the writer does not copy each event), and
    /// where this command's events are in it.
    batch: Arc<[Envelope]>,
    range: std::ops::Range<usize>,
    durable_at: Instant,
}

impl Applied {
    /// The events it appended (none for an idempotent repeat).
    pub fn events(&self) -> &[Envelope] {
        &self.batch[self.range.clone()]
    }

    /// The events of the whole group commit it was written in, its own and
    /// those of the commands written with it.
    pub fn group_commit_events(&self) -> usize {
        self.batch.len()
    }

    /// When the writer sent this answer (its group commit durable): the
    /// time from here to the task that reads it is the task's wake-up.
    pub fn durable_at(&self) -> Instant {
        self.durable_at
    }
}

/// The answer to a queued command: decided, and durable if accepted.
pub type Answer = oneshot::Receiver<Result<Result<Applied, Rejection>, StoreError>>;

/// One durable batch for the fan-out.
pub struct Committed {
    pub events: Arc<[Envelope]>,
    /// When the batch became durable: the fan-out's latency counts from
    /// here.
    pub durable_at: Instant,
}

/// Batches of durable events, in log order, for the fan-out.
pub type CommittedRx = mpsc::UnboundedReceiver<Committed>;

struct Request {
    command: Command,
    /// Cluster mode: the command's place in the stream, recorded with the
    /// batch so a restart resumes right after it.
    position: Option<u64>,
    reply: oneshot::Sender<Result<Result<Applied, Rejection>, StoreError>>,
    /// When it was queued: its wait for the writer counts from here.
    queued: Instant,
}

#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    tx: Mutex<Option<mpsc::Sender<Request>>>,
    state: Arc<RwLock<State>>,
    log: Arc<Log>,
    failed: Arc<AtomicBool>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Reads idempotency keys in the history tree before the writer does.
    probe: Option<KeyProbe>,
}

impl Store {
    /// Opens (or creates) the store in `config.dir`: loads the latest
    /// snapshot, replays the log's tail, and starts the writer.
    pub fn open(config: StoreConfig) -> Result<(Store, CommittedRx), StoreError> {
        let log = Arc::new(Log::open_with(
            &config.dir,
            config.wal_segment_bytes,
            config.cache_bytes,
        )?);
        let state = recover_with(&log, config.snapshot_every.max(1))?;
        let probe = state.history.probe();
        let state = Arc::new(RwLock::new(state));
        let failed = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let (committed_tx, committed_rx) = mpsc::unbounded_channel();
        let writer = Writer {
            rx,
            state: state.clone(),
            log: log.clone(),
            committed: committed_tx,
            failed: failed.clone(),
            max_batch: config.max_batch.max(1),
            snapshot_every: config.snapshot_every.max(1),
            gather: Duration::from_micros(config.gather_us),
        };
        let slice_us = config.writer_slice_us;
        let handle = std::thread::Builder::new()
            .name("vato-log-writer".into())
            .spawn(move || {
                crate::sched::ask_for_short_slices(slice_us);
                writer.run()
            })
            .map_err(LogError::Io)?;
        let store = Store {
            inner: Arc::new(Inner {
                tx: Mutex::new(Some(tx)),
                state,
                log,
                failed,
                writer: Mutex::new(Some(handle)),
                probe,
            }),
        };
        Ok((store, committed_rx))
    }

    /// Submits a command and waits until it is decided and, if accepted,
    /// durable. The outer error is the store's; the inner one the command's.
    pub async fn submit(&self, command: Command) -> Result<Result<Applied, Rejection>, StoreError> {
        let answer = self.enqueue(command, None).await?;
        answer.await.map_err(|_| self.stopped_error())?
    }

    /// Queues a command and returns at once with the receiver of its answer.
    /// Commands are decided in the order they are queued: the cluster's
    /// applier queues the stream in stream order without waiting for each
    /// fsync, so a whole run of commands shares one group commit.
    pub async fn enqueue(
        &self,
        command: Command,
        position: Option<u64>,
    ) -> Result<Answer, StoreError> {
        let tx = self.inner.tx.lock().clone().ok_or(StoreError::Closed)?;
        // The tree's answer for a new idempotency key, read here and not
        // by the writer under the state's lock (history/probe.rs).
        if let Some(probe) = &self.inner.probe {
            probe.probe(&command);
        }
        let (reply, answer) = oneshot::channel();
        tx.send(Request {
            command,
            position,
            reply,
            queued: Instant::now(),
        })
        .await
        .map_err(|_| self.stopped_error())?;
        Ok(answer)
    }

    fn stopped_error(&self) -> StoreError {
        if self.failed() {
            StoreError::Failed
        } else {
            StoreError::Closed
        }
    }

    /// The live read models.
    pub fn state(&self) -> RwLockReadGuard<'_, State> {
        self.inner.state.read()
    }

    pub fn log(&self) -> &Log {
        &self.inner.log
    }

    /// Cluster mode: the stream sequence of the last command made durable.
    pub fn position(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.inner.log.position()?)
    }

    /// True once the writer stopped on a storage error.
    pub fn failed(&self) -> bool {
        self.inner.failed.load(Ordering::SeqCst)
    }

    /// Up to `limit` events of a conversation with seq > `after`, oldest
    /// first: the replay behind `since`.
    pub fn conv_after(
        &self,
        conv: ConvId,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<Envelope>, StoreError> {
        Ok(self.inner.log.conv_after(conv, after, limit)?)
    }

    /// Stops the writer after the commands already queued, and writes a
    /// snapshot. Further submits get [`StoreError::Closed`].
    pub fn close(&self) -> Result<(), StoreError> {
        self.inner.tx.lock().take();
        if let Some(handle) = self.inner.writer.lock().take() {
            let _ = handle.join();
        }
        // Everything in sled and durable there: the next start has no WAL
        // to replay.
        self.inner.log.close()?;
        if !self.failed() {
            snapshot::write_now(&mut self.inner.state.write())?;
            // The snapshot writes sled's page table too, unless a
            // background one was still being written (then it did not
            // run): the next open replays sled's log only from here.
            self.inner.log.write_page_table_snapshot()?;
        }
        Ok(())
    }
}

/// Rebuilds the state: the latest snapshot plus the log's tail.
pub fn recover(log: &Log) -> Result<State, StoreError> {
    recover_with(log, DEFAULT_SNAPSHOT_EVERY)
}

/// [`recover`], snapshotting every `snapshot_every` events of the tail, so
/// that a long replay (a migration) keeps RAM bounded and, if killed, goes
/// on from its last snapshot. A directory from before issue 12 (no history
/// tree, a `snapshot.bin`) is migrated so: a full replay, then the old file
/// goes.
pub fn recover_with(log: &Log, snapshot_every: u64) -> Result<State, StoreError> {
    let next = log.next_offset()?;
    let trees = snapshot::trees(log)?;
    let mut state = match snapshot::load(&trees)? {
        Some(state) if state.next_offset <= next => state,
        loaded => {
            if let Some(state) = loaded {
                tracing::warn!(
                    snapshot = state.next_offset,
                    log = next,
                    "snapshot is ahead of the log; replaying the whole log"
                );
            }
            trees.clear().map_err(snapshot::history_error)?;
            let mut state = State::default();
            state.history.attach(trees);
            state
        }
    };
    replay_with_snapshots(log, &mut state, snapshot_every)?;
    let legacy = snapshot::legacy_path(log.dir());
    if legacy.exists() {
        snapshot::write_now(&mut state)?;
        std::fs::remove_file(&legacy).map_err(LogError::Io)?;
        tracing::info!(
            "migrated: the history is in {}, {} removed",
            log.dir()
                .join(crate::state::history::records::FILE)
                .display(),
            legacy.display()
        );
    }
    Ok(state)
}

/// Makes the history tree again from the log (`vato-admin rebuild`): what
/// was in it is dropped first. The log is only read.
pub fn rebuild_history(log: &Log) -> Result<State, StoreError> {
    // The snapshot's commit goes first, durably: from then on no open
    // reads the records. The records' file is not opened before it is
    // removed: a damaged file may not open at all.
    let commit = log
        .sled()
        .open_tree(crate::state::history::SNAPSHOT_TREE)
        .map_err(LogError::from)?;
    commit.clear().map_err(LogError::from)?;
    commit.flush().map_err(LogError::from)?;
    crate::state::history::Records::remove(&log.dir().join(crate::state::history::records::FILE))
        .map_err(LogError::Io)?;
    let trees = snapshot::trees(log)?;
    let mut state = State::default();
    state.history.attach(trees);
    replay_with_snapshots(log, &mut state, DEFAULT_SNAPSHOT_EVERY)?;
    snapshot::write_now(&mut state)?;
    Ok(state)
}

fn replay_with_snapshots(
    log: &Log,
    state: &mut State,
    snapshot_every: u64,
) -> Result<(), StoreError> {
    let mut since = 0u64;
    replay_each(log, state, |state| {
        since += 1;
        if since >= snapshot_every {
            since = 0;
            snapshot::write_now(state)?;
        }
        Ok(())
    })
}

/// Applies every event after `state.next_offset` to `state`.
pub fn replay_into(log: &Log, state: &mut State) -> Result<(), StoreError> {
    replay_each(log, state, |_| Ok(()))
}

fn replay_each(
    log: &Log,
    state: &mut State,
    mut after_each: impl FnMut(&mut State) -> Result<(), LogError>,
) -> Result<(), StoreError> {
    for envelope in log.read_from(state.next_offset) {
        let envelope = envelope?;
        if envelope.offset != state.next_offset {
            return Err(LogError::Corrupt {
                offset: state.next_offset,
                source: crate::codec::CodecError::Payload(format!(
                    "missing entry (next present is {})",
                    envelope.offset
                )),
            }
            .into());
        }
        state.apply(&envelope);
        after_each(state)?;
    }
    Ok(())
}

/// The state a full replay from offset 0 gives (what `verify` compares).
pub fn rebuild(dir: &Path) -> Result<State, StoreError> {
    let log = Log::open(dir)?;
    let mut state = State::default();
    replay_into(&log, &mut state)?;
    Ok(state)
}
