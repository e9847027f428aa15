//! Presence (issue 13, `server/src/presence.rs`): a user is online while
//! a socket of theirs is open; after the last closes and
//! `--presence-grace-secs` pass, they go offline with `last_seen_at`.
//! Their conversation partners' sockets get `presence` frames; the
//! `set-online/` and `set-offline/` routes; restarts.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const PRESENCE_KEYS: [&str; 4] = ["type", "user_id", "is_online", "last_seen_at"];

/// The demo server with a one-second grace, lalo and kalu logged in, and
/// their direct conversation.
async fn scene(server: &Server) -> (User, User, u64) {
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let conv = lalo.direct_with(&kalu).await;
    (lalo, kalu, conv)
}

/// The next frame, which must be a presence frame of `user_id`.
async fn presence_of(ws: &mut Ws, user_id: u64, is_online: bool) -> Value {
    let frame = ws.recv_type("presence").await;
    assert_key_set(&frame, &PRESENCE_KEYS);
    assert_eq!(frame["user_id"], user_id, "{frame}");
    assert_eq!(frame["is_online"], is_online, "{frame}");
    frame
}

/// `user` as `viewer` sees it over REST.
async fn seen_by(viewer: &Api, user: &User) -> Value {
    let resp = answered(viewer.user_detail(user.id).await);
    assert_eq!(resp.status, 200, "{}", resp.body);
    resp.body
}

#[tokio::test]
async fn a_socket_makes_its_user_online_and_the_last_close_offline_after_the_grace() {
    let server = Server::start(&["--demo", "--presence-grace-secs", "1"]).await;
    let (lalo, kalu, conv) = scene(&server).await;
    let mut a = lalo.ws(conv).await.with_presence();

    let b = kalu.ws(conv).await;
    let online = presence_of(&mut a, kalu.id, true).await;
    assert!(online["last_seen_at"].is_string(), "{online}");
    assert_eq!(seen_by(&lalo, &kalu).await["is_online"], true);

    // A second socket of kalu (same node) changes nothing; closing one of
    // the two changes nothing either: the next frame lalo gets is the
    // message.
    let b2 = kalu.ws(conv).await;
    b2.close().await;
    kalu.send_message(conv, "still here").await;
    a.recv_type("message.new").await;

    let closed_at = Instant::now();
    b.close().await;
    let offline = presence_of(&mut a, kalu.id, false).await;
    assert!(
        closed_at.elapsed() >= Duration::from_millis(900),
        "offline before the grace: {:?}",
        closed_at.elapsed()
    );
    let last_seen = offline["last_seen_at"].clone();
    assert!(last_seen.is_string(), "{offline}");
    assert_ne!(last_seen, online["last_seen_at"]);
    let seen = seen_by(&lalo, &kalu).await;
    assert_eq!(seen["is_online"], false, "{seen}");
    assert_eq!(seen["last_seen_at"], last_seen, "{seen}");
}

#[tokio::test]
async fn a_reconnect_within_the_grace_sends_nothing() {
    let server = Server::start(&["--demo", "--presence-grace-secs", "1"]).await;
    let (lalo, kalu, conv) = scene(&server).await;
    let mut a = lalo.ws(conv).await.with_presence();
    let b = kalu.ws(conv).await;
    presence_of(&mut a, kalu.id, true).await;

    b.close().await;
    let _b = kalu.ws(conv).await;
    // Twice the grace: no offline (nor online) frame came meanwhile, so
    // the next frame is the message sent after it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    kalu.send_message(conv, "back already").await;
    let frame = a.recv().await;
    assert_eq!(frame["type"], "message.new", "{frame}");
    assert_eq!(seen_by(&lalo, &kalu).await["is_online"], true);
}

