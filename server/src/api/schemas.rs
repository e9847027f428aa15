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

pub use crate::render::views::{
    ConversationView as Conversation, MessageView as Message, ReactionView as Reaction,
    SettingsView as Settings, UserView as User,
};

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

// ---- accounts ----

#[derive(ToSchema)]
pub struct RegisterRequest {
    /// 1–150 letters, digits and `@.+-_`.
    #[schema(pattern = r"^[\w.@+-]{1,150}$")]
    username: String,
    /// At least 8 characters, Django's password validators.
    #[schema(min_length = 8, max_length = 128)]
    password: String,
    /// The same again.
    #[schema(min_length = 8, max_length = 128)]
    password2: String,
    #[schema(format = Email, max_length = 254)]
    email: Option<String>,
    #[schema(max_length = 255)]
    display_name: Option<String>,
    /// E.164, e.g. `+14155550100`.
    #[schema(pattern = r"^\+[1-9][0-9]{7,14}$")]
    phone_number: Option<String>,
}

#[derive(ToSchema)]
pub struct LoginRequest {
    /// `username` or `phone_number`.
    #[schema(min_length = 1, max_length = 150)]
    username: Option<String>,
    #[schema(pattern = r"^\+[1-9][0-9]{7,14}$")]
    phone_number: Option<String>,
    #[schema(min_length = 1)]
    password: String,
}

/// The tokens and the user they belong to.
#[derive(ToSchema)]
pub struct Tokens {
    user: User<'static>,
    access: String,
    refresh: String,
}

#[derive(ToSchema)]
pub struct RefreshRequest {
    refresh: String,
}

#[derive(ToSchema)]
pub struct Access {
    access: String,
}

#[derive(ToSchema)]
pub struct LogoutRequest {
    /// The refresh token to revoke.
    refresh: Option<String>,
}

#[derive(ToSchema)]
pub struct OtpRequest {
    #[schema(pattern = r"^\+[1-9][0-9]{7,14}$")]
    phone_number: String,
}

#[derive(ToSchema)]
pub struct OtpSent {
    message: String,
    /// Only with `--dev`.
    #[schema(required = false)]
    otp: Option<String>,
}

#[derive(ToSchema)]
pub struct OtpVerify {
    #[schema(pattern = r"^\+[1-9][0-9]{7,14}$")]
    phone_number: String,
    /// The code sent by SMS (digits, as a string or a number).
    #[schema(pattern = r"^[0-9]{6}$")]
    otp: String,
    username: Option<String>,
    display_name: Option<String>,
}

#[derive(ToSchema)]
pub struct GoogleLogin {
    /// A Google ID token (RS256).
    token: String,
}

/// The profile object: the user's own view, with `avatar_url`,
/// `date_joined`, `first_name` and `last_name`.
#[derive(ToSchema)]
pub struct Profile {
    id: u64,
    username: String,
    email: String,
    display_name: String,
    phone_number: Option<String>,
    avatar: Option<String>,
    avatar_url: Option<String>,
    status_message: String,
    bio: String,
    date_of_birth: Option<String>,
    country: String,
    city: String,
    website: String,
    show_phone_number: bool,
    show_last_seen: bool,
    show_profile_photo: bool,
    allow_calls: bool,
    allow_group_invite: bool,
    is_online: bool,
    last_seen_at: Option<String>,
    date_joined: String,
    settings: Option<Settings<'static>>,
    first_name: String,
    last_name: String,
}

/// The writable fields of a profile or user (all optional: a partial
/// update).
#[derive(ToSchema)]
pub struct ProfileUpdate {
    /// Required by `PUT /api/auth/users/{id}/`.
    #[schema(pattern = r"^[\w.@+-]{1,150}$")]
    username: Option<String>,
    #[schema(max_length = 255)]
    display_name: Option<String>,
    #[schema(format = Email, max_length = 254)]
    email: Option<String>,
    #[schema(max_length = 150)]
    first_name: Option<String>,
    #[schema(max_length = 150)]
    last_name: Option<String>,
    #[schema(max_length = 255)]
    status_message: Option<String>,
    #[schema(max_length = 500)]
    bio: Option<String>,
    #[schema(format = Date)]
    date_of_birth: Option<String>,
    #[schema(max_length = 100)]
    country: Option<String>,
    #[schema(max_length = 100)]
    city: Option<String>,
    #[schema(max_length = 500)]
    website: Option<String>,
    #[schema(pattern = r"^\+[1-9][0-9]{7,14}$")]
    phone_number: Option<String>,
    show_phone_number: Option<bool>,
    show_last_seen: Option<bool>,
    show_profile_photo: Option<bool>,
    allow_calls: Option<bool>,
    allow_group_invite: Option<bool>,
}

/// Someone else's profile: the keys their privacy settings hide are
/// absent.
#[derive(ToSchema)]
pub struct PublicProfile {
    id: u64,
    username: String,
    display_name: String,
    status_message: String,
    bio: String,
    #[schema(required = false)]
    avatar: Option<String>,
    #[schema(required = false)]
    phone_number: Option<String>,
    #[schema(required = false)]
    is_online: bool,
    #[schema(required = false)]
    last_seen_at: Option<String>,
}

/// The writable settings (all optional).
#[derive(ToSchema)]
pub struct SettingsUpdate {
    enable_notifications: Option<bool>,
    notification_sound: Option<bool>,
    message_preview: Option<bool>,
    enter_to_send: Option<bool>,
    auto_download_photos: Option<bool>,
    auto_download_videos: Option<bool>,
    auto_download_files: Option<bool>,
    two_factor_enabled: Option<bool>,
    show_typing_indicator: Option<bool>,
    show_read_receipts: Option<bool>,
    theme: Option<Theme>,
    font_size: Option<FontSize>,
    language: Option<Language>,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Theme {
    Light,
    Dark,
    Auto,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum FontSize {
    Small,
    Medium,
    Large,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Language {
    En,
    Es,
    Fr,
    De,
    Ru,
    Ar,
    Zh,
}

/// A device's platform.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Platform {
    Android,
    Ios,
    Web,
}

/// A call's type.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum CallType {
    Voice,
    Video,
}

/// A photo upload: `avatar` (or `file`), an image.
#[derive(ToSchema)]
pub struct AvatarUpload {
    #[schema(format = Binary, content_media_type = "application/octet-stream")]
    avatar: String,
}

#[derive(ToSchema)]
pub struct DeviceRequest {
    /// At most 4096 characters, no spaces.
    #[schema(pattern = r"^\S{1,4096}$")]
    token: String,
    platform: Platform,
}

#[derive(ToSchema)]
pub struct Device {
    token: String,
    platform: String,
    created_at: String,
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
