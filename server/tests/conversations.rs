//! Conversations (`api/conversations.rs`): direct and group creation,
//! members, the detail (only for members), and the list with each
//! conversation's last message and unread count.

mod common;

use common::*;
use serde_json::{json, Value};

const NO_CONVERSATION: &str = "No Conversation matches the given query.";

#[tokio::test]
async fn create_direct_is_201_when_new_and_200_for_the_same_pair_from_either_side() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    // The demo pair already has its conversation.
    let seeded = lalo
        .post(
            "/api/chat/conversations/create-direct/",
            json!({"user_id": kalu.id}),
        )
        .await;
    assert_eq!(seeded.status, 200, "{}", seeded.body);
    let from_kalu = kalu
        .post(
            "/api/chat/conversations/create-direct/",
            json!({"user_id": lalo.id}),
        )
        .await;
    assert_eq!(from_kalu.status, 200);
    assert_eq!(from_kalu.body["id"], seeded.body["id"]);

    let mika = server.register("mika").await;
    let new = lalo
        .post(
            "/api/chat/conversations/create-direct/",
            json!({"user_id": mika.id}),
        )
        .await;
    assert_eq!(new.status, 201, "{}", new.body);
    assert_eq!(keys(&new.body), CONVERSATION_KEYS);
    assert_eq!(new.body["conversation_type"], "direct");
    assert_eq!(new.body["title"], "lalo - mika");
    assert_eq!(new.body["owner"], lalo.id);
    let admin_of = |conv: &Value, user: u64| {
        conv["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["user"]["id"] == user)
            .map(|m| m["is_admin"].clone())
    };
    assert_eq!(admin_of(&new.body, lalo.id), Some(json!(true)));
    assert_eq!(admin_of(&new.body, mika.id), Some(json!(false)));
    for (who, other) in [(&lalo, &mika), (&mika, &lalo)] {
        let again = who
            .post(
                "/api/chat/conversations/create-direct/",
                json!({"user_id": other.id}),
            )
            .await;
        assert_eq!(again.status, 200, "{}", again.body);
        assert_eq!(again.body["id"], new.body["id"]);
    }

    let missing = lalo
        .post("/api/chat/conversations/create-direct/", json!({}))
        .await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.body, json!({"error": "user_id required."}));
    let unknown = lalo
        .post(
            "/api/chat/conversations/create-direct/",
            json!({"user_id": 999_999}),
        )
        .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.body, json!({"error": "User not found."}));
}

#[tokio::test]
async fn groups_are_created_and_only_admins_add_members() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let mika = server.register("mika").await;
    let created = lalo
        .post(
            "/api/chat/conversations/",
            json!({"title": "crew", "description": "the crew", "member_ids": [kalu.id]}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(keys(&created.body), CONVERSATION_KEYS);
    assert_eq!(created.body["conversation_type"], "group");
    assert_eq!(created.body["title"], "crew");
    assert_eq!(created.body["description"], "the crew");
    assert_eq!(created.body["members"].as_array().unwrap().len(), 2);
    let group = created.body["id"].as_u64().unwrap();

    let unknown = lalo
        .post(
            "/api/chat/conversations/",
            json!({"title": "x", "member_ids": [999_999]}),
        )
        .await;
    assert_eq!(unknown.status, 400, "{}", unknown.body);
    let untitled = lalo.post("/api/chat/conversations/", json!({})).await;
    assert_eq!(untitled.status, 400);

    let add = format!("/api/chat/conversations/{group}/add-member/");
    let by_member = kalu.post(&add, json!({"user_id": mika.id})).await;
    assert_eq!(by_member.status, 403, "{}", by_member.body);
    assert_eq!(
        mika.get(&format!("/api/chat/conversations/{group}/"))
            .await
            .status,
        404
    );
    let by_outsider = mika.post(&add, json!({"user_id": mika.id})).await;
    assert!(
        matches!(by_outsider.status, 403 | 404),
        "{}",
        by_outsider.status
    );
    let no_user = lalo.post(&add, json!({})).await;
    assert_eq!(no_user.status, 400);

    let mut kalu_ws = kalu.ws(group).await;
    let by_admin = lalo.post(&add, json!({"user_id": mika.id})).await;
    assert_eq!(by_admin.status, 200, "{}", by_admin.body);
    assert_eq!(by_admin.body, json!({"status": "member added"}));
    let frame = kalu_ws.recv_type("member.added").await;
    assert_eq!(frame["conversation"], group);
    assert_eq!(frame["user"]["id"], mika.id);
    assert_eq!(frame["seq"], 1);
    let detail = mika.get(&format!("/api/chat/conversations/{group}/")).await;
    assert_eq!(detail.status, 200);
    assert_eq!(detail.body["members"].as_array().unwrap().len(), 3);
    let again = lalo.post(&add, json!({"user_id": mika.id})).await;
    assert_eq!(again.status, 400, "already a member: {}", again.body);
}

#[tokio::test]
async fn conversation_detail_is_404_for_non_members_and_unknown_ids() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let mika = server.register("mika").await;
    let conv = lalo.direct_with(&kalu).await;
    let path = format!("/api/chat/conversations/{conv}/");
    let ok = kalu.get(&path).await;
    assert_eq!(ok.status, 200);
    assert_eq!(keys(&ok.body), CONVERSATION_KEYS);
    assert_eq!(ok.body["id"], conv);
    for (who, path) in [
        (&mika, path.clone()),
        (&lalo, "/api/chat/conversations/999999/".to_string()),
        (&lalo, "/api/chat/conversations/abc/".to_string()),
    ] {
        let resp = who.get(&path).await;
        assert_eq!(resp.status, 404, "{path}");
        assert_eq!(resp.body, json!({"detail": NO_CONVERSATION}));
    }
}

