//! Cluster mode end to end: real `nats-server` processes (one JetStream
//! server, or a three-node JetStream cluster) and several real `vato-server`
//! nodes sharing one stream, driven over REST and WebSocket as clients would.
//!
//! 1. Users on two nodes chat in real time; every node shows the same
//!    history, seqs and unread counts.
//! 2. Racing registrations and create-directs on two nodes resolve to one
//!    outcome that both nodes agree on.
//! 3. A SIGKILLed node restarted on its data dir, and a new node with an
//!    empty one, catch up before they serve.
//! 4. NATS killed and restarted: writes fail fast meanwhile (503 /
//!    `unavailable`), nothing acknowledged is lost, the nodes resume by
//!    themselves, a socket resumes with `since`.
//! 5. One server of a three-node NATS cluster (stream replicas 3) killed
//!    under load: nothing acknowledged is lost, nothing is duplicated, the
//!    chat goes on.

mod cluster_support;
mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use cluster_support::{start_vato, wait_converged, wait_metric, Nats, POLL};
use common::{messages_path, Api, Resp, Server, User, Ws, PASSWORD};

/// The demo conversation between lalo and kalu.
const CONV: u64 = 1;

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// Two vato nodes on `nats`, started at the same moment (so they also race
/// to create the stream and to seed the demo accounts).
async fn two_nodes(nats: &Nats, dirs: &[tempfile::TempDir; 2], extra: &[&str]) -> (Server, Server) {
    let urls = nats.urls();
    tokio::join!(
        start_vato(&urls, dirs[0].path(), extra),
        start_vato(&urls, dirs[1].path(), extra),
    )
}

/// What a user sees of the cluster through one node: the conversation's
/// whole history and the conversation list (with unread counts).
async fn view(node: &Server, user: &User, conv: u64) -> (Vec<Value>, Value) {
    let api = node.with_token(&user.access);
    let history = api.history(conv, "limit=1000").await;
    let list = api.get("/api/chat/conversations/").await;
    assert_eq!(list.status, 200, "conversation list: {}", list.body);
    (history, list.body)
}