#[tokio::test]
async fn show_last_seen_off_sends_no_presence_to_others() {
    let server = Server::start(&["--demo", "--presence-grace-secs", "1"]).await;
    let (lalo, kalu, conv) = scene(&server).await;
    let resp = answered(kalu.update_profile(&json!({"show_last_seen": false})).await);
    assert_eq!(resp.status, 200, "{}", resp.body);
    let mut a = lalo.ws(conv).await.with_presence();

    let b = kalu.ws(conv).await;
    b.close().await;
    // Past the grace: kalu went online and offline, and lalo was told
    // nothing; a message after it is the next frame lalo gets.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    kalu.send_message(conv, "after").await;
    let frame = a.recv().await;
    assert_eq!(frame["type"], "message.new", "{frame}");
    // Lalo's REST view shows kalu offline with no time; kalu's own has it.
    let seen = seen_by(&lalo, &kalu).await;
    assert_eq!(
        (seen["is_online"].clone(), seen["last_seen_at"].clone()),
        (json!(false), Value::Null),
        "{seen}"
    );
    let me = answered(kalu.user_me().await).body;
    assert!(me["last_seen_at"].is_string(), "{me}");
}

#[tokio::test]
async fn set_online_and_set_offline_answer_the_contract_and_tell_partners() {
    let server = Server::start(&["--demo", "--presence-grace-secs", "1"]).await;
    let (lalo, kalu, conv) = scene(&server).await;
    let mut a = lalo.ws(conv).await.with_presence();

    let resp = answered(kalu.set_offline().await);
    assert_eq!(
        (resp.status, resp.body.clone()),
        (200, json!({"status": "offline"}))
    );
    let offline = presence_of(&mut a, kalu.id, false).await;
    let seen = seen_by(&lalo, &kalu).await;
    assert_eq!(seen["is_online"], false, "{seen}");
    assert_eq!(seen["last_seen_at"], offline["last_seen_at"], "{seen}");
    // Offline already: 200 again, nothing stored, no frame.
    assert_eq!(answered(kalu.set_offline().await).status, 200);

    let resp = answered(kalu.set_online().await);
    assert_eq!(
        (resp.status, resp.body.clone()),
        (200, json!({"status": "online"}))
    );
    let online = presence_of(&mut a, kalu.id, true).await;
    assert_eq!(
        seen_by(&lalo, &kalu).await["last_seen_at"],
        online["last_seen_at"]
    );

    // Without a token: the contract's 401, nothing changes.
    for path in [
        "/api/auth/users/set-online/",
        "/api/auth/users/set-offline/",
    ] {
        let resp = server.anon().post(path, json!({})).await;
        assert_eq!(resp.status, 401, "{path}: {}", resp.body);
        assert_key_set(&resp.body, &["detail"]);
    }
    assert_eq!(seen_by(&lalo, &kalu).await["is_online"], true);
    kalu.send_message(conv, "after").await;
    a.recv_type("message.new").await;
}

#[tokio::test]
async fn presence_survives_restarts_and_a_crash_lets_go_of_the_nodes_users() {
    let dir = tempfile::tempdir().expect("temp dir");
    let flags = ["--demo", "--presence-grace-secs", "1"];
    let server = Server::start_in(dir.path(), &flags).await;
    let (lalo, kalu, conv) = scene(&server).await;
    let mut a = lalo.ws(conv).await.with_presence();
    let b = kalu.ws(conv).await;
    presence_of(&mut a, kalu.id, true).await;
    b.close().await;
    let last_seen = presence_of(&mut a, kalu.id, false).await["last_seen_at"].clone();
    drop(a);

    // A clean restart keeps it (snapshot).
    assert!(server.terminate().await.success());
    let server = Server::start_in(dir.path(), &flags).await;
    // The same tokens (the development secret is in the data directory):
    // a new login would mark kalu online.
    let seen = seen_by(&server.with_token(&lalo.access), &kalu).await;
    assert_eq!(
        (seen["is_online"].clone(), seen["last_seen_at"].clone()),
        (json!(false), last_seen.clone())
    );

    // A socket, then a crash: the restarted node lets go of kalu.
    let mut a = server
        .with_token(&lalo.access)
        .ws(conv)
        .await
        .with_presence();
    let _b = server.with_token(&kalu.access).ws(conv).await;
    presence_of(&mut a, kalu.id, true).await;
    let seen = seen_by(&server.with_token(&lalo.access), &kalu).await;
    assert_eq!(seen["is_online"], true, "{seen}");
    server.kill9().await;
    let server = Server::start_in(dir.path(), &flags).await;
    let seen = seen_by(&server.with_token(&lalo.access), &kalu).await;
    assert_eq!(seen["is_online"], false, "{seen}");
    assert!(seen["last_seen_at"].is_string(), "{seen}");
    assert_ne!(seen["last_seen_at"], last_seen, "{seen}");

    // And that is durable too: a second crash changes nothing.
    server.kill9().await;
    let server = Server::start_in(dir.path(), &flags).await;
    let again = seen_by(&server.with_token(&lalo.access), &kalu).await;
    assert_eq!(again["last_seen_at"], seen["last_seen_at"], "{again}");
}

