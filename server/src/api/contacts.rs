//! `/api/chat/contacts/`: the caller's contacts (contract API-rest.md §4):
//! list, add, one, update (`PUT`/`PATCH`, both partial), delete, and the
//! block and favourite toggles. Every change is an event; a block takes
//! effect in the state machine (no direct conversation, no posts in it)
//! and in the fan-out (no typing, no presence).
//!
//! The add route's own errors are bare JSON arrays, as the original's
//! (`["contact_id required."]`); field errors keep DRF's shape.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vato_eventlog::command::ContactFlag;
use vato_eventlog::{Command, ContactId, Event, Rejection, Reply, UserId};

use super::body::{json_body, opt_id, path_id};
use super::extract::AuthUser;
use super::schemas as s;
use crate::app::App;
use crate::clock::now_micros;
use crate::error::{ApiError, ApiResult};
use crate::intake::contact::contact_fields;
use crate::render;

const NO_CONTACT: &str = "No Contact matches the given query.";

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(list, add))
        .routes(routes!(one, update, remove))
        .routes(routes!(toggle_block))
        .routes(routes!(toggle_favorite))
}

/// The caller's contacts as a plain array (by the contact's user id; the
/// contract defines no order).
#[utoipa::path(get, path = "/api/chat/contacts/", tag = "contacts",
    responses((status = 200, description = "The caller's contacts", body = Vec<s::Contact>)))]
async fn list(State(app): State<Arc<App>>, AuthUser(me): AuthUser) -> Json<Vec<Value>> {
    let state = app.store.state();
    Json(
        state
            .contacts_of(me)
            .map(|c| render::contact(&state, c))
            .collect(),
    )
}

/// The caller's contact `id` rendered, or the contract's 404.
fn contact_json(app: &App, me: UserId, id: ContactId) -> ApiResult<Value> {
    let state = app.store.state();
    let contact = state
        .contact_of(me, id)
        .ok_or(ApiError::NotFound(NO_CONTACT))?;
    Ok(render::contact(&state, contact))
}

fn contact_id(raw: &str) -> ApiResult<ContactId> {
    path_id(raw, NO_CONTACT)
}

/// The contact a command resolved to.
fn replied_id(reply: &Reply) -> ApiResult<ContactId> {
    match reply {
        Reply::Contact(id) => Ok(*id),
        _ => Err(ApiError::Internal(
            "a contact command did not name it".into(),
        )),
    }
}

/// `{"contact_id", "nickname"?, "is_blocked"?, "is_favorite"?}` → 201.
/// Field errors first (as DRF validates the serializer first), then
/// `contact_id`; unknown user 404, yourself or a duplicate 400.
#[utoipa::path(post, path = "/api/chat/contacts/", tag = "contacts",
    request_body = s::ContactRequest,
    responses(
        (status = 201, description = "The new contact", body = s::Contact),
        (status = 400, description = "Oneself, already a contact, or field errors", body = s::ErrorBody),
        (status = 404, description = "No such user", body = s::ErrorBody)))]
async fn add(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    body: Bytes,
) -> ApiResult<Response> {
    let body = json_body(&body)?;
    let fields = contact_fields(&body)?;
    let Some(user_id) = opt_id(&body, "contact_id")? else {
        return Err(ApiError::BadRequest(json!(["contact_id required."])));
    };
    let outcome = app
        .submit(Command::AddContact {
            owner: me,
            user_id,
            nickname: fields.nickname.unwrap_or_default(),
            is_blocked: fields.is_blocked.unwrap_or(false),
            is_favorite: fields.is_favorite.unwrap_or(false),
            at: now_micros(),
        })
        .await?;
    let applied = outcome.map_err(|rejection| match rejection {
        Rejection::UnknownUser => ApiError::NotFoundBody(json!(["User not found."])),
        other => other.into(),
    })?;
    let id = replied_id(&applied.reply)?;
    Ok((StatusCode::CREATED, Json(contact_json(&app, me, id)?)).into_response())
}

