//! Cluster mode end to end: real `nats-server` processes and several real
//! `vato-server` nodes sharing one stream, driven over REST and WebSocket as
//! clients would. The failures (nodes and NATS killed) are in
//! `cluster_faults.rs`.
//!
//! 1. Users on two nodes chat in real time; every node shows the same
//!    history, seqs and unread counts.
//! 2. Racing registrations and create-directs on two nodes resolve to one
//!    outcome that both nodes agree on.
//! 3. A refresh token revoked by a logout on node 1 is refused by node 2;
//!    a user who logs out of the app on node 2 is offline on node 1.
//! 4. Presence: a socket on node 1 makes its user online as seen from node
//!    2; offline only once the last socket on either node closed; a
//!    crashed node lets go of its users when it starts again.
//! 5. A block made on node 1 refuses the blocked user's posts on node 2 at
//!    once (decided in stream order) and hides the blocker's typing there.
//! 6. A phone login code sent through node 1 logs in on node 2, and wrong
//!    tries on both nodes add up to burn a code.
//! 7. Push: each notification is delivered by one node only (the lease
//!    holder's); when the holder is killed the other node takes over and
//!    nothing is lost.

mod cluster_support;
mod common;

use std::time::{Duration, Instant};

use serde_json::json;

use cluster_support::chat::*;
use cluster_support::{wait_converged, Nats};
use common::{Scene, PASSWORD};

