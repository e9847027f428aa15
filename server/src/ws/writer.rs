//! A socket's writer: the connection's own task, and the only one that
//! writes. It sends event frames from the hub, replies and control frames
//! from the reader, the answers to the reader's commands in the order they
//! were sent, and replays for `since`. A burst of frames goes out in one
//! write (see [`crate::burst`]), flushed when the queue runs dry.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fastwebsockets::{Frame, OpCode, Payload, WebSocketError};
use hyper_util::rt::TokioIo;
use serde_json::json;
use serde_json::Value;
use tokio::io::WriteHalf;
use tokio::sync::mpsc;
use vato_eventlog::{Reply, Seq, UserId};

use super::frames;
use crate::app::App;
use crate::burst::BurstWriter;
use crate::hub::{closed, Out, SocketHandle};
use crate::render;
use crate::sequencer::{Outcome, Pending, Unavailable};

/// The upgraded connection under a socket.
pub(super) type Upgraded = TokioIo<hyper::upgrade::Upgraded>;
/// A socket's write half, behind its burst buffer.
pub(super) type Writer = fastwebsockets::WebSocketWrite<BurstWriter<WriteHalf<Upgraded>>>;

/// Longest a write to a peer may make no progress before the socket is
/// closed with 4408, as if its queue had overflowed (a replay fills no
/// queue: this is what closes a replay that is not read; a replay counts
/// progress per chunk).
const WRITE_STALL: Duration = Duration::from_secs(10);
/// Commands one socket may have in flight before its reader waits.
const IN_FLIGHT: usize = 256;
/// How long a socket told to close may take to finish the frame it is
/// writing, and then its close frame. A peer that reads nothing for that
/// long is dropped; until then no frame is ever cut in the middle.
const CLOSE_GRACE: Duration = Duration::from_secs(10);
/// Events replayed per log read (at most the queue bound): a replay is
/// never more than this many rendered frames ahead of what the
/// connection has taken.
const REPLAY_CHUNK: usize = 128;

pub(super) async fn write_loop(
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
                // What is still queued is never sent: free it now.
                queue.close();
                while queue.try_recv().is_ok() {}
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
        // A peer that stops reading blocks our writes. Past WRITE_STALL
        // the socket is closed with 4408, exactly as when its queue
        // overflows. Once told to close, the step stops after the frame
        // it is writing (`perform` checks between frames) and gets
        // CLOSE_GRACE to finish it; only a peer that reads nothing for
        // that long is dropped, possibly mid-frame. Dropping `work`
        // earlier would cut a frame.
        // Boxed, as are the reader's steps: an idle socket's tasks then
        // hold only their waits, not the largest step's state.
        let progress = AtomicU64::new(0);
        let mut work = Box::pin(perform(
            app,
            &mut write,
            &mut queue,
            &mut in_flight,
            handle,
            step,
            &mut cursor,
            &progress,
        ));
        // A long replay that keeps being read is not a stall: the clock
        // restarts whenever it makes progress.
        let started = tokio::time::Instant::now();
        let mut tick = tokio::time::interval_at(started + WRITE_STALL / 10, WRITE_STALL / 10);
        let (mut seen, mut stalled_since) = (0, started);
        let done = loop {
            tokio::select! {
                done = &mut work => break Some(done),
                _ = closed(&mut closing) => break None,
                _ = tick.tick() => {
                    let now = progress.load(Ordering::Relaxed);
                    if now != seen {
                        (seen, stalled_since) = (now, tokio::time::Instant::now());
                    } else if stalled_since.elapsed() >= WRITE_STALL {
                        break None;
                    }
                }
            }
        };
        let done = match done {
            Some(done) => done,
            None => {
                handle.close(4408);
                match tokio::time::timeout(CLOSE_GRACE, &mut work).await {
                    Ok(done) => done,
                    Err(_) => {
                        tracing::debug!("peer read nothing for {CLOSE_GRACE:?} after close");
                        return;
                    }
                }
            }
        };
        match done {
            Ok(true) => {}
            _ => return,
        }
    }
}

/// The outcome of the oldest command in flight. Cancel-safe: the command
/// stays queued until its outcome has been taken.
fn next_outcome(
    in_flight: &mut VecDeque<InFlight>,
) -> impl Future<Output = Result<Outcome, Unavailable>> + '_ {
    std::future::poll_fn(move |cx| match in_flight.front_mut() {
        Some(oldest) => oldest.outcome.as_mut().poll(cx),
        None => std::task::Poll::Pending,
    })
}

