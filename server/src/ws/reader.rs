//! A socket's reader: reads frames (reassembling fragments, capping their
//! size), parses each with [`frames::parse`], and hands the writer what to
//! do: a reply, a replay, or a command begun with the sequencer. Commands
//! are charged to the user's rate limits first; typing is coalesced.
//!
//! `fastwebsockets`' `read_frame` is not cancel-safe, so this is a
//! dedicated task that is never put in a `select!`; it is aborted only when
//! the socket is being torn down anyway.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use fastwebsockets::{Frame, OpCode, WebSocketError};
use serde_json::json;
use tokio::sync::mpsc;
use vato_eventlog::Command;

use super::frames::{self, Inbound, Refused};
use super::writer::{Ctrl, InFlight, Upgraded};
use crate::app::App;
use crate::clock::now_micros;
use crate::hub::SocketHandle;
use crate::intake;

/// A socket's read half.
pub(super) type Reader = fastwebsockets::WebSocketRead<tokio::io::ReadHalf<Upgraded>>;

pub(super) async fn read_loop(
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
        // Boxed: an idle socket's task then holds only its wait, not the
        // largest step's state.
        let Some(next) = Box::pin(act_on(&app, &handle, &message)).await else {
            continue;
        };
        if ctrl.send(next).await.is_err() {
            return;
        }
    }
}

/// Does what one inbound message asks; returns what the writer must do, if
/// anything. Frames take effect in arrival order, as the original's did.
async fn act_on(app: &App, handle: &SocketHandle, bytes: &[u8]) -> Option<Ctrl> {
    let cx = intake::Context {
        user_id: handle.user_id,
        conv_id: handle.conv_id,
        at: now_micros(),
        max_message_chars: app.config.max_message_chars,
    };
    let hot = crate::telemetry::hot();
    let inbound = match frames::parse(bytes, cx) {
        Ok(inbound) => inbound,
        Err(Refused(frame)) => {
            hot.frame_in("refused");
            return Some(Ctrl::Text(frame));
        }
    };
    match &inbound {
        Inbound::Ping => hot.frame_in("ping"),
        Inbound::Sync { .. } => hot.frame_in("sync"),
        Inbound::Typing { .. } => hot.frame_in("typing"),
        Inbound::Command { command, .. } => hot.command_in(command),
        Inbound::Signal { kind, .. } => hot.frame_in(kind),
    }
    let (command, client_id) = match inbound {
        Inbound::Ping => return Some(Ctrl::Text(frames::pong())),
        // One replay at a time per socket: the writer clears the flag
        // once its `sync.done` is written.
        Inbound::Sync { .. } if handle.replaying.swap(true, Ordering::AcqRel) => {
            return Some(Ctrl::Text(frames::busy()))
        }
        Inbound::Sync { since } => return Some(Ctrl::Sync(since)),
        Inbound::Typing { is_typing } => return signal_typing(app, handle, is_typing).await,
        Inbound::Signal {
            kind,
            call_id,
            payload,
        } => return relay_webrtc(app, handle, kind, call_id, payload).await,
        Inbound::Command { command, client_id } => (command, client_id),
    };
    // Over the user's rates: refused here, before the sequencer, so
    // nothing is stored.
    if let Err(limited) = app.limits.admit(&command) {
        return Some(Ctrl::Text(frames::rate_limited(
            &limited,
            client_id.as_ref(),
        )));
    }
    let is_send = matches!(command, Command::PostMessage { .. });
    // Queued, not awaited: the next frame is read at once, and a burst from
    // one socket shares group commits. The writer answers the outcomes in
    // order.
    Some(Ctrl::Pending(InFlight {
        outcome: Box::pin(app.sequencer.begin(command)).await,
        is_send,
        client_id: client_id.map(Box::new),
    }))
}

/// Relays a WebRTC signalling frame to the other participants of an
/// ongoing call of this conversation, on every node, in the order this
/// socket sent them (the original sent it to the whole conversation,
/// whoever asked). Never stored; the sender never gets it back.
async fn relay_webrtc(
    app: &App,
    handle: &SocketHandle,
    kind: &'static str,
    call_id: u64,
    payload: serde_json::Value,
) -> Option<Ctrl> {
    let (user_id, conv_id) = (handle.user_id, handle.conv_id);
    let hidden_from = {
        let state = app.store.state();
        let Some(call) = state.call(call_id).filter(|c| c.conv_id == conv_id) else {
            let detail = "No Call matches the given query.";
            return Some(Ctrl::Text(frames::error("not_found", detail, None)));
        };
        if call.participant(user_id).is_none() {
            let detail = "You are not a participant of this call.";
            return Some(Ctrl::Text(frames::error("forbidden", detail, None)));
        }
        if !call.is_ongoing() {
            let detail = "This call is over.";
            return Some(Ctrl::Text(frames::error("invalid", detail, None)));
        }
        state
            .conversation(conv_id)
            .map(|c| {
                c.members
                    .keys()
                    .filter(|m| call.participant(**m).is_none())
                    .copied()
                    .collect()
            })
            .unwrap_or_default()
    };
    let key = match kind {
        "webrtc.offer" => "offer",
        "webrtc.answer" => "answer",
        _ => "candidate",
    };
    let signal = json!({"type": kind, "call_id": call_id, key: payload, "sender_id": user_id});
    app.sequencer
        .signal(conv_id, user_id, hidden_from, signal)
        .await;
    None
}

/// Tells the conversation's other sockets, on every node, that this user
/// is typing; never stored. Nothing is sent for a user whose
/// `show_typing_indicator` is off, and nothing to the users they block.
async fn signal_typing(app: &App, handle: &SocketHandle, is_typing: bool) -> Option<Ctrl> {
    let (user_id, conv_id) = (handle.user_id, handle.conv_id);
    let (username, hidden_from) = {
        let state = app.store.state();
        if !state.is_member(conv_id, user_id) {
            let detail = "not a member of this conversation";
            return Some(Ctrl::Text(frames::error("forbidden", detail, None)));
        }
        match state.user(user_id) {
            // `show_typing_indicator` off: nobody is told, and the
            // sender gets no error (their client may not know).
            Some(user) if !user.shows_typing() => return None,
            Some(user) => (user.username.clone(), state.blocked_by(user_id).collect()),
            None => (String::new(), Vec::new()),
        }
    };
    // Coalesced per sender and conversation: a flood of typing frames
    // reaches the others as a few per second.
    if !app.limits.typing_passes(user_id, conv_id, is_typing) {
        return None;
    }
    let signal =
        json!({"type": "typing", "user_id": user_id, "username": username, "is_typing": is_typing});
    app.sequencer
        .signal(conv_id, user_id, hidden_from, signal)
        .await;
    None
}
