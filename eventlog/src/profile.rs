//! A user's profile and settings: the values the read models keep, their
//! defaults (contract API-rest.md §1.1 and §2), and the changes that
//! `ProfileUpdated` and `SettingsUpdated` carry (only the fields that
//! change).
//!
//! Encoding: these structs are MessagePack arrays in the log and the
//! snapshot, so a field is only ever added at the end, with
//! `#[serde(default)]`, and never removed or reordered.

use serde::{Deserialize, Serialize};

use crate::Micros;

/// `theme` choices, in the contract's order.
pub const THEMES: [&str; 3] = ["light", "dark", "auto"];
/// `font_size` choices.
pub const FONT_SIZES: [&str; 3] = ["small", "medium", "large"];
/// `language` choices.
pub const LANGUAGES: [&str; 7] = ["en", "es", "fr", "de", "ru", "ar", "zh"];

/// The profile fields beyond what registration sets. Defaults are the
/// contract's: every string empty, `show_phone_number` false, the other
/// flags true.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Profile {
    pub first_name: String,
    pub last_name: String,
    pub status_message: String,
    pub bio: String,
    /// `YYYY-MM-DD`, as validated by the server.
    pub date_of_birth: Option<String>,
    pub country: String,
    pub city: String,
    pub website: String,
    pub show_phone_number: bool,
    pub show_last_seen: bool,
    pub show_profile_photo: bool,
    pub allow_calls: bool,
    /// False: nobody may add this user to a group (issue 17).
    pub allow_group_invite: bool,
}

impl Default for Profile {
    fn default() -> Profile {
        Profile {
            first_name: String::new(),
            last_name: String::new(),
            status_message: String::new(),
            bio: String::new(),
            date_of_birth: None,
            country: String::new(),
            city: String::new(),
            website: String::new(),
            show_phone_number: false,
            show_last_seen: true,
            show_profile_photo: true,
            allow_calls: true,
            allow_group_invite: true,
        }
    }
}

/// A value a change may also clear (`null` on the wire). Not an
/// `Option<Option<T>>`: MessagePack writes `Some(None)` and `None` alike.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Nullable<T> {
    Null,
    Value(T),
}

impl<T: Clone> Nullable<T> {
    pub fn into_option(self) -> Option<T> {
        match self {
            Nullable::Null => None,
            Nullable::Value(v) => Some(v),
        }
    }

    pub fn from_option(value: Option<T>) -> Nullable<T> {
        match value {
            None => Nullable::Null,
            Some(v) => Nullable::Value(v),
        }
    }
}

/// The account and profile fields a `ProfileUpdated` changes; `None`
/// leaves a field as it is.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct ProfileChanges {
    pub username: Option<String>,
    pub email: Option<String>,
    pub display_name: Option<String>,
    /// E.164, or cleared.
    pub phone_number: Option<Nullable<String>>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub status_message: Option<String>,
    pub bio: Option<String>,
    pub date_of_birth: Option<Nullable<String>>,
    pub country: Option<String>,
    pub city: Option<String>,
    pub website: Option<String>,
    pub show_phone_number: Option<bool>,
    pub show_last_seen: Option<bool>,
    pub show_profile_photo: Option<bool>,
    pub allow_calls: Option<bool>,
    pub allow_group_invite: Option<bool>,
}

impl ProfileChanges {
    pub fn is_empty(&self) -> bool {
        *self == ProfileChanges::default()
    }
}

/// A user's settings row (contract §2): absent until the first settings
/// call, then these 16 keys.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Settings {
    /// The row's own id: rows are numbered in the order users first use
    /// the settings, as the original's table does.
    pub id: u64,
    pub values: SettingsValues,
    pub created_at: Micros,
    pub updated_at: Micros,
}

/// The writable settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SettingsValues {
    pub enable_notifications: bool,
    pub notification_sound: bool,
    pub message_preview: bool,
    pub enter_to_send: bool,
    pub auto_download_photos: bool,
    pub auto_download_videos: bool,
    pub auto_download_files: bool,
    pub two_factor_enabled: bool,
    /// False: this user's typing frames are not sent to others.
    pub show_typing_indicator: bool,
    /// False: this user's read marks are not shown to others.
    pub show_read_receipts: bool,
    pub theme: String,
    pub font_size: String,
    pub language: String,
}

impl Default for SettingsValues {
    fn default() -> SettingsValues {
        SettingsValues {
            enable_notifications: true,
            notification_sound: true,
            message_preview: true,
            enter_to_send: true,
            auto_download_photos: true,
            auto_download_videos: false,
            auto_download_files: false,
            two_factor_enabled: false,
            show_typing_indicator: true,
            show_read_receipts: true,
            theme: "light".into(),
            font_size: "medium".into(),
            language: "en".into(),
        }
    }
}

/// The settings a `SettingsUpdated` changes; `None` leaves one as it is.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct SettingsChanges {
    pub enable_notifications: Option<bool>,
    pub notification_sound: Option<bool>,
    pub message_preview: Option<bool>,
    pub enter_to_send: Option<bool>,
    pub auto_download_photos: Option<bool>,
    pub auto_download_videos: Option<bool>,
    pub auto_download_files: Option<bool>,
    pub two_factor_enabled: Option<bool>,
    pub show_typing_indicator: Option<bool>,
    pub show_read_receipts: Option<bool>,
    pub theme: Option<String>,
    pub font_size: Option<String>,
    pub language: Option<String>,
}

impl SettingsChanges {
    /// Every setting back to its default (`POST settings/reset/`).
    pub fn reset() -> SettingsChanges {
        let d = SettingsValues::default();
        SettingsChanges {
            enable_notifications: Some(d.enable_notifications),
            notification_sound: Some(d.notification_sound),
            message_preview: Some(d.message_preview),
            enter_to_send: Some(d.enter_to_send),
            auto_download_photos: Some(d.auto_download_photos),
            auto_download_videos: Some(d.auto_download_videos),
            auto_download_files: Some(d.auto_download_files),
            two_factor_enabled: Some(d.two_factor_enabled),
            show_typing_indicator: Some(d.show_typing_indicator),
            show_read_receipts: Some(d.show_read_receipts),
            theme: Some(d.theme),
            font_size: Some(d.font_size),
            language: Some(d.language),
        }
    }

    /// Folds the changes into `values`.
    pub fn apply_to(&self, values: &mut SettingsValues) {
        set(&mut values.enable_notifications, &self.enable_notifications);
        set(&mut values.notification_sound, &self.notification_sound);
        set(&mut values.message_preview, &self.message_preview);
        set(&mut values.enter_to_send, &self.enter_to_send);
        set(&mut values.auto_download_photos, &self.auto_download_photos);
        set(&mut values.auto_download_videos, &self.auto_download_videos);
        set(&mut values.auto_download_files, &self.auto_download_files);
        set(&mut values.two_factor_enabled, &self.two_factor_enabled);
        set(
            &mut values.show_typing_indicator,
            &self.show_typing_indicator,
        );
        set(&mut values.show_read_receipts, &self.show_read_receipts);
        set(&mut values.theme, &self.theme);
        set(&mut values.font_size, &self.font_size);
        set(&mut values.language, &self.language);
    }
}

/// Writes a change into its field when the change carries one: how the
/// profile and settings events apply their optional fields.
pub(crate) fn set<T: Clone>(slot: &mut T, change: &Option<T>) {
    if let Some(v) = change {
        *slot = v.clone();
    }
}
