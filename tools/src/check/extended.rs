//! `--extended`: what Vato adds to the contract. Exactly-once resend with the
//! same `client_id`, loss-free resume with `since`, typing to the other
//! member only, edit/delete/read frames to both members, and a block that
//! takes effect (`ext.contact_block`).

use std::time::Instant;

use serde_json::{json, Value};
use vato_client::frames::{self, Kind};
use vato_client::messages_path;

use super::connection::connect_since;
use super::inbox::{describe, Frame, Socket};
use super::realtime::{once, receive};
use super::report::{fmt_ms, CheckResult, Pass, Report};
use super::session::{as_id, list_items, unsigned, User};
use super::{send_frame, seq_order, Ctx, Sent};

/// Messages A sends while B's socket is down.
const MISSED: usize = 5;

pub async fn run(
    ctx: &Ctx,
    report: &mut Report,
    a: &User,
    b: &User,
    conversation: i64,
    mut sa: Socket,
    mut sb: Socket,
) {
    let result = client_id_once(ctx, a, conversation, &mut sa, &mut sb).await;
    report.record("ext.client_id_once", result);

    let (result, resumed) = resume_since(ctx, a, b, conversation, &mut sa, sb).await;
    report.record("ext.resume_since", result);
    let Some(mut sb) = resumed else {
        return report.skip(
            &["ext.typing", "ext.edit", "ext.delete", "ext.read"],
            "ext.resume_since",
        );
    };

    report.record("ext.typing", typing(ctx, a, &mut sa, &mut sb).await);

    let target = post(ctx, a, &mut sa, &mut sb, "edit-me").await;
    let result = match &target {
        Ok(id) => edit(ctx, *id, &mut sa, &mut sb).await,
        Err(reason) => Err(format!("could not post the message to edit: {reason}")),
    };
    report.record("ext.edit", result);
    let result = match &target {
        Ok(id) => delete(ctx, *id, &mut sa, &mut sb).await,
        Err(reason) => Err(format!("could not post the message to delete: {reason}")),
    };
    report.record("ext.delete", result);

    let result = match post(ctx, a, &mut sa, &mut sb, "read-me").await {
        Ok(id) => read(ctx, b, id, &mut sa, &mut sb).await,
        Err(reason) => Err(format!("could not post the message to read: {reason}")),
    };
    report.record("ext.read", result);
}

/// Sending twice with one `client_id` stores one message: over the socket
/// the retry only re-sends the original `message.new` to the sender; over
/// REST the retry answers 200 with the original. B sees each message once
/// and history lists each once.
async fn client_id_once(
    ctx: &Ctx,
    a: &User,
    conversation: i64,
    sa: &mut Socket,
    sb: &mut Socket,
) -> CheckResult {
    // Over the socket.
    let token = ctx.token();
    let mut sent = Sent {
        content: format!("vato-check once {token}"),
        client_id: token,
        at: Instant::now(),
    };
    let frame = send_frame(&sent.content, &sent.client_id);
    sent.at = sa.send(&frame).await?;
    let first = sa
        .expect("the echo of the first send", ctx.timeout, |f| {
            sent.is_new(f)
        })
        .await?;
    sent.verify(&first.value, a.id)?;
    receive(ctx, sb, &sent, a.id, "the first send").await?;
    sa.send(&frame).await?;
    let again = sa
        .expect(
            "the re-sent message.new answering the retry",
            ctx.timeout,
            |f| sent.is_new(f),
        )
        .await?;
    if as_id(&again.value["data"]["id"]) != as_id(&first.value["data"]["id"])
        || again.seq() != first.seq()
    {
        return Err(format!(
            "the retry made a new message: first id {} seq {:?}, retry id {} seq {:?}",
            first.value["data"]["id"],
            first.seq(),
            again.value["data"]["id"],
            again.seq()
        ));
    }

    // Over REST.
    let token = ctx.token();
    let rest = Sent {
        content: format!("vato-check once-rest {token}"),
        client_id: token,
        at: Instant::now(),
    };
    let reply = a
        .send_message(conversation, &rest.content, &rest.client_id)
        .await?;
    if reply.status != 201 {
        return Err(format!("REST send: expected 201, got {}", reply.describe()));
    }
    let retry = a
        .send_message(conversation, &rest.content, &rest.client_id)
        .await?;
    if retry.status != 200 || as_id(&retry.body["id"]) != as_id(&reply.body["id"]) {
        return Err(format!(
            "REST retry with the same client_id: expected 200 with message {}, got {}",
            reply.body["id"],
            retry.describe()
        ));
    }
    receive(ctx, sb, &rest, a.id, "the REST send").await?;

    sa.settle(ctx.grace).await;
    sb.settle(ctx.grace).await;
    once(sb, &sent, "the message sent twice with one client_id")?;
    once(sb, &rest, "the message posted twice with one client_id")?;
    once(sa, &sent, "a second re-send of its message")?;
    sa.take_all(|f| rest.is_new(f));

    // History holds each message once.
    let reply = a.get(&messages_path(unsigned(conversation))).await?;
    let items = list_items(&reply.body).ok_or_else(|| format!("history: {}", reply.describe()))?;
    for message in [&sent, &rest] {
        let copies = items
            .iter()
            .filter(|m| m["content"] == message.content.as_str())
            .count();
        if copies != 1 {
            return Err(format!(
                "history lists {:?} {copies} times",
                message.content
            ));
        }
    }
    Ok(Pass::detail("socket and REST retries deduplicated"))
}

