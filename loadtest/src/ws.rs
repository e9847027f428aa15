//! WebSocket side: connecting, and the reader task that turns received frames into
//! delivery records for the goose user's next transaction.

use crate::tracker::{self, Seen, Tracker};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use vato_client::frames::{self, Kind};
use vato_client::socket::{self, Event};

pub use vato_client::socket::{ping, Stream as WsStream};

/// A timing for goose, made off the goose user's task.
#[derive(Debug)]
pub struct Record {
    pub name: &'static str,
    pub dur: Duration,
    pub ok: bool,
    pub status: Option<u16>,
    pub err: Option<String>,
}

impl Record {
    fn ok(name: &'static str, dur: Duration) -> Self {
        Record {
            name,
            dur,
            ok: true,
            status: None,
            err: None,
        }
    }
    fn fail(name: &'static str, dur: Duration, err: impl Into<String>) -> Self {
        Record {
            name,
            dur,
            ok: false,
            status: None,
            err: Some(err.into()),
        }
    }
}

pub use vato_client::socket::ws_base;

/// The conversation socket's URL with this token.
pub fn conv_url(base: &str, conv: i64, token: &str) -> String {
    let conv = u64::try_from(conv).unwrap_or_default();
    socket::url(base, socket::CONVERSATIONS, conv, Some(token), None)
}

#[derive(Debug)]
pub struct ConnectError {
    pub status: Option<u16>,
    pub detail: String,
}

/// Opens a socket (Nagle off); returns it and the handshake time.
pub async fn connect(url: &str) -> Result<(WsStream, Duration), (ConnectError, Duration)> {
    let started = Instant::now();
    let opened = socket::open(url, Duration::from_secs(30)).await;
    let took = started.elapsed();
    match opened {
        Ok(stream) => Ok((stream, took)),
        Err(err) => {
            let status = err.status();
            let detail = match err {
                socket::ConnectError::Refused { status, text, .. } => {
                    format!("handshake refused: HTTP {status} {text}")
                }
                socket::ConnectError::Failed(reason) => format!("connect failed: {reason}"),
            };
            Err((ConnectError { status, detail }, took))
        }
    }
}

/// A connected chat socket: the write half, and a reader task feeding `records`.
pub struct Chat {
    pub sink: SplitSink<WsStream, Message>,
    pub records: UnboundedReceiver<Record>,
    pub reader: JoinHandle<()>,
    /// Set before closing on purpose, so the reader does not report the close.
    pub closing: Arc<AtomicBool>,
    /// Cleared by the reader when the socket ends.
    pub alive: Arc<AtomicBool>,
}

impl Chat {
    pub fn start(stream: WsStream, my_user_id: i64, deliver_timeout: Duration) -> Chat {
        let (sink, read) = stream.split();
        let (tx, records) = unbounded_channel();
        let closing = Arc::new(AtomicBool::new(false));
        let alive = Arc::new(AtomicBool::new(true));
        let reader = tokio::spawn(read_loop(
            read,
            my_user_id,
            deliver_timeout,
            tx,
            closing.clone(),
            alive.clone(),
        ));
        Chat {
            sink,
            records,
            reader,
            closing,
            alive,
        }
    }

    /// Closes the socket on purpose and waits (briefly) for the reader to end.
    pub async fn close(&mut self) {
        self.closing.store(true, Relaxed);
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = socket::close_normal(&mut self.sink).await;
        })
        .await;
        if tokio::time::timeout(Duration::from_secs(2), &mut self.reader)
            .await
            .is_err()
        {
            self.reader.abort();
        }
    }
}

