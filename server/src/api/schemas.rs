//! The OpenAPI schemas of what the handlers read and write where no Rust
//! type carries it: request bodies (handlers read them field by field
//! through `intake`, to answer each field in DRF's shape) and the objects
//! rendered with `json!`. The objects with a serde type of their own
//! (user, settings, message, conversation) derive their schema in
//! `render::views`. CI's schemathesis run checks every answer against
//! these (`ci/schemathesis`).

// Documentation types: described, never built.
#![allow(dead_code)]

use std::borrow::Cow;

use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

mod accounts;

pub use crate::render::views::{
    ConversationView as Conversation, MessageView as Message, ReactionView as Reaction,
    SettingsView as Settings, UserView as User,
};
pub use accounts::*;

/// An error in DRF's shapes: `{"detail": "..."}`, `{"error": "..."}`,
/// field errors `{"field": ["message", ...]}`, or a bare list of messages.
pub struct ErrorBody;

impl PartialSchema for ErrorBody {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(ObjectBuilder::new().additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::FreeForm(true))))
            .item(ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::String)))
            .description(Some(
                "`{\"detail\": ...}`, `{\"error\": ...}`, `{\"<field>\": [messages]}`, or a list of messages",
            ))
            .into()
    }
}

impl ToSchema for ErrorBody {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ErrorBody")
    }
}

/// `{"status": "..."}`: what an action did.
#[derive(ToSchema)]
pub struct Status {
    status: String,
}

// ---- conversations ----

#[derive(ToSchema)]
pub struct CreateDirect {
    user_id: u64,
}

#[derive(ToSchema)]
pub struct CreateGroup {
    #[schema(min_length = 1, max_length = 255)]
    title: String,
    description: Option<String>,
    /// `group` (direct ones are made with `create-direct/`).
    conversation_type: Option<String>,
    is_public: Option<bool>,
    member_ids: Option<Vec<u64>>,
}

#[derive(ToSchema)]
pub struct ConversationUpdate {
    title: Option<String>,
    description: Option<String>,
    is_public: Option<bool>,
}

#[derive(ToSchema)]
pub struct MemberRequest {
    user_id: u64,
}

// ---- messages ----

#[derive(ToSchema)]
pub struct SendMessage {
    /// At most `--max-message-chars` (4096 by default).
    #[schema(min_length = 1, max_length = 4096)]
    content: Option<String>,
    /// `text` (default), `image`, `file`, ...
    message_type: Option<String>,
    /// The client's own id of this send: a retry with the same one answers
    /// 200 with the original message (exactly once).
    #[schema(min_length = 1, max_length = 64)]
    client_id: Option<String>,
    reply_to: Option<u64>,
    forwarded_from: Option<u64>,
}

/// A message with files: the JSON fields as form fields, and the files
/// in `uploaded_files`.
#[derive(ToSchema)]
pub struct SendWithFiles {
    content: Option<String>,
    client_id: Option<String>,
    reply_to: Option<u64>,
    #[schema(value_type = Vec<String>, format = Binary)]
    uploaded_files: Vec<String>,
}

#[derive(ToSchema)]
pub struct EditMessage {
    #[schema(min_length = 1, max_length = 4096)]
    content: String,
}

#[derive(ToSchema)]
pub struct ReactRequest {
    #[schema(min_length = 1, max_length = 16)]
    emoji: String,
}

#[derive(ToSchema)]
pub struct ForwardRequest {
    /// The conversation to forward to (a member of it).
    conversation_id: u64,
}

#[derive(ToSchema)]
pub struct Pin {
    id: u64,
    message: Option<Message<'static>>,
    pinned_by: Option<User<'static>>,
    pinned_at: String,
}

// ---- contacts ----

#[derive(ToSchema)]
pub struct Contact {
    id: u64,
    contact: Option<User<'static>>,
    nickname: String,
    is_blocked: bool,
    is_favorite: bool,
    added_at: String,
}

#[derive(ToSchema)]
pub struct ContactRequest {
    contact_id: u64,
    #[schema(max_length = 255)]
    nickname: Option<String>,
}

#[derive(ToSchema)]
pub struct ContactUpdate {
    nickname: Option<String>,
    is_blocked: Option<bool>,
    is_favorite: Option<bool>,
}

// ---- calls ----

#[derive(ToSchema)]
pub struct CallParticipant {
    id: u64,
    user: Option<User<'static>>,
    joined_at: Option<String>,
    left_at: Option<String>,
    is_answered: bool,
}

#[derive(ToSchema)]
pub struct Call {
    id: u64,
    conversation: u64,
    caller: Option<User<'static>>,
    /// `voice` or `video`.
    call_type: String,
    /// `ringing`, `ongoing`, `ended`, `missed`, `declined`.
    state: String,
    started_at: String,
    ended_at: Option<String>,
    /// Seconds from the first answer.
    duration: Option<u64>,
    participants: Vec<CallParticipant>,
}

#[derive(ToSchema)]
pub struct StartCall {
    conversation_id: u64,
    /// `voice` by default.
    call_type: Option<CallType>,
    participant_ids: Option<Vec<u64>>,
}

#[derive(ToSchema)]
pub struct CallUpdate {
    call_type: Option<CallType>,
}

#[derive(ToSchema)]
pub struct CallEnded {
    status: String,
    /// Seconds from the first answer.
    duration: u64,
}

// ---- notifications ----

#[derive(ToSchema)]
pub struct Notification {
    id: u64,
    user: u64,
    /// `message` or `call`.
    notification_type: String,
    title: String,
    message: String,
    is_read: bool,
    created_at: String,
    related_conversation: Option<u64>,
    related_message: Option<u64>,
    related_call: Option<u64>,
    related_user: Option<u64>,
}

// ---- small answers ----

/// `{"detail": "..."}` on success (logout).
#[derive(ToSchema)]
pub struct Detail {
    detail: String,
}

/// `{"message": "..."}`.
#[derive(ToSchema)]
pub struct MessageText {
    message: String,
}

#[derive(ToSchema)]
pub struct OtpAnswer {
    message: String,
    phone_number: String,
    /// Seconds.
    expires_in: u64,
    /// The code, only with `--dev`.
    #[schema(required = false)]
    otp: String,
}

/// The phone and Google logins' user: 10 keys of the profile.
#[derive(ToSchema)]
pub struct ExternalUser {
    id: u64,
    username: String,
    email: String,
    first_name: String,
    last_name: String,
    phone_number: Option<String>,
    avatar: Option<String>,
    bio: String,
    status_message: String,
    is_online: bool,
}

#[derive(ToSchema)]
pub struct TokenPair {
    refresh: String,
    access: String,
}

#[derive(ToSchema)]
pub struct ExternalLogin {
    message: String,
    user: ExternalUser,
    tokens: TokenPair,
    is_new_user: bool,
}

// ---- operations ----

/// `GET /api/`: the original's index.
#[derive(ToSchema)]
pub struct ApiIndex {
    message: String,
    version: String,
    endpoints: std::collections::BTreeMap<String, String>,
}

/// A check of `/readyz`.
#[derive(ToSchema)]
pub struct Check {
    ok: bool,
    detail: String,
}

/// `/readyz`: `ready` or `not_ready`, the failing checks named.
#[derive(ToSchema)]
pub struct Readiness {
    status: String,
    failing: Vec<String>,
    checks: std::collections::BTreeMap<String, Check>,
}
