//! Pins (issue 14, `api/pins.rs`): `POST`/`DELETE .../messages/{mid}/pin/`
//! (admins) with `message.pinned` / `message.unpinned` and the
//! conversation's `pinned_message_ids`.

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
