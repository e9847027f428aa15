//! `/api/chat/conversations/{cid}/messages/`: history with cursor
//! pagination, send (delivered live, exactly once with `client_id`), edit,
//! delete, react, read. Sends, edits and reactions are charged to the
//! user's rate limits first (429 with `Retry-After` over them).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use vato_eventlog::{Command, Rejection, Reply, State as LogState};

use super::body::{json_body, path_id};
use super::extract::AuthUser;
use crate::app::App;
use crate::clock::now_micros;
use crate::error::{ApiError, ApiResult};
use crate::intake;
use crate::render;

const NOT_MEMBER: &str = "You are not a member of this conversation.";
const NO_MESSAGE: &str = "No Message matches the given query.";
/// History page size when `?limit=` is not given.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

pub fn router() -> Router<Arc<App>> {
    let base = "/api/chat/conversations/{cid}/messages";
    Router::new()
        .route(&format!("{base}/"), get(history).post(send))
        .route(
            &format!("{base}/{{mid}}/"),
            patch(edit).put(edit).delete(delete_plain),
        )
        .route(&format!("{base}/{{mid}}/edit/"), patch(edit).put(edit))
        .route(&format!("{base}/{{mid}}/soft-delete/"), delete(soft_delete))
        .route(&format!("{base}/{{mid}}/react/"), post(react))
        .route(&format!("{base}/{{mid}}/read/"), post(read))
}

fn member_of(state: &LogState, conv_id: u64, me: u64) -> ApiResult<()> {
    if state.is_member(conv_id, me) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(NOT_MEMBER))
    }
}

fn query_u64(query: &HashMap<String, String>, key: &str) -> ApiResult<Option<u64>> {
    match query.get(key).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| ApiError::field(key, "A valid integer is required.")),
    }
}

/// Newest first. `limit` (default 100, at most 1000); `before`/`after` by
/// message id or `before_seq`/`after_seq` by seq. With `after`, the page is
/// the `limit` messages right after the cursor (still newest first).
async fn history(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(cid): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<Vec<Value>>> {
    let conv_id = path_id(&cid, NOT_MEMBER).map_err(|_| ApiError::Forbidden(NOT_MEMBER))?;
    let limit = query_u64(&query, "limit")?
        .map_or(DEFAULT_LIMIT, |l| l as usize)
        .clamp(1, MAX_LIMIT);
    let before = query_u64(&query, "before")?;
    let after = query_u64(&query, "after")?;
    let before_seq = query_u64(&query, "before_seq")?;
    let after_seq = query_u64(&query, "after_seq")?;
    let search = query
        .get("search")
        .map(|s| s.to_lowercase())
        .filter(|s| !s.is_empty());
    let oldest_first = query
        .get("ordering")
        .is_some_and(|o| o == "created_at" || o == "id");

    let state = app.store.state();
    member_of(&state, conv_id, me)?;
    let conv = state
        .conversation(conv_id)
        .ok_or(ApiError::Forbidden(NOT_MEMBER))?;
    let in_range = |id: &u64| {
        let Some(m) = state.message(*id) else {
            return false;
        };
        before.is_none_or(|b| *id < b)
            && after.is_none_or(|a| *id > a)
            && before_seq.is_none_or(|b| m.seq < b)
            && after_seq.is_none_or(|a| m.seq > a)
            && search
                .as_ref()
                .is_none_or(|s| !m.is_deleted && m.content.to_lowercase().contains(s))
    };
    let ids: Vec<u64> = if after.is_some() || after_seq.is_some() {
        let mut page: Vec<u64> = conv
            .message_ids
            .iter()
            .filter(|id| in_range(id))
            .take(limit)
            .copied()
            .collect();
        page.reverse();
        page
    } else {
        conv.message_ids
            .iter()
            .rev()
            .filter(|id| in_range(id))
            .take(limit)
            .copied()
            .collect()
    };
    let mut page: Vec<Value> = ids
        .iter()
        .filter_map(|id| state.message(*id))
        .map(|m| render::message(&state, m, Some(me)))
        .collect();
    if oldest_first {
        page.reverse();
    }
    Ok(Json(page))
}

/// 201 with the new message; a retry with the same `client_id` answers 200
/// with the original. Every connected member gets `message.new`.
async fn send(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(cid): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let conv_id = path_id(&cid, NOT_MEMBER).map_err(|_| ApiError::Forbidden(NOT_MEMBER))?;
    let body = json_body(&body)?;
    member_of(&app.store.state(), conv_id, me)?;
    let command = intake::post_message(&body, context(&app, me, conv_id))?;
    if let Err(limited) = app.limits.admit(&command) {
        return Ok(limited.into_response());
    }
    let outcome = app.submit(command).await?;
    let reply = match outcome {
        Ok(applied) => applied.reply,
        Err(Rejection::UnknownMessage) => {
            return Err(ApiError::field("forwarded_from", "Unknown message."))
        }
        Err(other) => return Err(other.into()),
    };
    let Reply::Message {
        message_id,
        created,
    } = reply
    else {
        return Err(ApiError::Internal("send did not return a message".into()));
    };
    let state = app.store.state();
    let message = state
        .message(message_id)
        .ok_or_else(|| ApiError::Internal("message vanished".into()))?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(render::message(&state, message, Some(me)))).into_response())
}

