//! `vato-admin`: inspect and check a Vato data directory (the server must
//! be stopped: sled holds an exclusive lock on its files).
//!
//! * `verify`  — rebuilds the read models from offset 0 (in RAM) and checks
//!   they equal the history tree + snapshot + tail the server would start
//!   from, and that every conversation's seqs are gap-free in the index.
//!   Exit 1 on a mismatch. (It holds the whole history in RAM twice.)
//! * `rebuild` — makes the history tree and snapshot again from the log
//!   (after a damaged tree is reported); the log is only read.
//! * `dump`    — prints events as JSON lines.
//! * `stats`   — counts and bytes on disk.
//! * `generate` — fills a new data directory with users, conversations and
//!   messages through the real store (benchmarks; see `vato_tools::generate`).
//!
//! Like the server, each command opens the log, which migrates a data
//! directory still in the per-event layout.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vato_eventlog::log::Log;
use vato_eventlog::store;

#[derive(Parser)]
#[command(
    name = "vato-admin",
    version,
    about = "Inspect and check a Vato data directory"
)]
struct Cli {
    /// The server's data directory.
    #[arg(
        long,
        env = "VATO_DATA_DIR",
        default_value = "vato-data",
        global = true
    )]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Full replay equals snapshot + tail, and seqs are gap-free.
    Verify,
    /// Make the history tree and snapshot again from the log.
    Rebuild,
    /// Print events as JSON lines.
    Dump {
        #[arg(long, default_value_t = 0)]
        from: u64,
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Events, users, conversations, messages and bytes on disk.
    Stats,
    /// Fill a new data directory with users (`gen0`, `gen1`, ...), group
    /// conversations and messages, through the real store.
    Generate {
        #[arg(long)]
        messages: u64,
        #[arg(long, default_value_t = 10_000)]
        conversations: u64,
        #[arg(long, default_value_t = 20_000)]
        users: u64,
        /// Members of each conversation.
        #[arg(long, default_value_t = 8)]
        members: u64,
        /// How many conversations `gen0` is in (the first ones).
        #[arg(long, default_value_t = 500)]
        busy_conversations: u64,
        /// Bytes of each message's content.
        #[arg(long, default_value_t = 100)]
        content_bytes: usize,
        /// Every generated user's password (at least 8 characters).
        #[arg(long, env = "VATO_GENERATE_PASSWORD")]
        password: String,
    },
}

fn main() -> ExitCode {
    // Warnings by default; `RUST_LOG=info` shows each snapshot written.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vato-admin: {e}");
            ExitCode::FAILURE
        }
    }
}

type BoxError = Box<dyn std::error::Error>;

/// Opens the log, waiting up to 5 s for sled's file lock: a process that
/// just closed the store (a stopping server, a test) may hold it a moment
/// longer while sled's last I/O finishes. Still held after that: a server
/// is running on this directory.
fn open_log(dir: &std::path::Path) -> Result<Log, BoxError> {
    open_log_with(dir, Log::open)
}

/// [`open_log`] with `open` (`Log::open_reindexing` for `rebuild`).
fn open_log_with(
    dir: &std::path::Path,
    open: fn(&std::path::Path) -> Result<Log, vato_eventlog::log::LogError>,
) -> Result<Log, BoxError> {
    if !Log::exists_in(dir) {
        return Err(format!("{} holds no Vato log", dir.display()).into());
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match open(dir) {
            Err(e) if e.to_string().contains("could not acquire lock") => {
                if std::time::Instant::now() >= deadline {
                    return Err(format!("{e} (is a server running on {}?)", dir.display()).into());
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            result => return Ok(result?),
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, BoxError> {
    let dir = cli.data_dir;
    match cli.command {
        Action::Verify => {
            let log = open_log(&dir)?;
            let live = store::recover(&log)?;
            let mut full = vato_eventlog::State::default();
            store::replay_into(&log, &mut full)?;
            let mut problems = Vec::new();
            if live != full {
                problems.push("snapshot + tail differs from a full replay".to_string());
            }
            for conv in full.conversations.values() {
                let seqs: Vec<u64> = log
                    .conv_after(conv.id, 0, usize::MAX)?
                    .iter()
                    .filter_map(|e| e.event.conv_seq().map(|(_, seq)| seq))
                    .collect();
                if seqs != (1..=conv.last_seq).collect::<Vec<_>>() {
                    problems.push(format!(
                        "conversation {}: seqs are not 1..={}",
                        conv.id, conv.last_seq
                    ));
                }
            }
            if problems.is_empty() {
                println!("OK: {} events; full replay equals snapshot + tail; seqs gap-free in {} conversations", full.next_offset, full.conversations.len());
                Ok(ExitCode::SUCCESS)
            } else {
                for problem in problems {
                    println!("MISMATCH: {problem}");
                }
                Ok(ExitCode::FAILURE)
            }
        }
        Action::Rebuild => {
            let log = open_log_with(&dir, Log::open_reindexing)?;
            let state = store::rebuild_history(&log)?;
            println!(
                "rebuilt {} events; the history's records ({}) and snapshot written",
                state.next_offset,
                dir.join(vato_eventlog::state::history::records::FILE)
                    .display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Action::Dump { from, limit } => {
            let log = open_log(&dir)?;
            for envelope in log.read_from(from).take(limit.unwrap_or(usize::MAX)) {
                println!("{}", serde_json::to_string(&envelope?)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        Action::Stats => {
            let log = open_log(&dir)?;
            let state = store::recover(&log)?;
            println!("events         {}", state.next_offset);
            println!("users          {}", state.users.len());
            println!("conversations  {}", state.conversations.len());
            println!("messages       {}", state.message_count());
            println!("bytes on disk  {}", log.size_on_disk()?);
            if let Some(position) = log.position()? {
                println!("stream position {position}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Action::Generate {
            messages,
            conversations,
            users,
            members,
            busy_conversations,
            content_bytes,
            password,
        } => {
            let plan = vato_tools::generate::Plan {
                users,
                conversations,
                messages,
                members,
                busy_conversations,
                content_bytes,
                password,
            };
            vato_tools::generate::run(&dir, &plan)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
