//! The media store in cluster mode (issue 13): a real `nats-server` and two
//! real nodes sharing the JetStream Object Store bucket. An avatar uploaded
//! on node 1 is served by node 2 (same bytes, same ETag) and shown there
//! with node 2's absolute URL; replaced on node 2, the old object goes from
//! the bucket for both once `--media-gc-grace-secs` has passed. An
//! attachment sent on node 1 is downloaded by a member on node 2.

mod cluster_support;
mod common;

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use cluster_support::chat::*;
use cluster_support::Nats;
use common::{answered, messages_path, Scene};
use vato_client::rest::{multipart, Part};

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

#[tokio::test]
async fn an_attachment_sent_on_one_node_is_downloaded_on_the_other() {
    let nats = Nats::single().await;
    let dirs = [tempdir(), tempdir()];
    let (n1, n2) = two_nodes(&nats, &dirs, &[]).await;
    let lalo = n1.login("lalo", "lalo123").await;
    let kalu = n2.login("kalu", "kalu123").await;
    let conv = lalo.direct_with(&kalu).await;

    let video: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    let (content_type, body) = multipart(&[
        Part::text("content", "from node 1"),
        Part::typed_file("uploaded_files", "clip.mp4", "video/mp4", &video),
    ]);
    let sent = answered(
        lalo.post_raw(&messages_path(conv), &content_type, body)
            .await,
    );
    assert_eq!(sent.status, 201, "{}", sent.body);
    let path = sent.body["attachments"][0]["download_url"]
        .as_str()
        .expect("download_url")
        .to_owned();
    // Not a local file: the bucket holds it.
    assert!(!dirs[0].path().join("media").exists());

    // Node 2 serves it to the member once it has applied the message.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, headers, body) = kalu.get_bytes(&path, &[]).await.unwrap();
        if status == 200 {
            assert_eq!(body, video);
            assert_eq!(headers["content-type"], "video/mp4");
            assert_eq!(headers["etag"], format!("\"{}\"", sha256(&video)).as_str());
            break;
        }
        assert_eq!(status, 404, "before the message is applied");
        assert!(Instant::now() < deadline, "node 2 never served {path}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _, part) = kalu
        .get_bytes(&path, &[("Range", "bytes=1000-1999")])
        .await
        .unwrap();
    assert_eq!((status, part), (206, video[1000..2000].to_vec()));
    let history = kalu.history(conv, "").await;
    assert_eq!(history[0]["attachments"][0]["file_name"], "clip.mp4");
}
