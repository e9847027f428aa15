//! Profiles (`api/profile.rs`): writing one's own profile (`profile/me/`,
//! `user/`, `users/{me}/`), the field rules and their DRF errors, the
//! privacy-filtered views of other users, the read-only `users/{id}/`,
//! and persistence across restarts.

mod common;

use common::*;
use serde_json::{json, Value};

/// Every writable text field, valid.
fn full_profile() -> Value {
    json!({
        "display_name": "Lalo L.",
        "first_name": "Eduardo",
        "last_name": "López",
        "status_message": "at the beach",
        "bio": "I write chat servers.",
        "country": "Mexico",
        "city": "Oaxaca",
        "website": "https://lalo.example/about",
        "date_of_birth": "1995-05-15",
        "email": "lalo@vato.example",
    })
}

#[tokio::test]
async fn a_profile_write_shows_in_every_object_of_the_user() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let conv = lalo.direct_with(&kalu).await;
    let resp = answered(lalo.update_profile(&full_profile()).await);
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(keys(&resp.body), PROFILE_KEYS);
    for (key, value) in full_profile().as_object().unwrap() {
        assert_eq!(&resp.body[key], value, "{key}");
    }
    assert_eq!(resp.body["id"], lalo.id);
    assert_eq!(resp.body["username"], "lalo");

    // The same values on every read of one's own.
    let me = answered(lalo.profile_me().await).body;
    assert_eq!(me, resp.body);
    let user = answered(lalo.user_me().await);
    assert_eq!(user.status, 200);
    assert_key_set(&user.body, &USER_KEYS);
    assert_eq!(user.body["bio"], "I write chat servers.");
    assert_eq!(user.body["date_of_birth"], "1995-05-15");
    assert_eq!(lalo.get("/api/auth/users/me/").await.body, user.body);

    // Others see the public fields, not the email or the birth date.
    let message = lalo.send_message(conv, "hola").await;
    let seen = &kalu.history(conv, "").await[0]["sender"];
    assert_eq!(seen["id"], message["sender"]["id"]);
    for key in ["status_message", "bio", "country", "city", "website"] {
        assert_eq!(seen[key], full_profile()[key], "{key}");
    }
    assert_eq!(seen["display_name"], "Lalo L.");
    assert_eq!(seen["email"], "");
    assert_eq!(seen["date_of_birth"], Value::Null);
    let listed = answered(kalu.users().await).body;
    let listed_lalo = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == lalo.id)
        .unwrap();
    assert_eq!(listed_lalo["status_message"], "at the beach");

    // PUT is partial too; PATCH user/ answers the user object.
    let put = lalo
        .put("/api/auth/profile/me/", json!({"city": "Puebla"}))
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    assert_eq!(put.body["city"], "Puebla");
    assert_eq!(put.body["bio"], "I write chat servers.");
    let patched = answered(lalo.update_user_me(&json!({"bio": "short"})).await);
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_key_set(&patched.body, &USER_KEYS);
    assert_eq!(patched.body["bio"], "short");
    // Clearing: null for the date, "" for text.
    let cleared = answered(
        lalo.update_profile(&json!({"date_of_birth": null, "website": ""}))
            .await,
    );
    assert_eq!(cleared.body["date_of_birth"], Value::Null);
    assert_eq!(cleared.body["website"], "");
}

#[tokio::test]
async fn bad_fields_come_back_together_and_change_nothing() {
    let server = Server::demo().await;
    let lalo = server.login("lalo", "lalo123").await;
    let before = answered(lalo.profile_me().await).body;
    let resp = answered(
        lalo.update_profile(&json!({
            "bio": "b".repeat(501),
            "status_message": "s".repeat(256),
            "city": "c".repeat(101),
            "website": "lalo.example",
            "email": "not-an-email",
            "date_of_birth": "15/05/1995",
            "show_last_seen": "sometimes",
            "allow_calls": null,
            "phone_number": "+1".repeat(20),
            "display_name": "fine",
        }))
        .await,
    );
    assert_eq!(resp.status, 400);
    assert_eq!(
        resp.body,
        json!({
            "bio": ["Ensure this field has no more than 500 characters."],
            "status_message": ["Ensure this field has no more than 255 characters."],
            "city": ["Ensure this field has no more than 100 characters."],
            "website": ["Enter a valid URL."],
            "email": ["Enter a valid email address."],
            "date_of_birth": ["Date has wrong format. Use one of these formats instead: YYYY-MM-DD."],
            "show_last_seen": ["Must be a valid boolean."],
            "allow_calls": ["This field may not be null."],
            "phone_number": ["Ensure this field has no more than 32 characters."],
        })
    );
    assert_eq!(answered(lalo.profile_me().await).body, before);

    // Read-only and unknown keys are ignored.
    let resp = answered(
        lalo.update_profile(&json!({
            "id": 999, "is_online": false, "date_joined": "2000-01-01", "avatar_url": "x",
            "settings": {"theme": "dark"}, "favourite_colour": "red", "status_message": "ok",
        }))
        .await,
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.body["id"], lalo.id);
    assert_eq!(resp.body["date_joined"], before["date_joined"]);
    assert_eq!(resp.body["settings"], Value::Null);
    assert_eq!(resp.body["status_message"], "ok");

    // Not a JSON object: a 400 detail.
    let resp = lalo.patch("/api/auth/profile/me/", json!([1])).await;
    assert_eq!(resp.status, 400);
    assert_eq!(resp.body, json!({"detail": "Expected a JSON object."}));
    // No token.
    for method in ["GET", "PATCH"] {
        let resp = match method {
            "GET" => server.anon().get("/api/auth/user/").await,
            _ => server.anon().patch("/api/auth/user/", json!({})).await,
        };
        assert_eq!(resp.status, 401, "{method} user/");
        let resp = match method {
            "GET" => server.anon().get("/api/auth/profile/me/").await,
            _ => {
                server
                    .anon()
                    .patch("/api/auth/profile/me/", json!({}))
                    .await
            }
        };
        assert_eq!(resp.status, 401, "{method} profile/me/");
    }
}

