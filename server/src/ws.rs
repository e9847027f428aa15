//! The WebSocket endpoint: handshake checks, then two tasks per socket: a
//! reader and a writer.
//!
//! `fastwebsockets`' `read_frame` is not cancel-safe, so the reader is a
//! dedicated task that is never put in a `select!`; it is aborted only when
//! the socket is being torn down anyway. The writer (the connection's own
//! task) owns the write half and is the only one that writes: event frames
//! from the hub, replies and control frames from the reader, the answers to
//! the reader's commands in the order they were sent, and replays for
//! `since`. Two tasks, two channels and no write buffer while idle keep a
//! socket small.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use fastwebsockets::{upgrade, Frame, OpCode, Payload, WebSocketError};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tracing::Instrument;
use vato_eventlog::{Applied, Command, ConvId, Rejection, Reply, Seq, UserId};

use crate::app::{App, Pending};
use crate::auth::TokenType;
use crate::burst::BurstWriter;
use crate::clock::now_micros;
use crate::error::ApiError;
use crate::hub::{closed, Out, SocketHandle};
use crate::render;

type Upgraded = TokioIo<hyper::upgrade::Upgraded>;
type Writer = fastwebsockets::WebSocketWrite<BurstWriter<WriteHalf<Upgraded>>>;

/// Longest a write to a peer may block before the connection is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Commands one socket may have in flight before its reader waits.
const IN_FLIGHT: usize = 256;
/// How long a socket told to close may finish a blocked write.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Events replayed per log read; the writer yields between chunks.
const REPLAY_CHUNK: usize = 512;

/// What the reader asks the writer to do.
enum Ctrl {
    /// A text frame for this socket only (pong, error, idempotent echo).
    Text(String),
    /// A control frame the protocol owes the peer (pong, close echo).
    Control(OpCode, Vec<u8>),
    /// Close with this code.
    Close(u16),
    /// Replay everything after this seq, then continue live.
    Sync(Seq),
    /// A command begun by the reader, to be answered in order.
    Pending(InFlight),
}

fn refuse(status: StatusCode, detail: &str) -> Response {
    (status, Json(json!({ "detail": detail }))).into_response()
}

/// `GET /ws/conversations/<id>/` and `GET /ws/chat/<id>/`.
pub async fn handshake(
    State(app): State<Arc<App>>,
    Path(conv): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    mut request: Request<Body>,
) -> Response {
    let Some(token) = query.get("token").filter(|t| !t.is_empty()) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "Authentication credentials were not provided.",
        );
    };
    let Some(user_id) = app.jwt.verify(token, TokenType::Access) else {
        return refuse(StatusCode::UNAUTHORIZED, "Token is invalid or expired.");
    };
    let since = match query.get("since").map(|s| s.parse::<Seq>()) {
        None => None,
        Some(Ok(since)) => Some(since),
        Some(Err(_)) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "since must be a non-negative integer.",
            )
        }
    };
    let Ok(conv_id) = conv.parse::<ConvId>() else {
        return refuse(StatusCode::NOT_FOUND, "No such conversation.");
    };
    {
        let state = app.store.state();
        if state.user(user_id).is_none() {
            return refuse(StatusCode::UNAUTHORIZED, "User not found.");
        }
        let Some(conversation) = state.conversation(conv_id) else {
            return refuse(StatusCode::NOT_FOUND, "No such conversation.");
        };
        if !conversation.members.contains_key(&user_id) {
            return refuse(
                StatusCode::FORBIDDEN,
                "You are not a member of this conversation.",
            );
        }
    }
    if !upgrade::is_upgrade_request(&request) {
        return refuse(StatusCode::UPGRADE_REQUIRED, "WebSocket upgrade expected.");
    }
    if app.connections.fetch_add(1, Ordering::SeqCst) >= app.config.max_connections {
        app.connections.fetch_sub(1, Ordering::SeqCst);
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "Too many connections.");
    }
    let (response, upgrade) = match upgrade::upgrade(&mut request) {
        Ok(pair) => pair,
        Err(e) => {
            app.connections.fetch_sub(1, Ordering::SeqCst);
            return refuse(StatusCode::BAD_REQUEST, &e.to_string());
        }
    };
    // Register before the handshake completes, as the original joins its
    // group first: a frame sent right after the handshake is not missed.
    let (handle, queue, live_seq) = app
        .hub
        .register(conv_id, user_id, app.config.outbound_queue);
    let span = tracing::info_span!("ws", user = user_id, conv = conv_id, socket = handle.id);
    let task_app = app.clone();
    let task = async move {
        match upgrade.await {
            Ok(ws) => serve(task_app.clone(), ws, handle.clone(), queue, live_seq, since).await,
            Err(e) => tracing::debug!("upgrade failed: {e}"),
        }
        task_app.hub.unregister(&handle);
        task_app.connections.fetch_sub(1, Ordering::SeqCst);
    }
    .instrument(span);
    tokio::spawn(task);
    let (parts, _) = response.into_parts();
    Response::from_parts(parts, Body::empty())
}

