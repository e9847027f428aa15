//! `/api/auth/`: register, login, token refresh. (Profiles: `profile.rs`;
//! settings: `settings.rs`.)

use std::sync::Arc;

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vato_eventlog::{Command, Rejection, Reply};

use super::body::{json_body, opt_str};
use super::extract::MaybeAuthUser;
use super::schemas as s;
use crate::accounts::password_problems;
use crate::app::App;
use crate::auth::{hash_password, verify_password, TokenType};
use crate::clock::now_micros;
use crate::error::{token_not_valid_body, ApiError, ApiResult};
use crate::login_throttle::account_key;
use crate::{intake, render};

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
}

/// Django's username rule: 1–150 characters of letters, digits and @.+-_.
fn valid_username(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= 150
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || "@.+-_".contains(c))
}

/// Registers an account: field rules, then Django's password validators,
/// all behind the per-address `--register-rate`.
#[utoipa::path(post, path = "/api/auth/register/", tag = "auth", security(()),
    request_body = s::RegisterRequest,
    responses(
        (status = 201, description = "The new user and their tokens", body = s::Tokens),
        (status = 400, description = "Field errors", body = s::ErrorBody)))]
async fn register(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    _: MaybeAuthUser,
    body: Bytes,
) -> ApiResult<Response> {
    if let Some(throttle) = &app.register_throttle {
        if let Err(wait) = throttle.check(peer.ip()) {
            return Ok(throttled(wait));
        }
    }
    let body = json_body(&body)?;
    let mut errors = Map::new();
    let username = opt_str(&body, "username")?.unwrap_or_default();
    let password = opt_str(&body, "password")?.unwrap_or_default();
    let password2 = opt_str(&body, "password2")?.unwrap_or_default();
    let email = opt_str(&body, "email")?.unwrap_or_default();
    let display_name = opt_str(&body, "display_name")?.unwrap_or_default();
    let phone_number = intake::phone_number(&body).unwrap_or_else(|invalid| {
        let field = invalid.field.unwrap_or("phone_number");
        errors.insert(field.into(), json!([invalid.message]));
        None
    });
    if username.is_empty() {
        errors.insert("username".into(), json!(["This field is required."]));
    } else if !valid_username(&username) {
        errors.insert(
            "username".into(),
            json!(["Enter a valid username. This value may contain only letters, numbers, and @/./+/-/_ characters."]),
        );
    }
    for (field, value) in [("password", &password), ("password2", &password2)] {
        if value.is_empty() {
            errors.insert(field.into(), json!(["This field is required."]));
        } else if value.chars().count() < 8 {
            errors.insert(
                field.into(),
                json!(["Ensure this field has at least 8 characters."]),
            );
        }
    }
    if errors.is_empty() && password != password2 {
        errors.insert("password2".into(), json!(["Passwords do not match."]));
    }
    if display_name.chars().count() > 150 || email.chars().count() > 254 {
        errors.insert("non_field_errors".into(), json!(["A field is too long."]));
    }
    if !errors.is_empty() {
        return Err(ApiError::BadRequest(Value::Object(errors)));
    }
    // Cheap early answer; the state machine decides for real.
    if app.store.state().user_by_name(&username).is_some() {
        return Err(Rejection::UsernameTaken.into());
    }
    let attributes = [
        ("username", username.as_str()),
        ("display name", display_name.as_str()),
        ("email address", email.as_str()),
    ];
    let problems = password_problems(&password, &attributes);
    if !problems.is_empty() {
        return Err(ApiError::BadRequest(json!({ "password": problems })));
    }
    let password_hash = hash_password(password).await?;
    let applied = app
        .submit(Command::Register {
            username,
            password_hash,
            email,
            display_name,
            phone_number,
            at: now_micros(),
        })
        .await??;
    let Reply::User(user_id) = applied.reply else {
        return Err(ApiError::Internal("register did not return a user".into()));
    };
    let body = token_response(&app, user_id)?;
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// 429 in DRF's throttle shape, with `Retry-After` in whole seconds.
pub(super) fn throttled(wait: std::time::Duration) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let seconds = seconds.max(1);
    let detail = format!("Request was throttled. Expected available in {seconds} seconds.");
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, seconds.to_string())],
        Json(json!({ "detail": detail })),
    )
        .into_response()
}

