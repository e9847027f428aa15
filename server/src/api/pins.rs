//! `POST`/`DELETE .../messages/{mid}/pin/` (issue 14): admins pin and
//! unpin a message of their conversation; members' sockets get
//! `message.pinned` / `message.unpinned`, and the conversation object
//! lists the pinned ids (`pinned_message_ids`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vato_eventlog::{Command, Rejection, Reply};

use super::body::path_id;
use super::extract::AuthUser;
use super::schemas as s;
use crate::app::App;
use crate::clock::now_micros;
use crate::error::{ApiError, ApiResult};
use crate::render;

const NO_MESSAGE: &str = "No Message matches the given query.";
const ADMINS_ONLY: &str = "Only admins can pin messages.";

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new().routes(routes!(pin, unpin))
}

fn ids(cid: &str, mid: &str) -> ApiResult<(u64, u64)> {
    Ok((path_id(cid, NO_MESSAGE)?, path_id(mid, NO_MESSAGE)?))
}

/// The contract's answers: a message outside the caller's conversations
/// is 404, a member who is not an admin 403.
fn pin_rejection(rejection: Rejection) -> ApiError {
    match rejection {
        Rejection::NotAMember | Rejection::UnknownConversation | Rejection::UnknownMessage => {
            ApiError::NotFound(NO_MESSAGE)
        }
        Rejection::NotAnAdmin => ApiError::Forbidden(ADMINS_ONLY),
        other => other.into(),
    }
}

/// 201 with the new pin, 200 with the existing one (its `pinned_by` and
/// `pinned_at` kept): `{"id", "message", "pinned_by", "pinned_at"}`.
#[utoipa::path(post, path = "/api/chat/conversations/{cid}/messages/{mid}/pin/", tag = "messages", params(("cid" = u64, Path, description = "The conversation"), ("mid" = u64, Path, description = "The message")),
    responses(
        (status = 200, description = "Already pinned", body = s::Pin),
        (status = 201, description = "Pinned", body = s::Pin),
        (status = 403, description = "Not an admin of the group", body = s::ErrorBody),
        (status = 404, description = "No such message the caller can see", body = s::ErrorBody)))]
async fn pin(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path((cid, mid)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (conv_id, message_id) = ids(&cid, &mid)?;
    let applied = app
        .submit(Command::PinMessage {
            by: me,
            conv_id,
            message_id,
            at: now_micros(),
        })
        .await?
        .map_err(pin_rejection)?;
    let Reply::Pin { pin_id, created } = applied.reply else {
        return Err(ApiError::Internal("pin did not return a pin".into()));
    };
    let state = app.store.state();
    // Unpinned (or the conversation deleted) since: as if never found.
    let pin = state
        .conversation(conv_id)
        .and_then(|c| c.pins.iter().find(|p| p.id == pin_id))
        .ok_or(ApiError::NotFound(NO_MESSAGE))?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(render::pin(&state, pin, me))))
}

/// 204; a message that is not pinned is a 404.
#[utoipa::path(delete, path = "/api/chat/conversations/{cid}/messages/{mid}/pin/", tag = "messages", params(("cid" = u64, Path, description = "The conversation"), ("mid" = u64, Path, description = "The message")),
    responses(
        (status = 204, description = "Unpinned"),
        (status = 403, description = "Not an admin of the group", body = s::ErrorBody),
        (status = 404, description = "No such message the caller can see, or not pinned", body = s::ErrorBody)))]
async fn unpin(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path((cid, mid)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (conv_id, message_id) = ids(&cid, &mid)?;
    app.submit(Command::UnpinMessage {
        by: me,
        conv_id,
        message_id,
        at: now_micros(),
    })
    .await?
    .map_err(pin_rejection)?;
    Ok(StatusCode::NO_CONTENT)
}
