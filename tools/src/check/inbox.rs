//! The checker's view of a socket: vato-client's socket with a reader task
//! that timestamps every frame on arrival, and the ways the cases wait for
//! frames.
//!
//! Frames a wait did not ask for go to a backlog, so a later wait can still
//! find them, and whatever is left there at the end of a case is exactly what
//! the duplicate checks look at.

use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream, StreamExt};
use futures_util::SinkExt;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use vato_client::frames::{self, Kind};
use vato_client::socket::{self as client_socket, ConnectError, Event, Stream};

use super::report::truncate;

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
        frames::type_name(&self.value).unwrap_or("?")
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

/// `ws://host:port` + `ws_path` + `7/?token=...&since=...`.
pub fn url(
    ws_base: &str,
    ws_path: &str,
    conversation: i64,
    token: Option<&str>,
    since: Option<i64>,
) -> String {
    let unsigned = super::session::unsigned;
    client_socket::url(
        ws_base,
        ws_path,
        unsigned(conversation),
        token,
        since.map(unsigned),
    )
}

/// Opens a socket and starts its reader; a refusal's body is cut to 200
/// characters for reports.
pub async fn connect(url: &str, label: &str, timeout: Duration) -> Result<Socket, ConnectError> {
    let stream = match client_socket::open(url, timeout).await {
        Ok(stream) => stream,
        Err(ConnectError::Refused {
            status,
            detail,
            text,
        }) => {
            return Err(ConnectError::Refused {
                status,
                detail,
                text: truncate(&text, 200),
            })
        }
        Err(err) => return Err(err),
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
async fn read_frames(mut stream: SplitStream<Stream>, tx: mpsc::UnboundedSender<Incoming>) {
    let ended = loop {
        match client_socket::next_event(&mut stream).await {
            Event::Text(text) => {
                let at = Instant::now();
                // A frame that is not JSON is still a frame the checks should
                // see (and fail on), so keep it as a string value.
                let value = serde_json::from_str(text.as_str())
                    .unwrap_or_else(|_| Value::String(text.as_str().to_owned()));
                if tx.send(Incoming::Frame(Frame { value, at })).is_err() {
                    return;
                }
            }
            ending => break ending.ending().unwrap_or_default(),
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
    let kind = frames::type_name(frame).unwrap_or("?");
    match Kind::from_name(kind) {
        Some(Kind::Error) => format!(
            "error({}: {})",
            frame["code"].as_str().unwrap_or("?"),
            truncate(frame["detail"].as_str().unwrap_or(""), 80)
        ),
        Some(Kind::MessageNew | Kind::MessageEdited) => format!(
            "{kind}(seq {}, {:?})",
            frame["seq"],
            truncate(frames::content(frame).unwrap_or(""), 40)
        ),
        None if kind == "?" => format!("non-frame {}", truncate(&frame.to_string(), 80)),
        _ if frame.get("seq").is_some() => format!("{kind}(seq {})", frame["seq"]),
        _ => kind.to_owned(),
    }
}
