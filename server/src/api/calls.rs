//! `/api/chat/calls/` (issue 15; contract API-rest §7): the call log and
//! the call actions over REST. Every change is an event of the call's
//! conversation, so its members' sockets get the same `call.*` frames as
//! the socket's own call frames produce.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vato_eventlog::state::CALL_TYPES;
use vato_eventlog::{CallAction, Command, Rejection};

use super::body::{json_body, opt_id, path_id};
use super::extract::AuthUser;
use super::schemas as s;
use crate::app::App;
use crate::clock::now_micros;
use crate::error::{ApiError, ApiResult};
use crate::render;

const NO_CALL: &str = "No Call matches the given query.";
const NO_CONVERSATION: &str = "No Conversation matches the given query.";

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(list, start))
        .routes(routes!(active))
        .routes(routes!(detail, update, delete))
        .routes(routes!(answer))
        .routes(routes!(reject))
        .routes(routes!(end))
}

/// The caller's call log: the calls of their conversations, newest first.
#[utoipa::path(get, path = "/api/chat/calls/", tag = "calls",
    responses((status = 200, description = "The caller's call log, newest first", body = Vec<s::Call>)))]
async fn list(State(app): State<Arc<App>>, AuthUser(me): AuthUser) -> Json<Value> {
    let state = app.store.state();
    let calls: Vec<Value> = state
        .calls_of(me)
        .into_iter()
        .map(|c| render::calls::call(&state, c, Some(me)))
        .collect();
    Json(Value::Array(calls))
}

/// Ringing or active calls the caller was rung for or started (the
/// original left out the callee of a REST-started call).
#[utoipa::path(get, path = "/api/chat/calls/active/", tag = "calls",
    responses((status = 200, description = "Ringing or ongoing calls the caller is in", body = Vec<s::Call>)))]
async fn active(State(app): State<Arc<App>>, AuthUser(me): AuthUser) -> Json<Value> {
    let state = app.store.state();
    let calls: Vec<Value> = state
        .active_calls_of(me)
        .into_iter()
        .map(|c| render::calls::call(&state, c, Some(me)))
        .collect();
    Json(Value::Array(calls))
}

/// `call_type` if given: one of the choices, as DRF words it.
fn call_type(body: &Map<String, Value>) -> ApiResult<Option<String>> {
    match body.get("call_type") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(t)) if CALL_TYPES.contains(&t.as_str()) => Ok(Some(t.clone())),
        Some(other) => {
            let shown = other.as_str().map_or(other.to_string(), str::to_owned);
            Err(ApiError::field(
                "call_type",
                &format!("\"{shown}\" is not a valid choice."),
            ))
        }
    }
}

/// Starts a call in `conversation_id`, ringing `participant_ids` (members;
/// default: every other member). `state` in the body is ignored: states
/// change only by answering, rejecting, ending or the ring time.
#[utoipa::path(post, path = "/api/chat/calls/", tag = "calls",
    request_body = s::StartCall,
    responses(
        (status = 201, description = "The call, ringing", body = s::Call),
        (status = 400, description = "A call is already in progress there, or field errors", body = s::ErrorBody),
        (status = 403, description = "Not a member, or calls refused", body = s::ErrorBody),
        (status = 404, description = "No such conversation", body = s::ErrorBody)))]
async fn start(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let body = json_body(&body)?;
    let conv_id = opt_id(&body, "conversation_id")
        .map_err(|_| ApiError::NotFound(NO_CONVERSATION))?
        .ok_or(ApiError::NotFound(NO_CONVERSATION))?;
    let call_type = call_type(&body)?.unwrap_or_else(|| "voice".into());
    let participants = match body.get("participant_ids") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(ids)) => ids
            .iter()
            .map(Value::as_u64)
            .collect::<Option<Vec<u64>>>()
            .ok_or_else(|| ApiError::field("participant_ids", "A list of user ids is required."))?,
        Some(_) => {
            return Err(ApiError::field(
                "participant_ids",
                "A list of user ids is required.",
            ))
        }
    };
    let applied = app
        .submit(Command::StartCall {
            by: me,
            conv_id,
            call_type,
            participants,
            at: now_micros(),
        })
        .await?
        .map_err(|rejection| match rejection {
            Rejection::UnknownConversation => ApiError::NotFound(NO_CONVERSATION),
            Rejection::NotAMember => {
                ApiError::Forbidden("You are not a member of this conversation")
            }
            other => other.into(),
        })?;
    let vato_eventlog::Reply::Call(call_id) = applied.reply else {
        return Err(ApiError::Internal("start call replied no call".into()));
    };
    let state = app.store.state();
    let call = state.call(call_id).ok_or(ApiError::NotFound(NO_CALL))?;
    Ok((
        StatusCode::CREATED,
        Json(render::calls::call(&state, call, Some(me))),
    ))
}

/// The conversation of call `id` when `me` is a member of it; 404 for
/// unknown calls and for everyone else.
fn call_conv(app: &App, me: u64, id: &str) -> ApiResult<(u64, u64)> {
    let call_id = path_id(id, NO_CALL)?;
    let state = app.store.state();
    let call = state.call(call_id).ok_or(ApiError::NotFound(NO_CALL))?;
    if !state.is_member(call.conv_id, me) {
        return Err(ApiError::NotFound(NO_CALL));
    }
    Ok((call.conv_id, call_id))
}

