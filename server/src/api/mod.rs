//! The REST API: one router per resource, merged here.

use std::sync::Arc;

use axum::body::Bytes;
use axum::Router;
use serde_json::{Map, Value};

use crate::app::App;
use crate::error::{ApiError, ApiResult};

mod auth;
mod conversations;
mod messages;
mod users;
pub mod web;

pub fn router() -> Router<Arc<App>> {
    Router::new()
        .merge(auth::router())
        .merge(users::router())
        .merge(conversations::router())
        .merge(messages::router())
        .merge(web::router())
}

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
pub fn opt_str(body: &Map<String, Value>, field: &str) -> ApiResult<Option<String>> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::field(field, "Not a valid string.")),
    }
}

/// An id field given as a number or a numeric string.
pub fn opt_id(body: &Map<String, Value>, field: &str) -> ApiResult<Option<u64>> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| ApiError::field(field, "A valid integer is required.")),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| ApiError::field(field, "A valid integer is required.")),
        Some(_) => Err(ApiError::field(field, "A valid integer is required.")),
    }
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
