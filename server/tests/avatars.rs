//! Avatars and the media store (`api/avatar.rs`, `api/media.rs`,
//! `media.rs`): uploads at both paths, the files on disk and at
//! `/media/<key>` (ETag, 304, cache headers), the absolute URLs in every
//! user object and in socket frames, replacement and deletion removing the
//! old file, every bad upload refused with nothing stored, and restarts.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::Value;
use sha2::{Digest, Sha256};
use vato_client::rest::{multipart, Part};

/// A PNG, a JPEG, a GIF and a WebP as their magic numbers and a body:
/// the server tells the type by those bytes, not by the file name.
fn png(tag: &str) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    bytes.extend_from_slice(tag.as_bytes());
    bytes
}

fn jpeg(tag: &str) -> Vec<u8> {
    let mut bytes = b"\xFF\xD8\xFF\xE0\0\x10JFIF\0".to_vec();
    bytes.extend_from_slice(tag.as_bytes());
    bytes
}

fn gif(tag: &str) -> Vec<u8> {
    let mut bytes = b"GIF89a\x01\0\x01\0".to_vec();
    bytes.extend_from_slice(tag.as_bytes());
    bytes
}

fn webp(tag: &str) -> Vec<u8> {
    let mut bytes = b"RIFF\x24\0\0\0WEBPVP8 ".to_vec();
    bytes.extend_from_slice(tag.as_bytes());
    bytes
}

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

fn media_dir(server: &Server) -> PathBuf {
    server.data_dir().join("media")
}

/// The media key at the end of an avatar URL.
fn key_of(url: &Value) -> String {
    let url = url
        .as_str()
        .unwrap_or_else(|| panic!("no avatar URL: {url}"));
    url.rsplit('/').next().unwrap().to_owned()
}

async fn upload(user: &User, file_name: &str, bytes: &[u8]) -> Resp {
    answered(user.upload_avatar(file_name, bytes).await)
}