/// Drops B's socket, has A send [`MISSED`] messages, reconnects B with
/// `since=<last seq B saw>`: B gets exactly the missed events, gap-free and in
/// order, then `sync.done`, then live frames with no duplicate at the seam.
///
/// Returns B's new socket (a plain reconnect if the resume failed) so the
/// remaining checks can go on.
async fn resume_since(
    ctx: &Ctx,
    a: &User,
    b: &User,
    conversation: i64,
    sa: &mut Socket,
    mut sb: Socket,
) -> (CheckResult, Option<Socket>) {
    sb.settle(ctx.grace).await;
    let last_seen = sb
        .history()
        .iter()
        .filter(|f| f.kind() != "sync.done")
        .filter_map(Frame::seq)
        .max();
    let Some(since) = last_seen else {
        return (
            Err("B saw no frame with a seq to resume from".into()),
            Some(sb),
        );
    };
    // Dropped, not closed: a lost connection says goodbye to nobody.
    drop(sb);

    let token = ctx.token();
    let mut missed = Vec::with_capacity(MISSED);
    let mut failure = None;
    for i in 1..=MISSED {
        let content = format!("vato-check missed {token} {i}/{MISSED}");
        let client_id = format!("{token}-{i}");
        match sa.send(&send_frame(&content, &client_id)).await {
            Ok(at) => missed.push(Sent {
                content,
                client_id,
                at,
            }),
            Err(reason) => {
                failure = Some(reason);
                break;
            }
        }
    }
    // The echoes say the messages are durable: only then is B "behind".
    let mut seqs = Vec::new();
    for sent in &missed {
        if failure.is_some() {
            break;
        }
        match sa
            .expect("the echo of a missed message", ctx.timeout, |f| {
                sent.is_new(f)
            })
            .await
        {
            Ok(frame) => seqs.push(frame.seq()),
            Err(reason) => failure = Some(reason),
        }
    }

    let started = Instant::now();
    let mut resumed = match connect_since(ctx, b, conversation, Some(since)).await {
        Ok((socket, _)) => socket,
        Err(reason) => {
            // Still try a plain socket so the checks after this one can run.
            let plain = connect_since(ctx, b, conversation, None)
                .await
                .ok()
                .map(|(s, _)| s);
            return (
                Err(format!("reconnect with since={since}: {reason}")),
                plain,
            );
        }
    };
    if let Some(reason) = failure {
        return (
            Err(format!("A could not send the missed messages: {reason}")),
            Some(resumed),
        );
    }
    let gap = Gap {
        since,
        missed,
        echo_seqs: seqs,
        started,
    };
    let result = check_replay(ctx, a, &gap, sa, &mut resumed).await;
    (result, Some(resumed))
}

/// What B missed while its socket was down.
struct Gap {
    /// The last seq B saw before the drop.
    since: i64,
    missed: Vec<Sent>,
    /// The seqs A's echoes gave the missed messages.
    echo_seqs: Vec<Option<i64>>,
    /// When B started to reconnect.
    started: Instant,
}

