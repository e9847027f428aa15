//! `/api/chat/conversations/`: list, create-direct, create group, detail,
//! update and delete (admins), add member, remove member (admins), leave.
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
use axum::Json;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vato_eventlog::ConvKind;
use vato_eventlog::{Command, Rejection, Reply};

use super::body::{json_body, opt_bool, opt_id, opt_str, path_id};
use super::extract::AuthUser;
use super::schemas as s;
use crate::app::App;
use crate::clock::now_micros;
use crate::error::{ApiError, ApiResult};
use crate::intake::profile::FieldErrors;
use crate::render;

const NO_CONVERSATION: &str = "No Conversation matches the given query.";
const ADMINS_ONLY: &str = "Only admins can change this conversation.";
/// The contract's model limit of a conversation title.
const MAX_TITLE_CHARS: usize = 255;

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(list, create_group))
        .routes(routes!(create_direct))
        .routes(routes!(detail, update, remove))
        .routes(routes!(add_member))
        .routes(routes!(remove_member))
        .routes(routes!(leave))
}

/// The caller's conversations, most recent activity first.
#[utoipa::path(get, path = "/api/chat/conversations/", tag = "conversations",
    responses((status = 200, description = "The caller's conversations", body = Vec<s::Conversation>)))]
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
#[utoipa::path(post, path = "/api/chat/conversations/create-direct/", tag = "conversations",
    request_body = s::CreateDirect,
    responses(
        (status = 200, description = "The pair's existing direct conversation", body = s::Conversation),
        (status = 201, description = "A new direct conversation", body = s::Conversation),
        (status = 403, description = "The other user blocks the caller", body = s::ErrorBody),
        (status = 404, description = "No such user", body = s::ErrorBody)))]
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

#[utoipa::path(post, path = "/api/chat/conversations/", tag = "conversations",
    request_body = s::CreateGroup,
    responses(
        (status = 201, description = "The new group", body = s::Conversation),
        (status = 403, description = "A member refuses group invitations", body = s::ErrorBody)))]
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

#[utoipa::path(get, path = "/api/chat/conversations/{id}/", tag = "conversations", params(("id" = u64, Path, description = "The conversation")),
    responses(
        (status = 200, description = "The conversation", body = s::Conversation),
        (status = 404, description = "No such conversation of the caller's", body = s::ErrorBody)))]
async fn detail(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let conv_id = path_id(&id, NO_CONVERSATION)?;
    Ok(Json(conversation_json(&app, conv_id, me)?))
}

/// Admins only (the original let any member add anyone).
#[utoipa::path(post, path = "/api/chat/conversations/{id}/add-member/", tag = "conversations", params(("id" = u64, Path, description = "The conversation")),
    request_body = s::MemberRequest,
    responses(
        (status = 200, description = "`{\"status\": \"member added\"}`", body = s::Status),
        (status = 403, description = "Not an admin, or the user refuses invitations", body = s::ErrorBody),
        (status = 404, description = "No such conversation or user", body = s::ErrorBody)))]
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
#[utoipa::path(post, path = "/api/chat/conversations/{id}/leave/", tag = "conversations", params(("id" = u64, Path, description = "The conversation")),
    responses(
        (status = 200, description = "`{\"status\": \"left\"}`", body = s::Status),
        (status = 404, description = "No such conversation of the caller's", body = s::ErrorBody)))]
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

/// `PUT`/`PATCH {id}/` (both partial, as the original's PUT): `title`,
/// `description`, `is_public`; admins only (the original let any member).
/// `conversation_type` may be sent only with its current value; `members`,
/// `owner` and other read-only or unknown keys are ignored. 200 with the
/// conversation; one `ConversationUpdated` event when something changes,
/// nothing when nothing does.
#[utoipa::path(method(put, patch), path = "/api/chat/conversations/{id}/", tag = "conversations", params(("id" = u64, Path, description = "The conversation")),
    request_body = s::ConversationUpdate,
    responses(
        (status = 200, description = "The conversation after the change", body = s::Conversation),
        (status = 403, description = "Not an admin", body = s::ErrorBody),
        (status = 404, description = "No such conversation of the caller's", body = s::ErrorBody)))]
