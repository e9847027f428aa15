//! `--extended`, issue 15: `ext.notification`. A third user C, who never
//! opens a socket, is away: A's message to C makes a notification that C
//! finds in `GET /api/chat/notifications/` (through B's node against a
//! cluster) naming A's message, its conversation and A; C marks it read
//! and reads it back read; A cannot see C's notification.

use serde_json::json;

use super::report::{CheckResult, Pass};
use super::session::{self, as_id, list_items, retry, unsigned, User};
use super::Ctx;

/// `ext.notification`.
pub async fn notification(ctx: &Ctx, a: &User) -> CheckResult {
    let username = format!("vc_n_{}", ctx.token().replace('-', "_"));
    let password = format!("pw-{}", super::unique_token());
    let reply = session::register(&ctx.api_a, &username, &password).await?;
    if reply.status != 201 {
        return Err(format!("could not register C: {}", reply.describe()));
    }
    let c = session::login(&ctx.api_b, "C", &username, &password, &ctx.ws_b).await?;
    let direct = a.create_direct(c.id).await?;
    let conversation = as_id(&direct.body["id"])
        .ok_or_else(|| format!("A's create-direct with C: {}", direct.describe()))?;
    let content = format!("notify {}", ctx.token());
    let sent = a.send_message(conversation, &content, &ctx.token()).await?;
    let message =
        as_id(&sent.body["id"]).ok_or_else(|| format!("A's send to C: {}", sent.describe()))?;

    let found = retry(ctx.timeout, || async {
        let listed = c.get("/api/chat/notifications/").await?;
        let items = list_items(&listed.body)
            .ok_or_else(|| format!("C's notifications: {}", listed.describe()))?;
        items
            .iter()
            .find(|n| as_id(&n["related_message"]) == Some(message))
            .cloned()
            .ok_or_else(|| format!("no notification of A's message in {}", listed.describe()))
    })
    .await?;
    let expected = [
        ("notification_type", json!("message")),
        ("related_conversation", json!(conversation)),
        ("related_user", json!(a.id)),
        ("user", json!(c.id)),
        ("message", json!(content)),
        ("is_read", json!(false)),
    ];
    for (key, value) in expected {
        if found[key] != value {
            return Err(format!(
                "C's notification has {key} {}: {found}",
                found[key]
            ));
        }
    }
    let id = as_id(&found["id"]).ok_or_else(|| format!("no id in {found}"))?;
    let path = format!("/api/chat/notifications/{}/", unsigned(id));
    let read = c
        .authed()
        .try_post(&format!("{path}read/"), &json!({}))
        .await
        .map_err(|e| e.to_string())?;
    if read.status != 200 || read.body["is_read"] != true {
        return Err(format!("C's read/: {}", read.describe()));
    }
    let again = c.get(&path).await?;
    if again.status != 200 || again.body["is_read"] != true {
        return Err(format!(
            "C's notification after read/: {}",
            again.describe()
        ));
    }
    let theirs = a.get(&path).await?;
    if theirs.status != 404 {
        return Err(format!("A sees C's notification: {}", theirs.describe()));
    }
    Ok(Pass::detail(
        "C, away, was told of A's message; marked read; A cannot see it",
    ))
}
