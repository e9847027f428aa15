//! The socket side (PROTOCOL.md, "WebSocket"): URLs, the handshake and its
//! refusals, the read step every reader loops on, and [`Ws`], a socket
//! whose every wait is bounded, for tests.
//!
//! A reader task that must not lose time (vato-load's, vato-check's) splits
//! the [`Stream`] and loops on [`next_event`] itself: it gets the frame's
//! text as tungstenite received it, with no copy, lock or channel added.

use std::time::{Duration, Instant};

use futures_util::{Sink, SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::frames::{self, Kind};
use crate::TIMEOUT;

/// A client WebSocket as tokio-tungstenite gives it.
pub type Stream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The conversation socket's path prefix.
pub const CONVERSATIONS: &str = "/ws/conversations/";
/// The original's path, an alias of [`CONVERSATIONS`].
pub const CHAT: &str = "/ws/chat/";

// ------------------------------------------------------------ URLs

/// `http://h:p` → `ws://h:p` (`https` → `wss`); a `ws://` base is kept.
pub fn ws_base(http_base: &str) -> String {
    let base = http_base.trim_end_matches('/');
    if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else {
        base.to_owned()
    }
}

/// `ws://host:port` + `/ws/conversations/` + `7/?token=...&since=...`.
pub fn url(
    ws_base: &str,
    path: &str,
    conversation: u64,
    token: Option<&str>,
    since: Option<u64>,
) -> String {
    let mut url = format!("{}{path}{conversation}/", ws_base.trim_end_matches('/'));
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

/// A socket URL on 127.0.0.1:`port` and either route (`"conversations"` or
/// `"chat"`).
pub fn ws_url(
    port: u16,
    route: &str,
    conv: u64,
    token: Option<&str>,
    since: Option<u64>,
) -> String {
    let path = format!("/ws/{route}/");
    url(&format!("ws://127.0.0.1:{port}"), &path, conv, token, since)
}

/// Percent-encodes everything but RFC 3986's unreserved characters (a JWT
/// needs nothing, but a token given on a command line might).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The URL without its query: no tokens in logs.
pub fn shown(url: &str) -> &str {
    url.split('?').next().unwrap_or_default()
}

// ------------------------------------------------------------ handshake

/// Why a socket did not open.
#[derive(Debug)]
pub enum ConnectError {
    /// The server answered the handshake with an HTTP status instead of 101:
    /// the body as JSON (`Null` if it is none) and as text.
    Refused {
        status: u16,
        detail: Value,
        text: String,
    },
    /// Anything else: connection refused, timeout, bad URL, ...
    Failed(String),
}

impl ConnectError {
    /// The refusal's HTTP status.
    pub fn status(&self) -> Option<u16> {
        match self {
            ConnectError::Refused { status, .. } => Some(*status),
            ConnectError::Failed(_) => None,
        }
    }
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Refused { status, text, .. } => {
                write!(f, "handshake refused with HTTP {status} {text}")
            }
            ConnectError::Failed(reason) => f.write_str(reason),
        }
    }
}

/// Opens a socket, Nagle off: a small frame must not wait for the previous
/// one's ACK, or a client measuring latency would add ~40 ms to it.
pub async fn open(url: &str, timeout: Duration) -> Result<Stream, ConnectError> {
    let connecting = tokio_tungstenite::connect_async_with_config(url, None, true);
    match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok((stream, _response))) => Ok(stream),
        Ok(Err(tungstenite::Error::Http(response))) => {
            let bytes = response.body().as_deref().unwrap_or_default();
            Err(ConnectError::Refused {
                status: response.status().as_u16(),
                detail: serde_json::from_slice(bytes).unwrap_or(Value::Null),
                text: String::from_utf8_lossy(bytes).into_owned(),
            })
        }
        Ok(Err(err)) => Err(ConnectError::Failed(format!("{}: {err}", shown(url)))),
        Err(_) => Err(ConnectError::Failed(format!(
            "{}: no handshake answer within {} ms",
            shown(url),
            timeout.as_millis()
        ))),
    }
}

// ------------------------------------------------------------ reading

/// One step of a socket's read side.
#[derive(Debug)]
pub enum Event {
    /// A text frame, as received.
    Text(Utf8Bytes),
    /// The server's close frame (its code, if it sent one).
    Closed(Option<CloseFrame>),
    /// The connection broke.
    Error(tungstenite::Error),
    /// The stream ended without a close frame.
    End,
}

