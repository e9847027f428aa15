//! The five scenarios, each the report's test case under load:
//!
//! * `login`: log in again and again (`POST /api/auth/login/`);
//! * `setup`: conversation setup, create-direct with the partner + list;
//! * `connect`: open the pair's WebSocket, ping/pong, close;
//! * `messaging`: real-time messaging between the two users of a pair, both
//!   connected, each sending at `--msg-rate` on an open-loop schedule;
//! * `rest`: REST fallback send + history read.
//!
//! Every user registers in `on_start` (argon2 costs the server tens of ms, so this
//! is spread over the ramp-up) and keeps the returned tokens.

use crate::opts;
use crate::pairing::{self, Kind, Peer};
use crate::tracker;
use crate::ws::{self, Chat, Record};
use futures_util::SinkExt;
use goose::metrics::GooseRequestMetric;
use goose::prelude::*;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::pacing::PreciseTimer;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;
use vato_client::{frames, messages_path};

pub const PASSWORD: &str = "vato-load-Pa55word";
const TOKEN_REFRESH_AFTER: Duration = Duration::from_secs(600);

static RUN_ID: OnceLock<String> = OnceLock::new();

pub fn set_run_id(id: String) {
    let _ = RUN_ID.set(id);
}

fn run_id() -> &'static str {
    RUN_ID.get().map(String::as_str).unwrap_or("vl")
}

/// Per goose user state, in goose session data (cloned Arc, locked per transaction).
#[derive(Clone)]
pub struct Session(Arc<Mutex<State>>);

pub struct State {
    pub index: usize,
    pub user_id: i64,
    pub username: String,
    pub access: String,
    pub refresh: String,
    pub token_at: Instant,
    pub me: Option<Arc<Peer>>,
    pub partner: Option<Arc<Peer>>,
    pub conv: Option<i64>,
    pub ws_base: String,
    pub chat: Option<Chat>,
    pub sched: Option<Schedule>,
}

/// The open-loop send schedule of one chatting user.
pub struct Schedule {
    pub t0_ns: u64,
    pub period_ns: f64,
    pub k: u64,
    pub outstanding: VecDeque<u64>,
    /// Wakes the user when its next message is due.
    pub timer: PreciseTimer,
}

impl Schedule {
    fn due_ns(&self, k: u64) -> u64 {
        self.t0_ns + (k as f64 * self.period_ns) as u64
    }
}

fn err(msg: impl Into<String>) -> Box<TransactionError> {
    Box::new(TransactionError::Custom(msg.into()))
}

fn session(user: &GooseUser) -> Option<Session> {
    user.get_session_data::<Session>().cloned()
}

