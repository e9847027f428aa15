//! The REST API as PROTOCOL.md describes it: every endpoint, its answers and
//! its refusals.

mod common;

use common::*;
use serde_json::{json, Value};

const NOT_MEMBER: &str = "You are not a member of this conversation.";
const NO_CONVERSATION: &str = "No Conversation matches the given query.";

#[tokio::test]
async fn register_answers_201_with_user_and_tokens_and_refuses_bad_input() {
    let server = Server::demo().await;
    let anon = server.anon();
    let resp = anon
        .post(
            "/api/auth/register/",
            json!({"username": "nina", "password": PASSWORD, "password2": PASSWORD,
                   "email": "nina@example.com", "display_name": "Nina"}),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.body);
    assert_eq!(keys(&resp.body), ["user", "access", "refresh"]);
    let user = &resp.body["user"];
    assert_key_set(user, &USER_KEYS);
    assert_eq!(user["username"], "nina");
    assert_eq!(user["email"], "nina@example.com", "own email is shown");
    assert_eq!(user["display_name"], "Nina");
    // The tokens work, and the access token carries the integer user_id.
    let nina = server.with_token(resp.body["access"].as_str().unwrap());
    assert_eq!(
        nina.get("/api/auth/profile/me/").await.body["id"],
        user["id"]
    );
    let claims = jwt_claims(resp.body["access"].as_str().unwrap());
    assert_eq!(claims["user_id"], user["id"]);
    assert_eq!(claims["token_type"], "access");
    assert_eq!(
        jwt_claims(resp.body["refresh"].as_str().unwrap())["token_type"],
        "refresh"
    );

    let register = |body: Value| {
        let anon = anon.clone();
        async move { anon.post("/api/auth/register/", body).await }
    };
    let dup =
        register(json!({"username": "nina", "password": PASSWORD, "password2": PASSWORD})).await;
    assert_eq!(dup.status, 400);
    assert_eq!(
        dup.body,
        json!({"username": ["A user with that username already exists."]})
    );

    let mismatch =
        register(json!({"username": "otto", "password": PASSWORD, "password2": "different-one"}))
            .await;
    assert_eq!(mismatch.status, 400);
    assert_eq!(
        mismatch.body,
        json!({"password2": ["Passwords do not match."]})
    );

    let short =
        register(json!({"username": "otto", "password": "short", "password2": "short"})).await;
    assert_eq!(short.status, 400);
    assert!(short.body["password"].is_array(), "{}", short.body);
    assert!(!short.body.to_string().contains("access"));

    let missing = register(json!({"password": PASSWORD, "password2": PASSWORD})).await;
    assert_eq!(missing.status, 400);
    assert!(missing.body["username"].is_array(), "{}", missing.body);

    let invalid =
        register(json!({"username": "bad name!", "password": PASSWORD, "password2": PASSWORD}))
            .await;
    assert_eq!(invalid.status, 400);
    assert!(invalid.body["username"].is_array(), "{}", invalid.body);

    // A taken phone number is a 400 (the original gave a 500).
    let phone = json!({"username": "pia", "password": PASSWORD, "password2": PASSWORD, "phone_number": "+15550100"});
    assert_eq!(register(phone).await.status, 201);
    let phone_again = register(json!({"username": "pio", "password": PASSWORD, "password2": PASSWORD, "phone_number": "+15550100"})).await;
    assert_eq!(phone_again.status, 400);
    assert!(
        phone_again.body["phone_number"].is_array(),
        "{}",
        phone_again.body
    );

    // None of the refused registrations created a user.
    let users = nina.get("/api/auth/users/").await.body;
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert!(
        !names.contains(&"otto") && !names.contains(&"pio"),
        "{names:?}"
    );
}