#[tokio::test]
async fn an_uploaded_avatar_is_stored_served_and_shown_everywhere() {
    let server = Server::start(&["--dev"]).await;
    let ana = server.register("ana").await;
    let bo = server.register("bo").await;
    let conv = ana.direct_with(&bo).await;
    let mut bo_socket = Ws::connect(&bo.ws_url(conv, None)).await;

    let image = png("ana's face");
    // The file name says nothing: the bytes are a PNG.
    let resp = upload(&ana, "face.jpeg", &image).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(keys(&resp.body), PROFILE_KEYS);
    let key = format!("{}.png", sha256(&image));
    let url = format!("{}/media/{key}", server.base);
    assert_eq!(resp.body["avatar"], url.as_str());
    assert_eq!(resp.body["avatar_url"], url.as_str());

    // On disk, private, fsynced before the answer.
    let dir = media_dir(&server);
    assert_eq!(media_files(&dir), vec![key.clone()]);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(&key)), 0o600);
    assert_eq!(std::fs::read(dir.join(&key)).unwrap(), image);

    // Served with its hash as ETag, cacheable for good.
    let (status, headers, body) = server.anon().get_bytes(&url, &[]).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, image);
    assert_eq!(headers["content-type"], "image/png");
    let etag = format!("\"{}\"", sha256(&image));
    assert_eq!(headers["etag"], etag.as_str());
    assert_eq!(
        headers["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let (status, headers, body) = server
        .anon()
        .get_bytes(&url, &[("If-None-Match", &etag)])
        .await
        .unwrap();
    assert_eq!(status, 304);
    assert!(body.is_empty());
    assert_eq!(headers["etag"], etag.as_str());
    let other = format!("W/\"{}\", {etag}", "0".repeat(64));
    let (status, _, _) = server
        .anon()
        .get_bytes(&url, &[("If-None-Match", &other)])
        .await
        .unwrap();
    assert_eq!(status, 304, "one of a list of tags");
    let (status, _, body) = server
        .anon()
        .get_bytes(&url, &[("If-None-Match", "\"something-else\"")])
        .await
        .unwrap();
    assert_eq!((status, body), (200, image.clone()));

    // Absolute in every user object, for the user and for others.
    assert_eq!(answered(ana.user_me().await).body["avatar"], url.as_str());
    let seen = bo.get(&format!("/api/auth/users/{}/", ana.id)).await;
    assert_eq!(seen.body["avatar"], url.as_str());
    let public = bo.get(&format!("/api/auth/profile/{}/", ana.id)).await;
    assert_eq!(public.body["avatar"], url.as_str());
    let sent = ana.send_message(conv, "with a face").await;
    assert_eq!(sent["sender"]["avatar"], url.as_str());
    assert_eq!(
        bo.history(conv, "").await[0]["sender"]["avatar"],
        url.as_str()
    );
    let listed = bo.listed_conversation(conv).await;
    let member = listed["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["user"]["id"] == ana.id)
        .unwrap();
    assert_eq!(member["user"]["avatar"], url.as_str());
    // Others get a user object rendered once and kept (#12); under
    // another Host its URL follows that Host all the same, and the kept
    // one is still right after.
    let proxied = behind_proxy(&server, &bo, "/api/chat/conversations/").await;
    let proxied = proxied
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == conv)
        .unwrap();
    assert_eq!(
        member_user(proxied, ana.id)["avatar"],
        format!("https://chat.example.com/media/{key}").as_str()
    );
    assert_eq!(
        member_user(&bo.listed_conversation(conv).await, ana.id)["avatar"],
        url.as_str()
    );
    // And in socket frames (the listen address: no --public-url here).
    let frame = bo_socket.recv_type("message.new").await;
    assert_eq!(frame["data"]["sender"]["avatar"], url.as_str());

    // The contract's own path takes uploads too (a GIF, then a WebP).
    for image in [gif("ana"), webp("ana"), jpeg("ana")] {
        let (content_type, body) = multipart(&[Part::file("avatar", "a.bin", &image)]);
        let resp = answered(
            ana.post_raw("/api/auth/profile/avatar/", &content_type, body)
                .await,
        );
        assert_eq!(resp.status, 200, "{}", resp.body);
        let key = key_of(&resp.body["avatar"]);
        let (_, headers, body) = server
            .anon()
            .get_bytes(resp.body["avatar"].as_str().unwrap(), &[])
            .await
            .unwrap();
        assert_eq!(body, image);
        let want = match key.rsplit('.').next().unwrap() {
            "gif" => "image/gif",
            "webp" => "image/webp",
            "jpg" => "image/jpeg",
            other => panic!("extension {other}"),
        };
        assert_eq!(headers["content-type"], want);
    }

    // Hidden from others when show_profile_photo is off; shown to oneself.
    let resp = ana
        .patch(
            "/api/auth/profile/me/",
            serde_json::json!({"show_profile_photo": false}),
        )
        .await;
    assert_eq!(resp.status, 200);
    assert!(resp.body["avatar"].is_string());
    let seen = bo.get(&format!("/api/auth/users/{}/", ana.id)).await;
    assert_eq!(seen.body["avatar"], Value::Null);
    let public = bo.get(&format!("/api/auth/profile/{}/", ana.id)).await;
    assert!(public.body.get("avatar").is_none());
    let listed = bo.listed_conversation(conv).await;
    assert_eq!(member_user(&listed, ana.id)["avatar"], Value::Null);
}

/// The user object of member `id` in a listed conversation.
fn member_user(conversation: &Value, id: u64) -> Value {
    conversation["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["user"]["id"] == id)
        .unwrap_or_else(|| panic!("no member {id} in {conversation}"))["user"]
        .clone()
}

#[tokio::test]
async fn replacing_or_deleting_an_avatar_removes_the_file_nothing_refers_to() {
    let server = Server::start(&["--dev"]).await;
    let dir = media_dir(&server);
    let ana = server.register("ana").await;
    let bo = server.register("bo").await;
    let first = png("first");
    let first_key = format!("{}.png", sha256(&first));
    let second = jpeg("second");
    let second_key = format!("{}.jpg", sha256(&second));

    assert_eq!(upload(&ana, "a.png", &first).await.status, 200);
    let resp = upload(&ana, "b.jpg", &second).await;
    assert_eq!(key_of(&resp.body["avatar"]), second_key);
    wait_for_files(&dir, &[&second_key]).await;
    let (status, _, _) = server
        .anon()
        .get_bytes(&format!("/media/{first_key}"), &[])
        .await
        .unwrap();
    assert_eq!(status, 404, "the replaced file is gone");

    // The same bytes for two users: one file, kept while either has it.
    assert_eq!(upload(&bo, "same.jpg", &second).await.status, 200);
    assert_eq!(media_files(&dir), vec![second_key.clone()]);
    assert_eq!(upload(&ana, "a.png", &first).await.status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    wait_for_files(&dir, &[&first_key, &second_key]).await;

    let resp = bo.delete("/api/auth/profile/avatar/").await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.body,
        serde_json::json!({"message": "Avatar deleted successfully"})
    );
    assert_eq!(answered(bo.profile_me().await).body["avatar"], Value::Null);
    assert_eq!(
        answered(bo.profile_me().await).body["avatar_url"],
        Value::Null
    );
    wait_for_files(&dir, &[&first_key]).await;
    // Again, with none: still 200, nothing changes.
    assert_eq!(bo.delete("/api/auth/profile/me/avatar/").await.status, 200);
    let resp = ana.delete("/api/auth/profile/me/avatar/").await;
    assert_eq!(resp.status, 200);
    wait_for_no_files(&dir).await;
    assert_eq!(
        server
            .anon()
            .delete("/api/auth/profile/avatar/")
            .await
            .status,
        401
    );
}

/// What the avatar route reads of a body at most, in the test below:
/// `--max-body-bytes` (its default, 256 KiB) plus `--max-avatar-bytes 1000`.
const WHOLE_BODY_BOUND: usize = 256 * 1024 + 1000;

#[tokio::test]
async fn bad_uploads_are_refused_and_leave_nothing_behind() {
    let server = Server::start(&["--dev", "--max-avatar-bytes", "1000"]).await;
    let dir = media_dir(&server);
    let ana = server.register("ana").await;
    let path = "/api/auth/profile/me/avatar/";
    let no_file = serde_json::json!({"error": "No avatar file provided"});
    let not_an_image = serde_json::json!({"avatar": ["Upload a valid image. The file you uploaded was either not an image or a corrupted image."]});
    let too_big = serde_json::json!({"avatar": ["Ensure this file is no larger than 1000 bytes."]});

    let mut big = png("");
    big.resize(1001, b'x');
    let mut at_limit = png("");
    at_limit.resize(1000, b'y');
    // Far past both the avatar limit and --max-body-bytes (256 KiB): still
    // the avatar's field error, not a 413.
    let mut huge = png("");
    huge.resize(3 << 20, b'z');
    let html = b"<html><script>alert(1)</script></html>".to_vec();
    let image = png("fine");

    let cases: Vec<(&str, String, Vec<u8>, Value)> = vec![
        (
            "JSON instead of multipart",
            "application/json".into(),
            br#"{"avatar": "x"}"#.to_vec(),
            no_file.clone(),
        ),
        {
            let (ct, body) = multipart(&[Part::file("photo", "a.png", &image)]);
            ("wrong field name", ct, body, no_file.clone())
        },
        {
            let (ct, body) = multipart(&[]);
            ("zero parts", ct, body, no_file.clone())
        },
        {
            let (ct, body) = multipart(&[Part::text("avatar", "not a file")]);
            ("a text field, not a file", ct, body, no_file.clone())
        },
        {
            let (ct, body) = multipart(&[Part::file("avatar", "a.png", &html)]);
            ("HTML named .png", ct, body, not_an_image.clone())
        },
        {
            let (ct, body) = multipart(&[Part::file("avatar", "a.png", b"")]);
            ("an empty file", ct, body, not_an_image.clone())
        },
        {
            let (ct, body) = multipart(&[Part::file("avatar", "a.png", &big)]);
            ("one byte over", ct, body, too_big.clone())
        },
        {
            let (ct, body) = multipart(&[Part::file("avatar", "a.png", &huge)]);
            ("3 MiB", ct, body, too_big.clone())
        },
        {
            let (ct, body) = multipart(&[
                Part::file("avatar", "a.png", &image),
                Part::file("avatar", "b.png", &image),
            ]);
            (
                "two files",
                ct,
                body,
                serde_json::json!({"avatar": ["Upload a single file."]}),
            )
        },
    ];
    for (what, content_type, body, expected) in cases {
        let past_the_bound = body.len() > WHOLE_BODY_BOUND;
        let sent = ana.post_raw(path, &content_type, body).await;
        let resp = match sent {
            // The server refuses a file past its limit after reading the
            // rest of the form and dropping it, but never past the
            // whole-body bound: there it answers and closes with bytes
            // unread, so a client still writing may see its connection
            // reset before it reads that answer. Only a cut connection is
            // accepted, never a timeout nor another answer, and only for
            // a body past the whole-body bound.
            Err(e) if past_the_bound && !e.source.is_timeout() => {
                eprintln!("{what}: connection cut before the answer was read: {e}");
                continue;
            }
            sent => answered(sent),
        };
        assert_eq!(resp.status, 400, "{what}: {}", resp.body);
        assert_eq!(resp.body, expected, "{what}");
        // Read to its end, the connection stays open for the next request;
        // cut at the bound, the answer says it closes.
        let closes = resp
            .headers
            .get("connection")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        assert_eq!(closes, past_the_bound, "{what}: {:?}", resp.headers);
    }

    // Cut short: the file is all there, the form's end is not.
    let (content_type, body) = multipart(&[Part::file("avatar", "a.png", &image)]);
    for cut in [body.len() - 10, body.len() / 2, 20] {
        let resp = answered(
            ana.post_raw(path, &content_type, body[..cut].to_vec())
                .await,
        );
        assert_eq!(resp.status, 400, "cut at {cut}: {}", resp.body);
        let detail = resp.body["detail"].as_str().unwrap_or_default();
        assert!(
            detail.starts_with("Multipart form parse error - "),
            "{}",
            resp.body
        );
    }
    // A boundary the body does not use.
    let resp = answered(
        ana.post_raw(path, "multipart/form-data; boundary=other", body.clone())
            .await,
    );
    assert_eq!(resp.status, 400, "{}", resp.body);

    // Other fields past the route's own limit (avatar + --max-body-bytes).
    let filler = "f".repeat(300 * 1024);
    let (content_type, big_form) = multipart(&[
        Part::text("note", &filler),
        Part::file("avatar", "a.png", &image),
    ]);
    let resp = answered(ana.post_raw(path, &content_type, big_form).await);
    assert_eq!(resp.status, 413, "{}", resp.body);
    assert_eq!(resp.body["detail"], "Request body too large.");

    // No token.
    let (content_type, form) = multipart(&[Part::file("avatar", "a.png", &image)]);
    let resp = answered(
        server
            .anon()
            .post_raw(path, &content_type, form.clone())
            .await,
    );
    assert_eq!(resp.status, 401);

    // Nothing was stored: no avatar, no file, no temporary file.
    assert_eq!(answered(ana.profile_me().await).body["avatar"], Value::Null);
    wait_for_no_files(&dir).await;

    // Exactly at the limit is fine; other fields beside it are ignored.
    let (content_type, form) = multipart(&[
        Part::text("note", "hello"),
        Part::file("avatar", "a.png", &at_limit),
    ]);
    let resp = answered(ana.post_raw(path, &content_type, form).await);
    assert_eq!(resp.status, 200, "{}", resp.body);
    wait_for_files(&dir, &[&format!("{}.png", sha256(&at_limit))]).await;
}

#[tokio::test]
async fn unknown_and_malformed_media_paths_are_404() {
    let server = Server::start(&["--dev"]).await;
    let api = server.anon();
    for path in [
        format!("/media/{}.png", "a".repeat(64)),
        "/media/notakey".to_owned(),
        "/media/..%2F..%2Fsnapshot.bin".to_owned(),
        format!("/media/{}", "a".repeat(64)),
        format!("/media/{}.PNG", "a".repeat(64)),
    ] {
        let (status, _, _) = api.get_bytes(&path, &[]).await.unwrap();
        assert_eq!(status, 404, "{path}");
    }
}

#[tokio::test]
async fn avatars_survive_a_restart_and_the_sweep_removes_strays() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_in(data.path(), &["--dev"]).await;
    let ana = server.register("ana").await;
    let image = webp("kept");
    let key = format!("{}.webp", sha256(&image));
    assert_eq!(upload(&ana, "a.webp", &image).await.status, 200);
    assert!(server.terminate().await.success());

    // What a crash between a file's write and its event leaves, and a
    // write cut before its rename.
    let dir = data.path().join("media");
    let stray = format!("{}.png", sha256(b"stray"));
    std::fs::write(dir.join(&stray), png("stray")).unwrap();
    std::fs::write(dir.join(".tmp-0123456789abcdef"), b"half").unwrap();

    let server = Server::start_in(data.path(), &["--dev"]).await;
    let ana = server.login("ana", PASSWORD).await;
    let profile = answered(ana.profile_me().await).body;
    let url = format!("{}/media/{key}", server.base);
    assert_eq!(profile["avatar"], url.as_str());
    // The login answer's user object is absolute too (the original's was
    // relative), and behind a TLS proxy the scheme follows it.
    let login = serde_json::json!({"username": "ana", "password": PASSWORD});
    let resp = server.anon().post("/api/auth/login/", login).await;
    assert_eq!(resp.body["user"]["avatar"], url.as_str());
    let proxied = behind_proxy(&server, &ana, "/api/auth/profile/me/").await;
    assert_eq!(
        proxied["avatar"],
        format!("https://chat.example.com/media/{key}").as_str()
    );
    // HEAD: the headers without the body.
    let head = reqwest::Client::new().head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        image.len().to_string().as_str()
    );
    let (status, _, body) = server
        .anon()
        .get_bytes(profile["avatar"].as_str().unwrap(), &[])
        .await
        .unwrap();
    assert_eq!((status, body), (200, image));
    wait_for_files(&dir, &[&key]).await;
}