#[tokio::test]
async fn conversations_list_has_last_message_and_unread_count_most_recent_first() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let mika = server.register("mika").await;
    let with_kalu = lalo.direct_with(&kalu).await;
    let fresh = lalo.listed_conversation(with_kalu).await;
    assert_eq!(keys(&fresh), CONVERSATION_KEYS);
    assert_eq!(fresh["last_message"], Value::Null);
    assert_eq!(fresh["unread_count"], 0);

    kalu.send_message(with_kalu, "one").await;
    let two = kalu.send_message(with_kalu, "two").await;
    let listed = lalo.listed_conversation(with_kalu).await;
    assert_eq!(listed["unread_count"], 2);
    assert_eq!(listed["last_message"]["content"], "two");
    assert_eq!(keys(&listed["last_message"]), MESSAGE_KEYS);
    assert_eq!(
        kalu.listed_conversation(with_kalu).await["unread_count"],
        0,
        "one's own messages are not unread"
    );

    // A deleted message is neither unread nor the last message.
    let two_id = two["id"].as_u64().unwrap();
    let deleted = kalu
        .delete(&message_path(with_kalu, two_id, "soft-delete/"))
        .await;
    assert_eq!(deleted.status, 200);
    let listed = lalo.listed_conversation(with_kalu).await;
    assert_eq!(listed["unread_count"], 1);
    assert_eq!(listed["last_message"]["content"], "one");

    // Reading up to the newest message clears the count.
    let read = lalo
        .post(&message_path(with_kalu, two_id, "read/"), json!({}))
        .await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(lalo.listed_conversation(with_kalu).await["unread_count"], 0);
    // Reading an older message does not move the position back.
    let one = lalo.history(with_kalu, "").await.last().unwrap()["id"].clone();
    let read_older = lalo
        .post(
            &message_path(with_kalu, one.as_u64().unwrap(), "read/"),
            json!({}),
        )
        .await;
    assert_eq!(read_older.status, 200);
    assert_eq!(lalo.listed_conversation(with_kalu).await["unread_count"], 0);

    // Most recent activity first.
    let with_mika = lalo.direct_with(&mika).await;
    let order = |list: Value| -> Vec<u64> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(
        order(lalo.get("/api/chat/conversations/").await.body),
        [with_mika, with_kalu]
    );
    kalu.send_message(with_kalu, "three").await;
    assert_eq!(
        order(lalo.get("/api/chat/conversations/").await.body),
        [with_kalu, with_mika]
    );
    mika.send_message(with_mika, "hi").await;
    assert_eq!(
        order(lalo.get("/api/chat/conversations/").await.body),
        [with_mika, with_kalu]
    );
    // Only the caller's conversations.
    assert_eq!(
        order(kalu.get("/api/chat/conversations/").await.body),
        [with_kalu]
    );
}

