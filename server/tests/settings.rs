//! Settings (`api/settings.rs`): the 16-key object created on first use,
//! its validation and reset, that nobody else sees it, that it survives
//! restarts, and that `show_typing_indicator` and `show_read_receipts`
//! take effect on real sockets.

mod common;

use common::*;
use serde_json::{json, Value};

fn defaults_without_ids(settings: &Value) -> Value {
    let mut s = settings.clone();
    for key in ["id", "created_at", "updated_at"] {
        s.as_object_mut().unwrap().remove(key);
    }
    s
}

fn defaults() -> Value {
    json!({
        "enable_notifications": true,
        "notification_sound": true,
        "message_preview": true,
        "enter_to_send": true,
        "auto_download_photos": true,
        "auto_download_videos": false,
        "auto_download_files": false,
        "two_factor_enabled": false,
        "show_typing_indicator": true,
        "show_read_receipts": true,
        "theme": "light",
        "font_size": "medium",
        "language": "en",
    })
}

#[tokio::test]
async fn settings_are_null_until_first_used_then_16_keys_seen_only_by_their_owner() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let conv = lalo.direct_with(&kalu).await;
    assert_eq!(
        answered(lalo.profile_me().await).body["settings"],
        Value::Null
    );
    assert_eq!(server.anon().get("/api/auth/settings/").await.status, 401);

    let first = answered(lalo.settings().await);
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(keys(&first.body), SETTINGS_KEYS);
    assert_eq!(defaults_without_ids(&first.body), defaults());
    assert_eq!(first.body["created_at"], first.body["updated_at"]);
    // A second GET stores nothing new.
    assert_eq!(answered(lalo.settings().await).body, first.body);
    let kalus = answered(kalu.settings().await).body;
    assert_ne!(kalus["id"], first.body["id"], "one row per user");

    // Nested in the owner's own objects...
    assert_eq!(
        answered(lalo.profile_me().await).body["settings"],
        first.body
    );
    assert_eq!(answered(lalo.user_me().await).body["settings"], first.body);
    let message = lalo.send_message(conv, "hi").await;
    assert_eq!(message["sender"]["settings"], first.body);
    // ...and never in anyone else's view of them.
    let seen = kalu.history(conv, "").await;
    assert_eq!(seen[0]["sender"]["settings"], Value::Null);
    let detail = answered(kalu.conversation(conv).await).body;
    for member in detail["members"].as_array().unwrap() {
        let expected = if member["user"]["id"] == kalu.id {
            kalus.clone()
        } else {
            Value::Null
        };
        assert_eq!(member["user"]["settings"], expected);
    }
    assert_eq!(
        answered(kalu.user_detail(lalo.id).await).body["settings"],
        Value::Null
    );
}

#[tokio::test]
async fn writes_are_partial_checked_and_reset_restores_the_defaults() {
    let server = Server::demo().await;
    let lalo = server.login("lalo", "lalo123").await;
    // A write before any GET creates the row too.
    let patched = answered(
        lalo.update_settings(&json!({"theme": "dark", "enter_to_send": false}))
            .await,
    );
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(keys(&patched.body), SETTINGS_KEYS);
    assert_eq!(patched.body["theme"], "dark");
    assert_eq!(patched.body["enter_to_send"], false);
    let put = lalo
        .put(
            "/api/auth/settings/",
            json!({"language": "es", "id": 77, "created_at": "2000-01-01T00:00:00Z", "colour": "red"}),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    assert_eq!(put.body["language"], "es");
    assert_eq!(put.body["theme"], "dark", "PUT is partial");
    assert_eq!(put.body["id"], patched.body["id"], "read-only keys ignored");
    assert_eq!(put.body["created_at"], patched.body["created_at"]);
    assert_ne!(put.body["updated_at"], patched.body["created_at"]);

    let bad = answered(
        lalo.update_settings(&json!({
            "theme": "blue",
            "font_size": "huge",
            "language": "tlh",
            "enter_to_send": "maybe",
            "show_read_receipts": null,
            "notification_sound": false,
        }))
        .await,
    );
    assert_eq!(bad.status, 400);
    assert_eq!(
        bad.body,
        json!({
            "enter_to_send": ["Must be a valid boolean."],
            "show_read_receipts": ["This field may not be null."],
            "theme": ["\"blue\" is not a valid choice."],
            "font_size": ["\"huge\" is not a valid choice."],
            "language": ["\"tlh\" is not a valid choice."],
        })
    );
    let unchanged = answered(lalo.settings().await).body;
    assert_eq!(unchanged, put.body, "a refused write changes nothing");

    let reset = answered(lalo.reset_settings().await);
    assert_eq!(reset.status, 200, "{}", reset.body);
    assert_eq!(keys(&reset.body), SETTINGS_KEYS);
    assert_eq!(defaults_without_ids(&reset.body), defaults());
    assert_eq!(reset.body["id"], put.body["id"]);
    assert_ne!(reset.body["updated_at"], put.body["updated_at"]);
    assert_eq!(
        server
            .anon()
            .post("/api/auth/settings/reset/", json!({}))
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn settings_survive_a_crash_and_a_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &["--demo"]).await;
    let lalo = server.login("lalo", "lalo123").await;
    let written = answered(
        lalo.update_settings(&json!({"theme": "auto", "show_typing_indicator": false}))
            .await,
    )
    .body;
    server.kill9().await;
    let server = Server::start_in(dir.path(), &["--demo"]).await;
    let lalo = server.login("lalo", "lalo123").await;
    assert_eq!(answered(lalo.settings().await).body, written);
    assert!(server.terminate().await.success());
    let server = Server::start_in(dir.path(), &["--demo"]).await;
    let lalo = server.login("lalo", "lalo123").await;
    assert_eq!(answered(lalo.settings().await).body, written);
    // A new row after the restart gets the next id.
    let kalu = server.login("kalu", "kalu123").await;
    let kalus = answered(kalu.settings().await).body;
    assert_eq!(kalus["id"], written["id"].as_u64().unwrap() + 1);
}

#[tokio::test]
async fn typing_of_a_user_who_hides_it_reaches_nobody() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let conv = lalo.direct_with(&kalu).await;
    answered(
        lalo.update_settings(&json!({"show_typing_indicator": false}))
            .await,
    );
    let mut lalo_ws = lalo.ws(conv).await;
    let mut kalu_ws = kalu.ws(conv).await;
    lalo_ws.send(frames::typing(true)).await;
    lalo_ws.send(frames::typing(false)).await;
    // Each socket's frames arrive in order: a typing frame would come
    // before the message sent after it.
    send_ws(&mut lalo_ws, "after typing", "t1").await;
    let frame = kalu_ws.recv().await;
    assert_eq!(frame["type"], "message.new", "no typing first: {frame}");

    // Kalu still shows his; lalo still sees others'.
    kalu_ws.send(frames::typing(true)).await;
    assert_eq!(
        lalo_ws.recv().await,
        frames::typing_event(kalu.id, "kalu", true)
    );
    // Turned back on, lalo's typing flows again.
    answered(
        lalo.update_settings(&json!({"show_typing_indicator": true}))
            .await,
    );
    lalo_ws.send(frames::typing(true)).await;
    assert_eq!(
        kalu_ws.recv().await,
        frames::typing_event(lalo.id, "lalo", true)
    );
}

