//! Memory that does not grow with use (issue 12).

mod common;

use common::{Server, PASSWORD};

/// Each argon2 hash allocates 19 MiB. A burst of logins costs the hashes
/// running at once (one per core) while it lasts and nothing after it: the
/// server gives those blocks back to the kernel (glibc kept them in
/// per-thread arenas: 112 logins, 16 at a time, left 391 MiB behind).
#[tokio::test]
async fn a_burst_of_logins_leaves_no_memory_behind() {
    let server = Server::start(&["--dev", "--register-rate", "0"]).await;
    server.register("burst").await;
    let before = server.rss_bytes();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let api = server.anon();
        tasks.push(tokio::spawn(async move {
            for _ in 0..8 {
                let resp = api.login("burst", PASSWORD).await.expect("login");
                assert_eq!(resp.status, 200, "{}", resp.body);
            }
        }));
    }
    let mut peak = before;
    while !tasks.iter().all(|t| t.is_finished()) {
        peak = peak.max(server.rss_bytes());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for task in tasks {
        task.await.expect("login task");
    }
    let after = server.rss_bytes();
    let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
    eprintln!(
        "128 logins: RSS {:.1} MiB before, {:.1} at the peak, {:.1} after",
        mib(before),
        mib(peak),
        mib(after)
    );
    assert!(
        peak <= before + (64 << 20),
        "a burst of logins took {:.1} MiB (limit 64)",
        mib(peak - before)
    );
    assert!(
        after <= before + (16 << 20),
        "{:.1} MiB stayed after the burst (limit 16)",
        mib(after.saturating_sub(before))
    );
}
