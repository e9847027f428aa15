//! `vato-check`: the original report's five test cases as assertions.
//!
//! The cases run in order, each building on the previous one's state:
//!
//! 1. `auth`: log in users A and B (or register fresh ones first);
//! 2. `conversation`: A creates the direct conversation, both list it;
//! 3. `connection`: both connect, ping/pong, refused handshakes;
//! 4. `realtime`: A→B, B→A, echo, a burst, seq order;
//! 5. `rest`: a REST send is delivered live and shows in history;
//! 6. `extended` (`--extended`): exactly-once resend, resume with `since`,
//!    typing, edit, delete, read; then `profile`: A's profile and
//!    settings written, validated, hidden where they should be, put back;
//!    `logout`: a second session of A is logged out and its refresh
//!    token refused (on B's node too); `presence`: B's set-offline and
//!    set-online reach A's socket as presence frames; `contact_block`: A
//!    blocks B, whose create-direct and posts are refused until unblocked;
//!    `groups` (issue 14): group administration, pins and forwards on
//!    groups of their own.
//!
//! Every check is reported exactly once (see [`PLAN`]); one that cannot run
//! because something it needs failed is reported as
//! `FAIL name: skipped: <dependency> failed`.

mod attachments;
mod auth;
mod avatar;
mod calls;
mod connection;
mod conversation;
mod extended;
mod groups;
mod inbox;
mod logout;
mod notifications;
mod presence;
mod profile;
mod realtime;
mod report;
mod rest;
mod session;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde_json::Value;

pub use report::{Outcome, Report};
use vato_client::Api;

/// Run the Vato end-to-end checks against a running server.
#[derive(Parser, Debug, Clone)]
#[command(name = "vato-check", version)]
pub struct Config {
    /// Base URL of the server (user A's node).
    #[arg(long, env = "VATO_CHECK_BASE", default_value = "http://127.0.0.1:8000")]
    pub base: String,

    /// Base URL for user B's REST calls (cluster mode); default: --base.
    #[arg(long, env = "VATO_CHECK_BASE_B")]
    pub base_b: Option<String>,

    /// WebSocket base for user B's sockets (cluster mode), e.g.
    /// ws://127.0.0.1:8001; default: derived from --base-b (http→ws).
    #[arg(long, env = "VATO_CHECK_WS_BASE")]
    pub ws_base: Option<String>,

    /// WebSocket path prefix: /ws/conversations/ (the report's) or /ws/chat/
    /// (the published clients').
    #[arg(long, env = "VATO_CHECK_WS_PATH", default_value = "/ws/conversations/")]
    pub ws_path: String,

    #[arg(long, env = "VATO_CHECK_USER_A", default_value = "lalo")]
    pub user_a: String,

    #[arg(long, env = "VATO_CHECK_PASSWORD_A", default_value = "lalo123")]
    pub password_a: String,

    #[arg(long, env = "VATO_CHECK_USER_B", default_value = "kalu")]
    pub user_b: String,

    #[arg(long, env = "VATO_CHECK_PASSWORD_B", default_value = "kalu123")]
    pub password_b: String,

    /// Register two new users instead of using --user-a/--user-b, so runs
    /// against a shared server don't share a conversation.
    #[arg(long, env = "VATO_CHECK_FRESH_USERS")]
    pub fresh_users: bool,

    /// Messages in the rapid burst.
    #[arg(long, env = "VATO_CHECK_BURST", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub burst: u32,

    /// How long to wait for each answer or frame, in milliseconds.
    #[arg(long, env = "VATO_CHECK_TIMEOUT_MS", default_value_t = 5000)]
    pub timeout_ms: u64,

    /// How long to keep listening after the expected frames, to catch
    /// duplicates and frames that should not arrive, in milliseconds.
    #[arg(long, env = "VATO_CHECK_GRACE_MS", default_value_t = 200)]
    pub grace_ms: u64,

