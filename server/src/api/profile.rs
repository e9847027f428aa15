//! Profiles (contract API-rest.md §1): the caller's own profile and user
//! object, read and written, and other users' objects, read only.
//!
//! * `GET`/`PATCH`/`PUT profile/me/`: the profile object; PUT is partial
//!   too, as the original's.
//! * `GET`/`PATCH user/` and `GET users/me/`: the caller's user object.
//! * `GET profile/{id}/`: the privacy-filtered view of anyone.
//! * `GET users/{id}/`: anyone's user object, as the caller may see it;
//!   `PUT`/`PATCH` there only on yourself (403 for another user: the
//!   original let anyone edit anyone).
//!
//! A write is one `ProfileUpdated` event with the fields that change.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vato_eventlog::profile::{Nullable, ProfileChanges};
use vato_eventlog::{Command, UserId};

use super::body::json_body;
use super::extract::AuthUser;
use super::schemas as s;
use crate::app::App;
use crate::clock::now_micros;
use crate::error::{ApiError, ApiResult};
use crate::intake::profile::{profile_changes, FieldErrors};
use crate::render;

const NO_USER: &str = "No User matches the given query.";

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(profile_me, write_profile_me))
        .routes(routes!(public_profile))
        .routes(routes!(user_me, write_user_me))
        .routes(routes!(users_me))
        .routes(routes!(user_detail, patch_user, put_user))
}

#[utoipa::path(get, path = "/api/auth/profile/me/", tag = "users",
    responses((status = 200, description = "The caller's profile", body = s::Profile)))]
async fn profile_me(State(app): State<Arc<App>>, AuthUser(me): AuthUser) -> ApiResult<Json<Value>> {
    let state = app.store.state();
    let user = state.user(me).ok_or(ApiError::InvalidToken)?;
    Ok(Json(render::profile(user)))
}

#[utoipa::path(method(patch, put), path = "/api/auth/profile/me/", tag = "users",
    request_body = s::ProfileUpdate,
    responses((status = 200, description = "The profile after the change", body = s::Profile)))]
async fn write_profile_me(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    update(&app, me, &body, false).await?;
    profile_me(State(app), AuthUser(me)).await
}

#[utoipa::path(get, path = "/api/auth/user/", tag = "users",
    responses((status = 200, description = "The caller's user object", body = s::User)))]
async fn user_me(State(app): State<Arc<App>>, AuthUser(me): AuthUser) -> ApiResult<Json<Value>> {
    let state = app.store.state();
    let user = state.user(me).ok_or(ApiError::InvalidToken)?;
    Ok(Json(render::user(user, Some(me))))
}

/// `GET /api/auth/users/me/`: the same as `GET /api/auth/user/`.
#[utoipa::path(get, path = "/api/auth/users/me/", tag = "users",
    responses((status = 200, description = "The caller's user object", body = s::User)))]
async fn users_me(app: State<Arc<App>>, me: AuthUser) -> ApiResult<Json<Value>> {
    user_me(app, me).await
}

#[utoipa::path(patch, path = "/api/auth/user/", tag = "users",
    request_body = s::ProfileUpdate,
    responses((status = 200, description = "The user after the change", body = s::User)))]
async fn write_user_me(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    update(&app, me, &body, false).await?;
    user_me(State(app), AuthUser(me)).await
}

/// Anyone's privacy-filtered profile; your own too.
#[utoipa::path(get, path = "/api/auth/profile/{id}/", tag = "users", params(("id" = u64, Path, description = "The user")),
    responses(
        (status = 200, description = "The privacy-filtered profile", body = s::PublicProfile),
        (status = 404, description = "No such user", body = s::ErrorBody)))]
async fn public_profile(
    State(app): State<Arc<App>>,
    AuthUser(_): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let state = app.store.state();
    let user = id
        .parse()
        .ok()
        .and_then(|id| state.user(id))
        .ok_or_else(|| ApiError::NotFoundBody(json!({"error": "User not found"})))?;
    Ok(Json(render::public_profile(user)))
}

