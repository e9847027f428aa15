//! Messages (`api/messages.rs`): sending (and its refusals), exactly-once
//! sends with `client_id`, history and its pagination, and the message
//! actions (edit, delete, react, read) answering and reaching every socket.

mod common;

use common::*;
use serde_json::{json, Value};

const NOT_MEMBER: &str = "You are not a member of this conversation.";

#[tokio::test]
async fn send_answers_201_with_the_message_object_and_refuses_bad_input() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let mika = server.register("mika").await;
    let conv = lalo.direct_with(&kalu).await;
    let path = messages_path(conv);

    let sent = lalo.post(&path, json!({"content": "hello"})).await;
    assert_eq!(sent.status, 201, "{}", sent.body);
    let message = &sent.body;
    assert_eq!(keys(message), MESSAGE_KEYS);
    assert_eq!(message["conversation"], conv);
    assert_eq!(message["content"], "hello");
    assert_eq!(message["message_type"], "text");
    assert_eq!(message["is_deleted"], false);
    assert_eq!(message["seq"], 1);
    assert_eq!(message["client_id"], Value::Null);
    assert_eq!(message["edited_at"], Value::Null);
    assert_key_set(&message["sender"], &USER_KEYS);
    assert_eq!(message["sender"]["id"], lalo.id);
    let receipts = message["receipts"].as_array().unwrap();
    assert_eq!(receipts.len(), 1);
    assert_eq!(receipts[0]["state"], "sent");
    assert_eq!(receipts[0]["user"]["id"], lalo.id);
    let created = message["created_at"].as_str().unwrap();
    assert!(created.ends_with('Z'), "{created}");

    for blank in ["", "   "] {
        let resp = lalo.post(&path, json!({"content": blank})).await;
        assert_eq!(resp.status, 400);
        assert_eq!(
            resp.body,
            json!({"content": ["This field may not be blank."]})
        );
    }
    let too_long = lalo.post(&path, json!({"content": "x".repeat(4097)})).await;
    assert_eq!(too_long.status, 400);
    assert!(too_long.body["content"].is_array(), "{}", too_long.body);
    let exactly = lalo.post(&path, json!({"content": "é".repeat(4096)})).await;
    assert_eq!(exactly.status, 201, "the limit counts characters");
    let bad_type = lalo
        .post(&path, json!({"content": "hi", "message_type": "sticker"}))
        .await;
    assert_eq!(bad_type.status, 400);
    assert!(
        bad_type.body["message_type"].is_array(),
        "{}",
        bad_type.body
    );

    let outsider = mika.post(&path, json!({"content": "let me in"})).await;
    assert_eq!(outsider.status, 403);
    assert_eq!(outsider.body, json!({"detail": NOT_MEMBER}));
    let unknown = lalo
        .post(&messages_path(999_999), json!({"content": "anyone?"}))
        .await;
    assert_eq!(unknown.status, 403);

    // is_deleted in the body is ignored; reply_to must be in this
    // conversation.
    let sneaky = lalo
        .post(&path, json!({"content": "still here", "is_deleted": true}))
        .await;
    assert_eq!(sneaky.status, 201);
    assert_eq!(sneaky.body["is_deleted"], false);
    let reply = kalu
        .post(&path, json!({"content": "re", "reply_to": message["id"]}))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["reply_to"], message["id"]);
    assert_eq!(reply.body["reply_to_message"]["id"], message["id"]);
    assert_eq!(reply.body["reply_to_message"]["content"], "hello");
    let elsewhere = mika.direct_with(&lalo).await;
    let foreign = lalo.send_message(elsewhere, "elsewhere").await;
    let cross = lalo
        .post(&path, json!({"content": "re", "reply_to": foreign["id"]}))
        .await;
    assert_eq!(cross.status, 400, "{}", cross.body);

    // Nothing refused was stored.
    let history = kalu.history(conv, "").await;
    let contents: Vec<&str> = history
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents.len(), 4, "{contents:?}");
    assert_eq!(contents[0], "re");
    assert_eq!(contents[3], "hello");
}

