//! Calls (issue 15; `api/calls.rs`, `state/calls.rs`, the socket's call
//! and `webrtc.*` frames): the call log over REST and sockets, its states
//! and the original's holes closed (members only, calls only through their
//! own conversation, only participants act, no answering an ended call),
//! WebRTC signalling only to the other participants, and the ring time.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const CALL_KEYS: [&str; 9] = [
    "id",
    "conversation",
    "caller",
    "call_type",
    "state",
    "started_at",
    "ended_at",
    "duration",
    "participants",
];

fn call_path(id: &Value) -> String {
    format!("/api/chat/calls/{id}/")
}

#[tokio::test]
async fn a_call_over_rest_rings_is_answered_and_ends_live_on_the_sockets() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let direct = lalo.direct_with(&kalu).await;
    let mut lalo_ws = lalo.ws(direct).await;
    let mut kalu_ws = kalu.ws(direct).await;

    // Bad starts: the contract's answers, nothing stored.
    let resp = lalo
        .post(
            "/api/chat/calls/",
            json!({"conversation_id": direct, "call_type": "fax"}),
        )
        .await;
    assert_eq!(
        (resp.status, &resp.body),
        (
            400,
            &json!({"call_type": ["\"fax\" is not a valid choice."]})
        )
    );
    let resp = lalo
        .post("/api/chat/calls/", json!({"conversation_id": 999}))
        .await;
    assert_eq!(resp.status, 404, "{}", resp.body);
    let rosa = server.register("rosa").await;
    let resp = rosa
        .post("/api/chat/calls/", json!({"conversation_id": direct}))
        .await;
    assert_eq!(
        (resp.status, &resp.body),
        (
            403,
            &json!({"detail": "You are not a member of this conversation"})
        )
    );

    // lalo calls kalu; `state` in the body is ignored.
    let resp = lalo
        .post(
            "/api/chat/calls/",
            json!({"conversation_id": direct, "call_type": "video", "state": "ended"}),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.body);
    let call = resp.body;
    assert_key_set(&call, &CALL_KEYS);
    assert_eq!(call["state"], "ringing");
    assert_eq!(call["call_type"], "video");
    assert_eq!(call["caller"]["id"], lalo.id);
    assert_eq!(call["duration"], 0);
    assert_eq!(call["ended_at"], Value::Null);
    let legs: Vec<&Value> = call["participants"].as_array().unwrap().iter().collect();
    assert_eq!(legs.len(), 2);
    assert_key_set(
        legs[1],
        &["id", "user", "joined_at", "left_at", "is_answered"],
    );
    assert_eq!(legs[1]["user"]["id"], kalu.id);
    assert_eq!(legs[1]["is_answered"], false);
    let id = call["id"].clone();
    for ws in [&mut lalo_ws, &mut kalu_ws] {
        let frame = ws.recv_type("call.incoming").await;
        assert_eq!(frame["call_id"], id);
        assert_eq!(frame["caller"]["id"], lalo.id);
        assert_eq!(frame["caller"]["username"], "lalo");
        assert_eq!(frame["call_type"], "video");
        assert_eq!(frame["participant_ids"], json!([kalu.id]));
        assert!(frame["seq"].as_u64().is_some(), "{frame}");
    }
    // One call at a time in a conversation.
    let resp = kalu
        .post("/api/chat/calls/", json!({"conversation_id": direct}))
        .await;
    assert_eq!(resp.status, 400, "{}", resp.body);

    // The callee sees it among the active calls (the original did not).
    let active = kalu.get("/api/chat/calls/active/").await;
    assert_eq!(active.body.as_array().unwrap().len(), 1, "{}", active.body);
    assert_eq!(active.body[0]["id"], id);

    // Strangers see nothing and can do nothing.
    let path = call_path(&id);
    assert_eq!(rosa.get(&path).await.status, 404);
    let resp = rosa.post(&format!("{path}answer/"), json!({})).await;
    assert_eq!(
        (resp.status, &resp.body),
        (404, &json!({"detail": "No Call matches the given query."}))
    );
    let resp = lalo.post(&format!("{path}answer/"), json!({})).await;
    assert_eq!(
        resp.status, 400,
        "the caller does not answer: {}",
        resp.body
    );

    let resp = kalu.post(&format!("{path}answer/"), json!({})).await;
    assert_eq!(
        (resp.status, &resp.body),
        (200, &json!({"status": "answered"}))
    );
    for ws in [&mut lalo_ws, &mut kalu_ws] {
        let frame = ws.recv_type("call.answered").await;
        assert_eq!(
            frame["answerer"],
            json!({"id": kalu.id, "username": "kalu"})
        );
    }
    assert_eq!(lalo.get(&path).await.body["state"], "active");

    // The type may change; the state only by the actions.
    let resp = kalu.patch(&path, json!({"call_type": "voice"})).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.body["call_type"], "voice");
    let resp = kalu.patch(&path, json!({"state": "missed"})).await;
    assert_eq!(resp.status, 400, "{}", resp.body);
    assert!(resp.body["state"].is_array(), "{}", resp.body);
    let resp = lalo.delete(&path).await;
    assert_eq!(
        resp.status, 400,
        "an ongoing call is not deleted: {}",
        resp.body
    );

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let resp = lalo.post(&format!("{path}end/"), json!({})).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.body["status"], "ended");
    assert!(
        resp.body["duration"].as_i64().unwrap() >= 1,
        "{}",
        resp.body
    );
    for ws in [&mut lalo_ws, &mut kalu_ws] {
        let (frame, _) = ws.recv_until("call.ended").await;
        assert_eq!(frame["ended_by"]["id"], lalo.id);
        assert_eq!(frame["duration"], resp.body["duration"]);
    }
    let ended = kalu.get(&path).await.body;
    assert_eq!(ended["state"], "ended");
    assert!(ended["ended_at"].is_string());
    assert!(ended["participants"][1]["joined_at"].is_string());
    let resp = kalu.post(&format!("{path}answer/"), json!({})).await;
    assert_eq!(
        (resp.status, &resp.body),
        (400, &json!({"detail": "This call is over."})),
        "the original made an ended call active again"
    );
    assert!(kalu
        .get("/api/chat/calls/active/")
        .await
        .body
        .as_array()
        .unwrap()
        .is_empty());
    let log = kalu.get("/api/chat/calls/").await.body;
    assert_eq!(log.as_array().unwrap().len(), 1);

    // Deleted from the log.
    assert_eq!(kalu.delete(&path).await.status, 204);
    assert_eq!(kalu.get(&path).await.status, 404);
    lalo_ws.recv_until("call.deleted").await;
}

