//! vato-log-bench: how fast the store makes appends durable, and what a
//! restart costs. Results and the machine they came from are recorded in
//! `eventlog/BENCHMARKS-log.md`.
//!
//! ```text
//! cargo bench -p vato-eventlog --bench vato-log-bench -- --quick   # < 10 s smoke
//! cargo bench -p vato-eventlog --bench vato-log-bench              # full: ~3 min
//! cargo bench -p vato-eventlog --bench vato-log-bench -- --only paced --rate 10000
//! ```
//!
//! Sections:
//! * fsync: the disk alone, 4 KiB write + fdatasync in a loop: the floor
//!   under every ack latency below, and a check that the disk is quiet.
//! * closed: N appenders (tokio tasks), each looping `submit(PostMessage)` of
//!   a 200-byte text; durable appends/s and ack latency p50/p99, median of
//!   `--runs` runs by throughput; and sustained appends/s, every append of
//!   a run over the time until `close()` returned (the snapshots the run
//!   left behind included).
//! * paced: open loop at `--rate` commands/s (arrivals do not wait for
//!   acks), ack latency measured from each command's dispatch.
//! * disk: `--messages` appends, then bytes on disk per message and the time
//!   to rebuild the read models with and without a snapshot.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use vato_eventlog::log::Log;
use vato_eventlog::store::rebuild;
use vato_eventlog::{testing, Command, ConvId, Store, StoreConfig, UserId};

const CONVERSATIONS: usize = 64;
const MESSAGE_BYTES: usize = 200;

