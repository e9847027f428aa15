//! `--extended`, issue 14: `ext.attachment`. A sends a message with a file
//! as a multipart form (201, the attachment object as the contract); B's
//! socket gets it as `message.new` with the attachment; B downloads the
//! file from B's node (the same bytes, then a `Range` of them as 206).
//! Against a cluster, the file was stored on A's node and is served by
//! B's.

use std::time::Instant;

use vato_client::objects::ATTACHMENT_KEYS;
use vato_client::rest::{multipart, Part};
use vato_client::{messages_path, Kind, Resp};

use super::connection::connect_member;
use super::report::{CheckResult, Pass};
use super::session::{as_id, unsigned, User};
use super::Ctx;

fn call(what: &str, resp: Result<Resp, vato_client::RestError>) -> Result<Resp, String> {
    resp.map_err(|e| format!("{what}: {e}"))
}

/// `ext.attachment`.
pub async fn attachment(ctx: &Ctx, a: &User, b: &User, direct: i64) -> CheckResult {
    let (api_a, api_b) = (a.authed(), b.authed());
    let (mut sb, _) = connect_member(ctx, b, direct).await?;
    let token = ctx.token();
    let file: Vec<u8> = format!("vato-check attachment {token} ")
        .into_bytes()
        .into_iter()
        .cycle()
        .take(4096)
        .collect();
    let content = format!("vato-check file {token}");
    let (content_type, body) = multipart(&[
        Part::text("content", &content),
        Part::typed_file("uploaded_files", "check.txt", "text/plain", &file),
    ]);
    let path = messages_path(unsigned(direct));
    let sent = call(
        "A's send with a file",
        api_a.post_raw(&path, &content_type, body).await,
    )?;
    if sent.status != 201 {
        return Err(format!(
            "A's send with a file: HTTP {} {}",
            sent.status, sent.body
        ));
    }
    let attachment = &sent.body["attachments"][0];
    let mut keys: Vec<&str> = attachment
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    keys.sort_unstable();
    let mut expected = ATTACHMENT_KEYS.to_vec();
    expected.sort_unstable();
    if keys != expected
        || attachment["file_name"] != "check.txt"
        || attachment["file_size"] != file.len()
        || attachment["mime_type"] != "text/plain"
    {
        return Err(format!("the attachment object: {attachment}"));
    }
    let id = as_id(&sent.body["id"]);
    let frame = sb
        .expect("B's message.new with the file", ctx.timeout, |f| {
            Kind::MessageNew.is(f) && as_id(&f["data"]["id"]) == id
        })
        .await?;
    // The same attachments; `file` is an absolute URL of the node that
    // rendered it (A's for A's answer, B's for B's frame).
    let summary = |list: &serde_json::Value| -> Vec<String> {
        list.as_array()
            .map(|l| {
                l.iter()
                    .map(|a| {
                        format!(
                            "{} {} {} {} {}",
                            a["id"],
                            a["file_name"],
                            a["file_size"],
                            a["mime_type"],
                            a["download_url"]
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let live = &frame.value["data"]["attachments"];
    if summary(live) != summary(&sent.body["attachments"]) || summary(live).is_empty() {
        return Err(format!(
            "message.new without the attachment: {}",
            frame.value
        ));
    }
    let download = attachment["download_url"]
        .as_str()
        .ok_or("no download_url")?
        .to_owned();
    // B's node may apply the message a moment after A's answered.
    let deadline = Instant::now() + ctx.timeout;
    let (status, bytes) = loop {
        let (status, _, bytes) = api_b
            .get_bytes(&download, &[])
            .await
            .map_err(|e| format!("B's download: {e}"))?;
        if status != 404 || Instant::now() > deadline {
            break (status, bytes);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    if status != 200 || bytes != file {
        return Err(format!(
            "B's download: HTTP {status}, {} bytes (sent {})",
            bytes.len(),
            file.len()
        ));
    }
    let (status, _, part) = api_b
        .get_bytes(&download, &[("Range", "bytes=100-199")])
        .await
        .map_err(|e| format!("B's range: {e}"))?;
    if status != 206 || part != file[100..200] {
        return Err(format!("B's range: HTTP {status}, {} bytes", part.len()));
    }
    Ok(Pass::detail(
        "201 with the attachment, live to B, downloaded whole and as a 206 range",
    ))
}
