//! The store's writer: one OS thread that takes the commands waiting in
//! its queue, decides and applies them against the live state in arrival
//! order, appends the batch's events to the log as one WAL record (one
//! write, one `fdatasync`), and only then answers every waiter and hands
//! the batch to the fan-out. On a busy log it first waits a moment for
//! more commands, so that fewer, larger commits share the device's work.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use tokio::sync::mpsc;

use super::{Applied, Committed, Request, StoreError, GATHER_AFTER};
use crate::command::{Rejection, Reply};
use crate::event::Envelope;
use crate::log::Log;
use crate::snapshot;
use crate::state::State;

pub(super) struct Writer {
    pub(super) rx: mpsc::Receiver<Request>,
    pub(super) state: Arc<RwLock<State>>,
    pub(super) log: Arc<Log>,
    pub(super) committed: mpsc::UnboundedSender<Committed>,
    pub(super) failed: Arc<AtomicBool>,
    pub(super) max_batch: usize,
    pub(super) snapshot_every: u64,
    /// How long a busy log's writer waits for more commands (0: never).
    pub(super) gather: Duration,
}

impl Writer {
    pub(super) fn run(mut self) {
        let mut since_snapshot = 0u64;
        let snapshot_busy = Arc::new(AtomicBool::new(false));
        // Joined before the writer exits, so that close() (which joins the
        // writer, then writes its own snapshot) never races a background
        // snapshot on `snapshot.bin.tmp`.
        let mut snapshot_thread = None;
        let mut batch = Vec::with_capacity(self.max_batch);
        // Created once: recording is then an atomic add, not a look-up.
        let commit_events = metrics::histogram!("vato_group_commit_events");
        let commit_sync = metrics::histogram!("vato_group_commit_sync_seconds");
        let commit_apply = metrics::histogram!("vato_group_commit_apply_seconds");
        let queue_wait = metrics::histogram!("vato_command_queue_seconds");
        // Commands the last group commit took: several means a busy log.
        let mut last_len = 0usize;
        while let Some(first) = self.rx.blocking_recv() {
            batch.push(first);
            self.take_waiting(&mut batch);
            // On a busy log a moment's wait gathers more commands into this
            // commit: fewer, larger commits, each paying one device write
            // and one cache flush (BENCHMARKS.md, "Gathered commits").
            if !self.gather.is_zero() && last_len >= GATHER_AFTER && batch.len() < self.max_batch {
                std::thread::sleep(self.gather);
                self.take_waiting(&mut batch);
            }
            last_len = batch.len();
            let dequeued = Instant::now();
            for request in &batch {
                queue_wait.record(
                    dequeued
                        .saturating_duration_since(request.queued)
                        .as_secs_f64(),
                );
            }
            let (envelopes, outcomes) = self.decide_and_apply(&batch);
            commit_apply.record(dequeued.elapsed().as_secs_f64());
            let envelopes: Arc<[Envelope]> = envelopes.into();
            let position = batch.iter().filter_map(|r| r.position).max();
            if !envelopes.is_empty() || position.is_some() {
                let started = Instant::now();
                let appended = self.log.append_batch_at(envelopes.clone(), position);
                commit_sync.record(started.elapsed().as_secs_f64());
                commit_events.record(envelopes.len() as f64);
                if let Err(e) = appended {
                    tracing::error!("log append failed, the store stops: {e}");
                    self.failed.store(true, Ordering::SeqCst);
                    for request in batch.drain(..) {
                        let _ = request.reply.send(Err(StoreError::Failed));
                    }
                    return;
                }
            }
            let durable_at = Instant::now();
            for (request, outcome) in batch.drain(..).zip(outcomes) {
                let answer = outcome.map(|(reply, range)| Applied {
                    reply,
                    batch: envelopes.clone(),
                    range,
                    durable_at,
                });
                let _ = request.reply.send(Ok(answer));
            }
            since_snapshot += envelopes.len() as u64;
            if !envelopes.is_empty() {
                let _ = self.committed.send(Committed {
                    events: envelopes,
                    durable_at,
                });
            }
            if since_snapshot >= self.snapshot_every && !snapshot_busy.swap(true, Ordering::SeqCst)
            {
                since_snapshot = 0;
                snapshot_thread = Some(self.snapshot_in_background(snapshot_busy.clone()));
            }
        }
        if let Some(handle) = snapshot_thread {
            let _ = handle.join();
        }
    }

    /// Adds the commands already queued to `batch`, up to `max_batch`.
    fn take_waiting(&mut self, batch: &mut Vec<Request>) {
        while batch.len() < self.max_batch {
            match self.rx.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
    }

    /// Decides and applies each command in order; returns the new events
    /// and, per command, its reply and the range of its events.
    #[allow(clippy::type_complexity)]
    fn decide_and_apply(
        &self,
        batch: &[Request],
    ) -> (
        Vec<Envelope>,
        Vec<Result<(Reply, std::ops::Range<usize>), Rejection>>,
    ) {
        let mut state = self.state.write();
        let mut envelopes = Vec::new();
        let outcomes = batch
            .iter()
            .map(|request| {
                let start = envelopes.len();
                let reply = state.execute(&request.command, &mut envelopes)?;
                Ok((reply, start..envelopes.len()))
            })
            .collect();
        (envelopes, outcomes)
    }

    /// Freezes the history and copies the small state (the writer pauses
    /// for that, microseconds), and encodes and writes them from another
    /// thread.
    fn snapshot_in_background(&self, busy: Arc<AtomicBool>) -> JoinHandle<()> {
        let paused = Instant::now();
        let pending = snapshot::take(&mut self.state.write());
        tracing::info!(
            writer_paused_us = paused.elapsed().as_micros() as u64,
            "snapshot taken"
        );
        let state = self.state.clone();
        let spawned = std::thread::Builder::new()
            .name("vato-snapshot".into())
            .spawn(move || {
                crate::log::background_thread();
                if let Some(pending) = pending {
                    let written = pending.write();
                    snapshot::finish(&mut state.write(), &written);
                }
                busy.store(false, Ordering::SeqCst);
            });
        spawned.expect("spawn the snapshot thread")
    }
}
