//! Process-wide bookkeeping of every chat message: when it was due to be sent,
//! whether the other party got it (and how late), whether the sender got its echo.
//!
//! Every message carries `vl:<id>:<intended_ns>:` at the start of its content;
//! `intended_ns` is the time it was *due* (open-loop schedule), in nanoseconds on
//! this process's monotonic clock, so a receiver computes the latency from the
//! frame alone. Both users of a pair live in this process.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

static TRACKER: OnceLock<Tracker> = OnceLock::new();

pub fn get() -> &'static Tracker {
    TRACKER.get_or_init(Tracker::new)
}

/// Nanoseconds since the tracker's epoch.
pub fn now_ns() -> u64 {
    get().epoch.elapsed().as_nanos() as u64
}

#[derive(Default, Clone, Copy)]
struct MsgState {
    intended_ns: u64,
    delivered: bool,
    acked: bool,
    /// Delivered after the deadline (already counted lost).
    late: bool,
}

/// What a receiving socket saw for one `message.new` of ours.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Seen {
    /// First delivery to the other party, in time and in order.
    Delivered(Duration),
    /// First delivery, in time, but its seq is not after the socket's last one.
    OutOfOrder(Duration),
    /// Delivered to the other party a second time.
    Duplicate(Duration),
    /// First delivery after the deadline, before the sender's sweep: lost, and
    /// this is the verdict to record.
    Late(Duration),
    /// A delivery or echo after the sender's sweep already recorded it missing:
    /// counted (`late`), not recorded again.
    AfterSweep,
    /// The sender's own echo (the ack), first time.
    Acked(Duration),
    /// A second echo to the sender.
    DuplicateAck(Duration),
}

pub struct Tracker {
    epoch: Instant,
    next_id: AtomicU64,
    msgs: Mutex<HashMap<u64, MsgState>>,
    /// Messages swept at their deadline with a delivery or an ack missing.
    swept: Mutex<HashMap<u64, MsgState>>,
    pub sent: AtomicU64,
    pub send_errors: AtomicU64,
    pub delivered: AtomicU64,
    pub lost: AtomicU64,
    pub duplicated: AtomicU64,
    pub out_of_order: AtomicU64,
    pub late: AtomicU64,
    pub acked: AtomicU64,
    pub unacked: AtomicU64,
    pub gaps: AtomicU64,
    pub ws_errors: AtomicU64,
    first_send_ns: AtomicU64,
    last_delivery_ns: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
    /// How late each send left the client, after its due time: the client's
    /// own share of the delivery latency (timer granularity, scheduling).
    send_lags_us: Mutex<Vec<u64>>,
}

impl Tracker {
    fn new() -> Self {
        Tracker {
            epoch: Instant::now(),
            next_id: AtomicU64::new(1),
            msgs: Mutex::new(HashMap::new()),
            swept: Mutex::new(HashMap::new()),
            sent: AtomicU64::new(0),
            send_errors: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            duplicated: AtomicU64::new(0),
            out_of_order: AtomicU64::new(0),
            late: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            unacked: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            ws_errors: AtomicU64::new(0),
            first_send_ns: AtomicU64::new(u64::MAX),
            last_delivery_ns: AtomicU64::new(0),
            latencies_us: Mutex::new(Vec::new()),
            send_lags_us: Mutex::new(Vec::new()),
        }
    }

    /// A message due at `intended_ns` has just been written to its socket.
    pub fn record_send_lag(&self, intended_ns: u64) {
        let lag = now_ns().saturating_sub(intended_ns) / 1000;
        self.send_lags_us.lock().unwrap().push(lag);
    }

    /// Registers a message due at `intended_ns`; returns its id and content.
    pub fn new_message(&self, intended_ns: u64, size: usize) -> (u64, String) {
        let id = self.next_id.fetch_add(1, Relaxed);
        self.msgs.lock().unwrap().insert(
            id,
            MsgState {
                intended_ns,
                ..Default::default()
            },
        );
        self.first_send_ns.fetch_min(intended_ns, Relaxed);
        let mut content = format!("vl:{id}:{intended_ns}:");
        while content.len() < size {
            content.push('x');
        }
        (id, content)
    }

