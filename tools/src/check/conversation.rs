//! Case 2, conversation setup: A creates the direct conversation with B and
//! both find it, with both members, in their conversation lists.

use serde_json::Value;

use super::report::{CheckResult, Pass, Report};
use super::session::{self, as_id, list_items, User};
use super::{plural, Ctx};

/// Returns the conversation id when `conv.create_direct` passed.
pub async fn run(ctx: &Ctx, report: &mut Report, a: &User, b: &User) -> Option<i64> {
    let created = create_direct(ctx, a, b).await;
    let conversation = match created {
        Ok((id, status)) => {
            report.record(
                "conv.create_direct",
                Ok(Pass::detail(format!("HTTP {status}, id {id}"))),
            );
            id
        }
        Err(reason) => {
            report.record("conv.create_direct", Err(reason));
            return None;
        }
    };
    let listed = listed(a, conversation, &[a.id, b.id]).await;
    report.record("conv.listed_a", listed);
    let listed = listed_eventually(ctx, b, conversation, &[a.id, b.id]).await;
    report.record("conv.listed_b", listed);
    Some(conversation)
}

async fn create_direct(ctx: &Ctx, a: &User, b: &User) -> Result<(i64, u16), String> {
    // In cluster mode B may have registered on the other node a moment ago.
    let reply = session::retry(ctx.timeout, || async {
        let reply = a.create_direct(b.id).await?;
        if reply.status == 404 {
            return Err(format!("A does not see user B yet: {}", reply.describe()));
        }
        Ok(reply)
    })
    .await?;
    if reply.status != 200 && reply.status != 201 {
        return Err(format!(
            "expected 201 (or 200 for an existing one), got {}",
            reply.describe()
        ));
    }
    let id = as_id(&reply.body["id"])
        .ok_or_else(|| format!("no conversation id in {}", reply.describe()))?;
    if reply.body["conversation_type"] != "direct" {
        return Err(format!(
            "conversation_type should be \"direct\", got {}",
            reply.body["conversation_type"]
        ));
    }
    has_members(&reply.body, &[a.id, b.id])?;
    Ok((id, reply.status))
}

/// `user` lists the conversation, and it shows all of `members`.
async fn listed(user: &User, conversation: i64, members: &[i64]) -> CheckResult {
    let reply = user.conversations().await?;
    if reply.status != 200 {
        return Err(format!("expected 200, got {}", reply.describe()));
    }
    let items =
        list_items(&reply.body).ok_or_else(|| format!("not a list: {}", reply.describe()))?;
    let found = items
        .iter()
        .find(|c| as_id(&c["id"]) == Some(conversation))
        .ok_or_else(|| {
            format!(
                "conversation {conversation} missing from {}'s list of {}",
                user.label,
                items.len()
            )
        })?;
    has_members(found, members)?;
    Ok(Pass::detail(plural(items.len(), "conversation")))
}

/// Like [`listed`], retried: in cluster mode B's node learns of the
/// conversation shortly after A's node created it.
async fn listed_eventually(
    ctx: &Ctx,
    user: &User,
    conversation: i64,
    members: &[i64],
) -> CheckResult {
    session::retry(ctx.timeout, || listed(user, conversation, members)).await
}

/// `members[i].user.id` covers every id in `expected`.
fn has_members(conversation: &Value, expected: &[i64]) -> Result<(), String> {
    let members = conversation["members"].as_array().ok_or_else(|| {
        format!(
            "conversation has no members list: {}",
            super::report::truncate(&conversation.to_string(), 200)
        )
    })?;
    let ids: Vec<i64> = members
        .iter()
        .filter_map(|m| as_id(&m["user"]["id"]))
        .collect();
    for id in expected {
        if !ids.contains(id) {
            return Err(format!("user {id} is not among the members {ids:?}"));
        }
    }
    Ok(())
}
