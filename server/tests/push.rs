//! Notifications and push (issue 15): members with no socket open get a
//! notification for a message or a ringing call, listed at
//! `/api/chat/notifications/` and pushed to `--push-webhook` with an
//! `Idempotency-Key`, retried until a 2xx, across `kill -9`; devices
//! registered at `/api/auth/devices/` ride along.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::hook::Hook;
use common::*;
use serde_json::{json, Value};

const SECRET: &str = "push-test-secret-0123456789-abcdef";

async fn push_server(dir: &std::path::Path, hook: &str, extra: &[&str]) -> Server {
    let mut args = vec![
        "--jwt-secret",
        SECRET,
        "--push-webhook",
        hook,
        "--push-retry-max-ms",
        "400",
        "--presence-grace-secs",
        "1",
    ];
    args.extend_from_slice(extra);
    Server::start_in(dir, &args).await
}

#[tokio::test]
async fn devices_are_registered_listed_moved_and_removed() {
    let server = Server::start(&["--jwt-secret", SECRET]).await;
    let ana = server.register("ana").await;
    let bo = server.register("bo").await;
    let register = |body: Value| {
        let api = ana.api.clone();
        async move { api.post("/api/auth/devices/", body).await }
    };

    // Bad input: clear errors, nothing stored.
    let resp = register(json!({"platform": "android"})).await;
    assert_eq!(
        (resp.status, &resp.body),
        (400, &json!({"token": ["This field is required."]}))
    );
    let resp = register(json!({"token": "t 1", "platform": "android"})).await;
    assert_eq!(resp.status, 400, "{}", resp.body);
    let long = "x".repeat(4097);
    let resp = register(json!({"token": long, "platform": "ios"})).await;
    assert_eq!(resp.status, 400, "{}", resp.body);
    let resp = register(json!({"token": "t1", "platform": "fax"})).await;
    assert_eq!(resp.status, 400, "{}", resp.body);
    assert!(resp.body["platform"][0]
        .as_str()
        .unwrap()
        .contains("not a valid choice"));
    assert_eq!(ana.api.get("/api/auth/devices/").await.body, json!([]));
    let resp = server
        .anon()
        .post(
            "/api/auth/devices/",
            json!({"token": "t1", "platform": "ios"}),
        )
        .await;
    assert_eq!(resp.status, 401);

    // 201 when new, 200 when the caller had it.
    let resp = register(json!({"token": "fcm:t1", "platform": "android"})).await;
    assert_eq!(resp.status, 201, "{}", resp.body);
    assert_key_set(&resp.body, &["token", "platform", "created_at"]);
    let resp = register(json!({"token": "fcm:t1", "platform": "android"})).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let listed = ana.api.get("/api/auth/devices/").await.body;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["token"], "fcm:t1");

    // The same token registered by bo is his now.
    let resp = bo
        .api
        .post(
            "/api/auth/devices/",
            json!({"token": "fcm:t1", "platform": "android"}),
        )
        .await;
    assert_eq!(resp.status, 201);
    assert_eq!(ana.api.get("/api/auth/devices/").await.body, json!([]));
    let resp = ana.api.delete("/api/auth/devices/fcm:t1/").await;
    assert_eq!(
        (resp.status, &resp.body),
        (404, &json!({"detail": "Not found."}))
    );
    let resp = bo.api.delete("/api/auth/devices/fcm:t1/").await;
    assert_eq!(resp.status, 204);
    assert_eq!(bo.api.get("/api/auth/devices/").await.body, json!([]));
}

