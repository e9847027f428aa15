//! Reading a request: a JSON object body, its fields (through intake's
//! rules, so REST and sockets read a field alike) and path ids.

use axum::body::Bytes;
use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};
use crate::intake;

/// A JSON object body. DRF answers a malformed body with a 400 `detail`.
pub fn json_body(bytes: &Bytes) -> ApiResult<Map<String, Value>> {
    if bytes.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::detail("Expected a JSON object.")),
        Err(e) => Err(ApiError::detail(&format!("JSON parse error - {e}"))),
    }
}

/// A string field; `None` when absent or null.
pub fn opt_str(body: &Map<String, Value>, field: &'static str) -> ApiResult<Option<String>> {
    Ok(intake::string(body, field)?)
}

/// An id field given as a number or a string of digits.
pub fn opt_id(body: &Map<String, Value>, field: &'static str) -> ApiResult<Option<u64>> {
    Ok(intake::id(body, field)?)
}

pub fn opt_bool(body: &Map<String, Value>, field: &str) -> ApiResult<Option<bool>> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s == "true" => Ok(Some(true)),
        Some(Value::String(s)) if s == "false" => Ok(Some(false)),
        Some(_) => Err(ApiError::field(field, "Must be a valid boolean.")),
    }
}

/// Parses a path id; anything else is the contract's 404.
pub fn path_id(raw: &str, detail: &'static str) -> ApiResult<u64> {
    raw.parse().map_err(|_| ApiError::NotFound(detail))
}

/// A multipart form read as a stream, at most `whole` bytes (past it,
/// `multer::Error::StreamSizeExceeded`); `None` when the request names no
/// boundary.
pub fn multipart_stream(
    request: axum::extract::Request,
    whole: u64,
) -> Option<multer::Multipart<'static>> {
    let boundary = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| multer::parse_boundary(v).ok())?;
    let constraints =
        multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(whole));
    Some(multer::Multipart::with_constraints(
        request.into_body().into_data_stream(),
        boundary,
        constraints,
    ))
}

/// The answer to a refused form. Unless the refusal is a 413 (read no
/// further; that answer closes the connection), the rest of the form is
/// read and dropped first, up to its bound: a server that answers and
/// closes with a request's bytes unread resets the connection, and the
/// reset can reach the client before it has read the answer, which it
/// would see as a cut connection. An answer sent with bytes unread says
/// `Connection: close`, so the client does not send its next request on a
/// connection the server is closing.
pub async fn refuse(multipart: &mut multer::Multipart<'static>, refusal: ApiError) -> ApiError {
    match refusal {
        ApiError::PayloadTooLarge => refusal,
        refusal if drain(multipart).await => refusal,
        refusal => refusal.closing(),
    }
}

/// Reads the form's remaining fields; whether it reached the form's end.
async fn drain(multipart: &mut multer::Multipart<'static>) -> bool {
    loop {
        match multipart.next_field().await {
            Ok(Some(field)) => drop(field),
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}