/// What intake needs to know besides the body.
fn context(app: &App, me: u64, conv_id: u64) -> intake::Context {
    intake::Context {
        user_id: me,
        conv_id,
        at: now_micros(),
        max_message_chars: app.config.max_message_chars,
    }
}

fn ids(cid: &str, mid: &str) -> ApiResult<(u64, u64)> {
    Ok((path_id(cid, NO_MESSAGE)?, path_id(mid, NO_MESSAGE)?))
}

/// Maps the message rejections to the contract's answers.
fn message_rejection(rejection: Rejection, verb: &'static str) -> ApiError {
    match rejection {
        Rejection::NotAMember | Rejection::UnknownConversation | Rejection::UnknownMessage => {
            ApiError::NotFound(NO_MESSAGE)
        }
        Rejection::NotYourMessage => ApiError::Forbidden(verb),
        Rejection::MessageDeleted => ApiError::NotFound(NO_MESSAGE),
        other => other.into(),
    }
}

fn message_json(app: &App, message_id: u64, me: u64) -> ApiResult<Value> {
    let state = app.store.state();
    let message = state
        .message(message_id)
        .ok_or(ApiError::NotFound(NO_MESSAGE))?;
    Ok(render::message(&state, message, Some(me)))
}

async fn edit(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path((cid, mid)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let (conv_id, message_id) = ids(&cid, &mid)?;
    let body = json_body(&body)?;
    let command = intake::edit_message(&body, message_id, context(&app, me, conv_id))?;
    if let Err(limited) = app.limits.admit(&command) {
        return Ok(limited.into_response());
    }
    app.submit(command)
        .await?
        .map_err(|r| message_rejection(r, "You can only edit your own messages."))?;
    Ok(Json(message_json(&app, message_id, me)?).into_response())
}

async fn remove(app: &App, me: u64, cid: &str, mid: &str) -> ApiResult<()> {
    let (conv_id, message_id) = ids(cid, mid)?;
    app.submit(Command::DeleteMessage {
        by: me,
        conv_id,
        message_id,
        at: now_micros(),
    })
    .await?
    .map_err(|r| message_rejection(r, "You can only delete your own messages."))?;
    Ok(())
}

async fn soft_delete(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path((cid, mid)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    remove(&app, me, &cid, &mid).await?;
    Ok(Json(json!({"status": "message deleted"})))
}

async fn delete_plain(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path((cid, mid)): Path<(String, String)>,
) -> ApiResult<Response> {
    remove(&app, me, &cid, &mid).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn react(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path((cid, mid)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let (conv_id, message_id) = ids(&cid, &mid)?;
    let body = json_body(&body)?;
    let command = intake::toggle_reaction(&body, message_id, context(&app, me, conv_id))?;
    if let Err(limited) = app.limits.admit(&command) {
        return Ok(limited.into_response());
    }
    let applied = app
        .submit(command)
        .await?
        .map_err(|r| message_rejection(r, "Forbidden."))?;
    match applied.reply {
        Reply::Reaction {
            reaction_id,
            added: true,
        } => {
            let state = app.store.state();
            let reaction = state
                .message(message_id)
                .and_then(|m| m.reactions.iter().find(|r| r.id == reaction_id))
                .ok_or_else(|| ApiError::Internal("reaction vanished".into()))?;
            Ok((
                StatusCode::CREATED,
                Json(render::reaction(&state, reaction, Some(me))),
            )
                .into_response())
        }
        _ => Ok((StatusCode::OK, Json(json!({"status": "reaction removed"}))).into_response()),
    }
}

/// Vato addition: mark the conversation read up to this message.
async fn read(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path((cid, mid)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (conv_id, message_id) = ids(&cid, &mid)?;
    app.submit(Command::MarkRead {
        by: me,
        conv_id,
        message_id,
        at: now_micros(),
    })
    .await?
    .map_err(|r| message_rejection(r, "Forbidden."))?;
    Ok(Json(json!({"status": "read"})))
}
