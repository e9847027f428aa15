//! User directory: everyone but the caller, and search; and the
//! caller's presence flag (`users/set-online/`, `users/set-offline/`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::Json;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vato_eventlog::Command;

use super::extract::AuthUser;
use super::schemas as s;
use crate::app::App;
use crate::clock::now_micros;
use crate::error::ApiResult;
use crate::render;
use crate::search;

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(search))
        .routes(routes!(set_online))
        .routes(routes!(set_offline))
}

/// No body (one is ignored). Online with `last_seen_at` now, as a login
/// does (`UserSeen`): the caller's conversation partners get a `presence`
/// frame.
#[utoipa::path(post, path = "/api/auth/users/set-online/", tag = "users",
    responses((status = 200, description = "`{\"status\": \"online\"}`", body = s::Status)))]
async fn set_online(State(app): State<Arc<App>>, AuthUser(me): AuthUser) -> ApiResult<Json<Value>> {
    app.submit(Command::RecordLogin {
        user_id: me,
        at: now_micros(),
    })
    .await??;
    Ok(Json(json!({"status": "online"})))
}

/// Offline with `last_seen_at` now (`UserWentOffline`), as
/// `auth/logout/`; stores nothing when the caller is offline already.
/// Open sockets do not bring the caller back; the next first socket on a
/// node (after all closed), a login or `set-online/` does.
#[utoipa::path(post, path = "/api/auth/users/set-offline/", tag = "users",
    responses((status = 200, description = "`{\"status\": \"offline\"}`", body = s::Status)))]
async fn set_offline(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
) -> ApiResult<Json<Value>> {
    app.submit(Command::GoOffline {
        user_id: me,
        at: now_micros(),
    })
    .await??;
    Ok(Json(json!({"status": "offline"})))
}

#[utoipa::path(get, path = "/api/auth/users/", tag = "users",
    responses((status = 200, description = "Every other user, as the caller may see them", body = Vec<s::User>)))]
async fn list(State(app): State<Arc<App>>, AuthUser(me): AuthUser) -> ApiResult<Json<Vec<Value>>> {
    let state = app.store.state();
    let users = state
        .users
        .values()
        .filter(|u| u.id != me)
        .map(|u| render::user(u, Some(me)))
        .collect();
    Ok(Json(users))
}

/// At least 2 characters; at most 20 results; username or display name,
/// case-insensitive. Not phone numbers: they are hidden from other users,
/// and matching them would let anyone probe whether a number is registered.
#[utoipa::path(get, path = "/api/chat/users/search/", tag = "users",
    params(("q" = Option<String>, Query, description = "At least 2 characters of a username or display name")),
    responses((status = 200, description = "At most 20 users", body = Vec<s::User>)))]
async fn search(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<Vec<Value>>> {
    let q = query
        .get("q")
        .map(|q| q.trim().to_lowercase())
        .unwrap_or_default();
    if q.chars().count() < 2 {
        return Ok(Json(Vec::new()));
    }
    // Scanned off the state lock, a chunk at a time.
    let ids = search::users(&app.store, me, &q, 20).await;
    let state = app.store.state();
    let users = ids
        .iter()
        .filter_map(|id| state.user(*id))
        .map(|u| render::user(u, Some(me)))
        .collect();
    Ok(Json(users))
}
