//! The WebSocket endpoint: handshake refusals, frames in and out, errors
//! that keep the socket open, exactly-once sends, live delivery of REST
//! sends, and the size limit.

mod common;

use common::*;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn both_paths_answer_ping_with_pong() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let conv = lalo.direct_with(&kalu).await;
    for route in ["conversations", "chat"] {
        let mut ws = Ws::connect(&ws_url(lalo.port(), route, conv, Some(&lalo.access), None)).await;
        ws.ping().await;
        ws.ping().await;
        // A protocol-level ping gets a protocol-level pong.
        ws.send_raw(Message::Ping(b"are you there".to_vec().into()))
            .await;
        match ws.next_message().await {
            Some(Message::Pong(payload)) => assert_eq!(&payload[..], b"are you there"),
            other => panic!("expected a pong, got {other:?}"),
        }
        // The socket on this route is a full member socket.
        kalu.send_message(conv, route).await;
        let frame = ws.recv_type("message.new").await;
        assert_eq!(frame["data"]["content"], route);
    }
}

#[tokio::test]
async fn refused_handshakes_are_http_errors() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let mika = server.register("mika").await;
    let conv = lalo.direct_with(&kalu).await;
    let port = lalo.port();
    for route in ["conversations", "chat"] {
        let cases: [(Option<&str>, u64, u16); 5] = [
            (None, conv, 401),
            (Some("garbage"), conv, 401),
            (Some(&lalo.refresh), conv, 401),
            (Some(&lalo.access), 999_999, 404),
            (Some(&mika.access), conv, 403),
        ];
        for (token, conv, status) in cases {
            let url = ws_url(port, route, conv, token, None);
            let (got, body) = Ws::refusal(&url).await;
            assert_eq!(got, status, "{url}");
            assert!(body["detail"].is_string(), "{url}: {body}");
        }
    }
    // Nothing was delivered to, or stored by, the refused sockets.
    assert!(lalo.history(conv, "").await.is_empty());
}

#[tokio::test]
async fn sockets_over_the_connection_limit_get_503() {
    let server = Server::start(&["--demo", "--max-connections", "2"]).await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let conv = lalo.direct_with(&kalu).await;
    let mut first = lalo.ws(conv).await;
    let _second = kalu.ws(conv).await;
    assert_eq!(
        Ws::try_connect(&kalu.ws_url(conv, None)).await.err(),
        Some(503)
    );
    first.ping().await;
}

#[tokio::test]
async fn message_send_reaches_every_member_socket_including_the_senders() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let conv = lalo.direct_with(&kalu).await;
    let mut lalo_a = lalo.ws(conv).await;
    let mut lalo_b =
        Ws::connect(&ws_url(lalo.port(), "chat", conv, Some(&lalo.access), None)).await;
    let mut kalu_ws = kalu.ws(conv).await;

    lalo_a
        .send(json!({"type": "message.send", "content": "hola", "client_id": "k1"}))
        .await;
    let mut ids = Vec::new();
    for (ws, viewer) in [
        (&mut lalo_a, &lalo),
        (&mut kalu_ws, &kalu),
        (&mut lalo_b, &lalo),
    ] {
        let frame = ws.recv_type("message.new").await;
        assert_eq!(keys(&frame), ["type", "data", "seq", "client_id"]);
        assert_eq!(frame["seq"], 1);
        assert_eq!(frame["client_id"], "k1");
        let data = &frame["data"];
        assert_eq!(keys(data), MESSAGE_KEYS);
        assert_eq!(data["seq"], 1);
        assert_eq!(data["client_id"], "k1");
        assert_eq!(data["content"], "hola");
        assert_eq!(data["conversation"], conv);
        assert_eq!(data["sender"]["id"], lalo.id);
        let email = if viewer.id == lalo.id {
            "lalo@example.com"
        } else {
            ""
        };
        assert_eq!(
            data["sender"]["email"], email,
            "as seen by {}",
            viewer.username
        );
        ids.push(data["id"].clone());
    }
    assert!(ids.iter().all(|id| *id == ids[0]));

    // Without client_id: null at both places; default type text.
    kalu_ws
        .send(json!({"type": "message.send", "content": "hey"}))
        .await;
    for ws in [&mut lalo_a, &mut kalu_ws, &mut lalo_b] {
        let frame = ws.recv_type("message.new").await;
        assert_eq!(frame["seq"], 2);
        assert_eq!(frame["client_id"], Value::Null);
        assert_eq!(frame["data"]["client_id"], Value::Null);
        assert_eq!(frame["data"]["message_type"], "text");
    }
    let history = lalo.history(conv, "").await;
    assert_eq!(history.len(), 2);
    assert_eq!(history[1]["id"], ids[0]);
}

