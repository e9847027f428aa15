//! Issue 17, accounts: weak passwords, registration floods, phone numbers
//! typed two ways or 200,000 characters long, and look-alike usernames are
//! refused with the contract's error shapes, and a refused registration
//! stores nothing.

mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::*;
use serde_json::{json, Value};

const REGISTER: &str = "/api/auth/register/";

fn account(username: &str, password: &str) -> Value {
    json!({"username": username, "password": password, "password2": password})
}

async fn assert_no_user(server: &Server, username: &str) {
    let login = server
        .anon()
        .post(
            "/api/auth/login/",
            json!({"username": username, "password": PASSWORD}),
        )
        .await;
    assert_eq!(login.status, 400, "{username} exists: {}", login.body);
}

#[tokio::test]
async fn passwords_pass_djangos_default_validators() {
    let server = Server::demo().await;
    let anon = server.anon();
    let refused = [
        (
            account("nina", "12345678"),
            json!([
                "This password is too common.",
                "This password is entirely numeric."
            ]),
        ),
        (
            account("nina", "password"),
            json!(["This password is too common."]),
        ),
        (
            account("nina", "PASSWORD "),
            json!(["This password is too common."]),
        ),
        (
            account("nina", "90817263545"),
            json!(["This password is entirely numeric."]),
        ),
        (
            account("nina_rivera", "nina_rivera7"),
            json!(["The password is too similar to the username."]),
        ),
        (
            json!({"username": "nina", "password": "Rivera-Nina", "password2": "Rivera-Nina",
                   "display_name": "Nina Rivera"}),
            json!(["The password is too similar to the display name."]),
        ),
        (
            json!({"username": "nina", "password": "riveranina", "password2": "riveranina",
                   "email": "nina.rivera@example.com"}),
            json!(["The password is too similar to the email address."]),
        ),
    ];
    for (body, messages) in refused {
        let resp = anon.post(REGISTER, body.clone()).await;
        assert_eq!(resp.status, 400, "{body}: {}", resp.body);
        assert_eq!(resp.body, json!({ "password": messages }), "{body}");
    }
    // Nothing was stored: the name is still free.
    let nina = anon.post(REGISTER, account("nina", PASSWORD)).await;
    assert_eq!(nina.status, 201, "{}", nina.body);
    // Too short is still the field rule, as before.
    let short = anon.post(REGISTER, account("otto", "a1b2c3")).await;
    assert_eq!(
        short.body,
        json!({
            "password": ["Ensure this field has at least 8 characters."],
            "password2": ["Ensure this field has at least 8 characters."],
        })
    );
    // The demo accounts are seeded, not registered: their passwords work.
    server.lalo_and_kalu().await;
}

#[tokio::test]
async fn phone_numbers_are_e164_before_uniqueness() {
    let server = Server::start(&["--dev"]).await;
    let anon = server.anon();
    let mut pia = account("pia", PASSWORD);
    pia["phone_number"] = json!("+1 555 000 1111");
    let resp = anon.post(REGISTER, pia).await;
    assert_eq!(resp.status, 201, "{}", resp.body);
    assert_eq!(resp.body["user"]["phone_number"], "+15550001111");

    for typed in ["+15550001111", "+1 (555) 000-1111", "+1.555.000.1111"] {
        let mut again = account("pio", PASSWORD);
        again["phone_number"] = json!(typed);
        let resp = anon.post(REGISTER, again).await;
        assert_eq!(resp.status, 400, "{typed}: {}", resp.body);
        assert_eq!(
            resp.body,
            json!({"phone_number": ["A user with that phone number already exists."]})
        );
    }
    // The number logs in however it is typed.
    let login = anon
        .post(
            "/api/auth/login/",
            json!({"phone_number": "+1 555 000-1111", "password": PASSWORD}),
        )
        .await;
    assert_eq!(login.status, 200, "{}", login.body);
    assert_eq!(login.body["user"]["username"], "pia");

    let mut huge = account("pio", PASSWORD);
    huge["phone_number"] = json!("5".repeat(200_000));
    let resp = anon.post(REGISTER, huge).await;
    assert_eq!(resp.status, 400, "{}", resp.body);
    assert_eq!(
        resp.body,
        json!({"phone_number": ["Ensure this field has no more than 32 characters."]})
    );
    for bad in [
        "5550001111",
        "+1 555",
        "+1 555 000 1111 ext 2",
        "+1555000111122334",
    ] {
        let mut body = account("pio", PASSWORD);
        body["phone_number"] = json!(bad);
        let resp = anon.post(REGISTER, body).await;
        assert_eq!(resp.status, 400, "{bad}: {}", resp.body);
        assert_eq!(
            resp.body,
            json!({"phone_number": [
                "Enter a valid phone number in international format, such as +15550001111."
            ]}),
            "{bad}"
        );
    }
    assert_no_user(&server, "pio").await;
}

