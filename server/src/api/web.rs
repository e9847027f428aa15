//! The web client (static files compiled into the binary), the API index,
//! health, and the development-only test hooks.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::body::{json_body, opt_id};
use super::extract::AuthUser;
use super::schemas as s;
use crate::app::App;
use crate::error::{ApiError, ApiResult};

const INDEX_HTML: &str = include_str!("../../static/index.html");
const APP_JS: &str = include_str!("../../static/app.js");
const APP_CSS: &str = include_str!("../../static/app.css");

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .route("/", get(root))
        .routes(routes!(api_index))
        .routes(routes!(auth_root))
        .routes(routes!(chat_root))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .route(
            "/static/app.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    APP_JS,
                )
            }),
        )
        .route(
            "/static/app.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], APP_CSS) }),
        )
        .route("/api/dev/drop-sockets/", post(drop_sockets))
        .routes(routes!(metrics))
}

fn index() -> Value {
    json!({
        "message": "Vatochito Chat API",
        "version": "1.0.0",
        "endpoints": {
            "auth": "/api/auth/",
            "chat": "/api/chat/",
            "websocket": "/ws/chat/<conversation_id>/",
        }
    })
}

/// A browser gets the web client; an API client gets the contract's index.
async fn root(headers: HeaderMap) -> Response {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    if wants_html {
        (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            INDEX_HTML,
        )
            .into_response()
    } else {
        Json(index()).into_response()
    }
}

#[utoipa::path(get, path = "/api/", tag = "operations", security(()),
    responses((status = 200, description = "The API's index", body = s::ApiIndex)))]
async fn api_index() -> Json<Value> {
    Json(index())
}

/// The router resources of `/api/auth/` that Vato serves: name → list path.
const AUTH_ROUTES: [(&str, &str); 1] = [("users", "/api/auth/users/")];
/// The same for `/api/chat/`.
const CHAT_ROUTES: [(&str, &str); 3] = [
    ("conversations", "/api/chat/conversations/"),
    ("calls", "/api/chat/calls/"),
    ("contacts", "/api/chat/contacts/"),
];

/// `GET /api/auth/`: Django REST framework's DefaultRouter root, as the
/// original serves it (authentication required): each resource's name and
/// the absolute URL of its list route.
#[utoipa::path(get, path = "/api/auth/", tag = "operations",
    responses((status = 200, description = "Each resource's name and the absolute URL of its list", body = std::collections::BTreeMap<String, String>)))]
async fn auth_root(headers: HeaderMap, _: AuthUser) -> Json<Value> {
    Json(router_root(&headers, &AUTH_ROUTES))
}

/// `GET /api/chat/`: as [`auth_root`].
#[utoipa::path(get, path = "/api/chat/", tag = "operations",
    responses((status = 200, description = "Each resource's name and the absolute URL of its list", body = std::collections::BTreeMap<String, String>)))]
async fn chat_root(headers: HeaderMap, _: AuthUser) -> Json<Value> {
    Json(router_root(&headers, &CHAT_ROUTES))
}

/// `{"<name>": "http://<Host><path>", ...}` in the order given. The host
/// is the request's `Host` header, as DRF's `build_absolute_uri`; the
/// scheme is http (Vato serves no TLS itself).
fn router_root(headers: &HeaderMap, routes: &[(&str, &str)]) -> Value {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let routes = routes
        .iter()
        .map(|(name, path)| ((*name).to_owned(), json!(format!("http://{host}{path}"))))
        .collect();
    Value::Object(routes)
}