#[tokio::test]
async fn send_with_client_id_is_exactly_once() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let conv = lalo.direct_with(&kalu).await;
    let path = messages_path(conv);
    let body = json!({"content": "once", "client_id": "c-1"});
    let first = lalo.post(&path, body.clone()).await;
    assert_eq!(first.status, 201);
    assert_eq!(first.body["client_id"], "c-1");
    let retry = lalo.post(&path, body.clone()).await;
    assert_eq!(retry.status, 200, "{}", retry.body);
    assert_eq!(retry.body["id"], first.body["id"]);
    assert_eq!(retry.body["seq"], first.body["seq"]);
    // The same client_id from another sender is another message.
    let other = kalu.post(&path, body).await;
    assert_eq!(other.status, 201);
    assert_ne!(other.body["id"], first.body["id"]);
    let history = lalo.history(conv, "").await;
    assert_eq!(history.len(), 2, "{history:?}");
    let too_long = lalo
        .post(&path, json!({"content": "x", "client_id": "c".repeat(65)}))
        .await;
    assert_eq!(too_long.status, 400);
}

#[tokio::test]
async fn history_is_newest_first_and_paginates() {
    // 105 sends in a row: past the default burst of 100 per user.
    let server = Server::start(&["--dev", "--user-msg-rate", "0"]).await;
    let ana = server.register("ana").await;
    let ben = server.register("ben").await;
    let cid = server.register("cid").await;
    let conv = ana.direct_with(&ben).await;
    let mut ids = Vec::new();
    for i in 1..=105 {
        let message = ana.send_message(conv, &format!("m{i}")).await;
        assert_eq!(message["seq"], i);
        ids.push(message["id"].as_u64().unwrap());
    }
    let contents = |page: &[Value]| -> Vec<String> {
        page.iter()
            .map(|m| m["content"].as_str().unwrap().to_string())
            .collect()
    };
    let names = |range: std::ops::RangeInclusive<usize>| -> Vec<String> {
        range.rev().map(|i| format!("m{i}")).collect()
    };

    let default = ben.history(conv, "").await;
    assert_eq!(default.len(), 105, "no limit: the whole history");
    assert_eq!(contents(&default), names(1..=105), "newest first");
    assert_eq!(keys(&default[0]), MESSAGE_KEYS);
    assert_eq!(
        contents(&ben.history(conv, &format!("before={}", ids[9])).await),
        names(1..=9),
        "a cursor without limit: everything before it"
    );
    assert_eq!(
        contents(&ben.history(conv, "limit=10").await),
        names(96..=105)
    );
    assert_eq!(ben.history(conv, "limit=1000").await.len(), 105);

    let m50 = ids[49];
    assert_eq!(
        contents(&ben.history(conv, &format!("before={m50}&limit=5")).await),
        names(45..=49)
    );
    assert_eq!(
        contents(&ben.history(conv, &format!("after={m50}&limit=5")).await),
        names(51..=55),
        "the page right after the cursor, newest first"
    );
    assert_eq!(
        contents(&ben.history(conv, &format!("after={}", ids[99])).await),
        names(101..=105)
    );
    assert_eq!(
        contents(&ben.history(conv, "before_seq=10").await),
        names(1..=9)
    );
    assert_eq!(
        contents(&ben.history(conv, "after_seq=100").await),
        names(101..=105)
    );
    assert_eq!(
        contents(&ben.history(conv, "after_seq=10&before_seq=14").await),
        names(11..=13)
    );
    assert!(ben.history(conv, "after_seq=105").await.is_empty());

    let bad = ben.get(&format!("{}?limit=abc", messages_path(conv))).await;
    assert_eq!(bad.status, 400);
    let outsider = cid.get(&messages_path(conv)).await;
    assert_eq!(outsider.status, 403);
    assert_eq!(outsider.body, json!({"detail": NOT_MEMBER}));
}

