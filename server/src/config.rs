//! Command line and environment: every flag is also a `VATO_*` variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "vato-server",
    version,
    about = "Vato: the Vatochito chat API (REST + WebSocket) on a durable event log"
)]
pub struct Config {
    /// Address to listen on (host:port). Port 0 picks a free port; the
    /// chosen address is printed as `vato-server listening on http://ADDR`.
    #[arg(long, env = "VATO_LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,

    /// Directory of the event log, its index and snapshots.
    #[arg(long, env = "VATO_DATA_DIR", default_value = "vato-data")]
    pub data_dir: PathBuf,

    /// Secret that signs the JWTs (HS256). Required unless --dev or --demo.
    #[arg(long, env = "VATO_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Development mode: a JWT secret is generated and kept in the data
    /// directory, and test hooks (`/api/dev/...`) are served.
    #[arg(long, env = "VATO_DEV")]
    pub dev: bool,

    /// --dev, plus the demo accounts lalo/lalo123 and kalu/kalu123 and their
    /// direct conversation (created once; restarts keep them).
    #[arg(long, env = "VATO_DEMO")]
    pub demo: bool,

    /// NATS URL(s), comma-separated, for cluster mode: JetStream becomes
    /// the sequencer and log of record. Without it: embedded mode.
    #[arg(long, env = "VATO_NATS_URL")]
    pub nats_url: Option<String>,

    /// Cluster mode: the JetStream stream's name.
    #[arg(long, env = "VATO_STREAM_NAME", default_value = "VATO")]
    pub stream_name: String,

    /// Cluster mode: stream replicas (3 on a 3-node NATS cluster).
    #[arg(long, env = "VATO_STREAM_REPLICAS", default_value_t = 1)]
    pub stream_replicas: usize,

    /// Cluster mode: stream storage, `file` or `memory`.
    #[arg(long, env = "VATO_STREAM_STORAGE", default_value = "file", value_parser = ["file", "memory"])]
    pub stream_storage: String,

    /// Cluster mode: drop stream entries older than this (seconds; 0 keeps
    /// everything). A node whose data dir is older than that cannot catch up.
    #[arg(long, env = "VATO_STREAM_MAX_AGE_SECS", default_value_t = 0)]
    pub stream_max_age_secs: u64,

    /// Cluster mode: how long a publish may take before a request fails with
    /// 503 (the wait for the node's own applier is five times this).
    #[arg(long, env = "VATO_NATS_TIMEOUT_MS", default_value_t = 2000)]
    pub nats_timeout_ms: u64,

    /// Access token lifetime, minutes.
    #[arg(long, env = "VATO_ACCESS_TOKEN_MINUTES", default_value_t = 15)]
    pub access_token_minutes: u64,

    /// Refresh token lifetime, days.
    #[arg(long, env = "VATO_REFRESH_TOKEN_DAYS", default_value_t = 30)]
    pub refresh_token_days: u64,

    /// Allowed CORS origins, comma-separated, or `*` for any. Unset: none,
    /// or any with --dev/--demo (as the original's development settings).
    #[arg(long, env = "VATO_CORS_ORIGINS", default_value = "")]
    pub cors_origins: String,

    /// Largest WebSocket message accepted (bytes); larger closes with 1009.
    #[arg(long, env = "VATO_MAX_FRAME_BYTES", default_value_t = 65_536)]
    pub max_frame_bytes: usize,

    /// Longest message content, in characters.
    #[arg(long, env = "VATO_MAX_MESSAGE_CHARS", default_value_t = 4096)]
    pub max_message_chars: usize,

    /// Longest group description, in characters (the original had no
    /// limit: issue 17 filled a victim's list with 250,000-character ones).
    #[arg(long, env = "VATO_MAX_DESCRIPTION_CHARS", default_value_t = 2048)]
    pub max_description_chars: usize,

    /// Largest REST request body (bytes); larger is a 413.
    #[arg(long, env = "VATO_MAX_BODY_BYTES", default_value_t = 262_144)]
    pub max_body_bytes: usize,

    /// Frames a socket may have waiting; a reader slower than that is
    /// closed with 4408 and resumes with `since`.
    #[arg(long, env = "VATO_OUTBOUND_QUEUE", default_value_t = 1024)]
    pub outbound_queue: usize,