#[tokio::test]
async fn socket_call_frames_and_webrtc_signalling_reach_only_the_call() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let rosa = server.register("rosa").await;
    let group = answered(lalo.create_group("crew", &[kalu.id, rosa.id]).await)
        .id()
        .unwrap();
    let mut lalo_ws = lalo.ws(group).await;
    let mut kalu_ws = kalu.ws(group).await;
    let mut rosa_ws = rosa.ws(group).await;

    // Only members may be rung.
    lalo_ws
        .send(json!({"type": "call.initiate", "participant_ids": [kalu.id, 999]}))
        .await;
    let error = lalo_ws.recv_type("error").await;
    assert_eq!(error["code"], "invalid", "{error}");

    // lalo rings kalu only; every socket of the group hears it ring.
    lalo_ws
        .send(json!({"type": "call.initiate", "call_type": "video", "participant_ids": [kalu.id]}))
        .await;
    let mut id = Value::Null;
    for ws in [&mut lalo_ws, &mut kalu_ws, &mut rosa_ws] {
        let frame = ws.recv_type("call.incoming").await;
        assert_eq!(frame["participant_ids"], json!([kalu.id]));
        id = frame["call_id"].clone();
    }
    // rosa was not rung: her answer and her signalling are refused.
    rosa_ws
        .send(json!({"type": "call.answer", "call_id": id}))
        .await;
    assert_eq!(rosa_ws.recv_type("error").await["code"], "forbidden");
    rosa_ws
        .send(json!({"type": "webrtc.offer", "call_id": id, "offer": {"sdp": "x"}}))
        .await;
    assert_eq!(rosa_ws.recv_type("error").await["code"], "forbidden");

    kalu_ws
        .send(json!({"type": "call.answer", "call_id": id}))
        .await;
    for ws in [&mut lalo_ws, &mut kalu_ws, &mut rosa_ws] {
        ws.recv_type("call.answered").await;
    }
    // Offer, answer and candidates go to the other participant only, in
    // order, with the sender's id.
    lalo_ws
        .send(json!({"type": "webrtc.offer", "call_id": id, "offer": {"type": "offer", "sdp": "v=0 a"}}))
        .await;
    for n in 0..3 {
        lalo_ws
            .send(json!({"type": "webrtc.ice_candidate", "call_id": id, "candidate": {"n": n}}))
            .await;
    }
    let offer = kalu_ws.recv_type("webrtc.offer").await;
    assert_eq!(offer["offer"]["sdp"], "v=0 a");
    assert_eq!(offer["sender_id"], lalo.id);
    for n in 0..3 {
        let candidate = kalu_ws.recv_type("webrtc.ice_candidate").await;
        assert_eq!(candidate["candidate"]["n"], n);
    }
    kalu_ws
        .send(json!({"type": "webrtc.answer", "call_id": id, "answer": {"type": "answer", "sdp": "v=0 b"}}))
        .await;
    let answer = lalo_ws.recv_type("webrtc.answer").await;
    assert_eq!(answer["answer"]["sdp"], "v=0 b");
    assert_eq!(answer["sender_id"], kalu.id);
    // Neither rosa nor the senders got any of it: the next frame each
    // sees is a ping's pong.
    for ws in [&mut rosa_ws, &mut lalo_ws, &mut kalu_ws] {
        ws.ping().await;
    }

    // A call of another conversation is not this socket's to act on.
    let direct = lalo.direct_with(&kalu).await;
    let mut lalo_direct = lalo.ws(direct).await;
    lalo_direct
        .send(json!({"type": "call.end", "call_id": id}))
        .await;
    assert_eq!(lalo_direct.recv_type("error").await["code"], "not_found");

    kalu_ws
        .send(json!({"type": "call.end", "call_id": id}))
        .await;
    for ws in [&mut lalo_ws, &mut kalu_ws, &mut rosa_ws] {
        let frame = ws.recv_type("call.ended").await;
        assert_eq!(frame["ended_by"]["id"], kalu.id);
    }
    lalo_ws
        .send(json!({"type": "webrtc.ice_candidate", "call_id": id, "candidate": {}}))
        .await;
    assert_eq!(
        lalo_ws.recv_type("error").await["code"],
        "invalid",
        "the call is over"
    );
}

