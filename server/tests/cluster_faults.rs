//! Cluster mode under failures: real `nats-server` processes (one JetStream
//! server, or a three-node JetStream cluster) and real `vato-server` nodes,
//! some of them killed and restarted while clients keep writing.
//!
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

use serde_json::json;

use cluster_support::chat::*;
use cluster_support::{start_vato, wait_converged, wait_metric, Nats, POLL};
use common::{answered, messages_path, Api, Scene, PASSWORD};

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
            .send(CONV, client_id, Some(client_id))
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
            let resp = answered(user.send(CONV, &client_id, Some(&client_id)).await);
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
        let resp = answered(user.send(CONV, client_id, Some(client_id)).await);
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