    /// Most simultaneous WebSocket connections; more get HTTP 503.
    #[arg(long, env = "VATO_MAX_CONNECTIONS", default_value_t = 200_000)]
    pub max_connections: usize,

    // ---- Per-user limits (issue 17); per node in cluster mode. ----
    /// Messages (sends, edits, reactions) per second per user, across all
    /// their sockets and REST; over it: 429 / `rate_limited`. 0 disables.
    #[arg(long, env = "VATO_USER_MSG_RATE", default_value_t = 30)]
    pub user_msg_rate: u32,

    /// How many messages a user may send at once before --user-msg-rate
    /// applies.
    #[arg(long, env = "VATO_USER_MSG_BURST", default_value_t = 100)]
    pub user_msg_burst: u32,

    /// Message content bytes per second per user (bursts of one second's
    /// worth); 0 disables.
    #[arg(long, env = "VATO_USER_BYTES_RATE", default_value_t = 1_048_576)]
    pub user_bytes_rate: u32,

    /// Most open WebSockets per user; more get HTTP 429. 0 disables.
    #[arg(long, env = "VATO_MAX_SOCKETS_PER_USER", default_value_t = 64)]
    pub max_sockets_per_user: usize,

    /// Write a snapshot every this many events: the messages changed since
    /// the last one are what the server holds in RAM (about 30 MiB at the
    /// default), and what a restart replays.
    #[arg(long, env = "VATO_SNAPSHOT_EVERY", default_value_t = vato_eventlog::store::DEFAULT_SNAPSHOT_EVERY)]
    pub snapshot_every: u64,

    /// The time slice the log writer's thread asks the kernel for, µs
    /// (Linux 6.12 and later; 0: the kernel's default). A woken
    /// thread with a shorter slice preempts the running one, so the writer
    /// is not kept waiting behind busy socket workers after each fdatasync.
    #[arg(long, env = "VATO_WRITER_SLICE_US", default_value_t = vato_eventlog::store::DEFAULT_WRITER_SLICE_US)]
    pub writer_slice_us: u64,

    /// When the log is busy (its last group commit took four commands or
    /// more), the writer waits this long, µs, for more before deciding the
    /// next commit: fewer, larger commits, each paying one device write and
    /// one cache flush (0: never waits).
    #[arg(long, env = "VATO_GROUP_COMMIT_GATHER_US", default_value_t = vato_eventlog::store::DEFAULT_GATHER_US,
          value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub group_commit_gather_us: u64,

    /// Length of each write-ahead-log segment, MiB (preallocated and
    /// zero-filled ahead of use; a few are kept and recycled).
    #[arg(long, env = "VATO_WAL_SEGMENT_MIB", default_value_t = 16,
          value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub wal_segment_mib: u64,

    /// Memory for each of the three read caches, MiB: the log's chunks
    /// (sled's page cache: replays, resumes), the conversation index's and
    /// the history's (redb's: resumes, pages, search). Each fills only as
    /// it is read; reads beyond it go to the disk (and the kernel's page
    /// cache).
    #[arg(long, env = "VATO_CACHE_MIB", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub cache_mib: u64,

    // HTTP connection hygiene and operations (issue 17). A `0` disables a
    // limit.
    /// Seconds a client has to send a request's headers, counted from the
    /// moment the connection waits for a request (a fresh or a kept-alive
    /// one): so it is also the idle keep-alive timeout.
    #[arg(long, env = "VATO_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub header_timeout_secs: u64,

    /// Seconds a REST request has, once its headers are in, to send its
    /// body and be answered; later is a 408. WebSocket traffic is exempt.
    #[arg(long, env = "VATO_BODY_TIMEOUT_SECS", default_value_t = 30)]
    pub body_timeout_secs: u64,

    /// Most simultaneous HTTP connections (WebSocket handshakes included;
    /// an upgraded socket counts against --max-connections instead). More
    /// are closed at accept.
    #[arg(long, env = "VATO_MAX_HTTP_CONNECTIONS", default_value_t = 10_000)]
    pub max_http_connections: usize,

    /// Largest request head (request line and headers, bytes); larger gets
    /// 431 and the connection is closed. At least 8192.
    #[arg(long, env = "VATO_MAX_HEADER_BYTES", default_value_t = 65_536, value_parser = clap::value_parser!(u64).range(8192..))]
    pub max_header_bytes: u64,

