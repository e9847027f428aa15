//! User directory: everyone but the caller, and search; and the
//! caller's presence flag (`users/set-online/`, `users/set-offline/`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use vato_eventlog::Command;

use super::extract::AuthUser;
use crate::app::App;
use crate::clock::now_micros;
use crate::error::ApiResult;
use crate::render;
use crate::search;

pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/api/auth/users/", get(list))
        .route("/api/chat/users/search/", get(search))
        .route("/api/auth/users/set-online/", post(set_online))
        .route("/api/auth/users/set-offline/", post(set_offline))
}

/// No body (one is ignored). Online with `last_seen_at` now, as a login
/// does (`UserSeen`): the caller's conversation partners get a `presence`
/// frame.
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