#[tokio::test]
async fn public_url_sets_the_base_of_every_media_url() {
    let server = Server::start(&["--dev", "--public-url", "https://chat.example.com/"]).await;
    let ana = server.register("ana").await;
    let bo = server.register("bo").await;
    let conv = ana.direct_with(&bo).await;
    let mut socket = Ws::connect(&bo.ws_url(conv, None)).await;
    let image = gif("public");
    let url = format!("https://chat.example.com/media/{}.gif", sha256(&image));
    assert_eq!(
        upload(&ana, "g.gif", &image).await.body["avatar"],
        url.as_str()
    );
    ana.send_message(conv, "hi").await;
    let frame = socket.recv_type("message.new").await;
    assert_eq!(frame["data"]["sender"]["avatar"], url.as_str());
    assert_eq!(
        bo.get(&format!("/api/auth/users/{}/", ana.id)).await.body["avatar"],
        url.as_str()
    );
}

#[tokio::test]
async fn a_malformed_public_url_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    for bad in [
        "chat.example.com",
        "ftp://x.example",
        "https://a b",
        "https://u@h/",
    ] {
        let args = [
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data_dir,
            "--dev",
            "--public-url",
            bad,
        ];
        let output = run_to_exit(&args).await;
        assert!(!output.status.success(), "{bad} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--public-url"), "{bad}: {stderr}");
    }
}

/// GET `path` as `user`, as a TLS proxy for chat.example.com forwards it.
async fn behind_proxy(server: &Server, user: &User, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{}{path}", server.base))
        .bearer_auth(&user.access)
        .header("X-Forwarded-Proto", "https")
        .header("Host", "chat.example.com")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