/// The ids of the caller's conversations.
async fn listed_ids(api: &Api) -> Vec<u64> {
    answered(api.conversations().await)
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn group_adds_need_the_users_consent() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let mika = server.register("mika").await;
    let off = answered(
        mika.update_profile(&json!({"allow_group_invite": false}))
            .await,
    );
    assert_eq!(off.status, 200, "{}", off.body);
    let lalo_before = listed_ids(&lalo).await;

    // At creation: the whole request is refused, naming the user.
    let refused = answered(lalo.create_group("crew", &[kalu.id, mika.id]).await);
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(
        refused.body,
        json!({"detail": "mika does not accept group invitations."})
    );
    assert_eq!(listed_ids(&lalo).await, lalo_before, "nothing created");
    assert!(listed_ids(&mika).await.is_empty());
    assert!(!listed_ids(&kalu)
        .await
        .iter()
        .any(|c| !lalo_before.contains(c)));

    // Later, by an admin: refused too.
    let created = answered(lalo.create_group("crew", &[kalu.id]).await);
    assert_eq!(created.status, 201, "{}", created.body);
    let group = created.id().unwrap();
    let mut kalu_ws = kalu.ws(group).await;
    let add = answered(lalo.add_member(group, mika.id).await);
    assert_eq!(add.status, 403, "{}", add.body);
    assert_eq!(
        add.body,
        json!({"detail": "mika does not accept group invitations."})
    );
    assert!(listed_ids(&mika).await.is_empty());
    let detail = answered(lalo.conversation(group).await).body;
    assert_eq!(detail["members"].as_array().unwrap().len(), 2);

    // Consent given: the add goes through, and nothing was sent before.
    answered(
        mika.update_profile(&json!({"allow_group_invite": true}))
            .await,
    );
    let add = answered(lalo.add_member(group, mika.id).await);
    assert_eq!(add.status, 200, "{}", add.body);
    let frame = kalu_ws.recv().await;
    assert_eq!(frame["type"], "member.added", "{frame}");
    assert_eq!(frame["seq"], 1, "the refused add used no seq");
    assert_eq!(listed_ids(&mika).await, [group]);
}

#[tokio::test]
async fn any_member_can_leave_a_group_but_not_a_direct_conversation() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let mika = server.register("mika").await;
    let group = answered(lalo.create_group("crew", &[kalu.id, mika.id]).await)
        .id()
        .unwrap();
    let mut lalo_ws = lalo.ws(group).await;
    let mut kalu_ws = kalu.ws(group).await;

    let left = answered(kalu.leave(group).await);
    assert_eq!(left.status, 200, "{}", left.body);
    assert_eq!(left.body, json!({"status": "left"}));
    let frame = lalo_ws.recv_type("member.removed").await;
    assert_eq!(frame["user_id"], kalu.id);
    assert_eq!(frame["conversation"], group);
    let (_, code) = kalu_ws.until_close().await;
    assert_eq!(code, Some(4403));
    assert!(!listed_ids(&kalu).await.contains(&group));
    assert_eq!(answered(kalu.conversation(group).await).status, 404);
    let again = answered(kalu.leave(group).await);
    assert_eq!(again.status, 404);
    assert_eq!(again.body, json!({"detail": NO_CONVERSATION}));
    let members = answered(lalo.conversation(group).await).body["members"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(members, 2);
    // The admin may leave too.
    assert_eq!(answered(lalo.leave(group).await).status, 200);
    assert_eq!(listed_ids(&mika).await, [group]);

    let direct = lalo.direct_with(&kalu).await;
    let refused = answered(lalo.leave(direct).await);
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(listed_ids(&lalo).await.contains(&direct));
    assert_eq!(answered(lalo.leave(999_999).await).status, 404);
}

#[tokio::test]
async fn titles_and_descriptions_have_limits() {
    let server = Server::demo().await;
    let lalo = server.login("lalo", "lalo123").await;
    let before = listed_ids(&lalo).await;
    let huge = answered(
        lalo.create_group_with(&json!({"title": "spam", "description": "d".repeat(250_000)}))
            .await,
    );
    assert_eq!(huge.status, 400, "{}", huge.describe());
    assert_eq!(
        huge.body,
        json!({"description": ["Ensure this field has no more than 2048 characters."]})
    );
    let both = answered(
        lalo.create_group_with(&json!({"title": "t".repeat(256), "description": "d".repeat(2049)}))
            .await,
    );
    assert_eq!(
        both.body,
        json!({
            "title": ["Ensure this field has no more than 255 characters."],
            "description": ["Ensure this field has no more than 2048 characters."],
        })
    );
    assert_eq!(listed_ids(&lalo).await, before, "nothing stored");
    let at_limit = answered(
        lalo.create_group_with(&json!({"title": "t".repeat(255), "description": "é".repeat(2048)}))
            .await,
    );
    assert_eq!(at_limit.status, 201, "{}", at_limit.describe());

    // The limit is a flag.
    let small = Server::start(&["--demo", "--max-description-chars", "10"]).await;
    let lalo = small.login("lalo", "lalo123").await;
    let over = answered(
        lalo.create_group_with(&json!({"title": "x", "description": "d".repeat(11)}))
            .await,
    );
    assert_eq!(
        over.body,
        json!({"description": ["Ensure this field has no more than 10 characters."]})
    );
}