/// One socket's reader: checks each `message.new` against the seq order of the
/// conversation and the tracker, and sends what goose should record.
async fn read_loop(
    mut read: SplitStream<WsStream>,
    me: i64,
    timeout: Duration,
    tx: UnboundedSender<Record>,
    closing: Arc<AtomicBool>,
    alive: Arc<AtomicBool>,
) {
    let tracker = tracker::get();
    let mut seen = SocketSeen {
        tracker,
        tx: &tx,
        me,
        timeout,
        last_seq: None,
    };
    let mut end: Option<String> = None;
    loop {
        let text = match socket::next_event(&mut read).await {
            Event::Text(t) => t,
            Event::Closed(cf) => {
                if !closing.load(Relaxed) {
                    end = Some(match cf {
                        Some(cf) => format!("closed by server: {} {}", cf.code, cf.reason),
                        None => "closed by server".into(),
                    });
                }
                break;
            }
            Event::Error(e) => {
                if !closing.load(Relaxed) {
                    end = Some(format!("socket error: {e}"));
                }
                break;
            }
            Event::End => break,
        };
        // Nearly every frame is a `message.new`: its three fields read
        // without a `Value` tree for the rest. Anything else, or a
        // `message.new` these types do not take, goes the `Value` way.
        if let Ok(frame) = serde_json::from_str::<NewFrame>(&text) {
            if frame.kind == Kind::MessageNew.name() {
                let message = frame.data.as_ref();
                seen.message_new(
                    frame.seq,
                    message.and_then(|m| m.content.as_deref()),
                    message.and_then(|m| m.sender.as_ref()).and_then(|s| s.id),
                );
                continue;
            }
        }
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            tracker.ws_errors.fetch_add(1, Relaxed);
            let _ = tx.send(Record::fail(
                "frame",
                Duration::ZERO,
                "a frame that is not JSON",
            ));
            continue;
        };
        match Kind::of(&v) {
            Some(Kind::MessageNew) => {
                seen.message_new(frames::seq(&v), frames::content(&v), frames::sender_id(&v));
            }
            Some(Kind::Error) => {
                tracker.ws_errors.fetch_add(1, Relaxed);
                let (code, detail) = frames::error(&v).unwrap_or(("?", ""));
                let _ = tx.send(Record::fail(
                    "frame",
                    Duration::ZERO,
                    format!("error frame: {code} {detail}"),
                ));
            }
            _ => {}
        }
    }
    if end.is_none() && !closing.load(Relaxed) {
        end = Some("socket ended".into());
    }
    if let Some(why) = end {
        tracker.ws_errors.fetch_add(1, Relaxed);
        let _ = tx.send(Record::fail("closed", Duration::ZERO, why));
    }
    alive.store(false, Relaxed);
}

/// The fields of a `message.new` the reader uses, borrowed from the frame's
/// text; serde skips the rest without building it. Parsing every frame into a
/// `Value` was a third of the client's CPU at 16,000 msg/s (BENCHMARKS.md,
/// "The client's share"), on the two cores it shares with the server.
#[derive(Deserialize)]
struct NewFrame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    seq: Option<u64>,
    #[serde(borrow)]
    data: Option<NewMessage<'a>>,
}

#[derive(Deserialize)]
struct NewMessage<'a> {
    #[serde(borrow)]
    content: Option<Cow<'a, str>>,
    sender: Option<NewSender>,
}

#[derive(Deserialize)]
struct NewSender {
    id: Option<u64>,
}

/// What one socket's reader keeps between frames.
struct SocketSeen<'r> {
    tracker: &'r Tracker,
    tx: &'r UnboundedSender<Record>,
    me: i64,
    timeout: Duration,
    /// The seq of the last `message.new`, for the order check.
    last_seq: Option<u64>,
}

