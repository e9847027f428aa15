//! Contacts and blocking (`api/contacts.rs`, issue 14): the seven routes
//! with the contract's object and errors, one contact per pair, their
//! events surviving a crash; and blocks taking effect: no direct
//! conversation, no posts (REST 403, socket `forbidden`), no typing and no
//! presence for the blocked user.

mod common;

use common::*;
use serde_json::{json, Value};

const NO_CONTACT: &str = "No Contact matches the given query.";
const BLOCKED: &str = "This user does not accept messages from you.";

/// `owner` adds `user` with `fields`; must be a 201. Returns the contact.
async fn add(owner: &User, user: &User, fields: Value) -> Value {
    let resp = answered(owner.add_contact(user.id, &fields).await);
    assert_eq!(resp.status, 201, "{}", resp.body);
    resp.body
}

fn contact_id(contact: &Value) -> u64 {
    contact["id"].as_u64().expect("contact id")
}

#[tokio::test]
async fn contacts_routes_answer_as_the_contract() {
    let server = Server::start(&["--dev"]).await;
    let ana = server.register("ana").await;
    let ben = server.register("ben").await;
    let cid = server.register("cid").await;

    let added = add(
        &ana,
        &ben,
        json!({"nickname": "Benny", "is_favorite": true}),
    )
    .await;
    assert_eq!(keys(&added), CONTACT_KEYS);
    assert_key_set(&added["contact"], &USER_KEYS);
    assert_eq!(added["contact"]["id"], ben.id);
    assert_eq!(
        added["contact"]["email"], "",
        "another user's email stays hidden"
    );
    assert_eq!(added["nickname"], "Benny");
    assert_eq!(added["is_blocked"], false);
    assert_eq!(added["is_favorite"], true);
    assert!(added["added_at"].as_str().unwrap().ends_with('Z'));
    let id = contact_id(&added);
    // contact_id as a string of digits, is_blocked settable at creation.
    let second = ana
        .post(
            "/api/chat/contacts/",
            json!({"contact_id": cid.id.to_string(), "is_blocked": true}),
        )
        .await;
    assert_eq!(second.status, 201, "{}", second.body);
    assert_eq!(second.body["is_blocked"], true);
    assert_eq!(second.body["nickname"], "");

    // List: a plain array of the caller's own; one; others' are 404.
    let listed = answered(ana.contacts().await);
    assert_eq!(listed.status, 200);
    let listed = listed.body.as_array().unwrap().clone();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0], added);
    assert_eq!(answered(ben.contacts().await).body, json!([]));
    assert_eq!(answered(ana.contact(id).await).body, added);
    for resp in [
        ben.contact(id).await,
        ben.update_contact(id, &json!({"nickname": "x"})).await,
        ben.delete_contact(id).await,
        ben.toggle_block(id).await,
        ben.toggle_favorite(id).await,
        ana.contact(9999).await,
    ] {
        let resp = answered(resp);
        assert_eq!(resp.status, 404, "{}", resp.body);
        assert_eq!(resp.body, json!({"detail": NO_CONTACT}));
    }
    assert_eq!(ana.get("/api/chat/contacts/abc/").await.status, 404);

    // Refusals, each changing nothing.
    let refusals = [
        (json!({}), 400, json!(["contact_id required."])),
        (
            json!({"contact": ben.id}),
            400,
            json!(["contact_id required."]),
        ),
        (
            json!({"contact_id": "abc"}),
            400,
            json!({"contact_id": ["A valid integer is required."]}),
        ),
        (json!({"contact_id": 9999}), 404, json!(["User not found."])),
        (
            json!({"contact_id": ana.id}),
            400,
            json!(["You cannot add yourself as a contact."]),
        ),
        (
            json!({"contact_id": ben.id}),
            400,
            json!(["Contact already exists."]),
        ),
        (
            json!({"contact_id": 9999, "nickname": "x".repeat(256), "is_favorite": "maybe"}),
            400,
            json!({
                "nickname": ["Ensure this field has no more than 255 characters."],
                "is_favorite": ["Must be a valid boolean."]
            }),
        ),
    ];
    for (body, status, answer) in refusals {
        let resp = ana.post("/api/chat/contacts/", body.clone()).await;
        assert_eq!(resp.status, status, "{body}: {}", resp.body);
        assert_eq!(resp.body, answer, "{body}");
    }
    assert_eq!(
        answered(ana.contacts().await)
            .body
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // PATCH and PUT: partial, contact/contact_id ignored.
    let patched = answered(
        ana.update_contact(id, &json!({"nickname": "B", "contact_id": cid.id}))
            .await,
    );
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body["nickname"], "B");
    assert_eq!(patched.body["contact"]["id"], ben.id);
    assert_eq!(patched.body["is_favorite"], true);
    let put = ana
        .put(
            &format!("/api/chat/contacts/{id}/"),
            json!({"is_favorite": false}),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    assert_eq!(put.body["nickname"], "B");
    assert_eq!(put.body["is_favorite"], false);
    let bad = answered(
        ana.update_contact(id, &json!({"is_blocked": "perhaps"}))
            .await,
    );
    assert_eq!(bad.status, 400);
    assert_eq!(
        bad.body,
        json!({"is_blocked": ["Must be a valid boolean."]})
    );

    // The toggles.
    for expected in ["blocked", "unblocked", "blocked"] {
        let resp = answered(ana.toggle_block(id).await);
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body, json!({ "status": expected }));
    }
    for expected in ["favorited", "unfavorited"] {
        let resp = answered(ana.toggle_favorite(id).await);
        assert_eq!(resp.body, json!({ "status": expected }));
    }
    let now = answered(ana.contact(id).await).body;
    assert_eq!(
        (now["is_blocked"].clone(), now["is_favorite"].clone()),
        (json!(true), json!(false))
    );

    // Authentication required.
    assert_eq!(server.anon().get("/api/chat/contacts/").await.status, 401);

    // Delete: 204, then gone; the user can be added again.
    let deleted = ana.delete_contact(contact_id(&second.body)).await.unwrap();
    assert_eq!(deleted.status, 204);
    assert_eq!(
        answered(ana.contact(contact_id(&second.body)).await).status,
        404
    );
    add(&ana, &cid, json!({})).await;
}