#[tokio::test]
async fn typing_reaches_the_other_user_only() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let conv = lalo.direct_with(&kalu).await;
    let mut typist = lalo.ws(conv).await;
    let mut typist_other_tab = lalo.ws(conv).await;
    let mut kalu_ws = kalu.ws(conv).await;

    typist.send(json!({"type": "typing"})).await;
    typist
        .send(json!({"type": "typing", "is_typing": false}))
        .await;
    // A stored event after the typing frames: each socket's frames arrive
    // in order, so whatever typing a socket got comes before it.
    send_ws(&mut typist, "after typing", "t1").await;

    let frame = kalu_ws.recv().await;
    assert_eq!(
        frame,
        json!({"type": "typing", "user_id": lalo.id, "username": "lalo", "is_typing": true})
    );
    let frame = kalu_ws.recv_type("typing").await;
    assert_eq!(frame["is_typing"], false);
    assert_eq!(kalu_ws.recv_type("message.new").await["client_id"], "t1");
    // The typist's other socket saw no typing, just the message.
    assert_eq!(
        typist_other_tab.recv_type("message.new").await["client_id"],
        "t1"
    );
    typist_other_tab.ping().await;
}

#[tokio::test]
async fn read_edit_and_delete_frames_reach_both_members() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let conv = lalo.direct_with(&kalu).await;
    let mut lalo_ws = lalo.ws(conv).await;
    let mut kalu_ws = kalu.ws(conv).await;
    let sent = send_ws(&mut lalo_ws, "draft", "d1").await;
    let mid = sent["data"]["id"].as_u64().unwrap();
    kalu_ws.recv_type("message.new").await;

    kalu_ws
        .send(json!({"type": "message.read", "message_id": mid}))
        .await;
    for ws in [&mut lalo_ws, &mut kalu_ws] {
        let frame = ws.recv_type("message.read").await;
        assert_eq!(
            frame,
            json!({"type": "message.read", "message_id": mid, "user_id": kalu.id, "seq": 2})
        );
    }
    lalo_ws
        .send(json!({"type": "message.edit", "message_id": mid, "content": "final"}))
        .await;
    for ws in [&mut lalo_ws, &mut kalu_ws] {
        let frame = ws.recv_type("message.edited").await;
        assert_eq!(frame["seq"], 3);
        assert_eq!(frame["data"]["id"], mid);
        assert_eq!(frame["data"]["content"], "final");
        assert_eq!(frame["data"]["seq"], 1);
        assert!(frame["data"]["edited_at"].is_string());
    }
    // message_id as a string is accepted too, as the original did.
    lalo_ws
        .send(json!({"type": "message.delete", "message_id": mid.to_string()}))
        .await;
    for ws in [&mut lalo_ws, &mut kalu_ws] {
        let frame = ws.recv_type("message.deleted").await;
        assert_eq!(
            frame,
            json!({"type": "message.deleted", "message_id": mid, "seq": 4})
        );
    }
    let history = kalu.history(conv, "").await;
    assert_eq!(history[0]["is_deleted"], true);
    assert_eq!(history[0]["content"], "");
    assert_eq!(kalu.listed_conversation(conv).await["unread_count"], 0);
}

