//! Attachments (issue 14; contract API-rest.md §5): the multipart form of
//! `POST .../messages/` and `GET /api/chat/attachments/{id}/download/`.
//!
//! **Upload.** A multipart send carries the message's fields as text parts
//! (`content`, `message_type`, `reply_to`, `forwarded_from`, `client_id`)
//! and up to `--max-attachments` files, each in a part named
//! `uploaded_files` with a file name, each at most `--max-upload-bytes`
//! (413, read no further; a `Content-Length` announcing more than the form
//! could hold is a 413 before anything is read). The whole body is read
//! before anything is stored, so a truncated one changes nothing; after
//! a 400 the rest of the form is read and dropped, so the client reads
//! the answer. Then every file goes to the media store (durable), then
//! one command posts the message with its attachments (`message.new`
//! carries them). A refused or failed send leaves no message, and its
//! files are removed once nothing refers to them (the media store's
//! [`media::Upload`]).
//!
//! **Download.** Members of the attachment's conversation only; every
//! other case is the same 404 (the original's texts told an unknown id
//! from a forbidden one: **HOLE fixed**). `ETag` (the content hash),
//! `If-None-Match` → 304, and single `Range` requests → 206 (a video can
//! be streamed); `Content-Disposition: attachment` with the file name
//! quoted safely (RFC 6266 `filename*` for non-ASCII names).

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vato_eventlog::NewAttachment;

use super::extract::AuthUser;
use super::schemas as s;
use crate::app::App;
use crate::error::{ApiError, ApiResult};
use crate::intake::Fields;
use crate::media;

/// The one answer to every download that cannot be served.
const NOT_FOUND: &str = "File not found.";
const NOT_A_FILE: &str = "The submitted data was not a file. Check the encoding type on the form.";
/// Longest file name kept (the original's `file_name` column).
const MAX_FILE_NAME_CHARS: usize = 255;

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new().routes(routes!(download))
}

/// Whether a request body is a multipart form.
pub fn is_multipart(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        })
}

/// A file of a multipart send, read whole.
pub struct File {
    pub name: String,
    pub mime_type: String,
    pub bytes: Bytes,
}

impl File {
    /// The media store's extension of its key: the name's, when it is a
    /// short lowercase word, else `bin`.
    fn extension(&self) -> String {
        self.name
            .rsplit_once('.')
            .map(|(_, ext)| ext.to_ascii_lowercase())
            .filter(|ext| {
                (1..=10).contains(&ext.len())
                    && ext
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            })
            .unwrap_or_else(|| "bin".into())
    }
}

/// The text fields and files of a multipart send. Every refusal is a 400
/// in the contract's shape, or a 413 past a limit.
pub async fn read_form(app: &App, request: Request) -> ApiResult<(Fields, Vec<File>)> {
    let config = &app.config;
    let max_file = config.max_upload_bytes;
    let whole = (max_file as u64)
        .saturating_mul(config.max_attachments as u64)
        .saturating_add(config.max_body_bytes as u64);
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > whole) {
        return Err(ApiError::PayloadTooLarge);
    }
    let mut multipart = super::body::multipart_stream(request, whole).ok_or_else(|| {
        ApiError::detail("Multipart form parse error - Invalid boundary in multipart: None")
    })?;
    match read_parts(app, &mut multipart).await {
        Ok(form) => Ok(form),
        Err(refusal) => Err(super::body::refuse(&mut multipart, refusal).await),
    }
}

/// Reads the form to its end.
async fn read_parts(
    app: &App,
    multipart: &mut multer::Multipart<'static>,
) -> ApiResult<(Fields, Vec<File>)> {
    let config = &app.config;
    let max_file = config.max_upload_bytes;
    let mut fields = Fields::new();
    let mut files: Vec<File> = Vec::new();
    let mut text_bytes = 0usize;
    let mut index = 0usize;
    while let Some(mut field) = multipart.next_field().await.map_err(parse_error)? {
        let name = field.name().unwrap_or_default().to_owned();
        let file_name = field.file_name().map(str::to_owned);
        let mime_type = field.content_type().map(|m| m.essence_str().to_owned());
        match (name.as_str(), file_name) {
            ("uploaded_files", Some(file_name)) => {
                let i = index;
                index += 1;
                if files.len() == config.max_attachments {
                    return Err(ApiError::BadRequest(json!({"uploaded_files": [format!(
                        "Ensure this field has no more than {} elements.",
                        config.max_attachments
                    )]})));
                }
                let file_name = check_file_name(&file_name).map_err(|e| file_error(i, e))?;
                let mut data = BytesMut::new();
                while let Some(chunk) = field.chunk().await.map_err(parse_error)? {
                    if data.len() + chunk.len() > max_file {
                        return Err(ApiError::PayloadTooLarge);
                    }
                    data.extend_from_slice(&chunk);
                }
                if data.is_empty() {
                    return Err(file_error(i, "The submitted file is empty."));
                }
                files.push(File {
                    name: file_name,
                    mime_type: mime_type
                        .filter(|m| m.len() <= 127)
                        .unwrap_or_else(|| "application/octet-stream".into()),
                    bytes: data.freeze(),
                });
            }
            ("uploaded_files", None) => {
                let i = index;
                return Err(file_error(i, NOT_A_FILE));
            }
            (other, Some(_)) => {
                return Err(ApiError::detail(&format!(
                    "Unexpected file in field \"{}\": attachments go in \"uploaded_files\".",
                    other.chars().take(64).collect::<String>()
                )));
            }
            (_, None) => {
                let mut data = BytesMut::new();
                while let Some(chunk) = field.chunk().await.map_err(parse_error)? {
                    text_bytes += chunk.len();
                    if text_bytes > config.max_body_bytes {
                        return Err(ApiError::PayloadTooLarge);
                    }
                    data.extend_from_slice(&chunk);
                }
                let text = String::from_utf8(data.to_vec()).map_err(|_| {
                    ApiError::detail("Multipart form parse error - a text field is not UTF-8.")
                })?;
                fields.insert(name, Value::String(text));
            }
        }
    }
    Ok((fields, files))
}

