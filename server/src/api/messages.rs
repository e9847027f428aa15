//! `/api/chat/conversations/{cid}/messages/`: history (whole, as the
//! original, or in pages with `?limit=` and cursors), send (delivered live, exactly once with `client_id`), edit,
//! delete, react, read. Sends, edits and reactions are charged to the
//! user's rate limits first (429 with `Retry-After` over them).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vato_eventlog::{Command, Rejection, Reply, State as LogState};

use super::attachments;
use super::body::{json_body, path_id};
use super::extract::AuthUser;
use super::schemas as s;
use crate::app::App;
use crate::clock::now_micros;
use crate::error::{ApiError, ApiResult};
use crate::intake;
use crate::render;
use crate::search::{self, Direction};

const NOT_MEMBER: &str = "You are not a member of this conversation.";
const NO_MESSAGE: &str = "No Message matches the given query.";
/// Largest `?limit=`.
pub const MAX_LIMIT: usize = 1000;
/// Messages rendered under one read lock of the state: a whole history
/// is rendered a chunk at a time, so the store's writer never waits
/// behind a long one.
const RENDER_CHUNK: usize = 512;

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(history, send))
        .routes(routes!(edit, delete_plain))
        .routes(routes!(edit_alias))
        .routes(routes!(soft_delete))
        .routes(routes!(react))
        .routes(routes!(read))
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

/// Newest first. Without `limit` the whole range (the whole history, as
/// the original answered clients that never page), at most
/// `--history-max` messages when that is set; `limit` at most 1000.
/// `before`/`after` by message id or `before_seq`/`after_seq` by seq. With
/// `after`, the page is the messages right after the cursor (still newest
/// first).
///
/// The cursors are turned into a range of positions by binary search
/// (ids and seqs grow together), so a page costs its own size, not the
/// conversation's. `search=` scans that range off the state lock
/// (`crate::search`), at most `--search-scan-limit` messages; when that
/// budget ends the scan early, the answer's `X-Search-Stopped-At` header
/// names the last message scanned, from which the client goes on.
#[utoipa::path(get, path = "/api/chat/conversations/{cid}/messages/", tag = "messages",
    params(
        ("cid" = u64, Path, description = "The conversation"),
        ("limit" = Option<u64>, Query, description = "At most this many (1–1000); without it the whole range"),
        ("before" = Option<u64>, Query, description = "Older than this message id"),
        ("after" = Option<u64>, Query, description = "Newer than this message id (the page right after it)"),
        ("before_seq" = Option<u64>, Query, description = "Older than this seq"),
        ("after_seq" = Option<u64>, Query, description = "Newer than this seq"),
        ("search" = Option<String>, Query, description = "Only messages containing this text (case-insensitive)"),
        ("ordering" = Option<String>, Query, description = "`created_at` or `id`: oldest first")),
    responses(
        (status = 200, description = "Messages, newest first", body = Vec<s::Message>,
            headers(("X-Search-Stopped-At" = u64, description = "A search's budget ended at this message id"))),
        (status = 400, description = "A cursor that is not an integer", body = s::ErrorBody),
        (status = 403, description = "Not a member", body = s::ErrorBody)))]