/// Anyone's user object as the caller may see it (yours in full).
#[utoipa::path(get, path = "/api/auth/users/{id}/", tag = "users", params(("id" = u64, Path, description = "The user")),
    responses(
        (status = 200, description = "The user as the caller may see them", body = s::User),
        (status = 404, description = "No such user", body = s::ErrorBody)))]
async fn user_detail(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let target = existing(&app, &id)?;
    let state = app.store.state();
    let user = state.user(target).ok_or(ApiError::NotFound(NO_USER))?;
    Ok(Json(render::user(user, Some(me))))
}

#[utoipa::path(patch, path = "/api/auth/users/{id}/", tag = "users", params(("id" = u64, Path, description = "The user")),
    request_body = s::ProfileUpdate,
    responses(
        (status = 200, description = "The caller after the change", body = s::User),
        (status = 403, description = "Not the caller", body = s::ErrorBody),
        (status = 404, description = "No such user", body = s::ErrorBody)))]
async fn patch_user(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    write_user(app, me, &id, &body, false).await
}

/// PUT needs `username`, as the original's serializer; still partial
/// otherwise.
#[utoipa::path(put, path = "/api/auth/users/{id}/", tag = "users", params(("id" = u64, Path, description = "The user")),
    request_body = s::ProfileUpdate,
    responses(
        (status = 200, description = "The caller after the change (`username` required)", body = s::User),
        (status = 403, description = "Not the caller", body = s::ErrorBody),
        (status = 404, description = "No such user", body = s::ErrorBody)))]
async fn put_user(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    write_user(app, me, &id, &body, true).await
}

/// Yourself only: another user's profile is 403, whatever the body.
async fn write_user(
    app: Arc<App>,
    me: UserId,
    id: &str,
    body: &Bytes,
    username_required: bool,
) -> ApiResult<Json<Value>> {
    if existing(&app, id)? != me {
        return Err(ApiError::Forbidden(
            "You do not have permission to perform this action.",
        ));
    }
    update(&app, me, body, username_required).await?;
    user_me(State(app), AuthUser(me)).await
}

/// The id of an existing user, or the contract's 404.
fn existing(app: &App, id: &str) -> ApiResult<UserId> {
    id.parse()
        .ok()
        .filter(|id| app.store.state().user(*id).is_some())
        .ok_or(ApiError::NotFound(NO_USER))
}

/// Validates the body and stores its changes: every field error together
/// (a taken username or phone number among them), nothing stored if any.
async fn update(app: &App, me: UserId, body: &Bytes, username_required: bool) -> ApiResult<()> {
    let fields = json_body(body)?;
    let changes = match profile_changes(&fields, username_required) {
        Ok(changes) => {
            let mut taken = FieldErrors::default();
            check_taken(app, me, &changes, &mut taken);
            if !taken.is_empty() {
                return Err(taken.into());
            }
            changes
        }
        Err(mut errors) => {
            // DRF checks uniqueness with the other field rules: report a
            // taken name or number with the rest.
            let valid = profile_changes(&strip(&fields, &errors), false).unwrap_or_default();
            check_taken(app, me, &valid, &mut errors);
            return Err(errors.into());
        }
    };
    // The state machine decides uniqueness for real (a race, or another
    // node, may have taken the name since).
    app.submit(Command::UpdateProfile {
        user_id: me,
        changes: Box::new(changes),
        at: now_micros(),
    })
    .await??;
    Ok(())
}

/// `fields` without the ones that have errors.
fn strip(fields: &crate::intake::Fields, errors: &FieldErrors) -> crate::intake::Fields {
    let mut rest = fields.clone();
    rest.retain(|key, _| !errors.0.contains_key(key));
    rest
}

/// Adds the contract's messages for a username or phone number another
/// user has.
fn check_taken(app: &App, me: UserId, changes: &ProfileChanges, errors: &mut FieldErrors) {
    let state = app.store.state();
    if let Some(name) = &changes.username {
        if state.username_taken(name, me) {
            errors.add("username", "A user with that username already exists.");
        }
    }
    if let Some(Nullable::Value(phone)) = &changes.phone_number {
        if state.phone_taken(phone, me) {
            errors.add(
                "phone_number",
                "A user with that phone number already exists.",
            );
        }
    }
}
