//! User directory: everyone but the caller, and search.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;

use super::extract::AuthUser;
use crate::app::App;
use crate::error::ApiResult;
use crate::render;
use crate::search;

pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/api/auth/users/", get(list))
        .route("/api/chat/users/search/", get(search))
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
