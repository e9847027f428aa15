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
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use vato_eventlog::{Command, Rejection};

use super::body::json_body;
use super::extract::{AuthUser, MaybeAuthUser};
use crate::app::App;
use crate::auth::TokenType;
use crate::clock::now_micros;
use crate::error::{ApiError, ApiResult};

pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/api/auth/logout/", post(logout))
        .route("/api/auth/auth/logout/", post(go_offline))
}

const INVALID_TOKEN: &str = "Invalid token.";

/// No body, or no `refresh` in it, is a no-op 200 (as the original); a
/// token that is malformed, expired, an access token or revoked already is
/// a 400 `{"detail": "Invalid token."}`.
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
async fn go_offline(State(app): State<Arc<App>>, AuthUser(me): AuthUser) -> ApiResult<Json<Value>> {
    app.submit(Command::GoOffline {
        user_id: me,
        at: now_micros(),
    })
    .await??;
    Ok(Json(json!({"message": "Logged out successfully"})))
}
