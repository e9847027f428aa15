//! WebSocket side: connecting, and the reader task that turns received frames into
//! delivery records for the goose user's next transaction.

use crate::tracker::{self, Seen, Tracker};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::StreamExt;
use serde_json::Value;
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
    let mut last_seq: Option<u64> = None;
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
                let seq = frames::seq(&v);
                let in_order = match (seq, last_seq) {
                    (Some(s), Some(l)) if s <= l => false,
                    (Some(s), Some(l)) => {
                        if s > l + 1 {
                            tracker.gaps.fetch_add(s - l - 1, Relaxed);
                        }
                        last_seq = Some(s);
                        true
                    }
                    (Some(s), None) => {
                        last_seq = Some(s);
                        true
                    }
                    (None, _) => {
                        tracker.ws_errors.fetch_add(1, Relaxed);
                        let _ = tx.send(Record::fail(
                            "frame",
                            Duration::ZERO,
                            "message.new without seq",
                        ));
                        true
                    }
                };
                let Some((id, intended)) = frames::content(&v).and_then(Tracker::parse) else {
                    continue;
                };
                let sender = frames::sender_id(&v).and_then(|id| i64::try_from(id).ok());
                let own = sender == Some(me);
                let rec = match tracker.on_receive(id, intended, own, in_order, timeout) {
                    Seen::Delivered(d) => Record::ok("deliver", d),
                    Seen::OutOfOrder(d) => Record::fail("deliver", d, "out of order"),
                    Seen::Duplicate(d) => Record::fail("deliver", d, "duplicate delivery"),
                    Seen::Late(d) => {
                        Record::fail("deliver", d, format!("lost: delivered after {timeout:?}"))
                    }
                    Seen::AfterSweep => continue,
                    Seen::Acked(d) => Record::ok("ack", d),
                    Seen::DuplicateAck(d) => Record::fail("ack", d, "duplicate echo"),
                };
                let _ = tx.send(rec);
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