impl Event {
    /// How the connection ended, for reports (`None` for a text frame).
    pub fn ending(&self) -> Option<String> {
        match self {
            Event::Text(_) => None,
            Event::Closed(Some(frame)) => Some(format!(
                "closed by the server with code {}",
                u16::from(frame.code)
            )),
            Event::Closed(None) => Some("closed by the server".to_owned()),
            Event::Error(err) => Some(format!("connection error: {err}")),
            Event::End => Some("connection ended".to_owned()),
        }
    }
}

/// The next text frame or ending of `stream` (a whole [`Stream`] or its
/// read half). Pings, pongs and binary frames are skipped: tungstenite
/// answers pings itself.
pub async fn next_event<S>(stream: &mut S) -> Event
where
    S: futures_util::Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    loop {
        match stream.next().await {
            Some(Ok(Message::Text(text))) => return Event::Text(text),
            Some(Ok(Message::Close(frame))) => return Event::Closed(frame),
            Some(Ok(_)) => continue,
            Some(Err(err)) => return Event::Error(err),
            None => return Event::End,
        }
    }
}

/// Sends a normal close (code 1000) on `sink`.
pub async fn close_normal<S>(sink: &mut S) -> Result<(), tungstenite::Error>
where
    S: Sink<Message, Error = tungstenite::Error> + Unpin,
{
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    sink.send(Message::Close(Some(frame))).await
}

/// Sends `ping` and waits up to `timeout` for the `pong`, skipping other
/// frames; answers the round trip.
pub async fn ping(stream: &mut Stream, timeout: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    stream
        .send(Message::text(frames::PING_TEXT))
        .await
        .map_err(|e| format!("send ping: {e}"))?;
    let wait = async {
        loop {
            match next_event(stream).await {
                Event::Text(text) => {
                    let frame = serde_json::from_str::<Value>(&text).unwrap_or(Value::Null);
                    if Kind::Pong.is(&frame) {
                        return Ok(started.elapsed());
                    }
                }
                ending => {
                    let how = ending.ending().unwrap_or_default();
                    return Err(format!("no pong: {how}"));
                }
            }
        }
    };
    match tokio::time::timeout(timeout, wait).await {
        Ok(result) => result,
        Err(_) => Err(format!("no pong within {timeout:?}")),
    }
}

// ------------------------------------------------------------ Ws

/// A client socket with JSON helpers for tests. Every wait is bounded by
/// [`TIMEOUT`]; what the server owes and does not send fails the test.
pub struct Ws {
    stream: Stream,
}

impl Ws {
    pub async fn connect(url: &str) -> Ws {
        match Ws::try_connect(url).await {
            Ok(ws) => ws,
            Err(status) => panic!("socket {url} refused with HTTP {status}"),
        }
    }

    /// Connects; a refused handshake gives its HTTP status.
    pub async fn try_connect(url: &str) -> Result<Ws, u16> {
        Ws::handshake(url).await.map_err(|(status, _)| status)
    }

    /// The HTTP status and JSON body of a handshake that must be refused.
    pub async fn refusal(url: &str) -> (u16, Value) {
        match Ws::handshake(url).await {
            Ok(_) => panic!("socket {url} was accepted"),
            Err(refusal) => refusal,
        }
    }

    async fn handshake(url: &str) -> Result<Ws, (u16, Value)> {
        match open(url, TIMEOUT).await {
            Ok(stream) => Ok(Ws { stream }),
            Err(ConnectError::Refused { status, detail, .. }) => Err((status, detail)),
            Err(ConnectError::Failed(reason)) => panic!("socket {url}: {reason}"),
        }
    }

