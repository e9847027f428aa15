//! The ring time of calls (issue 15), no HTTP: once a second each node
//! looks for calls ringing longer than `--call-ring-secs` and submits a
//! `CallTimeout` for each. The state machine decides whether the call is
//! still ringing at that point in the log, so a call answered meanwhile is
//! left alone and two nodes timing out the same call store one `missed`.
//! A node that was down when a call should have timed out does it when it
//! is back, as does any other node.

use std::sync::Arc;
use std::time::Duration;

use vato_eventlog::Command;

use crate::app::App;
use crate::clock::now_micros;

pub async fn run_ring_timeouts(app: Arc<App>) {
    let ring = app.config.call_ring_secs as i64 * 1_000_000;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = now_micros();
        let due: Vec<u64> = app
            .store
            .state()
            .ringing_calls()
            .into_iter()
            .filter(|c| c.started_at.saturating_add(ring) <= now)
            .map(|c| c.id)
            .collect();
        for call_id in due {
            let command = Command::CallTimeout {
                call_id,
                ring,
                at: now_micros(),
            };
            if let Err(e) = app.submit(command).await {
                tracing::debug!(call_id, "call timeout not submitted: {e}");
            }
        }
    }
}