    /// Also check Vato's additions: exactly-once resend, resume with since,
    /// typing, edit, delete, read.
    #[arg(long, env = "VATO_CHECK_EXTENDED")]
    pub extended: bool,

    /// Also write the results as JSON to this file.
    #[arg(long, env = "VATO_CHECK_JSON")]
    pub json: Option<PathBuf>,
}

/// Every check name, in the order they are reported.
pub const PLAN: &[&str] = &[
    "auth.login_a",
    "auth.login_b",
    "auth.wrong_password",
    "conv.create_direct",
    "conv.listed_a",
    "conv.listed_b",
    "ws.connect_a",
    "ws.connect_b",
    "ws.ping_pong",
    "ws.refuse_no_token",
    "ws.refuse_bad_token",
    "ws.refuse_non_member",
    "realtime.a_to_b",
    "realtime.b_to_a",
    "realtime.echo",
    "realtime.burst_order",
    "realtime.seq_increasing",
    "rest.send_201",
    "rest.live_delivery",
    "rest.history",
];

/// The checks `--extended` adds.
pub const PLAN_EXTENDED: &[&str] = &[
    "ext.client_id_once",
    "ext.resume_since",
    "ext.typing",
    "ext.edit",
    "ext.delete",
    "ext.read",
    "ext.profile",
    "ext.settings",
    "ext.logout",
    "ext.presence",
    "ext.contact_block",
    "ext.group_admin",
    "ext.pin",
    "ext.forward",
    "ext.attachment",
    "ext.avatar",
    "ext.call",
    "ext.notification",
];

/// What every case needs: where to go and how long to wait.
pub struct Ctx {
    pub config: Config,
    pub api_a: Api,
    pub api_b: Api,
    pub ws_a: String,
    pub ws_b: String,
    pub ws_path: String,
    pub timeout: Duration,
    pub grace: Duration,
    /// Makes this run's users, contents and client ids unique.
    pub run_id: String,
}

impl Ctx {
    fn new(config: &Config) -> Result<Self, String> {
        let timeout = Duration::from_millis(config.timeout_ms.max(1));
        // No proxy: the sockets go straight to the server, so REST must too.
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(timeout)
            .build()
            .map_err(|err| format!("cannot build the HTTP client: {err}"))?;
        let base_b = config.base_b.clone().unwrap_or_else(|| config.base.clone());
        let ws_b = match &config.ws_base {
            Some(ws) => ws.trim_end_matches('/').to_owned(),
            None => ws_from_http(&base_b)?,
        };
        Ok(Self {
            api_a: Api::with_http(http.clone(), &config.base),
            api_b: Api::with_http(http, &base_b),
            ws_a: ws_from_http(&config.base)?,
            ws_b,
            ws_path: normalize_path(&config.ws_path),
            timeout,
            grace: Duration::from_millis(config.grace_ms),
            run_id: unique_token(),
            config: config.clone(),
        })
    }

    /// A fresh token like `k3f9x2a1-0qz8w7ma`, unique within and across runs.
    pub fn token(&self) -> String {
        format!("{}-{}", self.run_id, unique_token())
    }
}

/// Runs every planned check and returns the report (lines already printed).
pub async fn run(config: &Config) -> Report {
    run_with(config, true).await
}

/// Like [`run`]; `echo` decides whether lines are printed as they come.
pub async fn run_with(config: &Config, echo: bool) -> Report {
    let mut plan = PLAN.to_vec();
    if config.extended {
        plan.extend_from_slice(PLAN_EXTENDED);
    }
    let mut report = Report::new(plan, echo);
    match Ctx::new(config) {
        Ok(ctx) => run_cases(&ctx, &mut report).await,
        Err(reason) => {
            report.record(PLAN[0], Err(reason));
            report.skip_rest(PLAN[0]);
        }
    }
    report.finish();
    report
}

