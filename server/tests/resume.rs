//! Resuming with `since`: after a disconnect (also while messages keep
//! coming), with a `sync` frame on an open socket, after the server dropped
//! the socket (1012, dev hook), and after it closed a slow reader with 4408.

mod common;

use common::*;
use serde_json::{json, Value};

/// Reads `message.new` frames until the one with seq `last`; returns them
/// all (other frames fail the test).
async fn messages_until(ws: &mut Ws, last: u64) -> Vec<Value> {
    let mut frames = Vec::new();
    loop {
        let frame = ws.recv_type("message.new").await;
        let seq = frame["seq"].as_u64().expect("seq");
        frames.push(frame);
        if seq >= last {
            return frames;
        }
    }
}

#[tokio::test]
async fn reconnecting_with_since_replays_the_gap_then_continues_live() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let conv = lalo.direct_with(&kalu).await;
    let mut kalu_ws = kalu.ws(conv).await;
    for i in 1..=3 {
        lalo.send_message(conv, &format!("before {i}")).await;
    }
    let seen = messages_until(&mut kalu_ws, 3).await;
    let since = seen.last().unwrap()["seq"].as_u64().unwrap();
    assert_eq!(since, 3);
    kalu_ws.close().await;

    let mut missed = Vec::new();
    for i in 1..=10 {
        missed.push(lalo.send_message(conv, &format!("missed {i}")).await);
    }
    let mut kalu_ws = kalu.ws_since(conv, since).await;
    for expected in &missed {
        let frame = kalu_ws.recv_type("message.new").await;
        assert_eq!(frame["seq"], expected["seq"]);
        assert_eq!(frame["data"]["id"], expected["id"]);
        assert_eq!(frame["data"]["content"], expected["content"]);
    }
    assert_eq!(
        kalu_ws.recv().await,
        json!({"type": "sync.done", "seq": 13})
    );
    // Live from here: the next event, no gap, no repeat.
    lalo.send_message(conv, "live").await;
    let frame = kalu_ws.recv_type("message.new").await;
    assert_eq!(frame["seq"], 14);
    assert_eq!(frame["data"]["content"], "live");
    kalu_ws.ping().await;

    // since=0 replays the whole conversation.
    let mut from_start = Ws::connect(&ws_url(
        kalu.port(),
        "chat",
        conv,
        Some(&kalu.access),
        Some(0),
    ))
    .await;
    let replayed = messages_until(&mut from_start, 14).await;
    assert_eq!(seqs(&replayed), (1..=14).collect::<Vec<_>>());
    assert_eq!(
        from_start.recv().await,
        json!({"type": "sync.done", "seq": 14})
    );

    // A since that is not a number is refused before the upgrade.
    let bad = format!("{}&since=abc", kalu.ws_url(conv, None));
    assert_eq!(Ws::try_connect(&bad).await.err(), Some(400));
}

#[tokio::test]
async fn resuming_while_messages_keep_coming_has_no_gap_or_duplicate() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let conv = lalo.direct_with(&kalu).await;
    for i in 1..=5 {
        lalo.send_message(conv, &format!("early {i}")).await;
    }
    let total = 5 + 40;
    // The reconnect lands somewhere in the middle of these sends.
    let sends = async {
        for i in 1..=40 {
            lalo.send_message(conv, &format!("during {i}")).await;
        }
    };
    let resume = async {
        let mut ws = kalu.ws_since(conv, 2).await;
        let mut frames = Vec::new();
        loop {
            let frame = ws.recv().await;
            let done = frame["seq"] == total;
            frames.push(frame);
            if done {
                return frames;
            }
        }
    };
    let ((), frames) = tokio::join!(sends, resume);
    let syncs: Vec<usize> = frames
        .iter()
        .enumerate()
        .filter(|(_, f)| f["type"] == "sync.done")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(syncs.len(), 1, "one sync.done: {frames:?}");
    let sync = syncs[0];
    assert!(sync >= 3, "the replay holds at least seqs 3..=5");
    assert_eq!(
        frames[sync]["seq"],
        frames[sync - 1]["seq"],
        "sync.done names the last replayed seq"
    );
    let messages: Vec<Value> = frames
        .into_iter()
        .filter(|f| f["type"] == "message.new")
        .collect();
    assert_eq!(seqs(&messages), (3..=total).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_sync_frame_replays_on_an_open_socket() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let conv = lalo.direct_with(&kalu).await;
    let mut kalu_ws = kalu.ws(conv).await;
    let mut sent = Vec::new();
    for i in 1..=5 {
        sent.push(lalo.send_message(conv, &format!("m{i}")).await);
    }
    messages_until(&mut kalu_ws, 5).await;
    let edited = lalo
        .patch(
            &message_path(conv, sent[3]["id"].as_u64().unwrap(), "edit/"),
            json!({"content": "m4 edited"}),
        )
        .await;
    assert_eq!(edited.status, 200);
    assert_eq!(kalu_ws.recv_type("message.edited").await["seq"], 6);

    kalu_ws.send(json!({"type": "sync", "since": 2})).await;
    let mut replayed = Vec::new();
    for _ in 3..=6 {
        replayed.push(kalu_ws.recv().await);
    }
    let types: Vec<&str> = replayed
        .iter()
        .map(|f| f["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "message.new",
            "message.new",
            "message.new",
            "message.edited"
        ]
    );
    assert_eq!(seqs(&replayed), [3, 4, 5, 6]);
    assert_eq!(replayed[0]["data"]["id"], sent[2]["id"]);
    assert_eq!(replayed[3]["data"]["content"], "m4 edited");
    assert_eq!(kalu_ws.recv().await, json!({"type": "sync.done", "seq": 6}));

    lalo.send_message(conv, "after sync").await;
    assert_eq!(kalu_ws.recv_type("message.new").await["seq"], 7);

    kalu_ws.send(json!({"type": "sync"})).await;
    assert_eq!(kalu_ws.recv_type("error").await["code"], "invalid");
    kalu_ws.ping().await;
}