async fn update(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let conv_id = path_id(&id, NO_CONVERSATION)?;
    let body = json_body(&body)?;
    let kind = {
        let state = app.store.state();
        state
            .conversation(conv_id)
            .filter(|c| c.members.contains_key(&me))
            .ok_or(ApiError::NotFound(NO_CONVERSATION))?
            .kind
    };
    let mut errors = FieldErrors::default();
    let title = field_text(&body, "title", &mut errors);
    let description = field_text(&body, "description", &mut errors);
    if title.as_ref().is_some_and(|t| t.trim().is_empty()) {
        errors.add("title", "This field may not be blank.");
    }
    for (field, value, max) in [
        ("title", &title, MAX_TITLE_CHARS),
        (
            "description",
            &description,
            app.config.max_description_chars,
        ),
    ] {
        if value.as_ref().is_some_and(|v| v.chars().count() > max) {
            errors.add(
                field,
                format!("Ensure this field has no more than {max} characters."),
            );
        }
    }
    let is_public = match opt_bool(&body, "is_public") {
        Ok(value) => value,
        Err(_) => {
            errors.add("is_public", "Must be a valid boolean.");
            None
        }
    };
    match body.get("conversation_type") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if t == kind.as_str() => {}
        Some(_) => errors.add(
            "conversation_type",
            "The conversation type cannot be changed.",
        ),
    }
    if kind == ConvKind::Direct && is_public == Some(true) {
        errors.add("is_public", "A direct conversation cannot be public.");
    }
    if !errors.is_empty() {
        return Err(errors.into());
    }
    let outcome = app
        .submit(Command::UpdateConversation {
            by: me,
            conv_id,
            title,
            description,
            is_public,
            at: now_micros(),
        })
        .await?;
    match outcome {
        Ok(_) => Ok(Json(conversation_json(&app, conv_id, me)?)),
        Err(Rejection::NotAMember | Rejection::UnknownConversation) => {
            Err(ApiError::NotFound(NO_CONVERSATION))
        }
        Err(Rejection::NotAnAdmin) => Err(ApiError::Forbidden(ADMINS_ONLY)),
        Err(other) => Err(other.into()),
    }
}

/// A text field of a conversation write: absent or null is unchanged; a
/// non-string is a field error.
fn field_text(
    body: &serde_json::Map<String, Value>,
    field: &'static str,
    errors: &mut FieldErrors,
) -> Option<String> {
    match body.get(field) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            errors.add(field, "Not a valid string.");
            None
        }
    }
}

/// `DELETE {id}/`: admins only; 204. The conversation leaves every
/// member's list, its sockets get `conversation.deleted` and close with
/// 4404; the log keeps its events.
#[utoipa::path(delete, path = "/api/chat/conversations/{id}/", tag = "conversations", params(("id" = u64, Path, description = "The conversation")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Not an admin", body = s::ErrorBody),
        (status = 404, description = "No such conversation of the caller's", body = s::ErrorBody)))]
async fn remove(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let conv_id = path_id(&id, NO_CONVERSATION)?;
    let outcome = app
        .submit(Command::DeleteConversation {
            by: me,
            conv_id,
            at: now_micros(),
        })
        .await?;
    match outcome {
        Ok(_) => Ok(StatusCode::NO_CONTENT),
        Err(Rejection::NotAMember | Rejection::UnknownConversation) => {
            Err(ApiError::NotFound(NO_CONVERSATION))
        }
        Err(Rejection::NotAnAdmin) => Err(ApiError::Forbidden(
            "Only admins can delete this conversation.",
        )),
        Err(other) => Err(other.into()),
    }
}

/// `POST {id}/remove-member/ {"user_id"}`: admins only (anyone may name
/// themselves: that is leaving); 200 `{"status": "member removed"}`. The
/// removed user's sockets of it close with 4403, the others get
/// `member.removed`. Someone not in the group: 400 on `user_id`.
#[utoipa::path(post, path = "/api/chat/conversations/{id}/remove-member/", tag = "conversations", params(("id" = u64, Path, description = "The conversation")),
    request_body = s::MemberRequest,
    responses(
        (status = 200, description = "`{\"status\": \"member removed\"}`", body = s::Status),
        (status = 403, description = "Not an admin", body = s::ErrorBody),
        (status = 404, description = "No such conversation of the caller's", body = s::ErrorBody)))]
async fn remove_member(
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
        .submit(Command::RemoveMember {
            by: me,
            conv_id,
            user_id,
            at: now_micros(),
        })
        .await?;
    match outcome {
        Ok(_) => Ok(Json(json!({"status": "member removed"}))),
        Err(Rejection::NotAMember | Rejection::UnknownConversation) => {
            Err(ApiError::NotFound(NO_CONVERSATION))
        }
        Err(Rejection::NotAnAdmin) => Err(ApiError::Forbidden("Only admins can remove members.")),
        Err(other) => Err(other.into()),
    }
}
