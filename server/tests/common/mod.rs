//! Test harness: starts the real `vato-server` binary on a free port with
//! its own data directory and talks to it over real sockets, as a client
//! would (reqwest for REST, tokio-tungstenite for WebSocket).
//!
//! Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Longest wait for anything the server owes us: a frame, a response,
/// start-up, shutdown.
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// Password of every user the tests register.
pub const PASSWORD: &str = "correct-horse";

/// The message object's keys: the contract's 15, then Vato's `seq` and
/// `client_id`.
pub const MESSAGE_KEYS: [&str; 17] = [
    "id",
    "conversation",
    "sender",
    "message_type",
    "content",
    "created_at",
    "edited_at",
    "reply_to",
    "reply_to_message",
    "forwarded_from",
    "forwarded_from_message",
    "is_deleted",
    "attachments",
    "receipts",
    "reactions",
    "seq",
    "client_id",
];

/// The conversation object's 13 keys (contract 1.4).
pub const CONVERSATION_KEYS: [&str; 13] = [
    "id",
    "title",
    "conversation_type",
    "owner",
    "description",
    "created_at",
    "updated_at",
    "avatar",
    "is_public",
    "invite_link",
    "members",
    "last_message",
    "unread_count",
];

/// The user object's 20 keys (contract 1.1).
pub const USER_KEYS: [&str; 20] = [
    "id",
    "username",
    "email",
    "display_name",
    "phone_number",
    "avatar",
    "status_message",
    "bio",
    "is_online",
    "last_seen_at",
    "date_of_birth",
    "country",
    "city",
    "website",
    "show_phone_number",
    "show_last_seen",
    "show_profile_photo",
    "allow_calls",
    "allow_group_invite",
    "settings",
];

/// The keys of a JSON object, in the order they were sent.
pub fn keys(value: &Value) -> Vec<&str> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect()
}

/// Asserts that `value` has exactly `expected` keys, in any order.
pub fn assert_key_set(value: &Value, expected: &[&str]) {
    let mut got = keys(value);
    got.sort_unstable();
    let mut want = expected.to_vec();
    want.sort_unstable();
    assert_eq!(got, want, "keys of {value}");
}

/// The `vato-server` binary, configured by its flags only: `VATO_*`
/// variables of the test's environment are not passed on.
fn server_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vato-server"));
    for (key, _) in std::env::vars() {
        if key.starts_with("VATO_") {
            command.env_remove(key);
        }
    }
    command
}

/// Runs the binary with `args` (no extra flags) until it exits by itself,
/// as a start-up refusal does.
pub async fn run_to_exit(args: &[&str]) -> std::process::Output {
    let mut command = server_command();
    command.args(args).stdin(Stdio::null()).kill_on_drop(true);
    tokio::time::timeout(TIMEOUT, command.output())
        .await
        .expect("vato-server did not exit")
        .expect("run vato-server")
}

/// A running `vato-server`. Killed (SIGKILL) when dropped.
pub struct Server {
    child: Child,
    pub base: String,
    port: u16,
    data_dir: PathBuf,
    /// The data directory when the server owns it (not shared with a
    /// restart).
    _own_dir: Option<TempDir>,
    http: reqwest::Client,
}

impl Server {
    /// A server with the demo accounts (lalo, kalu) in a fresh directory.
    pub async fn demo() -> Server {
        Server::start(&["--demo"]).await
    }

    /// A server in a fresh directory with these extra flags.
    pub async fn start(args: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = Server::start_in(dir.path(), args).await;
        server._own_dir = Some(dir);
        server
    }