/// The live Flutter client loads a conversation with one `GET` without
/// parameters and never pages: it gets the whole history, as the original
/// served it (issue 14; Vato used to answer the newest 100).
#[tokio::test]
async fn history_without_parameters_is_the_whole_history() {
    let server = Server::start(&["--dev", "--user-msg-rate", "0"]).await;
    let ana = server.register("ana").await;
    let ben = server.register("ben").await;
    let conv = ana.direct_with(&ben).await;
    for i in 1..=130 {
        ana.send_message(conv, &format!("m{i}")).await;
    }
    let all = ben.history(conv, "").await;
    assert_eq!(all.len(), 130);
    assert_eq!(all[0]["content"], "m130", "newest first");
    assert_eq!(all[129]["content"], "m1");
    let seqs: Vec<u64> = all.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=130).rev().collect::<Vec<u64>>());
    // The explicit page sizes are unchanged.
    assert_eq!(ben.history(conv, "limit=20").await.len(), 20);
    assert_eq!(
        ben.history(conv, "ordering=created_at").await[0]["content"],
        "m1"
    );
    let found = ben.history(conv, "search=m12").await;
    assert_eq!(found.len(), 11, "m12 and m120 to m129: every match");
}

/// `--history-max` caps an answer without `?limit=` (the newest N; the
/// oldest N after an `after` cursor); an explicit `limit` is not capped
/// by it.
#[tokio::test]
async fn history_max_caps_the_unpaged_history() {
    let server = Server::start(&["--dev", "--user-msg-rate", "0", "--history-max", "50"]).await;
    let ana = server.register("ana").await;
    let ben = server.register("ben").await;
    let conv = ana.direct_with(&ben).await;
    let mut ids = Vec::new();
    for i in 1..=130 {
        ids.push(
            ana.send_message(conv, &format!("m{i}")).await["id"]
                .as_u64()
                .unwrap(),
        );
    }
    let capped = ben.history(conv, "").await;
    assert_eq!(capped.len(), 50);
    assert_eq!(capped[0]["content"], "m130");
    assert_eq!(capped[49]["content"], "m81");
    let after = ben.history(conv, &format!("after={}", ids[9])).await;
    assert_eq!(after.len(), 50);
    assert_eq!(after[0]["content"], "m60", "the 50 right after the cursor");
    assert_eq!(after[49]["content"], "m11");
    assert_eq!(ben.history(conv, "limit=120").await.len(), 120);
}