#[tokio::test]
async fn login_answers_200_and_refuses_with_the_contracts_400s() {
    let server = Server::demo().await;
    let anon = server.anon();
    let ok = anon
        .post(
            "/api/auth/login/",
            json!({"username": "lalo", "password": "lalo123"}),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(keys(&ok.body), ["user", "access", "refresh"]);
    assert_key_set(&ok.body["user"], &USER_KEYS);
    assert_eq!(ok.body["user"]["is_online"], true);
    assert!(ok.body["user"]["last_seen_at"].is_string());

    let wrong = anon
        .post(
            "/api/auth/login/",
            json!({"username": "lalo", "password": "wrong-password"}),
        )
        .await;
    assert_eq!(wrong.status, 400);
    assert_eq!(
        wrong.body,
        json!({"non_field_errors": ["Unable to log in with provided credentials."]})
    );
    assert!(wrong.body.get("access").is_none() && wrong.body.get("refresh").is_none());

    let unknown = anon
        .post(
            "/api/auth/login/",
            json!({"username": "nobody", "password": "whatever1"}),
        )
        .await;
    assert_eq!(unknown.status, 400);
    assert_eq!(
        unknown.body, wrong.body,
        "unknown users look like wrong passwords"
    );

    let no_password = anon
        .post("/api/auth/login/", json!({"username": "lalo"}))
        .await;
    assert_eq!(no_password.status, 400);
    assert_eq!(
        no_password.body,
        json!({"password": ["This field is required."]})
    );

    // By phone number instead of username.
    let pia = anon
        .post(
            "/api/auth/register/",
            json!({"username": "pia", "password": PASSWORD, "password2": PASSWORD, "phone_number": "+15550123"}),
        )
        .await;
    assert_eq!(pia.status, 201);
    let by_phone = anon
        .post(
            "/api/auth/login/",
            json!({"phone_number": "+15550123", "password": PASSWORD}),
        )
        .await;
    assert_eq!(by_phone.status, 200, "{}", by_phone.body);
    assert_eq!(by_phone.body["user"]["id"], pia.body["user"]["id"]);

    let no_name = anon
        .post("/api/auth/login/", json!({"password": "lalo123"}))
        .await;
    assert_eq!(no_name.status, 400);
    assert_eq!(
        no_name.body,
        json!({"non_field_errors": ["Username or phone number is required."]})
    );
}

#[tokio::test]
async fn token_refresh_answers_access_only_and_401_for_bad_tokens() {
    let server = Server::demo().await;
    let lalo = server.login("lalo", "lalo123").await;
    let anon = server.anon();
    let ok = anon
        .post("/api/auth/token/refresh/", json!({"refresh": lalo.refresh}))
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(keys(&ok.body), ["access"]);
    let fresh = server.with_token(ok.body["access"].as_str().unwrap());
    assert_eq!(fresh.get("/api/auth/profile/me/").await.body["id"], lalo.id);

    for bad in ["not-a-jwt", lalo.access.as_str()] {
        let resp = anon
            .post("/api/auth/token/refresh/", json!({"refresh": bad}))
            .await;
        assert_eq!(resp.status, 401, "refresh with {bad}: {}", resp.body);
        assert_eq!(resp.body["code"], "token_not_valid");
        assert!(resp.body.get("access").is_none());
    }

    let missing = anon.post("/api/auth/token/refresh/", json!({})).await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.body, json!({"detail": "Refresh token required."}));
}

#[tokio::test]
async fn endpoints_refuse_missing_and_bad_credentials_with_401() {
    let server = Server::demo().await;
    let lalo = server.login("lalo", "lalo123").await;
    let paths = [
        "/api/auth/profile/me/",
        "/api/auth/users/",
        "/api/chat/users/search/?q=ka",
        "/api/chat/conversations/",
        "/api/chat/conversations/1/",
        "/api/chat/conversations/1/messages/",
    ];
    for path in paths {
        let none = server.anon().get(path).await;
        assert_eq!(none.status, 401, "{path}");
        assert_eq!(
            none.body,
            json!({"detail": "Authentication credentials were not provided."}),
            "{path}"
        );
        assert_eq!(
            none.headers
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer realm=\"api\""),
            "{path}"
        );
        // A garbage token, and a refresh token used as an access token.
        for token in ["garbage", lalo.refresh.as_str()] {
            let bad = server.with_token(token).get(path).await;
            assert_eq!(bad.status, 401, "{path}");
            assert_eq!(bad.body["code"], "token_not_valid", "{path}");
            assert_eq!(
                bad.body["detail"],
                "Given token not valid for any token type"
            );
        }
    }
    let none = server
        .anon()
        .post(&messages_path(1), json!({"content": "hi"}))
        .await;
    assert_eq!(none.status, 401);
    // A public endpoint still refuses a bad Authorization header.
    let login = server
        .with_token("garbage")
        .post(
            "/api/auth/login/",
            json!({"username": "lalo", "password": "lalo123"}),
        )
        .await;
    assert_eq!(login.status, 401);
}

