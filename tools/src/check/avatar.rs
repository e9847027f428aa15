//! `--extended`, issue 13: `ext.avatar`. A uploads an avatar (a small PNG
//! made for this run) at the Flutter client's path; the answer and B's
//! view of A (from B's node) carry the same file as an absolute URL, and B
//! loads the very bytes from it; a file that is not an image is refused
//! and changes nothing. A's avatar is put back as it was (the earlier file
//! uploaded again, or none). Against a cluster the file was stored through
//! A's node and is served by B's.

use vato_client::Resp;

use super::report::{CheckResult, Pass};
use super::session::{retry, unsigned, User};
use super::Ctx;

/// A PNG by its magic numbers, tagged so that every run uploads a file
/// of its own (the store names files by their hash).
fn png(tag: &str) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    bytes.extend_from_slice(tag.as_bytes());
    bytes
}

fn answered(what: &str, resp: Result<Resp, vato_client::RestError>) -> Result<Resp, String> {
    resp.map_err(|e| format!("{what}: {e}"))
}

/// The avatar URL of a user or profile object: absolute, or an error.
fn absolute_url(what: &str, object: &serde_json::Value) -> Result<String, String> {
    match object["avatar"].as_str() {
        Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
            Ok(url.to_owned())
        }
        _ => Err(format!(
            "{what}: avatar is not an absolute URL: {}",
            object["avatar"]
        )),
    }
}

/// The file name at the end of a media URL.
fn file_of(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// `ext.avatar`.
pub async fn avatar(ctx: &Ctx, a: &User, b: &User) -> CheckResult {
    let api = a.authed();
    let before = answered("A's GET profile/me/", api.profile_me().await)?;
    // What to put back: the earlier file's bytes, or no avatar.
    let previous = match before.body["avatar"].as_str() {
        Some(url) => {
            let (status, _, bytes) = api
                .get_bytes(url, &[])
                .await
                .map_err(|e| format!("A's earlier avatar: {e}"))?;
            if status != 200 {
                return Err(format!("A's earlier avatar {url}: HTTP {status}"));
            }
            Some((file_of(url).to_owned(), bytes))
        }
        None => None,
    };
    let result = upload_and_see(ctx, a, b).await;
    let restored = match previous {
        Some((name, bytes)) => answered(
            "restoring A's avatar",
            api.upload_avatar(&name, &bytes).await,
        )?,
        None => answered("removing A's avatar", api.delete_avatar().await)?,
    };
    if restored.status != 200 {
        return Err(format!("putting A's avatar back: {}", restored.describe()));
    }
    result
}

async fn upload_and_see(ctx: &Ctx, a: &User, b: &User) -> CheckResult {
    let api = a.authed();
    let image = png(&ctx.token());
    let uploaded = answered("A's upload", api.upload_avatar("check.png", &image).await)?;
    if uploaded.status != 200 {
        return Err(format!("A's upload: {}", uploaded.describe()));
    }
    let url = absolute_url("A's upload", &uploaded.body)?;
    if uploaded.body["avatar_url"] != url.as_str() {
        return Err(format!(
            "avatar_url {} is not avatar {url}",
            uploaded.body["avatar_url"]
        ));
    }
    let file = file_of(&url).to_owned();
    // B's node may apply A's change a moment later (cluster).
    let seen = retry(ctx.timeout, || async {
        let resp = answered(
            "B's GET users/{a}/",
            b.authed().user_detail(unsigned(a.id)).await,
        )?;
        let url = absolute_url("B's view of A", &resp.body)?;
        if file_of(&url) != file {
            return Err(format!("B sees A's avatar {url}, not {file}"));
        }
        Ok(url)
    })
    .await?;
    let (status, headers, bytes) = b
        .authed()
        .get_bytes(&seen, &[])
        .await
        .map_err(|e| format!("B loading {seen}: {e}"))?;
    if status != 200 || bytes != image {
        return Err(format!(
            "B loading {seen}: HTTP {status}, {} bytes ({} uploaded)",
            bytes.len(),
            image.len()
        ));
    }
    if !headers.contains_key("etag") {
        return Err(format!("{seen} has no ETag"));
    }
    let refused = answered(
        "A's upload of a text file",
        api.upload_avatar("fake.png", b"not an image, whatever its name")
            .await,
    )?;
    if refused.status != 400 || refused.body.get("avatar").is_none() {
        return Err(format!(
            "a text file as avatar: {}, not a 400 on avatar",
            refused.describe()
        ));
    }
    let after = answered("A's GET profile/me/", api.profile_me().await)?;
    if after.body["avatar"] != url.as_str() {
        return Err(format!(
            "the refused upload changed the avatar to {}",
            after.body["avatar"]
        ));
    }
    Ok(Pass::detail(
        "uploaded, seen and loaded by B, a non-image refused",
    ))
}
