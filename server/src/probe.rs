//! The delivery probe and readiness (issue 16).
//!
//! Every `--probe-interval-secs` the node sends a `Probe` command through
//! the real path: the sequencer (JetStream in cluster mode), the store's
//! writer and its WAL `fdatasync`, and the hub's fan-out, which queues the
//! resulting `ProbeRecorded` event for the node's own subscriber, a hub
//! socket registered in [`PROBE_ROOM`] (a conversation id no conversation
//! has). The probe event belongs to no conversation and no user, so no
//! list, search, replay or client socket ever shows it. It is one small
//! event per node and interval in the log (8,640 a day at the default).
//!
//! `GET /readyz` is ready when the node can write, has caught up with the
//! stream (cluster mode), and its last probe succeeded within three
//! intervals.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use vato_eventlog::Command;

use crate::app::App;
use crate::hub::{Out, SocketHandle, PROBE_ROOM};

/// How often the stream position is checked when the probe is off.
const LAG_CHECK_WITHOUT_PROBE: Duration = Duration::from_secs(10);

/// What the probe and the lag check last saw.
#[derive(Default)]
pub struct Probe {
    /// `--probe-interval-secs`; zero: no probe.
    interval: Duration,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    last_success: Option<Instant>,
    last_failure: Option<String>,
    /// Cluster mode: the stream's last position at the latest check (or
    /// why it could not be read); `None` before the first check. The node
    /// has caught up once it has applied that position, which readiness
    /// compares with the applied position of the moment it is asked.
    stream_target: Option<Result<u64, String>>,
    checked_at: Option<Instant>,
}

impl Probe {
    pub fn new(interval_secs: u64) -> Probe {
        Probe {
            interval: Duration::from_secs(interval_secs),
            seen: Mutex::default(),
        }
    }

    /// The readiness report: each check, and whether all pass.
    pub fn readiness(&self, app: &App) -> (bool, Value) {
        let mut checks = serde_json::Map::new();
        let mut ready = true;
        let mut check = |name: &str, outcome: Result<String, String>| {
            let value = match outcome {
                Ok(detail) => json!({"ok": true, "detail": detail}),
                Err(detail) => {
                    ready = false;
                    json!({"ok": false, "detail": detail})
                }
            };
            checks.insert(name.into(), value);
        };
        check("writable", writable(app));
        let seen = self.seen.lock();
        let stale = 3 * self.check_every();
        check(
            "caught_up",
            match (
                app.sequencer.cluster(),
                &seen.stream_target,
                seen.checked_at,
            ) {
                (None, _, _) => Ok("embedded mode".into()),
                (Some(_), Some(Err(e)), _) => Err(e.clone()),
                (Some(cluster), Some(Ok(target)), Some(at)) if at.elapsed() <= stale => {
                    let applied = cluster.applied_position();
                    if applied >= *target {
                        Ok("the stream's position is applied".into())
                    } else {
                        Err(format!(
                            "{} stream commands not applied yet",
                            target - applied
                        ))
                    }
                }
                (Some(_), _, _) => Err("the stream position was not checked recently".into()),
            },
        );
        check(
            "probe",
            if self.interval.is_zero() {
                Ok("disabled (--probe-interval-secs 0)".into())
            } else {
                match seen.last_success {
                    Some(at) if at.elapsed() <= 3 * self.interval => {
                        Ok(format!("last success {} ms ago", at.elapsed().as_millis()))
                    }
                    Some(at) => Err(format!(
                        "last success {} s ago{}",
                        at.elapsed().as_secs(),
                        failure_note(&seen.last_failure)
                    )),
                    None => Err(format!(
                        "no probe has succeeded yet{}",
                        failure_note(&seen.last_failure)
                    )),
                }
            },
        );
        drop(seen);
        let status = if ready { "ready" } else { "not_ready" };
        let failing: Vec<&String> = checks
            .iter()
            .filter(|(_, v)| v["ok"] == false)
            .map(|(k, _)| k)
            .collect();
        let body = json!({"status": status, "failing": failing, "checks": checks});
        (ready, body)
    }

    fn check_every(&self) -> Duration {
        if self.interval.is_zero() {
            LAG_CHECK_WITHOUT_PROBE
        } else {
            self.interval
        }
    }
}

