//! The HTTP serving loop: accepts connections and serves each with hyper's
//! HTTP/1 builder, with the limits `axum::serve` does not set (see
//! STACK.md): a header read timeout, a cap on the request head's bytes and
//! a cap on open connections. Shutdown stops accepting, asks every
//! connection to finish its request, and drops the ones still open after
//! the grace period.
//!
//! The REST body timeout and the security headers are router layers
//! (`lib.rs`); WebSocket upgrades leave this loop's connection once the
//! 101 is sent, so nothing here limits an upgraded socket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tower_http::add_extension::AddExtension;

/// The limits one listener enforces on its connections.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Time to send a request head, from the moment the connection waits
    /// for one: hyper starts this timer for a fresh connection and again
    /// for each kept-alive one, so it is the idle timeout as well. `None`:
    /// no limit.
    pub header_timeout: Option<Duration>,
    /// Largest request head; a larger one gets 431 and the connection is
    /// closed. hyper's read buffer is capped at the same size, so a client
    /// cannot make us hold more than this per connection while it talks.
    pub max_header_bytes: usize,
    /// Open connections at most; `None`: no limit. One more is closed at
    /// accept, before a byte is read.
    pub max_connections: Option<usize>,
    /// After shutdown is asked for, how long open connections may take to
    /// finish before they are dropped.
    pub shutdown_grace: Duration,
    /// SO_SNDBUF of each accepted connection (`--socket-sndbuf-bytes`):
    /// the kernel memory a peer that stops reading can pin, WebSockets
    /// included (they keep this connection's socket). `None`: the
    /// kernel's autotuned default.
    pub send_buffer: Option<usize>,
}

impl Limits {
    pub fn from_config(config: &crate::config::Config) -> Limits {
        let secs = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        Limits {
            header_timeout: secs(config.header_timeout_secs),
            max_header_bytes: usize::try_from(config.max_header_bytes).unwrap_or(usize::MAX),
            max_connections: (config.max_http_connections > 0)
                .then(|| config.max_http_connections.min(Semaphore::MAX_PERMITS)),
            shutdown_grace: Duration::from_secs(config.shutdown_grace_secs),
            send_buffer: (config.socket_sndbuf_bytes > 0).then_some(config.socket_sndbuf_bytes),
        }
    }

    fn builder(&self) -> http1::Builder {
        let mut builder = http1::Builder::new();
        // hyper's smallest buffer is 8 KiB; the flag's parser enforces it.
        let max = self.max_header_bytes.max(8192);
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout)
            .max_buf_size(max)
            .max_header_size(max)
            .keep_alive(true);
        builder
    }
}

/// Serves `router` on `listener` until `stop` turns true, then drains or
/// drops the connections (see [`Limits::shutdown_grace`]) and returns.
/// Handlers can extract `ConnectInfo<SocketAddr>`.
pub async fn serve_http(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let builder = Arc::new(limits.builder());
    let permits = limits.max_connections.map(|n| Arc::new(Semaphore::new(n)));
    let mut connections = JoinSet::new();
    let mut refused: u64 = 0;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let permit = match &permits {
                        Some(permits) => match permits.clone().try_acquire_owned() {
                            Ok(permit) => Some(permit),
                            Err(_) => {
                                // Closed before a byte is read. Logged
                                // sparsely: a flood must not flood the log.
                                refused += 1;
                                if refused.is_power_of_two() {
                                    tracing::warn!(refused, "HTTP connection cap reached (--max-http-connections); closing new connections");
                                }
                                drop(stream);
                                continue;
                            }
                        },
                        None => None,
                    };
                    if let Some(bytes) = limits.send_buffer {
                        cap_send_buffer(&stream, bytes);
                    }
                    connections.spawn(serve_connection(
                        stream,
                        peer,
                        router.clone(),
                        builder.clone(),
                        stop.clone(),
                        permit,
                    ));
                }
                // Out of file descriptors (EMFILE) and the like: back off
                // instead of spinning; connections closing free some.
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = stopped(&mut stop) => break,
        }
    }
    drop(listener);
    let open = connections.len();
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open,
            left = connections.len(),
            "shutdown grace period over: dropping the connections still open"
        );
        connections.shutdown().await;
    }
}

/// One connection: HTTP/1 with upgrades, until the client leaves, a limit
/// closes it, or shutdown asks it to finish its request.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    builder: Arc<http1::Builder>,
    mut stop: watch::Receiver<bool>,
    // Held until the connection ends (an upgraded socket has left by then).
    _permit: Option<OwnedSemaphorePermit>,
) {
    // Chat frames are small and latency-bound: without TCP_NODELAY, Nagle
    // holds a frame back while an earlier one is unacknowledged, and the
    // peer's delayed ACK turns that into tens of milliseconds under load.
    let _ = stream.set_nodelay(true);
    let service = TowerToHyperService::new(AddExtension::new(router, ConnectInfo(peer)));
    let connection = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = stopped(&mut stop) => {
            // Finishes the request in progress, then closes; an idle
            // connection closes at once. The grace period bounds the rest.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, "HTTP connection ended: {e}");
    }
}

/// Sets SO_SNDBUF, which also turns off the kernel's send-buffer
/// autotuning for this socket: without it, a client that never reads
/// (a WebSocket replaying `since=0`) made the kernel hold up to
/// net.ipv4.tcp_wmem's maximum (4 MiB by default) per connection.
fn cap_send_buffer(stream: &TcpStream, bytes: usize) {
    if let Err(e) = socket2::SockRef::from(stream).set_send_buffer_size(bytes) {
        tracing::debug!("SO_SNDBUF {bytes}: {e}");
    }
}

/// Resolves once shutdown is asked for (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: drop it here.
    let _ = stop.wait_for(|stop| *stop).await.map(|_| ());
}