/// The client's file name, kept as given when it is a plain base name.
fn check_file_name(name: &str) -> Result<String, &'static str> {
    if name.trim().is_empty() {
        return Err("The file name may not be blank.");
    }
    if name.chars().any(|c| c.is_control()) {
        return Err("The file name may not contain control characters.");
    }
    if name.contains('/') || name.contains('\\') || name == "." || name == ".." {
        return Err("The file name may not contain a path.");
    }
    if name.chars().count() > MAX_FILE_NAME_CHARS {
        return Err("Ensure the file name has no more than 255 characters.");
    }
    Ok(name.to_owned())
}

fn file_error(index: usize, message: &str) -> ApiError {
    ApiError::BadRequest(json!({"uploaded_files": {index.to_string(): [message]}}))
}

fn parse_error(e: multer::Error) -> ApiError {
    match e {
        multer::Error::StreamSizeExceeded { .. } => ApiError::PayloadTooLarge,
        e => ApiError::detail(&format!("Multipart form parse error - {e}")),
    }
}

/// Puts every file in the media store (durable before it returns). The
/// returned uploads keep their keys from removal until dropped: after
/// the command's outcome.
pub async fn store(
    app: &App,
    files: Vec<File>,
) -> ApiResult<(Vec<NewAttachment>, Vec<media::Upload>)> {
    let mut attachments = Vec::with_capacity(files.len());
    let mut uploads = Vec::with_capacity(files.len());
    for file in files {
        let ext = file.extension();
        let size = file.bytes.len() as u64;
        let upload = app.media.put(file.bytes, &ext).await.map_err(|e| {
            tracing::error!("{e}");
            ApiError::Unavailable
        })?;
        attachments.push(NewAttachment {
            file_name: file.name,
            file_size: size,
            mime_type: file.mime_type,
            blob_key: upload.key.clone(),
        });
        uploads.push(upload);
    }
    Ok((attachments, uploads))
}

#[utoipa::path(get, path = "/api/chat/attachments/{id}/download/", tag = "attachments",
    params(("id" = u64, Path, description = "The attachment")),
    responses(
        (status = 200, description = "The file, as an attachment under its name", content_type = "*/*"),
        (status = 206, description = "The range asked with `Range`", content_type = "*/*"),
        (status = 304, description = "`If-None-Match` names this file"),
        (status = 404, description = "No such attachment in a conversation of the caller's", body = s::ErrorBody),
        (status = 416, description = "A range past the end"),
        (status = 503, description = "The media store cannot be read", body = s::ErrorBody)))]
async fn download(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    const MISSING: ApiError = ApiError::NotFound(NOT_FOUND);
    let id: u64 = id.parse().map_err(|_| MISSING)?;
    let attachment = {
        let state = app.store.state();
        let (message, attachment) = state.attachment(id).ok_or(MISSING)?;
        if !state.is_member(message.conv_id, me) {
            return Err(MISSING);
        }
        attachment
    };
    let hash = media::key_hash(&attachment.blob_key)
        .ok_or(MISSING)?
        .to_owned();
    let etag = format!("\"{hash}\"");
    let common = [
        (header::ETAG, etag.clone()),
        (
            header::CACHE_CONTROL,
            "private, max-age=31536000, immutable".to_owned(),
        ),
        (header::ACCEPT_RANGES, "bytes".to_owned()),
    ];
    if super::media::matches_etag(headers.get(header::IF_NONE_MATCH), &etag) {
        return Ok((StatusCode::NOT_MODIFIED, common).into_response());
    }
    let bytes = app
        .media
        .get(&attachment.blob_key)
        .await
        .map_err(|e| {
            tracing::error!("{e}");
            ApiError::Unavailable
        })?
        .ok_or(MISSING)?;
    let mime = HeaderValue::from_str(&attachment.mime_type)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    let disposition = HeaderValue::from_str(&content_disposition(&attachment.file_name))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    let mut response = match range(&headers, &etag, bytes.len() as u64) {
        Range::Whole => (StatusCode::OK, bytes).into_response(),
        Range::Part(start, end) => {
            let part = bytes.slice(start as usize..=end as usize);
            let mut response = (StatusCode::PARTIAL_CONTENT, part).into_response();
            response.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes {start}-{end}/{}", bytes.len()))
                    .expect("digits"),
            );
            response
        }
        Range::Unsatisfiable => {
            let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            response.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{}", bytes.len())).expect("digits"),
            );
            response
        }
    };
    let h = response.headers_mut();
    for (name, value) in common {
        h.insert(name, HeaderValue::from_str(&value).expect("ascii"));
    }
    h.insert(header::CONTENT_TYPE, mime);
    h.insert(header::CONTENT_DISPOSITION, disposition);
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}

