//! `/api/chat/conversations/`: list, create-direct, create group, detail,
//! add member, leave.
//!
//! Adding someone to a group (at creation or later) needs their consent
//! (`allow_group_invite`); refused, nothing is stored and the 403 names
//! them. A group's title is at most 255 characters and its description at
//! most `--max-description-chars`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use vato_eventlog::{Command, Rejection, Reply};

use super::body::{json_body, opt_bool, opt_id, opt_str, path_id};
use super::extract::AuthUser;
use crate::app::App;
use crate::clock::now_micros;
use crate::error::{ApiError, ApiResult};
use crate::intake::profile::FieldErrors;
use crate::render;

const NO_CONVERSATION: &str = "No Conversation matches the given query.";
/// The contract's model limit of a conversation title.
const MAX_TITLE_CHARS: usize = 255;

pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/api/chat/conversations/", get(list).post(create_group))
        .route(
            "/api/chat/conversations/create-direct/",
            post(create_direct),
        )
        .route("/api/chat/conversations/{id}/", get(detail))
        .route("/api/chat/conversations/{id}/add-member/", post(add_member))
        .route("/api/chat/conversations/{id}/leave/", post(leave))
}

/// The caller's conversations, most recent activity first.
async fn list(State(app): State<Arc<App>>, AuthUser(me): AuthUser) -> ApiResult<Response> {
    let text = {
        let state = app.store.state();
        let mut conversations: Vec<_> = state.conversations_of(me).collect();
        conversations.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(b.id.cmp(&a.id)));
        render::conversations_text(&state, conversations.into_iter(), me)
    };
    Ok(([(header::CONTENT_TYPE, "application/json")], text).into_response())
}

fn conversation_json(app: &App, conv_id: u64, me: u64) -> ApiResult<Value> {
    let state = app.store.state();
    let conv = state
        .conversation(conv_id)
        .filter(|c| c.members.contains_key(&me))
        .ok_or(ApiError::NotFound(NO_CONVERSATION))?;
    Ok(render::conversation(&state, conv, me))
}

/// 200 with the pair's existing direct conversation, 201 when new.
async fn create_direct(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let body = json_body(&body)?;
    let Some(other) = opt_id(&body, "user_id")
        .map_err(|_| ApiError::BadRequest(json!({"error": "user_id required."})))?
    else {
        return Err(ApiError::BadRequest(json!({"error": "user_id required."})));
    };
    let outcome = app
        .submit(Command::CreateDirect {
            by: me,
            other,
            at: now_micros(),
        })
        .await?;
    let reply = match outcome {
        Ok(applied) => applied.reply,
        Err(Rejection::UnknownUser) => {
            return Err(ApiError::NotFoundBody(json!({"error": "User not found."})));
        }
        Err(other) => return Err(other.into()),
    };
    let Reply::Conversation { conv_id, created } = reply else {
        return Err(ApiError::Internal(
            "create-direct did not return a conversation".into(),
        ));
    };
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(conversation_json(&app, conv_id, me)?)))
}

async fn create_group(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let body = json_body(&body)?;
    let title = opt_str(&body, "title")?.unwrap_or_default();
    let description = opt_str(&body, "description")?.unwrap_or_default();
    let mut errors = FieldErrors::default();
    if title.trim().is_empty() {
        errors.add("title", "This field is required.");
    }
    for (field, value, max) in [
        ("title", &title, MAX_TITLE_CHARS),
        (
            "description",
            &description,
            app.config.max_description_chars,
        ),
    ] {
        if value.chars().count() > max {
            errors.add(
                field,
                format!("Ensure this field has no more than {max} characters."),
            );
        }
    }
    if !errors.is_empty() {
        return Err(errors.into());
    }
    match opt_str(&body, "conversation_type")?.as_deref() {
        None | Some("group") => {}
        Some("direct") => {
            return Err(ApiError::field(
                "conversation_type",
                "Use create-direct/ for direct conversations.",
            ))
        }
        Some(_) => {
            return Err(ApiError::field(
                "conversation_type",
                "Only \"group\" is supported.",
            ))
        }
    }
    let member_ids = match body.get("member_ids") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_u64()
                    .ok_or_else(|| ApiError::field("member_ids", "A list of user ids is required."))
            })
            .collect::<ApiResult<Vec<u64>>>()?,
        Some(_) => {
            return Err(ApiError::field(
                "member_ids",
                "A list of user ids is required.",
            ))
        }
    };
    let outcome = app
        .submit(Command::CreateGroup {
            by: me,
            title,
            description,
            is_public: opt_bool(&body, "is_public")?.unwrap_or(false),
            member_ids,
            at: now_micros(),
        })
        .await?;
    let reply = match outcome {
        Ok(applied) => applied.reply,
        Err(Rejection::UnknownUser) => {
            return Err(ApiError::field("member_ids", "Unknown user id."))
        }
        Err(other) => return Err(other.into()),
    };
    let Reply::Conversation { conv_id, .. } = reply else {
        return Err(ApiError::Internal(
            "create-group did not return a conversation".into(),
        ));
    };
    Ok((
        StatusCode::CREATED,
        Json(conversation_json(&app, conv_id, me)?),
    ))
}

async fn detail(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let conv_id = path_id(&id, NO_CONVERSATION)?;
    Ok(Json(conversation_json(&app, conv_id, me)?))
}

/// Admins only (the original let any member add anyone).
async fn add_member(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let conv_id = path_id(&id, NO_CONVERSATION)?;
    let body = json_body(&body)?;
    let Some(user_id) = opt_id(&body, "user_id")? else {
        return Err(ApiError::detail("user_id required."));
    };
    let outcome = app
        .submit(Command::AddMember {
            by: me,
            conv_id,
            user_id,
            at: now_micros(),
        })
        .await?;
    match outcome {
        Ok(_) => Ok(Json(json!({"status": "member added"}))),
        Err(Rejection::NotAMember | Rejection::UnknownConversation) => {
            Err(ApiError::NotFound(NO_CONVERSATION))
        }
        Err(other) => Err(other.into()),
    }
}

/// Any member may leave a group (the original had no way out); 200
/// `{"status": "left"}`. Members' sockets get `member.removed`; the
/// leaver's own sockets of it are closed with 4403. A direct conversation
/// cannot be left (400).
async fn leave(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let conv_id = path_id(&id, NO_CONVERSATION)?;
    let outcome = app
        .submit(Command::RemoveMember {
            by: me,
            conv_id,
            user_id: me,
            at: now_micros(),
        })
        .await?;
    match outcome {
        Ok(_) => Ok(Json(json!({"status": "left"}))),
        Err(Rejection::NotAMember | Rejection::UnknownConversation) => {
            Err(ApiError::NotFound(NO_CONVERSATION))
        }
        Err(other) => Err(other.into()),
    }
}