#[tokio::test]
async fn bad_frames_get_error_frames_and_the_socket_stays_open() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let mika = server.register("mika").await;
    let conv = lalo.direct_with(&kalu).await;
    let elsewhere = lalo.direct_with(&mika).await;
    let foreign = mika
        .send_message(elsewhere, "not in this conversation")
        .await;
    let kalus = kalu.send_message(conv, "kalu's").await;
    let mut ws = lalo.ws(conv).await;

    let expect_error = |frame: Value, code: &str| {
        assert_eq!(frame["type"], "error", "{frame}");
        assert_eq!(frame["code"], code, "{frame}");
        assert!(frame["detail"].is_string(), "{frame}");
    };
    ws.send_text("{not json").await;
    expect_error(ws.recv().await, "bad_json");
    ws.ping().await;

    ws.send(json!({"type": "dance"})).await;
    expect_error(ws.recv().await, "unknown_type");
    ws.send(json!({"no": "type"})).await;
    expect_error(ws.recv().await, "unknown_type");

    let kalus_id = kalus["id"].as_u64().unwrap();
    ws.send(json!({"type": "message.edit", "message_id": kalus_id, "content": "mine"}))
        .await;
    expect_error(ws.recv().await, "forbidden");
    ws.send(json!({"type": "message.delete", "message_id": kalus_id}))
        .await;
    expect_error(ws.recv().await, "forbidden");

    ws.send(json!({"type": "message.read", "message_id": foreign["id"]}))
        .await;
    expect_error(ws.recv().await, "not_found");
    ws.send(json!({"type": "message.read", "message_id": 999_999}))
        .await;
    expect_error(ws.recv().await, "not_found");

    ws.send(json!({"type": "message.read"})).await;
    expect_error(ws.recv().await, "invalid");
    ws.send(json!({"type": "message.send", "content": 5, "client_id": "bad-1"}))
        .await;
    let frame = ws.recv().await;
    expect_error(frame.clone(), "invalid");
    assert_eq!(
        frame["client_id"], "bad-1",
        "errors carry the failed frame's client_id"
    );

    for (frame, why) in [
        (
            json!({"type": "message.send", "content": "  ", "client_id": "blank"}),
            "blank",
        ),
        (
            json!({"type": "message.send", "content": "x".repeat(4097), "client_id": "long"}),
            "too long",
        ),
        (
            json!({"type": "message.send", "content": "hi", "message_type": "sticker", "client_id": "type"}),
            "unknown message_type",
        ),
        (
            json!({"type": "message.send", "content": "re", "reply_to": foreign["id"], "client_id": "reply"}),
            "reply_to in another conversation",
        ),
        (
            json!({"type": "message.send", "content": "hi", "client_id": 7}),
            "client_id not a string",
        ),
        (
            json!({"type": "message.edit", "message_id": kalus_id}),
            "edit without content",
        ),
    ] {
        ws.send(frame).await;
        let error = ws.recv().await;
        assert_eq!(error["type"], "error", "{why}: {error}");
        assert_eq!(error["code"], "invalid", "{why}: {error}");
    }

    ws.ping().await;
    // Still a working member socket.
    send_ws(&mut ws, "still alive", "alive-1").await;
    let history = kalu.history(conv, "").await;
    assert_eq!(history.len(), 2, "the refused frames stored nothing");
    assert_eq!(
        history[1]["content"], "kalu's",
        "the forbidden edit changed nothing"
    );
}

#[tokio::test]
async fn a_frame_over_the_size_limit_closes_with_1009() {
    let server = Server::start(&["--demo", "--max-frame-bytes", "1024"]).await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let conv = lalo.direct_with(&kalu).await;
    let mut ws = lalo.ws(conv).await;
    // Just under the limit is fine.
    send_ws(&mut ws, &"s".repeat(900), "small").await;
    let big = json!({"type": "message.send", "content": "x".repeat(4096)});
    ws.send(big).await;
    let (frames, code) = ws.until_close().await;
    assert!(frames.is_empty(), "{frames:?}");
    assert_eq!(code, Some(1009));
    assert_eq!(
        lalo.history(conv, "").await.len(),
        1,
        "the big frame was not stored"
    );
}

