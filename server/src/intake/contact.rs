//! Contact fields (contract API-rest.md §4): `nickname` (at most 255
//! characters), `is_blocked` and `is_favorite` (DRF booleans), every
//! field's errors together, as the original's serializer. `contact_id` is
//! the add route's own business (its errors are bare arrays).

use super::profile::{boolean, text, FieldErrors};
use super::Fields;

/// Longest nickname (the original's model limit).
pub const MAX_NICKNAME_CHARS: usize = 255;

/// The writable fields a body gives; `None`: not given.
#[derive(Debug, Default, PartialEq)]
pub struct ContactFields {
    pub nickname: Option<String>,
    pub is_blocked: Option<bool>,
    pub is_favorite: Option<bool>,
}

/// Reads the contact fields of `fields`; unknown keys (`contact`,
/// `contact_id` on an update) are ignored.
pub fn contact_fields(fields: &Fields) -> Result<ContactFields, FieldErrors> {
    let mut errors = FieldErrors::default();
    let out = ContactFields {
        nickname: text(fields, "nickname", MAX_NICKNAME_CHARS, &mut errors),
        is_blocked: boolean(fields, "is_blocked", &mut errors),
        is_favorite: boolean(fields, "is_favorite", &mut errors),
    };
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_fields_errors_come_together() {
        let body = json!({"nickname": "x".repeat(256), "is_blocked": "maybe", "contact_id": 3});
        let errors = contact_fields(body.as_object().unwrap()).unwrap_err();
        assert_eq!(
            serde_json::Value::Object(errors.0),
            json!({
                "nickname": ["Ensure this field has no more than 255 characters."],
                "is_blocked": ["Must be a valid boolean."]
            })
        );
        let body = json!({"nickname": "Ana", "is_favorite": "yes"});
        let fields = contact_fields(body.as_object().unwrap()).unwrap();
        assert_eq!(fields.nickname.as_deref(), Some("Ana"));
        assert_eq!(fields.is_favorite, Some(true));
        assert_eq!(fields.is_blocked, None);
    }
}
