//! Issue 17, findings 1 and 7: HTTP connection hygiene (header timeout,
//! head size cap, connection cap, body timeout, shutdown deadline) and the
//! operational hardening (file modes, the dev hook, `/metrics`, security
//! headers), against the real binary over real sockets.

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn address(server: &Server) -> SocketAddr {
    server
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("server address")
}

/// A request head cut off in the middle of a header: the slowloris shape.
const HALF_REQUEST: &[u8] = b"GET /api/ HTTP/1.1\r\nHost: vato\r\nX-Slow: ";

/// Lets this test process hold a few thousand sockets.
fn raise_own_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    assert!(
        limit.rlim_cur >= 4096,
        "the hard open-files limit {} is too low for this test",
        limit.rlim_cur
    );
}

/// Sends `request` on a fresh connection and reads until the server closes
/// it or `limit` passes: the response text (empty if closed without one).
async fn one_shot(address: SocketAddr, request: &[u8], limit: Duration) -> String {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    // A connection closed at accept may refuse the write: no response then.
    let _ = stream.write_all(request).await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(limit, stream.read_to_end(&mut response)).await;
    String::from_utf8_lossy(&response).into_owned()
}

/// Waits until the server closes `stream` (EOF or reset), up to `limit`;
/// true if it did.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A response (an error page) before the close: keep reading.
            Ok(Ok(_)) => continue,
        }
    }
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: vato\r\nConnection: close\r\n\r\n").into_bytes()
}

