//! Logins without a password (issue 13; contract API-rest §3): a code
//! sent by SMS (`phone/request-otp/`, `phone/verify-otp/`) and a Google ID
//! token (`google/`). Both answer the contract's
//! `{"message", "user", "tokens", "is_new_user"}`; who is logged in (or
//! registered) is decided by the state machine (`external_logins.rs`).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vato_eventlog::{Command, ExternalIdentity, Reply};

use super::auth::throttled;
use super::body::{json_body, opt_str};
use super::schemas as s;
use crate::app::App;
use crate::auth::TokenType;
use crate::clock::now_micros;
use crate::error::{ApiError, ApiResult};
use crate::google::TokenError;
use crate::otp::{draw_code, OTP_TTL_SECS};
use crate::{intake, render};

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(request_otp))
        .routes(routes!(verify_otp))
        .routes(routes!(google))
}

/// Longest first or last name (Django's `User` fields).
const MAX_NAME_CHARS: usize = 150;

/// 503 with a `detail`: a login route the operator has not set up.
fn not_configured(detail: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "detail": detail })),
    )
        .into_response()
}

/// The body's `phone_number` in E.164: the contract's 400s when it is
/// missing or not a number in international format.
fn phone(body: &Map<String, Value>) -> ApiResult<String> {
    let raw = opt_str(body, "phone_number")?.unwrap_or_default();
    if raw.trim().is_empty() {
        return Err(ApiError::field("phone_number", "This field is required."));
    }
    let error = |message: &str| ApiError::BadRequest(json!({ "error": message }));
    if !raw.trim_start().starts_with('+') {
        return Err(error("Phone number must start with + and country code"));
    }
    match intake::phone_number(body) {
        Ok(Some(number)) => Ok(number),
        _ => Err(error("Invalid phone number")),
    }
}

/// Sends a code to the number: through `--sms-webhook`, and in the answer
/// too with `--dev`/`--demo` (as the original's DEBUG). Neither: 503.
#[utoipa::path(post, path = "/api/auth/phone/request-otp/", tag = "auth", security(()),
    request_body = s::OtpRequest,
    responses(
        (status = 200, description = "A code was sent (and shown, with `--dev`)", body = s::OtpAnswer),
        (status = 502, description = "The SMS webhook failed", body = s::ErrorBody),
        (status = 503, description = "Phone login is not set up", body = s::ErrorBody)))]
async fn request_otp(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> ApiResult<Response> {
    let body = json_body(&body)?;
    let phone = phone(&body)?;
    let dev = app.config.dev_mode();
    if app.sms.is_none() && !dev {
        return Ok(not_configured("SMS delivery is not configured."));
    }
    if let Some(throttle) = &app.otp_throttle {
        if let Err(wait) = throttle.check(&phone, peer.ip()) {
            return Ok(throttled(wait));
        }
    }
    let code = draw_code();
    let at = now_micros();
    app.submit(Command::IssueOtp {
        phone: phone.clone(),
        code_hash: app.otp_key.hash(&phone, &code),
        expires_at: at + OTP_TTL_SECS as i64 * 1_000_000,
        at,
    })
    .await??;
    let mut answer = json!({
        "message": "OTP sent successfully",
        "phone_number": phone,
        "expires_in": OTP_TTL_SECS,
    });
    if let Some(sms) = &app.sms {
        if let Err(details) = sms.send(&phone, &code).await {
            tracing::warn!("SMS webhook failed: {details}");
            let body = json!({ "error": "Failed to send OTP", "details": details });
            return Ok((StatusCode::BAD_GATEWAY, Json(body)).into_response());
        }
    }
    if dev {
        if app.sms.is_none() {
            answer["message"] = json!("OTP generated (DEV MODE)");
        }
        answer["otp"] = json!(code);
    }
    Ok(Json(answer).into_response())
}

/// A code as the original's `CharField(max_length=6)` reads it: a string
/// or a number, at most 6 characters.
fn code(body: &Map<String, Value>) -> ApiResult<String> {
    let code = match body.get("otp") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.trim().to_string(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err(ApiError::field("otp", "Not a valid string.")),
    };
    if code.is_empty() {
        return Err(ApiError::field("otp", "This field is required."));
    }
    if code.chars().count() > 6 {
        return Err(ApiError::field(
            "otp",
            "Ensure this field has no more than 6 characters.",
        ));
    }
    Ok(code)
}

/// An optional name field of at most 150 characters.
fn name(body: &Map<String, Value>, field: &'static str) -> ApiResult<String> {
    let value = opt_str(body, field)?.unwrap_or_default();
    if value.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::field(
            field,
            &format!("Ensure this field has no more than {MAX_NAME_CHARS} characters."),
        ));
    }
    Ok(value.trim().to_string())
}

/// Logs in (registering a new number) with the code sent to it. A wrong
/// code counts against the code's 5 tries; the fifth burns it.
#[utoipa::path(post, path = "/api/auth/phone/verify-otp/", tag = "auth", security(()),
    request_body = s::OtpVerify,
    responses(
        (status = 200, description = "Logged in (registered at the first login)", body = s::ExternalLogin),
        (status = 400, description = "A wrong or expired code, or field errors", body = s::ErrorBody)))]