async fn check_replay(
    ctx: &Ctx,
    a: &User,
    gap: &Gap,
    sa: &mut Socket,
    sb: &mut Socket,
) -> CheckResult {
    let Gap {
        since,
        ref missed,
        ref echo_seqs,
        started,
    } = *gap;
    let done = sb
        .expect("sync.done", ctx.timeout, |f| f["type"] == "sync.done")
        .await?;
    let took = done.at.duration_since(started);
    let replay: Vec<Frame> = sb
        .history()
        .iter()
        .take_while(|f| f.kind() != "sync.done")
        .cloned()
        .collect();

    // Gap-free: exactly the seqs since+1 ..= sync.done's seq, each once.
    seq_order(&replay).map_err(|reason| format!("replay: {reason}"))?;
    let replayed: Vec<i64> = replay.iter().filter_map(Frame::seq).collect();
    let done_seq = done
        .seq()
        .ok_or_else(|| format!("sync.done without a seq: {}", done.value))?;
    let expected: Vec<i64> = (since + 1..=done_seq).collect();
    if replayed != expected {
        return Err(format!(
            "since={since}: replayed seqs {replayed:?}, sync.done seq {done_seq}; expected {expected:?}"
        ));
    }

    // Every missed message, in order, with the seq its echo had.
    let mut found: Vec<(usize, Frame)> = replay
        .iter()
        .filter_map(|f| {
            missed
                .iter()
                .position(|m| m.is_new(&f.value))
                .map(|i| (i, f.clone()))
        })
        .collect();
    // In a cluster, B's node may not have applied A's last sends when B
    // resumes: those must then follow live, right after sync.done, in order
    // (the seq checks below and at the end rule out gaps and duplicates).
    if found.iter().map(|(i, _)| *i).eq(0..found.len()) {
        for (i, message) in missed.iter().enumerate().skip(found.len()) {
            let frame = sb
                .expect(
                    &format!("missed message {} live after sync.done", i + 1),
                    ctx.timeout,
                    |f| message.is_new(f),
                )
                .await?;
            found.push((i, frame));
        }
    }
    let order: Vec<usize> = found.iter().map(|(i, _)| *i + 1).collect();
    let wanted: Vec<usize> = (1..=missed.len()).collect();
    if order != wanted {
        return Err(format!(
            "replay held missed messages {order:?}, expected {wanted:?}"
        ));
    }
    for ((i, frame), echo_seq) in found.iter().zip(echo_seqs) {
        if frame.seq() != *echo_seq {
            return Err(format!(
                "missed message {} replayed with seq {:?}, its echo had {echo_seq:?}",
                i + 1,
                frame.seq()
            ));
        }
        missed[*i]
            .verify(&frame.value, a.id)
            .map_err(|reason| format!("replayed message {}: {reason}", i + 1))?;
    }

    // The seam: the next live message comes once, after the replay.
    let token = ctx.token();
    let content = format!("vato-check after-resume {token}");
    let at = sa.send(&send_frame(&content, &token)).await?;
    let after = Sent {
        content,
        client_id: token,
        at,
    };
    let frame = sb
        .expect("the first live message after sync.done", ctx.timeout, |f| {
            after.is_new(f)
        })
        .await?;
    if frame.seq().is_none_or(|seq| seq <= done_seq) {
        return Err(format!(
            "live message after sync.done (seq {done_seq}) has seq {:?}",
            frame.seq()
        ));
    }
    sb.settle(ctx.grace).await;
    sa.settle(ctx.grace).await;
    once(sb, &after, "the first live message")?;
    for (i, message) in missed.iter().enumerate() {
        let copies = sb
            .history()
            .iter()
            .filter(|f| message.is_new(&f.value))
            .count();
        if copies != 1 {
            return Err(format!("B got missed message {} {copies} times", i + 1));
        }
    }
    seq_order(sb.history()).map_err(|reason| format!("B after resume: {reason}"))?;
    sa.take_all(|f| after.is_new(f) || missed.iter().any(|m| m.is_new(f)));
    Ok(Pass::latency(took).with_detail(format!(
        "{} missed messages replayed, seq {}..{done_seq}, {}",
        missed.len(),
        since + 1,
        fmt_ms(took)
    )))
}

/// A's `typing` reaches B, and not A itself.
async fn typing(ctx: &Ctx, a: &User, sa: &mut Socket, sb: &mut Socket) -> CheckResult {
    let from_a = |f: &Value, is_typing: bool| {
        f["type"] == "typing" && as_id(&f["user_id"]) == Some(a.id) && f["is_typing"] == is_typing
    };
    let at = sa.send(&frames::typing(true)).await?;
    let frame = sb
        .expect("typing (is_typing true) from A", ctx.timeout, |f| {
            from_a(f, true)
        })
        .await?;
    let latency = frame.at.duration_since(at);
    sa.send(&frames::typing(false)).await?;
    sb.expect("typing (is_typing false) from A", ctx.timeout, |f| {
        from_a(f, false)
    })
    .await?;
    sa.settle(ctx.grace).await;
    let own = sa.take_all(|f| f["type"] == "typing");
    if let Some(frame) = own.first() {
        return Err(format!("A got its own typing frame back: {}", frame.value));
    }
    Ok(Pass::latency(latency))
}

