//! What the cluster tests check through the nodes, shared by `cluster.rs`
//! and `cluster_faults.rs`: the views users get of a conversation, sends
//! that retry through an outage, and the frame and history accessors the
//! assertions compare.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{start_vato, Nats};
use crate::common::{frames, Api, Resp, Scene, Server, User, Ws};
use vato_client::Kind;

/// The demo conversation between lalo and kalu.
pub const CONV: u64 = 1;

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// Two vato nodes on `nats`, started at the same moment (so they also race
/// to create the stream and to seed the demo accounts).
pub async fn two_nodes(
    nats: &Nats,
    dirs: &[tempfile::TempDir; 2],
    extra: &[&str],
) -> (Server, Server) {
    let urls = nats.urls();
    tokio::join!(
        start_vato(&urls, dirs[0].path(), extra),
        start_vato(&urls, dirs[1].path(), extra),
    )
}

/// What a user sees of the cluster through one node: the conversation's
/// whole history and the conversation list (with unread counts).
pub async fn view(node: &Server, user: &User, conv: u64) -> (Vec<Value>, Value) {
    let api = node.with_token(&user.access);
    let history = api.history(conv, "limit=1000").await;
    let list = api.get("/api/chat/conversations/").await;
    assert_eq!(list.status, 200, "conversation list: {}", list.body);
    (history, list.body)
}

/// Asserts that every node shows every user the same history and list.
pub async fn assert_same_views(nodes: &[&Server], users: &[&User], conv: u64) {
    for user in users {
        let reference = view(nodes[0], user, conv).await;
        for (i, node) in nodes.iter().enumerate().skip(1) {
            let other = view(node, user, conv).await;
            assert_eq!(
                reference.0,
                other.0,
                "{}'s history differs between node 1 and node {}",
                user.username,
                i + 1
            );
            assert_eq!(
                reference.1,
                other.1,
                "{}'s conversation list differs between node 1 and node {}",
                user.username,
                i + 1
            );
        }
    }
}

/// POSTs a message with a `client_id`, retrying (same `client_id`) on 503
/// and transport errors until the node accepts it. Returns the accepting
/// answer (201, or 200 when an earlier attempt had made it after all) and
/// the number of attempts.
pub async fn send_until_ok(
    api: &Api,
    conv: u64,
    content: &str,
    client_id: &str,
    timeout: Duration,
) -> (Resp, u32) {
    let deadline = Instant::now() + timeout;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let last = match api.send(conv, content, Some(client_id)).await {
            Ok(resp) if resp.status == 201 || resp.status == 200 => return (resp, attempts),
            Ok(resp) if resp.status == 503 => format!("503 {}", resp.body),
            Ok(resp) => panic!("send {client_id}: unexpected {} {}", resp.status, resp.body),
            Err(e) => format!("transport error: {e}"),
        };
        assert!(
            Instant::now() < deadline,
            "send {client_id} not accepted within {timeout:?} ({attempts} attempts, last: {last})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The next `n` frames, each of which must be a `message.new`.
pub async fn recv_messages(ws: &mut Ws, n: usize) -> Vec<Value> {
    let mut frames = Vec::with_capacity(n);
    for _ in 0..n {
        frames.push(ws.recv_type(Kind::MessageNew.name()).await);
    }
    frames
}

/// Sends `n` messages on a socket without waiting for the echoes.
pub async fn send_burst(ws: &mut Ws, prefix: &str, n: usize) {
    for i in 0..n {
        let (content, client_id) = (format!("{prefix} {i:02}"), format!("{prefix}-{i}"));
        ws.send(frames::send(&content, Some(&client_id), None))
            .await;
    }
}

pub fn contents(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .map(|f| frames::content(f).expect("content").to_string())
        .collect()
}

/// (message id, seq) of each `message.new` frame.
pub fn ids_and_seqs(frames: &[Value]) -> Vec<(u64, u64)> {
    frames
        .iter()
        .map(|f| {
            let id = f["data"]["id"].as_u64().expect("message id");
            let seq = frames::seq(f).expect("seq");
            assert_eq!(f["data"]["seq"], seq, "frame seq vs data.seq: {f}");
            (id, seq)
        })
        .collect()
}

pub fn assert_consecutive(seqs: &[u64]) {
    for pair in seqs.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "seqs not gap-free: {seqs:?}");
    }
}

/// History (newest first) as (client_id, message id, seq), oldest first.
pub fn history_entries(history: &[Value]) -> Vec<(String, u64, u64)> {
    history
        .iter()
        .rev()
        .map(|m| {
            (
                m["client_id"].as_str().unwrap_or_default().to_string(),
                m["id"].as_u64().expect("id"),
                m["seq"].as_u64().expect("seq"),
            )
        })
        .collect()
}

pub fn listed(list: &Value, conv: u64) -> &Value {
    list.as_array()
        .expect("conversation list")
        .iter()
        .find(|c| c["id"] == conv)
        .unwrap_or_else(|| panic!("conversation {conv} not listed: {list}"))
}