    /// On SIGTERM, seconds to wait for open connections before dropping
    /// them; the store is closed cleanly either way.
    #[arg(long, env = "VATO_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,

    /// Serve `/metrics` only on this address (host:port), not on --listen.
    #[arg(long, env = "VATO_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// `/metrics` on --listen requires `Authorization: Bearer <token>`.
    #[arg(long, env = "VATO_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// Registrations per minute per client address (IPv6: per /64), with
    /// bursts of as many; more get 429 with `Retry-After`. 0 disables it
    /// (load benchmarks that register thousands of users from one host).
    #[arg(long, env = "VATO_REGISTER_RATE", default_value_t = 20)]
    pub register_rate: u32,

    /// Failed logins per minute per client address (IPv6: per /64), with
    /// bursts of as many; past them every login from that address gets 429
    /// with `Retry-After`. 0 disables it.
    #[arg(long, env = "VATO_LOGIN_FAIL_RATE", default_value_t = 10)]
    pub login_fail_rate: u32,

    /// Failed logins per minute per account (from any address); past them
    /// the account gets 429 from addresses that failed a login in the last
    /// minute, while other addresses still reach the password check. 0
    /// disables it.
    #[arg(long, env = "VATO_LOGIN_USER_FAIL_RATE", default_value_t = 10)]
    pub login_user_fail_rate: u32,

    /// Most messages one history search (`?search=`) scans, newest first
    /// from its cursor; older ones are left for the next page. 0: no
    /// bound.
    #[arg(long, env = "VATO_SEARCH_SCAN_LIMIT", default_value_t = 10_000)]
    pub search_scan_limit: usize,

    /// Most messages a history request without `?limit=` answers (the
    /// newest ones; the oldest after an `after` cursor). 0: no bound, the
    /// whole history, as the original served it to clients that never
    /// page.
    #[arg(long, env = "VATO_HISTORY_MAX", default_value_t = 0)]
    pub history_max: usize,

    /// Kernel send buffer of each accepted connection (SO_SNDBUF, bytes;
    /// Linux doubles it for bookkeeping): what a client that stops reading
    /// can make the kernel hold. 0 keeps the kernel's default (autotuned
    /// up to net.ipv4.tcp_wmem's maximum, 4 MiB by default).
    #[arg(long, env = "VATO_SOCKET_SNDBUF_BYTES", default_value_t = 262_144)]
    pub socket_sndbuf_bytes: usize,

    /// Seconds between delivery probes: a message through the whole path
    /// (sequencer, log, fan-out) to a subscriber of this node's own;
    /// `/readyz` wants one within 3 intervals. 0 disables the probe; at
    /// most a day.
    #[arg(long, env = "VATO_PROBE_INTERVAL_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub probe_interval_secs: u64,

    /// Log lines as `text` (for people) or `json` (one object a line, with
    /// the request or socket span's fields, for log shippers).
    #[arg(long, env = "VATO_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Seconds a user stays online after their last socket (on every
    /// node) closed; a socket opened within it changes nothing. Then they
    /// go offline and `last_seen_at` is recorded (issue 13).
    #[arg(long, env = "VATO_PRESENCE_GRACE_SECS", default_value_t = 10)]
    pub presence_grace_secs: u64,

    /// Largest avatar upload (bytes of the file itself); larger gets a 400
    /// field error on `avatar`, read no further (issue 13).
    #[arg(long, env = "VATO_MAX_AVATAR_BYTES", default_value_t = 5 * 1024 * 1024)]
    pub max_avatar_bytes: usize,

    /// Most files in one multipart send (`uploaded_files` parts); more
    /// get a 400 (issue 14).
    #[arg(long, env = "VATO_MAX_ATTACHMENTS", default_value_t = 10)]
    pub max_attachments: usize,

    /// Largest attachment (bytes of one file); larger gets a 413, read no
    /// further (issue 14). A request announcing more than
    /// `--max-attachments` such files plus `--max-body-bytes` in its
    /// `Content-Length` gets the 413 before any of it is read.
    #[arg(long, env = "VATO_MAX_UPLOAD_BYTES", default_value_t = 25 * 1024 * 1024)]
    pub max_upload_bytes: usize,

