//! Push devices and notifications (issue 15): `POST /api/auth/devices/`
//! and `DELETE /api/auth/devices/{token}/` register the push tokens the
//! webhook receives; `/api/chat/notifications/` lists the caller's recent
//! notifications, `.../{id}/read/` marks one. What creates them, and how
//! they are pushed: `eventlog/src/state/notifications.rs` and `push.rs`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vato_eventlog::state::{Device, PLATFORMS};
use vato_eventlog::Command;

use super::body::{json_body, opt_str, path_id};
use super::extract::AuthUser;
use super::schemas as s;
use crate::app::App;
use crate::clock::{format, now_micros};
use crate::error::{ApiError, ApiResult};
use crate::render;

/// The longest push token taken (FCM's are ~160 characters, APNs' 64).
const MAX_TOKEN_CHARS: usize = 4096;

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(devices, register))
        .routes(routes!(remove))
        .routes(routes!(list))
        .routes(routes!(detail))
        .routes(routes!(read))
}

fn device(d: &Device) -> Value {
    json!({"token": d.token, "platform": d.platform, "created_at": format(d.created_at)})
}

/// The caller's devices, oldest first (a Vato addition).
#[utoipa::path(get, path = "/api/auth/devices/", tag = "notifications",
    responses((status = 200, description = "The caller's devices, oldest first", body = Vec<s::Device>)))]
async fn devices(State(app): State<Arc<App>>, AuthUser(me): AuthUser) -> Json<Value> {
    let state = app.store.state();
    Json(state.devices_of(me).iter().map(device).collect())
}

/// `{"token", "platform"}`: 201 with the device; 200 when the caller had
/// it already. A token another user had moves to the caller.
#[utoipa::path(post, path = "/api/auth/devices/", tag = "notifications",
    request_body = s::DeviceRequest,
    responses(
        (status = 200, description = "The caller had it already", body = s::Device),
        (status = 201, description = "Registered", body = s::Device)))]
async fn register(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let body = json_body(&body)?;
    let token = opt_str(&body, "token")?.unwrap_or_default();
    if token.is_empty() {
        return Err(ApiError::field("token", "This field is required."));
    }
    if token.chars().count() > MAX_TOKEN_CHARS
        || token.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ApiError::field(
            "token",
            "A push token is 1 to 4096 characters, no spaces.",
        ));
    }
    let platform = opt_str(&body, "platform")?.unwrap_or_default();
    if !PLATFORMS.contains(&platform.as_str()) {
        return Err(ApiError::field(
            "platform",
            &format!("\"{platform}\" is not a valid choice (android, ios, web)."),
        ));
    }
    let applied = app
        .submit(Command::RegisterDevice {
            by: me,
            token: token.clone(),
            platform,
            at: now_micros(),
        })
        .await??;
    let status = match applied.events().is_empty() {
        true => StatusCode::OK,
        false => StatusCode::CREATED,
    };
    let state = app.store.state();
    let registered = state
        .devices_of(me)
        .iter()
        .find(|d| d.token == token)
        .ok_or(ApiError::NotFound("Not found."))?;
    Ok((status, Json(device(registered))))
}

/// 204; a token the caller does not have: 404.
#[utoipa::path(delete, path = "/api/auth/devices/{token}/", tag = "notifications",
    params(("token" = String, Path, description = "The device's push token")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such device of the caller's", body = s::ErrorBody)))]
async fn remove(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(token): Path<String>,
) -> ApiResult<Response> {
    app.submit(Command::RemoveDevice {
        by: me,
        token,
        at: now_micros(),
    })
    .await??;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The caller's notifications, newest first (plain array, at most the
/// last 50).
#[utoipa::path(get, path = "/api/chat/notifications/", tag = "notifications",
    responses((status = 200, description = "The caller's last 50 notifications, newest first", body = Vec<s::Notification>)))]
async fn list(State(app): State<Arc<App>>, AuthUser(me): AuthUser) -> Json<Value> {
    let state = app.store.state();
    let all: Vec<Value> = state
        .notifications_of(me)
        .into_iter()
        .map(|n| render::notifications::notification(&state, &n))
        .collect();
    Json(Value::Array(all))
}

#[utoipa::path(get, path = "/api/chat/notifications/{id}/", tag = "notifications", params(("id" = u64, Path, description = "The notification")),
    responses(
        (status = 200, description = "The notification", body = s::Notification),
        (status = 404, description = "No such notification of the caller's", body = s::ErrorBody)))]
async fn detail(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = path_id(&id, "Not found.")?;
    let state = app.store.state();
    let n = state
        .notification(me, id)
        .ok_or(ApiError::NotFound("Not found."))?;
    Ok(Json(render::notifications::notification(&state, &n)))
}

/// Marks one read: 200 with it; not the caller's: 404.
#[utoipa::path(post, path = "/api/chat/notifications/{id}/read/", tag = "notifications", params(("id" = u64, Path, description = "The notification")),
    responses(
        (status = 200, description = "The notification, read", body = s::Notification),
        (status = 404, description = "No such notification of the caller's", body = s::ErrorBody)))]
async fn read(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let notification_id = path_id(&id, "Not found.")?;
    app.submit(Command::ReadNotification {
        by: me,
        notification_id,
        at: now_micros(),
    })
    .await??;
    let state = app.store.state();
    let n = state
        .notification(me, notification_id)
        .ok_or(ApiError::NotFound("Not found."))?;
    Ok(Json(render::notifications::notification(&state, &n)))
}