    /// Connects over a TCP socket with a small receive buffer, so that a
    /// client that stops reading backs up into the server quickly.
    pub async fn connect_small_buffer(url: &str, port: u16, recv_buffer: u32) -> Ws {
        let socket = tokio::net::TcpSocket::new_v4().expect("tcp socket");
        socket.set_recv_buffer_size(recv_buffer).expect("SO_RCVBUF");
        let tcp = socket
            .connect(([127, 0, 0, 1], port).into())
            .await
            .expect("tcp connect");
        let (stream, _) = tokio::time::timeout(
            TIMEOUT,
            tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(tcp)),
        )
        .await
        .expect("handshake timed out")
        .expect("handshake");
        Ws { stream }
    }

    /// The tungstenite stream, for what the helpers do not cover.
    pub fn into_stream(self) -> Stream {
        self.stream
    }

    pub async fn send(&mut self, frame: Value) {
        self.send_text(&frame.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.send_raw(Message::text(text)).await;
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.stream.send(message).await.expect("send frame");
    }

    /// Sends a frame; false if the socket is gone.
    pub async fn try_send(&mut self, frame: Value) -> bool {
        self.stream
            .send(Message::text(frame.to_string()))
            .await
            .is_ok()
    }

    /// The next message of any kind (`None` when the stream ended).
    pub async fn next_message(&mut self) -> Option<Message> {
        match tokio::time::timeout(TIMEOUT, self.stream.next()).await {
            Ok(Some(Ok(message))) => Some(message),
            Ok(Some(Err(e))) => panic!("socket error: {e}"),
            Ok(None) => None,
            Err(_) => panic!("no frame within {TIMEOUT:?}"),
        }
    }

    /// The next text frame, parsed. Panics on a close or the end.
    pub async fn recv(&mut self) -> Value {
        loop {
            match self.next_message().await {
                Some(Message::Text(text)) => {
                    return serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("frame is not JSON ({e}): {text}"))
                }
                Some(Message::Ping(_) | Message::Pong(_)) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next text frame, or `None` once the socket is closed, ended or
    /// broken (the server may be gone).
    pub async fn try_recv(&mut self) -> Option<Value> {
        let event = tokio::time::timeout(TIMEOUT, next_event(&mut self.stream))
            .await
            .unwrap_or_else(|_| panic!("no frame within {TIMEOUT:?}"));
        match event {
            Event::Text(text) => serde_json::from_str(&text).ok(),
            _ => None,
        }
    }

    /// The next text frame, which must be of type `kind`.
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        let frame = self.recv().await;
        assert_eq!(frame["type"], kind, "unexpected frame: {frame}");
        frame
    }

    /// Reads until a frame of type `kind`, returning it and the frames
    /// before it.
    pub async fn recv_until(&mut self, kind: &str) -> (Value, Vec<Value>) {
        let mut before = Vec::new();
        loop {
            let frame = self.recv().await;
            if frame["type"] == kind {
                return (frame, before);
            }
            before.push(frame);
        }
    }

    /// Sends a ping frame and expects the pong as the next frame.
    pub async fn ping(&mut self) {
        self.send(frames::ping()).await;
        assert_eq!(self.recv().await, frames::pong());
    }

    /// Reads to the end: every text frame before the close, and the close
    /// code (`None` if the stream ended without a close frame).
    pub async fn until_close(&mut self) -> (Vec<Value>, Option<u16>) {
        let mut frames = Vec::new();
        loop {
            let event = tokio::time::timeout(TIMEOUT, next_event(&mut self.stream))
                .await
                .unwrap_or_else(|_| panic!("socket not closed within {TIMEOUT:?}"));
            match event {
                Event::Text(text) => {
                    frames.push(serde_json::from_str(&text).expect("JSON frame"));
                }
                Event::Closed(frame) => return (frames, frame.map(|f| u16::from(f.code))),
                Event::Error(_) | Event::End => return (frames, None),
            }
        }
    }

    /// Closes from our side.
    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }
}

/// Sends `message.send` and waits for this socket's echo; returns the
/// `message.new` frame. Other frames (none expected) fail the test.
pub async fn send_ws(ws: &mut Ws, content: &str, client_id: &str) -> Value {
    ws.send(frames::send(content, Some(client_id), None)).await;
    let frame = ws.recv_type(Kind::MessageNew.name()).await;
    assert_eq!(
        frame["client_id"], client_id,
        "echo of another send: {frame}"
    );
    frame
}

/// Seqs of the frames that carry one.
pub fn seqs(frames: &[Value]) -> Vec<u64> {
    frames.iter().filter_map(frames::seq).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_urls() {
        assert_eq!(
            url("ws://h:1/", CHAT, 7, Some("a.b-c"), Some(4)),
            "ws://h:1/ws/chat/7/?token=a.b-c&since=4"
        );
        assert_eq!(
            url("ws://h:1", CONVERSATIONS, 7, None, None),
            "ws://h:1/ws/conversations/7/"
        );
        assert_eq!(
            ws_url(9, "chat", 3, Some("t"), None),
            "ws://127.0.0.1:9/ws/chat/3/?token=t"
        );
        assert_eq!(encode("a b&c"), "a%20b%26c");
        assert_eq!(ws_base("http://h:1/"), "ws://h:1");
        assert_eq!(ws_base("https://h"), "wss://h");
    }
}
