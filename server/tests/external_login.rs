//! Logins without a password (`api/external_login.rs`,
//! `state/external_logins.rs`): phone codes (in the answer with --dev,
//! through `--sms-webhook` otherwise, 503 with neither), their tries,
//! expiry and throttle; Google ID tokens verified against a JWK set served
//! here with keys made here, and every forged token refused with nothing
//! stored.

mod common;

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use parking_lot::Mutex;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde_json::{json, Value};

const PHONE: &str = "+15550001111";

/// The servers' JWT secret where no --dev makes one up.
const SECRET: &str = "external-login-test-secret-0123456789";

/// The contract's `U` of these answers.
const LOGIN_USER_KEYS: [&str; 10] = [
    "id",
    "username",
    "email",
    "first_name",
    "last_name",
    "phone_number",
    "avatar",
    "bio",
    "status_message",
    "is_online",
];

/// The access token of a phone or Google login answer, checked to work.
async fn access_of(server: &Server, body: &Value) -> String {
    let access = body["tokens"]["access"]
        .as_str()
        .unwrap_or_else(|| panic!("no tokens.access in {body}"))
        .to_owned();
    assert!(body["tokens"]["refresh"].is_string(), "{body}");
    let me = answered(server.with_token(&access).profile_me().await);
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.body["id"], body["user"]["id"]);
    access
}

/// Asks for a code in --dev, where the answer carries it.
async fn dev_code(api: &Api, phone: &str) -> String {
    let resp = answered(api.request_otp(phone).await);
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.body["message"], "OTP generated (DEV MODE)");
    assert_eq!(resp.body["phone_number"], phone);
    assert_eq!(resp.body["expires_in"], 600);
    let code = resp.body["otp"].as_str().expect("otp").to_owned();
    assert!(code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()));
    code
}

/// Another 6-digit code than `code`.
fn wrong(code: &str) -> String {
    let n: u32 = code.parse().unwrap();
    format!("{:06}", (n + 1) % 1_000_000)
}

#[tokio::test]
async fn a_phone_code_logs_in_once_and_registers_a_new_number() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &["--dev", "--otp-rate", "100"]).await;
    let api = server.anon();

    // Bad numbers and codes: the contract's 400s.
    let resp = answered(
        api.try_post("/api/auth/phone/request-otp/", &json!({}))
            .await,
    );
    assert_eq!(resp.status, 400);
    assert_eq!(
        resp.body,
        json!({"phone_number": ["This field is required."]})
    );
    let resp = answered(api.request_otp("15550001111").await);
    assert_eq!(
        (resp.status, &resp.body),
        (
            400,
            &json!({"error": "Phone number must start with + and country code"})
        )
    );
    let resp = answered(api.request_otp("+1555abc1111").await);
    assert_eq!(
        (resp.status, &resp.body),
        (400, &json!({"error": "Invalid phone number"}))
    );
    let resp = answered(api.verify_otp(PHONE, "1234567").await);
    assert_eq!(
        resp.body,
        json!({"otp": ["Ensure this field has no more than 6 characters."]})
    );
    let resp = answered(api.verify_otp(PHONE, "123456").await);
    assert_eq!(
        (resp.status, &resp.body),
        (400, &json!({"error": "OTP expired or not found"})),
        "no code was sent"
    );

    // A code; a wrong try; the right one registers the number's user.
    let code = dev_code(&api, PHONE).await;
    let resp = answered(api.verify_otp(PHONE, &wrong(&code)).await);
    assert_eq!(
        (resp.status, &resp.body),
        (400, &json!({"error": "Invalid OTP"}))
    );
    let body = json!({"phone_number": "+1 555 000 1111", "otp": code, "first_name": "Ana"});
    let resp = answered(api.try_post("/api/auth/phone/verify-otp/", &body).await);
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.body["message"], "Account created successfully");
    assert_eq!(resp.body["is_new_user"], true);
    assert_key_set(&resp.body["user"], &LOGIN_USER_KEYS);
    let user = &resp.body["user"];
    assert_eq!(user["username"], "15550001111");
    assert_eq!(user["phone_number"], PHONE);
    assert_eq!(user["first_name"], "Ana");
    assert_eq!(user["is_online"], true);
    access_of(&server, &resp.body).await;
    let id = user["id"].clone();

    // Used up: the same code again is refused.
    let resp = answered(api.verify_otp(PHONE, &code).await);
    assert_eq!(resp.body, json!({"error": "OTP expired or not found"}));

    // A new code logs the same user in.
    let code = dev_code(&api, PHONE).await;
    let resp = answered(api.verify_otp(PHONE, &code).await);
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.body["message"], "Login successful");
    assert_eq!(resp.body["is_new_user"], false);
    assert_eq!(resp.body["user"]["id"], id);

    // Five wrong tries burn a code.
    let code = dev_code(&api, PHONE).await;
    for _ in 0..5 {
        let resp = answered(api.verify_otp(PHONE, &wrong(&code)).await);
        assert_eq!(resp.body, json!({"error": "Invalid OTP"}));
    }
    let resp = answered(api.verify_otp(PHONE, &code).await);
    assert_eq!(
        resp.body,
        json!({"error": "OTP expired or not found"}),
        "burnt by the fifth wrong try"
    );

    // The account has no password: no password logs it in.
    let resp = answered(
        api.try_post(
            "/api/auth/login/",
            &json!({"phone_number": PHONE, "password": "!"}),
        )
        .await,
    );
    assert_eq!(resp.status, 400, "{}", resp.body);

    // A number registered with a password logs in as that user.
    let body = json!({"username": "rosa", "password": PASSWORD, "password2": PASSWORD,
                      "phone_number": "+15550002222"});
    let resp = answered(api.try_post("/api/auth/register/", &body).await);
    assert_eq!(resp.status, 201, "{}", resp.body);
    let rosa = resp.body["user"]["id"].clone();
    let code = dev_code(&api, "+15550002222").await;
    let resp = answered(api.verify_otp("+15550002222", &code).await);
    assert_eq!(resp.body["is_new_user"], false, "{}", resp.body);
    assert_eq!(resp.body["user"]["id"], rosa);
    assert_eq!(resp.body["user"]["username"], "rosa");

    // The codes and the accounts survive a restart (they are events).
    let code = dev_code(&api, PHONE).await;
    server.kill9().await;
    let server = Server::start_in(dir.path(), &["--dev"]).await;
    let resp = answered(server.anon().verify_otp(PHONE, &code).await);
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.body["user"]["id"], id);
}