#[derive(Parser, Debug)]
#[command(about = "Throughput, ack latency and restart cost of the Vato event log")]
struct Args {
    /// Smoke run (< 10 s): short runs, one each, small disk section.
    #[arg(long)]
    quick: bool,
    /// Concurrent appenders for the closed-loop section.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64,512")]
    appenders: Vec<usize>,
    /// Seconds per closed-loop run (after a 10% warm-up).
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Runs per level; the median by throughput is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Paced section: commands per second, open loop.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Paced section: seconds.
    #[arg(long, default_value_t = 10.0)]
    paced_seconds: f64,
    /// Disk section: messages to append before measuring.
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// Override StoreConfig::max_batch.
    #[arg(long)]
    max_batch: Option<usize>,
    /// Run only these sections.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Section>,
    /// Parent of the data directories (default: the system temp dir). Put it
    /// on the disk you want to measure.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Section {
    Fsync,
    Closed,
    Paced,
    Disk,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    // The store's own lines (snapshots written, and how long they took)
    // with RUST_LOG=info; silent by default.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let mut args = Args::parse();
    if args.quick {
        args.seconds = 0.6;
        args.runs = 1;
        args.paced_seconds = 1.0;
        args.messages = 20_000;
    }
    let sections = if args.only.is_empty() {
        vec![
            Section::Fsync,
            Section::Closed,
            Section::Paced,
            Section::Disk,
        ]
    } else {
        args.only.clone()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let started = Instant::now();

    if sections.contains(&Section::Fsync) {
        let dir = tempfile::tempdir_in(&parent)?;
        let count = if args.quick { 300 } else { 2000 };
        let cpu = CpuMeter::start();
        let r = fsync_floor(dir.path(), count)?;
        println!("## The disk alone: 4 KiB write + fdatasync, {count} times\n");
        println!("| fsyncs/s | p50 | p99 | p99.9 | max |");
        println!("|---:|---:|---:|---:|---:|");
        println!(
            "| {:.0} | {} | {} | {} | {} |\n",
            r.per_second,
            micros(r.p50),
            micros(r.p99),
            micros(r.p999),
            micros(r.max),
        );
        println!("{}\n", cpu.report());
    }

    if sections.contains(&Section::Closed) {
        let cpu = CpuMeter::start();
        println!("## Closed loop: 200-byte PostMessage, each appender awaits its ack\n");
        println!("| appenders | durable appends/s | p50 ack | p99 ack | max ack | events per fsync | runs (appends/s) | sustained appends/s (until closed) |");
        println!("|---:|---:|---:|---:|---:|---:|---|---:|");
        for &appenders in &args.appenders {
            let mut runs = Vec::new();
            for _ in 0..args.runs {
                let dir = tempfile::tempdir_in(&parent)?;
                runs.push(runtime.block_on(closed_loop(dir.path(), &args, appenders))?);
            }
            runs.sort_by(|a, b| a.per_second.total_cmp(&b.per_second));
            let all: Vec<String> = runs
                .iter()
                .map(|r| format!("{:.0}", r.per_second))
                .collect();
            let median = &runs[runs.len() / 2];
            let mut sustained: Vec<f64> = runs.iter().map(|r| r.sustained).collect();
            sustained.sort_by(f64::total_cmp);
            println!(
                "| {appenders} | {:.0} | {} | {} | {} | {:.1} | {} | {:.0} |",
                median.per_second,
                micros(median.p50),
                micros(median.p99),
                micros(median.max),
                median.events_per_fsync,
                all.join(", "),
                sustained[sustained.len() / 2]
            );
        }
        println!("\n{}\n", cpu.report());
    }

    if sections.contains(&Section::Paced) && args.rate > 0 {
        let dir = tempfile::tempdir_in(&parent)?;
        let cpu = CpuMeter::start();
        let r = runtime.block_on(paced(dir.path(), &args))?;
        println!(
            "## Paced (open loop) at {} commands/s for {} s\n",
            args.rate, args.paced_seconds
        );
        println!(
            "| achieved appends/s | p50 ack | p99 ack | p99.9 ack | max ack | events per fsync |"
        );
        println!("|---:|---:|---:|---:|---:|---:|");
        println!(
            "| {:.0} | {} | {} | {} | {} | {:.1} |\n",
            r.per_second,
            micros(r.p50),
            micros(r.p99),
            micros(r.p999),
            micros(r.max),
            r.events_per_fsync
        );
        println!("{}\n", cpu.report());
    }

    if sections.contains(&Section::Disk) && args.messages > 0 {
        let dir = tempfile::tempdir_in(&parent)?;
        runtime.block_on(disk(dir.path(), &args))?;
    }
    eprintln!("total {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Sequential 4 KiB appends, each made durable on its own.
fn fsync_floor(dir: &Path, count: usize) -> Result<RunResult, BoxError> {
    use std::io::Write;
    let mut file = std::fs::File::create(dir.join("probe"))?;
    let block = vec![0x5a_u8; 4096];
    let mut latencies = Vec::with_capacity(count);
    let start = Instant::now();
    for _ in 0..count {
        let t = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        latencies.push(t.elapsed().as_micros() as u64);
    }
    Ok(summarize(latencies, start.elapsed().as_secs_f64(), (1, 1)))
}

/// CPU used while a section ran, by this process and by everything else:
/// the machine is shared, and the other processes' share says how much to
/// trust a latency tail.
struct CpuMeter {
    machine: (u64, u64),
    own: u64,
}

impl CpuMeter {
    fn start() -> CpuMeter {
        CpuMeter {
            machine: machine_ticks(),
            own: own_ticks(),
        }
    }

    /// "this process X cores, others Y cores" since `start`.
    fn report(&self) -> String {
        let (busy, total) = machine_ticks();
        let own = own_ticks().saturating_sub(self.own) as f64;
        let busy = busy.saturating_sub(self.machine.0) as f64;
        let total = total.saturating_sub(self.machine.1).max(1) as f64;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        format!(
            "CPU during this section: this process {:.2} cores, other processes {:.2} cores (of {cores})",
            own / total * cores,
            ((busy - own) / total * cores).max(0.0),
        )
    }
}

/// (busy, total) clock ticks of all CPUs, from /proc/stat.
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().take(8).sum();
    // user nice system idle iowait irq softirq steal: idle and iowait are not busy.
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// utime + stime of this process (all threads), in clock ticks.
fn own_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of the line; the state (field 3) is first here.
    fields
        .get(11)
        .and_then(|f| f.parse::<u64>().ok())
        .unwrap_or(0)
        + fields
            .get(12)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
}

fn micros(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else {
        format!("{:.2} ms", us as f64 / 1000.0)
    }
}

fn config(dir: &Path, args: &Args) -> StoreConfig {
    let mut config = StoreConfig::new(dir);
    if let Some(max_batch) = args.max_batch {
        config.max_batch = max_batch;
    }
    config
}

/// An open store with `CONVERSATIONS` groups of three; returns for each
/// conversation its id and the user who posts in it.
async fn open_with_conversations(
    dir: &Path,
    args: &Args,
) -> Result<(Store, Vec<(ConvId, UserId)>, Arc<FsyncCounter>), BoxError> {
    let (store, mut committed) = Store::open(config(dir, args))?;
    // Count group commits, as a fan-out consumer would receive them.
    let counter = Arc::new(FsyncCounter::default());
    let c = counter.clone();
    tokio::spawn(async move {
        while let Some(batch) = committed.recv().await {
            c.batches.fetch_add(1, Ordering::Relaxed);
            c.events
                .fetch_add(batch.events.len() as u64, Ordering::Relaxed);
        }
    });
    let mut users = Vec::new();
    for i in 0..CONVERSATIONS + 2 {
        let applied = store
            .submit(testing::register(&format!("user{i}"), 1))
            .await??;
        users.push(testing::user_id(&applied.reply));
    }
    let mut convs = Vec::new();
    for i in 0..CONVERSATIONS {
        let room = testing::titled_group(
            users[i],
            &format!("room {i}"),
            &[users[i + 1], users[i + 2]],
            2,
        );
        let applied = store.submit(room).await??;
        convs.push((testing::conv_id(&applied.reply), users[i]));
    }
    Ok((store, convs, counter))
}

#[derive(Default)]
struct FsyncCounter {
    batches: AtomicU64,
    events: AtomicU64,
}

impl FsyncCounter {
    fn snapshot(&self) -> (u64, u64) {
        (
            self.batches.load(Ordering::Relaxed),
            self.events.load(Ordering::Relaxed),
        )
    }
}

/// A 200-byte message unique per (appender, i), with a client id as a real
/// client would send.
fn message(conv: (ConvId, UserId), appender: usize, i: u64) -> Command {
    let tag = format!("{appender}-{i} ");
    let mut content = String::with_capacity(MESSAGE_BYTES);
    content.push_str(&tag);
    while content.len() < MESSAGE_BYTES {
        content.push_str("lorem ipsum dolor sit amet ");
    }
    content.truncate(MESSAGE_BYTES);
    testing::post(conv.1, conv.0, &content, Some(&tag), 1_700_000_000_000_000)
}

struct RunResult {
    per_second: f64,
    p50: u64,
    p99: u64,
    p999: u64,
    max: u64,
    events_per_fsync: f64,
    /// Closed loop: every append of the run (warm-up included) over the
    /// time until `close()` returned, which waits for the snapshots the
    /// run left behind. A window alone can look fast while the background
    /// snapshot falls behind (its layer then grows in RAM).
    sustained: f64,
}

fn summarize(mut latencies: Vec<u64>, seconds: f64, fsyncs: (u64, u64)) -> RunResult {
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
    };
    RunResult {
        per_second: latencies.len() as f64 / seconds,
        p50: at(0.5).copied().unwrap_or(0),
        p99: at(0.99).copied().unwrap_or(0),
        p999: at(0.999).copied().unwrap_or(0),
        max: latencies.last().copied().unwrap_or(0),
        events_per_fsync: fsyncs.1 as f64 / fsyncs.0.max(1) as f64,
        sustained: 0.0,
    }
}

async fn closed_loop(dir: &Path, args: &Args, appenders: usize) -> Result<RunResult, BoxError> {
    let (store, convs, counter) = open_with_conversations(dir, args).await?;
    let warm_up = Duration::from_secs_f64(args.seconds * 0.1);
    let measure = Duration::from_secs_f64(args.seconds);
    let start = Instant::now();
    let (from, until) = (start + warm_up, start + warm_up + measure);
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for a in 0..appenders {
        let (store, stop, conv) = (store.clone(), stop.clone(), convs[a % convs.len()]);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let command = message(conv, a, i);
                i += 1;
                let sent = Instant::now();
                store.submit(command).await??;
                let acked = Instant::now();
                if sent >= from && acked <= until {
                    latencies.push((acked - sent).as_micros() as u64);
                }
            }
            Ok::<_, BoxError>((latencies, i))
        }));
    }
    tokio::time::sleep_until(from.into()).await;
    let fsyncs_before = counter.snapshot();
    tokio::time::sleep_until(until.into()).await;
    let fsyncs_after = counter.snapshot();
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let mut appended = 0;
    for task in tasks {
        let (mine, count) = task.await??;
        latencies.extend(mine);
        appended += count;
    }
    store.close()?;
    let closed = start.elapsed().as_secs_f64();
    let fsyncs = (
        fsyncs_after.0 - fsyncs_before.0,
        fsyncs_after.1 - fsyncs_before.1,
    );
    let mut result = summarize(latencies, measure.as_secs_f64(), fsyncs);
    result.sustained = appended as f64 / closed;
    Ok(result)
}