async fn serve(
    app: Arc<App>,
    ws: fastwebsockets::WebSocket<Upgraded>,
    handle: Arc<SocketHandle>,
    queue: mpsc::Receiver<Out>,
    live_seq: Seq,
    since: Option<Seq>,
) {
    let (write, ctrl, mut reader) = start_reader(&app, ws, &handle, since);
    // This task is the writer. It ends when the reader has ended (its
    // `Ctrl` sender is gone), when the socket must close, or when a write
    // fails or blocks too long.
    write_loop(&app, write, queue, ctrl, &handle, live_seq).await;
    // Give the peer a moment to answer our close frame.
    let _ = tokio::time::timeout(Duration::from_secs(1), &mut reader).await;
    reader.abort();
}

/// Splits the socket and spawns its reader; the write half and the
/// reader's requests are the writer's. Not async, so that none of this
/// setup's state stays in the connection's task for its whole life.
fn start_reader(
    app: &Arc<App>,
    ws: fastwebsockets::WebSocket<Upgraded>,
    handle: &Arc<SocketHandle>,
    since: Option<Seq>,
) -> (Writer, mpsc::Receiver<Ctrl>, tokio::task::JoinHandle<()>) {
    let (mut read, write) = ws.split(|stream| {
        let (r, w) = tokio::io::split(stream);
        // A burst of frames goes out in one write, flushed when the queue
        // runs dry; an idle socket holds no write buffer.
        (r, BurstWriter::new(w))
    });
    // Fragments are reassembled (and capped) by the reader itself.
    read.set_max_message_size(app.config.max_frame_bytes);
    let (ctrl_tx, ctrl_rx) = mpsc::channel(64);
    if let Some(since) = since {
        // The channel is new and empty: this cannot fail.
        let _ = ctrl_tx.try_send(Ctrl::Sync(since));
    }
    let reader = tokio::spawn(read_loop(app.clone(), read, ctrl_tx, handle.clone()));
    (write, ctrl_rx, reader)
}

type Reader = fastwebsockets::WebSocketRead<ReadHalf<Upgraded>>;

async fn read_loop(
    app: Arc<App>,
    mut read: Reader,
    ctrl: mpsc::Sender<Ctrl>,
    handle: Arc<SocketHandle>,
) {
    let max = app.config.max_frame_bytes;
    // Control frames the protocol owes the peer go through the writer.
    let owed = ctrl.clone();
    let mut send_owed = move |frame: Frame<'_>| {
        let owed = owed.clone();
        let message = Ctrl::Control(frame.opcode, frame.payload.to_vec());
        async move { owed.send(message).await.map_err(|_| "writer gone") }
    };
    // A fragmented message being reassembled: (opcode, bytes so far).
    let mut partial: Option<(OpCode, Vec<u8>)> = None;
    loop {
        let frame = match read.read_frame(&mut send_owed).await {
            Ok(frame) => frame,
            Err(WebSocketError::FrameTooLarge) => {
                let _ = ctrl.send(Ctrl::Close(1009)).await;
                return;
            }
            Err(e) => {
                tracing::debug!("read ended: {e}");
                return;
            }
        };
        let message = match frame.opcode {
            OpCode::Text | OpCode::Binary if frame.fin => frame.payload.to_vec(),
            OpCode::Text | OpCode::Binary => {
                partial = Some((frame.opcode, frame.payload.to_vec()));
                continue;
            }
            OpCode::Continuation => {
                let Some((_, bytes)) = partial.as_mut() else {
                    let _ = ctrl.send(Ctrl::Close(1002)).await;
                    return;
                };
                bytes.extend_from_slice(&frame.payload);
                if bytes.len() >= max {
                    let _ = ctrl.send(Ctrl::Close(1009)).await;
                    return;
                }
                if !frame.fin {
                    continue;
                }
                match partial.take() {
                    Some((_, bytes)) => bytes,
                    None => continue,
                }
            }
            OpCode::Close => return,
            OpCode::Ping | OpCode::Pong => continue,
        };
        let next = match Box::pin(handle_message(&app, &handle, &ctrl, &message)).await {
            Handled::Reply(None) => continue,
            Handled::Reply(Some(reply)) => Ctrl::Text(reply.to_string()),
            Handled::Command {
                command,
                is_send,
                client_id,
            } => {
                // Queued, not awaited: the next frame is read at once, and a
                // burst from one socket shares group commits. The writer
                // answers the outcomes in order.
                Ctrl::Pending(InFlight {
                    outcome: Box::pin(app.begin(command)).await,
                    is_send,
                    client_id: client_id.map(Box::new),
                })
            }
        };
        if ctrl.send(next).await.is_err() {
            return;
        }
    }
}