async fn verify_otp(State(app): State<Arc<App>>, body: Bytes) -> ApiResult<Response> {
    let body = json_body(&body)?;
    let phone = phone(&body)?;
    let code = code(&body)?;
    let first_name = name(&body, "first_name")?;
    let last_name = name(&body, "last_name")?;
    let applied = app
        .submit(Command::VerifyOtp {
            code_hash: app.otp_key.hash(&phone, &code),
            phone,
            first_name,
            last_name,
            at: now_micros(),
        })
        .await??;
    match applied.reply {
        Reply::Login { user_id, created } => {
            Ok(Json(login_answer(&app, user_id, created)?).into_response())
        }
        Reply::WrongCode => Err(ApiError::BadRequest(json!({ "error": "Invalid OTP" }))),
        other => Err(ApiError::Internal(format!("verify-otp replied {other:?}"))),
    }
}

/// Logs in the user of a Google account, registering one at its first
/// login. Users are matched by Google's `sub`, never by e-mail: an
/// account registered here with someone's address (never verified) is
/// not handed to whoever signs in with that address at Google, nor the
/// other way round.
#[utoipa::path(post, path = "/api/auth/google/", tag = "auth", security(()),
    request_body = s::GoogleLogin,
    responses(
        (status = 200, description = "Logged in (registered at the first login)", body = s::ExternalLogin),
        (status = 400, description = "No token, or an e-mail Google has not verified", body = s::ErrorBody),
        (status = 401, description = "A token Google did not sign for this client", body = s::ErrorBody),
        (status = 503, description = "Google login is not set up, or its keys cannot be fetched", body = s::ErrorBody)))]
async fn google(State(app): State<Arc<App>>, body: Bytes) -> ApiResult<Response> {
    let body = json_body(&body)?;
    let token = opt_str(&body, "token")?.unwrap_or_default();
    if token.trim().is_empty() {
        return Err(ApiError::field("token", "This field is required."));
    }
    let Some(verifier) = &app.google else {
        return Ok(not_configured("Google login is not configured."));
    };
    let identity = match verifier.verify(token.trim()).await {
        Ok(identity) => identity,
        Err(TokenError::Invalid(details)) => {
            return Err(ApiError::Unauthorized(
                json!({ "error": "Invalid Google token", "details": details }),
            ));
        }
        Err(keys @ TokenError::Keys(_)) => {
            tracing::warn!("{keys}");
            return Ok(not_configured(&keys.to_string()));
        }
    };
    if !identity.email_verified.is_true() {
        return Err(ApiError::BadRequest(
            json!({ "error": "Email not verified with Google" }),
        ));
    }
    let clip = |s: &str| s.trim().chars().take(MAX_NAME_CHARS).collect::<String>();
    let applied = app
        .submit(Command::ExternalLogin {
            identity: Box::new(ExternalIdentity {
                provider: "google".into(),
                username: google_username(&identity.email, &identity.sub),
                subject: identity.sub,
                email: identity.email.chars().take(254).collect(),
                first_name: clip(&identity.given_name),
                last_name: clip(&identity.family_name),
            }),
            at: now_micros(),
        })
        .await??;
    let Reply::Login { user_id, created } = applied.reply else {
        return Err(ApiError::Internal("google login replied no user".into()));
    };
    Ok(Json(login_answer(&app, user_id, created)?).into_response())
}

/// The original's name for a new Google user, `<local part>_<first 6 of
/// sub>`, keeping only the characters a username may have.
fn google_username(email: &str, sub: &str) -> String {
    let keep = |c: &char| c.is_alphanumeric() || "@.+-_".contains(*c);
    let local: String = email
        .split('@')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(keep)
        .take(100)
        .collect();
    let sub: String = sub.chars().filter(keep).take(6).collect();
    let local = if local.is_empty() { "google" } else { &local };
    format!("{local}_{sub}")
}

/// The contract's answer: `U` (its 10 keys, the avatar absolute as in
/// every other user object), the tokens and whether the user is new.
fn login_answer(app: &App, user_id: u64, created: bool) -> ApiResult<Value> {
    let state = app.store.state();
    let user = state
        .user(user_id)
        .ok_or_else(|| ApiError::Internal("user vanished".into()))?;
    let profile = render::profile(user);
    let mut u = Map::new();
    for key in [
        "id",
        "username",
        "email",
        "first_name",
        "last_name",
        "phone_number",
        "avatar",
        "bio",
        "status_message",
        "is_online",
    ] {
        u.insert(key.into(), profile[key].clone());
    }
    let message = if created {
        "Account created successfully"
    } else {
        "Login successful"
    };
    Ok(json!({
        "message": message,
        "user": u,
        "tokens": {
            "refresh": app.jwt.issue(user_id, TokenType::Refresh)?,
            "access": app.jwt.issue(user_id, TokenType::Access)?,
        },
        "is_new_user": created,
    }))
}

#[cfg(test)]
mod tests {
    use super::google_username;

    #[test]
    fn google_usernames_are_valid_usernames() {
        assert_eq!(
            google_username("ana.lima@example.com", "1098765432"),
            "ana.lima_109876"
        );
        assert_eq!(google_username("", "42"), "google_42");
        assert_eq!(google_username("a b/c@x", "s!u#b123"), "abc_sub123");
    }
}
