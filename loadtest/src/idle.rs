//! Idle mode (`--idle-sockets N`): how many idle authenticated sockets one node
//! holds, how fast they open, and (with `--server-pid`) the server's RSS per
//! socket. Not a goose run: it registers `--idle-users` accounts, pairs them into
//! direct conversations, then opens N sockets spread over those users, from
//! loopback source addresses 127.0.0.1..127.0.0.`--source-ips` (one address has
//! about 28k ephemeral ports towards one server port).

use crate::opts::VatoOpts;
use crate::scenarios;
use futures_util::StreamExt;
use goose::config::GooseConfiguration;
use goose::goose::GooseUser;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// IP_BIND_ADDRESS_NO_PORT on `sock`.
fn no_port_at_bind(sock: &TcpSocket) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket fd and a pointer to a c_int of the given size.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

pub async fn run(host: &str, n: usize, o: &VatoOpts, cfg: &GooseConfiguration) -> ExitCode {
    match run_inner(host, n, o, cfg).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("vato-load idle: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run_inner(
    host: &str,
    n: usize,
    o: &VatoOpts,
    cfg: &GooseConfiguration,
) -> Result<bool, String> {
    let users = o.idle_users.max(2) & !1;
    let mut gu = GooseUser::single(
        host.parse().map_err(|e| format!("--host {host}: {e}"))?,
        cfg,
    )
    .map_err(|e| e.to_string())?;
    let authority = host
        .trim_end_matches('/')
        .split_once("://")
        .map(|(_, a)| a)
        .unwrap_or(host)
        .to_string();
    let server: SocketAddr = tokio::net::lookup_host(&authority)
        .await
        .map_err(|e| format!("{authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority}: no address"))?;

    // Accounts and their conversations.
    let run = format!(
        "{}i",
        o.run_id.clone().unwrap_or_else(|| "vlidle".to_string())
    );
    let started = Instant::now();
    let mut accounts = Vec::with_capacity(users);
    for i in 0..users {
        let name = format!("{run}_{i}_{}", std::process::id());
        let (id, access, _) = scenarios::register(&mut gu, &name)
            .await
            .map_err(|e| format!("register {name}: {e:?}"))?;
        accounts.push((id, access));
    }
    let mut convs = Vec::with_capacity(users / 2);
    for pair in accounts.chunks(2) {
        let (c, _) = scenarios::create_direct(&mut gu, &pair[0].1, pair[1].0)
            .await
            .map_err(|e| format!("create-direct: {e:?}"))?;
        convs.push(c);
    }
    println!(
        "vato-load idle: {users} users, {} conversations ready in {:.1} s",
        convs.len(),
        started.elapsed().as_secs_f64()
    );

    let rss_before = o.server_pid.and_then(rss_kib);
    // RSS when half the sockets are open: the second half's growth is the
    // marginal cost of a socket, free of memory the allocator had from before
    // (argon2 hashing leaves tens of MiB per concurrent hash in the allocator).
    let rss_half = Arc::new(std::sync::OnceLock::<Option<u64>>::new());
    let alive = Arc::new(AtomicUsize::new(0));
    let opened = Arc::new(AtomicUsize::new(0));
    let base = crate::ws::ws_base(host);
    let ips = o.source_ips.max(1);
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);

    let jobs = (0..n).map(|i| {
        let user = i % users;
        let token = accounts[user].1.clone();
        let conv = convs[user / 2];
        let url = crate::ws::conv_url(&base, conv, &token);
        let src = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i % ips as usize) as u8));
        let alive = alive.clone();
        let opened = opened.clone();
        let rss_half = rss_half.clone();
        let pid = o.server_pid;
        async move {
            let t = Instant::now();
            let sock = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
            if ips > 1 {
                // Choose the port at connect time (per destination), not at bind:
                // bind(port 0) keeps to half the ephemeral range and slows
                // down badly as it fills.
                no_port_at_bind(&sock);
                sock.bind(SocketAddr::new(src, 0))
                    .map_err(|e| format!("bind {src}: {e}"))?;
            }
            let tcp = sock
                .connect(server)
                .await
                .map_err(|e| format!("connect from {src}: {e}"))?;
            let _ = tcp.set_nodelay(true);
            let (stream, _) =
                tokio_tungstenite::client_async_with_config(url.as_str(), tcp, Some(config))
                    .await
                    .map_err(|e| format!("handshake: {e}"))?;
            let took = t.elapsed();
            let done = opened.fetch_add(1, Relaxed) + 1;
            if done == n / 2 {
                let _ = rss_half.set(pid.and_then(rss_kib));
            }
            if done.is_multiple_of(5000) {
                println!("vato-load idle: {done} sockets open");
            }
            alive.fetch_add(1, Relaxed);
            // Keep reading so pings are answered and a close is noticed.
            tokio::spawn(async move {
                let (_sink, mut read) = stream.split();
                while let Some(frame) = read.next().await {
                    match frame {
                        Ok(Message::Close(_)) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                alive.fetch_sub(1, Relaxed);
            });
            Ok::<u64, String>(took.as_micros() as u64)
        }
    });
    let t0 = Instant::now();
    let results: Vec<Result<u64, String>> = futures_util::stream::iter(jobs)
        .buffer_unordered(o.open_concurrency.max(1))
        .collect()
        .await;
    let open_time = t0.elapsed();
    let mut lat: Vec<u64> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    lat.sort_unstable();
    let mut errors: std::collections::BTreeMap<String, usize> = Default::default();
    for e in results.iter().filter_map(|r| r.as_ref().err()) {
        // Group by the error's text without addresses/numbers.
        let key: String = e.chars().filter(|c| !c.is_ascii_digit()).collect();
        *errors.entry(key).or_default() += 1;
    }
    let ok = lat.len();
    let rate = ok as f64 / open_time.as_secs_f64();
    println!(
        "vato-load idle: opened={ok} failed={} in {:.2} s: open rate {:.0} sockets/s, \
         handshake p50={:.2} ms p99={:.2} ms (concurrency {})",
        n - ok,
        open_time.as_secs_f64(),
        rate,
        pct(&lat, 50.0),
        pct(&lat, 99.0),
        o.open_concurrency
    );
    for (e, c) in &errors {
        println!("vato-load idle: {c} x {e}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = o.server_pid.and_then(rss_kib);
    println!(
        "vato-load idle: holding {} sockets for {} s",
        alive.load(Relaxed),
        o.idle_hold_s
    );
    tokio::time::sleep(Duration::from_secs(o.idle_hold_s)).await;
    let held = alive.load(Relaxed);
    let rss_end = o.server_pid.and_then(rss_kib);
    let half = rss_half.get().copied().flatten();
    let per = match (rss_before, half, rss_after) {
        (Some(b), Some(h), Some(a)) if ok > n / 2 => format!(
            "{:.1} KiB (all: {:.1} KiB)",
            (a as f64 - h as f64) / (ok - n / 2) as f64,
            (a as f64 - b as f64) / ok as f64
        ),
        (Some(b), _, Some(a)) if ok > 0 => {
            format!("{:.1} KiB", (a as f64 - b as f64) / ok as f64)
        }
        _ => "n/a (give --server-pid)".into(),
    };
    let mib = |v: Option<u64>| match v {
        Some(k) => format!("{:.1} MiB", k as f64 / 1024.0),
        None => "n/a".into(),
    };
    println!(
        "vato-load idle: sockets={n} opened={ok} held={held} open_rate={rate:.0}/s \
         server_rss_before={} at_half={} after_open={} after_hold={} rss_per_socket={per}",
        mib(rss_before),
        mib(half),
        mib(rss_after),
        mib(rss_end)
    );
    Ok(ok == n && held == n)
}