    /// Parses `vl:<id>:<intended_ns>:...`.
    pub fn parse(content: &str) -> Option<(u64, u64)> {
        let rest = content.strip_prefix("vl:")?;
        let mut parts = rest.splitn(3, ':');
        let id = parts.next()?.parse().ok()?;
        let intended = parts.next()?.parse().ok()?;
        Some((id, intended))
    }

    /// A socket received message `id` (due at `intended_ns`); `own` when the socket
    /// belongs to the sender; `in_order` when its seq follows the socket's last.
    pub fn on_receive(
        &self,
        id: u64,
        intended_ns: u64,
        own: bool,
        in_order: bool,
        timeout: Duration,
    ) -> Seen {
        let now = now_ns();
        let latency = Duration::from_nanos(now.saturating_sub(intended_ns));
        let mut msgs = self.msgs.lock().unwrap();
        let Some(state) = msgs.get_mut(&id) else {
            // Resolved and forgotten, or swept at its deadline with something missing.
            drop(msgs);
            let mut swept = self.swept.lock().unwrap();
            if let Some(flags) = swept.get_mut(&id) {
                let first = if own {
                    &mut flags.acked
                } else {
                    &mut flags.delivered
                };
                if !*first {
                    *first = true;
                    if !own {
                        self.late.fetch_add(1, Relaxed);
                    }
                    return Seen::AfterSweep;
                }
            }
            drop(swept);
            self.duplicated.fetch_add(1, Relaxed);
            return if own {
                Seen::DuplicateAck(latency)
            } else {
                Seen::Duplicate(latency)
            };
        };
        if own {
            if state.acked {
                self.duplicated.fetch_add(1, Relaxed);
                return Seen::DuplicateAck(latency);
            }
            state.acked = true;
            if state.delivered {
                msgs.remove(&id);
            }
            drop(msgs);
            self.acked.fetch_add(1, Relaxed);
            return Seen::Acked(latency);
        }
        if state.delivered {
            self.duplicated.fetch_add(1, Relaxed);
            return Seen::Duplicate(latency);
        }
        if latency > timeout {
            // Past the deadline before the sender's sweep ran: lost, as the sweep
            // would say; the sweep still counts a missing ack.
            state.delivered = true;
            state.late = true;
            drop(msgs);
            self.lost.fetch_add(1, Relaxed);
            self.late.fetch_add(1, Relaxed);
            return Seen::Late(latency);
        }
        state.delivered = true;
        if state.acked {
            msgs.remove(&id);
        }
        drop(msgs);
        // Out-of-order deliveries count as delivered too, and are counted apart.
        self.delivered.fetch_add(1, Relaxed);
        self.latencies_us
            .lock()
            .unwrap()
            .push(latency.as_micros() as u64);
        self.last_delivery_ns.fetch_max(now, Relaxed);
        if in_order {
            Seen::Delivered(latency)
        } else {
            self.out_of_order.fetch_add(1, Relaxed);
            Seen::OutOfOrder(latency)
        }
    }

    /// The sender's sweep of message `id`. Returns `None` while it is still in
    /// flight, else `Some((lost, unacked))` once resolved and forgotten.
    pub fn sweep(&self, id: u64, timeout: Duration) -> Option<(bool, bool)> {
        let now = now_ns();
        let mut msgs = self.msgs.lock().unwrap();
        let Some(state) = msgs.get(&id).copied() else {
            return Some((false, false));
        };
        if state.delivered && state.acked && !state.late {
            msgs.remove(&id);
            return Some((false, false));
        }
        if now.saturating_sub(state.intended_ns) <= timeout.as_nanos() as u64 {
            return None;
        }
        msgs.remove(&id);
        drop(msgs);
        // A late delivery was counted lost when it arrived.
        let lost = !state.delivered;
        let unacked = !state.acked;
        if lost {
            self.lost.fetch_add(1, Relaxed);
        }
        if unacked {
            self.unacked.fetch_add(1, Relaxed);
        }
        if lost || unacked {
            self.swept.lock().unwrap().insert(id, state);
        }
        Some((lost, unacked))
    }

