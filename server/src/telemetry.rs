//! Metrics (issue 16) through the `metrics` facade and its Prometheus
//! exporter: the recorder is installed once per process, `/metrics`
//! renders it. The store's writer and projector record through the same
//! facade (`vato-eventlog` depends on `metrics` only, never on HTTP).
//!
//! Hot paths (socket frames, acks, fan-out) use handles created once here,
//! so recording is an atomic add; colder paths (HTTP requests, closes,
//! rejections) use the macros with their labels. One process has one
//! recorder: several servers started in one test process share it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Once, OnceLock};
use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::Instrument;
use vato_eventlog::Command;

use crate::app::App;

/// Seconds: from 50 µs (an ack on tmpfs) to 10 s (a stuck cluster).
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];
/// Events per group commit.
const SIZE_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
static HOT: OnceLock<Hot> = OnceLock::new();
static UPKEEP: Once = Once::new();

/// Installs the process's recorder (once) and returns its handle.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full("vato_group_commit_events".into()), SIZE_BUCKETS)
            });
        let builder = match builder {
            Ok(builder) => builder,
            Err(e) => {
                tracing::warn!("metrics buckets refused ({e}); histograms become summaries");
                PrometheusBuilder::new()
            }
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics shows only the gauges it sets itself");
        }
        describe();
        handle
    })
}

/// Drains the histograms' buckets into the handle now and then, as the
/// exporter asks of a recorder installed without its own listener.
pub fn spawn_upkeep() {
    UPKEEP.call_once(|| {
        let handle = install();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                handle.run_upkeep();
            }
        });
    });
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_histogram!(
        "vato_ack_latency_seconds",
        Unit::Seconds,
        "A command from the sequencer's begin to its durable outcome"
    );
    describe_histogram!(
        "vato_command_queue_seconds",
        Unit::Seconds,
        "A command from queued for the store's writer to taken into a group commit"
    );
    describe_histogram!(
        "vato_group_commit_apply_seconds",
        Unit::Seconds,
        "One group commit's decide and apply, with its wait for the state's lock"
    );
    describe_histogram!(
        "vato_ack_wake_seconds",
        Unit::Seconds,
        "A command from its group commit durable to its task reading the answer"
    );
    describe_histogram!(
        "vato_fan_out_latency_seconds",
        Unit::Seconds,
        "A batch from durable to queued on its last member socket"
    );
    describe_histogram!(
        "vato_group_commit_events",
        "Events written per group commit"
    );
    describe_histogram!(
        "vato_group_commit_sync_seconds",
        Unit::Seconds,
        "One group commit's WAL write and fdatasync"
    );
    describe_histogram!(
        "vato_nats_publish_latency_seconds",
        Unit::Seconds,
        "Cluster mode: a command's JetStream publish until its ack"
    );
    describe_histogram!(
        "vato_probe_latency_seconds",
        Unit::Seconds,
        "The delivery probe: command to the node's own subscriber"
    );
    describe_counter!("vato_ws_frames_in_total", "Socket frames read, by type");
    describe_counter!(
        "vato_ws_frames_out_total",
        "Socket text frames written, by type"
    );
    describe_counter!(
        "vato_ws_closes_total",
        "Sockets closed by the server, by code"
    );
    describe_counter!(
        "vato_http_requests_total",
        "HTTP requests by route template, method and status"
    );
    describe_counter!(
        "vato_commands_rejected_total",
        "Commands the state machine refused, by reason"
    );
    describe_counter!(
        "vato_commands_unavailable_total",
        "Commands the log could not take (503 / unavailable)"
    );
    describe_counter!("vato_probe_failures_total", "Delivery probes that failed");
    describe_gauge!("vato_ws_connections", "Open WebSocket connections");
    describe_gauge!(
        "vato_ws_outbound_queue_high_water",
        "Most frames waiting in one socket's queue since the last scrape"
    );
    describe_gauge!("vato_log_events", "Events in the log");
    describe_gauge!(
        "vato_projector_pending_events",
        "Events durable in the WAL and not yet projected into sled"
    );
    describe_gauge!(
        "vato_stream_lag",
        "Cluster mode: stream commands not yet applied here"
    );
    describe_gauge!(
        "vato_probe_last_success_timestamp_seconds",
        "Unix time of the last delivery probe that succeeded"
    );
}

/// Inbound frame types counted by name; anything else is `other`.
const IN_TYPES: [&str; 9] = [
    "ping",
    "sync",
    "typing",
    "message.send",
    "message.read",
    "message.edit",
    "message.delete",
    "other",
    "refused",
];
/// Outbound text frame types counted by name; anything else is `other`.
const OUT_TYPES: [&str; 14] = [
    "message.new",
    "message.edited",
    "message.deleted",
    "message.read",
    "reaction.added",
    "reaction.removed",
    "member.added",
    "member.removed",
    "typing",
    "pong",
    "error",
    "sync.done",
    "other",
    "busy",
];

