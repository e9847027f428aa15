//! The keys of the contract's JSON objects, in the server's order: what a
//! client may rely on being present (tests assert the exact sets).

/// An attachment object's keys (contract API-rest.md §5).
pub const ATTACHMENT_KEYS: [&str; 6] = [
    "id",
    "file",
    "file_name",
    "file_size",
    "mime_type",
    "download_url",
];

/// The message object's keys: the contract's 15, then Vato's `seq` and
/// `client_id`.
pub const MESSAGE_KEYS: [&str; 17] = [
    "id",
    "conversation",
    "sender",
    "message_type",
    "content",
    "created_at",
    "edited_at",
    "reply_to",
    "reply_to_message",
    "forwarded_from",
    "forwarded_from_message",
    "is_deleted",
    "attachments",
    "receipts",
    "reactions",
    "seq",
    "client_id",
];

/// The conversation object's keys: the contract's 13 (1.4), then Vato's
/// `pinned_message_ids`.
pub const CONVERSATION_KEYS: [&str; 14] = [
    "id",
    "title",
    "conversation_type",
    "owner",
    "description",
    "created_at",
    "updated_at",
    "avatar",
    "is_public",
    "invite_link",
    "members",
    "last_message",
    "unread_count",
    "pinned_message_ids",
];

/// The user object's 20 keys (contract 1.1).
pub const USER_KEYS: [&str; 20] = [
    "id",
    "username",
    "email",
    "display_name",
    "phone_number",
    "avatar",
    "status_message",
    "bio",
    "is_online",
    "last_seen_at",
    "date_of_birth",
    "country",
    "city",
    "website",
    "show_phone_number",
    "show_last_seen",
    "show_profile_photo",
    "allow_calls",
    "allow_group_invite",
    "settings",
];

/// The profile object's keys (contract 1.2's 22 in its order, then Vato's
/// `first_name` and `last_name`).
pub const PROFILE_KEYS: [&str; 24] = [
    "id",
    "username",
    "email",
    "display_name",
    "phone_number",
    "avatar",
    "avatar_url",
    "status_message",
    "bio",
    "date_of_birth",
    "country",
    "city",
    "website",
    "show_phone_number",
    "show_last_seen",
    "show_profile_photo",
    "allow_calls",
    "allow_group_invite",
    "is_online",
    "last_seen_at",
    "date_joined",
    "settings",
    "first_name",
    "last_name",
];

/// The settings object's 16 keys, in the contract's order (§2).
pub const SETTINGS_KEYS: [&str; 16] = [
    "id",
    "enable_notifications",
    "notification_sound",
    "message_preview",
    "enter_to_send",
    "auto_download_photos",
    "auto_download_videos",
    "auto_download_files",
    "two_factor_enabled",
    "show_typing_indicator",
    "show_read_receipts",
    "theme",
    "font_size",
    "language",
    "created_at",
    "updated_at",
];

/// The contact object's 6 keys (contract API-rest.md §4).
pub const CONTACT_KEYS: [&str; 6] = [
    "id",
    "contact",
    "nickname",
    "is_blocked",
    "is_favorite",
    "added_at",
];