    /// The sender's sweep of a message whose send failed: lost, never acked.
    pub fn forget_failed(&self, id: u64) {
        if let Some(state) = self.msgs.lock().unwrap().remove(&id) {
            self.swept.lock().unwrap().insert(id, state);
        }
        self.lost.fetch_add(1, Relaxed);
        self.send_errors.fetch_add(1, Relaxed);
    }

    pub fn summary(&self) -> Summary {
        let mut lat = self.latencies_us.lock().unwrap().clone();
        lat.sort_unstable();
        let pct = |p: f64| percentile_ms(&lat, p);
        let mut lags = self.send_lags_us.lock().unwrap().clone();
        lags.sort_unstable();
        let delivered = self.delivered.load(Relaxed);
        let first = self.first_send_ns.load(Relaxed);
        let last = self.last_delivery_ns.load(Relaxed);
        let rate = if delivered > 0 && last > first {
            delivered as f64 / ((last - first) as f64 / 1e9)
        } else {
            0.0
        };
        Summary {
            sent: self.sent.load(Relaxed),
            send_errors: self.send_errors.load(Relaxed),
            delivered,
            lost: self.lost.load(Relaxed),
            duplicated: self.duplicated.load(Relaxed),
            out_of_order: self.out_of_order.load(Relaxed),
            late: self.late.load(Relaxed),
            acked: self.acked.load(Relaxed),
            unacked: self.unacked.load(Relaxed),
            gaps: self.gaps.load(Relaxed),
            ws_errors: self.ws_errors.load(Relaxed),
            rate,
            p50_ms: pct(50.0),
            p90_ms: pct(90.0),
            p99_ms: pct(99.0),
            p999_ms: pct(99.9),
            max_ms: lat.last().map(|v| *v as f64 / 1000.0),
            send_lag_p50_ms: percentile_ms(&lags, 50.0),
            send_lag_p99_ms: percentile_ms(&lags, 99.0),
        }
    }
}

/// Nearest-rank percentile `p` of sorted microseconds, in milliseconds.
fn percentile_ms(sorted_us: &[u64], p: f64) -> Option<f64> {
    if sorted_us.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted_us.len() as f64).ceil() as usize;
    let i = rank.clamp(1, sorted_us.len()) - 1;
    Some(sorted_us[i] as f64 / 1000.0)
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub sent: u64,
    pub send_errors: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    pub late: u64,
    pub acked: u64,
    pub unacked: u64,
    pub gaps: u64,
    pub ws_errors: u64,
    pub rate: f64,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// How late sends left the client after their due time (included in
    /// the delivery latency, which counts from the due time).
    pub send_lag_p50_ms: Option<f64>,
    pub send_lag_p99_ms: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_round_trip() {
        let t = get();
        let (id, content) = t.new_message(12345, 64);
        assert_eq!(content.len(), 64);
        assert_eq!(Tracker::parse(&content), Some((id, 12345)));
        assert_eq!(Tracker::parse("hello"), None);
    }

    #[test]
    fn deliver_ack_dup() {
        let t = get();
        let timeout = Duration::from_secs(5);
        let due = now_ns();
        let (id, _) = t.new_message(due, 10);
        assert!(matches!(
            t.on_receive(id, due, true, true, timeout),
            Seen::Acked(_)
        ));
        assert!(matches!(
            t.on_receive(id, due, false, true, timeout),
            Seen::Delivered(_)
        ));
        // Resolved and forgotten: a repeat (seq not after the last) is a duplicate.
        assert!(matches!(
            t.on_receive(id, due, false, false, timeout),
            Seen::Duplicate(_)
        ));
        assert_eq!(t.sweep(id, timeout), Some((false, false)));
    }

    #[test]
    fn lost_after_timeout() {
        let t = get();
        let (id, _) = t.new_message(0, 10);
        // Due at the epoch, swept later than 1 ns after it.
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(t.sweep(id, Duration::from_nanos(1)), Some((true, true)));
    }
}