#[tokio::test]
async fn phone_numbers_are_e164_and_unique_and_names_stay_unique() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let set = answered(
        lalo.update_profile(&json!({"phone_number": "+1 (555) 000-3333"}))
            .await,
    );
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(set.body["phone_number"], "+15550003333");
    let taken = answered(
        kalu.update_profile(&json!({"phone_number": "+15550003333", "bio": "x".repeat(600)}))
            .await,
    );
    assert_eq!(taken.status, 400);
    assert_eq!(
        taken.body,
        json!({
            "phone_number": ["A user with that phone number already exists."],
            "bio": ["Ensure this field has no more than 500 characters."],
        }),
        "a taken number is reported with the other errors"
    );
    let invalid = answered(kalu.update_profile(&json!({"phone_number": "555"})).await);
    assert_eq!(
        invalid.body,
        json!({"phone_number": ["Enter a valid phone number in international format, such as +15550001111."]})
    );
    // Login by phone works with the new number.
    let login = server
        .anon()
        .post(
            "/api/auth/login/",
            json!({"phone_number": "+15550003333", "password": "lalo123"}),
        )
        .await;
    assert_eq!(login.status, 200, "{}", login.body);
    // Cleared, the number is free for someone else.
    let cleared = answered(lalo.update_profile(&json!({"phone_number": null})).await);
    assert_eq!(cleared.body["phone_number"], Value::Null);
    let moved = answered(
        kalu.update_profile(&json!({"phone_number": "+1 555 000 3333"}))
            .await,
    );
    assert_eq!(moved.status, 200, "{}", moved.body);

    // Usernames: taken (look-alikes too), invalid, then a real rename.
    for (name, message) in [
        ("KALU", "A user with that username already exists."),
        ("k\u{430}lu", "A user with that username already exists."),
        ("no spaces", "Enter a valid username. This value may contain only letters, numbers, and @/./+/-/_ characters."),
        ("", "This field may not be blank."),
    ] {
        let resp = answered(lalo.update_profile(&json!({"username": name})).await);
        assert_eq!(resp.status, 400, "{name}");
        assert_eq!(resp.body, json!({"username": [message]}), "{name}");
    }
    let renamed = answered(lalo.update_profile(&json!({"username": "eduardo"})).await);
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    assert_eq!(renamed.body["username"], "eduardo");
    let as_new = server.login("eduardo", "lalo123").await;
    assert_eq!(as_new.id, lalo.id);
    let old = server.anon().login("lalo", "lalo123").await.unwrap();
    assert_eq!(old.status, 400, "the old name is gone");
    // The old name is free again.
    let taken_back = answered(kalu.update_profile(&json!({"username": "lalo"})).await);
    assert_eq!(taken_back.status, 200, "{}", taken_back.body);
}

