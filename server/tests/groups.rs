//! Group management (issue 14): `PUT`/`PATCH`/`DELETE` of a conversation
//! (admins only), `remove-member/`, the last admin's leave promoting the
//! longest-standing member, and what lists, unread counts, last messages
//! and `since` replays show through them.

mod common;

use common::*;
use serde_json::{json, Value};

const NO_CONVERSATION: &str = "No Conversation matches the given query.";

async fn listed_ids(api: &Api) -> Vec<u64> {
    answered(api.conversations().await)
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_u64().unwrap())
        .collect()
}

fn admins(conversation: &Value) -> Vec<u64> {
    conversation["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["is_admin"] == true)
        .map(|m| m["user"]["id"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn admins_update_a_group_members_see_it_live_and_others_are_refused() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let group = answered(lalo.create_group("crew", &[kalu.id]).await)
        .id()
        .unwrap();
    let mut kalu_ws = kalu.ws(group).await;

    let updated = answered(
        lalo.update_conversation(
            group,
            &json!({"title": "new crew", "description": "plans", "is_public": true,
                    "owner": 99, "members": []}),
        )
        .await,
    );
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_key_set(&updated.body, &CONVERSATION_KEYS);
    assert_eq!(updated.body["title"], "new crew");
    assert_eq!(updated.body["description"], "plans");
    assert_eq!(updated.body["is_public"], true);
    // Read-only keys are ignored.
    assert_eq!(updated.body["owner"], lalo.id);
    assert_eq!(updated.body["members"].as_array().unwrap().len(), 2);
    let frame = kalu_ws.recv_type("conversation.updated").await;
    assert_eq!(frame["conversation"], group);
    assert_eq!(frame["title"], "new crew");
    assert_eq!(frame["description"], "plans");
    assert_eq!(frame["is_public"], true);
    assert_eq!(frame["by"], lalo.id);
    assert_eq!(frame["seq"], 1);

    // PUT is partial too; the same values again store nothing (no seq).
    let put = lalo
        .put(
            &format!("/api/chat/conversations/{group}/"),
            json!({"title": "new crew"}),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    assert_eq!(put.body["description"], "plans");

    // A member who is not an admin: 403, nothing changes.
    let refused = answered(
        kalu.update_conversation(group, &json!({"title": "mine"}))
            .await,
    );
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(
        refused.body,
        json!({"detail": "Only admins can change this conversation."})
    );
    // Bad fields: every error at once, nothing stored.
    let bad = answered(
        lalo.update_conversation(
            group,
            &json!({"title": "", "description": "d".repeat(3000), "is_public": "maybe",
                    "conversation_type": "direct"}),
        )
        .await,
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert_eq!(
        bad.body,
        json!({
            "title": ["This field may not be blank."],
            "description": ["Ensure this field has no more than 2048 characters."],
            "is_public": ["Must be a valid boolean."],
            "conversation_type": ["The conversation type cannot be changed."],
        })
    );
    let long_title = answered(
        lalo.update_conversation(group, &json!({"title": "t".repeat(256)}))
            .await,
    );
    assert_eq!(long_title.status, 400, "{}", long_title.body);
    // A stranger: 404, as for any other conversation they are not in.
    let mika = server.register("mika").await;
    let stranger = answered(
        mika.update_conversation(group, &json!({"title": "x"}))
            .await,
    );
    assert_eq!(stranger.status, 404);
    assert_eq!(stranger.body, json!({"detail": NO_CONVERSATION}));
    let unknown = answered(
        lalo.update_conversation(999_999, &json!({"title": "x"}))
            .await,
    );
    assert_eq!(unknown.status, 404);

    let now = answered(lalo.conversation(group).await).body;
    assert_eq!(now["title"], "new crew");
    assert_eq!(now["description"], "plans");
    // Nothing after the one update reached kalu's socket: the next frame
    // is the message below, seq 2.
    lalo.send_message(group, "after").await;
    let next = kalu_ws.recv().await;
    assert_eq!(next["type"], "message.new", "{next}");
    assert_eq!(next["seq"], 2);
}

#[tokio::test]
async fn a_direct_conversation_keeps_its_type_and_members() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let direct = lalo.direct_with(&kalu).await;
    let admin = if admins(&answered(lalo.conversation(direct).await).body) == [lalo.id] {
        &lalo
    } else {
        &kalu
    };
    let other = if admin.id == lalo.id { &kalu } else { &lalo };
    let typed = answered(
        admin
            .update_conversation(direct, &json!({"conversation_type": "group"}))
            .await,
    );
    assert_eq!(typed.status, 400, "{}", typed.body);
    let public = answered(
        admin
            .update_conversation(direct, &json!({"is_public": true}))
            .await,
    );
    assert_eq!(public.status, 400, "{}", public.body);
    let removed = answered(admin.remove_member(direct, other.id).await);
    assert_eq!(removed.status, 400, "{}", removed.body);
    let detail = answered(admin.conversation(direct).await).body;
    assert_eq!(detail["conversation_type"], "direct");
    assert_eq!(detail["is_public"], false);
    assert_eq!(detail["members"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn admins_remove_members_whose_sockets_close_with_4403() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let mika = server.register("mika").await;
    let group = answered(lalo.create_group("crew", &[kalu.id, mika.id]).await)
        .id()
        .unwrap();
    let mut lalo_ws = lalo.ws(group).await;
    let mut mika_ws = mika.ws(group).await;

    // Not an admin: 403, nobody removed.
    let refused = answered(kalu.remove_member(group, mika.id).await);
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(
        refused.body,
        json!({"detail": "Only admins can remove members."})
    );
    // Missing, non-member and unknown ids: 400, nothing stored.
    let missing = lalo
        .post(
            &format!("/api/chat/conversations/{group}/remove-member/"),
            json!({}),
        )
        .await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.body, json!({"detail": "user_id required."}));
    let outsider = server.register("nico").await;
    let not_in = answered(lalo.remove_member(group, outsider.id).await);
    assert_eq!(not_in.status, 400, "{}", not_in.body);
    assert_eq!(
        not_in.body,
        json!({"user_id": ["this user is not a member of the conversation"]})
    );

    let removed = answered(lalo.remove_member(group, mika.id).await);
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert_eq!(removed.body, json!({"status": "member removed"}));
    let frame = lalo_ws.recv_type("member.removed").await;
    assert_eq!(frame["user_id"], mika.id);
    assert_eq!(frame["seq"], 1, "the refusals used no seq");
    let (_, code) = mika_ws.until_close().await;
    assert_eq!(code, Some(4403));
    assert!(!listed_ids(&mika).await.contains(&group));
    assert_eq!(answered(mika.conversation(group).await).status, 404);
    let posted = answered(mika.send(group, "still here?", None).await);
    assert_eq!(posted.status, 403);
    let (status, _) = Ws::refusal(&mika.ws_url(group, None)).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn the_last_admin_leaving_promotes_the_longest_standing_member() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let mika = server.register("mika").await;
    let nico = server.register("nico").await;
    // kalu and mika join at creation, nico later: kalu and mika joined
    // together, and kalu's membership is the older one.
    let group = answered(lalo.create_group("crew", &[kalu.id, mika.id]).await)
        .id()
        .unwrap();
    answered(lalo.add_member(group, nico.id).await);
    let mut nico_ws = nico.ws_since(group, 0).await;
    let (_, _) = nico_ws.recv_until("sync.done").await;

    assert_eq!(answered(lalo.leave(group).await).status, 200);
    let removed = nico_ws.recv_type("member.removed").await;
    assert_eq!(removed["user_id"], lalo.id);
    let promoted = nico_ws.recv_type("member.promoted").await;
    assert_eq!(promoted["user_id"], kalu.id);
    assert_eq!(promoted["conversation"], group);
    assert_eq!(
        promoted["seq"].as_u64(),
        removed["seq"].as_u64().map(|s| s + 1)
    );
    let detail = answered(nico.conversation(group).await).body;
    assert_eq!(admins(&detail), [kalu.id]);

    // The new admin can act as one; a non-admin leaving promotes nobody.
    let update = answered(
        kalu.update_conversation(group, &json!({"title": "kalu's"}))
            .await,
    );
    assert_eq!(update.status, 200, "{}", update.body);
    assert_eq!(answered(mika.leave(group).await).status, 200);
    assert_eq!(
        admins(&answered(nico.conversation(group).await).body),
        [kalu.id]
    );
    // kalu leaves: nico, the last member, is the admin.
    assert_eq!(answered(kalu.leave(group).await).status, 200);
    assert_eq!(
        admins(&answered(nico.conversation(group).await).body),
        [nico.id]
    );

    // A replay from 0 shows the same story in the same seqs.
    let mut replay = nico.ws_since(group, 0).await;
    let (_, frames) = replay.recv_until("sync.done").await;
    let kinds: Vec<&str> = frames.iter().filter_map(|f| f["type"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "member.added",
            "member.removed",
            "member.promoted",
            "conversation.updated",
            "member.removed",
            "member.removed",
            "member.promoted"
        ]
    );
    assert_eq!(seqs(&frames), (1..=7).collect::<Vec<u64>>());
}

#[tokio::test]
async fn deleting_a_group_closes_its_sockets_with_4404_and_removes_it_everywhere() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let group = answered(lalo.create_group("crew", &[kalu.id]).await)
        .id()
        .unwrap();
    let other = answered(lalo.create_group("other", &[kalu.id]).await)
        .id()
        .unwrap();
    lalo.send_message(group, "one").await;
    lalo.send_message(other, "two").await;
    let mut kalu_ws = kalu.ws(group).await;
    let mut lalo_ws = lalo.ws(group).await;

    // Not an admin: 403, nothing deleted, no frame.
    let refused = kalu.delete_conversation(group).await.unwrap();
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(
        refused.body,
        json!({"detail": "Only admins can delete this conversation."})
    );
    assert!(listed_ids(&kalu).await.contains(&group));

    let deleted = lalo.delete_conversation(group).await.unwrap();
    assert_eq!(deleted.status, 204, "{}", deleted.describe());
    for ws in [&mut kalu_ws, &mut lalo_ws] {
        let (frames, code) = ws.until_close().await;
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!(frames[0]["type"], "conversation.deleted");
        assert_eq!(frames[0]["conversation"], group);
        assert_eq!(frames[0]["by"], lalo.id);
        assert_eq!(frames[0]["seq"], 2);
        assert_eq!(code, Some(4404));
    }
    for user in [&lalo, &kalu] {
        let listed = listed_ids(user).await;
        assert!(!listed.contains(&group), "{}: {listed:?}", user.username);
        assert!(listed.contains(&other), "{}: {listed:?}", user.username);
        let detail = answered(user.conversation(group).await);
        assert_eq!(detail.status, 404);
        let (status, _) = Ws::refusal(&user.ws_url(group, Some(0))).await;
        assert_eq!(status, 404);
        let post = answered(user.send(group, "hello?", None).await);
        assert!(post.status == 403 || post.status == 404, "{}", post.body);
    }
    // The other conversation's unread count and last message are intact.
    let listed = kalu.listed_conversation(other).await;
    assert_eq!(listed["unread_count"], 1);
    assert_eq!(listed["last_message"]["content"], "two");
    // Deleting again: 404.
    let again = answered(lalo.delete_conversation(group).await);
    assert_eq!(again.status, 404);
}

#[tokio::test]
async fn deletion_leave_and_pins_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &["--demo"]).await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let gone = answered(lalo.create_group("gone", &[kalu.id]).await)
        .id()
        .unwrap();
    let kept = answered(lalo.create_group("kept", &[kalu.id]).await)
        .id()
        .unwrap();
    lalo.send_message(gone, "bye").await;
    let pinned = lalo.send_message(kept, "pin me").await["id"]
        .as_u64()
        .unwrap();
    lalo.send_message(kept, "newest").await;
    assert_eq!(answered(lalo.pin(kept, pinned).await).status, 201);
    assert_eq!(lalo.delete_conversation(gone).await.unwrap().status, 204);
    assert_eq!(answered(lalo.leave(kept).await).status, 200);
    let before = kalu.listed_conversation(kept).await;
    server.kill9().await;

    let server = Server::start_in(dir.path(), &["--demo"]).await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    assert!(!listed_ids(&lalo).await.contains(&gone));
    assert!(!listed_ids(&lalo).await.contains(&kept));
    assert_eq!(
        listed_ids(&kalu)
            .await
            .iter()
            .filter(|c| **c == gone)
            .count(),
        0
    );
    let after = kalu.listed_conversation(kept).await;
    assert_eq!(after["unread_count"], 2);
    assert_eq!(after["last_message"]["content"], "newest");
    assert_eq!(after["pinned_message_ids"], json!([pinned]));
    assert_eq!(admins(&after), [kalu.id]);
    assert_eq!(after["title"], before["title"]);
    let member_ids = |c: &Value| -> Vec<u64> {
        c["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(member_ids(&after), member_ids(&before));
}

#[tokio::test]
async fn a_deleted_direct_conversation_can_be_started_again() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let direct = lalo.direct_with(&kalu).await;
    let admin = if admins(&answered(lalo.conversation(direct).await).body) == [lalo.id] {
        &lalo
    } else {
        &kalu
    };
    admin.send_message(direct, "old").await;
    let deleted = admin.delete_conversation(direct).await.unwrap();
    assert_eq!(deleted.status, 204);
    let fresh = answered(kalu.create_direct(lalo.id).await);
    assert_eq!(fresh.status, 201, "{}", fresh.body);
    let fresh_id = fresh.id().unwrap();
    assert_ne!(fresh_id, direct);
    assert!(kalu.history(fresh_id, "").await.is_empty());
    assert_eq!(fresh.body["last_message"], Value::Null);
}

#[tokio::test]
async fn unread_and_last_message_stay_exact_through_leave_and_rejoin() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let group = answered(lalo.create_group("crew", &[kalu.id]).await)
        .id()
        .unwrap();
    lalo.send_message(group, "one").await;
    lalo.send_message(group, "two").await;
    assert_eq!(kalu.listed_conversation(group).await["unread_count"], 2);
    assert_eq!(answered(kalu.leave(group).await).status, 200);
    lalo.send_message(group, "while away").await;
    // Back in: the whole history after the read position is unread again.
    answered(lalo.add_member(group, kalu.id).await);
    let listed = kalu.listed_conversation(group).await;
    assert_eq!(listed["unread_count"], 3);
    assert_eq!(listed["last_message"]["content"], "while away");
    // lalo's own view: nothing unread, same last message.
    let mine = lalo.listed_conversation(group).await;
    assert_eq!(mine["unread_count"], 0);
    assert_eq!(mine["last_message"]["content"], "while away");
}