impl SocketSeen<'_> {
    /// One received `message.new`: checks its seq against the socket's last
    /// and its content against the tracker, and sends what goose should record.
    fn message_new(&mut self, seq: Option<u64>, content: Option<&str>, sender: Option<u64>) {
        let tracker = self.tracker;
        let in_order = match (seq, self.last_seq) {
            (Some(s), Some(l)) if s <= l => false,
            (Some(s), Some(l)) => {
                if s > l + 1 {
                    tracker.gaps.fetch_add(s - l - 1, Relaxed);
                }
                self.last_seq = Some(s);
                true
            }
            (Some(s), None) => {
                self.last_seq = Some(s);
                true
            }
            (None, _) => {
                tracker.ws_errors.fetch_add(1, Relaxed);
                let _ = self.tx.send(Record::fail(
                    "frame",
                    Duration::ZERO,
                    "message.new without seq",
                ));
                true
            }
        };
        let Some((id, intended)) = content.and_then(Tracker::parse) else {
            return;
        };
        let own = sender.and_then(|id| i64::try_from(id).ok()) == Some(self.me);
        let timeout = self.timeout;
        let rec = match tracker.on_receive(id, intended, own, in_order, timeout) {
            Seen::Delivered(d) => Record::ok("deliver", d),
            Seen::OutOfOrder(d) => Record::fail("deliver", d, "out of order"),
            Seen::Duplicate(d) => Record::fail("deliver", d, "duplicate delivery"),
            Seen::Late(d) => {
                Record::fail("deliver", d, format!("lost: delivered after {timeout:?}"))
            }
            Seen::AfterSweep => return,
            Seen::Acked(d) => Record::ok("ack", d),
            Seen::DuplicateAck(d) => Record::fail("ack", d, "duplicate echo"),
        };
        let _ = self.tx.send(rec);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `message.new` as the server renders it (the message object's 15
    /// keys, a reply inside it with a sender of its own, escapes).
    const FRAME: &str = r#"{"type":"message.new","seq":42,"client_id":"vl-7","data":{"id":41,"conversation":7,"sender":{"id":3,"username":"ana","first_name":"A\"na","avatar":null,"is_online":true},"message_type":"text","content":"vl:7:123:x\u00e9x","created_at":"2025-11-03T12:45:00.123456Z","edited_at":null,"reply_to":40,"reply_to_message":{"id":40,"sender":{"id":9},"content":"earlier","seq":1},"forwarded_from":null,"forwarded_from_message":null,"is_deleted":false,"attachments":[{"id":1,"file":"/media/a.png"}],"receipts":[{"user":{"id":5},"state":"sent","updated_at":"x"}],"reactions":[]}}"#;

    #[test]
    fn the_typed_read_agrees_with_the_value_read() {
        let v: Value = serde_json::from_str(FRAME).unwrap();
        let f: NewFrame = serde_json::from_str(FRAME).unwrap();
        assert_eq!(f.kind, Kind::MessageNew.name());
        assert_eq!(f.seq, frames::seq(&v));
        let m = f.data.as_ref().unwrap();
        assert_eq!(m.content.as_deref(), frames::content(&v));
        assert_eq!(m.content.as_deref(), Some("vl:7:123:x\u{e9}x"));
        assert_eq!(m.sender.as_ref().and_then(|s| s.id), frames::sender_id(&v));
        assert_eq!(frames::sender_id(&v), Some(3));
    }

    #[test]
    fn frames_the_types_do_not_take_fall_back_to_value() {
        // The original's `data: null`, and other kinds: read, with no content.
        let f: NewFrame = serde_json::from_str(r#"{"type":"message.new","data":null}"#).unwrap();
        assert!(f.data.is_none() && f.seq.is_none());
        let f: NewFrame = serde_json::from_str(r#"{"type":"typing","user_id":3}"#).unwrap();
        assert_ne!(f.kind, Kind::MessageNew.name());
        // Field types other than these fail here, and go the `Value` way.
        for text in [
            r#"{"type":"message.new","seq":"1","data":{"content":"vl:1:2:"}}"#,
            r#"{"type":"message.new","seq":1,"data":{"content":5}}"#,
            r#"{"type":"message.new","seq":1,"data":{"sender":{"id":-1}}}"#,
            r#"{"seq":1}"#,
            "not json",
        ] {
            assert!(serde_json::from_str::<NewFrame>(text).is_err(), "{text}");
        }
    }
}