#[tokio::test]
async fn away_members_are_told_and_the_webhook_gets_each_once_across_kill9() {
    let dir = tempfile::tempdir().unwrap();
    // The first three pushes fail: the first notification gets through on
    // its fourth try.
    let hook = Hook::start(3, 0).await;
    let server = push_server(dir.path(), &hook.url, &[]).await;
    let ana = server.register("ana").await;
    let bo = server.register("bo").await;
    let resp = bo
        .api
        .post(
            "/api/auth/devices/",
            json!({"token": "apns-bo", "platform": "ios"}),
        )
        .await;
    assert_eq!(resp.status, 201);
    let conv = ana.api.direct_with(&bo).await;
    let sent = ana.api.send_message(conv, "hello bo").await;

    // Bo has no socket: notified, pushed after three failures.
    let delivered = hook.wait_delivered(1).await;
    let (key, push) = delivered.iter().next().unwrap();
    let tries: Vec<_> = hook.seen().into_iter().filter(|p| &p.key == key).collect();
    assert_eq!(tries.len(), 4, "three 500s, then the 2xx: {tries:?}");
    assert_eq!(push.body["id"], json!(key));
    assert_key_set(
        &push.body,
        &[
            "id",
            "user_id",
            "kind",
            "conversation_id",
            "title",
            "body",
            "data",
            "devices",
        ],
    );
    assert_eq!(push.body["user_id"], bo.id);
    assert_eq!(push.body["kind"], "message");
    assert_eq!(push.body["conversation_id"], conv);
    assert_eq!(push.body["title"], "ana");
    assert_eq!(push.body["body"], "hello bo");
    assert_eq!(push.body["data"]["message_id"], sent["id"]);
    assert_eq!(push.body["data"]["sender_id"], ana.id);
    assert_eq!(
        push.body["devices"],
        json!([{"token": "apns-bo", "platform": "ios"}])
    );
    // Ana, the sender, is not told.
    assert_eq!(
        ana.api.get("/api/chat/notifications/").await.body,
        json!([])
    );

    // Bo's list; marking it read; nobody else's ids.
    let list = bo.api.get("/api/chat/notifications/").await.body;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_key_set(
        &list[0],
        &[
            "id",
            "user",
            "notification_type",
            "title",
            "message",
            "is_read",
            "created_at",
            "related_conversation",
            "related_message",
            "related_call",
            "related_user",
        ],
    );
    let id = list[0]["id"].as_u64().unwrap();
    assert_eq!(id.to_string(), *key);
    assert_eq!(list[0]["is_read"], false);
    assert_eq!(list[0]["notification_type"], "message");
    assert_eq!(list[0]["related_message"], sent["id"]);
    let one = bo.api.get(&format!("/api/chat/notifications/{id}/")).await;
    assert_eq!((one.status, &one.body), (200, &list[0]));
    let resp = ana.api.get(&format!("/api/chat/notifications/{id}/")).await;
    assert_eq!(
        (resp.status, &resp.body),
        (404, &json!({"detail": "Not found."}))
    );
    let path = format!("/api/chat/notifications/{id}/read/");
    let resp = ana.api.post(&path, json!({})).await;
    assert_eq!(resp.status, 404);
    let resp = bo.api.post(&path, json!({})).await;
    assert_eq!((resp.status, &resp.body["is_read"]), (200, &json!(true)));
    let resp = bo
        .api
        .post("/api/chat/notifications/x/read/", json!({}))
        .await;
    assert_eq!(resp.status, 404);

    // Bo online: nothing for him. Offline again (after the grace): told.
    let ws = Ws::connect(&bo.api.ws_url(conv, None)).await;
    wait_online(&ana, bo.id, true).await;
    ana.api.send_message(conv, "while you are here").await;
    ws.close().await;
    wait_online(&ana, bo.id, false).await;
    let listed = bo.api.get("/api/chat/notifications/").await.body;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");

    // Preview off: the body is hidden.
    let resp = bo
        .api
        .patch("/api/auth/settings/", json!({"message_preview": false}))
        .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    ana.api.send_message(conv, "a secret").await;
    let delivered = hook.wait_delivered(2).await;
    let hidden = delivered.values().find(|p| p.key != *key).unwrap();
    assert_eq!(hidden.body["body"], "New message");

    // A burst, and the server killed in the middle of pushing it (each
    // push takes the receiver 150 ms): each notification reaches the
    // receiver (deduped by key) after a restart.
    hook.set_delay(Duration::from_millis(150));
    for i in 0..6 {
        ana.api.send_message(conv, &format!("burst {i}")).await;
    }
    server.kill9().await;
    let before = hook.delivered().len();
    assert!(before < 8, "the kill came after the burst was pushed");
    hook.set_delay(Duration::ZERO);
    let server = push_server(dir.path(), &hook.url, &[]).await;
    let delivered = hook.wait_delivered(8).await;
    assert_eq!(delivered.len(), 8, "{before} before the restart");
    let ids: BTreeSet<u64> = delivered.keys().map(|k| k.parse().unwrap()).collect();
    let first = *ids.iter().next().unwrap();
    assert_eq!(
        ids,
        (first..first + 8).collect(),
        "one id per notification, none skipped"
    );
    // Nothing after the last: no notification was invented or re-sent
    // once its 2xx was recorded.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let accepted = hook.seen().iter().filter(|p| p.accepted).count();
    assert!(
        accepted <= 9,
        "at most the one in flight at the kill is sent twice: {accepted}"
    );
    let bo = server.login("bo", PASSWORD).await;
    let listed = bo.api.get("/api/chat/notifications/").await.body;
    assert_eq!(listed.as_array().unwrap().len(), 8);
}

#[tokio::test]
async fn a_call_rings_a_member_away_and_a_hanging_or_missing_webhook_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    // Nobody listens here: every push fails to connect.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nowhere = format!("http://127.0.0.1:{port}/push");
    let server = push_server(dir.path(), &nowhere, &[]).await;
    let ana = server.register("ana").await;
    let bo = server.register("bo").await;
    let conv = ana.api.direct_with(&bo).await;
    let resp = ana
        .api
        .post(
            "/api/chat/calls/",
            json!({"conversation_id": conv, "call_type": "video"}),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.body);
    let call_id = resp.body["id"].clone();
    let listed = bo.api.get("/api/chat/notifications/").await.body;
    assert_eq!(listed[0]["notification_type"], "call");
    assert_eq!(listed[0]["related_call"], call_id);
    assert_eq!(listed[0]["message"], "Incoming video call");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let metrics = server.anon().try_get("/metrics").await.unwrap();
    let failures = metric(metrics.body.as_str().unwrap(), "vato_push_failures_total");
    assert!(failures >= 1.0, "pushes to nowhere failed: {failures}");
    server.terminate().await;

    // Restarted with a webhook that hangs on its first request past
    // --push-timeout-ms: the same notification arrives on a later try.
    let hook = Hook::start(0, 1).await;
    let _server = push_server(dir.path(), &hook.url, &["--push-timeout-ms", "300"]).await;
    let delivered = hook.wait_delivered(1).await;
    let push = delivered.values().next().unwrap();
    assert_eq!(push.body["kind"], "call");
    assert_eq!(push.body["data"]["call_id"], call_id);
    assert_eq!(push.body["data"]["call_type"], "video");
    assert_eq!(push.body["body"], "Incoming video call");
    assert_eq!(hook.seen().len(), 2, "one hung, one accepted");
}

/// Waits until `viewer` sees `user`'s `is_online` as `online`.
async fn wait_online(viewer: &User, user: u64, online: bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let body = viewer
            .api
            .get(&format!("/api/auth/users/{user}/"))
            .await
            .body;
        if body["is_online"] == online {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A metric's value in Prometheus text (summed over its labels).
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