#[tokio::test]
async fn the_profile_view_follows_the_privacy_flags() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    answered(
        lalo.update_profile(&json!({"phone_number": "+15550004444", "bio": "hi"}))
            .await,
    );
    let view = answered(kalu.public_profile(lalo.id).await);
    assert_eq!(view.status, 200);
    assert_eq!(
        keys(&view.body),
        [
            "id",
            "username",
            "display_name",
            "status_message",
            "bio",
            "avatar",
            "is_online",
            "last_seen_at"
        ],
        "defaults: no phone number"
    );
    assert_eq!(view.body["bio"], "hi");
    assert_eq!(view.body["is_online"], true);

    let flags = answered(
        lalo.update_profile(&json!({
            "show_phone_number": true,
            "show_last_seen": false,
            "show_profile_photo": "false",
        }))
        .await,
    );
    assert_eq!(flags.status, 200, "{}", flags.body);
    assert_eq!(flags.body["show_profile_photo"], false);
    let view = answered(kalu.public_profile(lalo.id).await).body;
    assert_eq!(
        keys(&view),
        [
            "id",
            "username",
            "display_name",
            "status_message",
            "bio",
            "phone_number"
        ]
    );
    assert_eq!(view["phone_number"], "+15550004444");
    assert_eq!(
        answered(lalo.public_profile(lalo.id).await).body,
        view,
        "one's own view is filtered alike"
    );

    // The user objects others get follow the same flags (keys stay).
    let seen = answered(kalu.user_detail(lalo.id).await);
    assert_eq!(seen.status, 200);
    assert_key_set(&seen.body, &USER_KEYS);
    assert_eq!(seen.body["phone_number"], "+15550004444");
    assert_eq!(seen.body["is_online"], false);
    assert_eq!(seen.body["last_seen_at"], Value::Null);
    let own = answered(lalo.user_detail(lalo.id).await).body;
    assert_eq!(own["is_online"], true, "the user sees their own presence");
    assert!(own["last_seen_at"].is_string());

    for path in ["/api/auth/profile/999999/", "/api/auth/profile/abc/"] {
        let missing = kalu.get(path).await;
        assert_eq!(missing.status, 404);
        assert_eq!(missing.body, json!({"error": "User not found"}));
    }
    assert_eq!(server.anon().get("/api/auth/profile/1/").await.status, 401);
}

#[tokio::test]
async fn users_detail_is_read_only_except_for_oneself() {
    let server = Server::demo().await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let before = answered(kalu.user_detail(kalu.id).await).body;
    for resp in [
        answered(lalo.update_user(kalu.id, &json!({"bio": "hacked"})).await),
        lalo.put(
            &format!("/api/auth/users/{}/", kalu.id),
            json!({"username": "kalu", "bio": "hacked"}),
        )
        .await,
    ] {
        assert_eq!(resp.status, 403, "{}", resp.body);
        assert_eq!(
            resp.body,
            json!({"detail": "You do not have permission to perform this action."})
        );
    }
    assert_eq!(answered(kalu.user_detail(kalu.id).await).body, before);
    let missing = answered(lalo.update_user(999_999, &json!({})).await);
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.body,
        json!({"detail": "No User matches the given query."})
    );
    assert_eq!(answered(lalo.user_detail(999_999).await).status, 404);

    // Oneself: PATCH is partial, PUT needs the username.
    let patched = answered(kalu.update_user(kalu.id, &json!({"bio": "mine"})).await);
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body["bio"], "mine");
    let path = format!("/api/auth/users/{}/", kalu.id);
    let no_name = kalu.put(&path, json!({"bio": "x"})).await;
    assert_eq!(no_name.status, 400);
    assert_eq!(
        no_name.body,
        json!({"username": ["This field is required."]})
    );
    let put = kalu
        .put(&path, json!({"username": "kalu", "city": "Lima"}))
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    assert_eq!(put.body["city"], "Lima");
    assert_eq!(put.body["bio"], "mine");
}

#[tokio::test]
async fn profiles_survive_a_crash_and_a_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &["--demo"]).await;
    let lalo = server.login("lalo", "lalo123").await;
    let written = answered(lalo.update_profile(&full_profile()).await).body;
    answered(
        lalo.update_profile(&json!({"phone_number": "+15550005555", "allow_group_invite": false}))
            .await,
    );
    // SIGKILL: recovered from the log.
    server.kill9().await;
    let server = Server::start_in(dir.path(), &["--demo"]).await;
    let lalo = server.login("lalo", "lalo123").await;
    let after = answered(lalo.profile_me().await).body;
    for key in full_profile().as_object().unwrap().keys() {
        assert_eq!(after[key], written[key], "{key}");
    }
    assert_eq!(after["phone_number"], "+15550005555");
    assert_eq!(after["allow_group_invite"], false);
    // SIGTERM: from the snapshot it writes.
    assert!(server.terminate().await.success());
    let server = Server::start_in(dir.path(), &["--demo"]).await;
    let lalo = server.login("lalo", "lalo123").await;
    let again = answered(lalo.profile_me().await).body;
    assert_eq!(again["bio"], written["bio"]);
    assert_eq!(again["allow_group_invite"], false);
    // The phone index came back too.
    let kalu = server.login("kalu", "kalu123").await;
    let taken = answered(
        kalu.update_profile(&json!({"phone_number": "+15550005555"}))
            .await,
    );
    assert_eq!(taken.status, 400, "{}", taken.body);
}
