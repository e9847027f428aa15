//! Logout (issue 13), the original's two routes:
//!
//! * `POST /api/auth/logout/` (public) `{"refresh"}`: revokes that refresh
//!   token, as an event in the log, so every node and every restart refuses
//!   it from then on (`token/refresh/` answers 401 `token_not_valid`).
//!   Access tokens live until they expire, as in the original.
//! * `POST /api/auth/auth/logout/` (access token): the caller goes offline
//!   (`is_online` false, `last_seen_at` now), also as an event.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vato_eventlog::{Command, Rejection};

use super::body::json_body;
use super::extract::{AuthUser, MaybeAuthUser};
use super::schemas as s;
use crate::app::App;
use crate::auth::TokenType;
use crate::clock::now_micros;
use crate::error::{ApiError, ApiResult};

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(logout))
        .routes(routes!(go_offline))
}

const INVALID_TOKEN: &str = "Invalid token.";

/// No body, or no `refresh` in it, is a no-op 200 (as the original); a
/// token that is malformed, expired, an access token or revoked already is
/// a 400 `{"detail": "Invalid token."}`.
#[utoipa::path(post, path = "/api/auth/logout/", tag = "auth", security(()),
    request_body = s::LogoutRequest,
    responses(
        (status = 200, description = "The refresh token (if given) is revoked", body = s::Detail),
        (status = 400, description = "An invalid or already revoked token", body = s::ErrorBody)))]
async fn logout(
    State(app): State<Arc<App>>,
    _: MaybeAuthUser,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let body = json_body(&body)?;
    let token = match body.get("refresh") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(ApiError::detail(INVALID_TOKEN)),
    };
    if let Some(token) = token {
        let claims = app
            .jwt
            .claims(token, TokenType::Refresh)
            .ok_or_else(|| ApiError::detail(INVALID_TOKEN))?;
        let expires_at = i64::try_from(claims.exp)
            .unwrap_or(i64::MAX / 1_000_000)
            .saturating_mul(1_000_000);
        let outcome = app
            .submit(Command::RevokeRefreshToken {
                jti: claims.jti,
                user_id: claims.user_id,
                expires_at,
                at: now_micros(),
            })
            .await?;
        match outcome {
            Ok(_) => {}
            Err(Rejection::TokenRevoked | Rejection::UnknownUser) => {
                return Err(ApiError::detail(INVALID_TOKEN))
            }
            Err(other) => return Err(other.into()),
        }
    }
    Ok(Json(json!({"detail": "Successfully logged out."})))
}

/// The body is ignored, as in the original.
#[utoipa::path(post, path = "/api/auth/auth/logout/", tag = "auth",
    responses((status = 200, description = "The caller is shown offline", body = s::MessageText)))]
async fn go_offline(State(app): State<Arc<App>>, AuthUser(me): AuthUser) -> ApiResult<Json<Value>> {
    app.submit(Command::GoOffline {
        user_id: me,
        at: now_micros(),
    })
    .await??;
    Ok(Json(json!({"message": "Logged out successfully"})))
}