    /// A server on a data directory the caller keeps (for restarts).
    pub async fn start_in(data_dir: &Path, args: &[&str]) -> Server {
        let mut command = server_command();
        // VATO_TEST_LOG=debug shows the server's log on the test's stderr.
        match std::env::var("VATO_TEST_LOG") {
            Ok(level) => command.env("VATO_LOG", level).stderr(Stdio::inherit()),
            Err(_) => command.stderr(Stdio::null()),
        };
        command
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("spawn vato-server");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let base = tokio::time::timeout(TIMEOUT, async {
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                if let Some(address) = line.strip_prefix("vato-server listening on ") {
                    return address.trim().to_string();
                }
            }
            panic!("vato-server exited before listening");
        })
        .await
        .expect("vato-server did not start in time");
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let port = base
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port in the listening line");
        Server {
            child,
            base,
            port,
            data_dir: data_dir.to_path_buf(),
            _own_dir: None,
            http: reqwest::Client::builder()
                .timeout(TIMEOUT)
                .build()
                .expect("http client"),
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// An API client without credentials.
    pub fn anon(&self) -> Api {
        self.api(None)
    }

    /// An API client sending `Authorization: Bearer <token>`.
    pub fn with_token(&self, token: &str) -> Api {
        self.api(Some(token.to_string()))
    }

    fn api(&self, token: Option<String>) -> Api {
        Api {
            http: self.http.clone(),
            base: self.base.clone(),
            port: self.port,
            token,
        }
    }

    /// Registers `username` with [`PASSWORD`] and returns the logged-in user.
    pub async fn register(&self, username: &str) -> User {
        let resp = self
            .anon()
            .post(
                "/api/auth/register/",
                json!({"username": username, "password": PASSWORD, "password2": PASSWORD}),
            )
            .await;
        assert_eq!(resp.status, 201, "register {username}: {}", resp.body);
        self.user_from(&resp.body)
    }

    pub async fn login(&self, username: &str, password: &str) -> User {
        let resp = self
            .anon()
            .post(
                "/api/auth/login/",
                json!({"username": username, "password": password}),
            )
            .await;
        assert_eq!(resp.status, 200, "login {username}: {}", resp.body);
        self.user_from(&resp.body)
    }

    /// The demo accounts, logged in.
    pub async fn lalo_and_kalu(&self) -> (User, User) {
        let lalo = self.login("lalo", "lalo123").await;
        let kalu = self.login("kalu", "kalu123").await;
        (lalo, kalu)
    }

    fn user_from(&self, body: &Value) -> User {
        let access = body["access"].as_str().expect("access token").to_string();
        User {
            id: body["user"]["id"].as_u64().expect("user id"),
            username: body["user"]["username"]
                .as_str()
                .expect("username")
                .to_string(),
            refresh: body["refresh"].as_str().expect("refresh token").to_string(),
            api: self.api(Some(access.clone())),
            access,
        }
    }

    /// Sends SIGTERM and waits for the exit.
    pub async fn terminate(mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait().await
    }

    /// SIGKILL: no shutdown code runs.
    pub async fn kill9(mut self) {
        self.signal(libc::SIGKILL);
        self.wait().await;
    }

    /// Sends `signal` without waiting (the server keeps running code).
    pub fn signal(&self, signal: libc::c_int) {
        let pid = self.child.id().expect("server still running") as libc::pid_t;
        // SAFETY: kill(2) on the pid of our own child, which we have not
        // reaped yet, so the pid cannot have been reused.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal})");
    }

    pub async fn wait(&mut self) -> ExitStatus {
        tokio::time::timeout(TIMEOUT, self.child.wait())
            .await
            .expect("vato-server did not exit in time")
            .expect("wait for vato-server")
    }
}

/// A REST client, optionally authenticated.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    port: u16,
    token: Option<String>,
}