/// A sends a message over its socket; returns its id once both have it.
async fn post(
    ctx: &Ctx,
    a: &User,
    sa: &mut Socket,
    sb: &mut Socket,
    label: &str,
) -> Result<i64, String> {
    let token = ctx.token();
    let content = format!("vato-check {label} {token}");
    let at = sa.send(&send_frame(&content, &token)).await?;
    let sent = Sent {
        content,
        client_id: token,
        at,
    };
    let echo = sa
        .expect("the echo of the target message", ctx.timeout, |f| {
            sent.is_new(f)
        })
        .await?;
    receive(ctx, sb, &sent, a.id, "the target message").await?;
    as_id(&echo.value["data"]["id"]).ok_or_else(|| format!("echo without data.id: {}", echo.value))
}

async fn edit(ctx: &Ctx, id: i64, sa: &mut Socket, sb: &mut Socket) -> CheckResult {
    let content = format!("vato-check edited {}", ctx.token());
    let at = sa.send(&frames::edit(unsigned(id), &content)).await?;
    let matches = |f: &Value| f["type"] == "message.edited" && as_id(&f["data"]["id"]) == Some(id);
    let (_, on_b) = both_get(ctx, "message.edited", sa, sb, matches).await?;
    if on_b.value["data"]["content"] != content.as_str() {
        return Err(format!(
            "message.edited carries content {}, expected {content:?}",
            on_b.value["data"]["content"]
        ));
    }
    Ok(Pass::latency(on_b.at.duration_since(at)))
}

async fn delete(ctx: &Ctx, id: i64, sa: &mut Socket, sb: &mut Socket) -> CheckResult {
    let at = sa.send(&frames::delete(unsigned(id))).await?;
    let matches = |f: &Value| f["type"] == "message.deleted" && as_id(&f["message_id"]) == Some(id);
    let (_, on_b) = both_get(ctx, "message.deleted", sa, sb, matches).await?;
    Ok(Pass::latency(on_b.at.duration_since(at)))
}

/// B marks A's message read; both get `message.read` naming B.
async fn read(ctx: &Ctx, b: &User, id: i64, sa: &mut Socket, sb: &mut Socket) -> CheckResult {
    let at = sb.send(&frames::read(unsigned(id))).await?;
    let matches = |f: &Value| {
        f["type"] == "message.read"
            && as_id(&f["message_id"]) == Some(id)
            && as_id(&f["user_id"]) == Some(b.id)
    };
    let (on_a, _) = both_get(ctx, "message.read", sa, sb, matches).await?;
    Ok(Pass::latency(on_a.at.duration_since(at)))
}

/// The frame reaches both sockets once, as one event: the same seq on both,
/// above everything B saw before.
async fn both_get(
    ctx: &Ctx,
    what: &str,
    sa: &mut Socket,
    sb: &mut Socket,
    matches: impl Fn(&Value) -> bool + Copy,
) -> Result<(Frame, Frame), String> {
    let on_b = sb.expect(what, ctx.timeout, matches).await?;
    let on_a = sa.expect(what, ctx.timeout, matches).await?;
    sa.settle(ctx.grace).await;
    sb.settle(ctx.grace).await;
    for socket in [&mut *sa, &mut *sb] {
        if let Some(extra) = socket.take_all(matches).first() {
            return Err(format!(
                "{} got {what} twice: {}",
                socket.label(),
                describe(&extra.value)
            ));
        }
    }
    match (on_a.seq(), on_b.seq()) {
        (Some(x), Some(y)) if x == y => {}
        (x, y) => {
            return Err(format!(
                "{what} should carry one seq on both sockets, got A {x:?}, B {y:?}"
            ))
        }
    }
    seq_order(sb.history()).map_err(|reason| format!("B: {reason}"))?;
    Ok((on_a, on_b))
}