/// Lalo's user object inside `viewer`'s listing of their conversation.
async fn listed_lalo(viewer: &User, conv: u64, lalo: &User) -> Value {
    let listed = viewer.listed_conversation(conv).await;
    listed["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["user"]["id"] == lalo.id)
        .unwrap_or_else(|| panic!("lalo is not a member: {listed}"))["user"]
        .clone()
}

/// Others get a user object rendered once and kept until the user changes
/// (#12): every change (presence, a profile write, a privacy flag) shows
/// in the next object, in listings and in history alike.
#[tokio::test]
async fn a_kept_user_object_follows_every_change_of_its_user() {
    let server = Server::start(&["--demo", "--presence-grace-secs", "1"]).await;
    let (lalo, kalu, conv) = scene(&server).await;
    lalo.send_message(conv, "hola").await;
    assert_eq!(answered(lalo.set_offline().await).status, 200);
    assert_eq!(listed_lalo(&kalu, conv, &lalo).await["is_online"], false);
    assert_eq!(
        kalu.history(conv, "").await[0]["sender"]["is_online"],
        false
    );

    let mut b = kalu.ws(conv).await.with_presence();
    let a = lalo.ws(conv).await;
    presence_of(&mut b, lalo.id, true).await;
    let seen = listed_lalo(&kalu, conv, &lalo).await;
    assert_eq!(seen["is_online"], true, "{seen}");
    assert!(seen["last_seen_at"].is_string(), "{seen}");
    assert_eq!(kalu.history(conv, "").await[0]["sender"]["is_online"], true);

    a.close().await;
    presence_of(&mut b, lalo.id, false).await;
    assert_eq!(listed_lalo(&kalu, conv, &lalo).await["is_online"], false);

    let resp = answered(
        lalo.update_profile(&json!({"display_name": "Lalo L."}))
            .await,
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(
        listed_lalo(&kalu, conv, &lalo).await["display_name"],
        "Lalo L."
    );
    let history = kalu.history(conv, "").await;
    assert_eq!(history[0]["sender"]["display_name"], "Lalo L.");

    let resp = answered(lalo.update_profile(&json!({"show_last_seen": false})).await);
    assert_eq!(resp.status, 200, "{}", resp.body);
    let seen = listed_lalo(&kalu, conv, &lalo).await;
    assert_eq!(seen["last_seen_at"], Value::Null, "{seen}");
    // Lalo's own listing still shows lalo's own fields.
    let own = listed_lalo(&lalo, conv, &lalo).await;
    assert!(own["last_seen_at"].is_string(), "{own}");
    assert_eq!(own["email"], lalo_email(&lalo).await);
}

/// Lalo's email as lalo sees it (others get "").
async fn lalo_email(lalo: &User) -> Value {
    answered(lalo.user_me().await).body["email"].clone()
}