async fn run_cases(ctx: &Ctx, report: &mut Report) {
    let (a, b) = auth::run(ctx, report).await;
    let (a, b) = match (a, b) {
        (Some(a), Some(b)) => (a, b),
        (None, _) => return report.skip_rest("auth.login_a"),
        (_, None) => return report.skip_rest("auth.login_b"),
    };
    let Some(conversation) = conversation::run(ctx, report, &a, &b).await else {
        return report.skip_rest("conv.create_direct");
    };
    let sockets = connection::run(ctx, report, &a, &b, conversation).await;
    let Some((mut socket_a, mut socket_b)) = sockets else {
        let dependency = if report.has_failed("ws.connect_a") {
            "ws.connect_a"
        } else {
            "ws.connect_b"
        };
        report.skip(realtime::CHECKS, dependency);
        rest::run(ctx, report, &a, &b, conversation, Err(dependency)).await;
        return report.skip_rest(dependency);
    };
    realtime::run(ctx, report, &a, &b, &mut socket_a, &mut socket_b).await;
    rest::run(
        ctx,
        report,
        &a,
        &b,
        conversation,
        Ok((&mut socket_a, &mut socket_b)),
    )
    .await;
    if ctx.config.extended {
        extended::run(ctx, report, &a, &b, conversation, socket_a, socket_b).await;
        report.record("ext.profile", profile::profile(ctx, &a, &b).await);
        report.record("ext.settings", profile::settings(&a, &b).await);
        report.record("ext.logout", logout::logout(ctx, &a).await);
        let result = presence::presence(ctx, &a, &b, conversation).await;
        report.record("ext.presence", result);
        let result = extended::contact_block(ctx, &a, &b, conversation).await;
        report.record("ext.contact_block", result);
        report.record("ext.group_admin", groups::group_admin(ctx, &a, &b).await);
        report.record("ext.pin", groups::pin(ctx, &a, &b).await);
        let result = groups::forward(ctx, &a, &b, conversation).await;
        report.record("ext.forward", result);
        let result = attachments::attachment(ctx, &a, &b, conversation).await;
        report.record("ext.attachment", result);
        report.record("ext.avatar", avatar::avatar(ctx, &a, &b).await);
        let result = calls::call(ctx, &a, &b, conversation).await;
        report.record("ext.call", result);
        let result = notifications::notification(ctx, &a).await;
        report.record("ext.notification", result);
    }
}

/// `http://h:p/` → `ws://h:p`, `https://` → `wss://`.
fn ws_from_http(base: &str) -> Result<String, String> {
    let known = ["http://", "https://", "ws://", "wss://"];
    if known.iter().any(|scheme| base.starts_with(scheme)) {
        Ok(vato_client::socket::ws_base(base))
    } else {
        Err(format!(
            "base URL {base:?} must start with http:// or https://"
        ))
    }
}

/// `ws/chat` → `/ws/chat/`.
fn normalize_path(path: &str) -> String {
    format!("/{}/", path.trim_matches('/'))
}

/// A short random string: the std hasher is seeded per process, and the
/// clock and a counter separate calls within one process.
pub fn unique_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    hasher.write_u128(nanos);
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    let hash = hasher.finish();
    // Base 36 keeps it short and valid in usernames.
    let mut n = hash;
    let mut out = String::new();
    for _ in 0..8 {
        let digit = (n % 36) as u32;
        out.push(char::from_digit(digit, 36).unwrap_or('0'));
        n /= 36;
    }
    out
}

/// A message this run sent, and how to recognise its frames.
#[derive(Debug, Clone)]
pub struct Sent {
    pub content: String,
    pub client_id: String,
    /// When the send started: delivery latencies count from here.
    pub at: std::time::Instant,
}

impl Sent {
    /// Is `frame` a `message.new` for this message? Matched by the client id
    /// or the unique content, so a frame with altered content still matches
    /// and fails on content instead of timing out.
    pub fn is_new(&self, frame: &Value) -> bool {
        frame["type"] == "message.new" && self.is_mine(&frame["data"], frame)
    }

