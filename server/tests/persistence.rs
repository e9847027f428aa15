//! Restarts: a graceful stop (SIGTERM) exits 0, writes a snapshot and keeps
//! everything; neither a crash (SIGKILL) nor a graceful stop under load
//! loses an acknowledged message; a shutdown closes sockets with 1001.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::{json, Value};
use tokio::sync::Notify;

/// Everything a user can read back, for comparing before and after a
/// restart.
async fn snapshot_of(api: &Api, convs: &[u64]) -> Value {
    let mut histories = Vec::new();
    for conv in convs {
        histories.push(Value::Array(api.history(*conv, "limit=1000").await));
    }
    json!({
        "profile": api.get("/api/auth/profile/me/").await.body,
        "users": api.get("/api/auth/users/").await.body,
        "conversations": api.get("/api/chat/conversations/").await.body,
        "histories": histories,
    })
}

#[tokio::test]
async fn a_graceful_restart_keeps_accounts_conversations_history_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &["--demo"]).await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let mika = server.register("mika").await;
    let direct = lalo.direct_with(&kalu).await;
    let first = kalu.send_message(direct, "one").await;
    let second = kalu.send_message(direct, "two").await;
    kalu.send_message(direct, "three").await;
    let read = lalo
        .post(
            &message_path(direct, first["id"].as_u64().unwrap(), "read/"),
            json!({}),
        )
        .await;
    assert_eq!(read.status, 200);
    let second_id = second["id"].as_u64().unwrap();
    assert_eq!(
        kalu.patch(
            &message_path(direct, second_id, "edit/"),
            json!({"content": "two!"})
        )
        .await
        .status,
        200
    );
    assert_eq!(
        lalo.post(
            &message_path(direct, second_id, "react/"),
            json!({"emoji": "🎉"})
        )
        .await
        .status,
        201
    );
    let group = lalo
        .post(
            "/api/chat/conversations/",
            json!({"title": "crew", "member_ids": [mika.id]}),
        )
        .await;
    assert_eq!(group.status, 201);
    let group = group.body["id"].as_u64().unwrap();
    let with_client_id = mika
        .post(
            &messages_path(group),
            json!({"content": "hi crew", "client_id": "m-1"}),
        )
        .await;
    assert_eq!(with_client_id.status, 201);
    let gone = mika.send_message(group, "oops").await;
    assert_eq!(
        mika.delete(&message_path(
            group,
            gone["id"].as_u64().unwrap(),
            "soft-delete/"
        ))
        .await
        .status,
        200
    );
    assert_eq!(lalo.listed_conversation(direct).await["unread_count"], 2);

    let before_lalo = snapshot_of(&lalo, &[direct, group]).await;
    let before_kalu = snapshot_of(&kalu, &[direct]).await;

    let status = server.terminate().await;
    assert!(status.success(), "graceful stop exits 0: {status:?}");
    let snapshot = vato_eventlog::snapshot::stored_offset(dir.path()).expect("read snapshot");
    assert!(snapshot.is_some(), "a snapshot was written");

    let server = Server::start_in(dir.path(), &["--demo"]).await;
    // The old tokens still work: the dev secret is kept in the data dir.
    let lalo2 = server.with_token(&lalo.access);
    let kalu2 = server.with_token(&kalu.access);
    assert_eq!(snapshot_of(&lalo2, &[direct, group]).await, before_lalo);
    assert_eq!(snapshot_of(&kalu2, &[direct]).await, before_kalu);
    assert_eq!(lalo2.listed_conversation(direct).await["unread_count"], 2);
    let refreshed = server
        .anon()
        .post("/api/auth/token/refresh/", json!({"refresh": mika.refresh}))
        .await;
    assert_eq!(refreshed.status, 200);

    // Accounts, indexes and counters carry on.
    let mika2 = server.login("mika", PASSWORD).await;
    assert_eq!(mika2.id, mika.id);
    let retry = mika2
        .post(
            &messages_path(group),
            json!({"content": "hi crew", "client_id": "m-1"}),
        )
        .await;
    assert_eq!(retry.status, 200, "client_id survives a restart");
    assert_eq!(retry.body["id"], with_client_id.body["id"]);
    let next = kalu2.send_message(direct, "four").await;
    assert_eq!(
        next["seq"], 7,
        "3 messages, a read, an edit and a reaction came first"
    );
    let taken = server
        .anon()
        .post(
            "/api/auth/register/",
            json!({"username": "mika", "password": PASSWORD, "password2": PASSWORD}),
        )
        .await;
    assert_eq!(taken.status, 400);
    let nora = server.register("nora").await;
    assert!(nora.id > mika.id, "ids are not reused");
    // The demo seed did not run twice.
    let users = lalo2.get("/api/auth/users/").await.body;
    assert_eq!(users.as_array().unwrap().len(), 3, "{users}");

    // A crash now: the snapshot plus the log's tail give it all back.
    let before_crash = snapshot_of(&lalo2, &[direct, group]).await;
    server.kill9().await;
    let server = Server::start_in(dir.path(), &["--demo"]).await;
    let lalo3 = server.with_token(&lalo.access);
    assert_eq!(snapshot_of(&lalo3, &[direct, group]).await, before_crash);
    assert_eq!(lalo3.history(direct, "limit=1").await[0]["content"], "four");
}

