//! Avatars (issue 13; contract API-rest.md §1.3): `POST`/`DELETE
//! /api/auth/profile/avatar/` and the same at `profile/me/avatar/` (the
//! path the Flutter client calls).
//!
//! An upload is one multipart file in field `avatar`, a JPEG, PNG, GIF or
//! WebP told by its bytes, at most `--max-avatar-bytes`. The body is read
//! as a stream with this route's own limits (the global `--max-body-bytes`
//! would cut a legal avatar off): the file is refused with a 400 field
//! error once it passes its limit (the rest of the form is read and
//! dropped first, so the client reads that answer), and the whole body
//! may be at most `--max-avatar-bytes` + `--max-body-bytes`. The whole
//! body is read before anything is stored, so a truncated one changes
//! nothing. Then the file goes to the media store (durable), then the
//! `AvatarChanged` event; the replaced file is removed once nothing
//! refers to it.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::Json;
use bytes::{Bytes, BytesMut};
use multer::Multipart;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vato_eventlog::{Command, UserId};

use super::extract::AuthUser;
use super::schemas as s;
use crate::app::App;
use crate::clock::now_micros;
use crate::error::{ApiError, ApiResult};
use crate::media;
use crate::render;

const NO_FILE: &str = "No avatar file provided";
const NOT_AN_IMAGE: &str =
    "Upload a valid image. The file you uploaded was either not an image or a corrupted image.";

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(upload, remove))
        .routes(routes!(upload_me, remove_me))
}

/// 200 with the caller's profile object, its `avatar` and `avatar_url`
/// the new file's absolute URL.
#[utoipa::path(post, path = "/api/auth/profile/avatar/", tag = "users",
    request_body(content = s::AvatarUpload, content_type = "multipart/form-data"),
    responses((status = 200, description = "The profile with the new photo", body = s::Profile)))]
async fn upload(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    request: Request,
) -> ApiResult<Json<Value>> {
    let (bytes, ext) = read_avatar(&app, request).await?;
    let upload = app.media.put(bytes, ext).await.map_err(|e| {
        tracing::error!("{e}");
        ApiError::Unavailable
    })?;
    set_avatar(&app, me, Some(upload.key.clone())).await?;
    drop(upload);
    let state = app.store.state();
    let user = state.user(me).ok_or(ApiError::InvalidToken)?;
    Ok(Json(render::profile(user)))
}

/// 200 `{"message": "Avatar deleted successfully"}`, with or without an
/// avatar before (as the original).
#[utoipa::path(delete, path = "/api/auth/profile/avatar/", tag = "users",
    responses((status = 200, description = "The photo is removed", body = s::MessageText)))]
async fn remove(State(app): State<Arc<App>>, AuthUser(me): AuthUser) -> ApiResult<Json<Value>> {
    set_avatar(&app, me, None).await?;
    Ok(Json(json!({"message": "Avatar deleted successfully"})))
}

/// Records the new avatar; the one it replaces is collected once nothing
/// refers to it.
#[utoipa::path(post, path = "/api/auth/profile/me/avatar/", tag = "users",
    request_body(content = s::AvatarUpload, content_type = "multipart/form-data"),
    responses((status = 200, description = "The profile with the new photo", body = s::Profile)))]
async fn upload_me(app: State<Arc<App>>, me: AuthUser, request: Request) -> ApiResult<Json<Value>> {
    upload(app, me, request).await
}

#[utoipa::path(delete, path = "/api/auth/profile/me/avatar/", tag = "users",
    responses((status = 200, description = "The photo is removed", body = s::MessageText)))]
async fn remove_me(app: State<Arc<App>>, me: AuthUser) -> ApiResult<Json<Value>> {
    remove(app, me).await
}

async fn set_avatar(app: &App, me: UserId, avatar: Option<String>) -> ApiResult<()> {
    let old = app.store.state().user(me).and_then(|u| u.avatar.clone());
    app.submit(Command::SetAvatar {
        user_id: me,
        avatar: avatar.clone(),
        at: now_micros(),
    })
    .await??;
    if let Some(old) = old.filter(|old| Some(old) != avatar.as_ref()) {
        app.media.collect_later(old);
    }
    Ok(())
}

/// The one `avatar` file of a multipart body, with its type's extension;
/// every refusal is a 400 (413 past the body's own limit).
async fn read_avatar(app: &App, request: Request) -> ApiResult<(Bytes, &'static str)> {
    let max_file = app.config.max_avatar_bytes;
    let whole = (max_file as u64).saturating_add(app.config.max_body_bytes as u64);
    let mut multipart = super::body::multipart_stream(request, whole).ok_or_else(no_file)?;
    let bytes = match read_file(&mut multipart, max_file).await {
        Ok(bytes) => bytes.ok_or_else(no_file)?,
        Err(refusal) => return Err(super::body::refuse(&mut multipart, refusal).await),
    };
    let ext =
        media::image_extension(&bytes).ok_or_else(|| ApiError::field("avatar", NOT_AN_IMAGE))?;
    Ok((bytes, ext))
}

fn no_file() -> ApiError {
    ApiError::BadRequest(json!({ "error": NO_FILE }))
}

/// Reads the form to its end; the `avatar` file's bytes if it has one.
async fn read_file(
    multipart: &mut Multipart<'static>,
    max_file: usize,
) -> ApiResult<Option<Bytes>> {
    let mut avatar: Option<Bytes> = None;
    while let Some(mut field) = multipart.next_field().await.map_err(parse_error)? {
        let is_avatar = field.name() == Some("avatar") && field.file_name().is_some();
        if is_avatar && avatar.is_some() {
            return Err(ApiError::field("avatar", "Upload a single file."));
        }
        let mut data = BytesMut::new();
        while let Some(chunk) = field.chunk().await.map_err(parse_error)? {
            if is_avatar {
                if data.len() + chunk.len() > max_file {
                    return Err(ApiError::field(
                        "avatar",
                        &format!("Ensure this file is no larger than {max_file} bytes."),
                    ));
                }
                data.extend_from_slice(&chunk);
            }
        }
        if is_avatar {
            avatar = Some(data.freeze());
        }
    }
    Ok(avatar)
}

/// A body that is not a whole multipart form: DRF's parse error (413 when
/// it passed the route's limit).
fn parse_error(e: multer::Error) -> ApiError {
    match e {
        multer::Error::StreamSizeExceeded { .. } => ApiError::PayloadTooLarge,
        e => ApiError::detail(&format!("Multipart form parse error - {e}")),
    }
}
