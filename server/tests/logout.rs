//! Logout (`api/logout.rs`, issue 13): `POST /api/auth/logout/` revokes a
//! refresh token as an event, so a later refresh is a 401 across restarts
//! (from the snapshot and from a replay of the log);
//! `POST /api/auth/auth/logout/` marks the caller offline.

mod common;

use common::*;
use serde_json::{json, Value};

fn token_not_valid(resp: &Resp) {
    assert_eq!(resp.status, 401, "{}", resp.body);
    assert_eq!(resp.body["code"], "token_not_valid", "{}", resp.body);
}

#[tokio::test]
async fn logout_revokes_the_refresh_token_across_restarts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start_in(dir.path(), &["--demo"]).await;
    let lalo = server.login("lalo", "lalo123").await;
    let other = server.login("lalo", "lalo123").await;
    let anon = server.anon();
    assert_eq!(answered(anon.refresh(&lalo.refresh).await).status, 200);

    let resp = answered(anon.logout(&lalo.refresh).await);
    assert_eq!(
        (resp.status, resp.body.clone()),
        (200, json!({"detail": "Successfully logged out."}))
    );
    token_not_valid(&answered(anon.refresh(&lalo.refresh).await));
    // Revoked already, an access token, garbage, a non-string: the
    // contract's 400.
    let invalid = json!({"detail": "Invalid token."});
    for body in [
        json!({"refresh": &lalo.refresh}),
        json!({"refresh": &lalo.access}),
        json!({"refresh": "not.a.jwt"}),
        json!({"refresh": 42}),
    ] {
        let resp = anon.post("/api/auth/logout/", body.clone()).await;
        assert_eq!(
            (resp.status, resp.body.clone()),
            (400, invalid.clone()),
            "{body}"
        );
    }
    // No token at all is a no-op 200, as in the original.
    for body in [json!({}), json!({"refresh": ""}), json!({"refresh": null})] {
        let resp = anon.post("/api/auth/logout/", body).await;
        assert_eq!(resp.status, 200, "{}", resp.body);
    }
    // The access token lives on until it expires; the other session's
    // refresh token is untouched.
    assert_eq!(answered(lalo.profile_me().await).status, 200);
    assert_eq!(answered(anon.refresh(&other.refresh).await).status, 200);

    // A clean restart (snapshot), then a crash (replay of the log's tail).
    assert!(server.terminate().await.success());
    let server = Server::start_in(dir.path(), &["--demo"]).await;
    token_not_valid(&answered(server.anon().refresh(&lalo.refresh).await));
    let resp = answered(server.anon().logout(&other.refresh).await);
    assert_eq!(resp.status, 200, "{}", resp.body);
    server.kill9().await;
    let server = Server::start_in(dir.path(), &["--demo"]).await;
    let anon = server.anon();
    token_not_valid(&answered(anon.refresh(&lalo.refresh).await));
    token_not_valid(&answered(anon.refresh(&other.refresh).await));
    // A new login gets a working refresh token.
    let again = server.login("lalo", "lalo123").await;
    assert_eq!(answered(anon.refresh(&again.refresh).await).status, 200);
}

fn profile_presence(profile: &Value) -> (bool, Option<String>) {
    (
        profile["is_online"].as_bool().expect("is_online"),
        profile["last_seen_at"].as_str().map(str::to_owned),
    )
}

#[tokio::test]
async fn app_logout_marks_the_caller_offline() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start_in(dir.path(), &["--demo"]).await;
    let lalo = server.login("lalo", "lalo123").await;
    let (online, seen_at_login) = profile_presence(&answered(lalo.profile_me().await).body);
    assert!(online);
    let seen_at_login = seen_at_login.expect("last_seen_at set by the login");

    let resp = answered(lalo.logout_offline().await);
    assert_eq!(
        (resp.status, resp.body.clone()),
        (200, json!({"message": "Logged out successfully"}))
    );
    let (online, seen) = profile_presence(&answered(lalo.profile_me().await).body);
    assert!(!online);
    let seen = seen.expect("last_seen_at set by the logout");
    assert!(seen > seen_at_login, "{seen} after {seen_at_login}");
    // Others see it too.
    let kalu = server.login("kalu", "kalu123").await;
    let listed = answered(kalu.users().await).body;
    let shown = listed
        .as_array()
        .expect("users")
        .iter()
        .find(|u| u["id"] == lalo.id)
        .expect("lalo listed")
        .clone();
    assert_eq!(shown["is_online"], false);
    // Again: still 200, nothing changes (and nothing is stored).
    assert_eq!(answered(lalo.logout_offline().await).status, 200);
    assert_eq!(
        profile_presence(&answered(lalo.profile_me().await).body),
        (false, Some(seen.clone()))
    );
    // Without a token: 401.
    let resp = answered(server.anon().logout_offline().await);
    assert_eq!(resp.status, 401, "{}", resp.body);

    server.kill9().await;
    let server = Server::start_in(dir.path(), &["--demo"]).await;
    let lalo_again = server.with_token(&lalo.access);
    assert_eq!(
        profile_presence(&answered(lalo_again.profile_me().await).body),
        (false, Some(seen))
    );
}
