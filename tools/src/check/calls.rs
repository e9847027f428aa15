//! `--extended`, issue 15: `ext.call`. A starts a call in the check's
//! direct conversation over REST; B's socket hears it ring
//! (`call.incoming`) and answers on the socket; A's socket gets
//! `call.answered`; A's `webrtc.offer` reaches B with A as its sender and
//! B's `webrtc.answer` reaches A, neither coming back to its sender; A
//! hangs up over REST and B's socket gets `call.ended`. Against a cluster
//! the signalling crosses nodes.

use serde_json::{json, Value};
use vato_client::{Kind, Resp};

use super::connection::connect_member;
use super::report::{CheckResult, Pass};
use super::session::{as_id, User};
use super::Ctx;

fn answered(what: &str, resp: Result<Resp, vato_client::RestError>) -> Result<Resp, String> {
    resp.map_err(|e| format!("{what}: {e}"))
}

/// `ext.call`.
pub async fn call(ctx: &Ctx, a: &User, b: &User, direct: i64) -> CheckResult {
    let (mut sa, _) = connect_member(ctx, a, direct).await?;
    let (mut sb, _) = connect_member(ctx, b, direct).await?;
    let api_a = a.authed();
    let body = json!({"conversation_id": direct, "call_type": "voice"});
    let started = answered(
        "A's POST calls/",
        api_a.try_post("/api/chat/calls/", &body).await,
    )?;
    if started.status != 201 || started.body["state"] != "ringing" {
        return Err(format!("A's POST calls/: {}", started.describe()));
    }
    let id = as_id(&started.body["id"]);
    let path = format!("/api/chat/calls/{}/", started.body["id"]);
    let result = signal(ctx, a, b, &mut sa, &mut sb, &started.body["id"], id).await;
    // Hang up whatever happened, so a failed run leaves no call ringing.
    let ended = answered(
        "A's POST calls/{id}/end/",
        api_a.try_post(&format!("{path}end/"), &json!({})).await,
    )?;
    result?;
    if ended.status != 200 || ended.body["status"] != "ended" {
        return Err(format!("A's end: {}", ended.describe()));
    }
    sb.expect("B's call.ended", ctx.timeout, |f| {
        Kind::CallEnded.is(f) && as_id(&f["call_id"]) == id
    })
    .await?;
    Ok(Pass::detail(
        "rang B, answered on B's socket, offer and answer relayed once each way, ended",
    ))
}

async fn signal(
    ctx: &Ctx,
    a: &User,
    b: &User,
    sa: &mut super::inbox::Socket,
    sb: &mut super::inbox::Socket,
    call_id: &Value,
    id: Option<i64>,
) -> CheckResult {
    let ringing = sb
        .expect("B's call.incoming", ctx.timeout, |f| {
            Kind::CallIncoming.is(f) && as_id(&f["call_id"]) == id
        })
        .await?;
    if as_id(&ringing.value["caller"]["id"]) != Some(a.id) {
        return Err(format!(
            "call.incoming names the caller {}",
            ringing.value["caller"]
        ));
    }
    sb.send(&json!({"type": Kind::CallAnswer.name(), "call_id": call_id}))
        .await?;
    let answered = sa
        .expect("A's call.answered", ctx.timeout, |f| {
            Kind::CallAnswered.is(f) && as_id(&f["call_id"]) == id
        })
        .await?;
    if as_id(&answered.value["answerer"]["id"]) != Some(b.id) {
        return Err(format!(
            "call.answered names {}",
            answered.value["answerer"]
        ));
    }
    let sdp = format!("v=0 vato-check {}", ctx.token());
    let offer = json!({"type": Kind::WebrtcOffer.name(), "call_id": call_id,
                       "offer": {"type": "offer", "sdp": sdp}});
    sa.send(&offer).await?;
    let got = sb
        .expect("B's webrtc.offer", ctx.timeout, |f| {
            Kind::WebrtcOffer.is(f) && as_id(&f["call_id"]) == id
        })
        .await?;
    if got.value["offer"]["sdp"] != sdp.as_str() || as_id(&got.value["sender_id"]) != Some(a.id) {
        return Err(format!("B's webrtc.offer: {}", got.value));
    }
    let reply = json!({"type": Kind::WebrtcAnswer.name(), "call_id": call_id,
                       "answer": {"type": "answer", "sdp": sdp}});
    sb.send(&reply).await?;
    let got = sa
        .expect("A's webrtc.answer", ctx.timeout, |f| {
            Kind::WebrtcAnswer.is(f) && as_id(&f["call_id"]) == id
        })
        .await?;
    if got.value["answer"]["sdp"] != sdp.as_str() || as_id(&got.value["sender_id"]) != Some(b.id) {
        return Err(format!("A's webrtc.answer: {}", got.value));
    }
    // Signalling goes to the other participant only, once.
    sa.settle(ctx.grace).await;
    sb.settle(ctx.grace).await;
    let echoed = sa.take_all(|f| Kind::WebrtcOffer.is(f)).len()
        + sb.take_all(|f| Kind::WebrtcAnswer.is(f)).len();
    if echoed > 0 {
        return Err(format!(
            "{echoed} webrtc frame(s) came back to their sender"
        ));
    }
    let again = sb.take_all(|f| Kind::WebrtcOffer.is(f)).len();
    if again > 0 {
        return Err(format!("B got the offer {} more time(s)", again));
    }
    Ok(Pass::detail("signalled"))
}