fn status_of(response: &str) -> Option<u16> {
    response.split(' ').nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_does_not_starve_others_and_half_open_requests_are_closed() {
    raise_own_open_files_limit();
    let server = Server::start(&["--dev", "--header-timeout-secs", "2"]).await;
    let address = address(&server);

    let mut half_open = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let mut stream = TcpStream::connect(address).await.expect("connect");
        stream.write_all(HALF_REQUEST).await.expect("send");
        half_open.push(stream);
    }
    let sent = Instant::now();

    // Meanwhile, fresh clients are served, each within a second.
    for _ in 0..10 {
        let started = Instant::now();
        let response = one_shot(address, &get("/healthz"), Duration::from_secs(5)).await;
        let took = started.elapsed();
        assert_eq!(status_of(&response), Some(200), "{response:?}");
        assert!(took < Duration::from_secs(1), "served in {took:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Every half-open request is closed by the 2 s header timeout (with a
    // margin for a busy machine; hyper's own default would be 30 s).
    let limit = Duration::from_secs(8).saturating_sub(sent.elapsed());
    let closed = futures_util::future::join_all(
        half_open
            .iter_mut()
            .map(|stream| closed_within(stream, limit)),
    )
    .await;
    let still_open = closed.iter().filter(|closed| !**closed).count();
    assert_eq!(still_open, 0, "half-open requests still open after 8 s");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let server = Server::start(&["--dev", "--header-timeout-secs", "2"]).await;
    let mut stream = TcpStream::connect(address(&server)).await.expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: vato\r\n\r\n")
        .await
        .expect("send");
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).await.expect("response");
    assert_eq!(
        status_of(&String::from_utf8_lossy(&buf[..n])),
        Some(200),
        "keep-alive response"
    );
    let idle = Instant::now();
    assert!(
        closed_within(&mut stream, Duration::from_secs(8)).await,
        "idle keep-alive connection still open"
    );
    assert!(
        idle.elapsed() >= Duration::from_millis(1500),
        "closed too early"
    );
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_at_accept() {
    let server = Server::start(&["--dev", "--max-http-connections", "20"]).await;
    let address = address(&server);
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut stream = TcpStream::connect(address).await.expect("connect");
        stream.write_all(HALF_REQUEST).await.expect("send");
        held.push(stream);
    }
    // Let the server accept them all.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let response = one_shot(address, &get("/healthz"), Duration::from_secs(5)).await;
    assert_eq!(response, "", "the 21st connection was served");

    // A freed slot is usable again.
    held.pop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let response = one_shot(address, &get("/healthz"), Duration::from_secs(5)).await;
    assert_eq!(status_of(&response), Some(200), "{response:?}");
}

#[tokio::test]
async fn a_request_head_over_the_cap_is_refused() {
    let server = Server::start(&["--dev", "--max-header-bytes", "16384"]).await;
    let address = address(&server);
    let header = |bytes: usize| {
        format!(
            "GET /api/ HTTP/1.1\r\nHost: vato\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
            "a".repeat(bytes)
        )
        .into_bytes()
    };
    let small = one_shot(address, &header(8_000), Duration::from_secs(5)).await;
    assert_eq!(status_of(&small), Some(200), "{small:?}");

    // 400 KB of headers: 431, or closed without an answer.
    let mut stream = TcpStream::connect(address).await.expect("connect");
    let _ = stream.write_all(&header(400_000)).await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await;
    let response = String::from_utf8_lossy(&response);
    assert!(
        response.is_empty() || status_of(&response) == Some(431),
        "{response:?}"
    );
}

#[tokio::test]
async fn a_slow_body_gets_408_but_a_websocket_outlives_the_timeouts() {
    let server = Server::start(&[
        "--dev",
        "--header-timeout-secs",
        "2",
        "--body-timeout-secs",
        "2",
    ])
    .await;
    let address = address(&server);
    let started = Instant::now();
    let response = one_shot(
        address,
        b"POST /api/auth/login/ HTTP/1.1\r\nHost: vato\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"user",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(status_of(&response), Some(408), "{response:?}");
    assert!(started.elapsed() < Duration::from_secs(8));

    let ana = server.register("ana").await;
    let ben = server.register("ben").await;
    let conv = ana.direct_with(&ben).await;
    let mut ws = ben.ws(conv).await;
    // Longer than both timeouts, with no traffic.
    tokio::time::sleep(Duration::from_secs(5)).await;
    ana.send_message(conv, "still there?").await;
    assert_eq!(
        ws.recv_type("message.new").await["data"]["content"],
        "still there?"
    );
}

#[tokio::test]
async fn sigterm_drops_a_half_open_client_after_the_grace_period() {
    let dir = tempfile::tempdir().expect("temp dir");
    let args = [
        "--dev",
        "--header-timeout-secs",
        "0",
        "--shutdown-grace-secs",
        "2",
    ];
    let server = Server::start_in(dir.path(), &args).await;
    let ana = server.register("ana").await;
    let ben = server.register("ben").await;
    let conv = ana.direct_with(&ben).await;
    ana.send_message(conv, "kept").await;
    let mut stream = TcpStream::connect(address(&server)).await.expect("connect");
    stream.write_all(HALF_REQUEST).await.expect("send");
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    let status = server.terminate().await;
    let took = started.elapsed();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        took >= Duration::from_millis(1500),
        "did not wait: {took:?}"
    );
    assert!(took < Duration::from_secs(8), "shutdown took {took:?}");
    let snapshot = vato_eventlog::snapshot::stored_offset(dir.path()).expect("read snapshot");
    assert!(snapshot.is_some(), "no snapshot");

    let server = Server::start_in(dir.path(), &args).await;
    let ana = server.login("ana", PASSWORD).await;
    let history = ana.history(conv, "").await;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["content"], "kept");
}

/// Every directory under `dir` is 0700 and every file 0600.
fn assert_private(dir: &Path) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let entry = entry.expect("entry");
        let path = entry.path();
        let meta = entry.metadata().expect("metadata");
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_dir() {
            assert_eq!(mode, 0o700, "{}", path.display());
            assert_private(&path);
        } else {
            assert_eq!(mode, 0o600, "{}", path.display());
        }
    }
}

