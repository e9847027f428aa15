//! Case 5, REST fallback: a message sent over REST answers 201, is delivered
//! live to both sockets (the original never pushed it), and shows in history.

use std::time::Instant;

use serde_json::Value;
use vato_client::messages_path;

use super::inbox::Socket;
use super::realtime::{once, receive};
use super::report::{fmt_ms, CheckResult, Pass, Report};
use super::session::{self, as_id, list_items, unsigned, User};
use super::{plural, Ctx, Sent};

pub async fn run(
    ctx: &Ctx,
    report: &mut Report,
    a: &User,
    b: &User,
    conversation: i64,
    // The two sockets, or the check whose failure left us without them.
    sockets: Result<(&mut Socket, &mut Socket), &str>,
) {
    let token = ctx.token();
    let sent = Sent {
        content: format!("vato-check rest {token}"),
        client_id: token,
        at: Instant::now(),
    };
    let message_id = match send(a, conversation, &sent).await {
        Ok((id, pass)) => {
            report.record("rest.send_201", Ok(pass));
            id
        }
        Err(reason) => {
            report.record("rest.send_201", Err(reason));
            return report.skip(&["rest.live_delivery", "rest.history"], "rest.send_201");
        }
    };

    match sockets {
        Ok((sa, sb)) => {
            let result = live_delivery(ctx, a, &sent, sa, sb).await;
            report.record("rest.live_delivery", result);
        }
        Err(dependency) => report.skip(&["rest.live_delivery"], dependency),
    }

    let result = session::retry(ctx.timeout, || history(b, conversation, message_id, &sent)).await;
    report.record("rest.history", result);
}

/// Posts `sent` as A; returns the new message's id.
async fn send(a: &User, conversation: i64, sent: &Sent) -> Result<(i64, Pass), String> {
    let started = Instant::now();
    let reply = a
        .send_message(conversation, &sent.content, &sent.client_id)
        .await?;
    let took = started.elapsed();
    if reply.status != 201 {
        return Err(format!("expected 201, got {}", reply.describe()));
    }
    if reply.body["content"] != sent.content.as_str() {
        return Err(format!(
            "the answer's content differs: sent {:?}, got {}",
            sent.content, reply.body["content"]
        ));
    }
    let id =
        as_id(&reply.body["id"]).ok_or_else(|| format!("no message id in {}", reply.describe()))?;
    Ok((
        id,
        Pass::latency(took).with_detail(format!("round trip {}", fmt_ms(took))),
    ))
}

async fn live_delivery(
    ctx: &Ctx,
    a: &User,
    sent: &Sent,
    sa: &mut Socket,
    sb: &mut Socket,
) -> CheckResult {
    let to_b = receive(ctx, sb, sent, a.id, "the REST message").await;
    let to_a = receive(ctx, sa, sent, a.id, "the REST message").await;
    sa.settle(ctx.grace).await;
    sb.settle(ctx.grace).await;
    let latency = to_b?;
    to_a?;
    once(sb, sent, "the REST message")?;
    once(sa, sent, "the REST message")?;
    Ok(Pass::latency(latency))
}

/// B's history shows the message with its content.
async fn history(b: &User, conversation: i64, message_id: i64, sent: &Sent) -> CheckResult {
    let reply = b.get(&messages_path(unsigned(conversation))).await?;
    if reply.status != 200 {
        return Err(format!("expected 200, got {}", reply.describe()));
    }
    let items =
        list_items(&reply.body).ok_or_else(|| format!("not a list: {}", reply.describe()))?;
    let found: Vec<&Value> = items
        .iter()
        .filter(|m| as_id(&m["id"]) == Some(message_id))
        .collect();
    match found.as_slice() {
        [message] if message["content"] == sent.content.as_str() => Ok(Pass::detail(format!(
            "{} in B's history",
            plural(items.len(), "message")
        ))),
        [message] => Err(format!(
            "message {message_id} has content {}, sent {:?}",
            message["content"], sent.content
        )),
        [] => Err(format!(
            "message {message_id} missing from B's history of {} messages",
            items.len()
        )),
        _ => Err(format!(
            "message {message_id} listed {} times in B's history",
            found.len()
        )),
    }
}
