//! The projector: one thread that writes the batches the WAL made durable
//! into sled (many per transaction), makes sled durable every
//! [`SYNC_EVERY`], and then moves the checkpoint that lets the WAL recycle
//! its segments. It runs beside the writer, so sled's transaction and
//! flush are never between a batch and its acknowledgement.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::projection::Projection;
use super::{LogError, Shared};

/// How often the projection is made durable while batches arrive. Longer
/// means fewer sled flushes; shorter, a shorter WAL to replay after a crash.
/// Each flush writes sled's dirty pages and `fdatasync`s them, and the WAL's
/// `fdatasync`s queue behind that I/O for a few ms: at 200 ms the store's
/// p99 ack on disk at 2,000/s was 6.7 ms (median of 3), at 2 s 2.7 ms
/// (BENCHMARKS.md, #18).
pub const SYNC_EVERY: Duration = Duration::from_millis(2000);
/// Most events written in one sled transaction.
const MAX_EVENTS_PER_TRANSACTION: usize = 16_384;
/// How long batches wait in the pending overlay before the projector
/// writes them into sled, unless [`PROJECT_AT_EVENTS`] are waiting. Readers
/// find them in the overlay meanwhile, so this costs no reader anything;
/// projecting each group commit as it came (1–3 events at 2,000 msg/s)
/// cost a sled transaction and two thread wake-ups per batch: the
/// projector was a quarter of the server's CPU (perf, #18).
pub const PROJECT_EVERY: Duration = Duration::from_millis(100);
/// Pending events that wake the projector at once.
pub(super) const PROJECT_AT_EVENTS: usize = 4_096;

pub(super) struct Projector {
    shared: Arc<Shared>,
    thread: JoinHandle<Result<(), LogError>>,
}

impl Projector {
    pub(super) fn start(
        projection: Arc<Projection>,
        shared: Arc<Shared>,
    ) -> Result<Projector, LogError> {
        let theirs = shared.clone();
        let thread = std::thread::Builder::new()
            .name("vato-projector".into())
            .spawn(move || {
                crate::log::background_thread();
                let result = run(&projection, &theirs);
                if let Err(e) = &result {
                    tracing::error!("the projector stopped: {e}");
                    theirs.signal.0.lock().failed = Some(e.to_string());
                    theirs.signal.1.notify_all();
                }
                result
            })?;
        Ok(Projector { shared, thread })
    }

    /// Projects what is pending, makes it durable, and stops.
    pub(super) fn stop(self) -> Result<(), LogError> {
        self.shared.signal.0.lock().stop = true;
        self.shared.signal.1.notify_all();
        match self.thread.join() {
            Ok(result) => result,
            Err(_) => Err(LogError::Projector("the projector panicked".into())),
        }
    }
}

fn run(projection: &Projection, shared: &Shared) -> Result<(), LogError> {
    let (lock, cond) = &shared.signal;
    // The last LSN written into sled, and whether sled is behind it.
    let mut projected = 0;
    let mut unsynced = false;
    let mut last_sync = Instant::now();
    // Events durable in the WAL but not yet in sled (readers take them
    // from the overlay meanwhile).
    let lag = metrics::gauge!("vato_projector_pending_events");
    loop {
        let batches = shared.pending.read().oldest(MAX_EVENTS_PER_TRANSACTION);
        if let Some(last) = batches.last() {
            projection.project(&batches)?;
            projected = last.lsn;
            unsynced = true;
            // Readers find these in sled from now on.
            shared.pending.write().projected(projected);
            cond.notify_all();
        }
        let stopping = lock.lock().stop;
        if unsynced && (stopping || last_sync.elapsed() >= SYNC_EVERY) {
            projection.sync()?;
            unsynced = false;
            last_sync = Instant::now();
            lock.lock().checkpoint = projected;
        }
        let mut signal = lock.lock();
        let pending = shared.pending.read().len_events();
        lag.set(pending as f64);
        if signal.stop {
            if pending == 0 && !unsynced {
                return Ok(());
            }
            // Projected and synced on the next turns, then stop.
            continue;
        }
        if pending >= PROJECT_AT_EVENTS || (pending > 0 && signal.hurry) {
            continue;
        }
        signal.hurry = false;
        let sync_due = SYNC_EVERY.saturating_sub(last_sync.elapsed());
        let wait = match (pending > 0, unsynced) {
            (true, _) => PROJECT_EVERY,
            (false, true) => sync_due,
            (false, false) => SYNC_EVERY,
        };
        cond.wait_for(&mut signal, wait);
    }
}
