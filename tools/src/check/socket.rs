//! The WebSocket side: one client socket with a reader task that timestamps
//! every frame on arrival, and the ways the cases wait for frames.
//!
//! Frames a wait did not ask for go to a backlog, so a later wait can still
//! find them, and whatever is left there at the end of a case is exactly what
//! the duplicate checks look at.

use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, StreamExt};
use futures_util::SinkExt;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::report::truncate;

type Stream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A JSON frame and the moment the reader task got it.
#[derive(Debug, Clone)]
pub struct Frame {
    pub value: Value,
    /// Taken on arrival, not when a wait looks at the frame, so latencies
    /// don't include the time the checker spent elsewhere.
    pub at: Instant,
}

impl Frame {
    pub fn kind(&self) -> &str {
        self.value["type"].as_str().unwrap_or("?")
    }

    /// The event's per-conversation seq (frames without one give `None`).
    pub fn seq(&self) -> Option<i64> {
        self.value["seq"].as_i64()
    }
}

enum Incoming {
    Frame(Frame),
    /// The connection ended; the text says how.
    Closed(String),
}

/// Why a socket did not open.
#[derive(Debug)]
pub enum ConnectError {
    /// The server answered the handshake with an HTTP status instead of 101.
    Refused { status: u16, body: String },
    /// Anything else: connection refused, timeout, bad URL, ...
    Failed(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Refused { status, body } => {
                write!(f, "handshake refused with HTTP {status} {body}")
            }
            ConnectError::Failed(reason) => f.write_str(reason),
        }
    }
}

pub struct Socket {
    /// "A", "B", ... for failure reasons.
    label: String,
    sink: SplitSink<Stream, Message>,
    inbox: mpsc::UnboundedReceiver<Incoming>,
    /// Frames received but not yet claimed by a wait.
    backlog: Vec<Frame>,
    /// Every frame of this connection, in arrival order (for seq checks).
    history: Vec<Frame>,
    /// Set once the reader saw the connection end.
    closed: Option<String>,
    reader: JoinHandle<()>,
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// `ws://host:port` + `/ws/conversations/` + `7/?token=...&since=...`.
pub fn url(
    ws_base: &str,
    ws_path: &str,
    conversation: i64,
    token: Option<&str>,
    since: Option<i64>,
) -> String {
    let mut url = format!("{}{ws_path}{conversation}/", ws_base.trim_end_matches('/'));
    let mut query = Vec::new();
    if let Some(token) = token {
        query.push(format!("token={}", encode(token)));
    }
    if let Some(since) = since {
        query.push(format!("since={since}"));
    }
    if !query.is_empty() {
        url.push('?');
        url.push_str(&query.join("&"));
    }
    url
}

/// Percent-encodes everything but RFC 3986's unreserved characters (a JWT
/// needs nothing, but a token given on the command line might).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn connect(url: &str, label: &str, timeout: Duration) -> Result<Socket, ConnectError> {
    // Nagle off: a small frame must not wait for the previous one's ACK, or
    // the checker itself would add ~40 ms to the latencies it reports.
    let connecting = tokio_tungstenite::connect_async_with_config(url, None, true);
    let handshake = tokio::time::timeout(timeout, connecting).await;
    let (stream, _response) = match handshake {
        Err(_) => {
            return Err(ConnectError::Failed(format!(
                "no handshake answer within {} ms",
                timeout.as_millis()
            )))
        }
        Ok(Err(tungstenite::Error::Http(response))) => {
            let body = response
                .body()
                .as_deref()
                .map(|b| truncate(&String::from_utf8_lossy(b), 200))
                .unwrap_or_default();
            return Err(ConnectError::Refused {
                status: response.status().as_u16(),
                body,
            });
        }
        Ok(Err(err)) => {
            // Without the query: no tokens in CI logs.
            let shown = url.split('?').next().unwrap_or_default();
            return Err(ConnectError::Failed(format!("{shown}: {err}")));
        }
        Ok(Ok(pair)) => pair,
    };
    let (sink, stream) = stream.split();
    let (tx, inbox) = mpsc::unbounded_channel();
    let reader = tokio::spawn(read_frames(stream, tx));
    Ok(Socket {
        label: label.to_owned(),
        sink,
        inbox,
        backlog: Vec::new(),
        history: Vec::new(),
        closed: None,
        reader,
    })
}

/// Reads until the connection ends; every text frame becomes a `Frame`.
async fn read_frames(
    mut stream: futures_util::stream::SplitStream<Stream>,
    tx: mpsc::UnboundedSender<Incoming>,
) {
    let ended = loop {
        match stream.next().await {
            Some(Ok(Message::Text(text))) => {
                let at = Instant::now();
                // A frame that is not JSON is still a frame the checks should
                // see (and fail on), so keep it as a string value.
                let value = serde_json::from_str(text.as_str())
                    .unwrap_or_else(|_| Value::String(text.as_str().to_owned()));
                if tx.send(Incoming::Frame(Frame { value, at })).is_err() {
                    return;
                }
            }
            Some(Ok(Message::Close(frame))) => {
                break match frame {
                    Some(frame) => {
                        format!("closed by the server with code {}", u16::from(frame.code))
                    }
                    None => "closed by the server".to_owned(),
                }
            }
            Some(Ok(_)) => {} // ping/pong/binary: tungstenite answers pings itself
            Some(Err(err)) => break format!("connection error: {err}"),
            None => break "connection ended".to_owned(),
        }
    };
    let _ = tx.send(Incoming::Closed(ended));
}

