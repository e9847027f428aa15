//! One error type for the REST API, mapped to an HTTP status and the
//! original's DRF-shaped JSON body in one place.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use vato_eventlog::{Rejection, StoreError};

use crate::auth::AuthError;
use crate::intake;
use crate::sequencer::Unavailable;

#[derive(Debug)]
pub enum ApiError {
    /// 400 with a body in DRF's shape (`{"field": ["msg"]}` or `{"detail"}`).
    BadRequest(Value),
    /// 401: no `Authorization` header.
    NotAuthenticated,
    /// 401: a token that is malformed, expired, or of the wrong type.
    InvalidToken,
    /// 401 with a given body (a bad refresh token).
    Unauthorized(Value),
    Forbidden(&'static str),
    /// 403 with a detail naming someone (a refused group invitation).
    ForbiddenText(String),
    NotFound(&'static str),
    /// 404 with a given body (the custom views' `{"error": ...}` shape).
    NotFoundBody(Value),
    /// 503: the log cannot take writes now.
    Unavailable,
    /// 413: a body past a route's own limit (the avatar upload's); the
    /// answer closes the connection, as the rest is never read.
    PayloadTooLarge,
    /// 500: logged, never shown to the client.
    Internal(String),
    /// The same answer with `Connection: close`: the request's body was not
    /// read to its end, so the connection cannot carry another request and
    /// the client must not send one on it.
    Closing(Box<ApiError>),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn field(field: &str, message: &str) -> ApiError {
        ApiError::BadRequest(json!({ field: [message] }))
    }

    pub fn detail(message: &str) -> ApiError {
        ApiError::BadRequest(json!({ "detail": message }))
    }

    /// This answer, sent before the request's body was read to its end.
    pub fn closing(self) -> ApiError {
        ApiError::Closing(Box::new(self))
    }
}

pub fn token_not_valid_body(token_class: &str, token_type: &str) -> Value {
    json!({
        "detail": "Given token not valid for any token type",
        "code": "token_not_valid",
        "messages": [{
            "token_class": token_class,
            "token_type": token_type,
            "message": "Token is invalid or expired"
        }]
    })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            ApiError::BadRequest(body) => (StatusCode::BAD_REQUEST, body),
            ApiError::NotAuthenticated => {
                let body = json!({"detail": "Authentication credentials were not provided."});
                return (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Bearer realm=\"api\"")],
                    Json(body),
                )
                    .into_response();
            }
            ApiError::InvalidToken => {
                let body = token_not_valid_body("AccessToken", "access");
                return (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Bearer realm=\"api\"")],
                    Json(body),
                )
                    .into_response();
            }
            ApiError::Unauthorized(body) => (StatusCode::UNAUTHORIZED, body),
            ApiError::NotFoundBody(body) => (StatusCode::NOT_FOUND, body),
            ApiError::Forbidden(detail) => (StatusCode::FORBIDDEN, json!({ "detail": detail })),
            ApiError::ForbiddenText(detail) => (StatusCode::FORBIDDEN, json!({ "detail": detail })),
            ApiError::NotFound(detail) => (StatusCode::NOT_FOUND, json!({ "detail": detail })),
            ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"detail": "The message log is unavailable; try again."}),
            ),
            ApiError::PayloadTooLarge => return too_large(),
            ApiError::Closing(answer) => {
                let mut response = answer.into_response();
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return response;
            }
            ApiError::Internal(message) => {
                tracing::error!("internal error: {message}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"detail": "Internal server error."}),
                )
            }
        };
        (status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Closed | StoreError::Failed => ApiError::Unavailable,
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<Unavailable> for ApiError {
    fn from(e: Unavailable) -> ApiError {
        match e {
            Unavailable::Nats => ApiError::Unavailable,
            Unavailable::Store(e) => e.into(),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        ApiError::Internal(e.to_string())
    }
}

impl From<intake::Invalid> for ApiError {
    fn from(e: intake::Invalid) -> ApiError {
        crate::telemetry::refused_at_intake(e.field);
        match e.field {
            Some(field) => ApiError::field(field, &e.message),
            None => ApiError::detail(&e.message),
        }
    }
}

impl From<intake::profile::FieldErrors> for ApiError {
    fn from(e: intake::profile::FieldErrors) -> ApiError {
        ApiError::BadRequest(Value::Object(e.0))
    }
}

/// The default mapping of a state-machine rejection; handlers that owe the
/// contract a specific message map the cases they know first.
impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> ApiError {
        match r {
            Rejection::UnknownUser => ApiError::NotFound("User not found."),
            Rejection::UnknownConversation => {
                ApiError::NotFound("No Conversation matches the given query.")
            }
            Rejection::NotAMember => {
                ApiError::Forbidden("You are not a member of this conversation.")
            }
            Rejection::NotAnAdmin => ApiError::Forbidden("Only admins can do this."),
            Rejection::UsernameTaken => {
                ApiError::field("username", "A user with that username already exists.")
            }
            Rejection::PhoneTaken => ApiError::field(
                "phone_number",
                "A user with that phone number already exists.",
            ),
            Rejection::UnknownMessage => ApiError::NotFound("No Message matches the given query."),
            Rejection::NotYourMessage => {
                ApiError::Forbidden("You can only edit your own messages.")
            }
            Rejection::MessageDeleted => ApiError::detail("The message was deleted."),
            Rejection::AlreadyMember => ApiError::detail("Already a member."),
            Rejection::TokenRevoked => ApiError::detail("Invalid token."),
            refused @ Rejection::GroupInviteRefused { .. } => {
                ApiError::ForbiddenText(refused.to_string())
            }
            // The contacts routes answer these with the contract's bare
            // arrays (`api/contacts.rs`); this is the fallback.
            Rejection::ContactIsSelf => {
                ApiError::BadRequest(json!(["You cannot add yourself as a contact."]))
            }
            Rejection::ContactExists => ApiError::BadRequest(json!(["Contact already exists."])),
            Rejection::UnknownContact => ApiError::NotFound("No Contact matches the given query."),
            Rejection::Blocked => {
                ApiError::Forbidden("This user does not accept messages from you.")
            }
            Rejection::NotPinned => ApiError::NotFound("This message is not pinned."),
            Rejection::UnknownTarget => ApiError::NotFound("Conversation not found."),
            Rejection::OtpExpired => {
                ApiError::BadRequest(json!({ "error": "OTP expired or not found" }))
            }
            Rejection::UnknownCall => ApiError::NotFound("No Call matches the given query."),
            Rejection::NotAParticipant => {
                ApiError::Forbidden("You are not a participant of this call.")
            }
            Rejection::CallState(detail) => ApiError::detail(detail),
            Rejection::CallInProgress => {
                ApiError::detail("A call is already in progress in this conversation.")
            }
            Rejection::UnknownNotification => ApiError::NotFound("Not found."),
            Rejection::UnknownDevice => ApiError::NotFound("Not found."),
            Rejection::Invalid(reason) => match reason.field() {
                "non_field_errors" => ApiError::detail(&reason.to_string()),
                field => ApiError::field(field, &reason.to_string()),
            },
        }
    }
}

/// axum answers an over-limit body with a plain-text 413; give it the
/// API's JSON shape.
pub async fn json_413(response: Response) -> Response {
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return too_large();
    }
    response
}

/// Every 413: the body was not read past its limit, so the connection
/// closes after the answer, and says so (`Connection: close`).
fn too_large() -> Response {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        [(header::CONNECTION, "close")],
        Json(json!({"detail": "Request body too large."})),
    )
        .into_response()
}