#[tokio::test]
async fn message_actions_answer_and_reach_every_socket() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let conv = lalo.direct_with(&kalu).await;
    let mut sockets = [lalo.ws(conv).await, kalu.ws(conv).await];
    let message = kalu.send_message(conv, "first").await;
    let mid = message["id"].as_u64().unwrap();
    for ws in &mut sockets {
        let frame = ws.recv_type("message.new").await;
        assert_eq!(frame["data"]["id"], mid);
        assert_eq!(frame["seq"], 1);
    }

    // Edit through .../edit/.
    let edit_path = message_path(conv, mid, "edit/");
    let edited = kalu.patch(&edit_path, json!({"content": "first!"})).await;
    assert_eq!(edited.status, 200, "{}", edited.body);
    assert_eq!(edited.body["content"], "first!");
    assert!(edited.body["edited_at"].is_string());
    for ws in &mut sockets {
        let frame = ws.recv_type("message.edited").await;
        assert_eq!(frame["data"]["content"], "first!");
        assert_eq!(frame["seq"], 2, "the edit's seq");
        assert_eq!(frame["data"]["seq"], 1, "the message's own seq");
    }
    let not_yours = lalo.patch(&edit_path, json!({"content": "mine now"})).await;
    assert_eq!(not_yours.status, 403);
    assert_eq!(
        not_yours.body,
        json!({"detail": "You can only edit your own messages."})
    );
    let blank = kalu.patch(&edit_path, json!({"content": ""})).await;
    assert_eq!(blank.status, 400);
    assert_eq!(blank.body, json!({"detail": "content required."}));
    let unknown = kalu
        .patch(
            &message_path(conv, 999_999, "edit/"),
            json!({"content": "x"}),
        )
        .await;
    assert_eq!(unknown.status, 404);

    // PUT and PATCH on the message itself also send message.edited.
    let plain = message_path(conv, mid, "");
    let put = kalu.put(&plain, json!({"content": "put"})).await;
    assert_eq!(put.status, 200, "{}", put.body);
    let patched = kalu.patch(&plain, json!({"content": "patched"})).await;
    assert_eq!(patched.status, 200);
    for ws in &mut sockets {
        assert_eq!(
            ws.recv_type("message.edited").await["data"]["content"],
            "put"
        );
        let frame = ws.recv_type("message.edited").await;
        assert_eq!(frame["data"]["content"], "patched");
        assert_eq!(frame["seq"], 4);
    }

    // React: a toggle.
    let react = message_path(conv, mid, "react/");
    let added = lalo.post(&react, json!({"emoji": "👍"})).await;
    assert_eq!(added.status, 201, "{}", added.body);
    assert_eq!(keys(&added.body), ["id", "user", "emoji", "created_at"]);
    assert_eq!(added.body["emoji"], "👍");
    assert_eq!(added.body["user"]["id"], lalo.id);
    let removed = lalo.post(&react, json!({"emoji": "👍"})).await;
    assert_eq!(removed.status, 200);
    assert_eq!(removed.body, json!({"status": "reaction removed"}));
    let no_emoji = lalo.post(&react, json!({})).await;
    assert_eq!(no_emoji.status, 400);
    assert_eq!(no_emoji.body, json!({"detail": "emoji required."}));
    for ws in &mut sockets {
        let frame = ws.recv_type("reaction.added").await;
        assert_eq!(frame["message_id"], mid);
        assert_eq!(frame["reaction"]["emoji"], "👍");
        assert_eq!(frame["reaction"]["id"], added.body["id"]);
        assert_eq!(frame["seq"], 5);
        let frame = ws.recv_type("reaction.removed").await;
        assert_eq!(frame["message_id"], mid);
        assert_eq!(frame["seq"], 6);
    }

    // Read.
    assert_eq!(lalo.listed_conversation(conv).await["unread_count"], 1);
    let read = lalo
        .post(&message_path(conv, mid, "read/"), json!({}))
        .await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body, json!({"status": "read"}));
    for ws in &mut sockets {
        let frame = ws.recv_type("message.read").await;
        assert_eq!(frame["message_id"], mid);
        assert_eq!(frame["user_id"], lalo.id);
        assert_eq!(frame["seq"], 7);
    }
    assert_eq!(lalo.listed_conversation(conv).await["unread_count"], 0);
    let receipts = kalu.history(conv, "").await[0]["receipts"].clone();
    assert!(
        receipts
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["user"]["id"] == lalo.id && r["state"] == "read"),
        "{receipts}"
    );

    // Soft delete: only the sender; the content is blanked.
    let soft = message_path(conv, mid, "soft-delete/");
    assert_eq!(lalo.delete(&soft).await.status, 403);
    let deleted = kalu.delete(&soft).await;
    assert_eq!(deleted.status, 200);
    assert_eq!(deleted.body, json!({"status": "message deleted"}));
    for ws in &mut sockets {
        let frame = ws.recv_type("message.deleted").await;
        assert_eq!(frame["message_id"], mid);
        assert_eq!(frame["seq"], 8);
    }
    let history = lalo.history(conv, "").await;
    assert_eq!(history[0]["is_deleted"], true);
    assert_eq!(history[0]["content"], "");

    // DELETE on the message itself: 204.
    let second = kalu.send_message(conv, "second").await;
    let second_id = second["id"].as_u64().unwrap();
    let gone = kalu.delete(&message_path(conv, second_id, "")).await;
    assert_eq!(gone.status, 204);
    assert_eq!(gone.body, Value::Null);
    for ws in &mut sockets {
        assert_eq!(ws.recv_type("message.new").await["seq"], 9);
        let frame = ws.recv_type("message.deleted").await;
        assert_eq!(frame["message_id"], second_id);
        assert_eq!(frame["seq"], 10);
    }

    // Message actions outside the caller's conversations are 404s, and so
    // is a message addressed through another conversation's path.
    let mika = server.register("mika").await;
    let outsider = mika
        .post(&message_path(conv, second_id, "read/"), json!({}))
        .await;
    assert_eq!(outsider.status, 404);
    assert_eq!(
        outsider.body,
        json!({"detail": "No Message matches the given query."})
    );
    let with_mika = kalu.direct_with(&mika).await;
    let third = kalu.send_message(conv, "third").await;
    let wrong_path = message_path(with_mika, third["id"].as_u64().unwrap(), "edit/");
    let crossed = kalu.patch(&wrong_path, json!({"content": "moved?"})).await;
    assert_eq!(crossed.status, 404, "{}", crossed.body);
    assert_eq!(kalu.history(conv, "limit=1").await[0]["content"], "third");
}