#[tokio::test]
async fn users_on_two_nodes_chat_in_real_time() {
    let started = Instant::now();
    let nats = Nats::single().await;
    let dirs = [tempdir(), tempdir()];
    let (n1, n2) = two_nodes(&nats, &dirs, &[]).await;
    let lalo = n1.login("lalo", "lalo123").await;
    let kalu = n2.login("kalu", "kalu123").await;

    // A token issued by node 1 works on node 2 (shared --jwt-secret).
    let me = n2
        .with_token(&lalo.access)
        .get("/api/auth/profile/me/")
        .await;
    assert_eq!(me.status, 200, "node 1's token on node 2: {}", me.body);
    assert_eq!(me.body["id"], lalo.id);

    let mut a = lalo.ws(CONV).await; // on node 1
    let mut b = kalu.ws(CONV).await; // on node 2
    let mut seen_by_a = Vec::new();

    // A (node 1) → B (node 2): exact content, echo to the sender.
    let hello = "¡Hola desde el nodo 1! ✓ \"quoted\" <b>tags</b> \u{1F600}";
    a.send(json!({"type": "message.send", "content": hello, "client_id": "a-hello"}))
        .await;
    let echo = a.recv_type("message.new").await;
    let got = b.recv_type("message.new").await;
    for frame in [&echo, &got] {
        assert_eq!(frame["data"]["content"], hello, "{frame}");
        assert_eq!(frame["data"]["sender"]["id"], lalo.id, "{frame}");
        assert_eq!(frame["client_id"], "a-hello", "{frame}");
    }
    assert_eq!(
        ids_and_seqs(std::slice::from_ref(&echo)),
        ids_and_seqs(std::slice::from_ref(&got))
    );
    seen_by_a.push(echo);

    // B (node 2) → A (node 1).
    let reply = "Respuesta desde el nodo 2 — ñandú";
    b.send(json!({"type": "message.send", "content": reply, "client_id": "b-reply"}))
        .await;
    let echo = b.recv_type("message.new").await;
    let got = a.recv_type("message.new").await;
    for frame in [&echo, &got] {
        assert_eq!(frame["data"]["content"], reply, "{frame}");
        assert_eq!(frame["data"]["sender"]["id"], kalu.id, "{frame}");
        assert_eq!(frame["client_id"], "b-reply", "{frame}");
    }
    assert_eq!(
        ids_and_seqs(std::slice::from_ref(&echo)),
        ids_and_seqs(std::slice::from_ref(&got))
    );
    seen_by_a.push(got);

    // A burst of 20 from node 1 arrives in order on both nodes.
    send_burst(&mut a, "burst", 20).await;
    let burst_a = recv_messages(&mut a, 20).await;
    let burst_b = recv_messages(&mut b, 20).await;
    let expected: Vec<String> = (0..20).map(|i| format!("burst {i:02}")).collect();
    assert_eq!(contents(&burst_a), expected, "sender's echoes out of order");
    assert_eq!(
        contents(&burst_b),
        expected,
        "receiver got the burst out of order"
    );
    assert_eq!(ids_and_seqs(&burst_a), ids_and_seqs(&burst_b));
    let seqs: Vec<u64> = ids_and_seqs(&burst_a).iter().map(|p| p.1).collect();
    assert_consecutive(&seqs);
    let burst_last = ids_and_seqs(&burst_a)[19].0;
    seen_by_a.extend(burst_a);

    // Both send at once from both nodes: both sockets see one total order,
    // which keeps each sender's own order.
    tokio::join!(
        send_burst(&mut a, "a-both", 10),
        send_burst(&mut b, "b-both", 10)
    );
    let both_a = recv_messages(&mut a, 20).await;
    let both_b = recv_messages(&mut b, 20).await;
    assert_eq!(
        ids_and_seqs(&both_a),
        ids_and_seqs(&both_b),
        "the nodes delivered different orders"
    );
    assert_eq!(contents(&both_a), contents(&both_b));
    let seqs: Vec<u64> = ids_and_seqs(&both_a).iter().map(|p| p.1).collect();
    assert_consecutive(&seqs);
    assert_eq!(seqs[0], ids_and_seqs(&seen_by_a).last().unwrap().1 + 1);
    for prefix in ["a-both", "b-both"] {
        let own: Vec<String> = contents(&both_a)
            .into_iter()
            .filter(|c| c.starts_with(prefix))
            .collect();
        let expected: Vec<String> = (0..10).map(|i| format!("{prefix} {i:02}")).collect();
        assert_eq!(own, expected, "{prefix}'s messages out of order");
    }
    seen_by_a.extend(both_a);

    // Typing crosses nodes over core NATS.
    a.send(json!({"type": "typing", "is_typing": true})).await;
    let typing = b.recv_type("typing").await;
    assert_eq!(typing["user_id"], lalo.id, "{typing}");
    assert_eq!(typing["username"], "lalo", "{typing}");
    assert_eq!(typing["is_typing"], true, "{typing}");

    // kalu reads up to the end of the burst, through node 2.
    let read = kalu
        .post(
            &format!("/api/chat/conversations/{CONV}/messages/{burst_last}/read/"),
            json!({}),
        )
        .await;
    assert_eq!(read.status, 200, "read: {}", read.body);
    for ws in [&mut a, &mut b] {
        let frame = ws.recv_type("message.read").await;
        assert_eq!(frame["message_id"], burst_last, "{frame}");
        assert_eq!(frame["user_id"], kalu.id, "{frame}");
    }

    // After the traffic every node shows everyone the same thing.
    wait_converged(&nats, &[&n1, &n2]).await;
    assert_same_views(&[&n1, &n2], &[&lalo, &kalu], CONV).await;
    let (history, lalo_list) = view(&n1, &lalo, CONV).await;
    let (_, kalu_list) = view(&n2, &kalu, CONV).await;
    let history_ids: Vec<(u64, u64)> = history_entries(&history)
        .iter()
        .map(|(_, id, seq)| (*id, *seq))
        .collect();
    assert_eq!(
        history_ids,
        ids_and_seqs(&seen_by_a),
        "history differs from what the sockets saw"
    );
    // lalo never read: kalu's reply and kalu's 10. kalu read up to the
    // burst: lalo's 10 after it.
    assert_eq!(listed(&lalo_list, CONV)["unread_count"], 11);
    assert_eq!(listed(&kalu_list, CONV)["unread_count"], 10);
    eprintln!("chat across nodes: {:?}", started.elapsed());
}