    /// Cluster mode: the JetStream Object Store bucket of the media store
    /// (avatars, attachments), shared by every node.
    #[arg(long, env = "VATO_MEDIA_BUCKET", default_value = "vato-media")]
    pub media_bucket: String,

    /// Seconds a media file nothing refers to any more is kept before it
    /// is removed: covers an upload of the same bytes on another node
    /// whose event is still on its way.
    #[arg(long, env = "VATO_MEDIA_GC_GRACE_SECS", default_value_t = 60)]
    pub media_gc_grace_secs: u64,

    /// The server's public base URL (`https://chat.example.com`), for the
    /// absolute media URLs in socket frames and wherever no request is at
    /// hand; REST answers use it too when set. Without it, REST answers
    /// use the request's `Host`, frames `http://` and the listen address.
    #[arg(long, env = "VATO_PUBLIC_URL", value_parser = public_url)]
    pub public_url: Option<String>,

    /// Where phone login codes are sent: each is POSTed as JSON
    /// `{"phone_number", "code", "message"}` to this URL, which hands it
    /// to an SMS provider (issue 13). Without it (and without --dev),
    /// `phone/request-otp/` answers 503.
    #[arg(long, env = "VATO_SMS_WEBHOOK")]
    pub sms_webhook: Option<String>,

    /// Phone login codes an hour per phone number and per client address
    /// (IPv6: per /64), with bursts of as many; more get 429 with
    /// `Retry-After`. 0 disables it.
    #[arg(long, env = "VATO_OTP_RATE", default_value_t = 5)]
    pub otp_rate: u32,

    /// The OAuth client id Google ID tokens must be issued for (their
    /// `aud`). Without it, `POST /api/auth/google/` answers 503.
    #[arg(long, env = "VATO_GOOGLE_CLIENT_ID")]
    pub google_client_id: Option<String>,

    /// Where Google's token signing keys (a JWK set) are fetched from.
    #[arg(
        long,
        env = "VATO_GOOGLE_JWKS_URL",
        default_value = "https://www.googleapis.com/oauth2/v3/certs"
    )]
    pub google_jwks_url: String,

    /// Seconds a call rings before it is `missed` when nobody answered
    /// (issue 15); at least 1.
    #[arg(long, env = "VATO_CALL_RING_SECS", default_value_t = 45,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub call_ring_secs: u64,

    /// Where notifications for members who are away are pushed (issue 15):
    /// each is POSTed as JSON `{"id", "user_id", "kind", "conversation_id",
    /// "title", "body", "data", "devices"}` with an `Idempotency-Key`
    /// header equal to its id, retried until a 2xx. Without it nothing is
    /// pushed; notifications are still listed.
    #[arg(long, env = "VATO_PUSH_WEBHOOK")]
    pub push_webhook: Option<String>,

    /// How long one push may take (connect, send, answer) before it counts
    /// as failed and is retried.
    #[arg(long, env = "VATO_PUSH_TIMEOUT_MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub push_timeout_ms: u64,

    /// The longest wait between two tries of a push that keeps failing
    /// (the wait starts at 250 ms and doubles up to this).
    #[arg(long, env = "VATO_PUSH_RETRY_MAX_MS", default_value_t = 60_000,
          value_parser = clap::value_parser!(u64).range(250..=3_600_000))]
    pub push_retry_max_ms: u64,
}

/// `--public-url`: an `http(s)://host[:port][/path]` URL, kept without
/// its trailing slash.
fn public_url(value: &str) -> Result<String, String> {
    let url = value.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("must start with http:// or https://")?;
    let host = rest.split('/').next().unwrap_or_default();
    let valid = host.parse::<axum::http::uri::Authority>().is_ok()
        && !host.contains('@')
        && !url.contains(['?', '#', ' ']);
    if valid {
        Ok(url.to_owned())
    } else {
        Err("must be a URL like https://chat.example.com".into())
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    /// Test hooks and a generated secret are allowed.
    pub fn dev_mode(&self) -> bool {
        self.dev || self.demo
    }

    /// The CORS origins in effect: `--cors-origins` if given; otherwise any
    /// origin in development mode (a Flutter web build served from another
    /// port works against `--demo`, as with the original's DEBUG settings)
    /// and none in production.
    pub fn cors_origins(&self) -> &str {
        match self.cors_origins.trim() {
            "" if self.dev_mode() => "*",
            origins => origins,
        }
    }
}