#[tokio::test]
async fn fragmented_messages_are_reassembled_and_capped() {
    let server = Server::start(&["--demo", "--max-frame-bytes", "1024"]).await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let conv = lalo.direct_with(&kalu).await;
    let mut ws = lalo.ws(conv).await;
    let fragment = |data: &str, opcode: Data, fin: bool| {
        Message::Frame(Frame::message(
            data.as_bytes().to_vec(),
            OpCode::Data(opcode),
            fin,
        ))
    };
    ws.send_raw(fragment(r#"{"type""#, Data::Text, false)).await;
    ws.send_raw(fragment(r#":"pi"#, Data::Continue, false))
        .await;
    ws.send_raw(fragment(r#"ng"}"#, Data::Continue, true)).await;
    assert_eq!(ws.recv().await, json!({"type": "pong"}));

    // Over the limit in total, though every fragment is small.
    let chunk = "y".repeat(400);
    ws.send_raw(fragment(
        r#"{"type":"message.send","content":""#,
        Data::Text,
        false,
    ))
    .await;
    for _ in 0..3 {
        ws.send_raw(fragment(&chunk, Data::Continue, false)).await;
    }
    ws.send_raw(fragment(r#""}"#, Data::Continue, true)).await;
    let (frames, code) = ws.until_close().await;
    assert!(frames.is_empty(), "{frames:?}");
    assert_eq!(code, Some(1009));
    assert!(lalo.history(conv, "").await.is_empty());
}

#[tokio::test]
async fn a_client_id_retry_over_ws_is_delivered_once() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let conv = lalo.direct_with(&kalu).await;
    let mut sender = lalo.ws(conv).await;
    let mut other = kalu.ws(conv).await;

    let first = send_ws(&mut sender, "exactly once", "same-id").await;
    // The retry: the original again, on the sender's socket only.
    let retry = send_ws(&mut sender, "exactly once", "same-id").await;
    assert_eq!(retry["data"]["id"], first["data"]["id"]);
    assert_eq!(retry["seq"], first["seq"]);
    assert_eq!(retry["data"]["seq"], first["data"]["seq"]);
    // A retry from a new socket (after a reconnect) is recognised too.
    let mut reconnected = lalo.ws(conv).await;
    let again = send_ws(&mut reconnected, "exactly once", "same-id").await;
    assert_eq!(again["data"]["id"], first["data"]["id"]);
    let next = send_ws(&mut sender, "next", "next-id").await;
    assert_eq!(next["seq"], 2, "the retries took no seq");

    // The other member saw the message once, then the next one.
    let frame = other.recv_type("message.new").await;
    assert_eq!(frame["data"]["id"], first["data"]["id"]);
    let frame = other.recv_type("message.new").await;
    assert_eq!(frame["client_id"], "next-id");
    // The reconnected socket saw only its retry echo, then the next one.
    assert_eq!(
        reconnected.recv_type("message.new").await["client_id"],
        "next-id"
    );

    // Back to back, without waiting for the first echo: still one message.
    let twice = json!({"type": "message.send", "content": "twice", "client_id": "b2b"});
    sender.send(twice.clone()).await;
    sender.send(twice).await;
    let echo = sender.recv_type("message.new").await;
    let retry_echo = sender.recv_type("message.new").await;
    assert_eq!(echo["client_id"], "b2b");
    assert_eq!(retry_echo["client_id"], "b2b");
    assert_eq!(echo["data"]["id"], retry_echo["data"]["id"]);
    send_ws(&mut sender, "last", "last-id").await;
    assert_eq!(other.recv_type("message.new").await["client_id"], "b2b");
    assert_eq!(other.recv_type("message.new").await["client_id"], "last-id");

    let history = kalu.history(conv, "").await;
    let contents: Vec<&str> = history
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["last", "twice", "next", "exactly once"]);
}

#[tokio::test]
async fn rest_sends_are_live_and_share_one_seq_order_with_ws_sends() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let conv = lalo.direct_with(&kalu).await;
    let mut lalo_ws = lalo.ws(conv).await;
    let mut kalu_ws = kalu.ws(conv).await;

    // The original never pushed REST sends to sockets.
    let rest = kalu.send_message(conv, "via rest").await;
    for ws in [&mut lalo_ws, &mut kalu_ws] {
        let frame = ws.recv_type("message.new").await;
        assert_eq!(frame["data"]["id"], rest["id"]);
        assert_eq!(frame["seq"], rest["seq"]);
    }

    // REST and WS sends, from both users, concurrently.
    let rest_sends = async {
        for i in 0..20 {
            let who = if i % 2 == 0 { &lalo } else { &kalu };
            who.send_message(conv, &format!("rest {i}")).await;
        }
    };
    let ws_sends = async {
        let mut ws = kalu.ws(conv).await;
        for i in 0..20 {
            ws.send(json!({"type": "message.send", "content": format!("ws {i}"), "client_id": format!("w{i}")}))
                .await;
        }
        ws
    };
    let ((), mut ws_sender) = tokio::join!(rest_sends, ws_sends);
    let total = 41;
    let mut lalo_frames = Vec::new();
    while lalo_frames.len() < total - 1 {
        lalo_frames.push(lalo_ws.recv_type("message.new").await);
    }
    let mut kalu_frames = Vec::new();
    while kalu_frames.len() < total - 1 {
        kalu_frames.push(kalu_ws.recv_type("message.new").await);
    }
    let expected: Vec<u64> = (2..=total as u64).collect();
    assert_eq!(seqs(&lalo_frames), expected, "gap-free, in order");
    assert_eq!(seqs(&kalu_frames), expected);
    // The WS sender's own socket sees its 20 echoes among the others.
    let mut echoes = 0;
    while echoes < 20 {
        let frame = ws_sender.recv_type("message.new").await;
        if frame["client_id"].is_string() {
            echoes += 1;
        }
    }
    let history = lalo.history(conv, "limit=1000").await;
    let mut history_seqs: Vec<u64> = history.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    history_seqs.reverse();
    assert_eq!(history_seqs, (1..=total as u64).collect::<Vec<_>>());
}

#[tokio::test]
async fn binary_frames_are_read_as_text_json() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let conv = lalo.direct_with(&kalu).await;
    let mut ws = lalo.ws(conv).await;
    ws.send_raw(Message::binary(br#"{"type":"ping"}"#.to_vec()))
        .await;
    assert_eq!(ws.recv().await, json!({"type": "pong"}));
}
