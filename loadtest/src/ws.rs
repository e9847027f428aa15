//! WebSocket side: connecting, and the reader task that turns received frames into
//! delivery records for the goose user's next transaction.

use crate::tracker::{self, Seen, Tracker};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

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

/// `http://h:p` → `ws://h:p`; a `ws://` base is kept.
pub fn ws_base(host: &str) -> String {
    let host = host.trim_end_matches('/');
    if let Some(rest) = host.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = host.strip_prefix("https://") {
        format!("wss://{rest}")
    } else {
        host.to_string()
    }
}

pub fn conv_url(base: &str, conv: i64, token: &str) -> String {
    format!(
        "{}/ws/conversations/{conv}/?token={token}",
        base.trim_end_matches('/')
    )
}

#[derive(Debug)]
pub struct ConnectError {
    pub status: Option<u16>,
    pub detail: String,
}

/// Opens a socket; returns it and the handshake time.
pub async fn connect(url: &str) -> Result<(WsStream, Duration), (ConnectError, Duration)> {
    let started = Instant::now();
    let res = tokio::time::timeout(
        Duration::from_secs(30),
        tokio_tungstenite::connect_async(url),
    )
    .await;
    let took = started.elapsed();
    match res {
        Ok(Ok((stream, _resp))) => {
            if let MaybeTlsStream::Plain(tcp) = stream.get_ref() {
                let _ = tcp.set_nodelay(true);
            }
            Ok((stream, took))
        }
        Ok(Err(WsError::Http(resp))) => {
            let status = resp.status().as_u16();
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err((
                ConnectError {
                    status: Some(status),
                    detail: format!("handshake refused: HTTP {status} {body}"),
                },
                took,
            ))
        }
        Ok(Err(e)) => Err((
            ConnectError {
                status: None,
                detail: format!("connect failed: {e}"),
            },
            took,
        )),
        Err(_) => Err((
            ConnectError {
                status: None,
                detail: "connect timed out after 30 s".into(),
            },
            took,
        )),
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
            let _ = self
                .sink
                .send(Message::Close(Some(CloseFrame {
                    code: CloseCode::Normal,
                    reason: "".into(),
                })))
                .await;
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
    while let Some(frame) = read.next().await {
        let text = match frame {
            Ok(Message::Text(t)) => t,
            Ok(Message::Close(cf)) => {
                if !closing.load(Relaxed) {
                    end = Some(match cf {
                        Some(cf) => format!("closed by server: {} {}", cf.code, cf.reason),
                        None => "closed by server".into(),
                    });
                }
                break;
            }
            Ok(_) => continue,
            Err(e) => {
                if !closing.load(Relaxed) {
                    end = Some(format!("socket error: {e}"));
                }
                break;
            }
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
        match v.get("type").and_then(Value::as_str) {
            Some("message.new") => {
                let seq = v.get("seq").and_then(Value::as_u64);
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
                let data = &v["data"];
                let Some((id, intended)) = data
                    .get("content")
                    .and_then(Value::as_str)
                    .and_then(Tracker::parse)
                else {
                    continue;
                };
                let sender = data
                    .get("sender")
                    .and_then(|s| s.get("id"))
                    .and_then(Value::as_i64);
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
            Some("error") => {
                tracker.ws_errors.fetch_add(1, Relaxed);
                let code = v.get("code").and_then(Value::as_str).unwrap_or("?");
                let detail = v.get("detail").and_then(Value::as_str).unwrap_or("");
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

/// Sends `{"type":"ping"}` and waits for the pong, skipping other frames.
pub async fn ping(stream: &mut WsStream, timeout: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    stream
        .send(Message::text(r#"{"type":"ping"}"#))
        .await
        .map_err(|e| format!("send ping: {e}"))?;
    let wait = async {
        while let Some(frame) = stream.next().await {
            match frame {
                Ok(Message::Text(t)) => {
                    if let Ok(v) = serde_json::from_str::<Value>(&t) {
                        if v.get("type").and_then(Value::as_str) == Some("pong") {
                            return Ok(started.elapsed());
                        }
                    }
                }
                Ok(Message::Close(cf)) => return Err(format!("closed before pong: {cf:?}")),
                Ok(_) => {}
                Err(e) => return Err(format!("socket error before pong: {e}")),
            }
        }
        Err("socket ended before pong".to_string())
    };
    match tokio::time::timeout(timeout, wait).await {
        Ok(r) => r,
        Err(_) => Err(format!("no pong within {timeout:?}")),
    }
}