/// A command of this socket whose outcome is still to come.
struct InFlight {
    outcome: Pending,
    is_send: bool,
    client_id: Option<Box<Value>>,
}

/// The frame that answers a command, if any: nothing on success (the event
/// arrives through the hub), the original message for an idempotent retry,
/// an error frame for a rejection or an outage.
fn answer(
    app: &App,
    user_id: UserId,
    in_flight: &InFlight,
    outcome: Result<Result<Applied, Rejection>, ApiError>,
) -> Option<String> {
    let client_id = in_flight.client_id.as_deref();
    let frame = match outcome {
        Ok(Ok(applied)) => match applied.reply {
            Reply::Message {
                message_id,
                created: false,
            } if in_flight.is_send => {
                let state = app.store.state();
                let message = state.message(message_id)?;
                return render::message_new_text(&state, message, Some(user_id));
            }
            _ => return None,
        },
        Ok(Err(rejection)) => rejection_frame(&rejection, client_id),
        Err(e) => {
            tracing::warn!("sequencer unavailable: {e:?}");
            error_frame(
                "unavailable",
                "the message log is unavailable; retry with the same client_id",
                client_id,
            )
        }
    };
    Some(frame.to_string())
}

fn error_frame(code: &str, detail: &str, client_id: Option<&Value>) -> Value {
    let mut frame = json!({"type": "error", "code": code, "detail": detail});
    if let Some(client_id) = client_id.filter(|c| !c.is_null()) {
        frame["client_id"] = client_id.clone();
    }
    frame
}

fn rejection_frame(rejection: &Rejection, client_id: Option<&Value>) -> Value {
    let code = match rejection {
        Rejection::NotAMember | Rejection::NotAnAdmin | Rejection::NotYourMessage => "forbidden",
        Rejection::UnknownMessage | Rejection::UnknownConversation | Rejection::UnknownUser => {
            "not_found"
        }
        _ => "invalid",
    };
    error_frame(code, &rejection.to_string(), client_id)
}

fn message_id_field(frame: &Value) -> Option<u64> {
    frame.get("message_id").and_then(|v| match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    })
}

/// What one inbound message asks for.
enum Handled {
    /// Done already; maybe a frame for this socket only.
    Reply(Option<Value>),
    /// A command for the sequencer.
    Command {
        command: Command,
        is_send: bool,
        client_id: Option<Value>,
    },
}