    fn is_mine(&self, data: &Value, frame: &Value) -> bool {
        data["content"] == self.content.as_str()
            || frame["client_id"] == self.client_id.as_str()
            || data["client_id"] == self.client_id.as_str()
    }

    /// The content and client id the frame must carry.
    pub fn verify(&self, frame: &Value, sender: i64) -> Result<(), String> {
        let data = &frame["data"];
        if data["content"] != self.content.as_str() {
            return Err(format!(
                "content differs: sent {:?}, got {}",
                self.content, data["content"]
            ));
        }
        if frame["client_id"] != self.client_id.as_str() {
            return Err(format!(
                "top-level client_id should be {:?}, got {}",
                self.client_id, frame["client_id"]
            ));
        }
        if session::as_id(&data["sender"]["id"]) != Some(sender) {
            return Err(format!(
                "sender id should be {sender}, got {}",
                data["sender"]["id"]
            ));
        }
        Ok(())
    }
}

/// `{"type":"message.send", ...}` for `content` with a client id.
pub fn send_frame(content: &str, client_id: &str) -> Value {
    let mut frame = vato_client::frames::send(content, Some(client_id), None);
    frame["message_type"] = "text".into();
    frame
}

/// Checks that the seqs in `frames` only go up (`sync.done` repeats the last
/// seq by design and is skipped). Returns the range seen.
pub fn seq_order(frames: &[inbox::Frame]) -> Result<Option<(i64, i64)>, String> {
    let mut range: Option<(i64, i64)> = None;
    for frame in frames {
        if frame.kind() == "sync.done" {
            continue;
        }
        if frame.kind() == "message.new" && frame.seq().is_none() {
            return Err(format!(
                "message.new without a numeric top-level seq: {}",
                report::truncate(&frame.value.to_string(), 120)
            ));
        }
        let Some(seq) = frame.seq() else { continue };
        if frame.kind() == "message.new" {
            if let Some(own) = frame.value["data"]["seq"].as_i64() {
                if own != seq {
                    return Err(format!("message.new has seq {seq} but data.seq {own}"));
                }
            }
        }
        range = match range {
            Some((_, last)) if seq <= last => {
                return Err(format!("seq {seq} ({}) after seq {last}", frame.kind()));
            }
            Some((first, _)) => Some((first, seq)),
            None => Some((seq, seq)),
        };
    }
    Ok(range)
}

/// `1 message`, `23 messages`.
pub fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("{count} {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_ws_urls() {
        assert_eq!(
            ws_from_http("http://127.0.0.1:8000/").as_deref(),
            Ok("ws://127.0.0.1:8000")
        );
        assert_eq!(
            ws_from_http("https://chat.example").as_deref(),
            Ok("wss://chat.example")
        );
        assert!(ws_from_http("127.0.0.1:8000").is_err());
        assert_eq!(normalize_path("ws/chat"), "/ws/chat/");
        assert_eq!(normalize_path("/ws/conversations/"), "/ws/conversations/");
    }

    #[test]
    fn tokens_differ() {
        let a = unique_token();
        let b = unique_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 8);
    }

    fn frame(value: Value) -> inbox::Frame {
        inbox::Frame {
            value,
            at: std::time::Instant::now(),
        }
    }

    #[test]
    fn seq_order_catches_repeats() {
        let ok = [
            frame(serde_json::json!({"type": "message.new", "seq": 3, "data": {"seq": 3}})),
            frame(serde_json::json!({"type": "typing"})),
            frame(serde_json::json!({"type": "message.read", "seq": 4})),
            frame(serde_json::json!({"type": "sync.done", "seq": 4})),
        ];
        assert_eq!(seq_order(&ok), Ok(Some((3, 4))));
        let repeat = [
            frame(serde_json::json!({"type": "message.new", "seq": 3})),
            frame(serde_json::json!({"type": "message.new", "seq": 3})),
        ];
        assert!(seq_order(&repeat).is_err());
        let missing = [frame(serde_json::json!({"type": "message.new"}))];
        assert!(seq_order(&missing).is_err());
    }
}