/// Handles for the hot paths, created once.
pub struct Hot {
    pub ack: Histogram,
    pub ack_wake: Histogram,
    pub fan_out: Histogram,
    pub nats_publish: Histogram,
    frames_in: Vec<Counter>,
    frames_out: Vec<Counter>,
}

pub fn hot() -> &'static Hot {
    HOT.get_or_init(|| {
        install();
        Hot {
            ack: metrics::histogram!("vato_ack_latency_seconds"),
            ack_wake: metrics::histogram!("vato_ack_wake_seconds"),
            fan_out: metrics::histogram!("vato_fan_out_latency_seconds"),
            nats_publish: metrics::histogram!("vato_nats_publish_latency_seconds"),
            frames_in: IN_TYPES
                .iter()
                .map(|t| metrics::counter!("vato_ws_frames_in_total", "type" => *t))
                .collect(),
            frames_out: OUT_TYPES
                .iter()
                .map(|t| metrics::counter!("vato_ws_frames_out_total", "type" => *t))
                .collect(),
        }
    })
}

impl Hot {
    /// One inbound frame of this type (a name from the protocol, or
    /// `refused` for one the parser refused).
    pub fn frame_in(&self, kind: &str) {
        let i = IN_TYPES.iter().position(|t| *t == kind).unwrap_or(7);
        self.frames_in[i].increment(1);
    }

    /// One inbound command frame, by what it asks.
    pub fn command_in(&self, command: &Command) {
        self.frame_in(match command {
            Command::PostMessage { .. } => "message.send",
            Command::MarkRead { .. } => "message.read",
            Command::EditMessage { .. } => "message.edit",
            Command::DeleteMessage { .. } => "message.delete",
            _ => "other",
        });
    }

    /// One outbound text frame; its type is read from the rendered text
    /// (every frame starts with `{"type":"...`), without parsing it.
    pub fn frame_out(&self, text: &str) {
        let kind = text
            .strip_prefix("{\"type\":\"")
            .and_then(|rest| rest.split('"').next())
            .unwrap_or("other");
        let i = OUT_TYPES.iter().position(|t| *t == kind).unwrap_or(12);
        self.frames_out[i].increment(1);
    }
}

/// A command's fields refused by intake (before the sequencer), by the
/// field at fault (`detail` for the request as a whole).
pub fn refused_at_intake(field: Option<&'static str>) {
    let reason = format!("intake_{}", field.unwrap_or("detail"));
    metrics::counter!("vato_commands_rejected_total", "reason" => reason).increment(1);
}

/// A socket closed by the server with `code`.
pub fn socket_closed(code: u16) {
    let code: &'static str = match code {
        1000 => "1000",
        1001 => "1001",
        1002 => "1002",
        1009 => "1009",
        1011 => "1011",
        1012 => "1012",
        4403 => "4403",
        4404 => "4404",
        4408 => "4408",
        _ => "other",
    };
    metrics::counter!("vato_ws_closes_total", "code" => code).increment(1);
}

/// The `/metrics` body: the gauges read at scrape time, then everything
/// the recorder holds.
pub fn render(app: &App) -> String {
    let handle = install();
    metrics::gauge!("vato_ws_connections").set(app.open_connections() as f64);
    metrics::gauge!("vato_log_events").set(app.store.state().next_offset as f64);
    metrics::gauge!("vato_ws_outbound_queue_high_water")
        .set(app.hub.take_queue_high_water() as f64);
    if let Some(cluster) = app.sequencer.cluster() {
        metrics::counter!("vato_nats_slow_consumer_total")
            .absolute(cluster.slow_consumers.load(Ordering::Relaxed));
        metrics::gauge!("vato_nats_connected").set(f64::from(u8::from(cluster.connected())));
        metrics::gauge!("vato_stream_applied_position").set(cluster.applied_position() as f64);
    }
    handle.render()
}

/// Every HTTP request: a span with its request id (the client's
/// `X-Request-Id` if it sent a sane one, else a fresh one, echoed back),
/// and a count by route template (never the raw path), method and status.
pub async fn http(matched: Option<MatchedPath>, request: Request, next: Next) -> Response {
    let route: Arc<str> = match &matched {
        Some(path) => path.as_str().into(),
        None => "unmatched".into(),
    };
    let method = request.method().as_str().to_owned();
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(new_request_id, str::to_owned);
    let span =
        tracing::info_span!("http", request_id = %request_id, method = %method, route = %route);
    let started = std::time::Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    // The access log, at debug (`VATO_LOG=vato_server=debug`).
    tracing::debug!(
        parent: &span,
        status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "answered"
    );
    metrics::counter!(
        "vato_http_requests_total",
        "route" => route.to_string(),
        "method" => method,
        "status" => response.status().as_str().to_owned(),
    )
    .increment(1);
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// A request id unique in this process and unlikely to repeat across
/// nodes: a random per-process prefix and a counter.
fn new_request_id() -> String {
    static PREFIX: OnceLock<u32> = OnceLock::new();
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let prefix = PREFIX.get_or_init(rand::random);
    format!("{prefix:08x}-{:x}", NEXT.fetch_add(1, Ordering::Relaxed))
}