async fn history(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(cid): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let conv_id = path_id(&cid, NOT_MEMBER).map_err(|_| ApiError::Forbidden(NOT_MEMBER))?;
    let limit = match query_u64(&query, "limit")? {
        Some(l) => usize::try_from(l).unwrap_or(MAX_LIMIT).clamp(1, MAX_LIMIT),
        None if app.config.history_max > 0 => app.config.history_max,
        None => usize::MAX,
    };
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
    let direction = if after.is_some() || after_seq.is_some() {
        Direction::OldestFirst
    } else {
        Direction::NewestFirst
    };

    let (range, page_ids) = {
        let state = app.store.state();
        member_of(&state, conv_id, me)?;
        let conv = state
            .conversation(conv_id)
            .ok_or(ApiError::Forbidden(NOT_MEMBER))?;
        // The cursors as a range of message ids (ids grow with seq within
        // a conversation): a page reads only the messages it shows.
        let mut lo = 0;
        let mut hi = u64::MAX;
        if let Some(b) = before {
            hi = hi.min(b);
        }
        if let Some(b) = before_seq {
            let first = state.first_message_at_seq(conv.id, b);
            hi = hi.min(first.unwrap_or(u64::MAX));
        }
        if let Some(a) = after {
            lo = lo.max(a.saturating_add(1));
        }
        if let Some(a) = after_seq {
            let first = state.first_message_at_seq(conv.id, a.saturating_add(1));
            lo = lo.max(first.unwrap_or(u64::MAX));
        }
        let range = lo..hi.max(lo);
        // Without a search the page is the first `limit` ids of the range
        // from the cursor's side, newest first.
        let page_ids = search.is_none().then(|| {
            let newest_first = direction == Direction::NewestFirst;
            let mut ids: Vec<u64> = state
                .message_ids(conv.id, range.clone(), newest_first)
                .take(limit)
                .collect();
            if !newest_first {
                ids.reverse();
            }
            ids
        });
        (range, page_ids)
    };
    let (mut page, stopped_at) = match (page_ids, search) {
        (Some(ids), _) => (render_in_chunks(&app, &ids, me).await, None),
        (None, Some(needle)) => {
            let budget = app.config.search_scan_limit;
            let found = search::messages(
                &app.store, conv_id, range, direction, &needle, limit, budget,
            )
            .await;
            let mut ids = found.ids;
            if direction == Direction::OldestFirst {
                ids.reverse();
            }
            // A match deleted since the scan is left out.
            let state = app.store.state();
            let live = ids
                .iter()
                .filter(|id| state.message(**id).is_some_and(|m| !m.is_deleted));
            (render_page(&state, live, me), found.stopped_at)
        }
        (None, None) => unreachable!("a page is rendered whenever there is no search"),
    };
    if oldest_first {
        page.reverse();
    }
    let mut response = Json(page).into_response();
    if let Some(id) = stopped_at {
        response
            .headers_mut()
            .insert(SEARCH_STOPPED_AT, HeaderValue::from(id));
    }
    Ok(response)
}

/// Names the last message a search scanned when its budget ended it.
const SEARCH_STOPPED_AT: &str = "x-search-stopped-at";

/// The messages of `ids`, in the order given, rendered for `me`, a chunk
/// per read lock with a yield between chunks (a message edited meanwhile
/// shows as it is when its chunk is rendered).
async fn render_in_chunks(app: &App, ids: &[u64], me: u64) -> Vec<Box<RawValue>> {
    let mut page = Vec::with_capacity(ids.len());
    for (i, chunk) in ids.chunks(RENDER_CHUNK).enumerate() {
        if i > 0 {
            tokio::task::yield_now().await;
        }
        page.extend(render_page(&app.store.state(), chunk.iter(), me));
    }
    page
}

/// The messages of `ids`, in the order given, rendered for `me`: each
/// straight to its text (no `Value` tree; the user objects in it are
/// kept text already, see `render::views::UserRef`).
fn render_page<'a>(
    state: &LogState,
    ids: impl Iterator<Item = &'a u64>,
    me: u64,
) -> Vec<Box<RawValue>> {
    ids.filter_map(|id| state.message(*id))
        .map(|m| render::message_text(state, &m, Some(me)))
        .collect()
}

/// 201 with the new message; a retry with the same `client_id` answers 200
/// with the original. Every connected member gets `message.new`.
/// JSON as the core contract, or a multipart form with files in
/// `uploaded_files` (see [`attachments`]).
#[utoipa::path(post, path = "/api/chat/conversations/{cid}/messages/", tag = "messages",
    params(("cid" = u64, Path, description = "The conversation")),
    request_body(content(
        (s::SendMessage = "application/json"),
        (s::SendWithFiles = "multipart/form-data"))),
    responses(
        (status = 200, description = "A retry of a `client_id` already sent: the original message", body = s::Message),
        (status = 201, description = "The new message", body = s::Message),
        (status = 403, description = "Not a member, or blocked", body = s::ErrorBody),
        (status = 404, description = "A `reply_to` or `forwarded_from` the caller cannot see", body = s::ErrorBody)))]
