//! The command line: goose's own options (`--host`, `--users`, `--increase-rate`,
//! `--run-time`, `--report-file`, `--threshold`, ...) flattened beside Vato's.

use clap::{Args, Parser};
use goose::config::GooseConfiguration;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The options every transaction reads (transactions are plain functions).
static OPTS: OnceLock<VatoOpts> = OnceLock::new();

pub fn set(opts: VatoOpts) {
    let _ = OPTS.set(opts);
}

pub fn get() -> &'static VatoOpts {
    OPTS.get().expect("options are set before the run")
}

#[derive(Parser)]
#[command(
    name = "vato-load",
    about = "Load test for Vato: login, conversation setup, WebSocket connect, real-time \
             messaging between pairs of users and REST send + history, with delivery \
             latency measured end to end.",
    long_about = None
)]
pub struct Cli {
    #[command(flatten)]
    pub goose: GooseConfiguration,
    #[command(flatten)]
    pub vato: VatoOpts,
}

#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Vato")]
pub struct VatoOpts {
    /// Users started per second (alias of goose's --increase-rate)
    #[arg(long, value_name = "RATE")]
    pub hatch_rate: Option<String>,

    /// Scenario weights, such as "messaging=20,login=1,setup=1,connect=1,rest=1".
    /// A weight of 0 leaves the scenario out. Scenarios not named keep their default.
    #[arg(long, value_name = "LIST", env = "VATO_LOAD_WEIGHTS")]
    pub weights: Option<String>,

    /// Messages each chatting user sends per second (open loop: message k is due at
    /// t0 + k/RATE whatever the server does). Total rate = messaging users x RATE.
    #[arg(long, value_name = "RATE", default_value_t = 1.0)]
    pub msg_rate: f64,

    /// Size of each message's content in bytes (at least the id header, ~40 bytes)
    #[arg(long, value_name = "BYTES", default_value_t = 64)]
    pub msg_size: usize,

    /// A message not received by the other party within this time is lost
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    pub deliver_timeout_ms: u64,

    /// How long a user waits for its partner to register and connect
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub pair_timeout_s: u64,

    /// Thresholds file (JSON: goose rules plus Vato's loss limits). Without it the
    /// built-in copy of loadtest/thresholds.json applies. Goose's --threshold rules
    /// given on the command line replace the file's goose rules.
    #[arg(long, value_name = "FILE")]
    pub threshold_file: Option<PathBuf>,

    /// Judge no thresholds at all (neither goose's nor Vato's loss limits)
    #[arg(long)]
    pub no_thresholds: bool,

    /// WebSocket base URL(s), such as ws://127.0.0.1:8001, used round robin by
    /// scenario-local user index so the two users of a pair sit on different nodes.
    /// Repeatable. Default: the --host.
    #[arg(long = "ws-node", value_name = "URL")]
    pub ws_nodes: Vec<String>,

    /// Append the one-line summary to this file too
    #[arg(long, value_name = "FILE")]
    pub summary_file: Option<PathBuf>,

    /// Prefix of the user names this run registers (default: random per run)
    #[arg(long, value_name = "PREFIX")]
    pub run_id: Option<String>,

    /// Think time of the login scenario between logins, in ms (min,max)
    #[arg(long, value_name = "MIN,MAX", default_value = "5000,10000")]
    pub login_wait_ms: String,

    /// Think time of the setup, connect and REST scenarios, in ms (min,max)
    #[arg(long, value_name = "MIN,MAX", default_value = "250,750")]
    pub wait_ms: String,

    // ---- idle-socket benchmark mode (no goose run) ----
    /// Idle mode: open this many authenticated WebSockets and hold them, reporting
    /// the open rate and, with --server-pid, the server's RSS per socket
    #[arg(long, value_name = "N", help_heading = "Idle sockets")]
    pub idle_sockets: Option<usize>,

    /// Idle mode: accounts the sockets are spread over (each registers once)
    #[arg(
        long,
        value_name = "N",
        default_value_t = 4,
        help_heading = "Idle sockets"
    )]
    pub idle_users: usize,

    /// Idle mode: loopback source addresses 127.0.0.1..127.0.0.N, the port
    /// chosen at connect (IP_BIND_ADDRESS_NO_PORT). One address has ~28k ports
    /// towards one server port, and connect slows down as they fill (past ~10k
    /// sockets the open rate fell from ~4,000/s to ~100/s here); 1 = no bind
    #[arg(
        long,
        value_name = "N",
        default_value_t = 4,
        help_heading = "Idle sockets"
    )]
    pub source_ips: u8,

    /// Idle mode: sockets being opened at once
    #[arg(
        long,
        value_name = "N",
        default_value_t = 64,
        help_heading = "Idle sockets"
    )]
    pub open_concurrency: usize,

    /// Idle mode: seconds to hold the sockets open before checking them
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 10,
        help_heading = "Idle sockets"
    )]
    pub idle_hold_s: u64,

    /// Idle mode: the server's pid, to read its RSS from /proc (the RSS per socket
    /// is the growth over the second half of the sockets)
    #[arg(long, value_name = "PID", help_heading = "Idle sockets")]
    pub server_pid: Option<u32>,
}

impl VatoOpts {
    pub fn wait_range(text: &str) -> Result<(u64, u64), String> {
        let (a, b) = text
            .split_once(',')
            .ok_or_else(|| format!("{text:?}: expected MIN,MAX in ms"))?;
        let a: u64 = a.trim().parse().map_err(|_| format!("{text:?}: bad MIN"))?;
        let b: u64 = b.trim().parse().map_err(|_| format!("{text:?}: bad MAX"))?;
        if a > b {
            return Err(format!("{text:?}: MIN > MAX"));
        }
        Ok((a, b))
    }
}
