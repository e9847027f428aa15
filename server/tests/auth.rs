//! Authentication (`api/auth.rs`): register, login, token refresh, missing
//! and bad credentials, expired tokens, and production mode (a secret is
//! required, no dev hooks).

mod common;

use common::*;
use serde_json::{json, Value};

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