/// Every contact change is an event in the log: after a crash (no final
/// snapshot) the replay gives the same contacts.
#[tokio::test]
async fn contacts_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &["--dev"]).await;
    let ana = server.register("ana").await;
    let ben = server.register("ben").await;
    let cid = server.register("cid").await;
    let id = contact_id(&add(&ana, &ben, json!({"nickname": "B"})).await);
    answered(ana.toggle_block(id).await);
    let gone = contact_id(&add(&ana, &cid, json!({})).await);
    assert_eq!(ana.delete_contact(gone).await.unwrap().status, 204);
    let before = answered(ana.contacts().await).body;
    server.kill9().await;

    let server = Server::start_in(dir.path(), &["--dev"]).await;
    let ana = server.with_token(&ana.access);
    assert_eq!(answered(ana.contacts().await).body, before);
    assert_eq!(before[0]["is_blocked"], true);
    assert_eq!(before.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_blocked_user_cannot_open_a_direct_chat_nor_post_in_it() {
    let server = Server::start(&["--dev"]).await;
    let ana = server.register("ana").await;
    let ben = server.register("ben").await;
    let conv = ana.direct_with(&ben).await;
    ben.send_message(conv, "before the block").await;
    let mut ben_ws = ben.ws(conv).await;
    let mut ana_ws = ana.ws(conv).await;

    let id = contact_id(&add(&ana, &ben, json!({"is_blocked": true})).await);
    // create-direct: refused, even though the conversation exists.
    let direct = answered(ben.create_direct(ana.id).await);
    assert_eq!(direct.status, 403, "{}", direct.body);
    assert_eq!(direct.body, json!({"detail": BLOCKED}));
    // REST post: 403, nothing stored.
    let post = answered(ben.send(conv, "let me in", None).await);
    assert_eq!(post.status, 403, "{}", post.body);
    assert_eq!(post.body, json!({"detail": BLOCKED}));
    // Socket post: a forbidden error frame to the sender only.
    ben_ws
        .send(json!({"type": "message.send", "content": "hello?", "client_id": "b1"}))
        .await;
    let error = ben_ws.recv_type("error").await;
    assert_eq!(error["code"], "forbidden", "{error}");
    assert_eq!(error["client_id"], "b1");
    assert_eq!(ana.history(conv, "").await.len(), 1, "nothing stored");

    // The blocker still writes (and the blocked user still reads).
    ana.send_message(conv, "my last word").await;
    assert_eq!(
        ben_ws.recv_type("message.new").await["data"]["content"],
        "my last word"
    );
    assert_eq!(
        ana_ws.recv_type("message.new").await["data"]["content"],
        "my last word"
    );
    // Ana's create-direct is not refused: the block is hers.
    assert_eq!(answered(ana.create_direct(ben.id).await).status, 200);

    // Unblocked: everything works again.
    assert_eq!(
        answered(ana.toggle_block(id).await).body["status"],
        "unblocked"
    );
    assert_eq!(answered(ben.create_direct(ana.id).await).status, 200);
    ben.send_message(conv, "thanks").await;
    let seqs: Vec<u64> = ana
        .history(conv, "")
        .await
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![3, 2, 1], "refused posts used no seq");

    // A block before any conversation: no new one either, and deleting
    // the contact lifts the block.
    let cid = server.register("cid").await;
    let blocked = contact_id(&add(&cid, &ben, json!({"is_blocked": true})).await);
    assert_eq!(answered(ben.create_direct(cid.id).await).status, 403);
    assert_eq!(cid.delete_contact(blocked).await.unwrap().status, 204);
    assert_eq!(answered(ben.create_direct(cid.id).await).status, 201);
}