/// Parses and validates one inbound message. Frames take effect in arrival
/// order, as the original's did.
async fn handle_message(
    app: &App,
    handle: &SocketHandle,
    ctrl: &mpsc::Sender<Ctrl>,
    bytes: &[u8],
) -> Handled {
    let Ok(frame) = serde_json::from_slice::<Value>(bytes) else {
        return reply(error_frame("bad_json", "frame is not valid JSON", None));
    };
    let Some(kind) = frame.get("type").and_then(Value::as_str) else {
        return reply(error_frame("unknown_type", "frame has no \"type\"", None));
    };
    let (user_id, conv_id) = (handle.user_id, handle.conv_id);
    let client_id = frame.get("client_id");
    let at = now_micros();
    let command = match kind {
        "ping" => return reply(json!({"type": "pong"})),
        "sync" => {
            let Some(since) = frame.get("since").and_then(Value::as_u64) else {
                return reply(error_frame(
                    "invalid",
                    "sync needs an integer \"since\"",
                    None,
                ));
            };
            let _ = ctrl.send(Ctrl::Sync(since)).await;
            return Handled::Reply(None);
        }
        "typing" => {
            let is_typing = frame
                .get("is_typing")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            let username = {
                let state = app.store.state();
                if !state.is_member(conv_id, user_id) {
                    return reply(error_frame(
                        "forbidden",
                        "not a member of this conversation",
                        None,
                    ));
                }
                state
                    .user(user_id)
                    .map(|u| u.username.clone())
                    .unwrap_or_default()
            };
            let signal = json!({"type": "typing", "user_id": user_id, "username": username, "is_typing": is_typing});
            app.signal(conv_id, user_id, signal).await;
            return Handled::Reply(None);
        }
        "message.send" => {
            let content = match frame.get("content") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(_) => {
                    return reply(error_frame(
                        "invalid",
                        "content must be a string",
                        client_id,
                    ))
                }
            };
            if content.chars().count() > app.config.max_message_chars {
                return reply(error_frame("invalid", "content is too long", client_id));
            }
            let message_type = frame
                .get("message_type")
                .and_then(Value::as_str)
                .unwrap_or("text")
                .to_string();
            let client_key = match client_id {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if !s.is_empty() && s.len() <= 64 => Some(s.clone()),
                Some(_) => {
                    return reply(error_frame(
                        "invalid",
                        "client_id must be a string of 1 to 64 characters",
                        client_id,
                    ))
                }
            };
            let reply_to = match frame.get("reply_to") {
                None | Some(Value::Null) => None,
                Some(v) => match v.as_u64() {
                    Some(id) => Some(id),
                    None => {
                        return reply(error_frame(
                            "invalid",
                            "reply_to must be a message id",
                            client_id,
                        ))
                    }
                },
            };
            Command::PostMessage {
                sender: user_id,
                conv_id,
                content,
                message_type,
                reply_to,
                forwarded_from: None,
                client_id: client_key,
                at,
            }
        }
        "message.read" | "message.edit" | "message.delete" => {
            let Some(message_id) = message_id_field(&frame) else {
                return reply(error_frame(
                    "invalid",
                    "message_id must be a message id",
                    None,
                ));
            };
            match kind {
                "message.read" => Command::MarkRead {
                    by: user_id,
                    conv_id,
                    message_id,
                    at,
                },
                "message.delete" => Command::DeleteMessage {
                    by: user_id,
                    conv_id,
                    message_id,
                    at,
                },
                _ => {
                    let Some(content) = frame.get("content").and_then(Value::as_str) else {
                        return reply(error_frame("invalid", "content required", None));
                    };
                    if content.chars().count() > app.config.max_message_chars {
                        return reply(error_frame("invalid", "content is too long", None));
                    }
                    Command::EditMessage {
                        by: user_id,
                        conv_id,
                        message_id,
                        content: content.to_string(),
                        at,
                    }
                }
            }
        }
        other => {
            return reply(error_frame(
                "unknown_type",
                &format!("unknown frame type {other:?}"),
                None,
            ));
        }
    };
    Handled::Command {
        command,
        is_send: kind == "message.send",
        client_id: client_id.cloned(),
    }
}

fn reply(frame: Value) -> Handled {
    Handled::Reply(Some(frame))
}

async fn write_loop(
    app: &App,
    mut write: Writer,
    mut queue: mpsc::Receiver<Out>,
    mut ctrl: mpsc::Receiver<Ctrl>,
    handle: &SocketHandle,
    live_seq: Seq,
) {
    // Highest seq this socket has been sent (or was current when it
    // joined); events at or below it are never sent twice.
    let mut cursor = live_seq;
    // This socket's commands whose outcomes are still to come, oldest
    // first; outcomes arrive in that order.
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    let mut closing = handle.closing();
    loop {
        let step = tokio::select! {
            biased;
            code = closed(&mut closing) => {
                Box::pin(close(&mut write, code)).await;
                return;
            }
            c = ctrl.recv(), if in_flight.len() < IN_FLIGHT => match c {
                None => Step::Stop,
                Some(c) => Step::Ctrl(c),
            },
            outcome = next_outcome(&mut in_flight), if !in_flight.is_empty() => {
                Step::Answer(outcome)
            }
            o = queue.recv() => match o {
                None => Step::Stop,
                Some(o) => Step::Out(o),
            },
        };
        // A peer that stops reading blocks our writes; past WRITE_TIMEOUT
        // the connection is dropped (the write may be cut mid-frame, which
        // is fine for a connection that is going away). A socket told to
        // close while blocked gets a short grace instead.
        // Boxed, as are the reader's steps: an idle socket's tasks then
        // hold only their waits, not the largest step's state.
        let mut work = Box::pin(perform(
            app,
            &mut write,
            &mut queue,
            &mut in_flight,
            handle,
            step,
            &mut cursor,
        ));
        let done = tokio::select! {
            done = tokio::time::timeout(WRITE_TIMEOUT, &mut work) => done,
            _ = closed(&mut closing) => tokio::time::timeout(CLOSE_GRACE, &mut work).await,
        };
        match done {
            Ok(Ok(true)) => {}
            _ => return,
        }
    }
}