#[tokio::test]
async fn racing_registers_and_create_directs_resolve_to_one_outcome() {
    let started = Instant::now();
    let nats = Nats::single().await;
    let dirs = [tempdir(), tempdir()];
    let (n1, n2) = two_nodes(&nats, &dirs, &[]).await;

    // The same new username registered at both nodes at the same moment.
    for round in 0..3 {
        let username = format!("racer{round}");
        let body = |node: u8| {
            json!({
                "username": username,
                "password": PASSWORD,
                "password2": PASSWORD,
                "display_name": format!("registered on node {node}"),
            })
        };
        let (anon1, anon2) = (n1.anon(), n2.anon());
        let (r1, r2) = tokio::join!(
            anon1.post("/api/auth/register/", body(1)),
            anon2.post("/api/auth/register/", body(2)),
        );
        let mut statuses = [r1.status, r2.status];
        statuses.sort_unstable();
        assert_eq!(
            statuses,
            [201, 400],
            "{username}: node 1 {} {}, node 2 {} {}",
            r1.status,
            r1.body,
            r2.status,
            r2.body
        );
        let (winner, loser, winning_node) = if r1.status == 201 {
            (&r1, &r2, 1)
        } else {
            (&r2, &r1, 2)
        };
        let taken = loser.body["username"]
            .as_array()
            .unwrap_or_else(|| panic!("400 without a username error: {}", loser.body));
        assert!(!taken.is_empty(), "{}", loser.body);
        let id = winner.body["user"]["id"].as_u64().expect("user id");

        wait_converged(&nats, &[&n1, &n2]).await;
        for node in [&n1, &n2] {
            let user = node.login(&username, PASSWORD).await;
            assert_eq!(user.id, id, "{username}: the nodes disagree on the id");
            let me = user.get("/api/auth/profile/me/").await;
            assert_eq!(
                me.body["display_name"],
                format!("registered on node {winning_node}"),
                "{username}: the nodes disagree on who registered"
            );
        }
    }

    // create-direct of one new pair from both nodes at once, twice: by both
    // members (one on each node), and by the same member on both nodes.
    let p = n1.register("pair-p").await;
    let q = n2.register("pair-q").await;
    let r = n1.register("pair-r").await;
    let s = n2.register("pair-s").await;
    wait_converged(&nats, &[&n1, &n2]).await;
    let cases = [
        (
            &p,
            &q,
            n1.with_token(&p.access),
            n2.with_token(&q.access),
            q.id,
            p.id,
        ),
        (
            &r,
            &s,
            n1.with_token(&r.access),
            n2.with_token(&r.access),
            s.id,
            s.id,
        ),
    ];
    for (x, y, api1, api2, other1, other2) in cases {
        let path = "/api/chat/conversations/create-direct/";
        let (c1, c2) = tokio::join!(
            api1.post(path, json!({"user_id": other1})),
            api2.post(path, json!({"user_id": other2})),
        );
        let mut statuses = [c1.status, c2.status];
        statuses.sort_unstable();
        assert_eq!(
            statuses,
            [200, 201],
            "{}-{}: node 1 {} {}, node 2 {} {}",
            x.username,
            y.username,
            c1.status,
            c1.body,
            c2.status,
            c2.body
        );
        let conv = c1.body["id"].as_u64().expect("conversation id");
        assert_eq!(
            c2.body["id"], conv,
            "the nodes answered different conversations"
        );

        wait_converged(&nats, &[&n1, &n2]).await;
        for node in [&n1, &n2] {
            for user in [x, y] {
                let list = node
                    .with_token(&user.access)
                    .get("/api/chat/conversations/")
                    .await;
                assert_eq!(list.status, 200);
                let directs: Vec<u64> = list
                    .body
                    .as_array()
                    .expect("list")
                    .iter()
                    .filter(|c| c["conversation_type"] == "direct")
                    .filter(|c| {
                        let mut members: Vec<u64> = c["members"]
                            .as_array()
                            .expect("members")
                            .iter()
                            .map(|m| m["user"]["id"].as_u64().expect("member id"))
                            .collect();
                        members.sort_unstable();
                        let mut pair = vec![x.id, y.id];
                        pair.sort_unstable();
                        members == pair
                    })
                    .map(|c| c["id"].as_u64().expect("id"))
                    .collect();
                assert_eq!(
                    directs,
                    vec![conv],
                    "{} on {}: not exactly one direct conversation with the pair",
                    user.username,
                    node.base
                );
            }
        }
    }
    eprintln!("racing writes: {:?}", started.elapsed());
}