#[tokio::test]
async fn code_requests_are_throttled_per_number_and_per_address() {
    let server = Server::start(&["--dev", "--otp-rate", "2"]).await;
    let api = server.anon();
    dev_code(&api, PHONE).await;
    dev_code(&api, PHONE).await;
    let resp = answered(api.request_otp(PHONE).await);
    assert_eq!(resp.status, 429, "{}", resp.body);
    let wait: u64 = resp.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait > 60, "{wait}");
    assert!(resp.body["detail"]
        .as_str()
        .unwrap()
        .starts_with("Request was throttled."));
    // The address has used its two as well.
    let resp = answered(api.request_otp("+15550009999").await);
    assert_eq!(resp.status, 429, "{}", resp.body);
}

/// A webhook that records what it is sent and answers `status`.
async fn webhook(status: StatusCode) -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new()
        .route(
            "/sms",
            post(
                |State((seen, status)): State<(Arc<Mutex<Vec<Value>>>, StatusCode)>,
                 Json(body): Json<Value>| async move {
                    seen.lock().push(body);
                    status
                },
            ),
        )
        .with_state((seen.clone(), status));
    let url = serve(app).await;
    (format!("{url}/sms"), seen)
}

/// Serves `app` on a free port of 127.0.0.1; its base URL.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}")
}

#[tokio::test]
async fn codes_go_through_the_sms_webhook_and_nowhere_without_it() {
    // Neither a webhook nor --dev: 503, and no code is kept.
    let server = Server::start(&["--jwt-secret", SECRET]).await;
    let resp = answered(server.anon().request_otp(PHONE).await);
    assert_eq!(
        (resp.status, &resp.body),
        (503, &json!({"detail": "SMS delivery is not configured."}))
    );
    drop(server);

    let (url, seen) = webhook(StatusCode::NO_CONTENT).await;
    let server = Server::start(&["--jwt-secret", SECRET, "--sms-webhook", &url]).await;
    let api = server.anon();
    let resp = answered(api.request_otp(PHONE).await);
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(
        resp.body,
        json!({"message": "OTP sent successfully", "phone_number": PHONE, "expires_in": 600}),
        "the code is not in the answer"
    );
    let sent = seen.lock().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["phone_number"], PHONE);
    let code = sent[0]["code"].as_str().unwrap().to_owned();
    assert!(sent[0]["message"].as_str().unwrap().contains(&code));
    let resp = answered(api.verify_otp(PHONE, &code).await);
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.body["is_new_user"], true);

    // A webhook that fails: 502 with its reason.
    let (url, _) = webhook(StatusCode::INTERNAL_SERVER_ERROR).await;
    let server = Server::start(&["--jwt-secret", SECRET, "--sms-webhook", &url]).await;
    let resp = answered(server.anon().request_otp(PHONE).await);
    assert_eq!(resp.status, 502, "{}", resp.body);
    assert_eq!(resp.body["error"], "Failed to send OTP");
    assert!(resp.body["details"].as_str().unwrap().contains("500"));
}

/// An RSA key of a token issuer, and its JWK with `kid`.
fn rsa_key(kid: &str) -> (EncodingKey, Value) {
    let key = RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).expect("an RSA key");
    let der = key.to_pkcs1_der().unwrap();
    let encoding = EncodingKey::from_rsa_der(der.as_bytes());
    let jwk = json!({
        "kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid,
        "n": URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
        "e": URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
    });
    (encoding, jwk)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