/// A REST call through goose, so it lands in goose's metrics under `name`.
/// Returns the status and the JSON body (Null when empty or not JSON). A non-2xx
/// status is a failed request in goose's metrics and an `Err` here.
async fn call(
    user: &mut GooseUser,
    method: GooseMethod,
    path: &str,
    name: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Result<Resp, Box<TransactionError>> {
    let mut rb = user.get_request_builder(&method, path)?;
    if let Some(t) = token {
        rb = rb.header("Authorization", format!("Bearer {t}"));
    }
    if let Some(b) = body {
        rb = rb.json(b);
    }
    let req = GooseRequest::builder()
        .method(method)
        .path(path)
        .name(name)
        .set_request_builder(rb)
        .build();
    let mut goose = user.request(req).await?;
    let resp = match goose.response {
        Ok(r) => r,
        Err(e) => return Err(err(format!("{name}: {e}"))),
    };
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    if !(200..300).contains(&status) {
        return Err(err(format!("{name}: HTTP {status}: {text}")));
    }
    match serde_json::from_str(&text) {
        Ok(body) => Ok(Resp {
            body,
            text,
            req: goose.request,
        }),
        Err(_) => {
            let tag = format!("{name}: body is not JSON");
            user.set_failure(&tag, &mut goose.request, None, Some(&text))?;
            Err(err(tag))
        }
    }
}

/// A 2xx answer: its JSON body, and goose's record of the request.
pub(crate) struct Resp {
    body: Value,
    text: String,
    req: GooseRequestMetric,
}

/// A 2xx answer whose body is wrong: the request becomes a failure in goose's
/// metrics (so the error rate sees it), and the transaction fails.
fn wrong(
    user: &mut GooseUser,
    resp: &mut Resp,
    what: impl std::fmt::Display,
) -> Box<TransactionError> {
    let tag = format!("{}: {what}", resp.req.name);
    match user.set_failure(&tag, &mut resp.req, None, Some(&resp.text)) {
        Err(e) => e,
        Ok(()) => err(tag),
    }
}

async fn record(user: &mut GooseUser, r: Record) -> TransactionResult {
    user.record_custom_request_duration("WS", r.name, r.dur, r.ok, r.status, r.err.as_deref())
        .await
}

/// Registers a fresh account; returns (user id, access, refresh).
pub(crate) async fn register(
    user: &mut GooseUser,
    username: &str,
) -> Result<(i64, String, String), Box<TransactionError>> {
    let body = json!({"username": username, "password": PASSWORD, "password2": PASSWORD});
    let mut r = call(
        user,
        GooseMethod::Post,
        "/api/auth/register/",
        "/api/auth/register/",
        None,
        Some(&body),
    )
    .await?;
    let v = &r.body;
    match (
        v["user"]["id"].as_i64(),
        v["access"].as_str(),
        v["refresh"].as_str(),
    ) {
        (Some(id), Some(a), Some(rf)) => Ok((id, a.to_string(), rf.to_string())),
        _ => Err(wrong(user, &mut r, "no user.id/access/refresh")),
    }
}

/// Keeps the access token fresh for long runs (access tokens live 15 minutes).
async fn fresh_token(
    user: &mut GooseUser,
    st: &mut State,
) -> Result<String, Box<TransactionError>> {
    if st.token_at.elapsed() > TOKEN_REFRESH_AFTER {
        let body = json!({"refresh": st.refresh});
        let mut r = call(
            user,
            GooseMethod::Post,
            "/api/auth/token/refresh/",
            "/api/auth/token/refresh/",
            None,
            Some(&body),
        )
        .await?;
        let Some(a) = r.body["access"].as_str().map(str::to_string) else {
            return Err(wrong(user, &mut r, "no access token"));
        };
        st.access = a;
        st.token_at = Instant::now();
    }
    Ok(st.access.clone())
}

/// create-direct with `other`; returns the conversation id, and the answer
/// (to mark it failed when the id is not the one expected).
pub(crate) async fn create_direct(
    user: &mut GooseUser,
    token: &str,
    other: i64,
) -> Result<(i64, Resp), Box<TransactionError>> {
    let body = json!({"user_id": other});
    let mut r = call(
        user,
        GooseMethod::Post,
        "/api/chat/conversations/create-direct/",
        "/api/chat/conversations/create-direct/",
        Some(token),
        Some(&body),
    )
    .await?;
    match r.body["id"].as_i64() {
        Some(id) => Ok((id, r)),
        None => Err(wrong(user, &mut r, "no conversation id")),
    }
}

/// The common start of every scenario: register, and for the paired scenarios
/// find the partner and (when `conv`) the pair's conversation.
async fn start(user: &mut GooseUser, kind: Kind, paired: bool, conv: bool) -> TransactionResult {
    let o = opts::get();
    pairing::user_started(kind);
    let index = pairing::next_index(kind);
    let username = format!("{}_{}{}", run_id(), kind.tag(), index);
    let (user_id, access, refresh) = match register(user, &username).await {
        Ok(x) => x,
        Err(e) => {
            if paired {
                // Tell the partner at once rather than let it wait.
                let me = Peer::new(0);
                me.failed.store(true, SeqCst);
                pairing::publish(kind, index, me);
            }
            return Err(e);
        }
    };
    let bases: Vec<String> = if o.ws_nodes.is_empty() {
        vec![ws::ws_base(user.base_url.as_str())]
    } else {
        o.ws_nodes.iter().map(|n| ws::ws_base(n)).collect()
    };
    let mut st = State {
        index,
        user_id,
        username,
        access,
        refresh,
        token_at: Instant::now(),
        me: None,
        partner: None,
        conv: None,
        ws_base: bases[index % bases.len()].clone(),
        chat: None,
        sched: None,
    };
    if !paired {
        user.set_session_data(Session(Arc::new(Mutex::new(st))));
        return Ok(());
    }
    let me = Peer::new(user_id);
    pairing::publish(kind, index, me.clone());
    st.me = Some(me.clone());
    let timeout = Duration::from_secs(o.pair_timeout_s);
    let partner = if pairing::is_lone(kind, index) {
        None
    } else {
        // A partner whose registration failed is no partner.
        pairing::partner(kind, index, timeout)
            .await
            .filter(|p| p.user_id != 0)
    };
    let Some(partner) = partner else {
        eprintln!(
            "vato-load: {} user {index} ({}) has no partner (an odd number of users in this \
             scenario, or the partner did not start within {timeout:?}); it stays idle",
            kind.name(),
            st.username
        );
        me.failed.store(true, SeqCst);
        user.set_session_data(Session(Arc::new(Mutex::new(st))));
        return Ok(());
    };
    st.partner = Some(partner.clone());
    if conv {
        let token = st.access.clone();
        let result = if index.is_multiple_of(2) {
            // The even member creates the conversation and publishes it.
            match create_direct(user, &token, partner.user_id).await {
                Ok((c, _)) => {
                    let _ = me.conv.set(c);
                    Ok(c)
                }
                Err(e) => {
                    me.failed.store(true, SeqCst);
                    Err(e)
                }
            }
        } else {
            // The odd member waits for it, then calls create-direct too: the
            // server must answer the same conversation (200).
            pairing::wait_until(timeout, || {
                partner.conv.get().is_some() || partner.failed.load(SeqCst)
            })
            .await;
            match partner.conv.get().copied() {
                None => Err(err("the partner did not get the pair's conversation")),
                Some(expected) => {
                    let (c, mut r) = create_direct(user, &token, partner.user_id).await?;
                    if c != expected {
                        Err(wrong(
                            user,
                            &mut r,
                            format!("not idempotent: {c} for the pair, partner got {expected}"),
                        ))
                    } else {
                        Ok(c)
                    }
                }
            }
        };
        match result {
            Ok(c) => st.conv = Some(c),
            Err(e) => {
                me.failed.store(true, SeqCst);
                user.set_session_data(Session(Arc::new(Mutex::new(st))));
                return Err(e);
            }
        }
    }
    user.set_session_data(Session(Arc::new(Mutex::new(st))));
    Ok(())
}

/// Idle for a while: a user whose start failed does nothing (its failure is
/// already in the metrics).
async fn idle() -> TransactionResult {
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(())
}

// ---------------------------------------------------------------- login

pub async fn login_start(user: &mut GooseUser) -> TransactionResult {
    let r = start(user, Kind::Login, false, false).await;
    pairing::user_settled(Kind::Login);
    r
}

pub async fn login(user: &mut GooseUser) -> TransactionResult {
    let Some(s) = session(user) else {
        return idle().await;
    };
    let username = s.0.lock().await.username.clone();
    let body = json!({"username": username, "password": PASSWORD});
    let mut r = call(
        user,
        GooseMethod::Post,
        "/api/auth/login/",
        "/api/auth/login/",
        None,
        Some(&body),
    )
    .await?;
    let v = &r.body;
    if v["access"].as_str().is_none() || v["user"]["username"].as_str() != Some(&username) {
        return Err(wrong(user, &mut r, "no access token or another user"));
    }
    let v = &r.body;
    let mut st = s.0.lock().await;
    if let Some(a) = v["access"].as_str() {
        st.access = a.to_string();
        st.token_at = Instant::now();
    }
    Ok(())
}

// ---------------------------------------------------------------- setup

pub async fn setup_start(user: &mut GooseUser) -> TransactionResult {
    let r = start(user, Kind::Setup, true, false).await;
    pairing::user_settled(Kind::Setup);
    r
}

pub async fn setup(user: &mut GooseUser) -> TransactionResult {
    let Some(s) = session(user) else {
        return idle().await;
    };
    let mut st = s.0.lock().await;
    let Some(partner) = st.partner.clone() else {
        return idle().await;
    };
    let token = fresh_token(user, &mut st).await?;
    let (c, mut r) = create_direct(user, &token, partner.user_id).await?;
    match st.conv {
        Some(known) if known != c => {
            return Err(wrong(
                user,
                &mut r,
                format!("not idempotent: {c} now, {known} before"),
            ))
        }
        _ => st.conv = Some(c),
    }
    let mut r = call(
        user,
        GooseMethod::Get,
        "/api/chat/conversations/",
        "/api/chat/conversations/",
        Some(&token),
        None,
    )
    .await?;
    let listed = r
        .body
        .as_array()
        .map(|a| a.iter().any(|c2| c2["id"].as_i64() == Some(c)))
        .unwrap_or(false);
    if !listed {
        return Err(wrong(user, &mut r, format!("conversation {c} not listed")));
    }
    Ok(())
}

// ---------------------------------------------------------------- connect

pub async fn connect_start(user: &mut GooseUser) -> TransactionResult {
    let r = start(user, Kind::Connect, true, true).await;
    pairing::user_settled(Kind::Connect);
    r
}

pub async fn connect(user: &mut GooseUser) -> TransactionResult {
    let Some(s) = session(user) else {
        return idle().await;
    };
    let mut st = s.0.lock().await;
    let Some(conv) = st.conv else {
        return idle().await;
    };
    let token = fresh_token(user, &mut st).await?;
    let url = ws::conv_url(&st.ws_base, conv, &token);
    drop(st);
    let (mut stream, took) = match ws::connect(&url).await {
        Ok(x) => x,
        Err((e, took)) => {
            user.record_custom_request_duration(
                "WS",
                "connect",
                took,
                false,
                e.status,
                Some(&e.detail),
            )
            .await?;
            return Err(err(e.detail));
        }
    };
    user.record_custom_request_duration("WS", "connect", took, true, Some(101), None)
        .await?;
    let pong = ws::ping(&mut stream, Duration::from_secs(5)).await;
    match pong {
        Ok(d) => {
            user.record_custom_request_duration("WS", "ping", d, true, None, None)
                .await?
        }
        Err(e) => {
            user.record_custom_request_duration(
                "WS",
                "ping",
                Duration::from_secs(5),
                false,
                None,
                Some(&e),
            )
            .await?;
            return Err(err(e));
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.close(None)).await;
    Ok(())
}

// ---------------------------------------------------------------- messaging

pub async fn messaging_start(user: &mut GooseUser) -> TransactionResult {
    let result = messaging_setup(user).await;
    pairing::user_settled(Kind::Messaging);
    let o = opts::get();
    if !pairing::chat_barrier(Duration::from_secs(o.pair_timeout_s)).await {
        eprintln!("vato-load: not every user started in time; chatting starts anyway");
    }
    if let Some(s) = session(user) {
        let mut st = s.0.lock().await;
        if let Some(sched) = st.sched.as_mut() {
            let phase_ns = sched.t0_ns;
            sched.t0_ns = tracker::now_ns() + phase_ns;
        }
    }
    result
}

/// Register, pair, get the conversation, connect, wait for the partner's socket;
/// leaves a schedule whose `t0_ns` holds only the user's phase.
async fn messaging_setup(user: &mut GooseUser) -> TransactionResult {
    start(user, Kind::Messaging, true, true).await?;
    let o = opts::get();
    let Some(s) = session(user) else {
        return Ok(());
    };
    let mut st = s.0.lock().await;
    let (Some(conv), Some(me), Some(partner)) = (st.conv, st.me.clone(), st.partner.clone()) else {
        return Ok(());
    };
    let url = ws::conv_url(&st.ws_base, conv, &st.access);
    let stream = match ws::connect(&url).await {
        Ok((stream, took)) => {
            user.record_custom_request_duration("WS", "connect", took, true, Some(101), None)
                .await?;
            stream
        }
        Err((e, took)) => {
            me.failed.store(true, SeqCst);
            user.record_custom_request_duration(
                "WS",
                "connect",
                took,
                false,
                e.status,
                Some(&e.detail),
            )
            .await?;
            return Err(err(e.detail));
        }
    };
    let timeout = Duration::from_millis(o.deliver_timeout_ms);
    st.chat = Some(Chat::start(stream, st.user_id, timeout));
    me.ready.store(true, SeqCst);
    // Both sockets must be up before either sends, or the first messages would
    // reach a partner that is not yet listening.
    let wait = Duration::from_secs(o.pair_timeout_s);
    let ok = pairing::wait_until(wait, || {
        partner.ready.load(SeqCst) || partner.failed.load(SeqCst)
    })
    .await;
    if !ok || !partner.ready.load(SeqCst) {
        eprintln!(
            "vato-load: messaging user {} ({}): partner's socket never came up; no chatting",
            st.index, st.username
        );
        return Ok(());
    }
    let period_ns = 1e9 / o.msg_rate.max(0.001);
    // A phase per user so the users do not send in lockstep.
    let phase = ((st.user_id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64
        / (1u64 << 53) as f64;
    let timer = PreciseTimer::new().map_err(|e| err(format!("timerfd: {e}")))?;
    st.sched = Some(Schedule {
        // The phase only: the start time is added after the barrier.
        t0_ns: (phase * period_ns) as u64,
        period_ns,
        k: 0,
        outstanding: VecDeque::new(),
        timer,
    });
    Ok(())
}

/// Records what the reader saw, and sweeps this user's messages past their
/// deadline (lost / unacked).
async fn drain(user: &mut GooseUser, st: &mut State) -> TransactionResult {
    let timeout = Duration::from_millis(opts::get().deliver_timeout_ms);
    let mut recs = Vec::new();
    if let Some(chat) = st.chat.as_mut() {
        while let Ok(r) = chat.records.try_recv() {
            recs.push(r);
        }
    }
    if let Some(sched) = st.sched.as_mut() {
        let tracker = tracker::get();
        while let Some(&id) = sched.outstanding.front() {
            match tracker.sweep(id, timeout) {
                None => break,
                Some((lost, unacked)) => {
                    sched.outstanding.pop_front();
                    if lost {
                        recs.push(Record {
                            name: "deliver",
                            dur: timeout,
                            ok: false,
                            status: None,
                            err: Some(format!("lost: not delivered within {timeout:?}")),
                        });
                    }
                    if unacked {
                        recs.push(Record {
                            name: "ack",
                            dur: timeout,
                            ok: false,
                            status: None,
                            err: Some(format!("no echo within {timeout:?}")),
                        });
                    }
                }
            }
        }
        if let Some(me) = &st.me {
            me.outstanding.store(sched.outstanding.len(), SeqCst);
        }
    }
    for r in recs {
        record(user, r).await?;
    }
    Ok(())
}

pub async fn chat(user: &mut GooseUser) -> TransactionResult {
    let o = opts::get();
    let Some(s) = session(user) else {
        return idle().await;
    };
    let mut st = s.0.lock().await;
    if st.sched.is_none() || st.chat.is_none() {
        drop(st);
        return idle().await;
    }
    drain(user, &mut st).await?;
    if !st.chat.as_ref().expect("checked").alive.load(Relaxed) {
        // The reader reported why; this user stops chatting.
        st.sched = None;
        return Ok(());
    }
    // Sleep until the next message is due (at most 200 ms, then come back).
    let next_due = {
        let sched = st.sched.as_ref().expect("checked");
        sched.due_ns(sched.k)
    };
    let now = tracker::now_ns();
    if next_due > now {
        let wait = Duration::from_nanos(next_due - now).min(Duration::from_millis(200));
        let timer = &st.sched.as_ref().expect("checked").timer;
        if let Err(e) = timer.sleep(wait).await {
            return Err(err(format!("timerfd: {e}")));
        }
    }
    // Send every message now due: open loop, a late sender catches up in a burst.
    let tracker = tracker::get();
    let mut sent = 0u32;
    loop {
        let now = tracker::now_ns();
        let (due, k) = {
            let sched = st.sched.as_ref().expect("checked");
            (sched.due_ns(sched.k), sched.k)
        };
        if due > now || sent >= 10_000 {
            break;
        }
        let (id, content) = tracker.new_message(due, o.msg_size);
        let frame = frames::send_text(&content, &format!("vl-{id}"));
        let chat = st.chat.as_mut().expect("checked");
        let res = chat.sink.send(Message::text(frame)).await;
        let sched = st.sched.as_mut().expect("checked");
        sched.k = k + 1;
        sent += 1;
        match res {
            Ok(()) => {
                tracker.record_send_lag(due);
                tracker.sent.fetch_add(1, Relaxed);
                sched.outstanding.push_back(id);
            }
            Err(e) => {
                tracker.forget_failed(id);
                let detail = format!("send failed: {e}");
                user.record_custom_request_duration(
                    "WS",
                    "send",
                    Duration::ZERO,
                    false,
                    None,
                    Some(&detail),
                )
                .await?;
                // The socket is gone: stop this user's chatting.
                st.sched = None;
                return Err(err(detail));
            }
        }
    }
    drain(user, &mut st).await
}

pub async fn messaging_stop(user: &mut GooseUser) -> TransactionResult {
    let o = opts::get();
    let Some(s) = session(user) else {
        return Ok(());
    };
    let mut st = s.0.lock().await;
    if let Some(me) = st.me.clone() {
        me.stopping.store(true, SeqCst);
        // Wait for this user's messages in flight, and for the partner's (which
        // this socket must stay open to receive), up to the delivery deadline.
        let deadline = Instant::now() + Duration::from_millis(o.deliver_timeout_ms + 1000);
        let partner = st.partner.clone();
        while Instant::now() < deadline {
            drain(user, &mut st).await?;
            let mine_done = st
                .sched
                .as_ref()
                .map(|s| s.outstanding.is_empty())
                .unwrap_or(true);
            let partner_done = match &partner {
                Some(p) => {
                    p.failed.load(SeqCst)
                        || (p.stopping.load(SeqCst) && p.outstanding.load(SeqCst) == 0)
                }
                None => true,
            };
            if mine_done && partner_done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drain(user, &mut st).await?;
    }
    if let Some(mut chat) = st.chat.take() {
        chat.close().await;
        while let Ok(r) = chat.records.try_recv() {
            record(user, r).await?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- rest

pub async fn rest_start(user: &mut GooseUser) -> TransactionResult {
    let r = start(user, Kind::Rest, true, true).await;
    pairing::user_settled(Kind::Rest);
    r
}

pub async fn rest(user: &mut GooseUser) -> TransactionResult {
    let o = opts::get();
    let Some(s) = session(user) else {
        return idle().await;
    };
    let mut st = s.0.lock().await;
    let Some(conv) = st.conv else {
        return idle().await;
    };
    let token = fresh_token(user, &mut st).await?;
    let client_id = format!("vlr-{}-{}", st.user_id, tracker::now_ns());
    let mut content = format!("rest {client_id} ");
    while content.len() < o.msg_size {
        content.push('x');
    }
    let path = messages_path(u64::try_from(conv).unwrap_or_default());
    let body = json!({"content": content, "client_id": client_id});
    let mut r = call(
        user,
        GooseMethod::Post,
        &path,
        "/api/chat/conversations/{cid}/messages/",
        Some(&token),
        Some(&body),
    )
    .await?;
    let Some(mid) = r.body["id"].as_i64() else {
        return Err(wrong(user, &mut r, "no message id"));
    };
    if r.body["content"].as_str() != Some(content.as_str()) {
        return Err(wrong(user, &mut r, "content not echoed"));
    }
    let hist = format!("{path}?limit=50");
    let mut h = call(
        user,
        GooseMethod::Get,
        &hist,
        "/api/chat/conversations/{cid}/messages/",
        Some(&token),
        None,
    )
    .await?;
    let found = h
        .body
        .as_array()
        .map(|a| a.iter().any(|m| m["id"].as_i64() == Some(mid)))
        .unwrap_or(false);
    if !found {
        return Err(wrong(
            user,
            &mut h,
            format!("message {mid} just sent is not in the last 50"),
        ));
    }
    Ok(())
}