/// Polls `check` on a node until it holds: the other node applies the
/// stream a moment after the accepting node answered.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_logout_on_one_node_holds_on_the_other() {
    let nats = Nats::single().await;
    let dirs = [tempdir(), tempdir()];
    let (n1, n2) = two_nodes(&nats, &dirs, &[]).await;
    let lalo = n1.login("lalo", "lalo123").await;
    assert_eq!(
        n2.anon()
            .post(
                "/api/auth/token/refresh/",
                json!({"refresh": &lalo.refresh})
            )
            .await
            .status,
        200
    );

    let resp = n1
        .anon()
        .post("/api/auth/logout/", json!({"refresh": &lalo.refresh}))
        .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    eventually("node 2 refuses the revoked refresh token", || {
        let (api, body) = (n2.anon(), json!({"refresh": &lalo.refresh}));
        async move {
            let resp = api.post("/api/auth/token/refresh/", body).await;
            resp.status == 401 && resp.body["code"] == "token_not_valid"
        }
    })
    .await;
    // Revoking it again on node 2 is the contract's 400.
    let again = n2
        .anon()
        .post("/api/auth/logout/", json!({"refresh": &lalo.refresh}))
        .await;
    assert_eq!(again.status, 400, "{}", again.body);

    let on_n2 = n2.with_token(&lalo.access);
    let resp = on_n2.post("/api/auth/auth/logout/", json!({})).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let on_n1 = n1.with_token(&lalo.access);
    eventually("node 1 shows lalo offline", || {
        let api = on_n1.clone();
        async move { api.get("/api/auth/profile/me/").await.body["is_online"] == false }
    })
    .await;
}

#[tokio::test]
async fn a_block_on_one_node_holds_on_the_other() {
    let nats = Nats::single().await;
    let dirs = [tempdir(), tempdir()];
    let (n1, n2) = two_nodes(&nats, &dirs, &[]).await;
    let lalo = n1.login("lalo", "lalo123").await;
    let kalu = n2.login("kalu", "kalu123").await;
    let mut kalu_ws = kalu.ws(CONV).await; // on node 2
    let mut lalo_ws = lalo.ws(CONV).await; // on node 1

    let added = lalo
        .post(
            "/api/chat/contacts/",
            json!({"contact_id": kalu.id, "is_blocked": true}),
        )
        .await;
    assert_eq!(added.status, 201, "{}", added.body);
    // No waiting: kalu's post is after the block in the stream, so node 2
    // decides it with the block applied.
    let refused = kalu.send(CONV, "on node 2", None).await.expect("send");
    assert_eq!(refused.status, 403, "{}", refused.body);
    let direct = kalu.create_direct(lalo.id).await.expect("create-direct");
    assert_eq!(direct.status, 403, "{}", direct.body);

    // lalo's typing (node 1) does not reach kalu (node 2); the message
    // after it does, and nothing of lalo's comes before it.
    lalo_ws.send(json!({"type": "typing"})).await;
    lalo_ws
        .send(json!({"type": "message.send", "content": "after typing", "client_id": "t"}))
        .await;
    lalo_ws.recv_type("message.new").await;
    let (message, before) = kalu_ws.recv_until("message.new").await;
    assert_eq!(message["data"]["content"], "after typing");
    assert!(
        before.iter().all(|f| f["type"] != "typing"),
        "kalu got {before:?}"
    );
}

