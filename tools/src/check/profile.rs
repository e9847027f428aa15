//! `--extended`, accounts: A writes its profile and settings, B sees the
//! public part and never A's settings, bad values are refused with DRF's
//! field errors, and A cannot edit B. Every value A changes is put back,
//! so a run leaves the accounts as it found them.

use serde_json::{json, Value};
use vato_client::objects::{PROFILE_KEYS, SETTINGS_KEYS};
use vato_client::Resp;

use super::report::{CheckResult, Pass};
use super::session::{unsigned, User};
use super::Ctx;

/// `ext.profile`.
pub async fn profile(ctx: &Ctx, a: &User, b: &User) -> CheckResult {
    let api = a.authed();
    let before = ok(api.profile_me().await, "GET profile/me/")?;
    // The contract's 22 keys (Vato adds first and last name).
    let missing: Vec<&str> = PROFILE_KEYS[..22]
        .iter()
        .copied()
        .filter(|k| before.get(k).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(format!("profile object lacks {missing:?}"));
    }
    let status = format!("vato-check {}", ctx.token());
    let written = ok(
        api.update_profile(&json!({"status_message": status})).await,
        "PATCH profile/me/",
    )?;
    let result = async {
        if written["status_message"] != status.as_str() {
            return Err(format!("PATCH answered {}", written["status_message"]));
        }
        let seen = ok(
            b.authed().user_detail(unsigned(a.id)).await,
            "B's GET users/{a}/",
        )?;
        if seen["status_message"] != status.as_str() {
            return Err(format!("B sees status {}", seen["status_message"]));
        }
        let bad = api.update_profile(&json!({"bio": "x".repeat(501)})).await;
        expect(
            bad,
            400,
            &json!({"bio": ["Ensure this field has no more than 500 characters."]}),
        )?;
        let foreign = api.update_user(unsigned(b.id), &json!({"bio": "x"})).await;
        let status = foreign.map(|r| r.status).map_err(|e| e.to_string())?;
        if status != 403 {
            return Err(format!(
                "A's PATCH of B's user answered HTTP {status}, not 403"
            ));
        }
        Ok(Pass::detail(
            "written, seen by B, bad value and foreign edit refused",
        ))
    }
    .await;
    let restore = json!({"status_message": before["status_message"]});
    ok(
        api.update_profile(&restore).await,
        "restoring status_message",
    )?;
    result
}

/// `ext.settings`.
pub async fn settings(a: &User, b: &User) -> CheckResult {
    let api = a.authed();
    let before = ok(api.settings().await, "GET settings/")?;
    let keys: Vec<&str> = before
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    if keys != SETTINGS_KEYS {
        return Err(format!("settings keys {keys:?}"));
    }
    let theme = if before["theme"] == "dark" {
        "light"
    } else {
        "dark"
    };
    let written = ok(
        api.update_settings(&json!({"theme": theme})).await,
        "PATCH settings/",
    )?;
    let result = async {
        if written["theme"] != theme {
            return Err(format!("PATCH answered theme {}", written["theme"]));
        }
        let bad = api.update_settings(&json!({"theme": "blue"})).await;
        expect(
            bad,
            400,
            &json!({"theme": ["\"blue\" is not a valid choice."]}),
        )?;
        let seen = ok(
            b.authed().user_detail(unsigned(a.id)).await,
            "B's GET users/{a}/",
        )?;
        if !seen["settings"].is_null() {
            return Err("B sees A's settings".into());
        }
        Ok(Pass::detail(
            "16 keys, written, bad choice refused, hidden from B",
        ))
    }
    .await;
    let restore = json!({"theme": before["theme"]});
    ok(api.update_settings(&restore).await, "restoring theme")?;
    result
}

/// The body of a 200, or why not.
fn ok(resp: Result<Resp, vato_client::RestError>, what: &str) -> Result<Value, String> {
    match resp {
        Ok(resp) if resp.status == 200 => Ok(resp.body),
        Ok(resp) => Err(format!("{what}: {}", resp.describe())),
        Err(e) => Err(format!("{what}: {e}")),
    }
}

fn expect(
    resp: Result<Resp, vato_client::RestError>,
    status: u16,
    body: &Value,
) -> Result<(), String> {
    let resp = resp.map_err(|e| e.to_string())?;
    if resp.status != status || &resp.body != body {
        return Err(format!(
            "expected HTTP {status} {body}, got {}",
            resp.describe()
        ));
    }
    Ok(())
}
