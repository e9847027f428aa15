//! Attachments (`api/attachments.rs`): the multipart send with files in
//! `uploaded_files`, the attachment objects over REST and on the socket,
//! the members-only download with `ETag`, `If-None-Match` and `Range`,
//! exactly-once with `client_id`, restarts, and every bad form refused
//! with no message and no file left behind.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::Value;
use sha2::{Digest, Sha256};
use vato_client::rest::{multipart, Part};

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

fn media_dir(data: &Path) -> PathBuf {
    data.join("media")
}

async fn send_form(user: &User, conv: u64, parts: &[Part<'_>]) -> Resp {
    let (content_type, body) = multipart(parts);
    answered(
        user.post_raw(&messages_path(conv), &content_type, body)
            .await,
    )
}

fn download_path(attachment: &Value) -> String {
    attachment["download_url"]
        .as_str()
        .unwrap_or_else(|| panic!("no download_url: {attachment}"))
        .to_owned()
}

#[tokio::test]
async fn files_sent_with_a_message_are_delivered_and_downloaded_by_members_only() {
    let data = tempfile::tempdir().expect("tempdir");
    let server = Server::start_in(data.path(), &["--dev"]).await;
    let ana = server.register("ana").await;
    let bo = server.register("bo").await;
    let cy = server.register("cy").await;
    let conv = ana.direct_with(&bo).await;
    let mut bo_socket = Ws::connect(&bo.ws_url(conv, None)).await;

    let photo: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    let notes = b"plain notes".to_vec();
    let resp = send_form(
        &ana,
        conv,
        &[
            Part::text("content", "two files"),
            Part::text("client_id", "upload-1"),
            Part::typed_file("uploaded_files", "photo.JPG", "image/jpeg", &photo),
            Part::file("uploaded_files", "notes", &notes),
        ],
    )
    .await;
    assert_eq!(resp.status, 201, "{}", resp.body);
    let message = resp.body.clone();
    assert_key_set(&message, &MESSAGE_KEYS);
    assert_eq!(message["content"], "two files");
    assert_eq!(
        message["message_type"], "text",
        "not derived from the files"
    );
    let attachments = message["attachments"].as_array().expect("attachments");
    assert_eq!(attachments.len(), 2);
    for a in attachments {
        assert_key_set(a, &ATTACHMENT_KEYS);
    }
    assert_eq!(attachments[0]["file_name"], "photo.JPG");
    assert_eq!(attachments[0]["file_size"], 10_000);
    assert_eq!(attachments[0]["mime_type"], "image/jpeg");
    assert_eq!(attachments[1]["file_name"], "notes");
    assert_eq!(attachments[1]["mime_type"], "application/octet-stream");
    let photo_key = format!("{}.jpg", sha256(&photo));
    let notes_key = format!("{}.bin", sha256(&notes));
    assert_eq!(
        attachments[0]["file"],
        format!("{}/media/{photo_key}", server.base).as_str()
    );
    let id = attachments[0]["id"].as_u64().unwrap();
    assert_eq!(
        download_path(&attachments[0]),
        format!("/api/chat/attachments/{id}/download/")
    );
    let mut stored = vec![photo_key.clone(), notes_key.clone()];
    stored.sort();
    assert_eq!(media_files(&media_dir(data.path())), stored);

    // Live, with its attachments, in one message.new.
    let (frame, _) = bo_socket.recv_until("message.new").await;
    assert_eq!(frame["data"]["attachments"], message["attachments"]);
    assert_eq!(frame["data"]["id"], message["id"]);

    // A retry of the client_id: the original, nothing new stored. Its file
    // is over a megabyte, so it goes the way of big files: renamed away at
    // once, freed a megabyte at a time in the background.
    let other = vec![7u8; 2 * 1024 * 1024 + 1];
    let again = send_form(
        &ana,
        conv,
        &[
            Part::text("content", "two files"),
            Part::text("client_id", "upload-1"),
            Part::file("uploaded_files", "other.txt", &other),
        ],
    )
    .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["id"], message["id"]);
    assert_eq!(again.body["attachments"], message["attachments"]);
    wait_for_files(&media_dir(data.path()), &stored).await;

    // The member downloads it: bytes, type, name, ETag, ranges.
    let path = download_path(&attachments[0]);
    let (status, headers, body) = bo.get_bytes(&path, &[]).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, photo);
    assert_eq!(headers["content-type"], "image/jpeg");
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"photo.JPG\""
    );
    assert_eq!(headers["accept-ranges"], "bytes");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let etag = format!("\"{}\"", sha256(&photo));
    assert_eq!(headers["etag"], etag.as_str());
    let (status, _, body) = bo
        .get_bytes(&path, &[("If-None-Match", &etag)])
        .await
        .unwrap();
    assert_eq!((status, body.len()), (304, 0));
    let (status, headers, body) = bo
        .get_bytes(&path, &[("Range", "bytes=100-199")])
        .await
        .unwrap();
    assert_eq!(status, 206);
    assert_eq!(body, photo[100..200]);
    assert_eq!(headers["content-range"], "bytes 100-199/10000");
    let (status, _, body) = bo
        .get_bytes(&path, &[("Range", "bytes=-10")])
        .await
        .unwrap();
    assert_eq!((status, body), (206, photo[9_990..].to_vec()));
    let (status, headers, _) = bo
        .get_bytes(&path, &[("Range", "bytes=20000-")])
        .await
        .unwrap();
    assert_eq!(status, 416);
    assert_eq!(headers["content-range"], "bytes */10000");
    let (status, _, body) = bo
        .get_bytes(&path, &[("Range", "bytes=0-1"), ("If-Range", "\"stale\"")])
        .await
        .unwrap();
    assert_eq!(
        (status, body.len()),
        (200, 10_000),
        "If-Range of another tag"
    );

    // Not a member, an unknown id, no token: the same 404 (401 without a token).
    let outsider = cy.get_bytes(&path, &[]).await.unwrap();
    let unknown = bo
        .get_bytes("/api/chat/attachments/999999/download/", &[])
        .await
        .unwrap();
    assert_eq!(outsider.0, 404);
    assert_eq!(unknown.0, 404);
    assert_eq!(outsider.2, unknown.2, "a non-member learns nothing");
    let (status, _, _) = server.anon().get_bytes(&path, &[]).await.unwrap();
    assert_eq!(status, 401);

    // In the history, and still there after a restart.
    let history = bo.history(conv, "").await;
    assert_eq!(history[0]["attachments"], message["attachments"]);
    drop(bo_socket);
    server.terminate().await;
    let server = Server::start_in(data.path(), &["--dev"]).await;
    let bo = server.login("bo", PASSWORD).await;
    let (status, _, body) = bo.get_bytes(&path, &[]).await.unwrap();
    assert_eq!((status, body), (200, photo));
    let notes_path = download_path(&attachments[1]);
    let (status, headers, body) = bo.get_bytes(&notes_path, &[]).await.unwrap();
    assert_eq!((status, body), (200, notes));
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"notes\""
    );
}