/// The next frame of a socket made `with_presence`, which must be the
/// presence frame of `user_id`.
async fn presence_of(ws: &mut common::Ws, user_id: u64, is_online: bool) -> serde_json::Value {
    let frame = ws.recv_type("presence").await;
    assert_eq!(frame["user_id"], user_id, "{frame}");
    assert_eq!(frame["is_online"], is_online, "{frame}");
    frame
}

#[tokio::test]
async fn presence_counts_the_sockets_of_every_node() {
    let nats = Nats::single().await;
    let dirs = [tempdir(), tempdir()];
    let (n1, n2) = two_nodes(&nats, &dirs, &["--presence-grace-secs", "1"]).await;
    let lalo = n2.login("lalo", "lalo123").await;
    let kalu = n1.login("kalu", "kalu123").await;
    // Both logins applied on both nodes (a login sends a presence frame
    // too), before lalo's socket opens.
    wait_converged(&nats, &[&n1, &n2]).await;
    let mut a = lalo.ws(CONV).await.with_presence(); // on node 2

    // kalu's socket on node 1: lalo, on node 2, sees kalu come online.
    let b1 = kalu.ws(CONV).await;
    presence_of(&mut a, kalu.id, true).await;
    // A second socket on node 2, then the one on node 1 closes: kalu stays
    // online (node 2 holds them): after the grace, lalo gets the message
    // and no offline frame before it. (Presence frames carry no seq, so a
    // repeated online frame may come first: CI saw one; it is harmless.)
    let kalu_on_n2 = n2.with_token(&kalu.access);
    let b2 = kalu_on_n2.ws(CONV).await;
    b1.close().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    kalu_on_n2.send_message(CONV, "still online").await;
    let (frame, before) = a.recv_until("message.new").await;
    assert_eq!(frame["data"]["content"], "still online", "{frame}");
    assert!(
        before
            .iter()
            .all(|f| f["type"] == "presence" && f["is_online"] == true),
        "lalo got {before:?}"
    );
    let seen = n1.with_token(&lalo.access).user_detail(kalu.id).await;
    assert_eq!(
        seen.as_ref().map(|r| r.body["is_online"].clone()).ok(),
        Some(json!(true))
    );

    // The last socket anywhere closes: offline after the grace, on both
    // nodes alike.
    b2.close().await;
    let offline = presence_of(&mut a, kalu.id, false).await;
    // lalo's node sent the frame; the other may apply the event a moment
    // later (CI saw it still online).
    wait_converged(&nats, &[&n1, &n2]).await;
    for node in [&n1, &n2] {
        let seen = node
            .with_token(&lalo.access)
            .get(&format!("/api/auth/users/{}/", kalu.id))
            .await;
        assert_eq!(seen.body["is_online"], false, "{}", seen.body);
        assert_eq!(
            seen.body["last_seen_at"], offline["last_seen_at"],
            "{}",
            seen.body
        );
    }

    // kalu online through node 1, which crashes: when it starts again it
    // lets go of kalu, and lalo (node 2) is told.
    let _b = n1.with_token(&kalu.access).ws(CONV).await;
    presence_of(&mut a, kalu.id, true).await;
    n1.kill9().await;
    let _n1 = cluster_support::start_vato(
        &nats.urls(),
        dirs[0].path(),
        &["--presence-grace-secs", "1"],
    )
    .await;
    presence_of(&mut a, kalu.id, false).await;
}

