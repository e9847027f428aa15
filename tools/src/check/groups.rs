//! `--extended`, issue 14: group administration, pins and forwards, each on
//! a group of its own that A creates with B (and deletes again, so runs
//! against a shared server leave nothing behind).
//!
//! * `ext.group_admin`: B (not an admin) may not rename the group (403);
//!   A's rename reaches B's socket as `conversation.updated`; A deletes
//!   it (204), B's socket gets `conversation.deleted`, and the group is
//!   gone from B's detail (404).
//! * `ext.pin`: A pins a message (201, then 200 again), B's socket gets
//!   `message.pinned`, the conversation lists it in `pinned_message_ids`;
//!   B may not pin (403); A unpins (204) and B gets `message.unpinned`.
//! * `ext.forward`: B forwards A's message from the group into their
//!   direct conversation with a `client_id` (201, `forwarded_from` set),
//!   A's socket there gets it as `message.new`; the retry answers 200 with
//!   the same message.

use serde_json::{json, Value};
use vato_client::{Api, Kind, Resp};

use super::connection::connect_member;
use super::report::{CheckResult, Pass};
use super::session::{as_id, unsigned, User};
use super::Ctx;

fn call(what: &str, resp: Result<Resp, vato_client::RestError>) -> Result<Resp, String> {
    resp.map_err(|e| format!("{what}: {e}"))
}

fn expect_status(what: &str, resp: &Resp, status: u16) -> Result<(), String> {
    if resp.status == status {
        Ok(())
    } else {
        Err(format!(
            "{what}: expected {status}, got {}",
            resp.describe()
        ))
    }
}

/// A new group of A's with B in it; its id.
async fn group_of(ctx: &Ctx, a: &Api, b: &User, label: &str) -> Result<i64, String> {
    let title = format!("vato-check {label} {}", ctx.token());
    let created = call(
        "create the group",
        a.create_group(&title, &[unsigned(b.id)]).await,
    )?;
    expect_status("create the group", &created, 201)?;
    as_id(&created.body["id"]).ok_or_else(|| format!("group without an id: {}", created.body))
}

/// Deletes a group the check made (best effort: the check's verdict
/// does not depend on it).
async fn remove_group(a: &Api, group: i64) {
    let _ = a.delete_conversation(unsigned(group)).await;
}

/// `ext.group_admin`.
pub async fn group_admin(ctx: &Ctx, a: &User, b: &User) -> CheckResult {
    let (api_a, api_b) = (a.authed(), b.authed());
    let group = group_of(ctx, &api_a, b, "admin").await?;
    let (mut sb, _) = connect_member(ctx, b, group).await?;
    let conv = unsigned(group);

    let refused = call(
        "B's rename",
        api_b
            .update_conversation(conv, &json!({"title": "B was here"}))
            .await,
    )?;
    expect_status("B's rename (not an admin)", &refused, 403)?;
    let title = format!("vato-check renamed {}", ctx.token());
    let renamed = call(
        "A's rename",
        api_a
            .update_conversation(conv, &json!({"title": title, "description": "d"}))
            .await,
    )?;
    expect_status("A's rename", &renamed, 200)?;
    if renamed.body["title"] != title.as_str() {
        return Err(format!("A's rename answered {}", renamed.body));
    }
    let frame = sb
        .expect("conversation.updated", ctx.timeout, |f| {
            Kind::ConversationUpdated.is(f) && f["title"] == title.as_str()
        })
        .await?;
    let updated_seq = frame.seq().ok_or("conversation.updated without a seq")?;

    let deleted = call("A's delete", api_a.delete_conversation(conv).await)?;
    expect_status("A's delete", &deleted, 204)?;
    let frame = sb
        .expect("conversation.deleted", ctx.timeout, |f| {
            Kind::ConversationDeleted.is(f)
        })
        .await?;
    if frame.seq() != Some(updated_seq + 1) {
        return Err(format!(
            "conversation.deleted has seq {:?}, expected {}",
            frame.seq(),
            updated_seq + 1
        ));
    }
    let gone = call("B's detail", api_b.conversation(conv).await)?;
    expect_status("B's detail of the deleted group", &gone, 404)?;
    Ok(Pass::detail("403 for B, rename and delete seen live by B"))
}

/// `ext.pin`.
pub async fn pin(ctx: &Ctx, a: &User, b: &User) -> CheckResult {
    let (api_a, api_b) = (a.authed(), b.authed());
    let group = group_of(ctx, &api_a, b, "pin").await?;
    let result = pin_in(ctx, &api_a, &api_b, b, group).await;
    remove_group(&api_a, group).await;
    result
}