/// `ext.contact_block` (issue 14): A blocks B through the contacts routes
/// (adding B, or marking an existing entry blocked); B's create-direct
/// with A is a 403, B's REST post in their conversation a 403 and B's
/// socket post a `forbidden` error frame; after `POST .../block/`
/// (unblocked) B posts again. A's contacts are put back as they were.
pub async fn contact_block(ctx: &Ctx, a: &User, b: &User, conversation: i64) -> CheckResult {
    let api = a.authed();
    let listed = api
        .contacts()
        .await
        .map_err(|e| format!("A's GET contacts/: {e}"))?;
    if listed.status != 200 {
        return Err(format!("A's GET contacts/: {}", listed.describe()));
    }
    let existing = list_items(&listed.body)
        .and_then(|items| {
            items
                .iter()
                .find(|c| as_id(&c["contact"]["id"]) == Some(b.id))
        })
        .cloned();
    let (contact, created) = match existing {
        Some(entry) => {
            let id = contact_id(&entry)?;
            let resp = api
                .update_contact(id, &json!({"is_blocked": true}))
                .await
                .map_err(|e| format!("A's PATCH contacts/{id}/: {e}"))?;
            if resp.status != 200 || resp.body["is_blocked"] != true {
                return Err(format!("A's PATCH contacts/{id}/: {}", resp.describe()));
            }
            (entry, false)
        }
        None => {
            let resp = api
                .add_contact(unsigned(b.id), &json!({"is_blocked": true}))
                .await
                .map_err(|e| format!("A's POST contacts/: {e}"))?;
            if resp.status != 201 || resp.body["is_blocked"] != true {
                return Err(format!(
                    "A's POST contacts/ (B, blocked): expected 201, got {}",
                    resp.describe()
                ));
            }
            (resp.body, true)
        }
    };
    let id = contact_id(&contact)?;
    let result = blocked_then_unblocked(ctx, a, b, conversation, id).await;
    // Put A's contacts back, whatever happened.
    let restored = if created {
        api.delete_contact(id).await.map(|r| (r.status == 204, r))
    } else {
        let fields = json!({"is_blocked": contact["is_blocked"]});
        api.update_contact(id, &fields)
            .await
            .map(|r| (r.status == 200, r))
    };
    let pass = result?;
    match restored {
        Ok((true, _)) => Ok(pass),
        Ok((false, resp)) => Err(format!(
            "putting A's contact {id} back: {}",
            resp.describe()
        )),
        Err(e) => Err(format!("putting A's contact {id} back: {e}")),
    }
}

fn contact_id(contact: &Value) -> Result<u64, String> {
    as_id(&contact["id"])
        .map(unsigned)
        .filter(|id| *id > 0)
        .ok_or_else(|| format!("no contact id in {contact}"))
}

/// While blocked: B's create-direct, REST post and socket post refused.
/// Then A toggles the block off and B's post goes through.
async fn blocked_then_unblocked(
    ctx: &Ctx,
    a: &User,
    b: &User,
    conversation: i64,
    contact: u64,
) -> CheckResult {
    let direct = b.create_direct(a.id).await?;
    if direct.status != 403 {
        return Err(format!(
            "B's create-direct with A while blocked: expected 403, got {}",
            direct.describe()
        ));
    }
    let content = format!("blocked {}", ctx.token());
    let post = b.send_message(conversation, &content, &ctx.token()).await?;
    if post.status != 403 {
        return Err(format!(
            "B's REST post while blocked: expected 403, got {}",
            post.describe()
        ));
    }
    let (mut sb, _) = connect_since(ctx, b, conversation, None).await?;
    let client_id = ctx.token();
    sb.send(&send_frame(&content, &client_id)).await?;
    let refused = sb
        .expect("the error frame of a blocked post", ctx.timeout, |f| {
            frames::error(f).is_some()
                || (Kind::MessageNew.is(f) && frames::client_id(f) == Some(client_id.as_str()))
        })
        .await?;
    let forbidden = matches!(frames::error(&refused.value), Some(("forbidden", _)));
    if !forbidden || frames::client_id(&refused.value) != Some(client_id.as_str()) {
        return Err(format!(
            "B's socket post while blocked: expected a forbidden error \
             with its client_id, got {}",
            describe(&refused.value)
        ));
    }

    let toggled = a
        .authed()
        .toggle_block(contact)
        .await
        .map_err(|e| format!("A's POST contacts/{contact}/block/: {e}"))?;
    if toggled.status != 200 || toggled.body != json!({"status": "unblocked"}) {
        return Err(format!(
            "A's POST contacts/{contact}/block/: expected 200 unblocked, got {}",
            toggled.describe()
        ));
    }
    let after = b
        .send_message(
            conversation,
            &format!("unblocked {}", ctx.token()),
            &ctx.token(),
        )
        .await?;
    if after.status != 201 {
        return Err(format!(
            "B's post after the unblock: expected 201, got {}",
            after.describe()
        ));
    }
    Ok(Pass::detail(
        "create-direct 403, REST 403, socket forbidden; unblocked, 201",
    ))
}