#[tokio::test]
async fn look_alike_usernames_are_taken_also_after_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let look_alikes = [
        "l\u{430}lo",                       // Cyrillic а
        "\u{ff4c}\u{ff41}\u{ff4c}\u{ff4f}", // fullwidth ｌａｌｏ
        "LALO",
        "\u{217c}alo", // small roman numeral fifty
    ];
    for restart in [false, true] {
        let server = Server::start_in(dir.path(), &["--demo"]).await;
        let anon = server.anon();
        for name in look_alikes {
            let resp = anon.post(REGISTER, account(name, PASSWORD)).await;
            assert_eq!(
                resp.status, 400,
                "{name} (restart: {restart}): {}",
                resp.body
            );
            assert_eq!(
                resp.body,
                json!({"username": ["A user with that username already exists."]}),
                "{name}"
            );
            assert_no_user(&server, name).await;
        }
        // Login by the exact name is unchanged, and a different name is free.
        server.lalo_and_kalu().await;
        if !restart {
            server.register("lala").await;
        } else {
            server.login("lala", PASSWORD).await;
        }
        server.terminate().await;
    }
}

/// An API client whose connections come from `address` (any 127/8
/// address is loopback on Linux).
fn client_from(server: &Server, address: Ipv4Addr) -> Api {
    let http = reqwest::Client::builder()
        .local_address(IpAddr::V4(address))
        .build()
        .expect("client");
    Api::with_http(http, &server.base)
}

#[tokio::test]
async fn registrations_are_throttled_per_client_address() {
    let server = Server::start(&["--dev", "--register-rate", "5"]).await;
    let from_one = client_from(&server, Ipv4Addr::new(127, 0, 0, 1));
    // Every attempt counts, refused ones too.
    for i in 0..4 {
        let resp = from_one
            .post(REGISTER, account(&format!("bad{i}"), "x"))
            .await;
        assert_eq!(resp.status, 400, "{}", resp.body);
    }
    let fifth = from_one.post(REGISTER, account("ruth", PASSWORD)).await;
    assert_eq!(fifth.status, 201, "{}", fifth.body);
    let sixth = from_one.post(REGISTER, account("saul", PASSWORD)).await;
    assert_eq!(sixth.status, 429, "{}", sixth.body);
    let retry_after: u64 = sixth.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    // 5 a minute: one more every 12 s.
    assert!(
        (1..=12).contains(&retry_after),
        "Retry-After: {retry_after}"
    );
    assert_eq!(
        sixth.body,
        json!({"detail": format!("Request was throttled. Expected available in {retry_after} seconds.")})
    );
    assert_no_user(&server, "saul").await;
    // Another address has its own allowance.
    let from_two = client_from(&server, Ipv4Addr::new(127, 0, 0, 2));
    let other = from_two.post(REGISTER, account("saul", PASSWORD)).await;
    assert_eq!(other.status, 201, "{}", other.body);
    // Logging in is not throttled.
    server.login("ruth", PASSWORD).await;
}

#[tokio::test]
async fn the_default_allows_20_a_minute_and_0_disables() {
    let attempts = 25;
    let statuses = |server: &Server| {
        let api = server.anon();
        async move {
            let mut statuses = Vec::new();
            for i in 0..attempts {
                let resp = api.post(REGISTER, account(&format!("u{i}"), "x")).await;
                statuses.push(resp.status);
            }
            statuses
        }
    };
    let default = Server::start(&["--dev"]).await;
    let got = statuses(&default).await;
    assert!(got[..20].iter().all(|s| *s == 400), "{got:?}");
    // One more is allowed every 3 s; these take milliseconds.
    assert!(got[20..].contains(&429), "{got:?}");

    let unlimited = Server::start(&["--dev", "--register-rate", "0"]).await;
    let got = statuses(&unlimited).await;
    assert!(got.iter().all(|s| *s == 400), "{got:?}");
}