#[tokio::test]
async fn a_crash_loses_no_acknowledged_message() {
    stop_under_load_and_check_every_acknowledged_message(libc::SIGKILL).await;
}

#[tokio::test]
async fn a_graceful_stop_under_load_exits_0_and_loses_nothing_acknowledged() {
    stop_under_load_and_check_every_acknowledged_message(libc::SIGTERM).await;
}

/// REST and WS senders write as fast as they can; after a while the
/// server gets `signal`. After a restart, every message that was
/// acknowledged (a 201, or the sender's own echo) is there, with gap-free
/// seqs.
async fn stop_under_load_and_check_every_acknowledged_message(signal: libc::c_int) {
    const ACKS_BEFORE_KILL: usize = 150;
    let dir = tempfile::tempdir().unwrap();
    // Frequent background snapshots: the crash may land in the middle of
    // writing one.
    let mut server = Server::start_in(dir.path(), &["--dev", "--snapshot-every", "40"]).await;
    let ana = server.register("ana").await;
    let ben = server.register("ben").await;
    let conv = ana.direct_with(&ben).await;

    let acked: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let enough = Arc::new(Notify::new());
    let record = {
        let (acked, count, enough) = (acked.clone(), count.clone(), enough.clone());
        move |id: u64, content: String| {
            acked.lock().unwrap().push((id, content));
            if count.fetch_add(1, Ordering::SeqCst) + 1 == ACKS_BEFORE_KILL {
                enough.notify_one();
            }
        }
    };

    let mut senders = Vec::new();
    // REST senders: an answered 201 is the acknowledgement.
    for task in 0..3 {
        let (api, record) = (
            if task % 2 == 0 {
                ana.api.clone()
            } else {
                ben.api.clone()
            },
            record.clone(),
        );
        senders.push(tokio::spawn(async move {
            for i in 0.. {
                let content = format!("rest {task} {i}");
                match api.send(conv, &content, None).await {
                    Ok(resp) if resp.status == 201 => {
                        record(resp.body["id"].as_u64().unwrap(), content)
                    }
                    _ => return,
                }
            }
        }));
    }
    // A WS sender: its own echo is the acknowledgement.
    let mut ws = ben.ws(conv).await;
    senders.push(tokio::spawn(async move {
        for i in 0.. {
            let content = format!("ws {i}");
            let frame =
                json!({"type": "message.send", "content": content, "client_id": format!("w{i}")});
            if !ws.try_send(frame).await {
                return;
            }
            // Echoes of the REST sends come too; wait for ours.
            loop {
                match ws.try_recv().await {
                    Some(frame) if frame["client_id"] == format!("w{i}") => {
                        record(frame["data"]["id"].as_u64().unwrap(), content);
                        break;
                    }
                    Some(_) => continue,
                    None => return,
                }
            }
        }
    }));

    tokio::time::timeout(TIMEOUT, enough.notified())
        .await
        .expect("enough messages acknowledged");
    server.signal(signal);
    let status = server.wait().await;
    if signal == libc::SIGTERM {
        assert!(status.success(), "graceful stop exits 0: {status:?}");
    }
    for sender in senders {
        sender.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= ACKS_BEFORE_KILL);

    let server = Server::start_in(dir.path(), &["--dev"]).await;
    let ana = server.with_token(&ana.access);
    let history = ana.history(conv, "limit=1000").await;
    let stored: std::collections::HashMap<u64, &Value> = history
        .iter()
        .map(|m| (m["id"].as_u64().unwrap(), m))
        .collect();
    for (id, content) in &acked {
        let message = stored
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged message {id} ({content}) lost"));
        assert_eq!(message["content"], content.as_str());
    }
    let mut seqs: Vec<u64> = history.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    seqs.reverse();
    assert_eq!(
        seqs,
        (1..=history.len() as u64).collect::<Vec<_>>(),
        "gap-free"
    );
    // And the log takes writes again.
    let next = ana.send_message(conv, "after the restart").await;
    assert_eq!(next["seq"], history.len() as u64 + 1);
}

#[tokio::test]
async fn shutdown_closes_sockets_with_1001() {
    let mut server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let conv = lalo.direct_with(&kalu).await;
    let mut sockets = [lalo.ws(conv).await, kalu.ws(conv).await];
    for ws in &mut sockets {
        ws.ping().await;
    }
    server.signal(libc::SIGTERM);
    for ws in &mut sockets {
        let (frames, code) = ws.until_close().await;
        assert!(frames.is_empty(), "{frames:?}");
        assert_eq!(code, Some(1001));
    }
    let status = server.wait().await;
    assert!(status.success(), "{status:?}");
}
