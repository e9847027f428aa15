//! The socket side (PROTOCOL.md, "WebSocket"): URLs, the handshake and its
//! refusals, and the read step every reader loops on ([`crate::Ws`] builds
//! a test socket on them).
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

// Where the first commit of this crate had them (a branch may already use
// these paths).
pub use crate::ws::{send_ws, seqs, Ws};

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

/// The socket's read buffer. tungstenite zero-fills the free part of its
/// buffer (128 KiB by default) before every read; chat frames are a few
/// hundred bytes, so at 8,000 msg/s that `memset` was the load client's
/// biggest cost (11 % of its CPU). Larger frames still arrive whole: the
/// buffer grows for them.
pub const READ_BUFFER_BYTES: usize = 8 << 10;

/// The tungstenite settings every socket of this crate uses.
pub fn config() -> tungstenite::protocol::WebSocketConfig {
    tungstenite::protocol::WebSocketConfig::default().read_buffer_size(READ_BUFFER_BYTES)
}

/// Opens a socket, Nagle off: a small frame must not wait for the previous
/// one's ACK, or a client measuring latency would add ~40 ms to it.
pub async fn open(url: &str, timeout: Duration) -> Result<Stream, ConnectError> {
    let connecting = tokio_tungstenite::connect_async_with_config(url, Some(config()), true);
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
