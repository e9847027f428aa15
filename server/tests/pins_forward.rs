//! Pins and forwards (issue 14): `POST`/`DELETE .../messages/{mid}/pin/`
//! (admins) with `message.pinned` / `message.unpinned` and the
//! conversation's `pinned_message_ids`; `POST .../forward/` into another
//! conversation of the caller's, live there, exactly once by `client_id`.

mod common;

use common::*;
use serde_json::json;

const NO_MESSAGE: &str = "No Message matches the given query.";

#[tokio::test]
async fn admins_pin_and_unpin_and_members_see_it_live() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let group = answered(lalo.create_group("crew", &[kalu.id]).await)
        .id()
        .unwrap();
    let first = kalu.send_message(group, "first").await["id"]
        .as_u64()
        .unwrap();
    let second = kalu.send_message(group, "second").await["id"]
        .as_u64()
        .unwrap();
    let mut kalu_ws = kalu.ws(group).await;

    let pinned = answered(lalo.pin(group, first).await);
    assert_eq!(pinned.status, 201, "{}", pinned.body);
    assert_key_set(&pinned.body, &["id", "message", "pinned_by", "pinned_at"]);
    assert_eq!(pinned.body["message"]["id"], first);
    assert_key_set(&pinned.body["message"], &MESSAGE_KEYS);
    assert_eq!(pinned.body["pinned_by"]["id"], lalo.id);
    let frame = kalu_ws.recv_type("message.pinned").await;
    assert_eq!(frame["message_id"], first);
    assert_eq!(frame["pin_id"], pinned.body["id"]);
    assert_eq!(frame["pinned_by"]["id"], lalo.id);
    assert_eq!(frame["pinned_at"], pinned.body["pinned_at"]);
    assert_eq!(frame["seq"], 3);

    // Again: 200 with the same pin, nothing stored.
    let again = answered(lalo.pin(group, first).await);
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["id"], pinned.body["id"]);
    assert_eq!(again.body["pinned_at"], pinned.body["pinned_at"]);
    assert_eq!(answered(lalo.pin(group, second).await).status, 201);
    let frame = kalu_ws.recv_type("message.pinned").await;
    assert_eq!(frame["seq"], 4, "the repeated pin used no seq");
    let listed = kalu.listed_conversation(group).await;
    assert_eq!(listed["pinned_message_ids"], json!([first, second]));
    assert_eq!(
        answered(kalu.conversation(group).await).body["pinned_message_ids"],
        json!([first, second])
    );

    // A member who is not an admin: 403 for both.
    let refused = answered(kalu.pin(group, second).await);
    assert_eq!(refused.status, 403);
    assert_eq!(
        refused.body,
        json!({"detail": "Only admins can pin messages."})
    );
    assert_eq!(answered(kalu.unpin(group, first).await).status, 403);

    let unpinned = lalo.unpin(group, first).await.unwrap();
    assert_eq!(unpinned.status, 204, "{}", unpinned.describe());
    let frame = kalu_ws.recv_type("message.unpinned").await;
    assert_eq!(frame["message_id"], first);
    assert_eq!(frame["by"], lalo.id);
    assert_eq!(frame["seq"], 5);
    let not_pinned = answered(lalo.unpin(group, first).await);
    assert_eq!(not_pinned.status, 404);
    assert_eq!(
        not_pinned.body,
        json!({"detail": "This message is not pinned."})
    );
    assert_eq!(
        kalu.listed_conversation(group).await["pinned_message_ids"],
        json!([second])
    );
    // Pins change no unread count.
    assert_eq!(lalo.listed_conversation(group).await["unread_count"], 2);

    // A replay shows the pins in their seqs.
    let mut replay = kalu.ws_since(group, 2).await;
    let (_, frames) = replay.recv_until("sync.done").await;
    let kinds: Vec<&str> = frames.iter().filter_map(|f| f["type"].as_str()).collect();
    assert_eq!(
        kinds,
        ["message.pinned", "message.pinned", "message.unpinned"]
    );
    assert_eq!(seqs(&frames), [3, 4, 5]);
}

#[tokio::test]
async fn pins_refuse_messages_of_other_conversations_and_strangers() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let group = answered(lalo.create_group("crew", &[kalu.id]).await)
        .id()
        .unwrap();
    let elsewhere = answered(lalo.create_group("elsewhere", &[]).await)
        .id()
        .unwrap();
    let foreign = lalo.send_message(elsewhere, "not here").await["id"]
        .as_u64()
        .unwrap();
    let own = lalo.send_message(group, "here").await["id"]
        .as_u64()
        .unwrap();
    let mika = server.register("mika").await;
    for (who, conv, message) in [
        (&lalo, group, foreign),
        (&lalo, group, 999_999),
        (&lalo, 999_999, own),
        (&mika, group, own),
    ] {
        let refused = answered(who.pin(conv, message).await);
        assert_eq!(refused.status, 404, "{}", refused.body);
        assert_eq!(refused.body, json!({"detail": NO_MESSAGE}));
        assert_eq!(answered(who.unpin(conv, message).await).status, 404);
    }
    let not_a_number = lalo
        .post("/api/chat/conversations/x/messages/1/pin/", json!({}))
        .await;
    assert_eq!(not_a_number.status, 404);
    assert_eq!(
        answered(lalo.conversation(group).await).body["pinned_message_ids"],
        json!([])
    );
    // A deleted message can be pinned (as the original).
    answered(lalo.delete_message(group, own).await);
    assert_eq!(answered(lalo.pin(group, own).await).status, 201);
}

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