/// Does one step of the writer, then drains what is already queued and
/// flushes once. Returns false when the socket is done.
#[allow(clippy::too_many_arguments)] // the writer loop's own state, borrowed per step
async fn perform(
    app: &App,
    write: &mut Writer,
    queue: &mut mpsc::Receiver<Out>,
    in_flight: &mut VecDeque<InFlight>,
    handle: &SocketHandle,
    step: Step,
    cursor: &mut Seq,
    progress: &AtomicU64,
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
            let replayed = replay(app, write, handle, since, *cursor, progress).await;
            handle.replaying.store(false, Ordering::Release);
            replayed?
        }
        Step::Ctrl(Ctrl::Pending(command)) => in_flight.push_back(command),
        Step::Answer(outcome) => {
            if let Some(command) = in_flight.pop_front() {
                if let Some(frame) = answer(app, user, &command, outcome) {
                    write_text(write, &frame).await?;
                }
            }
        }
        Step::Out(out) => {
            if !write_out(write, out, user, cursor).await? {
                return Ok(false);
            }
        }
    }
    // Drain what is already queued before paying for a flush; a socket
    // told to close sends nothing more but its close frame.
    for _ in 0..256 {
        if handle.is_closing() {
            break;
        }
        let Ok(out) = queue.try_recv() else { break };
        if !write_out(write, out, user, cursor).await? {
            return Ok(false);
        }
    }
    write.flush().await?;
    Ok(true)
}

enum Step {
    Stop,
    Ctrl(Ctrl),
    Answer(Result<Outcome, Unavailable>),
    Out(Out),
}

async fn write_text(write: &mut Writer, text: &str) -> Result<(), WebSocketError> {
    crate::telemetry::hot().frame_out(text);
    write
        .write_frame(Frame::text(Payload::Borrowed(text.as_bytes())))
        .await
}

/// Writes one queued item; false when it closed the socket.
async fn write_out(
    write: &mut Writer,
    out: Out,
    user: UserId,
    cursor: &mut Seq,
) -> Result<bool, WebSocketError> {
    match out {
        Out::Events(events) => {
            for event in events.iter() {
                if event.seq > *cursor {
                    *cursor = event.seq;
                    write_text(write, event.text_for(user)).await?;
                }
            }
        }
        Out::Ephemeral(text) => write_text(write, &text).await?,
        // Only the probe's own subscriber is sent these.
        Out::Probe { .. } => {}
        Out::Close(code) => {
            write.flush().await?;
            close(write, code).await;
            return Ok(false);
        }
    }
    Ok(true)
}

/// Sends the log's events with seq in (since, upto], then `sync.done`.
/// Everything after `upto` is (or will be) in the socket's queue. Paced by
/// the connection: a chunk is read from the log only once the previous
/// one has been written; a socket told to close stops at once.
async fn replay(
    app: &App,
    write: &mut Writer,
    handle: &SocketHandle,
    since: Seq,
    upto: Seq,
    progress: &AtomicU64,
) -> Result<(), WebSocketError> {
    let (conv_id, user) = (handle.conv_id, handle.user_id);
    let chunk_len = REPLAY_CHUNK.min(app.config.outbound_queue).max(1);
    let mut after = since;
    while after < upto {
        if handle.is_closing() {
            return Ok(());
        }
        let chunk = match app.store.conv_after(conv_id, after, chunk_len) {
            Ok(chunk) => chunk,
            Err(e) => {
                tracing::error!("replay read failed: {e}");
                let frame =
                    frames::error("unavailable", "replay failed; reconnect with since", None);
                write_text(write, &frame).await?;
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
            if handle.is_closing() {
                return Ok(());
            }
            write_text(write, text).await?;
        }
        after = chunk
            .last()
            .and_then(|e| e.event.conv_seq())
            .map_or(upto, |(_, seq)| seq);
        write.flush().await?;
        progress.fetch_add(1, Ordering::Relaxed);
        tokio::task::yield_now().await;
    }
    let done = json!({"type": "sync.done", "seq": upto});
    write_text(write, &done.to_string()).await
}

async fn close(write: &mut Writer, code: u16) {
    let code = if code == 0 { 1000 } else { code };
    crate::telemetry::socket_closed(code);
    // The peer may not be reading (that is why we close with 4408): wait
    // on it for CLOSE_GRACE at most, then drop the connection.
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        let _ = write.write_frame(Frame::close(code, b"")).await;
        let _ = write.flush().await;
    })
    .await;
}

/// The frame that answers a command, if any: nothing on success (the event
/// arrives through the hub), the original message for an idempotent retry,
/// an error frame for a rejection or an outage.
fn answer(
    app: &App,
    user_id: UserId,
    in_flight: &InFlight,
    outcome: Result<Outcome, Unavailable>,
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
                return render::message_new_text(&state, &message, Some(user_id));
            }
            _ => return None,
        },
        Ok(Err(rejection)) => frames::rejection(&rejection, client_id),
        Err(e) => {
            tracing::warn!("sequencer unavailable: {e}");
            frames::error(
                "unavailable",
                "the message log is unavailable; retry with the same client_id",
                client_id,
            )
        }
    };
    Some(frame)
}

/// What the reader asks the writer to do.
pub(super) enum Ctrl {
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

/// A command of this socket whose outcome is still to come.
pub(super) struct InFlight {
    /// Resolves to the command's outcome.
    pub(super) outcome: Pending,
    pub(super) is_send: bool,
    pub(super) client_id: Option<Box<Value>>,
}