#[tokio::test]
async fn the_data_directory_and_its_files_are_private() {
    let parent = tempfile::tempdir().expect("temp dir");
    let fresh = parent.path().join("fresh");
    let server = Server::start_in(&fresh, &["--dev"]).await;
    let ana = server.register("ana").await;
    let ben = server.register("ben").await;
    let conv = ana.direct_with(&ben).await;
    ana.send_message(conv, "private").await;
    assert!(server.terminate().await.success());
    let mode = std::fs::metadata(&fresh).expect("dir").permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    for name in ["dev-jwt-secret", "sled", "wal"] {
        assert!(fresh.join(name).exists(), "{name} missing");
    }
    assert_private(&fresh);

    // A directory made world-readable by hand is tightened at start.
    let open = parent.path().join("open");
    std::fs::create_dir(&open).expect("mkdir");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(open.join("dev-jwt-secret"), "0123456789abcdef0123").expect("secret");
    std::fs::set_permissions(
        open.join("dev-jwt-secret"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    let server = Server::start_in(&open, &["--dev"]).await;
    assert!(server.terminate().await.success());
    let mode = std::fs::metadata(&open).expect("dir").permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    let secret = open.join("dev-jwt-secret");
    let mode = std::fs::metadata(&secret)
        .expect("secret")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "an existing secret is tightened");
}

#[tokio::test]
async fn the_dev_hook_wants_json_and_a_token() {
    let server = Server::start(&["--dev"]).await;
    let ana = server.register("ana").await;
    let url = format!("{}/api/dev/drop-sockets/", server.base);
    let http = reqwest::Client::new();

    // What any web page can send: a simple text/plain POST.
    let anon = http
        .post(&url)
        .header("Content-Type", "text/plain")
        .body(format!("{{\"user_id\": {}}}", ana.id))
        .send()
        .await
        .expect("send");
    assert_eq!(anon.status(), 401);
    let anon_json = server
        .anon()
        .post("/api/dev/drop-sockets/", json!({"user_id": ana.id}))
        .await;
    assert_eq!(anon_json.status, 401);
    let text = http
        .post(&url)
        .bearer_auth(&ana.access)
        .header("Content-Type", "text/plain")
        .body(format!("{{\"user_id\": {}}}", ana.id))
        .send()
        .await
        .expect("send");
    assert_eq!(text.status(), 415);
    let ok = ana
        .post("/api/dev/drop-sockets/", json!({"user_id": ana.id}))
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body, json!({"closed": 0}));
}

#[tokio::test]
async fn metrics_can_need_a_token() {
    let server = Server::start(&["--dev", "--metrics-token", "metrics-secret-42"]).await;
    let url = format!("{}/metrics", server.base);
    let http = reqwest::Client::new();
    let none = http.get(&url).send().await.expect("send");
    assert_eq!(none.status(), 401);
    let wrong = http
        .get(&url)
        .bearer_auth("metrics-secret-43")
        .send()
        .await
        .expect("send");
    assert_eq!(wrong.status(), 401);
    let right = http
        .get(&url)
        .bearer_auth("metrics-secret-42")
        .send()
        .await
        .expect("send");
    assert_eq!(right.status(), 200);
    assert!(right
        .text()
        .await
        .expect("body")
        .contains("vato_ws_connections"));
}

#[tokio::test]
async fn metrics_can_live_on_their_own_address() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("address")
        .port();
    let metrics = format!("127.0.0.1:{port}");
    let server = Server::start(&["--dev", "--metrics-listen", &metrics]).await;
    let http = reqwest::Client::new();
    let main = http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .expect("send");
    assert_eq!(main.status(), 404);
    let own = http
        .get(format!("http://{metrics}/metrics"))
        .send()
        .await
        .expect("send");
    assert_eq!(own.status(), 200);
    assert!(own.text().await.expect("body").contains("vato_log_events"));
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let server = Server::start(&["--dev"]).await;
    let http = reqwest::Client::new();
    for (path, accept) in [
        ("/", "text/html"),
        ("/api/", "application/json"),
        ("/static/app.js", "*/*"),
        ("/api/no-such-thing/", "application/json"),
        ("/api/chat/conversations/", "application/json"),
    ] {
        let resp = http
            .get(format!("{}{path}", server.base))
            .header("Accept", accept)
            .send()
            .await
            .expect("send");
        let headers = resp.headers();
        let csp = headers
            .get("content-security-policy")
            .unwrap_or_else(|| panic!("{path}: no CSP"))
            .to_str()
            .expect("ascii");
        assert!(csp.contains("default-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(csp.contains("connect-src 'self' ws: wss:"), "{path}: {csp}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
    }
}
