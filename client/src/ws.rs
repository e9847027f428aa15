//! [`Ws`]: a client socket for tests. Every wait is bounded by
//! [`TIMEOUT`]; what the server owes and does not send fails the test.

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;

use crate::frames::{self, Kind};
use crate::socket::{next_event, open, ConnectError, Event, Stream};
use crate::TIMEOUT;

/// A client socket with JSON helpers for tests. Every wait is bounded by
/// [`TIMEOUT`]; what the server owes and does not send fails the test.
///
/// `presence` frames (a conversation partner came online or went offline)
/// arrive whenever partners connect, interleaved with anything and without
/// a seq; the helpers skip them, as they skip pings, unless the socket was
/// made with [`Ws::with_presence`] (what presence tests do).
pub struct Ws {
    stream: Stream,
    presence: bool,
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
            Ok(stream) => Ok(Ws {
                stream,
                presence: false,
            }),
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
            tokio_tungstenite::client_async_with_config(
                url,
                MaybeTlsStream::Plain(tcp),
                Some(crate::socket::config()),
            ),
        )
        .await
        .expect("handshake timed out")
        .expect("handshake");
        Ws {
            stream,
            presence: false,
        }
    }

    /// This socket's helpers return `presence` frames too.
    pub fn with_presence(mut self) -> Ws {
        self.presence = true;
        self
    }

    /// Whether a helper returns `frame` (see [`Ws`] on presence frames).
    fn wanted(&self, frame: &Value) -> bool {
        self.presence || !Kind::Presence.is(frame)
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
                    let frame = serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("frame is not JSON ({e}): {text}"));
                    if self.wanted(&frame) {
                        return frame;
                    }
                }
                Some(Message::Ping(_) | Message::Pong(_)) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next text frame, or `None` once the socket is closed, ended or
    /// broken (the server may be gone).
    pub async fn try_recv(&mut self) -> Option<Value> {
        loop {
            let event = tokio::time::timeout(TIMEOUT, next_event(&mut self.stream))
                .await
                .unwrap_or_else(|_| panic!("no frame within {TIMEOUT:?}"));
            let Event::Text(text) = event else {
                return None;
            };
            match serde_json::from_str(&text) {
                Ok(frame) if !self.wanted(&frame) => continue,
                parsed => return parsed.ok(),
            }
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
                    let frame = serde_json::from_str(&text).expect("JSON frame");
                    if self.wanted(&frame) {
                        frames.push(frame);
                    }
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