async fn send(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(cid): Path<String>,
    request: Request,
) -> ApiResult<Response> {
    let conv_id = path_id(&cid, NOT_MEMBER).map_err(|_| ApiError::Forbidden(NOT_MEMBER))?;
    let (body, files) = if attachments::is_multipart(request.headers()) {
        // A non-member's files are not even read.
        member_of(&app.store.state(), conv_id, me).map_err(ApiError::closing)?;
        attachments::read_form(&app, request).await?
    } else {
        let body = axum::body::to_bytes(request.into_body(), app.config.max_body_bytes)
            .await
            .map_err(|_| ApiError::PayloadTooLarge)?;
        let body = json_body(&body)?;
        member_of(&app.store.state(), conv_id, me)?;
        (body, Vec::new())
    };
    let command = intake::post_message(&body, context(&app, me, conv_id), !files.is_empty())?;
    if let Err(limited) = app.limits.admit(&command) {
        return Ok(limited.into_response());
    }
    // The files are durable before the command that refers to them; the
    // uploads keep them until its outcome is known, and a refused send's
    // files go when they are dropped.
    let (command, _uploads) = if files.is_empty() {
        (command, Vec::new())
    } else {
        let (attachments, uploads) = attachments::store(&app, files).await?;
        let command = Command::PostWithAttachments {
            post: Box::new(command),
            attachments,
        };
        (command, uploads)
    };
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
    Ok((status, Json(render::message(&state, &message, Some(me)))).into_response())
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
    Ok(render::message(&state, &message, Some(me)))
}

#[utoipa::path(method(patch, put), path = "/api/chat/conversations/{cid}/messages/{mid}/", tag = "messages", params(("cid" = u64, Path, description = "The conversation"), ("mid" = u64, Path, description = "The message")),
    request_body = s::EditMessage,
    responses(
        (status = 200, description = "The message after the edit", body = s::Message),
        (status = 403, description = "Not the sender", body = s::ErrorBody),
        (status = 404, description = "No such message the caller can see", body = s::ErrorBody)))]
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

/// `PATCH`/`PUT {mid}/edit/`: the same as `{mid}/`.
#[utoipa::path(method(patch, put), path = "/api/chat/conversations/{cid}/messages/{mid}/edit/", tag = "messages", params(("cid" = u64, Path, description = "The conversation"), ("mid" = u64, Path, description = "The message")),
    request_body = s::EditMessage,
    responses(
        (status = 200, description = "The message after the edit", body = s::Message),
        (status = 403, description = "Not the sender", body = s::ErrorBody),
        (status = 404, description = "No such message the caller can see", body = s::ErrorBody)))]
async fn edit_alias(
    app: State<Arc<App>>,
    me: AuthUser,
    ids: Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    edit(app, me, ids, body).await
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

#[utoipa::path(delete, path = "/api/chat/conversations/{cid}/messages/{mid}/soft-delete/", tag = "messages", params(("cid" = u64, Path, description = "The conversation"), ("mid" = u64, Path, description = "The message")),
    responses(
        (status = 200, description = "`{\"status\": \"message deleted\"}`", body = s::Status),
        (status = 403, description = "Not the sender", body = s::ErrorBody),
        (status = 404, description = "No such message the caller can see", body = s::ErrorBody)))]
async fn soft_delete(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path((cid, mid)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    remove(&app, me, &cid, &mid).await?;
    Ok(Json(json!({"status": "message deleted"})))
}

#[utoipa::path(delete, path = "/api/chat/conversations/{cid}/messages/{mid}/", tag = "messages", params(("cid" = u64, Path, description = "The conversation"), ("mid" = u64, Path, description = "The message")),
    responses(
        (status = 204, description = "Deleted (its content blanked, kept as `is_deleted`)"),
        (status = 403, description = "Not the sender", body = s::ErrorBody),
        (status = 404, description = "No such message the caller can see", body = s::ErrorBody)))]
async fn delete_plain(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path((cid, mid)): Path<(String, String)>,
) -> ApiResult<Response> {
    remove(&app, me, &cid, &mid).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(post, path = "/api/chat/conversations/{cid}/messages/{mid}/react/", tag = "messages", params(("cid" = u64, Path, description = "The conversation"), ("mid" = u64, Path, description = "The message")),
    request_body = s::ReactRequest,
    responses(
        (status = 200, description = "The caller's same reaction was there: removed", body = s::Status),
        (status = 201, description = "The reaction added", body = s::Reaction),
        (status = 404, description = "No such message the caller can see", body = s::ErrorBody)))]
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
            let message = state.message(message_id);
            let reaction = message
                .as_ref()
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
#[utoipa::path(post, path = "/api/chat/conversations/{cid}/messages/{mid}/read/", tag = "messages", params(("cid" = u64, Path, description = "The conversation"), ("mid" = u64, Path, description = "The message")),
    responses(
        (status = 200, description = "`{\"status\": \"read\"}`: read up to this message", body = s::Status),
        (status = 404, description = "No such message the caller can see", body = s::ErrorBody)))]
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