#[tokio::test]
async fn a_file_alone_is_a_message_and_a_form_without_files_is_a_plain_send() {
    let server = Server::start(&["--dev"]).await;
    let ana = server.register("ana").await;
    let bo = server.register("bo").await;
    let conv = ana.direct_with(&bo).await;
    let pdf = b"%PDF-1.4 tiny".to_vec();
    let resp = send_form(
        &ana,
        conv,
        &[
            Part::text("message_type", "file"),
            Part::typed_file("uploaded_files", "résumé v2.pdf", "application/pdf", &pdf),
        ],
    )
    .await;
    assert_eq!(resp.status, 201, "{}", resp.body);
    assert_eq!(resp.body["content"], "");
    assert_eq!(resp.body["message_type"], "file");
    let attachment = &resp.body["attachments"][0];
    assert_eq!(attachment["file_name"], "résumé v2.pdf");
    let (status, headers, _) = bo.get_bytes(&download_path(attachment), &[]).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"r_sum_ v2.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20v2.pdf"
    );

    let plain = send_form(&ana, conv, &[Part::text("content", "form, no files")]).await;
    assert_eq!(plain.status, 201, "{}", plain.body);
    assert_eq!(plain.body["attachments"], serde_json::json!([]));
    let blank = send_form(&ana, conv, &[Part::text("content", " ")]).await;
    assert_eq!(
        blank.status, 400,
        "blank text without files: {}",
        blank.body
    );
    assert_eq!(bo.history(conv, "").await.len(), 2);
}

