//! Test harness: starts the real `vato-server` binary on a free port with
//! its own data directory, and the contract's key sets and the assertions
//! the tests share. Talking to the server, REST and WebSocket, is
//! `vato-client`'s job: its items are re-exported here so that a test file
//! needs only `use common::*;`.
//!
//! Each test binary uses a different subset of these helpers and
//! re-exports, hence the `allow`.
#![allow(dead_code, unused_imports)]

pub mod hook;

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub use vato_client::objects::{
    ATTACHMENT_KEYS, CONTACT_KEYS, CONVERSATION_KEYS, MESSAGE_KEYS, PROFILE_KEYS, SETTINGS_KEYS,
    USER_KEYS,
};
pub use vato_client::socket::{send_ws, seqs};
pub use vato_client::{frames, message_path, messages_path, ws_url, Api, Resp, User, Ws, TIMEOUT};

/// Password of every user the tests register.
pub const PASSWORD: &str = "correct-horse";

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
    data_dir: PathBuf,
    /// The data directory when the server owns it (not shared with a
    /// restart).
    _own_dir: Option<TempDir>,
    /// An API client without credentials; every client of this server
    /// shares its connection pool.
    api: Api,
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
        Server {
            child,
            api: Api::new(&base),
            base,
            data_dir: data_dir.to_path_buf(),
            _own_dir: None,
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server's resident memory (VmRSS), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let pid = self.child.id().expect("server still running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS");
        kib * 1024
    }

    /// The kernel send queues (bytes written, not yet acknowledged by the
    /// peer) of the server's established TCP connections, from
    /// /proc/net/tcp and tcp6: the `tx_queue` of every socket whose local
    /// port is the server's.
    pub fn kernel_send_queues(&self) -> Vec<u64> {
        let port = Api::new(&self.base).port();
        let mut queues = Vec::new();
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let Ok(text) = std::fs::read_to_string(table) else {
                continue;
            };
            for line in text.lines().skip(1) {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let (Some(local), Some(state), Some(queues_field)) =
                    (fields.get(1), fields.get(3), fields.get(4))
                else {
                    continue;
                };
                let local_port = local
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok());
                // 01: ESTABLISHED.
                if local_port != Some(port) || *state != "01" {
                    continue;
                }
                if let Some(tx) = queues_field
                    .split(':')
                    .next()
                    .and_then(|q| u64::from_str_radix(q, 16).ok())
                {
                    queues.push(tx);
                }
            }
        }
        queues
    }

    /// An API client without credentials.
    pub fn anon(&self) -> Api {
        self.api.clone()
    }

    /// An API client sending `Authorization: Bearer <token>`.
    pub fn with_token(&self, token: &str) -> Api {
        self.api.with_token(token)
    }

    /// Registers `username` with [`PASSWORD`] and returns the logged-in user.
    pub async fn register(&self, username: &str) -> User {
        let resp = self
            .api
            .register(username, PASSWORD)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(resp.status, 201, "register {username}: {}", resp.body);
        self.user_from(&resp.body)
    }

    pub async fn login(&self, username: &str, password: &str) -> User {
        let resp = self
            .api
            .login(username, password)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
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
        User::from_session(&self.api, body).unwrap_or_else(|e| panic!("{e}"))
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

/// The calls most tests make to set the scene, answered or failing the
/// test: vato-client's typed calls plus the status the test expects.
pub trait Scene {
    /// The direct conversation with `other` (created or existing).
    async fn direct_with(&self, other: &User) -> u64;

    /// Posts a text message over REST; asserts the 201 and returns the
    /// message object.
    async fn send_message(&self, conv: u64, content: &str) -> Value;

    /// A history page (`query` is the part after `?`, may be empty).
    async fn history(&self, conv: u64, query: &str) -> Vec<Value>;

    /// The conversation as the list endpoint shows it to this user.
    async fn listed_conversation(&self, conv: u64) -> Value;
}

impl Scene for Api {
    async fn direct_with(&self, other: &User) -> u64 {
        let resp = answered(self.create_direct(other.id).await);
        assert!(
            resp.status == 200 || resp.status == 201,
            "create-direct: {} {}",
            resp.status,
            resp.body
        );
        resp.id().expect("conversation id")
    }

    async fn send_message(&self, conv: u64, content: &str) -> Value {
        let resp = answered(self.send(conv, content, None).await);
        assert_eq!(resp.status, 201, "send: {}", resp.body);
        resp.body
    }

    async fn history(&self, conv: u64, query: &str) -> Vec<Value> {
        let resp = answered(self.messages(conv, query).await);
        assert_eq!(resp.status, 200, "history: {}", resp.body);
        resp.body.as_array().expect("history array").clone()
    }

    async fn listed_conversation(&self, conv: u64) -> Value {
        let resp = answered(self.conversations().await);
        assert_eq!(resp.status, 200, "list: {}", resp.body);
        resp.body
            .as_array()
            .expect("conversation list")
            .iter()
            .find(|c| c["id"] == conv)
            .cloned()
            .unwrap_or_else(|| panic!("conversation {conv} not listed"))
    }
}

/// The answer of a typed call, which must be JSON; a transport error fails
/// the test.
pub fn answered(resp: Result<Resp, vato_client::RestError>) -> Resp {
    let resp = resp.unwrap_or_else(|e| panic!("{e}"));
    assert!(resp.is_json(), "body is not JSON: {}", resp.describe());
    resp
}

/// The files in a media directory, sorted (none when it does not exist).
pub fn media_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Waits (up to 5 s) until the media directory holds exactly `expected`.
pub async fn wait_for_files(dir: &Path, expected: &[impl AsRef<str>]) {
    let mut expected: Vec<String> = expected.iter().map(|s| s.as_ref().to_owned()).collect();
    expected.sort();
    for _ in 0..100 {
        if media_files(dir) == expected {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(media_files(dir), expected, "files in {}", dir.display());
}

/// Waits (up to 5 s) until the media directory holds no file.
pub async fn wait_for_no_files(dir: &Path) {
    wait_for_files(dir, &[] as &[&str]).await;
}