fn token_response(app: &App, user_id: u64) -> ApiResult<Value> {
    let state = app.store.state();
    let user = state
        .user(user_id)
        .ok_or_else(|| ApiError::Internal("user vanished".into()))?;
    Ok(json!({
        "user": render::user(user, Some(user_id)),
        "access": app.jwt.issue(user_id, TokenType::Access)?,
        "refresh": app.jwt.issue(user_id, TokenType::Refresh)?,
    }))
}

/// Logs in by username or phone number. Failures are charged to the
/// client address and the account (`login_throttle`); a throttled attempt
/// gets 429 before its password is looked at.
#[utoipa::path(post, path = "/api/auth/login/", tag = "auth", security(()),
    request_body = s::LoginRequest,
    responses(
        (status = 200, description = "The user and their tokens", body = s::Tokens),
        (status = 400, description = "Missing fields, or wrong credentials (`non_field_errors`, as the contract)", body = s::ErrorBody),
        (status = 429, description = "Too many failed logins from this address or for this account", body = s::ErrorBody)))]
async fn login(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    _: MaybeAuthUser,
    body: Bytes,
) -> ApiResult<Response> {
    let body = json_body(&body)?;
    let username = opt_str(&body, "username")?.filter(|s| !s.is_empty());
    let phone = opt_str(&body, "phone_number")?.filter(|s| !s.is_empty());
    let password = opt_str(&body, "password")?.filter(|s| !s.is_empty());
    let Some(password) = password else {
        return Err(ApiError::field("password", "This field is required."));
    };
    let account = account_key(username.as_deref(), phone.as_deref());
    if let Some(throttle) = &app.login_throttle {
        if let Err(wait) = throttle.admit(peer.ip(), account.as_deref()) {
            return Ok(throttled(wait));
        }
    }
    let candidate = {
        let state = app.store.state();
        let user = match (&username, &phone) {
            (Some(name), _) => state.user_by_name(name),
            (None, Some(phone)) => state.user_by_phone(phone),
            (None, None) => {
                return Err(ApiError::field(
                    "non_field_errors",
                    "Username or phone number is required.",
                ));
            }
        };
        user.map(|u| (u.id, u.password_hash.clone()))
    };
    let (user_id, hash) = candidate.unzip();
    if !verify_password(password, hash).await {
        if let Some(throttle) = &app.login_throttle {
            throttle.failed(peer.ip(), account.as_deref());
        }
        return Err(ApiError::field(
            "non_field_errors",
            "Unable to log in with provided credentials.",
        ));
    }
    let user_id = user_id.ok_or_else(|| ApiError::Internal("verified without a user".into()))?;
    // `is_online`/`last_seen_at` are a courtesy: if the sequencer is away
    // (cluster mode, NATS down) the login still succeeds.
    match app
        .submit(Command::RecordLogin {
            user_id,
            at: now_micros(),
        })
        .await
    {
        Ok(outcome) => {
            outcome?;
        }
        Err(e) => match ApiError::from(e) {
            ApiError::Unavailable => {
                tracing::warn!(user_id, "login not recorded: sequencer unavailable")
            }
            other => return Err(other),
        },
    }
    Ok(Json(token_response(&app, user_id)?).into_response())
}

/// A bad refresh token is a 401 here, not the original's 500; so is one
/// revoked by logout (the original's blacklisted token gave a 500 too).
#[utoipa::path(post, path = "/api/auth/token/refresh/", tag = "auth", security(()),
    request_body = s::RefreshRequest,
    responses(
        (status = 200, description = "A new access token", body = s::Access),
        (status = 401, description = "A refresh token that is invalid, expired or revoked", body = s::ErrorBody)))]
async fn refresh(State(app): State<Arc<App>>, body: Bytes) -> ApiResult<Json<Value>> {
    let body = json_body(&body)?;
    let Some(token) = opt_str(&body, "refresh")?.filter(|s| !s.is_empty()) else {
        return Err(ApiError::detail("Refresh token required."));
    };
    let user_id = app
        .jwt
        .claims(&token, TokenType::Refresh)
        .filter(|claims| {
            let state = app.store.state();
            state.user(claims.user_id).is_some() && !state.is_revoked(&claims.jti)
        })
        .map(|claims| claims.user_id);
    match user_id {
        Some(user_id) => Ok(Json(
            json!({ "access": app.jwt.issue(user_id, TokenType::Access)? }),
        )),
        None => Err(ApiError::Unauthorized(token_not_valid_body(
            "RefreshToken",
            "refresh",
        ))),
    }
}
