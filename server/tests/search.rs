//! History search (`?search=` on the messages list, `search.rs`), issue 17
//! finding 4: a member looping a search must not hold up other users'
//! sends (the scan never holds the state lock), and one search's cost is
//! bounded by `--search-scan-limit`.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Sends `count` messages (`content` plus their number) over one socket,
/// pipelined a hundred at a time, and waits for every echo.
async fn fill(user: &User, conv: u64, count: usize, content: &str) {
    let mut ws = user.ws(conv).await;
    for start in (0..count).step_by(100) {
        let end = (start + 100).min(count);
        for i in start..end {
            ws.send_text(&frames::send_text(
                &format!("{content} #{i}"),
                &format!("fill-{i}"),
            ))
            .await;
        }
        for _ in start..end {
            ws.recv_type("message.new").await;
        }
    }
    ws.close().await;
}

fn contents(page: &[Value]) -> Vec<&str> {
    page.iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect()
}

fn search_path(needle: &str, more: &str) -> String {
    format!("search={}{more}", vato_client::socket::encode(needle))
}

#[tokio::test]
async fn search_matches_case_insensitively_skips_deleted_and_stops_at_its_budget() {
    let server = Server::start(&[
        "--demo",
        "--user-msg-rate",
        "0",
        "--search-scan-limit",
        "50",
    ])
    .await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let conv = lalo.direct_with(&kalu).await;
    let needle_first = lalo.send_message(conv, "The NEEDLE is oldest").await;
    fill(&lalo, conv, 60, "hay").await;
    let deleted = kalu.send_message(conv, "a needle deleted").await;
    let resp = answered(
        kalu.delete_message(conv, deleted["id"].as_u64().unwrap())
            .await,
    );
    assert!(resp.status < 300, "{}", resp.body);
    lalo.send_message(conv, "needle, newest").await;

    // The newest 50 are scanned: the newest needle is found, the deleted
    // one is not, the oldest lies past the budget.
    let resp = answered(kalu.messages(conv, &search_path("Needle", "")).await);
    assert_eq!(resp.status, 200, "{}", resp.body);
    let page = resp.body.as_array().unwrap().clone();
    assert_eq!(contents(&page), ["needle, newest"]);
    let stopped: u64 = resp.headers["x-search-stopped-at"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // Going on from there finds the oldest.
    let more = kalu
        .history(conv, &search_path("needle", &format!("&before={stopped}")))
        .await;
    assert_eq!(contents(&more), ["The NEEDLE is oldest"]);
    assert_eq!(more[0]["id"], needle_first["id"]);

    // A search that reaches the end of its range within budget says so by
    // leaving the header out; so does one that fills its page.
    let resp = answered(
        kalu.messages(conv, &search_path("hay #5", "&limit=3"))
            .await,
    );
    assert_eq!(
        contents(resp.body.as_array().unwrap()),
        ["hay #59", "hay #58", "hay #57"]
    );
    assert!(!resp.headers.contains_key("x-search-stopped-at"));
    // After a cursor, oldest of the range first, still newest first on
    // the page.
    let after = needle_first["id"].as_u64().unwrap();
    let page = kalu
        .history(
            conv,
            &search_path("hay #1", &format!("&after={after}&limit=2")),
        )
        .await;
    assert_eq!(contents(&page), ["hay #10", "hay #1"]);
    let resp = answered(
        kalu.messages(conv, &search_path("nowhere", &format!("&after={after}")))
            .await,
    );
    assert_eq!(resp.body, Value::Array(Vec::new()));
    assert!(resp.headers.contains_key("x-search-stopped-at"));
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Times `count` REST sends of `user` into `conv`, one after the other.
async fn send_latencies(user: &User, conv: u64, count: usize) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(count);
    for i in 0..count {
        let started = Instant::now();
        user.send_message(conv, &format!("timed {i}")).await;
        latencies.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(7)).await;
    }
    latencies
}

/// The finding's probe: one member loops a search that matches nothing in
/// a long conversation while another user sends. The search is unbounded
/// here (`--search-scan-limit 0`), so each one does as much work as the
/// old scan under the lock; what is tested is that it holds no lock while
/// it does.
///
/// Why this can fail: a scan under the state lock blocks the store's
/// writer (and with it every send) for the rest of the scan, so a send
/// arriving at a random moment waits about half a scan: the median send
/// would rise by about half the median search time. The bound allows 1.5×
/// the quiet median plus a fifth of a search (at least 3 ms) for two
/// cores shared with the searcher and the test itself.
#[tokio::test]
async fn a_looping_search_does_not_hold_up_other_users_sends() {
    let server = Server::start(&[
        "--demo",
        "--user-msg-rate",
        "0",
        "--user-bytes-rate",
        "0",
        "--search-scan-limit",
        "0",
    ])
    .await;
    let (lalo, kalu) = server.lalo_and_kalu().await;
    let mika = server.register("mika").await;
    let searched = lalo.direct_with(&kalu).await;
    // 3,000 messages of 3,000 non-ASCII-heavy characters: ~10 MB to fold
    // and compare per search.
    let text = "Grüße aus München, señor Ñandú. ".repeat(94);
    fill(&lalo, searched, 3000, &text).await;
    let elsewhere = kalu.direct_with(&mika).await;

    // Warm up, then the quiet baseline.
    send_latencies(&kalu, elsewhere, 5).await;
    let quiet = median(send_latencies(&kalu, elsewhere, 31).await);

    let stop = Arc::new(AtomicBool::new(false));
    let searcher = {
        let (lalo, stop) = (lalo.clone(), stop.clone());
        tokio::spawn(async move {
            let mut times = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let resp = answered(lalo.messages(searched, "search=zzz-nowhere&limit=20").await);
                assert_eq!(resp.body, Value::Array(Vec::new()));
                times.push(started.elapsed());
            }
            times
        })
    };
    // Let the loop get going.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let busy = median(send_latencies(&kalu, elsewhere, 31).await);
    stop.store(true, Ordering::Relaxed);
    let searches = searcher.await.expect("searcher");
    let search = median(searches.clone());
    eprintln!(
        "send median: quiet {quiet:?}, during {} searches {busy:?}; search median {search:?}",
        searches.len()
    );
    assert!(
        searches.len() >= 2 && search >= Duration::from_millis(15),
        "the searches must be real work for this to tell anything: {} of {search:?}",
        searches.len()
    );
    let slack = (search / 5).max(Duration::from_millis(3));
    let bound = quiet.mul_f64(1.5) + slack;
    assert!(
        busy <= bound,
        "sends slowed from {quiet:?} to {busy:?} (bound {bound:?}) by searches of {search:?}"
    );
}