async fn paced(dir: &Path, args: &Args) -> Result<RunResult, BoxError> {
    let (store, convs, counter) = open_with_conversations(dir, args).await?;
    let rate = args.rate as f64;
    let duration = Duration::from_secs_f64(args.paced_seconds);
    let fsyncs_before = counter.snapshot();
    let start = Instant::now();
    let mut tasks = Vec::new();
    let mut sent = 0u64;
    // tokio's timer has 1 ms resolution: each tick dispatches every command
    // due by then, so arrivals come in bursts of about rate/1000.
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while start.elapsed() < duration {
        tick.tick().await;
        let due = (start.elapsed().as_secs_f64() * rate) as u64;
        while sent < due {
            let (store, conv) = (store.clone(), convs[sent as usize % convs.len()]);
            let command = message(conv, sent as usize % 512, sent);
            let dispatched = Instant::now();
            tasks.push(tokio::spawn(async move {
                store.submit(command).await??;
                Ok::<_, BoxError>(dispatched.elapsed().as_micros() as u64)
            }));
            sent += 1;
        }
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    for task in tasks {
        latencies.push(task.await??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let fsyncs_after = counter.snapshot();
    store.close()?;
    let fsyncs = (
        fsyncs_after.0 - fsyncs_before.0,
        fsyncs_after.1 - fsyncs_before.1,
    );
    Ok(summarize(latencies, elapsed, fsyncs))
}

/// Appends `count` messages from 512 appenders (the fastest level).
async fn append_many(
    store: &Store,
    convs: &[(ConvId, UserId)],
    count: u64,
    salt: usize,
) -> Result<(), BoxError> {
    let appenders = 512u64;
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for a in 0..appenders as usize {
        let (store, next, conv) = (store.clone(), next.clone(), convs[a % convs.len()]);
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, BoxError>(());
                }
                store.submit(message(conv, a + salt, i)).await??;
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

async fn disk(dir: &Path, args: &Args) -> Result<(), BoxError> {
    let n = args.messages;
    let tail = (n / 10).max(1);
    let cpu = CpuMeter::start();
    println!("## Disk and restart, {n} messages\n");
    let (store, convs, _) = open_with_conversations(dir, args).await?;
    let t = Instant::now();
    append_many(&store, &convs, n, 0).await?;
    let append_secs = t.elapsed().as_secs_f64();
    let rss_after_append = status_mib("VmRSS:");
    let events = store.state().next_offset;
    let sled_bytes = store.log().size_on_disk()?;
    let t = Instant::now();
    store.close()?;
    let close_secs = t.elapsed().as_secs_f64();
    drop(store);
    let allocated = allocated_bytes(&dir.join("sled"))?;

    // A tail after the snapshot: reopen, append, and stop without close()
    // (as `kill -9` would: no snapshot of the tail).
    let (store, _) = retry_lock(|| Store::open(config(dir, args))).0?;
    append_many(&store, &convs, tail, 1_000).await?;
    let total_events = store.state().next_offset;
    let expected = store.state().detached();
    drop(store);

    let (log, sled_open_secs) = retry_lock(|| Log::open(dir));
    drop(log?);

    let (replayed, rebuild_secs) = retry_lock(|| rebuild(dir));
    let replayed = replayed?;
    if replayed != expected {
        return Err("full replay differs from the live state".into());
    }
    drop(replayed);

    let (opened, open_secs) = retry_lock(|| Store::open(config(dir, args)));
    let (store, _) = opened?;
    if *store.state() != expected {
        return Err("snapshot + tail differs from the live state".into());
    }
    drop(store);

    println!("| measure | value |");
    println!("|---|---:|");
    println!(
        "| appended ({n} messages, 512 appenders) | {:.1} s, {:.0} appends/s |",
        append_secs,
        n as f64 / append_secs
    );
    println!("| events in the log (incl. setup) | {events} |");
    println!(
        "| sled `size_on_disk()` / message | {:.0} B |",
        sled_bytes as f64 / n as f64
    );
    println!(
        "| sled files, allocated blocks / message | {:.0} B |",
        allocated as f64 / n as f64
    );
    println!("| close() (writes the snapshot) | {:.2} s |", close_secs);
    println!(
        "| sled open alone (`Log::open`) | {:.2} s |",
        sled_open_secs
    );
    println!(
        "| rebuild, full replay of {total_events} events (`store::rebuild`) | {:.2} s |",
        rebuild_secs
    );
    println!(
        "| `Store::open`: snapshot at {events} + tail of {} | {:.2} s |",
        total_events - events,
        open_secs
    );
    println!(
        "| RSS after the appends (live state, sled cache, runtime) | {rss_after_append} MiB |"
    );
    println!(
        "| peak RSS (+ replayed and expected states, snapshot buffers) | {} MiB |",
        status_mib("VmHWM:")
    );
    println!("\n{}\n", cpu.report());
    Ok(())
}

/// [`vato_eventlog::testing::retry_lock`], also returning the duration of
/// the last (successful) attempt.
fn retry_lock<T, E: std::fmt::Display>(
    mut attempt: impl FnMut() -> Result<T, E>,
) -> (Result<T, E>, f64) {
    let mut seconds = 0.0;
    let result = testing::retry_lock(|| {
        let t = Instant::now();
        let result = attempt();
        seconds = t.elapsed().as_secs_f64();
        result
    });
    (result, seconds)
}

/// Bytes the files under `dir` occupy on disk (st_blocks), like `du`.
fn allocated_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            allocated_bytes(&entry.path())?
        } else {
            meta.blocks() * 512
        };
    }
    Ok(total)
}

/// A memory figure of this process from /proc/self/status, in MiB.
fn status_mib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with(field)).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<u64>().ok())
            })
        })
        .map_or(0, |kb| kb / 1024)
}