#[tokio::test]
async fn profile_me_has_the_22_keys_in_contract_order() {
    let server = Server::demo().await;
    let lalo = server.login("lalo", "lalo123").await;
    let resp = lalo.get("/api/auth/profile/me/").await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        keys(&resp.body),
        [
            "id",
            "username",
            "email",
            "display_name",
            "phone_number",
            "avatar",
            "avatar_url",
            "status_message",
            "bio",
            "date_of_birth",
            "country",
            "city",
            "website",
            "show_phone_number",
            "show_last_seen",
            "show_profile_photo",
            "allow_calls",
            "allow_group_invite",
            "is_online",
            "last_seen_at",
            "date_joined",
            "settings",
        ]
    );
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
    let server = Server::start(&["--dev"]).await;
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
    assert_eq!(default.len(), 100, "default limit");
    assert_eq!(contents(&default), names(6..=105), "newest first");
    assert_eq!(keys(&default[0]), MESSAGE_KEYS);
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

#[tokio::test]
async fn index_health_and_unknown_paths() {
    let server = Server::start(&["--dev"]).await;
    let anon = server.anon();
    let index = anon.get("/api/").await;
    assert_eq!(index.status, 200);
    assert_eq!(index.body["message"], "Vatochito Chat API");
    assert_eq!(anon.get("/").await.body, index.body);
    let health = reqwest::get(format!("{}/healthz", server.base))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok");
    let missing = anon.post("/api/nothing/here/", json!({})).await;
    assert_eq!(missing.status, 404);

    // A GET without the trailing slash is redirected, as Django does.
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let moved = no_redirects
        .get(format!("{}/api/chat/conversations?x=1", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), 301);
    assert_eq!(moved.headers()["location"], "/api/chat/conversations/?x=1");

    // An oversized body is a JSON 413.
    let ana = server.register("ana").await;
    let huge = ana
        .post(&messages_path(1), json!({"content": "x".repeat(300_000)}))
        .await;
    assert_eq!(huge.status, 413);
    assert!(huge.body["detail"].is_string(), "{}", huge.body);
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let server = Server::start(&[
        "--demo",
        "--access-token-minutes",
        "0",
        "--refresh-token-days",
        "0",
    ])
    .await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    // Tokens carry whole seconds; these expire at the end of this second.
    // Nothing to await but time itself.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let resp = lalo.get("/api/auth/profile/me/").await;
    assert_eq!(resp.status, 401);
    assert_eq!(resp.body["code"], "token_not_valid");
    let refresh = server
        .anon()
        .post("/api/auth/token/refresh/", json!({"refresh": lalo.refresh}))
        .await;
    assert_eq!(refresh.status, 401);
    assert_eq!(refresh.body["code"], "token_not_valid");
    let url = kalu.ws_url(1, None);
    assert_eq!(Ws::try_connect(&url).await.err(), Some(401));
}

/// The claims of a JWT (its middle part, base64url without padding).
fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut bytes = Vec::new();
    for c in payload.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => panic!("not base64url: {payload}"),
        };
        bits = (bits << 6) | u32::from(v);
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            bytes.push((bits >> nbits) as u8);
            bits &= (1 << nbits) - 1;
        }
    }
    serde_json::from_slice(&bytes).expect("JSON claims")
}

#[tokio::test]
async fn production_mode_needs_a_secret_and_serves_no_dev_hooks() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    for args in [
        vec!["--listen", "127.0.0.1:0", "--data-dir", data_dir],
        vec![
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data_dir,
            "--jwt-secret",
            "too-short",
        ],
    ] {
        let output = run_to_exit(&args).await;
        assert!(!output.status.success(), "{args:?} started");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("secret"), "{args:?}: {stderr}");
    }
    let server = Server::start(&["--jwt-secret", "a-production-secret-0123456789"]).await;
    let ana = server.register("ana").await;
    let hook = ana
        .post("/api/dev/drop-sockets/", json!({"user_id": ana.id}))
        .await;
    assert_eq!(hook.status, 404);
    let demo = server
        .anon()
        .post(
            "/api/auth/login/",
            json!({"username": "lalo", "password": "lalo123"}),
        )
        .await;
    assert_eq!(demo.status, 400, "no demo accounts");
}
