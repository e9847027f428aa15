//! Operating Vato (issue 16): `/metrics` after real traffic, `/readyz`
//! and the delivery probe (also across a NATS outage in cluster mode),
//! and JSON logs with request ids.

mod cluster_support;
mod common;

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

use cluster_support::{start_vato, Nats, POLL, READY_TIMEOUT};
use common::*;

/// Every sample of `/metrics`: `name{labels}` → value.
async fn scrape(server: &Server) -> HashMap<String, f64> {
    let text = reqwest::get(format!("{}/metrics", server.base))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics body");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// The sum of every sample of `name` whose labels contain each of `labels`.
fn sum(samples: &HashMap<String, f64>, name: &str, labels: &[&str]) -> f64 {
    samples
        .iter()
        .filter(|(key, _)| {
            let (metric, rest) = key.split_once('{').unwrap_or((key.as_str(), ""));
            metric == name && labels.iter().all(|l| rest.contains(l))
        })
        .map(|(_, v)| *v)
        .sum()
}

fn has(samples: &HashMap<String, f64>, name: &str) -> bool {
    samples
        .keys()
        .any(|k| k == name || k.starts_with(&format!("{name}{{")))
}

async fn readyz(base: &str) -> (u16, Value) {
    let resp = reqwest::get(format!("{base}/readyz"))
        .await
        .expect("GET /readyz");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn healthz(base: &str) -> u16 {
    reqwest::get(format!("{base}/healthz"))
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

async fn wait_ready(base: &str, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let (status, body) = readyz(base).await;
        if status == 200 {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "not ready in {timeout:?}: {body}"
        );
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test]
async fn metrics_after_traffic_show_every_series() {
    let server = Server::start(&[
        "--demo",
        "--probe-interval-secs",
        "1",
        "--max-frame-bytes",
        "1024",
    ])
    .await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let conv = lalo.direct_with(&kalu).await;
    let mut lalo_ws = lalo.ws(conv).await;
    let mut kalu_ws = kalu.ws(conv).await;

    const REST_SENDS: usize = 3;
    const WS_SENDS: usize = 5;
    for i in 0..WS_SENDS {
        send_ws(&mut lalo_ws, &format!("ws {i}"), &format!("c{i}")).await;
    }
    let mut kalus = Vec::new();
    for i in 0..REST_SENDS {
        kalus.push(kalu.send_message(conv, &format!("rest {i}")).await);
        lalo_ws.recv_type("message.new").await;
    }
    // A command the state machine refuses: lalo edits kalu's message.
    let kalus_id = kalus[0]["id"].as_u64().expect("message id");
    lalo_ws.send(frames::edit(kalus_id, "not mine")).await;
    let refused = lalo_ws.recv_type("error").await;
    assert_eq!(refused["code"], "forbidden", "{refused}");
    // Fields intake refuses (blank content), on the socket and over REST.
    lalo_ws
        .send(json!({"type": "message.send", "content": "  ", "client_id": "blank"}))
        .await;
    assert_eq!(lalo_ws.recv_type("error").await["code"], "invalid");
    let blank = answered(lalo.send(conv, "   ", None).await);
    assert_eq!(blank.status, 400, "{}", blank.body);
    // A frame the parser refuses, and a ping.
    lalo_ws.send_text("not json").await;
    assert_eq!(lalo_ws.recv_type("error").await["code"], "bad_json");
    lalo_ws.ping().await;
    // An unknown path (counted as `unmatched`, never by its raw path).
    assert_eq!(
        lalo.get("/api/no-such-thing/").await.status,
        404,
        "unknown path"
    );
    // kalu's socket saw all eight messages.
    for _ in 0..REST_SENDS + WS_SENDS {
        kalu_ws.recv_type("message.new").await;
    }
    // An oversize frame closes kalu's socket with 1009.
    kalu_ws
        .send(json!({"type": "message.send", "content": "x".repeat(4096)}))
        .await;
    let (_, code) = kalu_ws.until_close().await;
    assert_eq!(code, Some(1009));
    wait_ready(&server.base, Duration::from_secs(10)).await;

    // The close is counted once the server's writer has sent it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let m = loop {
        let m = scrape(&server).await;
        if sum(&m, "vato_ws_closes_total", &[r#"code="1009""#]) >= 1.0
            && sum(&m, "vato_probe_latency_seconds_count", &[]) >= 1.0
            && sum(&m, "vato_ws_connections", &[]) == 1.0
        {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "no 1009 close, probe or socket count"
        );
        tokio::time::sleep(POLL).await;
    };
    let sent = (REST_SENDS + WS_SENDS) as f64;

    // Histograms.
    assert!(sum(&m, "vato_ack_latency_seconds_count", &[]) >= sent);
    assert!(sum(&m, "vato_ack_latency_seconds_sum", &[]) > 0.0);
    assert!(sum(&m, "vato_ack_latency_seconds_bucket", &[r#"le="+Inf""#]) >= sent);
    assert!(sum(&m, "vato_fan_out_latency_seconds_count", &[]) >= 1.0);
    let commits = sum(&m, "vato_group_commit_events_count", &[]);
    assert!(commits >= 1.0);
    // Every message is one event of some group commit.
    assert!(sum(&m, "vato_group_commit_events_sum", &[]) >= sent);
    assert_eq!(
        sum(&m, "vato_group_commit_sync_seconds_count", &[]),
        commits
    );
    assert!(sum(&m, "vato_group_commit_sync_seconds_sum", &[]) > 0.0);
    // The ack's parts: its wait for the writer, the batch's decide and
    // apply, and the task's wake-up after the commit.
    assert!(sum(&m, "vato_command_queue_seconds_count", &[]) >= sent);
    assert!(sum(&m, "vato_group_commit_apply_seconds_count", &[]) >= commits);
    assert_eq!(
        sum(&m, "vato_ack_wake_seconds_count", &[]),
        sum(&m, "vato_ack_latency_seconds_count", &[])
    );
    assert!(sum(&m, "vato_probe_latency_seconds_count", &[]) >= 1.0);
    // Counters.
    assert!(sum(&m, "vato_ws_frames_in_total", &[r#"type="message.send""#]) >= WS_SENDS as f64);
    assert!(sum(&m, "vato_ws_frames_in_total", &[r#"type="message.edit""#]) >= 1.0);
    assert!(sum(&m, "vato_ws_frames_in_total", &[r#"type="refused""#]) >= 1.0);
    assert!(sum(&m, "vato_ws_frames_in_total", &[r#"type="ping""#]) >= 1.0);
    // Each message reaches two sockets (the sender's own echo included).
    assert!(sum(&m, "vato_ws_frames_out_total", &[r#"type="message.new""#]) >= 2.0 * sent);
    assert!(sum(&m, "vato_ws_frames_out_total", &[r#"type="error""#]) >= 2.0);
    assert!(sum(&m, "vato_ws_frames_out_total", &[r#"type="pong""#]) >= 1.0);
    assert!(sum(&m, "vato_ws_closes_total", &[r#"code="1009""#]) >= 1.0);
    assert!(
        sum(
            &m,
            "vato_http_requests_total",
            &[
                r#"route="/api/chat/conversations/{cid}/messages/""#,
                r#"method="POST""#,
                r#"status="201""#
            ]
        ) >= REST_SENDS as f64
    );
    assert!(
        sum(
            &m,
            "vato_http_requests_total",
            &[r#"route="unmatched""#, r#"status="404""#]
        ) >= 1.0
    );
    assert!(
        !m.keys().any(|k| k.contains("no-such-thing")),
        "a raw path became a label"
    );
    assert!(
        sum(
            &m,
            "vato_commands_rejected_total",
            &[r#"reason="not_your_message""#]
        ) >= 1.0
    );
    assert!(
        sum(
            &m,
            "vato_commands_rejected_total",
            &[r#"reason="intake_content""#]
        ) >= 2.0
    );
    // Gauges.
    assert_eq!(sum(&m, "vato_ws_connections", &[]), 1.0, "lalo's socket");
    assert!(has(&m, "vato_ws_outbound_queue_high_water"));
    assert!(has(&m, "vato_projector_pending_events"));
    assert!(sum(&m, "vato_log_events", &[]) >= sent);
    let last_probe = sum(&m, "vato_probe_last_success_timestamp_seconds", &[]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!(
        (now - last_probe).abs() < 60.0,
        "last probe at {last_probe}, now {now}"
    );
    // The probe's event is in no conversation anyone sees.
    assert_eq!(lalo.history(conv, "").await.len(), REST_SENDS + WS_SENDS);
    let listed = answered(lalo.conversations().await).body;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
}

#[tokio::test]
async fn readyz_names_the_probe_and_healthz_stays_cheap() {
    let off = Server::start(&["--dev", "--probe-interval-secs", "0"]).await;
    let (status, body) = readyz(&off.base).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["probe"]["ok"], true);
    assert!(body["checks"]["probe"]["detail"]
        .as_str()
        .is_some_and(|d| d.contains("disabled")));

    let on = Server::start(&["--dev", "--probe-interval-secs", "1"]).await;
    let body = wait_ready(&on.base, Duration::from_secs(10)).await;
    assert_eq!(body["failing"], json!([]));
    for check in ["writable", "caught_up", "probe"] {
        assert_eq!(body["checks"][check]["ok"], true, "{body}");
    }
    assert_eq!(healthz(&on.base).await, 200);
}

#[tokio::test]
async fn bad_probe_and_log_flags_are_refused_at_start() {
    for args in [
        ["--dev", "--probe-interval-secs", "86401"],
        ["--dev", "--probe-interval-secs", "ten"],
        ["--dev", "--log-format", "xml"],
    ] {
        let out = run_to_exit(&args).await;
        assert!(!out.status.success(), "{args:?} started");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(args[1]), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn readyz_turns_503_while_nats_is_down_and_recovers() {
    let mut nats = Nats::single().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let node = start_vato(&nats.urls(), dir.path(), &["--probe-interval-secs", "1"]).await;
    wait_ready(&node.base, READY_TIMEOUT).await;

    nats.kill(0);
    let killed = Instant::now();
    let body = loop {
        let (status, body) = readyz(&node.base).await;
        assert_eq!(healthz(&node.base).await, 200, "liveness stays up");
        if status == 503 {
            break body;
        }
        // Three probe intervals, and a second for scheduling on a busy
        // two-core host.
        assert!(
            killed.elapsed() < Duration::from_secs(4),
            "still ready {:?} after NATS died: {body}",
            killed.elapsed()
        );
        tokio::time::sleep(POLL).await;
    };
    assert_eq!(body["status"], "not_ready");
    let failing = body["failing"].as_array().expect("failing list");
    assert!(failing.contains(&json!("writable")), "{body}");
    // It stays 503 while NATS is away, and the probe fails too.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let (status, body) = readyz(&node.base).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["probe"]["ok"], false, "{body}");
    assert_eq!(healthz(&node.base).await, 200);

    nats.restart(0).await;
    let body = wait_ready(&node.base, READY_TIMEOUT).await;
    assert_eq!(body["checks"]["caught_up"]["ok"], true, "{body}");
    // Writes work again.
    let lalo = node.login("lalo", "lalo123").await;
    let kalu = node.login("kalu", "kalu123").await;
    let conv = lalo.direct_with(&kalu).await;
    lalo.send_message(conv, "after the outage").await;
    let failures = scrape(&node).await;
    assert!(sum(&failures, "vato_probe_failures_total", &[]) >= 1.0);
    assert!(has(&failures, "vato_stream_lag"));
    assert!(sum(&failures, "vato_nats_publish_latency_seconds_count", &[]) >= 1.0);
}

#[tokio::test]
async fn json_logs_carry_the_request_id() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_vato-server"))
        .args(["--dev", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .arg("--data-dir")
        .arg(dir.path())
        .env("VATO_LOG", "vato_server=debug,info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn vato-server");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let base = tokio::time::timeout(TIMEOUT, async {
        while let Some(line) = stdout.next_line().await.expect("stdout") {
            if let Some(address) = line.strip_prefix("vato-server listening on ") {
                return address.trim().to_string();
            }
        }
        panic!("vato-server exited before listening");
    })
    .await
    .expect("vato-server did not start");
    let resp = reqwest::Client::new()
        .get(format!("{base}/api/"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .expect("GET /api/");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "trace-me-42");
    // Without one, the server makes one up and says which.
    let resp = reqwest::get(format!("{base}/healthz"))
        .await
        .expect("healthz");
    assert!(resp.headers().contains_key("x-request-id"));

    let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let line = tokio::time::timeout(TIMEOUT, async {
        while let Some(line) = stderr.next_line().await.expect("stderr") {
            let Ok(entry) = serde_json::from_str::<Value>(&line) else {
                panic!("not a JSON log line: {line}");
            };
            if entry["span"]["request_id"] == "trace-me-42" {
                return entry;
            }
        }
        panic!("no log line with the request id");
    })
    .await
    .expect("no log line with the request id in time");
    assert_eq!(line["span"]["route"], "/api/");
    assert_eq!(line["fields"]["status"], 200, "{line}");
    child.kill().await.expect("kill");
}

/// The dashboard parses and every series it asks for is one the server
/// exports (all are named in `telemetry.rs`): a renamed metric breaks this
/// test, not a panel nobody looks at until an incident.
#[test]
fn the_grafana_dashboard_names_only_exported_series() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dashboard = std::fs::read_to_string(root.join("deploy/grafana/vato.json"))
        .expect("deploy/grafana/vato.json");
    let dashboard: Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    let telemetry = include_str!("../src/telemetry.rs");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10, "{} panels", panels.len());
    let mut names = Vec::new();
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            let mut rest = expr;
            while let Some(at) = rest.find("vato_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                names.push(name);
            }
        }
    }
    assert!(!names.is_empty());
    for name in names {
        let base = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(&name);
        assert!(
            telemetry.contains(&format!("\"{base}\"")),
            "the dashboard asks for {name}, which the server does not export"
        );
    }
}

/// Closes are counted by their code: a member removed from a group has
/// their socket closed with 4403.
#[tokio::test]
async fn a_removed_members_close_is_counted_as_4403() {
    let server = Server::start(&["--demo", "--probe-interval-secs", "0"]).await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let group = answered(lalo.create_group("crew", &[kalu.id]).await)
        .id()
        .expect("group id");
    let mut kalu_ws = kalu.ws(group).await;
    assert_eq!(answered(kalu.leave(group).await).status, 200);
    let (_, code) = kalu_ws.until_close().await;
    assert_eq!(code, Some(4403));
    let deadline = Instant::now() + Duration::from_secs(10);
    while sum(
        &scrape(&server).await,
        "vato_ws_closes_total",
        &[r#"code="4403""#],
    ) < 1.0
    {
        assert!(Instant::now() < deadline, "no 4403 close counted");
        tokio::time::sleep(POLL).await;
    }
    let m = scrape(&server).await;
    assert_eq!(sum(&m, "vato_ws_closes_total", &[r#"code="1009""#]), 0.0);
}