/// The next `presence` frame about `user_id` (others' are skipped).
async fn presence_of(ws: &mut Ws, user_id: u64) -> Value {
    loop {
        let (frame, _) = ws.recv_until("presence").await;
        if frame["user_id"] == user_id {
            return frame;
        }
    }
}

/// A blocks B: in a group of A, B and C, C sees A's typing and presence,
/// B sees neither. Each socket's frames arrive in order, so whatever B got
/// comes before the message sent after.
#[tokio::test]
async fn a_blocked_user_gets_no_typing_and_no_presence() {
    let server = Server::start(&["--dev", "--presence-grace-secs", "1"]).await;
    let ana = server.register("ana").await;
    let ben = server.register("ben").await;
    let cid = server.register("cid").await;
    let group = answered(ana.create_group("trio", &[ben.id, cid.id]).await);
    assert_eq!(group.status, 201, "{}", group.body);
    let conv = group.id().unwrap();
    add(&ana, &ben, json!({"is_blocked": true})).await;
    let mut ben_ws = ben.ws(conv).await.with_presence();
    let mut cid_ws = cid.ws(conv).await.with_presence();

    // Ana's first socket: cid is told she is online, ben is not.
    let mut ana_ws = ana.ws(conv).await;
    assert_eq!(presence_of(&mut cid_ws, ana.id).await["is_online"], true);

    ana_ws.send(json!({"type": "typing"})).await;
    let (typing, _) = cid_ws.recv_until("typing").await;
    assert_eq!(typing["user_id"], ana.id);
    send_ws(&mut ana_ws, "after typing", "a1").await;
    cid_ws.recv_type("message.new").await;
    let (message, before) = ben_ws.recv_until("message.new").await;
    assert_eq!(message["data"]["content"], "after typing");
    let from_ana: Vec<&Value> = before.iter().filter(|f| f["user_id"] == ana.id).collect();
    assert!(from_ana.is_empty(), "ben got {from_ana:?}");

    // And her going offline is not announced to ben either.
    ana_ws.close().await;
    assert_eq!(presence_of(&mut cid_ws, ana.id).await["is_online"], false);
    cid.send_message(conv, "after offline").await;
    let (_, before) = ben_ws.recv_until("message.new").await;
    assert!(
        before.iter().all(|f| f["user_id"] != ana.id),
        "ben got {before:?}"
    );
}
