//! `/api/auth/settings/` (contract API-rest.md §2): the caller's own
//! settings, created with the defaults on first use.
//!
//! * `GET`: the 16-key object; the first call stores the row (an event).
//! * `PATCH` and `PUT`: partial, choices and booleans checked, read-only
//!   and unknown keys ignored; every write moves `updated_at`.
//! * `POST reset/`: every setting back to its default.
//!
//! Nobody else ever sees them: other users' objects carry `settings` null
//! (the original showed them to every conversation partner).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vato_eventlog::profile::SettingsChanges;
use vato_eventlog::{Command, UserId};

use super::body::json_body;
use super::extract::AuthUser;
use super::schemas as s;
use crate::app::App;
use crate::clock::now_micros;
use crate::error::{ApiError, ApiResult};
use crate::intake::profile::settings_changes;
use crate::render;

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(read, write))
        .routes(routes!(reset))
}

#[utoipa::path(get, path = "/api/auth/settings/", tag = "users",
    responses(
        (status = 200, description = "The caller's settings (made with the defaults at the first read)", body = s::Settings),
        (status = 503, description = "The first read could not store the defaults", body = s::ErrorBody)))]
async fn read(State(app): State<Arc<App>>, AuthUser(me): AuthUser) -> ApiResult<Json<Value>> {
    let exists = app
        .store
        .state()
        .user(me)
        .is_some_and(|u| u.settings.is_some());
    if !exists {
        app.submit(Command::CreateSettings {
            user_id: me,
            at: now_micros(),
        })
        .await??;
    }
    current(&app, me)
}

#[utoipa::path(method(patch, put), path = "/api/auth/settings/", tag = "users",
    request_body = s::SettingsUpdate,
    responses((status = 200, description = "The settings after the change", body = s::Settings)))]
async fn write(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let changes = settings_changes(&json_body(&body)?)?;
    store(&app, me, changes).await
}

/// No body is read.
#[utoipa::path(post, path = "/api/auth/settings/reset/", tag = "users",
    responses((status = 200, description = "The settings back at their defaults", body = s::Settings)))]
async fn reset(State(app): State<Arc<App>>, AuthUser(me): AuthUser) -> ApiResult<Json<Value>> {
    store(&app, me, SettingsChanges::reset()).await
}

async fn store(app: &App, me: UserId, changes: SettingsChanges) -> ApiResult<Json<Value>> {
    app.submit(Command::UpdateSettings {
        user_id: me,
        changes: Box::new(changes),
        at: now_micros(),
    })
    .await??;
    current(app, me)
}

fn current(app: &App, me: UserId) -> ApiResult<Json<Value>> {
    let state = app.store.state();
    let user = state.user(me).ok_or(ApiError::InvalidToken)?;
    Ok(Json(render::settings(user)))
}
