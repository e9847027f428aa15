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
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use vato_eventlog::profile::{Nullable, ProfileChanges};
use vato_eventlog::{Command, UserId};

use super::body::json_body;
use super::extract::AuthUser;
use crate::app::App;
use crate::clock::now_micros;
use crate::error::{ApiError, ApiResult};
use crate::intake::profile::{profile_changes, FieldErrors};
use crate::render;

const NO_USER: &str = "No User matches the given query.";

pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route(
            "/api/auth/profile/me/",
            get(profile_me)
                .patch(write_profile_me)
                .put(write_profile_me),
        )
        .route("/api/auth/profile/{id}/", get(public_profile))
        .route("/api/auth/user/", get(user_me).patch(write_user_me))
        .route("/api/auth/users/me/", get(user_me))
        .route(
            "/api/auth/users/{id}/",
            get(user_detail).patch(patch_user).put(put_user),
        )
}

async fn profile_me(State(app): State<Arc<App>>, AuthUser(me): AuthUser) -> ApiResult<Json<Value>> {
    let state = app.store.state();
    let user = state.user(me).ok_or(ApiError::InvalidToken)?;
    Ok(Json(render::profile(user)))
}

async fn write_profile_me(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    update(&app, me, &body, false).await?;
    profile_me(State(app), AuthUser(me)).await
}

async fn user_me(State(app): State<Arc<App>>, AuthUser(me): AuthUser) -> ApiResult<Json<Value>> {
    let state = app.store.state();
    let user = state.user(me).ok_or(ApiError::InvalidToken)?;
    Ok(Json(render::user(user, Some(me))))
}

async fn write_user_me(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    update(&app, me, &body, false).await?;
    user_me(State(app), AuthUser(me)).await
}

/// Anyone's privacy-filtered profile; your own too.
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
