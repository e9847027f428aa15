//! Profile and settings fields (contract API-rest.md §1.1 and §2): a body
//! becomes the changes of an `UpdateProfile` or `UpdateSettings`, with
//! DRF's messages, every field's errors together. Read-only and unknown
//! keys are ignored, as the original does. Uniqueness (username, phone
//! number) needs the state: the state machine decides it.

use serde_json::{json, Map, Value};
use vato_eventlog::profile::{
    Nullable, ProfileChanges, SettingsChanges, FONT_SIZES, LANGUAGES, THEMES,
};

use super::Fields;

/// Field → its messages: the body of a DRF 400.
#[derive(Debug, Default, PartialEq)]
pub struct FieldErrors(pub Map<String, Value>);

impl FieldErrors {
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        let messages = self.0.entry(field).or_insert_with(|| json!([]));
        if let Value::Array(list) = messages {
            list.push(Value::String(message.into()));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Longest values of the writable text fields (Django's model limits).
pub const MAX_USERNAME_CHARS: usize = 150;
const MAX_EMAIL_CHARS: usize = 254;
const MAX_NAME_CHARS: usize = 150;
const MAX_DISPLAY_NAME_CHARS: usize = 255;
const MAX_STATUS_CHARS: usize = 255;
const MAX_BIO_CHARS: usize = 500;
const MAX_PLACE_CHARS: usize = 100;
const MAX_WEBSITE_CHARS: usize = 500;

const NOT_BOOLEAN: &str = "Must be a valid boolean.";
const NOT_NULL: &str = "This field may not be null.";
const NOT_STRING: &str = "Not a valid string.";

/// The profile changes in `fields`. `username_required`: `PUT
/// users/{id}/` needs it, as the original's serializer does.
pub fn profile_changes(
    fields: &Fields,
    username_required: bool,
) -> Result<ProfileChanges, FieldErrors> {
    let mut errors = FieldErrors::default();
    let mut changes = ProfileChanges::default();
    let mut string = |field: &'static str, max: usize| text(fields, field, max, &mut errors);
    changes.username = string("username", MAX_USERNAME_CHARS);
    changes.email = string("email", MAX_EMAIL_CHARS);
    changes.display_name = string("display_name", MAX_DISPLAY_NAME_CHARS);
    changes.first_name = string("first_name", MAX_NAME_CHARS);
    changes.last_name = string("last_name", MAX_NAME_CHARS);
    changes.status_message = string("status_message", MAX_STATUS_CHARS);
    changes.bio = string("bio", MAX_BIO_CHARS);
    changes.country = string("country", MAX_PLACE_CHARS);
    changes.city = string("city", MAX_PLACE_CHARS);
    changes.website = string("website", MAX_WEBSITE_CHARS);

    match &changes.username {
        None if username_required && !fields.contains_key("username") => {
            errors.add("username", "This field is required.")
        }
        Some(name) if name.is_empty() => errors.add("username", "This field may not be blank."),
        Some(name) if !name.chars().all(|c| c.is_alphanumeric() || "@.+-_".contains(c)) => errors.add(
            "username",
            "Enter a valid username. This value may contain only letters, numbers, and @/./+/-/_ characters.",
        ),
        _ => {}
    }
    if changes
        .email
        .as_deref()
        .is_some_and(|e| !e.is_empty() && !valid_email(e))
    {
        errors.add("email", "Enter a valid email address.");
    }
    if changes
        .website
        .as_deref()
        .is_some_and(|w| !w.is_empty() && !valid_url(w))
    {
        errors.add("website", "Enter a valid URL.");
    }
    if fields.contains_key("phone_number") {
        match super::phone_number(fields) {
            Ok(phone) => changes.phone_number = Some(Nullable::from_option(phone)),
            Err(invalid) => errors.add(invalid.field.unwrap_or("phone_number"), invalid.message),
        }
    }
    match fields.get("date_of_birth") {
        None => {}
        Some(Value::Null) => changes.date_of_birth = Some(Nullable::Null),
        Some(Value::String(s)) if s.is_empty() => changes.date_of_birth = Some(Nullable::Null),
        Some(Value::String(s)) if valid_date(s) => {
            changes.date_of_birth = Some(Nullable::Value(s.clone()))
        }
        Some(_) => errors.add(
            "date_of_birth",
            "Date has wrong format. Use one of these formats instead: YYYY-MM-DD.",
        ),
    }
    let mut flag = |field: &'static str| boolean(fields, field, &mut errors);
    changes.show_phone_number = flag("show_phone_number");
    changes.show_last_seen = flag("show_last_seen");
    changes.show_profile_photo = flag("show_profile_photo");
    changes.allow_calls = flag("allow_calls");
    changes.allow_group_invite = flag("allow_group_invite");

    if errors.is_empty() {
        Ok(changes)
    } else {
        Err(errors)
    }
}

/// The settings changes in `fields` (`PATCH`/`PUT settings/`).
pub fn settings_changes(fields: &Fields) -> Result<SettingsChanges, FieldErrors> {
    let mut errors = FieldErrors::default();
    let mut flag = |field: &'static str| boolean(fields, field, &mut errors);
    let mut changes = SettingsChanges {
        enable_notifications: flag("enable_notifications"),
        notification_sound: flag("notification_sound"),
        message_preview: flag("message_preview"),
        enter_to_send: flag("enter_to_send"),
        auto_download_photos: flag("auto_download_photos"),
        auto_download_videos: flag("auto_download_videos"),
        auto_download_files: flag("auto_download_files"),
        two_factor_enabled: flag("two_factor_enabled"),
        show_typing_indicator: flag("show_typing_indicator"),
        show_read_receipts: flag("show_read_receipts"),
        ..SettingsChanges::default()
    };
    changes.theme = choice(fields, "theme", &THEMES, &mut errors);
    changes.font_size = choice(fields, "font_size", &FONT_SIZES, &mut errors);
    changes.language = choice(fields, "language", &LANGUAGES, &mut errors);
    if errors.is_empty() {
        Ok(changes)
    } else {
        Err(errors)
    }
}

/// A text field of at most `max` characters; `None` when absent or
/// refused (the refusal is in `errors`).
pub(super) fn text(
    fields: &Fields,
    field: &str,
    max: usize,
    errors: &mut FieldErrors,
) -> Option<String> {
    match fields.get(field)? {
        Value::String(s) if s.chars().count() > max => {
            errors.add(
                field,
                format!("Ensure this field has no more than {max} characters."),
            );
            None
        }
        Value::String(s) => Some(s.clone()),
        Value::Null => {
            errors.add(field, NOT_NULL);
            None
        }
        // DRF's CharField takes numbers as their text.
        Value::Number(n) => Some(n.to_string()),
        _ => {
            errors.add(field, NOT_STRING);
            None
        }
    }
}

/// DRF's BooleanField: `true`/`false`, 1/0 and their usual spellings.
pub(super) fn boolean(fields: &Fields, field: &str, errors: &mut FieldErrors) -> Option<bool> {
    let parsed = match fields.get(field)? {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_i64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        Value::String(s) => match s.as_str() {
            "t" | "T" | "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on"
            | "On" | "ON" | "1" => Some(true),
            "f" | "F" | "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off"
            | "Off" | "OFF" | "0" => Some(false),
            _ => None,
        },
        Value::Null => {
            errors.add(field, NOT_NULL);
            return None;
        }
        _ => None,
    };
    if parsed.is_none() {
        errors.add(field, NOT_BOOLEAN);
    }
    parsed
}

/// One of `choices`, with DRF's `"x" is not a valid choice.`
fn choice(
    fields: &Fields,
    field: &str,
    choices: &[&str],
    errors: &mut FieldErrors,
) -> Option<String> {
    let given = match fields.get(field)? {
        Value::Null => {
            errors.add(field, NOT_NULL);
            return None;
        }
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if choices.contains(&given.as_str()) {
        Some(given)
    } else {
        errors.add(field, format!("\"{given}\" is not a valid choice."));
        None
    }
}

/// Django's EmailValidator, in its essentials: a local part of the usual
/// characters, `@`, and a domain of dot-separated labels.
fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
    local_ok && valid_host(domain) && domain.contains('.')
}

/// Django's URLValidator, in its essentials: http, https, ftp or ftps,
/// `://`, a host name with a dot (or localhost, or an IP), an optional
/// port, and a path without spaces.
fn valid_url(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    let Some(rest) = ["http://", "https://", "ftp://", "ftps://"]
        .iter()
        .find_map(|scheme| lower.strip_prefix(scheme))
    else {
        return false;
    };
    if url.chars().any(char::is_whitespace) {
        return false;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    // `[v6]:port`, `host:port`, or a bare host.
    let (host, port) = match host_port.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((ip, rest)) => {
                let port = match rest {
                    "" => None,
                    _ => match rest.strip_prefix(':') {
                        Some(port) => Some(port),
                        None => return false,
                    },
                };
                if ip.parse::<std::net::Ipv6Addr>().is_err() {
                    return false;
                }
                // An IP literal: only the port is left to check.
                ("localhost", port)
            }
            None => return false,
        },
        None => match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        },
    };
    let port_ok =
        port.is_none_or(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    port_ok
        && (host == "localhost"
            || host.parse::<std::net::Ipv4Addr>().is_ok()
            || (host.contains('.') && valid_host(host)))
}

/// Dot-separated labels of letters, digits and inner hyphens; the last is
/// not numeric.
fn valid_host(host: &str) -> bool {
    let labels: Vec<&str> = host.split('.').collect();
    !host.is_empty()
        && host.chars().count() <= 253
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.chars().count() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| !tld.chars().all(|c| c.is_ascii_digit()))
}

/// `YYYY-MM-DD`, a real date.
fn valid_date(s: &str) -> bool {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    s.len() == 10 && time::Date::parse(s, &format).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(value: Value) -> Fields {
        match value {
            Value::Object(map) => map,
            _ => panic!("not an object"),
        }
    }

    fn errors_of(value: Value) -> Value {
        Value::Object(profile_changes(&fields(value), false).unwrap_err().0)
    }

    #[test]
    fn every_error_comes_back_together_in_drf_words() {
        let errors = errors_of(json!({
            "bio": "b".repeat(501),
            "country": "c".repeat(101),
            "show_last_seen": "maybe",
            "website": "not a url",
            "email": "nope",
            "date_of_birth": "1990-13-01",
            "phone_number": "12",
            "status_message": null,
            "username": "bad name",
        }));
        assert_eq!(
            errors,
            json!({
                "bio": ["Ensure this field has no more than 500 characters."],
                "country": ["Ensure this field has no more than 100 characters."],
                "show_last_seen": ["Must be a valid boolean."],
                "website": ["Enter a valid URL."],
                "email": ["Enter a valid email address."],
                "date_of_birth": ["Date has wrong format. Use one of these formats instead: YYYY-MM-DD."],
                "phone_number": ["Enter a valid phone number in international format, such as +15550001111."],
                "status_message": ["This field may not be null."],
                "username": ["Enter a valid username. This value may contain only letters, numbers, and @/./+/-/_ characters."],
            })
        );
    }

    #[test]
    fn read_only_and_unknown_keys_are_ignored() {
        let changes = profile_changes(
            &fields(
                json!({"id": 9, "is_online": false, "settings": {}, "whatever": 1, "bio": "hi"}),
            ),
            false,
        )
        .unwrap();
        assert_eq!(
            changes,
            ProfileChanges {
                bio: Some("hi".into()),
                ..Default::default()
            }
        );
    }

    #[test]
    fn values_are_normalised() {
        let changes = profile_changes(
            &fields(json!({
                "phone_number": "+1 (555) 000-2222",
                "date_of_birth": "1995-05-15",
                "allow_group_invite": "false",
                "show_phone_number": 1,
                "website": "https://vato.example/about?x=1",
                "email": "a.b+c@example.co.uk",
            })),
            false,
        )
        .unwrap();
        assert_eq!(
            changes.phone_number,
            Some(Nullable::Value("+15550002222".into()))
        );
        assert_eq!(
            changes.date_of_birth,
            Some(Nullable::Value("1995-05-15".into()))
        );
        assert_eq!(changes.allow_group_invite, Some(false));
        assert_eq!(changes.show_phone_number, Some(true));
        let cleared = profile_changes(
            &fields(json!({"phone_number": null, "date_of_birth": ""})),
            false,
        )
        .unwrap();
        assert_eq!(cleared.phone_number, Some(Nullable::Null));
        assert_eq!(cleared.date_of_birth, Some(Nullable::Null));
    }

    #[test]
    fn urls_and_emails() {
        for good in [
            "http://localhost:8000/",
            "https://example.com",
            "ftp://127.0.0.1/x",
            "https://sub.example.org:443/a b"
                .replace(' ', "%20")
                .as_str(),
        ] {
            assert!(valid_url(good), "{good}");
        }
        for bad in [
            "example.com",
            "https://",
            "https://exa mple.com",
            "javascript:alert(1)",
            "https://example",
            "https://example.com:port/",
        ] {
            assert!(!valid_url(bad), "{bad}");
        }
        assert!(valid_email("lalo@example.com"));
        for bad in [
            "lalo",
            "@example.com",
            "lalo@",
            "lalo@example",
            "la lo@example.com",
        ] {
            assert!(!valid_email(bad), "{bad}");
        }
    }

    #[test]
    fn put_on_users_needs_a_username() {
        let errors = profile_changes(&fields(json!({"bio": "x"})), true).unwrap_err();
        assert_eq!(
            Value::Object(errors.0),
            json!({"username": ["This field is required."]})
        );
    }

    #[test]
    fn settings_check_booleans_and_choices() {
        let errors = settings_changes(&fields(json!({
            "theme": "blue",
            "font_size": "huge",
            "language": "xx",
            "enter_to_send": "perhaps",
            "id": 5,
            "updated_at": "x",
        })))
        .unwrap_err();
        assert_eq!(
            Value::Object(errors.0),
            json!({
                "enter_to_send": ["Must be a valid boolean."],
                "theme": ["\"blue\" is not a valid choice."],
                "font_size": ["\"huge\" is not a valid choice."],
                "language": ["\"xx\" is not a valid choice."],
            })
        );
        let changes = settings_changes(&fields(
            json!({"theme": "dark", "show_read_receipts": false}),
        ))
        .unwrap();
        assert_eq!(changes.theme.as_deref(), Some("dark"));
        assert_eq!(changes.show_read_receipts, Some(false));
        assert_eq!(changes.language, None);
    }
}