#[tokio::test]
async fn a_socket_dropped_by_the_server_resumes_with_since() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let conv = lalo.direct_with(&kalu).await;
    let mut kalu_ws = kalu.ws(conv).await;
    let mut lalo_ws = lalo.ws(conv).await;
    lalo.send_message(conv, "before").await;
    for ws in [&mut kalu_ws, &mut lalo_ws] {
        assert_eq!(ws.recv_type("message.new").await["seq"], 1);
    }

    // The dev hook closes every socket of one user with 1012 (it wants a
    // token and JSON: any logged-in user's will do).
    let dropped = lalo
        .post("/api/dev/drop-sockets/", json!({"user_id": kalu.id}))
        .await;
    assert_eq!(dropped.status, 200);
    assert_eq!(dropped.body, json!({"closed": 1}));
    let (frames, code) = kalu_ws.until_close().await;
    assert!(frames.is_empty(), "{frames:?}");
    assert_eq!(code, Some(1012));
    lalo_ws.ping().await; // only kalu's sockets were dropped

    lalo.send_message(conv, "while away").await;
    let mut kalu_ws = kalu.ws_since(conv, 1).await;
    let frame = kalu_ws.recv_type("message.new").await;
    assert_eq!(frame["data"]["content"], "while away");
    assert_eq!(kalu_ws.recv().await, json!({"type": "sync.done", "seq": 2}));
}

#[tokio::test]
async fn a_slow_reader_is_closed_with_4408_and_resumes_while_others_keep_up() {
    // About 5 KB per frame: a few hundred frames fill the kernel buffers
    // of a socket that is not read (≈ 2.7 MB here); this is well past that.
    const MESSAGES: u64 = 1200;
    // 1200 sends in a burst: the per-user rates (issue 17) are off.
    let server = Server::start(&[
        "--demo",
        "--outbound-queue",
        "16",
        "--user-msg-rate",
        "0",
        "--user-bytes-rate",
        "0",
    ])
    .await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let conv = lalo.direct_with(&kalu).await;
    // Never read until the end. A small receive buffer keeps the kernel
    // from absorbing the whole burst (with autotuning it takes > 7 MB).
    let mut slow = Ws::connect_small_buffer(&kalu.ws_url(conv, None), kalu.port(), 4096).await;
    let mut fast = kalu.ws(conv).await;

    let content = "z".repeat(4000);
    let sends = async {
        for _ in 0..MESSAGES {
            lalo.send_message(conv, &content).await;
        }
    };
    let fast_reads = messages_until(&mut fast, MESSAGES);
    let ((), fast_frames) = tokio::join!(sends, fast_reads);
    assert_eq!(
        seqs(&fast_frames),
        (1..=MESSAGES).collect::<Vec<_>>(),
        "the fast reader got everything, in order"
    );

    // The slow socket: what was buffered, in order, then the 4408 close.
    let (frames, code) = slow.until_close().await;
    assert_eq!(code, Some(4408), "after {} frames", frames.len());
    let got = seqs(&frames);
    let last = got.last().copied().unwrap_or(0);
    assert_eq!(got, (1..=last).collect::<Vec<_>>());
    assert!(last < MESSAGES, "the slow socket was closed before the end");
    eprintln!("slow reader got {last} of {MESSAGES} frames before 4408");

    // Nothing is lost: resume from the last seq seen.
    let mut resumed = kalu.ws_since(conv, last).await;
    let rest = messages_until(&mut resumed, MESSAGES).await;
    assert_eq!(seqs(&rest), (last + 1..=MESSAGES).collect::<Vec<_>>());
    assert_eq!(
        resumed.recv().await,
        json!({"type": "sync.done", "seq": MESSAGES})
    );
}