/// An HTTP answer: the status and the JSON body (`Null` when empty).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Api {
    pub async fn request(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        self.try_request(method.clone(), path, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// A request whose transport may fail (the server may be gone).
    pub async fn try_request(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Resp, reqwest::Error> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                panic!(
                    "{method} {path}: {status} body is not JSON: {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        Ok(Resp {
            status,
            headers,
            body,
        })
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.request(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.request(Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.request(Method::PATCH, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.request(Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.request(Method::DELETE, path, None).await
    }

    /// The direct conversation with `other` (created or existing).
    pub async fn direct_with(&self, other: &User) -> u64 {
        let resp = self
            .post(
                "/api/chat/conversations/create-direct/",
                json!({"user_id": other.id}),
            )
            .await;
        assert!(
            resp.status == 200 || resp.status == 201,
            "create-direct: {} {}",
            resp.status,
            resp.body
        );
        resp.body["id"].as_u64().expect("conversation id")
    }

    /// Posts a text message over REST; asserts the 201 and returns the
    /// message object.
    pub async fn send_message(&self, conv: u64, content: &str) -> Value {
        let resp = self
            .post(&messages_path(conv), json!({"content": content}))
            .await;
        assert_eq!(resp.status, 201, "send: {}", resp.body);
        resp.body
    }

    /// A history page (`query` is the part after `?`, may be empty).
    pub async fn history(&self, conv: u64, query: &str) -> Vec<Value> {
        let resp = self.get(&format!("{}?{query}", messages_path(conv))).await;
        assert_eq!(resp.status, 200, "history: {}", resp.body);
        resp.body.as_array().expect("history array").clone()
    }

    /// The conversation as the list endpoint shows it to this user.
    pub async fn listed_conversation(&self, conv: u64) -> Value {
        let resp = self.get("/api/chat/conversations/").await;
        assert_eq!(resp.status, 200, "list: {}", resp.body);
        resp.body
            .as_array()
            .expect("conversation list")
            .iter()
            .find(|c| c["id"] == conv)
            .cloned()
            .unwrap_or_else(|| panic!("conversation {conv} not listed"))
    }

    /// `ws://.../ws/conversations/<conv>/?token=<this token>[&since=N]`.
    pub fn ws_url(&self, conv: u64, since: Option<u64>) -> String {
        ws_url(
            self.port,
            "conversations",
            conv,
            self.token.as_deref(),
            since,
        )
    }

    /// Opens a socket on `/ws/conversations/<conv>/`.
    pub async fn ws(&self, conv: u64) -> Ws {
        Ws::connect(&self.ws_url(conv, None)).await
    }

    /// Opens a socket that first replays everything after `since`.
    pub async fn ws_since(&self, conv: u64, since: u64) -> Ws {
        Ws::connect(&self.ws_url(conv, Some(since))).await
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

pub fn messages_path(conv: u64) -> String {
    format!("/api/chat/conversations/{conv}/messages/")
}

pub fn message_path(conv: u64, message: u64, action: &str) -> String {
    format!("/api/chat/conversations/{conv}/messages/{message}/{action}")
}

/// A socket URL on either route (`conversations` or `chat`).
pub fn ws_url(
    port: u16,
    route: &str,
    conv: u64,
    token: Option<&str>,
    since: Option<u64>,
) -> String {
    let mut url = format!("ws://127.0.0.1:{port}/ws/{route}/{conv}/");
    let mut params = Vec::new();
    if let Some(token) = token {
        params.push(format!("token={token}"));
    }
    if let Some(since) = since {
        params.push(format!("since={since}"));
    }
    if !params.is_empty() {
        url.push('?');
        url.push_str(&params.join("&"));
    }
    url
}

/// A logged-in user: its id, tokens, and an API client with its token.
pub struct User {
    pub id: u64,
    pub username: String,
    pub access: String,
    pub refresh: String,
    pub api: Api,
}

impl std::ops::Deref for User {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

/// A client WebSocket with JSON helpers. Every wait is bounded by
/// [`TIMEOUT`].
pub struct Ws {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
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
        let connected = tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(url))
            .await
            .expect("handshake timed out");
        match connected {
            Ok((stream, _)) => Ok(Ws { stream }),
            Err(tungstenite::Error::Http(response)) => {
                let body = response
                    .body()
                    .as_deref()
                    .and_then(|b| serde_json::from_slice(b).ok())
                    .unwrap_or(Value::Null);
                Err((response.status().as_u16(), body))
            }
            Err(e) => panic!("socket {url}: {e}"),
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
        loop {
            let message = tokio::time::timeout(TIMEOUT, self.stream.next())
                .await
                .unwrap_or_else(|_| panic!("no frame within {TIMEOUT:?}"));
            match message {
                Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).ok(),
                Some(Ok(Message::Close(_)) | Err(_)) | None => return None,
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The next text frame, which must be of type `kind`.
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        let frame = self.recv().await;
        assert_eq!(frame["type"], kind, "unexpected frame: {frame}");
        frame
    }

    /// Sends a ping frame and expects the pong as the next frame.
    pub async fn ping(&mut self) {
        self.send(json!({"type": "ping"})).await;
        assert_eq!(self.recv().await, json!({"type": "pong"}));
    }

    /// Reads to the end: every text frame before the close, and the close
    /// code (`None` if the stream ended without a close frame).
    pub async fn until_close(&mut self) -> (Vec<Value>, Option<u16>) {
        let mut frames = Vec::new();
        loop {
            let message = match tokio::time::timeout(TIMEOUT, self.stream.next()).await {
                Ok(Some(Ok(message))) => message,
                Ok(Some(Err(_)) | None) => return (frames, None),
                Err(_) => panic!("socket not closed within {TIMEOUT:?}"),
            };
            match message {
                Message::Text(text) => {
                    frames.push(serde_json::from_str(&text).expect("JSON frame"));
                }
                Message::Close(frame) => return (frames, frame.map(|f| u16::from(f.code))),
                _ => {}
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
    ws.send(json!({"type": "message.send", "content": content, "client_id": client_id}))
        .await;
    let frame = ws.recv_type("message.new").await;
    assert_eq!(
        frame["client_id"], client_id,
        "echo of another send: {frame}"
    );
    frame
}

/// Seqs of the frames that carry one.
pub fn seqs(frames: &[Value]) -> Vec<u64> {
    frames.iter().filter_map(|f| f["seq"].as_u64()).collect()
}