async fn pin_in(ctx: &Ctx, api_a: &Api, api_b: &Api, b: &User, group: i64) -> CheckResult {
    let conv = unsigned(group);
    let (mut sb, _) = connect_member(ctx, b, group).await?;
    let sent = call("A's message", api_a.send(conv, "pin me", None).await)?;
    expect_status("A's message", &sent, 201)?;
    let message = as_id(&sent.body["id"]).ok_or("message without an id")?;

    let pinned = call("A's pin", api_a.pin(conv, unsigned(message)).await)?;
    expect_status("A's pin", &pinned, 201)?;
    if as_id(&pinned.body["message"]["id"]) != Some(message) {
        return Err(format!("the pin's message: {}", pinned.body));
    }
    let again = call("A's second pin", api_a.pin(conv, unsigned(message)).await)?;
    expect_status("A's second pin (pinned already)", &again, 200)?;
    sb.expect("message.pinned", ctx.timeout, |f| {
        Kind::MessagePinned.is(f) && as_id(&f["message_id"]) == Some(message)
    })
    .await?;
    let detail = call("B's detail", api_b.conversation(conv).await)?;
    if detail.body["pinned_message_ids"] != json!([message]) {
        return Err(format!(
            "pinned_message_ids should be [{message}]: {}",
            detail.body["pinned_message_ids"]
        ));
    }
    let refused = call("B's pin", api_b.pin(conv, unsigned(message)).await)?;
    expect_status("B's pin (not an admin)", &refused, 403)?;
    let unpinned = call("A's unpin", api_a.unpin(conv, unsigned(message)).await)?;
    expect_status("A's unpin", &unpinned, 204)?;
    sb.expect("message.unpinned", ctx.timeout, |f| {
        Kind::MessageUnpinned.is(f) && as_id(&f["message_id"]) == Some(message)
    })
    .await?;
    Ok(Pass::detail(
        "201, 200 again, 403 for B, unpinned; B saw both",
    ))
}

/// `ext.forward`.
pub async fn forward(ctx: &Ctx, a: &User, b: &User, direct: i64) -> CheckResult {
    let (api_a, api_b) = (a.authed(), b.authed());
    let group = group_of(ctx, &api_a, b, "forward").await?;
    let result = forward_from(ctx, &api_a, &api_b, a, group, direct).await;
    remove_group(&api_a, group).await;
    result
}

async fn forward_from(
    ctx: &Ctx,
    api_a: &Api,
    api_b: &Api,
    a: &User,
    group: i64,
    direct: i64,
) -> CheckResult {
    let content = format!("vato-check forward {}", ctx.token());
    let sent = call(
        "A's message",
        api_a.send(unsigned(group), &content, None).await,
    )?;
    expect_status("A's message", &sent, 201)?;
    let source = as_id(&sent.body["id"]).ok_or("message without an id")?;
    let (mut sa, _) = connect_member(ctx, a, direct).await?;

    let client_id = ctx.token();
    let forward = || {
        api_b.forward(
            unsigned(group),
            unsigned(source),
            unsigned(direct),
            Some(&client_id),
        )
    };
    let first = call("B's forward", forward().await)?;
    expect_status("B's forward", &first, 201)?;
    let body: &Value = &first.body;
    if as_id(&body["forwarded_from"]) != Some(source)
        || body["content"] != content.as_str()
        || as_id(&body["conversation"]) != Some(direct)
    {
        return Err(format!("the forwarded message: {body}"));
    }
    let id = as_id(&body["id"]);
    sa.expect("the forwarded message.new", ctx.timeout, |f| {
        Kind::MessageNew.is(f) && as_id(&f["data"]["id"]) == id
    })
    .await?;
    let retry = call("B's retry", forward().await)?;
    expect_status("B's retry with the same client_id", &retry, 200)?;
    if as_id(&retry.body["id"]) != id {
        return Err(format!("the retry made a new message: {}", retry.body));
    }
    sa.settle(ctx.grace).await;
    let copies = sa.take_all(|f| Kind::MessageNew.is(f) && as_id(&f["data"]["id"]) == id);
    if !copies.is_empty() {
        return Err(format!("A got the forward {} more time(s)", copies.len()));
    }
    Ok(Pass::detail(
        "201 then 200 by client_id, live in the target once",
    ))
}
