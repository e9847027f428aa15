//! Users (`api/users.rs`): the caller's profile, the users list and search,
//! and the privacy of other users' email and phone number.

mod common;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn profile_me_has_the_contract_keys_in_order() {
    let server = Server::demo().await;
    let lalo = server.login("lalo", "lalo123").await;
    let resp = lalo.get("/api/auth/profile/me/").await;
    assert_eq!(resp.status, 200);
    // The contract's 22 in its order, then Vato's first and last name.
    assert_eq!(keys(&resp.body), PROFILE_KEYS);
    assert_eq!(resp.body["id"], lalo.id);
    assert_eq!(resp.body["email"], "lalo@example.com");
    let joined = resp.body["date_joined"].as_str().unwrap();
    assert!(joined.ends_with('Z') && joined.contains('T'), "{joined}");
}

#[tokio::test]
async fn users_list_excludes_the_caller_and_search_needs_two_characters() {
    let server = Server::demo().await;
    let (lalo, _kalu) = server.lalo_and_kalu().await;
    let users = lalo.get("/api/auth/users/").await;
    assert_eq!(users.status, 200);
    let users = users.body.as_array().unwrap().clone();
    assert_eq!(users.len(), 1, "{users:?}");
    assert_eq!(users[0]["username"], "kalu");
    assert_eq!(users[0]["email"], "", "another user's email is hidden");
    assert_key_set(&users[0], &USER_KEYS);

    let search = |q: &'static str| {
        let api = lalo.api.clone();
        async move {
            let resp = api.get(&format!("/api/chat/users/search/?q={q}")).await;
            assert_eq!(resp.status, 200, "{}", resp.body);
            resp.body
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["username"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert!(search("k").await.is_empty(), "one character is not enough");
    assert!(search("").await.is_empty());
    assert_eq!(search("ka").await, ["kalu"]);
    assert_eq!(search("KAL").await, ["kalu"], "case-insensitive");
    assert!(search("lalo").await.is_empty(), "the caller is excluded");
    let no_q = lalo.get("/api/chat/users/search/").await;
    assert_eq!(no_q.status, 200);
    assert_eq!(no_q.body, json!([]));
}

#[tokio::test]
async fn other_users_email_and_phone_are_hidden() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let conv = lalo.direct_with(&kalu).await;
    let member_email = |conv: &Value, user: u64| {
        conv["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["user"]["id"] == user)
            .map(|m| m["user"]["email"].clone())
            .expect("member")
    };
    let path = format!("/api/chat/conversations/{conv}/");
    let as_lalo = lalo.get(&path).await.body;
    assert_eq!(member_email(&as_lalo, lalo.id), "lalo@example.com");
    assert_eq!(member_email(&as_lalo, kalu.id), "");
    let as_kalu = kalu.get(&path).await.body;
    assert_eq!(member_email(&as_kalu, lalo.id), "");
    assert_eq!(member_email(&as_kalu, kalu.id), "kalu@example.com");

    let message = lalo.send_message(conv, "hello").await;
    assert_eq!(message["sender"]["email"], "lalo@example.com");
    let seen_by_kalu = kalu.history(conv, "").await;
    assert_eq!(seen_by_kalu[0]["sender"]["email"], "");
    assert_eq!(seen_by_kalu[0]["receipts"][0]["user"]["email"], "");

    // Phone numbers: the owner sees theirs, nobody else does.
    let resp = server
        .anon()
        .post(
            "/api/auth/register/",
            json!({"username": "pia", "password": PASSWORD, "password2": PASSWORD, "phone_number": "+15550199"}),
        )
        .await;
    assert_eq!(resp.status, 201);
    assert_eq!(resp.body["user"]["phone_number"], "+15550199");
    let listed = lalo.get("/api/auth/users/").await.body;
    let pia = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "pia")
        .unwrap();
    assert_eq!(pia["phone_number"], Value::Null);
}
