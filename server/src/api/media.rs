//! `GET /media/<key>`: the media store's files (avatars now, attachments
//! later), to anyone, as the original served `/media/`. Keys are content
//! addresses, so a file never changes: `ETag` is its hash, `Cache-Control`
//! lets caches keep it for a year, and `If-None-Match` gets a 304. Also the
//! middleware that sets the base of absolute media URLs per request.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::schemas as s;
use crate::app::App;
use crate::error::ApiError;
use crate::media;
use crate::render;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

const CACHE_FOREVER: &str = "public, max-age=31536000, immutable";

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new().routes(routes!(serve))
}

#[utoipa::path(get, path = "/media/{key}", tag = "attachments", security(()),
    params(("key" = String, Path, description = "The file's content address")),
    responses(
        (status = 200, description = "The file (cached forever: its name is its hash)", content_type = "*/*"),
        (status = 304, description = "`If-None-Match` names this file"),
        (status = 404, description = "No such file", body = s::ErrorBody),
        (status = 503, description = "The media store cannot be read", body = s::ErrorBody)))]
async fn serve(
    State(app): State<Arc<App>>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    const NOT_FOUND: ApiError = ApiError::NotFound("Not found.");
    let hash = media::key_hash(&key).ok_or(NOT_FOUND)?;
    let bytes = app
        .media
        .get(&key)
        .await
        .map_err(|e| {
            tracing::error!("{e}");
            ApiError::Unavailable
        })?
        .ok_or(NOT_FOUND)?;
    let etag = format!("\"{hash}\"");
    let cache = [
        (header::ETAG, etag.clone()),
        (header::CACHE_CONTROL, CACHE_FOREVER.to_owned()),
    ];
    if matches_etag(headers.get(header::IF_NONE_MATCH), &etag) {
        return Ok((StatusCode::NOT_MODIFIED, cache).into_response());
    }
    Ok((
        cache,
        [(header::CONTENT_TYPE, media::content_type(&key).to_owned())],
        bytes,
    )
        .into_response())
}

/// `If-None-Match` names this ETag (weakly or not), or is `*`.
pub(super) fn matches_etag(header: Option<&HeaderValue>, etag: &str) -> bool {
    let Some(value) = header.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    value.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

/// Sets the base of the absolute media URLs rendered while answering:
/// `--public-url`, or the scheme (`https` when `X-Forwarded-Proto` says
/// so, else `http`) and the request's `Host`, as DRF's
/// `build_absolute_uri`. A missing or malformed `Host` leaves the URLs
/// relative.
pub async fn request_base(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let base = match &app.config.public_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => base_from_headers(request.headers()).unwrap_or_default(),
    };
    render::scope_media_base(base.into(), next.run(request)).await
}

fn base_from_headers(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    // An authority only: no user info, path or spaces can get into a URL.
    let authority: axum::http::uri::Authority = host.parse().ok()?;
    if authority.as_str().contains('@') {
        return None;
    }
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    let scheme = if https { "https" } else { "http" };
    Some(format!("{scheme}://{authority}"))
}
