//! Login throttling (issue 13): failed logins per client address and per
//! account get 429 with `Retry-After`, before the password is checked; a
//! correct password from another address still works. The clients come
//! from different loopback addresses (127.0.0.x), which the server sees
//! as different peers.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::*;
use serde_json::json;

fn from(server: &Server, address: &str) -> Api {
    let local: IpAddr = address.parse().expect("address");
    Api::from_address(&server.base, local)
}

/// The `Retry-After` of a 429 in DRF's throttle shape.
fn throttled(resp: &Resp) -> u64 {
    assert_eq!(resp.status, 429, "{}", resp.body);
    let seconds: u64 = resp.headers["retry-after"]
        .to_str()
        .expect("Retry-After")
        .parse()
        .expect("Retry-After in seconds");
    assert_eq!(
        resp.body,
        json!({"detail": format!("Request was throttled. Expected available in {seconds} seconds.")})
    );
    seconds
}

fn refused(resp: &Resp) {
    assert_eq!(resp.status, 400, "{}", resp.body);
    assert_eq!(
        resp.body,
        json!({"non_field_errors": ["Unable to log in with provided credentials."]})
    );
}

#[tokio::test]
async fn failed_logins_are_throttled_per_address_and_per_account() {
    // The defaults: 10 failures a minute per address and per account.
    let server = Server::demo().await;
    let attacker = from(&server, "127.0.0.1");
    for i in 0..10 {
        refused(&answered(
            attacker.login("lalo", &format!("guess-{i}")).await,
        ));
    }
    // The eleventh attempt is refused before its password is looked at:
    // the right one does not get in either.
    let wait = throttled(&answered(attacker.login("lalo", "lalo123").await));
    assert!((1..=6).contains(&wait), "Retry-After {wait}");
    // The address is throttled whatever account it names.
    throttled(&answered(attacker.login("kalu", "kalu123").await));

    // The owner, from an address that has not failed, gets in.
    let owner = from(&server, "127.0.0.2");
    assert_eq!(answered(owner.login("lalo", "lalo123").await).status, 200);
    // But lalo's account has used its failures: an address that fails on
    // it is shut out of it at once, while its other accounts stay open.
    let second = from(&server, "127.0.0.3");
    refused(&answered(second.login("lalo", "wrong-one").await));
    throttled(&answered(second.login("lalo", "lalo123").await));
    assert_eq!(answered(second.login("kalu", "kalu123").await).status, 200);
    // Usernames are counted case-insensitively.
    throttled(&answered(second.login("LALO", "lalo123").await));

    // After Retry-After, a failure's worth has come back to the attacker's
    // address; a correct login there works again.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_eq!(
        answered(attacker.login("kalu", "kalu123").await).status,
        200
    );
}

#[tokio::test]
async fn guessing_many_accounts_from_one_address_is_throttled_and_zero_disables() {
    let server = Server::start(&["--demo", "--login-fail-rate", "3"]).await;
    let scanner = from(&server, "127.0.0.4");
    for name in ["ana", "bo", "cy"] {
        refused(&answered(scanner.login(name, "password1").await));
    }
    throttled(&answered(scanner.login("di", "password1").await));
    // Phone-number logins count against the same address.
    let resp = scanner
        .post(
            "/api/auth/login/",
            json!({"phone_number": "+15550001111", "password": "x"}),
        )
        .await;
    throttled(&resp);
    // Successful logins from a busy address are never counted.
    let office = from(&server, "127.0.0.5");
    for _ in 0..10 {
        assert_eq!(answered(office.login("kalu", "kalu123").await).status, 200);
    }

    let open = Server::start(&[
        "--demo",
        "--login-fail-rate",
        "0",
        "--login-user-fail-rate",
        "0",
    ])
    .await;
    let anon = open.anon();
    for i in 0..15 {
        refused(&answered(anon.login("lalo", &format!("guess-{i}")).await));
    }
    assert_eq!(answered(anon.login("lalo", "lalo123").await).status, 200);
}