impl Socket {
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Sends one JSON frame; returns the instant just before the write,
    /// which is where delivery latencies start.
    pub async fn send(&mut self, frame: &Value) -> Result<Instant, String> {
        let at = Instant::now();
        self.sink
            .send(Message::text(frame.to_string()))
            .await
            .map_err(|err| format!("{} could not send: {err}", self.label))?;
        Ok(at)
    }

    /// Waits for the first frame matching `matches` (looking at the backlog
    /// first) and claims it. `what` names the frame in the failure reason.
    pub async fn expect(
        &mut self,
        what: &str,
        timeout: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> Result<Frame, String> {
        if let Some(pos) = self.backlog.iter().position(|f| matches(&f.value)) {
            return Ok(self.backlog.remove(pos));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(how) = &self.closed {
                return Err(format!(
                    "{} never got {what}: socket {how}{}",
                    self.label,
                    self.seen()
                ));
            }
            match tokio::time::timeout_at(deadline, self.inbox.recv()).await {
                Err(_) => {
                    return Err(format!(
                        "{} did not get {what} within {} ms{}",
                        self.label,
                        timeout.as_millis(),
                        self.seen()
                    ))
                }
                Ok(None) => self.closed = Some("reader stopped".into()),
                Ok(Some(Incoming::Closed(how))) => self.closed = Some(how),
                Ok(Some(Incoming::Frame(frame))) => {
                    self.history.push(frame.clone());
                    if matches(&frame.value) {
                        return Ok(frame);
                    }
                    self.backlog.push(frame);
                }
            }
        }
    }

    /// Collects whatever arrives within `grace` into the backlog: run before
    /// counting duplicates, so a late second copy is not missed.
    pub async fn settle(&mut self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        while self.closed.is_none() {
            match tokio::time::timeout_at(deadline, self.inbox.recv()).await {
                Err(_) => break,
                Ok(None) => self.closed = Some("reader stopped".into()),
                Ok(Some(Incoming::Closed(how))) => self.closed = Some(how),
                Ok(Some(Incoming::Frame(frame))) => {
                    self.history.push(frame.clone());
                    self.backlog.push(frame);
                }
            }
        }
    }

    /// Removes and returns every backlog frame matching `matches`.
    pub fn take_all(&mut self, matches: impl Fn(&Value) -> bool) -> Vec<Frame> {
        let (taken, kept) = std::mem::take(&mut self.backlog)
            .into_iter()
            .partition(|f| matches(&f.value));
        self.backlog = kept;
        taken
    }

    /// Every frame this connection received so far, in order.
    pub fn history(&self) -> &[Frame] {
        &self.history
    }

    /// How the connection ended, if it did.
    pub fn closed(&self) -> Option<&str> {
        self.closed.as_deref()
    }

    /// The newest unclaimed frames, to explain a wait that found nothing.
    fn seen(&self) -> String {
        if self.backlog.is_empty() {
            return " (nothing else arrived)".into();
        }
        let recent: Vec<String> = self
            .backlog
            .iter()
            .rev()
            .take(6)
            .rev()
            .map(|f| describe(&f.value))
            .collect();
        format!(" (unclaimed frames: {})", recent.join(", "))
    }
}

/// A short description of a frame: its type, plus what makes it identifiable.
pub fn describe(frame: &Value) -> String {
    let kind = frame["type"].as_str().unwrap_or("?");
    match kind {
        "error" => format!(
            "error({}: {})",
            frame["code"].as_str().unwrap_or("?"),
            truncate(frame["detail"].as_str().unwrap_or(""), 80)
        ),
        "message.new" | "message.edited" => format!(
            "{kind}(seq {}, {:?})",
            frame["seq"],
            truncate(frame["data"]["content"].as_str().unwrap_or(""), 40)
        ),
        "?" => format!("non-frame {}", truncate(&frame.to_string(), 80)),
        _ if frame.get("seq").is_some() => format!("{kind}(seq {})", frame["seq"]),
        _ => kind.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_urls() {
        assert_eq!(
            url("ws://h:1/", "/ws/chat/", 7, Some("a.b-c"), Some(4)),
            "ws://h:1/ws/chat/7/?token=a.b-c&since=4"
        );
        assert_eq!(
            url("ws://h:1", "/ws/conversations/", 7, None, None),
            "ws://h:1/ws/conversations/7/"
        );
        assert_eq!(encode("a b&c"), "a%20b%26c");
    }
}