/// The outcome of the oldest command in flight. Cancel-safe: the command
/// stays queued until its outcome has been taken.
fn next_outcome(
    in_flight: &mut VecDeque<InFlight>,
) -> impl Future<Output = Result<Result<Applied, Rejection>, ApiError>> + '_ {
    std::future::poll_fn(move |cx| match in_flight.front_mut() {
        Some(oldest) => oldest.outcome.as_mut().poll(cx),
        None => std::task::Poll::Pending,
    })
}

/// Does one step of the writer, then drains what is already queued and
/// flushes once. Returns false when the socket is done.
async fn perform(
    app: &App,
    write: &mut Writer,
    queue: &mut mpsc::Receiver<Out>,
    in_flight: &mut VecDeque<InFlight>,
    handle: &SocketHandle,
    step: Step,
    cursor: &mut Seq,
) -> Result<bool, WebSocketError> {
    let user = handle.user_id;
    match step {
        Step::Stop => return Ok(false),
        Step::Ctrl(Ctrl::Close(code)) => {
            close(write, code).await;
            return Ok(false);
        }
        Step::Ctrl(Ctrl::Control(opcode, payload)) => {
            write
                .write_frame(Frame::new(true, opcode, None, Payload::Owned(payload)))
                .await?;
            if opcode == OpCode::Close {
                write.flush().await?;
                return Ok(false);
            }
        }
        Step::Ctrl(Ctrl::Text(text)) => write_text(write, &text).await?,
        Step::Ctrl(Ctrl::Sync(since)) => {
            replay(app, write, handle.conv_id, user, since, *cursor).await?
        }
        Step::Ctrl(Ctrl::Pending(command)) => in_flight.push_back(command),
        Step::Answer(outcome) => {
            if let Some(command) = in_flight.pop_front() {
                if let Some(frame) = answer(app, user, &command, outcome) {
                    write_text(write, &frame).await?;
                }
            }
        }
        Step::Out(out) => write_out(write, out, user, cursor).await?,
    }
    // Drain what is already queued before paying for a flush.
    for _ in 0..256 {
        let Ok(out) = queue.try_recv() else { break };
        write_out(write, out, user, cursor).await?;
    }
    write.flush().await?;
    Ok(true)
}

enum Step {
    Stop,
    Ctrl(Ctrl),
    Answer(Result<Result<Applied, Rejection>, ApiError>),
    Out(Out),
}

async fn write_text(write: &mut Writer, text: &str) -> Result<(), WebSocketError> {
    write
        .write_frame(Frame::text(Payload::Borrowed(text.as_bytes())))
        .await
}

async fn write_out(
    write: &mut Writer,
    out: Out,
    user: UserId,
    cursor: &mut Seq,
) -> Result<(), WebSocketError> {
    match out {
        Out::Events(events) => {
            for event in events.iter() {
                if event.seq > *cursor {
                    *cursor = event.seq;
                    write_text(write, event.text_for(user)).await?;
                }
            }
            Ok(())
        }
        Out::Ephemeral(text) => write_text(write, &text).await,
    }
}

/// Sends the log's events with seq in (since, upto], then `sync.done`.
/// Everything after `upto` is (or will be) in the socket's queue.
async fn replay(
    app: &App,
    write: &mut Writer,
    conv_id: ConvId,
    user: UserId,
    since: Seq,
    upto: Seq,
) -> Result<(), WebSocketError> {
    let mut after = since;
    while after < upto {
        let chunk = match app.store.conv_after(conv_id, after, REPLAY_CHUNK) {
            Ok(chunk) => chunk,
            Err(e) => {
                tracing::error!("replay read failed: {e}");
                let frame = error_frame("unavailable", "replay failed; reconnect with since", None);
                write_text(write, &frame.to_string()).await?;
                return Ok(());
            }
        };
        if chunk.is_empty() {
            break;
        }
        let texts: Vec<String> = {
            let state = app.store.state();
            chunk
                .iter()
                .filter(|e| e.event.conv_seq().is_some_and(|(_, seq)| seq <= upto))
                .filter_map(|e| render::event_text(&state, e, Some(user)))
                .collect()
        };
        for text in &texts {
            write_text(write, text).await?;
        }
        after = chunk
            .last()
            .and_then(|e| e.event.conv_seq())
            .map_or(upto, |(_, seq)| seq);
        write.flush().await?;
        tokio::task::yield_now().await;
    }
    let done = json!({"type": "sync.done", "seq": upto});
    write_text(write, &done.to_string()).await
}

async fn close(write: &mut Writer, code: u16) {
    let code = if code == 0 { 1000 } else { code };
    // The peer may not be reading (that is why we close with 4408): never
    // wait on it for long.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = write.write_frame(Frame::close(code, b"")).await;
        let _ = write.flush().await;
    })
    .await;
}
