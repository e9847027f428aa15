//! `--extended`, presence (Vato addition, issue 13): B's
//! `users/set-offline/` and `users/set-online/` answer the contract's
//! `{"status"}` and reach a new socket of A on their conversation as
//! `presence` frames (across nodes in cluster mode). B ends online, as
//! its login left it.

use serde_json::{json, Value};
use vato_client::{Kind, Resp};

use super::connection::connect_since;
use super::report::{CheckResult, Pass};
use super::session::User;
use super::Ctx;

/// The keys of a presence frame (PROTOCOL.md).
const KEYS: [&str; 4] = ["type", "user_id", "is_online", "last_seen_at"];

/// `ext.presence`.
pub async fn presence(ctx: &Ctx, a: &User, b: &User, conversation: i64) -> CheckResult {
    let (mut sa, _) = connect_since(ctx, a, conversation, None).await?;
    let api = b.authed();
    for online in [false, true] {
        let (route, status) = if online {
            ("set-online/", "online")
        } else {
            ("set-offline/", "offline")
        };
        let resp: Resp = if online {
            api.set_online().await
        } else {
            api.set_offline().await
        }
        .map_err(|e| format!("B's POST users/{route}: {e}"))?;
        let expected = json!({ "status": status });
        if resp.status != 200 || resp.body != expected {
            return Err(format!(
                "B's POST users/{route}: expected 200 {expected}, got {}",
                resp.describe()
            ));
        }
        let frame = sa
            .expect(&format!("B's presence after {route}"), ctx.timeout, |f| {
                Kind::Presence.is(f) && f["user_id"] == b.id && f["is_online"] == online
            })
            .await?;
        let mut keys: Vec<&str> = frame
            .value
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        keys.sort_unstable();
        let mut want = KEYS.to_vec();
        want.sort_unstable();
        if keys != want {
            return Err(format!("presence frame keys {keys:?}: {}", frame.value));
        }
        if !matches!(frame.value["last_seen_at"], Value::String(_) | Value::Null) {
            return Err(format!(
                "last_seen_at is neither a time nor null: {}",
                frame.value
            ));
        }
    }
    Ok(Pass::detail("B offline, then online, seen by A's socket"))
}
