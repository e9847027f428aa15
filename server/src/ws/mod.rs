//! The WebSocket endpoint: the handshake's checks, then two tasks per
//! socket, a reader and a writer.
//!
//! Read in this order: this file (handshake, then [`serve`], which splits
//! the socket), [`frames`] (the pure parser of inbound frames and the error
//! frames), [`reader`], [`writer`] (burst writes, answers in order, and
//! replay). Two tasks, two channels and no write buffer while idle keep a
//! socket small.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use fastwebsockets::upgrade;
use serde_json::json;
use tokio::sync::mpsc;
use tracing::Instrument;
use vato_eventlog::{ConvId, Seq};

use crate::app::App;
use crate::auth::TokenType;
use crate::burst::BurstWriter;
use crate::hub::{Out, SocketHandle};

pub mod frames;
mod reader;
mod writer;

use writer::{Ctrl, Upgraded, Writer};

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
    // Held by the socket's task until it ends, however it ends.
    let Ok(permit) = app.connections.clone().try_acquire_owned() else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "Too many connections.");
    };
    // Likewise held for the socket's life: one user cannot hold every
    // connection (`--max-sockets-per-user`).
    let Some(slot) = app.limits.socket_slot(user_id) else {
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many open sockets for this user.",
        );
    };
    let (response, upgrade) = match upgrade::upgrade(&mut request) {
        Ok(pair) => pair,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, &e.to_string()),
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
            Ok(ws) => {
                // Presence counts sockets that were really opened.
                task_app.presence.opened(user_id);
                serve(task_app.clone(), ws, handle.clone(), queue, live_seq, since).await;
                task_app.presence.closed(user_id);
            }
            Err(e) => tracing::debug!("upgrade failed: {e}"),
        }
        task_app.hub.unregister(&handle);
        drop((permit, slot));
    }
    .instrument(span);
    tokio::spawn(crate::render::scope_media_base(app.hub.media_base(), task));
    let (parts, _) = response.into_parts();
    Response::from_parts(parts, Body::empty())
}

/// Serves an upgraded socket until it closes.
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
    writer::write_loop(&app, write, queue, ctrl, &handle, live_seq).await;
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
        handle.replaying.store(true, Ordering::Release);
        let _ = ctrl_tx.try_send(Ctrl::Sync(since));
    }
    let reader = tokio::spawn(reader::read_loop(
        app.clone(),
        read,
        ctrl_tx,
        handle.clone(),
    ));
    (write, ctrl_rx, reader)
}
