//! Cluster-test harness: private `nats-server` processes (one JetStream
//! server, or a three-node JetStream cluster) on free loopback ports with
//! their own store directories, `vato-server` nodes in cluster mode, and the
//! polls the tests synchronise on (metrics, stream position, convergence).
//!
//! Every process started here is killed when its guard is dropped, also
//! when a test panics. The system NATS on 4222 is never touched: every port
//! is a fresh one.
#![allow(dead_code)]

pub mod chat;

use std::fs::{File, OpenOptions};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::common::{Api, Server};

/// Debian's nats-server (2.9.10); `NATS_SERVER` overrides the path.
pub const NATS_SERVER: &str = "/usr/sbin/nats-server";

/// Shared by every vato node of a test, so tokens work on every node.
pub const JWT_SECRET: &str = "vato-cluster-tests-shared-secret";

/// Longest wait for NATS to be ready and for nodes to converge.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How often conditions are polled.
pub const POLL: Duration = Duration::from_millis(25);

/// The nats-server binary. A missing binary fails the test loudly: the
/// cluster tests are part of CI (ci/test installs nats-server).
pub fn nats_server_bin() -> PathBuf {
    let path = std::env::var_os("NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(NATS_SERVER));
    assert!(
        path.is_file(),
        "{} is missing: the cluster tests need nats-server (apt-get install nats-server; \
         ci/test installs it). Refusing to skip.",
        path.display()
    );
    path
}

/// `n` distinct free loopback ports (all bound at once, then released).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

fn http() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("http client")
    })
}

/// One nats-server process; restartable on the same ports and store.
pub struct NatsNode {
    pub name: String,
    pub port: u16,
    pub monitor_port: u16,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl NatsNode {
    fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("nats log file");
        let child = Command::new(nats_server_bin())
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn nats-server {}: {e}", self.name));
        self.child = Some(child);
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL and reap: no shutdown code runs.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again with the same ports, name and store directory.
    pub fn restart(&mut self) {
        self.spawn();
    }

    /// The end of this server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn assert_alive(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                panic!(
                    "nats-server {} exited ({status}):\n{}",
                    self.name,
                    self.log_tail()
                );
            }
        }
    }

    /// `GET /jsz` (with stream details) on the monitoring port.
    pub async fn jsz(&self) -> Option<Value> {
        if !self.is_running() {
            return None;
        }
        let url = format!("http://127.0.0.1:{}/jsz?streams=true", self.monitor_port);
        let response = http().get(url).send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json().await.ok()
    }

    async fn healthy(&self) -> bool {
        let url = format!("http://127.0.0.1:{}/healthz", self.monitor_port);
        matches!(http().get(url).send().await, Ok(r) if r.status().is_success())
    }
}

impl Drop for NatsNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A private NATS: one JetStream server, or a JetStream cluster.
pub struct Nats {
    /// Declared first: the processes die before their directories go.
    pub nodes: Vec<NatsNode>,
    clustered: bool,
    dir: TempDir,
}

impl Nats {
    /// One JetStream server on a free port with a fresh store directory.
    pub async fn single() -> Nats {
        Nats::start(1).await
    }

    /// A JetStream cluster of `size` servers (`n1`..), routed to each other.
    pub async fn cluster(size: usize) -> Nats {
        Nats::start(size).await
    }

    async fn start(size: usize) -> Nats {
        nats_server_bin();
        let dir = tempfile::tempdir().expect("nats temp dir");
        let clustered = size > 1;
        let ports = free_ports(size * 3);
        let routes: Vec<String> = (0..size)
            .map(|i| format!("nats://127.0.0.1:{}", ports[3 * i + 2]))
            .collect();
        let mut nodes = Vec::new();
        for i in 0..size {
            let name = format!("n{}", i + 1);
            let (port, monitor_port, cluster_port) =
                (ports[3 * i], ports[3 * i + 1], ports[3 * i + 2]);
            let store = dir.path().join(&name);
            std::fs::create_dir_all(&store).expect("nats store dir");
            let mut args: Vec<String> = vec![
                "-a".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string(),
                "-m".into(),
                monitor_port.to_string(),
                "-js".into(),
                "-sd".into(),
                path_arg(&store),
                "--server_name".into(),
                name.clone(),
            ];
            if clustered {
                args.extend([
                    "--cluster_name".into(),
                    "vato".into(),
                    "--cluster".into(),
                    format!("nats://127.0.0.1:{cluster_port}"),
                    "--routes".into(),
                    routes.join(","),
                ]);
            }
            let log = dir.path().join(format!("{name}.log"));
            File::create(&log).expect("nats log file");
            let mut node = NatsNode {
                name,
                port,
                monitor_port,
                args,
                log,
                child: None,
            };
            node.spawn();
            nodes.push(node);
        }
        let mut nats = Nats {
            nodes,
            clustered,
            dir,
        };
        nats.wait_ready().await;
        nats
    }