/// Test hook (only with --dev/--demo): closes a user's sockets from the
/// server side with 1012, to exercise client reconnects. It wants a valid
/// access token (any user's) and a JSON body: a web page elsewhere can send
/// neither without a CORS preflight, which it would fail.
async fn drop_sockets(
    State(app): State<Arc<App>>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    if !app.config.dev_mode() {
        return Err(ApiError::NotFound("Not found."));
    }
    let (mut parts, body) = request.into_parts();
    AuthUser::from_request_parts(&mut parts, &app).await?;
    let is_json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Ok((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Json(json!({ "detail": "Content-Type must be application/json." })),
        )
            .into_response());
    }
    let body = axum::body::to_bytes(body, app.config.max_body_bytes)
        .await
        .map_err(|_| ApiError::detail("Unreadable body."))?;
    Ok(drop_user_sockets(&app, &body)?.into_response())
}

fn drop_user_sockets(app: &App, body: &Bytes) -> ApiResult<Json<Value>> {
    let body = json_body(body)?;
    let Some(user_id) = opt_id(&body, "user_id")? else {
        return Err(ApiError::detail("user_id required."));
    };
    let closed = app.hub.close_user(user_id, 1012);
    Ok(Json(json!({ "closed": closed })))
}

/// Unknown paths: a GET without the trailing slash is redirected, as
/// Django's APPEND_SLASH does; everything else is a JSON 404.
pub async fn fallback(uri: Uri, method: axum::http::Method) -> Response {
    let path = uri.path();
    if method == axum::http::Method::GET
        && (path.starts_with("/api/") || path.starts_with("/ws/"))
        && !path.ends_with('/')
    {
        let location = match uri.query() {
            Some(q) => format!("{path}/?{q}"),
            None => format!("{path}/"),
        };
        return (
            StatusCode::MOVED_PERMANENTLY,
            [(header::LOCATION, location)],
        )
            .into_response();
    }
    ApiError::NotFound("Not found.").into_response()
}

/// `/metrics` alone, for `--metrics-listen`.
pub fn metrics_router(app: Arc<App>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(
                |State(app): State<Arc<App>>, headers: HeaderMap| async move {
                    metrics_guarded(&app, &headers)
                },
            ),
        )
        .with_state(app)
}

/// `/metrics` on the main listener: absent when `--metrics-listen` serves
/// it elsewhere.
#[utoipa::path(get, path = "/metrics", tag = "operations", security(()),
    responses(
        (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"),
        (status = 401, description = "`--metrics-token` is set and not given", body = s::ErrorBody),
        (status = 404, description = "Served on `--metrics-listen` instead", body = s::ErrorBody)))]
async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if app.config.metrics_listen.is_some() {
        return ApiError::NotFound("Not found.").into_response();
    }
    metrics_guarded(&app, &headers)
}

/// With `--metrics-token`, wherever `/metrics` is served it needs
/// `Authorization: Bearer <token>`; a missing or wrong one is a 401.
fn metrics_guarded(app: &App, headers: &HeaderMap) -> Response {
    if let Some(token) = &app.config.metrics_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !same_secret(given.trim().as_bytes(), token.as_bytes()) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                Json(json!({ "detail": "A metrics token is required." })),
            )
                .into_response();
        }
    }
    metrics_text(app)
}

/// Compares without stopping at the first difference, so timing tells an
/// attacker nothing about how much of a guess was right.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Ready to take traffic: writable, caught up (cluster mode), and the
/// delivery probe succeeded within three intervals (`probe.rs`). 503 with
/// the failing checks named otherwise. `/healthz` stays a bare liveness
/// answer.
/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()),
    responses((status = 200, description = "`ok`", body = String, content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok"
}

#[utoipa::path(get, path = "/readyz", tag = "operations", security(()),
    responses(
        (status = 200, description = "Writable, caught up, and the delivery probe succeeded lately", body = s::Readiness),
        (status = 503, description = "Not ready: the failing checks named", body = s::Readiness)))]
async fn readyz(State(app): State<Arc<App>>) -> Response {
    let (ready, body) = app.probe.readiness(&app);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Prometheus text format, rendered by the exporter (`telemetry.rs`).
fn metrics_text(app: &App) -> Response {
    let out = crate::telemetry::render(app);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