#[tokio::test]
async fn read_marks_of_a_user_who_hides_receipts_reach_nobody_else() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let conv = lalo.direct_with(&kalu).await;
    answered(
        kalu.update_settings(&json!({"show_read_receipts": false}))
            .await,
    );
    let mut lalo_ws = lalo.ws(conv).await;
    let mut kalu_ws = kalu.ws(conv).await;
    let one = send_ws(&mut lalo_ws, "one", "c1").await;
    let one_id = one["data"]["id"].as_u64().unwrap();
    let one_seq = one["seq"].as_u64().unwrap();
    kalu_ws.recv_type("message.new").await;

    // Kalu reads over the socket, then sends: his own socket gets no
    // read frame either, just the echo.
    kalu_ws.send(frames::read(one_id)).await;
    let two = send_ws(&mut kalu_ws, "two", "c2").await;
    assert_eq!(two["seq"], one_seq + 1, "the hidden read used no seq");
    let next = lalo_ws.recv().await;
    assert_eq!(next["type"], "message.new", "no read frame first: {next}");
    assert_eq!(next["seq"], one_seq + 1);
    // The read still moved kalu's own position.
    assert_eq!(kalu.listed_conversation(conv).await["unread_count"], 0);
    // Lalo's view of message one shows no read receipt of kalu's; kalu's
    // own view does.
    let receipts = |history: Vec<Value>| -> Vec<(Value, Value)> {
        let one = history.iter().find(|m| m["id"] == one_id).unwrap().clone();
        one["receipts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["user"]["id"].clone(), r["state"].clone()))
            .collect()
    };
    assert_eq!(
        receipts(lalo.history(conv, "").await),
        [(json!(lalo.id), json!("sent"))]
    );
    assert_eq!(
        receipts(kalu.history(conv, "").await),
        [
            (json!(lalo.id), json!("sent")),
            (json!(kalu.id), json!("read"))
        ]
    );
    // REST reads are hidden alike, and a replay has no read frame.
    let three = lalo.send_message(conv, "three").await;
    kalu_ws.recv_type("message.new").await;
    let read = answered(kalu.mark_read(conv, three["id"].as_u64().unwrap()).await);
    assert_eq!(read.status, 200);
    let mut replay = lalo.ws_since(conv, 0).await;
    let (_, replayed) = replay.recv_until("sync.done").await;
    assert!(
        replayed.iter().all(|f| f["type"] != "message.read"),
        "{replayed:?}"
    );
    assert_eq!(
        seqs(&replayed),
        (1..=seqs(&replayed).len() as u64).collect::<Vec<_>>()
    );

    // Kalu still sees lalo's receipts (the setting is about one's own).
    lalo_ws.recv_type("message.new").await;
    let two_id = two["data"]["id"].as_u64().unwrap();
    lalo_ws.send(frames::read(two_id)).await;
    let frame = kalu_ws.recv_type("message.read").await;
    assert_eq!(frame["user_id"], lalo.id);
    assert_eq!(frame["message_id"], two_id);
}