    /// Every client URL, comma-separated (the `--nats-url` value).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsNode::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits until every running server answers `/healthz` and, in a
    /// cluster, knows the JetStream meta leader.
    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let mut ready = true;
            for node in self.nodes.iter_mut().filter(|n| n.is_running()) {
                node.assert_alive();
                if !node.healthy().await {
                    ready = false;
                    continue;
                }
                if self.clustered {
                    let leader = node
                        .jsz()
                        .await
                        .and_then(|j| j["meta_cluster"]["leader"].as_str().map(str::to_owned))
                        .unwrap_or_default();
                    ready &= !leader.is_empty();
                }
            }
            if ready {
                return;
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = self
                    .nodes
                    .iter()
                    .map(|n| format!("--- {}:\n{}", n.name, n.log_tail()))
                    .collect();
                panic!(
                    "NATS not ready within {READY_TIMEOUT:?}:\n{}",
                    logs.join("\n")
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The stream's details as the first running server that knows it
    /// reports them.
    async fn stream_details(&self, stream: &str) -> Vec<Value> {
        let mut details = Vec::new();
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            let Some(jsz) = node.jsz().await else {
                continue;
            };
            for account in jsz["account_details"].as_array().into_iter().flatten() {
                for s in account["stream_detail"].as_array().into_iter().flatten() {
                    if s["name"] == stream {
                        details.push(s.clone());
                    }
                }
            }
        }
        details
    }

    /// The highest last sequence of stream `VATO` any running server
    /// reports (a follower may lag the leader for a moment).
    pub async fn stream_last_seq(&self) -> Option<u64> {
        self.stream_details("VATO")
            .await
            .iter()
            .filter_map(|s| s["state"]["last_seq"].as_u64())
            .max()
    }

    /// The index (in `nodes`) of the server leading stream `VATO`.
    pub async fn stream_leader(&self) -> Option<usize> {
        let details = self.stream_details("VATO").await;
        let leader = details
            .iter()
            .find_map(|s| s["cluster"]["leader"].as_str().filter(|l| !l.is_empty()))?;
        self.nodes.iter().position(|n| n.name == leader)
    }

    pub fn kill(&mut self, index: usize) {
        self.nodes[index].kill();
    }

    /// Restarts a killed server (same port, name and store) and waits until
    /// it is ready again.
    pub async fn restart(&mut self, index: usize) {
        self.nodes[index].restart();
        self.wait_ready().await;
    }

    /// All servers' log tails, for failure messages.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("--- nats {} ---\n{}", n.name, n.log_tail()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn path_arg(path: &Path) -> String {
    path.to_str().expect("utf-8 temp path").to_string()
}

/// Starts a vato node in cluster mode with the shared secret and the demo
/// accounts, on `data_dir` (kept by the caller, for restarts). Returns once
/// the node printed its listening line, i.e. has caught up and serves.
pub async fn start_vato(nats_urls: &str, data_dir: &Path, extra: &[&str]) -> Server {
    let mut args = vec![
        "--nats-url",
        nats_urls,
        "--jwt-secret",
        JWT_SECRET,
        "--demo",
    ];
    args.extend_from_slice(extra);
    Server::start_in(data_dir, &args).await
}

/// A gauge or counter from the node's `GET /metrics` (None if absent or
/// the node does not answer).
pub async fn metric(base: &str, name: &str) -> Option<u64> {
    let resp = Api::with_http(http().clone(), base)
        .try_get("/metrics")
        .await
        .ok()?;
    // Prometheus text: vato-client keeps a body that is not JSON as a string.
    let text = resp.body.as_str()?;
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (key, value) = l.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok()).flatten()
    })
}

/// Polls until `name` equals `value` on every node.
pub async fn wait_metric(nodes: &[&Server], name: &str, value: u64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let mut values = Vec::new();
        for node in nodes {
            values.push(metric(&node.base, name).await);
        }
        if values.iter().all(|v| *v == Some(value)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not reach {value} within {timeout:?}: {values:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until every node has applied the whole stream (its applied
/// position equals the stream's last sequence); returns that position.
/// Only meaningful while no write is in flight.
pub async fn wait_converged(nats: &Nats, nodes: &[&Server]) -> u64 {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let target = nats.stream_last_seq().await;
        let mut positions = Vec::new();
        for node in nodes {
            positions.push(metric(&node.base, "vato_stream_applied_position").await);
        }
        if let Some(target) = target {
            if positions.iter().all(|p| *p == Some(target)) {
                return target;
            }
        }
        assert!(
            Instant::now() < deadline,
            "nodes did not converge within {READY_TIMEOUT:?}: stream at {target:?}, \
             nodes at {positions:?}\n{}",
            nats.logs()
        );
        tokio::time::sleep(POLL).await;
    }
}
