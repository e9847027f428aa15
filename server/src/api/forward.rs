//! `POST .../messages/{mid}/forward/ {"conversation_id", "client_id"?}`
//! (issue 14): the message posted again in another conversation of the
//! caller's, with `forwarded_from` set and its attachments shared (the
//! same stored files, new attachment rows). Delivered live there as
//! `message.new`; exactly once with `client_id`, as a send.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vato_eventlog::{Rejection, Reply};

use super::body::{json_body, path_id};
use super::extract::AuthUser;
use super::schemas as s;
use crate::app::App;
use crate::clock::now_micros;
use crate::error::{ApiError, ApiResult};
use crate::intake;
use crate::render;

const NO_MESSAGE: &str = "No Message matches the given query.";

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new().routes(routes!(forward))
}

/// 201 with the new message; a retry with the same `client_id` answers
/// 200 with it. A source the caller cannot see: 404 (message); a target
/// they are not in: 404 `{"detail": "Conversation not found."}`; a deleted
/// source: 400 (the original republished its text).
#[utoipa::path(post, path = "/api/chat/conversations/{cid}/messages/{mid}/forward/", tag = "messages", params(("cid" = u64, Path, description = "The conversation"), ("mid" = u64, Path, description = "The message")),
    request_body = s::ForwardRequest,
    responses(
        (status = 200, description = "A retry of a `client_id` already sent: the original", body = s::Message),
        (status = 201, description = "The forwarded copy", body = s::Message),
        (status = 400, description = "A deleted message, or field errors", body = s::ErrorBody),
        (status = 403, description = "Blocked in the target", body = s::ErrorBody),
        (status = 404, description = "No such message, or a target the caller is not in", body = s::ErrorBody)))]
async fn forward(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path((cid, mid)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let conv_id = path_id(&cid, NO_MESSAGE)?;
    let message_id = path_id(&mid, NO_MESSAGE)?;
    let body = json_body(&body)?;
    let command = intake::forward_message(
        &body,
        message_id,
        intake::Context {
            user_id: me,
            conv_id,
            at: now_micros(),
            max_message_chars: app.config.max_message_chars,
        },
    )?;
    if let Err(limited) = app.limits.admit(&command) {
        return Ok(limited.into_response());
    }
    let applied = app.submit(command).await?.map_err(|r| match r {
        Rejection::UnknownMessage => ApiError::NotFound(NO_MESSAGE),
        Rejection::MessageDeleted => ApiError::detail("A deleted message cannot be forwarded."),
        other => other.into(),
    })?;
    let Reply::Message {
        message_id,
        created,
    } = applied.reply
    else {
        return Err(ApiError::Internal(
            "forward did not return a message".into(),
        ));
    };
    let state = app.store.state();
    let message = state
        .message(message_id)
        .ok_or(ApiError::NotFound(NO_MESSAGE))?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(render::message(&state, &message, Some(me)))).into_response())
}
