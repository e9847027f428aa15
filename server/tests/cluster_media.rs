//! The media store in cluster mode (issue 13): a real `nats-server` and two
//! real nodes sharing the JetStream Object Store bucket. An avatar uploaded
//! on node 1 is served by node 2 (same bytes, same ETag) and shown there
//! with node 2's absolute URL; replaced on node 2, the old object goes from
//! the bucket for both once `--media-gc-grace-secs` has passed.

mod cluster_support;
mod common;

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use cluster_support::chat::*;
use cluster_support::Nats;
use common::answered;

fn png(tag: &str) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    bytes.extend_from_slice(tag.as_bytes());
    bytes
}

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

#[tokio::test]
async fn an_avatar_uploaded_on_one_node_is_served_by_the_other() {
    let nats = Nats::single().await;
    let dirs = [tempdir(), tempdir()];
    let (n1, n2) = two_nodes(&nats, &dirs, &["--media-gc-grace-secs", "1"]).await;
    let lalo = n1.login("lalo", "lalo123").await;
    let kalu = n2.login("kalu", "kalu123").await;

    let image = png("lalo on node 1");
    let key = format!("{}.png", sha256(&image));
    let resp = answered(lalo.upload_avatar("me.png", &image).await);
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(
        resp.body["avatar"],
        format!("{}/media/{key}", n1.base).as_str()
    );
    // Not a local file: the bucket holds it.
    assert!(!dirs[0].path().join("media").exists());

    // Node 2 serves it at once (the object was stored before the event).
    let (status, headers, body) = n2
        .anon()
        .get_bytes(&format!("/media/{key}"), &[])
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, image);
    assert_eq!(headers["content-type"], "image/png");
    let etag = format!("\"{}\"", sha256(&image));
    assert_eq!(headers["etag"], etag.as_str());
    let (status, _, _) = n2
        .anon()
        .get_bytes(&format!("/media/{key}"), &[("If-None-Match", &etag)])
        .await
        .unwrap();
    assert_eq!(status, 304);

    // Node 2 shows it with its own base, once it has applied the event.
    let url_on_2 = format!("{}/media/{key}", n2.base);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = kalu.get(&format!("/api/auth/users/{}/", lalo.id)).await;
        if seen.body["avatar"] == url_on_2.as_str() {
            break;
        }
        assert!(Instant::now() < deadline, "node 2 shows {}", seen.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Replaced on node 2: after the grace the old object is gone from the
    // bucket, for both nodes; the new one is served by node 1.
    let lalo_on_2 = n2.login("lalo", "lalo123").await;
    let newer = png("lalo on node 2");
    let new_key = format!("{}.png", sha256(&newer));
    let resp = answered(lalo_on_2.upload_avatar("me.png", &newer).await);
    assert_eq!(resp.status, 200, "{}", resp.body);
    let (status, _, body) = n1
        .anon()
        .get_bytes(&format!("/media/{new_key}"), &[])
        .await
        .unwrap();
    assert_eq!((status, body), (200, newer));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (on_1, _, _) = n1
            .anon()
            .get_bytes(&format!("/media/{key}"), &[])
            .await
            .unwrap();
        let (on_2, _, _) = n2
            .anon()
            .get_bytes(&format!("/media/{key}"), &[])
            .await
            .unwrap();
        if (on_1, on_2) == (404, 404) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replaced avatar is still served: {on_1} / {on_2}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