#[utoipa::path(get, path = "/api/chat/calls/{id}/", tag = "calls", params(("id" = u64, Path, description = "The call")),
    responses(
        (status = 200, description = "The call", body = s::Call),
        (status = 404, description = "No such call in a conversation of the caller's", body = s::ErrorBody)))]
async fn detail(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (_, call_id) = call_conv(&app, me, &id)?;
    let state = app.store.state();
    let call = state.call(call_id).ok_or(ApiError::NotFound(NO_CALL))?;
    Ok(Json(render::calls::call(&state, call, Some(me))))
}

/// Submits `action` on call `id` for `me`.
async fn act(app: &App, me: u64, id: &str, action: CallAction) -> ApiResult<u64> {
    let (conv_id, call_id) = call_conv(app, me, id)?;
    app.submit(Command::CallAction {
        by: me,
        conv_id,
        call_id,
        action,
        at: now_micros(),
    })
    .await??;
    Ok(call_id)
}

/// `PUT`/`PATCH`: `call_type` (participants only). The state is not
/// writable (the original let anyone write any state): a `state` other
/// than the current one is a 400.
#[utoipa::path(method(put, patch), path = "/api/chat/calls/{id}/", tag = "calls", params(("id" = u64, Path, description = "The call")),
    request_body = s::CallUpdate,
    responses(
        (status = 200, description = "The call after the change", body = s::Call),
        (status = 403, description = "Not a participant", body = s::ErrorBody),
        (status = 404, description = "No such call in a conversation of the caller's", body = s::ErrorBody)))]
async fn update(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let body = json_body(&body)?;
    let (_, call_id) = call_conv(&app, me, &id)?;
    let new_type = call_type(&body)?;
    if let Some(state) = body.get("state").filter(|s| !s.is_null()) {
        let current = app.store.state().call(call_id).map(|c| c.state.clone());
        if state.as_str() != current.as_deref() {
            return Err(ApiError::field(
                "state",
                "The state changes only by answer/, reject/, end/ or the ring time.",
            ));
        }
    }
    match new_type {
        Some(call_type) => {
            act(&app, me, &id, CallAction::SetType(call_type)).await?;
        }
        None => {
            // Nothing to change; still only for participants.
            let state = app.store.state();
            let call = state.call(call_id).ok_or(ApiError::NotFound(NO_CALL))?;
            if call.participant(me).is_none() {
                return Err(Rejection::NotAParticipant.into());
            }
        }
    }
    let state = app.store.state();
    let call = state.call(call_id).ok_or(ApiError::NotFound(NO_CALL))?;
    Ok(Json(render::calls::call(&state, call, Some(me))))
}

/// Removes a finished call from the log (participants only): 204.
#[utoipa::path(delete, path = "/api/chat/calls/{id}/", tag = "calls", params(("id" = u64, Path, description = "The call")),
    responses(
        (status = 204, description = "Removed from the log (only when over)"),
        (status = 403, description = "Not a participant", body = s::ErrorBody),
        (status = 404, description = "No such call in a conversation of the caller's", body = s::ErrorBody)))]
async fn delete(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    act(&app, me, &id, CallAction::Delete).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(post, path = "/api/chat/calls/{id}/answer/", tag = "calls", params(("id" = u64, Path, description = "The call")),
    responses(
        (status = 200, description = "`{\"status\": \"answered\"}`", body = s::Status),
        (status = 403, description = "Not a participant", body = s::ErrorBody),
        (status = 404, description = "No such call in a conversation of the caller's", body = s::ErrorBody)))]
async fn answer(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    act(&app, me, &id, CallAction::Answer).await?;
    Ok(Json(json!({"status": "answered"})))
}

#[utoipa::path(post, path = "/api/chat/calls/{id}/reject/", tag = "calls", params(("id" = u64, Path, description = "The call")),
    responses(
        (status = 200, description = "`{\"status\": \"rejected\"}`", body = s::Status),
        (status = 403, description = "Not a participant", body = s::ErrorBody),
        (status = 404, description = "No such call in a conversation of the caller's", body = s::ErrorBody)))]
async fn reject(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    act(&app, me, &id, CallAction::Reject).await?;
    Ok(Json(json!({"status": "rejected"})))
}

/// `{"status": "ended", "duration": <whole seconds from the answer>}`.
#[utoipa::path(post, path = "/api/chat/calls/{id}/end/", tag = "calls", params(("id" = u64, Path, description = "The call")),
    responses(
        (status = 200, description = "The call is over for the caller", body = s::CallEnded),
        (status = 403, description = "Not a participant", body = s::ErrorBody),
        (status = 404, description = "No such call in a conversation of the caller's", body = s::ErrorBody)))]
async fn end(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let call_id = act(&app, me, &id, CallAction::End).await?;
    let duration = app
        .store
        .state()
        .call(call_id)
        .map_or(0, |c| c.duration_secs());
    Ok(Json(json!({"status": "ended", "duration": duration})))
}