const CLIENT_ID: &str = "vato-test.apps.googleusercontent.com";

fn claims(sub: &str, email: &str) -> Value {
    json!({
        "iss": "https://accounts.google.com",
        "aud": CLIENT_ID,
        "sub": sub,
        "email": email,
        "email_verified": true,
        "given_name": "Ana",
        "family_name": "Lima",
        "iat": now(),
        "exp": now() + 600,
    })
}

fn sign(key: &EncodingKey, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    encode(&header, claims, key).unwrap()
}

#[tokio::test]
async fn google_tokens_are_verified_against_the_published_keys() {
    let (key, jwk) = rsa_key("k1");
    let (forger, _) = rsa_key("k1");
    let certs = Router::new().route(
        "/certs",
        get(move || {
            let jwk = jwk.clone();
            async move { Json(json!({ "keys": [jwk] })) }
        }),
    );
    let jwks = format!("{}/certs", serve(certs).await);

    // Not configured: 503 (a missing token is still the field error).
    let server = Server::start(&["--jwt-secret", SECRET]).await;
    let resp = answered(server.anon().google_login("x.y.z").await);
    assert_eq!(
        (resp.status, &resp.body),
        (503, &json!({"detail": "Google login is not configured."}))
    );
    drop(server);

    let server = Server::start(&[
        "--jwt-secret",
        SECRET,
        "--google-client-id",
        CLIENT_ID,
        "--google-jwks-url",
        &jwks,
    ])
    .await;
    let api = server.anon();
    let resp = answered(api.try_post("/api/auth/google/", &json!({})).await);
    assert_eq!(resp.body, json!({"token": ["This field is required."]}));

    // A local account with the same (unverified) e-mail is not taken over.
    let body = json!({"username": "ana", "password": PASSWORD, "password2": PASSWORD,
                      "email": "ana.lima@example.com"});
    let resp = answered(api.try_post("/api/auth/register/", &body).await);
    assert_eq!(resp.status, 201, "{}", resp.body);
    let local = resp.body["user"]["id"].as_u64().unwrap();

    // Forgeries, each a 401 with the contract's body and nothing stored.
    let good = claims("1098765432", "ana.lima@example.com");
    let with = |field: &str, value: Value| {
        let mut claims = good.clone();
        claims[field] = value;
        claims
    };
    let none_alg = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"k1","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(good.to_string())
    );
    let hs256 = encode(
        &Header::new(Algorithm::HS256),
        &good,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let forged = [
        ("another key", sign(&forger, "k1", &good)),
        ("alg none", none_alg),
        ("HS256", hs256),
        ("unknown kid", sign(&key, "k2", &good)),
        (
            "another audience",
            sign(&key, "k1", &with("aud", json!("someone-else"))),
        ),
        (
            "another issuer",
            sign(&key, "k1", &with("iss", json!("https://evil.example"))),
        ),
        (
            "expired",
            sign(&key, "k1", &with("exp", json!(now() - 3_600))),
        ),
        ("not a token", "not-a-token".to_string()),
    ];
    for (what, token) in &forged {
        let resp = answered(api.google_login(token).await);
        assert_eq!(resp.status, 401, "{what}: {}", resp.body);
        assert_eq!(resp.body["error"], "Invalid Google token", "{what}");
        assert!(resp.body["details"].is_string(), "{what}: {}", resp.body);
    }
    let unverified = sign(&key, "k1", &with("email_verified", json!(false)));
    let resp = answered(api.google_login(&unverified).await);
    assert_eq!(
        (resp.status, &resp.body),
        (400, &json!({"error": "Email not verified with Google"}))
    );

    // The real thing: a new user, then the same one again.
    let resp = answered(api.google_login(&sign(&key, "k1", &good)).await);
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.body["message"], "Account created successfully");
    assert_eq!(resp.body["is_new_user"], true);
    assert_key_set(&resp.body["user"], &LOGIN_USER_KEYS);
    let user = resp.body["user"].clone();
    assert_eq!(
        user["id"].as_u64(),
        Some(local + 1),
        "no forgery stored a user"
    );
    assert_eq!(user["username"], "ana.lima_109876");
    assert_eq!(user["email"], "ana.lima@example.com");
    assert_eq!(
        (&user["first_name"], &user["last_name"]),
        (&json!("Ana"), &json!("Lima"))
    );
    access_of(&server, &resp.body).await;
    let resp = answered(api.google_login(&sign(&key, "k1", &good)).await);
    assert_eq!(resp.body["message"], "Login successful", "{}", resp.body);
    assert_eq!(resp.body["user"]["id"], user["id"]);
    // `"email_verified": "true"` (older tokens) counts as verified.
    let text = with("email_verified", json!("true"));
    let resp = answered(api.google_login(&sign(&key, "k1", &text)).await);
    assert_eq!(resp.body["user"]["id"], user["id"], "{}", resp.body);
}