/// `attachment; filename="..."` with an ASCII stand-in, and `filename*`
/// (RFC 5987) with the name itself when it is not plain ASCII.
fn content_disposition(name: &str) -> String {
    let plain: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if plain == name {
        format!("attachment; filename=\"{plain}\"")
    } else {
        let encoded: String = name
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        format!("attachment; filename=\"{plain}\"; filename*=UTF-8''{encoded}")
    }
}

enum Range {
    Whole,
    /// First and last byte, inclusive.
    Part(u64, u64),
    Unsatisfiable,
}

/// One `bytes=` range (RFC 9110 §14): `a-b`, `a-` or `-n`. Several ranges,
/// another unit, a malformed header or an `If-Range` that is not this
/// ETag get the whole file, as the RFC allows.
fn range(headers: &HeaderMap, etag: &str, len: u64) -> Range {
    let Some(spec) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Range::Whole;
    };
    if let Some(if_range) = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        if if_range.trim() != etag {
            return Range::Whole;
        }
    }
    let Some(spec) = spec.trim().strip_prefix("bytes=") else {
        return Range::Whole;
    };
    if spec.contains(',') {
        return Range::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Range::Whole;
    };
    let parse = |s: &str| s.trim().parse::<u64>().ok();
    match (first.trim().is_empty(), parse(first), parse(last)) {
        // `-n`: the last n bytes.
        (true, _, Some(n)) => {
            if n == 0 || len == 0 {
                Range::Unsatisfiable
            } else {
                Range::Part(len.saturating_sub(n), len - 1)
            }
        }
        (false, Some(start), end) if last.trim().is_empty() || end.is_some() => {
            if start >= len {
                return Range::Unsatisfiable;
            }
            match end {
                Some(end) if end < start => Range::Whole,
                Some(end) => Range::Part(start, end.min(len - 1)),
                None => Range::Part(start, len - 1),
            }
        }
        _ => Range::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_range(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(value).unwrap());
        h
    }

    fn part(value: &str, len: u64) -> Option<(u64, u64)> {
        match range(&with_range(value), "\"e\"", len) {
            Range::Part(a, b) => Some((a, b)),
            _ => None,
        }
    }

    #[test]
    fn ranges_as_rfc_9110_says() {
        assert_eq!(part("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(part("bytes=90-", 100), Some((90, 99)));
        assert_eq!(part("bytes=-10", 100), Some((90, 99)));
        assert_eq!(part("bytes=95-200", 100), Some((95, 99)));
        assert_eq!(part("bytes=-200", 100), Some((0, 99)));
        assert!(matches!(
            range(&with_range("bytes=100-"), "\"e\"", 100),
            Range::Unsatisfiable
        ));
        for whole in [
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=9-3",
            "bytes=x-y",
            "nonsense",
        ] {
            assert!(
                matches!(range(&with_range(whole), "\"e\"", 100), Range::Whole),
                "{whole}"
            );
        }
        let mut stale = with_range("bytes=0-9");
        stale.insert(header::IF_RANGE, HeaderValue::from_static("\"other\""));
        assert!(matches!(range(&stale, "\"e\"", 100), Range::Whole));
    }

    #[test]
    fn file_names_are_plain_base_names() {
        assert_eq!(check_file_name("photo 1.JPG"), Ok("photo 1.JPG".into()));
        for bad in [
            "",
            " ",
            "../etc/passwd",
            "a/b",
            "a\\b",
            "..",
            "nul\0.txt",
            "tab\t.txt",
        ] {
            assert!(check_file_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_file_name(&"n".repeat(256)).is_err());
    }

    #[test]
    fn content_disposition_quotes_safely() {
        assert_eq!(
            content_disposition("a b.pdf"),
            "attachment; filename=\"a b.pdf\""
        );
        assert_eq!(
            content_disposition("ré\"sumé.pdf"),
            "attachment; filename=\"r__sum_.pdf\"; filename*=UTF-8''r%C3%A9%22sum%C3%A9.pdf"
        );
    }
}
