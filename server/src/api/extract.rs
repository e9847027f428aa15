//! The caller of a REST request, as axum extractors: a valid access token
//! in `Authorization: Bearer`, whose user exists.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use vato_eventlog::UserId;

use crate::app::App;
use crate::auth::TokenType;
use crate::error::ApiError;

/// The authenticated caller of a REST request (`Authorization: Bearer`).
pub struct AuthUser(pub UserId);

impl FromRequestParts<Arc<App>> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or(ApiError::NotAuthenticated)?;
        let header = header.to_str().map_err(|_| ApiError::InvalidToken)?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or(ApiError::InvalidToken)?
            .trim();
        let user_id = app
            .jwt
            .verify(token, TokenType::Access)
            .ok_or(ApiError::InvalidToken)?;
        if app.store.state().user(user_id).is_none() {
            return Err(ApiError::InvalidToken);
        }
        Ok(AuthUser(user_id))
    }
}

/// An optional caller: public endpoints still refuse a *bad* token, as the
/// original does, but accept none.
pub struct MaybeAuthUser;

impl FromRequestParts<Arc<App>> for MaybeAuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        if parts
            .headers
            .contains_key(axum::http::header::AUTHORIZATION)
        {
            AuthUser::from_request_parts(parts, app).await?;
        }
        Ok(MaybeAuthUser)
    }
}