#[tokio::test]
async fn bad_forms_are_refused_with_no_message_and_no_file_left() {
    let data = tempfile::tempdir().expect("tempdir");
    let server = Server::start_in(
        data.path(),
        &[
            "--dev",
            "--max-attachments",
            "2",
            "--max-upload-bytes",
            "1000",
        ],
    )
    .await;
    let ana = server.register("ana").await;
    let bo = server.register("bo").await;
    let cy = server.register("cy").await;
    let conv = ana.direct_with(&bo).await;
    let small = b"small file".to_vec();
    let big = vec![7u8; 1001];
    let empty: Vec<u8> = Vec::new();

    let cases: Vec<(&str, Vec<Part>, u16, Value)> = vec![
        (
            "an empty file",
            vec![
                Part::file("uploaded_files", "a.txt", &small),
                Part::file("uploaded_files", "b.txt", &empty),
            ],
            400,
            serde_json::json!({"uploaded_files": {"1": ["The submitted file is empty."]}}),
        ),
        (
            "a value where a file goes",
            vec![Part::text("uploaded_files", "not a file")],
            400,
            serde_json::json!({"uploaded_files": {"0": [
                "The submitted data was not a file. Check the encoding type on the form."
            ]}}),
        ),
        (
            "a path in the name",
            vec![Part::file("uploaded_files", "../../etc/passwd", &small)],
            400,
            serde_json::json!({"uploaded_files": {"0": ["The file name may not contain a path."]}}),
        ),
        (
            "a file in another field",
            vec![Part::file("file", "a.txt", &small)],
            400,
            serde_json::json!({"detail":
                "Unexpected file in field \"file\": attachments go in \"uploaded_files\"."}),
        ),
        (
            "too many files",
            vec![
                Part::file("uploaded_files", "a.txt", &small),
                Part::file("uploaded_files", "b.txt", b"b"),
                Part::file("uploaded_files", "c.txt", b"c"),
            ],
            400,
            serde_json::json!({"uploaded_files": ["Ensure this field has no more than 2 elements."]}),
        ),
        (
            "a file over --max-upload-bytes",
            vec![
                Part::file("uploaded_files", "a.txt", &small),
                Part::file("uploaded_files", "big.bin", &big),
            ],
            413,
            serde_json::json!({"detail": "Request body too large."}),
        ),
        (
            "an unknown reply_to",
            vec![
                Part::text("reply_to", "999999"),
                Part::file("uploaded_files", "a.txt", &small),
            ],
            400,
            Value::Null,
        ),
    ];
    for (name, mut parts, status, body) in cases {
        parts.insert(0, Part::text("content", "refused"));
        let resp = send_form(&ana, conv, &parts).await;
        assert_eq!(resp.status, status, "{name}: {}", resp.body);
        if !body.is_null() {
            assert_eq!(resp.body, body, "{name}");
        }
        // A 400 is answered after the rest of the form was read, on a
        // connection that stays open; a 413 reads no further and closes.
        assert_eq!(closes(&resp), status == 413, "{name}: {:?}", resp.headers);
    }

    // A body cut off in the middle of a file.
    let (content_type, body) = multipart(&[
        Part::text("content", "cut"),
        Part::file("uploaded_files", "a.txt", &small),
    ]);
    let cut = answered(
        ana.post_raw(
            &messages_path(conv),
            &content_type,
            body[..body.len() - 30].to_vec(),
        )
        .await,
    );
    assert_eq!(cut.status, 400, "{}", cut.body);
    assert!(
        cut.body["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("Multipart form parse error")),
        "{}",
        cut.body
    );
    // A non-member's files are not even read.
    let outsider = send_form(&cy, conv, &[Part::file("uploaded_files", "a.txt", &small)]).await;
    assert_eq!(outsider.status, 403);
    assert!(closes(&outsider), "{:?}", outsider.headers);

    assert!(ana.history(conv, "").await.is_empty(), "no message");
    wait_for_no_files(&media_dir(data.path())).await;
}

#[tokio::test]
async fn a_body_announcing_more_than_the_form_can_hold_is_refused_before_it_is_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start(&[
        "--dev",
        "--max-attachments",
        "1",
        "--max-upload-bytes",
        "1000",
    ])
    .await;
    let ana = server.register("ana").await;
    let bo = server.register("bo").await;
    let conv = ana.direct_with(&bo).await;
    // Only the head, announcing 10 MB: the answer comes without a byte of
    // the body sent (1,000 bytes of file + the 256 KiB a form's fields may
    // hold is the most it may announce).
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 10000000\r\n\r\n",
        messages_path(conv),
        ana.access
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("answered without the body")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("Request body too large."), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "{answer}"
    );
    assert!(ana.history(conv, "").await.is_empty());
}

/// Whether an answer says its connection closes (`Connection: close`).
fn closes(resp: &vato_client::rest::Resp) -> bool {
    resp.headers
        .get("connection")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"))
}