#[tokio::test]
async fn an_unanswered_call_is_missed_after_the_ring_time_and_a_decline_ends_it() {
    let server = Server::start(&["--demo", "--call-ring-secs", "1"]).await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let direct = lalo.direct_with(&kalu).await;
    let mut kalu_ws = kalu.ws(direct).await;
    let call = lalo
        .post("/api/chat/calls/", json!({"conversation_id": direct}))
        .await
        .body;
    kalu_ws.recv_type("call.incoming").await;
    let missed = kalu_ws.recv_type("call.missed").await;
    assert_eq!(missed["call_id"], call["id"]);
    let path = call_path(&call["id"]);
    let missed = kalu.get(&path).await.body;
    assert_eq!(missed["state"], "missed");
    assert_eq!(missed["duration"], 0);

    // kalu declines the next one: it is over at once.
    let call = lalo
        .post("/api/chat/calls/", json!({"conversation_id": direct}))
        .await
        .body;
    kalu_ws.recv_type("call.incoming").await;
    let path = call_path(&call["id"]);
    let resp = kalu.post(&format!("{path}reject/"), json!({})).await;
    assert_eq!(
        (resp.status, &resp.body),
        (200, &json!({"status": "rejected"}))
    );
    let frame = kalu_ws.recv_type("call.rejected").await;
    assert_eq!(frame["rejector"]["id"], kalu.id);
    assert_eq!(frame["state"], "declined");
    assert_eq!(kalu.get(&path).await.body["state"], "declined");
    // Declined, not missed later.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(kalu.get(&path).await.body["state"], "declined");
}

#[tokio::test]
async fn a_participant_whose_last_socket_closes_leaves_and_ends_the_call() {
    let server = Server::start(&["--demo", "--presence-grace-secs", "1"]).await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let direct = lalo.direct_with(&kalu).await;
    let mut lalo_ws = lalo.ws(direct).await;
    let kalu_ws = kalu.ws(direct).await;
    let call = lalo
        .post("/api/chat/calls/", json!({"conversation_id": direct}))
        .await
        .body;
    let path = call_path(&call["id"]);
    let resp = kalu.post(&format!("{path}answer/"), json!({})).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    lalo_ws.recv_until("call.answered").await;

    // A reconnect within the grace keeps the call.
    kalu_ws.close().await;
    let kalu_ws = kalu.ws(direct).await;
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert_eq!(kalu.get(&path).await.body["state"], "active");

    // Gone for good: after the grace the call ends, by kalu.
    kalu_ws.close().await;
    let (ended, _) = lalo_ws.recv_until("call.ended").await;
    assert_eq!(ended["call_id"], call["id"]);
    assert_eq!(ended["ended_by"]["id"], kalu.id);
    let over = lalo.get(&path).await.body;
    assert_eq!(over["state"], "ended");
    assert!(over["ended_at"].is_string());
}

#[tokio::test]
async fn an_oversize_sdp_closes_its_socket_with_1009_and_reaches_nobody() {
    let server = Server::start(&["--demo", "--max-frame-bytes", "4096"]).await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let direct = lalo.direct_with(&kalu).await;
    let mut lalo_ws = lalo.ws(direct).await;
    let mut kalu_ws = kalu.ws(direct).await;
    let call = lalo
        .post("/api/chat/calls/", json!({"conversation_id": direct}))
        .await
        .body;
    kalu.post(&format!("{}answer/", call_path(&call["id"])), json!({}))
        .await;
    kalu_ws.recv_until("call.answered").await;
    let sdp = "a=candidate ".repeat(700);
    lalo_ws
        .send(json!({"type": "webrtc.offer", "call_id": call["id"], "offer": {"type": "offer", "sdp": sdp}}))
        .await;
    let (_, code) = lalo_ws.until_close().await;
    assert_eq!(code, Some(1009));
    // A small one from kalu still arrives; the big one never did.
    let offer = json!({"type": "webrtc.offer", "call_id": call["id"], "offer": {"sdp": "v=0"}});
    let mut lalo_again = lalo.ws(direct).await;
    kalu_ws.send(offer).await;
    let (frame, _) = lalo_again.recv_until("webrtc.offer").await;
    assert_eq!(frame["sender_id"], kalu.id);
    kalu_ws
        .send(json!({"type": "call.end", "call_id": call["id"]}))
        .await;
    let (_, before) = kalu_ws.recv_until("call.ended").await;
    assert!(
        before.iter().all(|f| f["type"] != "webrtc.offer"),
        "{before:?}"
    );
}