/// Asserts that every node shows every user the same history and list.
async fn assert_same_views(nodes: &[&Server], users: &[&User], conv: u64) {
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
async fn send_until_ok(
    api: &Api,
    conv: u64,
    content: &str,
    client_id: &str,
    timeout: Duration,
) -> (Resp, u32) {
    let deadline = Instant::now() + timeout;
    let body = json!({"content": content, "client_id": client_id});
    let mut attempts = 0;
    loop {
        attempts += 1;
        let last = match api
            .try_request(Method::POST, &messages_path(conv), Some(body.clone()))
            .await
        {
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
async fn recv_messages(ws: &mut Ws, n: usize) -> Vec<Value> {
    let mut frames = Vec::with_capacity(n);
    for _ in 0..n {
        frames.push(ws.recv_type("message.new").await);
    }
    frames
}

/// Sends `n` messages on a socket without waiting for the echoes.
async fn send_burst(ws: &mut Ws, prefix: &str, n: usize) {
    for i in 0..n {
        ws.send(json!({
            "type": "message.send",
            "content": format!("{prefix} {i:02}"),
            "client_id": format!("{prefix}-{i}"),
        }))
        .await;
    }
}

fn contents(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .map(|f| f["data"]["content"].as_str().expect("content").to_string())
        .collect()
}

/// (message id, seq) of each `message.new` frame.
fn ids_and_seqs(frames: &[Value]) -> Vec<(u64, u64)> {
    frames
        .iter()
        .map(|f| {
            let id = f["data"]["id"].as_u64().expect("message id");
            let seq = f["seq"].as_u64().expect("seq");
            assert_eq!(f["data"]["seq"], seq, "frame seq vs data.seq: {f}");
            (id, seq)
        })
        .collect()
}

fn assert_consecutive(seqs: &[u64]) {
    for pair in seqs.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "seqs not gap-free: {seqs:?}");
    }
}

/// History (newest first) as (client_id, message id, seq), oldest first.
fn history_entries(history: &[Value]) -> Vec<(String, u64, u64)> {
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

fn listed(list: &Value, conv: u64) -> &Value {
    list.as_array()
        .expect("conversation list")
        .iter()
        .find(|c| c["id"] == conv)
        .unwrap_or_else(|| panic!("conversation {conv} not listed: {list}"))
}

#[tokio::test]
async fn users_on_two_nodes_chat_in_real_time() {
    let started = Instant::now();
    let nats = Nats::single().await;
    let dirs = [tempdir(), tempdir()];
    let (n1, n2) = two_nodes(&nats, &dirs, &[]).await;
    let lalo = n1.login("lalo", "lalo123").await;
    let kalu = n2.login("kalu", "kalu123").await;

    // A token issued by node 1 works on node 2 (shared --jwt-secret).
    let me = n2
        .with_token(&lalo.access)
        .get("/api/auth/profile/me/")
        .await;
    assert_eq!(me.status, 200, "node 1's token on node 2: {}", me.body);
    assert_eq!(me.body["id"], lalo.id);

    let mut a = lalo.ws(CONV).await; // on node 1
    let mut b = kalu.ws(CONV).await; // on node 2
    let mut seen_by_a = Vec::new();

    // A (node 1) → B (node 2): exact content, echo to the sender.
    let hello = "¡Hola desde el nodo 1! ✓ \"quoted\" <b>tags</b> \u{1F600}";
    a.send(json!({"type": "message.send", "content": hello, "client_id": "a-hello"}))
        .await;
    let echo = a.recv_type("message.new").await;
    let got = b.recv_type("message.new").await;
    for frame in [&echo, &got] {
        assert_eq!(frame["data"]["content"], hello, "{frame}");
        assert_eq!(frame["data"]["sender"]["id"], lalo.id, "{frame}");
        assert_eq!(frame["client_id"], "a-hello", "{frame}");
    }
    assert_eq!(
        ids_and_seqs(std::slice::from_ref(&echo)),
        ids_and_seqs(std::slice::from_ref(&got))
    );
    seen_by_a.push(echo);

    // B (node 2) → A (node 1).
    let reply = "Respuesta desde el nodo 2 — ñandú";
    b.send(json!({"type": "message.send", "content": reply, "client_id": "b-reply"}))
        .await;
    let echo = b.recv_type("message.new").await;
    let got = a.recv_type("message.new").await;
    for frame in [&echo, &got] {
        assert_eq!(frame["data"]["content"], reply, "{frame}");
        assert_eq!(frame["data"]["sender"]["id"], kalu.id, "{frame}");
        assert_eq!(frame["client_id"], "b-reply", "{frame}");
    }
    assert_eq!(
        ids_and_seqs(std::slice::from_ref(&echo)),
        ids_and_seqs(std::slice::from_ref(&got))
    );
    seen_by_a.push(got);

    // A burst of 20 from node 1 arrives in order on both nodes.
    send_burst(&mut a, "burst", 20).await;
    let burst_a = recv_messages(&mut a, 20).await;
    let burst_b = recv_messages(&mut b, 20).await;
    let expected: Vec<String> = (0..20).map(|i| format!("burst {i:02}")).collect();
    assert_eq!(contents(&burst_a), expected, "sender's echoes out of order");
    assert_eq!(
        contents(&burst_b),
        expected,
        "receiver got the burst out of order"
    );
    assert_eq!(ids_and_seqs(&burst_a), ids_and_seqs(&burst_b));
    let seqs: Vec<u64> = ids_and_seqs(&burst_a).iter().map(|p| p.1).collect();
    assert_consecutive(&seqs);
    let burst_last = ids_and_seqs(&burst_a)[19].0;
    seen_by_a.extend(burst_a);

    // Both send at once from both nodes: both sockets see one total order,
    // which keeps each sender's own order.
    tokio::join!(
        send_burst(&mut a, "a-both", 10),
        send_burst(&mut b, "b-both", 10)
    );
    let both_a = recv_messages(&mut a, 20).await;
    let both_b = recv_messages(&mut b, 20).await;
    assert_eq!(
        ids_and_seqs(&both_a),
        ids_and_seqs(&both_b),
        "the nodes delivered different orders"
    );
    assert_eq!(contents(&both_a), contents(&both_b));
    let seqs: Vec<u64> = ids_and_seqs(&both_a).iter().map(|p| p.1).collect();
    assert_consecutive(&seqs);
    assert_eq!(seqs[0], ids_and_seqs(&seen_by_a).last().unwrap().1 + 1);
    for prefix in ["a-both", "b-both"] {
        let own: Vec<String> = contents(&both_a)
            .into_iter()
            .filter(|c| c.starts_with(prefix))
            .collect();
        let expected: Vec<String> = (0..10).map(|i| format!("{prefix} {i:02}")).collect();
        assert_eq!(own, expected, "{prefix}'s messages out of order");
    }
    seen_by_a.extend(both_a);

    // Typing crosses nodes over core NATS.
    a.send(json!({"type": "typing", "is_typing": true})).await;
    let typing = b.recv_type("typing").await;
    assert_eq!(typing["user_id"], lalo.id, "{typing}");
    assert_eq!(typing["username"], "lalo", "{typing}");
    assert_eq!(typing["is_typing"], true, "{typing}");

    // kalu reads up to the end of the burst, through node 2.
    let read = kalu
        .post(
            &format!("/api/chat/conversations/{CONV}/messages/{burst_last}/read/"),
            json!({}),
        )
        .await;
    assert_eq!(read.status, 200, "read: {}", read.body);
    for ws in [&mut a, &mut b] {
        let frame = ws.recv_type("message.read").await;
        assert_eq!(frame["message_id"], burst_last, "{frame}");
        assert_eq!(frame["user_id"], kalu.id, "{frame}");
    }

    // After the traffic every node shows everyone the same thing.
    wait_converged(&nats, &[&n1, &n2]).await;
    assert_same_views(&[&n1, &n2], &[&lalo, &kalu], CONV).await;
    let (history, lalo_list) = view(&n1, &lalo, CONV).await;
    let (_, kalu_list) = view(&n2, &kalu, CONV).await;
    let history_ids: Vec<(u64, u64)> = history_entries(&history)
        .iter()
        .map(|(_, id, seq)| (*id, *seq))
        .collect();
    assert_eq!(
        history_ids,
        ids_and_seqs(&seen_by_a),
        "history differs from what the sockets saw"
    );
    // lalo never read: kalu's reply and kalu's 10. kalu read up to the
    // burst: lalo's 10 after it.
    assert_eq!(listed(&lalo_list, CONV)["unread_count"], 11);
    assert_eq!(listed(&kalu_list, CONV)["unread_count"], 10);
    eprintln!("chat across nodes: {:?}", started.elapsed());
}

#[tokio::test]
async fn racing_registers_and_create_directs_resolve_to_one_outcome() {
    let started = Instant::now();
    let nats = Nats::single().await;
    let dirs = [tempdir(), tempdir()];
    let (n1, n2) = two_nodes(&nats, &dirs, &[]).await;

    // The same new username registered at both nodes at the same moment.
    for round in 0..3 {
        let username = format!("racer{round}");
        let body = |node: u8| {
            json!({
                "username": username,
                "password": PASSWORD,
                "password2": PASSWORD,
                "display_name": format!("registered on node {node}"),
            })
        };
        let (anon1, anon2) = (n1.anon(), n2.anon());
        let (r1, r2) = tokio::join!(
            anon1.post("/api/auth/register/", body(1)),
            anon2.post("/api/auth/register/", body(2)),
        );
        let mut statuses = [r1.status, r2.status];
        statuses.sort_unstable();
        assert_eq!(
            statuses,
            [201, 400],
            "{username}: node 1 {} {}, node 2 {} {}",
            r1.status,
            r1.body,
            r2.status,
            r2.body
        );
        let (winner, loser, winning_node) = if r1.status == 201 {
            (&r1, &r2, 1)
        } else {
            (&r2, &r1, 2)
        };
        let taken = loser.body["username"]
            .as_array()
            .unwrap_or_else(|| panic!("400 without a username error: {}", loser.body));
        assert!(!taken.is_empty(), "{}", loser.body);
        let id = winner.body["user"]["id"].as_u64().expect("user id");

        wait_converged(&nats, &[&n1, &n2]).await;
        for node in [&n1, &n2] {
            let user = node.login(&username, PASSWORD).await;
            assert_eq!(user.id, id, "{username}: the nodes disagree on the id");
            let me = user.get("/api/auth/profile/me/").await;
            assert_eq!(
                me.body["display_name"],
                format!("registered on node {winning_node}"),
                "{username}: the nodes disagree on who registered"
            );
        }
    }

    // create-direct of one new pair from both nodes at once, twice: by both
    // members (one on each node), and by the same member on both nodes.
    let p = n1.register("pair-p").await;
    let q = n2.register("pair-q").await;
    let r = n1.register("pair-r").await;
    let s = n2.register("pair-s").await;
    wait_converged(&nats, &[&n1, &n2]).await;
    let cases = [
        (
            &p,
            &q,
            n1.with_token(&p.access),
            n2.with_token(&q.access),
            q.id,
            p.id,
        ),
        (
            &r,
            &s,
            n1.with_token(&r.access),
            n2.with_token(&r.access),
            s.id,
            s.id,
        ),
    ];
    for (x, y, api1, api2, other1, other2) in cases {
        let path = "/api/chat/conversations/create-direct/";
        let (c1, c2) = tokio::join!(
            api1.post(path, json!({"user_id": other1})),
            api2.post(path, json!({"user_id": other2})),
        );
        let mut statuses = [c1.status, c2.status];
        statuses.sort_unstable();
        assert_eq!(
            statuses,
            [200, 201],
            "{}-{}: node 1 {} {}, node 2 {} {}",
            x.username,
            y.username,
            c1.status,
            c1.body,
            c2.status,
            c2.body
        );
        let conv = c1.body["id"].as_u64().expect("conversation id");
        assert_eq!(
            c2.body["id"], conv,
            "the nodes answered different conversations"
        );

        wait_converged(&nats, &[&n1, &n2]).await;
        for node in [&n1, &n2] {
            for user in [x, y] {
                let list = node
                    .with_token(&user.access)
                    .get("/api/chat/conversations/")
                    .await;
                assert_eq!(list.status, 200);
                let directs: Vec<u64> = list
                    .body
                    .as_array()
                    .expect("list")
                    .iter()
                    .filter(|c| c["conversation_type"] == "direct")
                    .filter(|c| {
                        let mut members: Vec<u64> = c["members"]
                            .as_array()
                            .expect("members")
                            .iter()
                            .map(|m| m["user"]["id"].as_u64().expect("member id"))
                            .collect();
                        members.sort_unstable();
                        let mut pair = vec![x.id, y.id];
                        pair.sort_unstable();
                        members == pair
                    })
                    .map(|c| c["id"].as_u64().expect("id"))
                    .collect();
                assert_eq!(
                    directs,
                    vec![conv],
                    "{} on {}: not exactly one direct conversation with the pair",
                    user.username,
                    node.base
                );
            }
        }
    }
    eprintln!("racing writes: {:?}", started.elapsed());
}

#[tokio::test]
async fn killed_node_and_late_node_catch_up_before_serving() {
    let started = Instant::now();
    let nats = Nats::single().await;
    let urls = nats.urls();
    let dirs = [tempdir(), tempdir()];
    let (n1, n2) = two_nodes(&nats, &dirs, &[]).await;
    let lalo = n1.login("lalo", "lalo123").await;
    let kalu = n2.login("kalu", "kalu123").await;
    for i in 0..5 {
        lalo.send_message(CONV, &format!("before the kill, lalo {i}"))
            .await;
        kalu.send_message(CONV, &format!("before the kill, kalu {i}"))
            .await;
    }
    wait_converged(&nats, &[&n1, &n2]).await;

    // SIGKILL node 2; the cluster goes on without it.
    n2.kill9().await;
    const N: usize = 40;
    for i in 0..N {
        lalo.send_message(CONV, &format!("while node 2 is down {i}"))
            .await;
    }
    // Directory changes too: a new user and a new conversation.
    let newcomer = n1.register("newcomer").await;
    let newcomer_conv = lalo.direct_with(&newcomer).await;
    lalo.send_message(newcomer_conv, "welcome").await;
    let expected = view(&n1, &lalo, CONV).await;
    assert_eq!(expected.0.len(), 10 + N);

    // Restarted on its data dir, it has caught up by the time it listens.
    let n2 = start_vato(&urls, dirs[1].path(), &[]).await;
    assert_eq!(
        view(&n2, &lalo, CONV).await,
        expected,
        "the restarted node serves before catching up"
    );
    assert_eq!(
        view(&n2, &newcomer, newcomer_conv).await,
        view(&n1, &newcomer, newcomer_conv).await
    );

    // A third node on an empty data dir, started late, too.
    let dir3 = tempdir();
    let n3 = start_vato(&urls, dir3.path(), &[]).await;
    assert_eq!(
        view(&n3, &lalo, CONV).await,
        expected,
        "the new node serves before catching up"
    );
    assert_eq!(view(&n3, &kalu, CONV).await, view(&n1, &kalu, CONV).await);
    // Passwords replicated too.
    let again = n3.login("newcomer", PASSWORD).await;
    assert_eq!(again.id, newcomer.id);

    // And it takes part: a message sent through it reaches a socket on node 2.
    let mut b = n2.with_token(&kalu.access).ws(CONV).await;
    let sent = n3
        .with_token(&lalo.access)
        .send_message(CONV, "from node 3")
        .await;
    let frame = b.recv_type("message.new").await;
    assert_eq!(frame["data"]["id"], sent["id"], "{frame}");
    assert_eq!(frame["data"]["content"], "from node 3");

    wait_converged(&nats, &[&n1, &n2, &n3]).await;
    assert_same_views(&[&n1, &n2, &n3], &[&lalo, &kalu], CONV).await;
    assert_same_views(&[&n1, &n2, &n3], &[&newcomer], newcomer_conv).await;
    eprintln!("catch-up: {:?}", started.elapsed());
}

#[tokio::test]
async fn nats_outage_loses_nothing_acknowledged() {
    let started = Instant::now();
    let mut nats = Nats::single().await;
    let dirs = [tempdir(), tempdir()];
    let (n1, n2) = two_nodes(&nats, &dirs, &[]).await;
    let lalo = n1.login("lalo", "lalo123").await;
    let kalu = n2.login("kalu", "kalu123").await;
    let mut a = lalo.ws(CONV).await; // node 1
    let mut b = kalu.ws(CONV).await; // node 2

    // client_id → message id of every send that was acknowledged.
    let mut acked: Vec<(String, u64)> = Vec::new();
    for i in 0..5 {
        let client_id = format!("before-{i}");
        let resp = lalo
            .post(
                &messages_path(CONV),
                json!({"content": format!("before {i}"), "client_id": client_id}),
            )
            .await;
        assert_eq!(resp.status, 201, "{}", resp.body);
        acked.push((client_id, resp.body["id"].as_u64().expect("id")));
    }
    recv_messages(&mut a, 5).await;
    let last_seen = recv_messages(&mut b, 5).await[4]["seq"]
        .as_u64()
        .expect("seq");
    b.close().await; // kalu goes away; resumes later with `since`

    // NATS dies.
    nats.kill(0);
    wait_metric(
        &[&n1, &n2],
        "vato_nats_connected",
        0,
        Duration::from_secs(10),
    )
    .await;

    // REST writes fail fast with 503, on both nodes.
    for (user, client_id) in [(&lalo, "down-rest-lalo"), (&kalu, "down-rest-kalu")] {
        let t = Instant::now();
        let resp = user
            .try_request(
                Method::POST,
                &messages_path(CONV),
                Some(json!({"content": client_id, "client_id": client_id})),
            )
            .await
            .expect("the node answers while NATS is down");
        assert_eq!(resp.status, 503, "{}", resp.body);
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "503 took {:?}",
            t.elapsed()
        );
    }
    // A socket send gets an `unavailable` error frame, and stays open.
    let t = Instant::now();
    a.send(json!({"type": "message.send", "content": "down-ws", "client_id": "down-ws"}))
        .await;
    let error = a.recv_type("error").await;
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "error frame took {:?}",
        t.elapsed()
    );
    assert_eq!(error["code"], "unavailable", "{error}");
    assert_eq!(error["client_id"], "down-ws", "{error}");
    // Reads are served from the local replica meanwhile.
    assert_eq!(kalu.history(CONV, "limit=1000").await.len(), 5);

    // The outage lasts a few seconds (the scenario, not a synchronisation).
    tokio::time::sleep(Duration::from_secs(2)).await;
    nats.restart(0).await;

    // The nodes reconnect by themselves: a send goes through again.
    let reconnecting = Instant::now();
    let (resp, attempts) = send_until_ok(
        &lalo.api,
        CONV,
        "after the outage",
        "after-0",
        Duration::from_secs(20),
    )
    .await;
    eprintln!(
        "node 1 took writes again after {:?} ({attempts} attempts, answer {})",
        reconnecting.elapsed(),
        resp.status
    );
    // 200: an attempt that timed out had made it into the stream after all,
    // and the retry found it (exactly once, by client_id).
    assert!(
        resp.status == 201 || (resp.status == 200 && attempts > 1),
        "{} after {attempts} attempts: {}",
        resp.status,
        resp.body
    );
    acked.push(("after-0".into(), resp.body["id"].as_u64().expect("id")));

    // The failed sends, retried with their client_ids, are taken once.
    a.send(json!({"type": "message.send", "content": "down-ws", "client_id": "down-ws"}))
        .await;
    let mut echo = a.recv_type("message.new").await;
    if echo["client_id"] == "after-0" {
        echo = a.recv_type("message.new").await;
    }
    assert_eq!(echo["client_id"], "down-ws", "{echo}");
    acked.push(("down-ws".into(), echo["data"]["id"].as_u64().expect("id")));
    for (user, client_id) in [(&lalo, "down-rest-lalo"), (&kalu, "down-rest-kalu")] {
        let (resp, _) = send_until_ok(
            &user.api,
            CONV,
            client_id,
            client_id,
            Duration::from_secs(20),
        )
        .await;
        assert_eq!(resp.status, 201, "{client_id}: {}", resp.body);
        acked.push((client_id.into(), resp.body["id"].as_u64().expect("id")));
    }
    for i in 0..3 {
        for user in [&lalo, &kalu] {
            let client_id = format!("after-{}-{i}", user.username);
            let resp = user
                .post(
                    &messages_path(CONV),
                    json!({"content": client_id, "client_id": client_id}),
                )
                .await;
            assert_eq!(resp.status, 201, "{client_id}: {}", resp.body);
            acked.push((client_id, resp.body["id"].as_u64().expect("id")));
        }
    }
    wait_metric(
        &[&n1, &n2],
        "vato_nats_connected",
        1,
        Duration::from_secs(10),
    )
    .await;

    // Everything acknowledged is there, once, on both nodes.
    wait_converged(&nats, &[&n1, &n2]).await;
    assert_same_views(&[&n1, &n2], &[&lalo, &kalu], CONV).await;
    let entries = history_entries(&lalo.history(CONV, "limit=1000").await);
    let in_history: Vec<(String, u64)> = entries
        .iter()
        .map(|(client_id, id, _)| (client_id.clone(), *id))
        .collect();
    let mut want = acked.clone();
    want.sort_by_key(|(_, id)| *id);
    assert_eq!(
        in_history, want,
        "history is not exactly the acknowledged sends"
    );

    // kalu's socket resumes with `since` and gets everything it missed.
    let mut b = kalu.ws_since(CONV, last_seen).await;
    let mut replayed = Vec::new();
    let done = loop {
        let frame = b.recv().await;
        match frame["type"].as_str() {
            Some("message.new") => replayed.push(frame),
            Some("sync.done") => break frame,
            _ => panic!("unexpected frame in the replay: {frame}"),
        }
    };
    let missed: Vec<(u64, u64)> = entries
        .iter()
        .filter(|(_, _, seq)| *seq > last_seen)
        .map(|(_, id, seq)| (*id, *seq))
        .collect();
    assert_eq!(
        ids_and_seqs(&replayed),
        missed,
        "the resume missed something"
    );
    assert_eq!(done["seq"], missed.last().expect("missed some").1);
    eprintln!("NATS outage: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_node_killed_under_load_loses_nothing() {
    let started = Instant::now();
    let mut nats = Nats::cluster(3).await;
    let dirs = [tempdir(), tempdir()];
    let (n1, n2) = two_nodes(&nats, &dirs, &["--stream-replicas", "3"]).await;
    let lalo = n1.login("lalo", "lalo123").await;
    let kalu = n2.login("kalu", "kalu123").await;

    // One sender per vato node, each retrying a failed send with the same
    // client_id until it is accepted. The kill comes once BEFORE_KILL sends
    // were acknowledged; each sender goes on until AFTER_KILL of its sends
    // begun after the kill went through, however fast the machine.
    const BEFORE_KILL: usize = 40;
    const AFTER_KILL: usize = 25;
    let progress = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let sender = |api: Api, name: String| {
        let (progress, killed) = (progress.clone(), killed.clone());
        tokio::spawn(async move {
            let mut sent = Vec::new();
            let mut after_kill = 0;
            for i in 0.. {
                if after_kill == AFTER_KILL {
                    break;
                }
                assert!(i < 5_000, "{name}: the kill never came");
                let begun_after_kill = killed.load(Ordering::SeqCst);
                let client_id = format!("{name}-{i}");
                let (resp, attempts) = send_until_ok(
                    &api,
                    CONV,
                    &format!("{name} {i}"),
                    &client_id,
                    Duration::from_secs(45),
                )
                .await;
                let id = resp.body["id"].as_u64().expect("id");
                sent.push((client_id, id, resp.status, attempts));
                progress.fetch_add(1, Ordering::SeqCst);
                after_kill += usize::from(begun_after_kill);
            }
            sent
        })
    };
    let senders = [
        sender(lalo.api.clone(), "lalo".into()),
        sender(kalu.api.clone(), "kalu".into()),
    ];

    // Mid-way, kill the server leading the stream.
    let deadline = Instant::now() + Duration::from_secs(30);
    while progress.load(Ordering::SeqCst) < BEFORE_KILL {
        assert!(Instant::now() < deadline, "the senders made no progress");
        tokio::time::sleep(POLL).await;
    }
    let leader = nats.stream_leader().await.expect("the stream has a leader");
    nats.kill(leader);
    killed.store(true, Ordering::SeqCst);
    let killed_at = Instant::now();
    eprintln!(
        "killed NATS {} (stream leader) after {} sends",
        nats.nodes[leader].name,
        progress.load(Ordering::SeqCst)
    );

    let mut sent = Vec::new();
    for task in senders {
        match task.await {
            Ok(done) => sent.extend(done),
            Err(e) => {
                for node in nats.nodes.iter().filter(|n| n.is_running()) {
                    eprintln!("--- jsz {}: {:?}", node.name, node.jsz().await);
                }
                panic!("a sender failed: {e}\n{}", nats.logs());
            }
        }
    }
    let retried = sent.iter().filter(|s| s.3 > 1).count();
    let late_acks = sent.iter().filter(|s| s.2 == 200).count();
    eprintln!(
        "senders done {:?} after the kill ({} sends); {retried} needed retries, {late_acks} \
         were found already taken (200)",
        killed_at.elapsed(),
        sent.len()
    );

    // The chat goes on: new messages go through at once on both nodes.
    for (user, client_id) in [(&lalo, "lalo-final"), (&kalu, "kalu-final")] {
        let resp = user
            .post(
                &messages_path(CONV),
                json!({"content": client_id, "client_id": client_id}),
            )
            .await;
        assert_eq!(resp.status, 201, "{client_id}: {}", resp.body);
        sent.push((client_id.into(), resp.body["id"].as_u64().unwrap(), 201, 1));
    }

    // Every acknowledged message is in history on both nodes, exactly once.
    wait_converged(&nats, &[&n1, &n2]).await;
    assert_same_views(&[&n1, &n2], &[&lalo, &kalu], CONV).await;
    let entries = history_entries(&kalu.history(CONV, "limit=1000").await);
    let mut by_client: HashMap<&str, Vec<u64>> = HashMap::new();
    for (client_id, id, _) in &entries {
        by_client.entry(client_id).or_default().push(*id);
    }
    for (client_id, id, _, _) in &sent {
        assert_eq!(
            by_client.get(client_id.as_str()),
            Some(&vec![*id]),
            "{client_id} is not in history exactly once as message {id}"
        );
    }
    assert_eq!(entries.len(), sent.len(), "history has extra messages");
    for node in [&n1, &n2] {
        assert_eq!(
            cluster_support::metric(&node.base, "vato_nats_slow_consumer_total").await,
            Some(0),
            "slow consumer on {}",
            node.base
        );
    }
    eprintln!("NATS node killed under load: {:?}", started.elapsed());
}