fn failure_note(failure: &Option<String>) -> String {
    failure
        .as_ref()
        .map(|f| format!("; last failure: {f}"))
        .unwrap_or_default()
}

fn writable(app: &App) -> Result<String, String> {
    if app.store.failed() {
        return Err("the event log failed".into());
    }
    match app.sequencer.cluster() {
        Some(cluster) if !cluster.connected() => Err("NATS is not connected".into()),
        Some(_) => Ok("NATS connected, the log writes".into()),
        None => Ok("the log writes".into()),
    }
}

/// The probe and lag-check task: runs while the process lives. Spawned
/// only when there is something to do (a probe, or cluster mode).
pub async fn run(app: Arc<App>) {
    let probe = &app.probe;
    let node: u64 = rand::random::<u64>() | 1;
    app.hub.set_probe_node(node);
    let mut subscriber = None;
    let mut nonce = 0u64;
    let mut tick = tokio::time::interval(probe.check_every());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let latency = metrics::histogram!("vato_probe_latency_seconds");
    let failures = metrics::counter!("vato_probe_failures_total");
    let last_success = metrics::gauge!("vato_probe_last_success_timestamp_seconds");
    loop {
        tick.tick().await;
        if let Some(cluster) = app.sequencer.cluster() {
            let target = check_lag(cluster).await;
            let mut seen = probe.seen.lock();
            seen.stream_target = Some(target);
            seen.checked_at = Some(Instant::now());
        }
        if probe.interval.is_zero() {
            continue;
        }
        let (handle, queue) = subscriber.get_or_insert_with(|| {
            let (handle, queue, _) = app.hub.register(PROBE_ROOM, 0, 16);
            (handle, queue)
        });
        nonce += 1;
        let started = Instant::now();
        let outcome = tokio::time::timeout(
            3 * probe.interval,
            probe_once(&app, node, nonce, handle, queue),
        )
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {:?}", 3 * probe.interval)));
        let closed = handle.is_closing();
        let mut seen = probe.seen.lock();
        match outcome {
            Ok(()) => {
                latency.record(started.elapsed().as_secs_f64());
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                last_success.set(now.as_secs_f64());
                seen.last_success = Some(Instant::now());
                seen.last_failure = None;
            }
            Err(e) => {
                failures.increment(1);
                tracing::warn!("delivery probe failed: {e}");
                seen.last_failure = Some(e);
            }
        }
        drop(seen);
        // A subscriber closed (a full queue, shutdown) is replaced.
        if closed {
            if let Some((handle, _)) = subscriber.take() {
                app.hub.unregister(&handle);
            }
        }
    }
}

/// One probe: the command through the sequencer, then its event from the
/// fan-out on the probe's own queue.
async fn probe_once(
    app: &App,
    node: u64,
    nonce: u64,
    handle: &SocketHandle,
    queue: &mut mpsc::Receiver<Out>,
) -> Result<(), String> {
    // Anything left from an earlier probe that timed out.
    while queue.try_recv().is_ok() {}
    if handle.is_closing() {
        return Err("the probe's subscriber was closed".into());
    }
    match app
        .sequencer
        .begin(Command::Probe { node, nonce })
        .await
        .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(rejection)) => return Err(format!("refused: {rejection}")),
        Err(e) => return Err(e.to_string()),
    }
    loop {
        match queue.recv().await {
            Some(Out::Probe { nonce: seen }) if seen == nonce => return Ok(()),
            Some(_) => continue,
            None => return Err("the probe's subscriber was closed".into()),
        }
    }
}

/// Cluster mode: the stream's last position, the target the node has
/// caught up with once applied (a node under steady load is always a few
/// commands behind the stream's head, never behind its past). Readiness
/// compares it with the applied position when asked, so a check made
/// while the node was still catching up is not held against it until the
/// next one.
async fn check_lag(cluster: &crate::sequencer::Cluster) -> Result<u64, String> {
    let last = cluster
        .stream_last_sequence()
        .await
        .map_err(|e| format!("cannot read the stream's position: {e}"))?;
    let applied = cluster.applied_position();
    metrics::gauge!("vato_stream_lag").set(last.saturating_sub(applied) as f64);
    Ok(last)
}
