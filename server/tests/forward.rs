//! Forwards (issue 14, `api/forward.rs`): `POST .../forward/` into another
//! conversation of the caller's, live there, exactly once by `client_id`.
//! (Attachments shared by a forward: `eventlog/tests/state_machine.rs`.)

mod common;

use common::*;
use serde_json::json;

const NO_MESSAGE: &str = "No Message matches the given query.";

#[tokio::test]
async fn forward_posts_a_copy_live_in_the_target_exactly_once() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let mika = server.register("mika").await;
    let source = answered(lalo.create_group("source", &[kalu.id]).await)
        .id()
        .unwrap();
    let target = answered(kalu.create_group("target", &[mika.id]).await)
        .id()
        .unwrap();
    let original = lalo.send_message(source, "pass it on").await;
    let original_id = original["id"].as_u64().unwrap();
    let mut mika_ws = mika.ws(target).await;
    let mut source_ws = lalo.ws(source).await;

    let forwarded = answered(
        kalu.forward(source, original_id, target, Some("fw-1"))
            .await,
    );
    assert_eq!(forwarded.status, 201, "{}", forwarded.body);
    let message = &forwarded.body;
    assert_key_set(message, &MESSAGE_KEYS);
    assert_eq!(message["conversation"], target);
    assert_eq!(message["sender"]["id"], kalu.id);
    assert_eq!(message["content"], "pass it on");
    assert_eq!(message["message_type"], "text");
    assert_eq!(message["forwarded_from"], original_id);
    assert_eq!(message["forwarded_from_message"]["id"], original_id);
    assert_eq!(message["reply_to"], json!(null));
    assert_eq!(message["client_id"], "fw-1");
    let frame = mika_ws.recv_type("message.new").await;
    assert_eq!(frame["data"]["id"], message["id"]);
    assert_eq!(frame["data"]["forwarded_from"], original_id);
    assert_eq!(frame["seq"], 1);

    // The retry: 200 with the same message, nothing appended.
    let retry = answered(
        kalu.forward(source, original_id, target, Some("fw-1"))
            .await,
    );
    assert_eq!(retry.status, 200, "{}", retry.body);
    assert_eq!(retry.body["id"], message["id"]);
    assert_eq!(kalu.history(target, "").await.len(), 1);
    let listed = mika.listed_conversation(target).await;
    assert_eq!(listed["unread_count"], 1);
    assert_eq!(listed["last_message"]["id"], message["id"]);
    // Into the same conversation is allowed (as the original).
    let same = answered(lalo.forward(source, original_id, source, None).await);
    assert_eq!(same.status, 201, "{}", same.body);
    let frame = source_ws.recv_type("message.new").await;
    assert_eq!(frame["data"]["forwarded_from"], original_id);
    // Nothing more reached mika: the next frame is this message.
    kalu.send_message(target, "next").await;
    let next = mika_ws.recv().await;
    assert_eq!(next["data"]["content"], "next", "{next}");
    assert_eq!(next["seq"], 2);
}

#[tokio::test]
async fn forward_refuses_what_the_caller_may_not_see_or_reach() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let mika = server.register("mika").await;
    let source = answered(lalo.create_group("source", &[kalu.id]).await)
        .id()
        .unwrap();
    let not_mine = answered(mika.create_group("mika's", &[]).await)
        .id()
        .unwrap();
    let target = answered(lalo.create_group("target", &[kalu.id]).await)
        .id()
        .unwrap();
    let message = lalo.send_message(source, "secret").await["id"]
        .as_u64()
        .unwrap();
    let mika_message = mika.send_message(not_mine, "mine").await["id"]
        .as_u64()
        .unwrap();

    // Into a conversation the caller is not in (or that does not exist).
    for to in [not_mine, 999_999] {
        let refused = answered(lalo.forward(source, message, to, None).await);
        assert_eq!(refused.status, 404, "{}", refused.body);
        assert_eq!(refused.body, json!({"detail": "Conversation not found."}));
    }
    // A message the caller cannot see, or not of the path's conversation.
    for (conv, id) in [
        (not_mine, mika_message),
        (source, mika_message),
        (source, 999_999),
    ] {
        let refused = answered(lalo.forward(conv, id, target, None).await);
        assert_eq!(refused.status, 404, "{}", refused.body);
        assert_eq!(refused.body, json!({"detail": NO_MESSAGE}));
    }
    // No target, a bad target, a bad client_id.
    for body in [
        json!({}),
        json!({"conversation_id": null}),
        json!({"conversation_id": "abc"}),
    ] {
        let path = message_path(source, message, "forward/");
        let refused = lalo.post(&path, body).await;
        assert_eq!(refused.status, 400, "{}", refused.body);
        assert_eq!(refused.body, json!({"detail": "conversation_id required."}));
    }
    let bad_key = lalo
        .post(
            &message_path(source, message, "forward/"),
            json!({"conversation_id": target, "client_id": ""}),
        )
        .await;
    assert_eq!(bad_key.status, 400, "{}", bad_key.body);
    // A deleted message is not republished.
    answered(lalo.delete_message(source, message).await);
    let deleted = answered(lalo.forward(source, message, target, None).await);
    assert_eq!(deleted.status, 400, "{}", deleted.body);
    // Nothing was posted anywhere.
    assert!(lalo.history(target, "").await.is_empty());
    assert_eq!(lalo.history(source, "").await.len(), 1);
    assert_eq!(mika.history(not_mine, "").await.len(), 1);
}