#[utoipa::path(get, path = "/api/chat/contacts/{id}/", tag = "contacts", params(("id" = u64, Path, description = "The contact")),
    responses(
        (status = 200, description = "The contact", body = s::Contact),
        (status = 404, description = "No such contact of the caller's", body = s::ErrorBody)))]
async fn one(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(contact_json(&app, me, contact_id(&id)?)?))
}

/// `PUT` and `PATCH` alike: the fields given (none required); `contact`
/// and `contact_id` are ignored, as the original.
#[utoipa::path(method(put, patch), path = "/api/chat/contacts/{id}/", tag = "contacts", params(("id" = u64, Path, description = "The contact")),
    request_body = s::ContactUpdate,
    responses(
        (status = 200, description = "The contact after the change", body = s::Contact),
        (status = 404, description = "No such contact of the caller's", body = s::ErrorBody)))]
async fn update(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let id = contact_id(&id)?;
    let body = json_body(&body)?;
    let fields = contact_fields(&body)?;
    app.submit(Command::UpdateContact {
        owner: me,
        contact_id: id,
        nickname: fields.nickname,
        is_blocked: fields.is_blocked,
        is_favorite: fields.is_favorite,
        at: now_micros(),
    })
    .await??;
    Ok(Json(contact_json(&app, me, id)?))
}

#[utoipa::path(delete, path = "/api/chat/contacts/{id}/", tag = "contacts", params(("id" = u64, Path, description = "The contact")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such contact of the caller's", body = s::ErrorBody)))]
async fn remove(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    app.submit(Command::RemoveContact {
        owner: me,
        contact_id: contact_id(&id)?,
        at: now_micros(),
    })
    .await??;
    Ok(StatusCode::NO_CONTENT)
}

/// Flips the flag in the state machine and answers its new value, read
/// from the event (a later change cannot make the answer lie).
async fn toggle(app: &App, me: UserId, id: &str, flag: ContactFlag) -> ApiResult<bool> {
    let applied = app
        .submit(Command::ToggleContact {
            owner: me,
            contact_id: contact_id(id)?,
            flag,
            at: now_micros(),
        })
        .await??;
    let value = applied
        .events()
        .iter()
        .find_map(|e| match (&e.event, flag) {
            (Event::ContactUpdated { is_blocked, .. }, ContactFlag::Blocked) => *is_blocked,
            (Event::ContactUpdated { is_favorite, .. }, ContactFlag::Favorite) => *is_favorite,
            _ => None,
        });
    value.ok_or_else(|| ApiError::Internal("a toggle without its event".into()))
}

/// 200 `{"status": "blocked"}` or `{"status": "unblocked"}`.
#[utoipa::path(post, path = "/api/chat/contacts/{id}/block/", tag = "contacts", params(("id" = u64, Path, description = "The contact")),
    responses(
        (status = 200, description = "`{\"status\": \"blocked\"}` or `{\"status\": \"unblocked\"}`", body = s::Status),
        (status = 404, description = "No such contact of the caller's", body = s::ErrorBody)))]
async fn toggle_block(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let blocked = toggle(&app, me, &id, ContactFlag::Blocked).await?;
    let status = if blocked { "blocked" } else { "unblocked" };
    Ok(Json(json!({ "status": status })))
}

/// 200 `{"status": "favorited"}` or `{"status": "unfavorited"}`.
#[utoipa::path(post, path = "/api/chat/contacts/{id}/favorite/", tag = "contacts", params(("id" = u64, Path, description = "The contact")),
    responses(
        (status = 200, description = "`{\"status\": \"favorited\"}` or `{\"status\": \"unfavorited\"}`", body = s::Status),
        (status = 404, description = "No such contact of the caller's", body = s::ErrorBody)))]
async fn toggle_favorite(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let favorite = toggle(&app, me, &id, ContactFlag::Favorite).await?;
    let status = if favorite { "favorited" } else { "unfavorited" };
    Ok(Json(json!({ "status": status })))
}