#[tokio::test]
async fn a_phone_code_sent_on_one_node_logs_in_on_the_other() {
    let nats = Nats::single().await;
    let dirs = [tempdir(), tempdir()];
    let (n1, n2) = two_nodes(&nats, &dirs, &[]).await;
    let phone = "+15550007777";
    let code_from = |resp: vato_client::rest::Resp| {
        assert_eq!(resp.status, 200, "{}", resp.body);
        resp.body["otp"]
            .as_str()
            .expect("otp with --demo")
            .to_owned()
    };
    let code = code_from(
        n1.anon()
            .post(
                "/api/auth/phone/request-otp/",
                json!({"phone_number": phone}),
            )
            .await,
    );
    let resp = n2
        .anon()
        .post(
            "/api/auth/phone/verify-otp/",
            json!({"phone_number": phone, "otp": code}),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.body["is_new_user"], true);
    let id = resp.body["user"]["id"].clone();

    // Wrong tries count on every node: five, alternating, burn the code.
    let code = code_from(
        n2.anon()
            .post(
                "/api/auth/phone/request-otp/",
                json!({"phone_number": phone}),
            )
            .await,
    );
    let wrong = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);
    for node in [&n1, &n2, &n1, &n2, &n1] {
        let resp = node
            .anon()
            .post(
                "/api/auth/phone/verify-otp/",
                json!({"phone_number": phone, "otp": wrong}),
            )
            .await;
        assert_eq!(resp.body, json!({"error": "Invalid OTP"}));
    }
    let resp = n2
        .anon()
        .post(
            "/api/auth/phone/verify-otp/",
            json!({"phone_number": phone, "otp": code}),
        )
        .await;
    assert_eq!(resp.body, json!({"error": "OTP expired or not found"}));
    // A new code logs the same user in, on node 1.
    let code = code_from(
        n2.anon()
            .post(
                "/api/auth/phone/request-otp/",
                json!({"phone_number": phone}),
            )
            .await,
    );
    let resp = n1
        .anon()
        .post(
            "/api/auth/phone/verify-otp/",
            json!({"phone_number": phone, "otp": code}),
        )
        .await;
    assert_eq!(resp.body["user"]["id"], id, "{}", resp.body);
}

#[tokio::test]
async fn each_notification_is_pushed_by_one_node_and_the_other_takes_over() {
    let nats = Nats::single().await;
    let dirs = [tempdir(), tempdir()];
    let hook = common::hook::Hook::start(0, 0).await;
    let extra = [
        "--push-webhook",
        hook.url.as_str(),
        "--push-retry-max-ms",
        "400",
    ];
    let (n1, n2) = two_nodes(&nats, &dirs, &extra).await;
    let lalo1 = n1.login("lalo", "lalo123").await;
    let lalo2 = n2.login("lalo", "lalo123").await;
    let kalu = n2.login("kalu", "kalu123").await;
    let conv = lalo1.api.direct_with(&kalu).await;
    // Kalu has no socket: every message is a notification, sent through
    // both nodes.
    for i in 0..6 {
        let lalo = if i % 2 == 0 { &lalo1 } else { &lalo2 };
        lalo.api.send_message(conv, &format!("m{i}")).await;
    }
    let delivered = hook.wait_delivered(6).await;
    let nodes: std::collections::BTreeSet<String> =
        hook.seen().iter().map(|p| p.node.clone()).collect();
    assert_eq!(nodes.len(), 1, "one node delivers: {:?}", hook.seen());
    assert_eq!(
        hook.seen().len(),
        6,
        "each delivered once: {:?}",
        hook.seen()
    );
    assert!(delivered.values().all(|p| p.body["user_id"] == kalu.id));

    // The holder dies; the other node takes over within the lease's time.
    let holder = nodes.into_iter().next().unwrap();
    let node_of = |dir: &tempfile::TempDir| {
        std::fs::read_to_string(dir.path().join("node-id"))
            .unwrap()
            .trim()
            .to_owned()
    };
    let (survivor, lalo, other) = if node_of(&dirs[0]) == holder {
        n1.kill9().await;
        (n2, lalo2, node_of(&dirs[1]))
    } else {
        assert_eq!(node_of(&dirs[1]), holder);
        n2.kill9().await;
        (n1, lalo1, node_of(&dirs[0]))
    };
    for i in 6..9 {
        lalo.api.send_message(conv, &format!("m{i}")).await;
    }
    let delivered = hook.wait_delivered(9).await;
    let late: Vec<&str> = delivered
        .values()
        .filter(|p| p.body["body"].as_str().is_some_and(|b| b >= "m6"))
        .map(|p| p.node.as_str())
        .collect();
    assert_eq!(late, vec![other.as_str(); 3], "the survivor took over");
    drop(survivor);
}
