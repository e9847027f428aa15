//! The accounts' schemas: registration, login and tokens, profiles,
//! settings and their choices, devices.

use utoipa::ToSchema;

use super::{Settings, User};

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
