//! Intake: the one place that turns a client's fields into a [`Command`].
//!
//! A REST body and a socket frame are both a JSON object; the same
//! function reads the same fields from either, with every limit, so the two
//! cannot disagree. What intake refuses is an [`Invalid`] (the field and a
//! DRF-style message); `error.rs` turns it into a 400 field error and
//! `ws/` into an `invalid` error frame, one function each. Rules that need
//! the state (membership, `reply_to` in this conversation, a retried
//! `client_id`) are the state machine's.
//!
//! The rules, the same over REST and the socket:
//! * `content`: a string (absent or null is empty), at most
//!   `--max-message-chars` characters; blank only for a non-text type.
//! * `message_type`: absent or null is `text`; else one of
//!   text/image/video/audio/file.
//! * `client_id`: absent or null is none; else a string of 1 to 64
//!   characters (an empty one is refused).
//! * `reply_to`, `forwarded_from`, `message_id`: a non-negative integer or
//!   a string of one, as DRF's `IntegerField` (`12` and `"12"` alike); an
//!   empty string is none.
//! * An edit's `content`: required and not blank, with the same limit.
//! * A reaction's `emoji`: required, 1 to 16 characters.
//! * An account's `phone_number`: absent, null or blank is none; else at
//!   most 32 characters, which without spaces, dashes, dots and parentheses
//!   are `+` and 8 to 15 digits (E.164), stored in that form.
//! * Profile and settings fields: [`profile`] (all of a body's errors
//!   together, as DRF).
//! * Contact fields: [`contact`] (likewise).

use serde_json::{Map, Value};
use vato_eventlog::state::MESSAGE_TYPES;
use vato_eventlog::{Command, ConvId, MessageId, Micros, UserId};

pub mod contact;
pub mod profile;

/// Longest `client_id`, in characters.
pub const MAX_CLIENT_ID_CHARS: usize = 64;
/// Longest reaction emoji, in characters.
pub const MAX_EMOJI_CHARS: usize = 16;

/// A field a client got wrong, and why (DRF's wording).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", field.map(|f| format!("{f}: ")).unwrap_or_default())]
pub struct Invalid {
    /// The field at fault; `None` for the request as a whole (a `detail`).
    pub field: Option<&'static str>,
    pub message: String,
}

impl Invalid {
    fn field(field: &'static str, message: impl Into<String>) -> Invalid {
        Invalid {
            field: Some(field),
            message: message.into(),
        }
    }

    fn detail(message: impl Into<String>) -> Invalid {
        Invalid {
            field: None,
            message: message.into(),
        }
    }
}

/// A client's fields: a REST body or a socket frame.
pub type Fields = Map<String, Value>;

/// Longest `phone_number` as typed, separators included, in characters.
pub const MAX_PHONE_CHARS: usize = 32;

/// Who asks, where, and when: what the request's path or socket says.
#[derive(Clone, Copy, Debug)]
pub struct Context {
    pub user_id: UserId,
    pub conv_id: ConvId,
    pub at: Micros,
    /// `--max-message-chars`.
    pub max_message_chars: usize,
}

/// `message.send` / `POST .../messages/`.
///
/// With files (a multipart send) the content may be blank: the files are
/// the message.
pub fn post_message(fields: &Fields, cx: Context, with_files: bool) -> Result<Command, Invalid> {
    let content = string(fields, "content")?.unwrap_or_default();
    let message_type = string(fields, "message_type")?.unwrap_or_else(|| "text".into());
    if content.trim().is_empty() && message_type == "text" && !with_files {
        return Err(Invalid::field("content", "This field may not be blank."));
    }
    check_length(&content, cx.max_message_chars)?;
    if !MESSAGE_TYPES.contains(&message_type.as_str()) {
        return Err(Invalid::field(
            "message_type",
            format!("\"{message_type}\" is not a valid choice."),
        ));
    }
    Ok(Command::PostMessage {
        sender: cx.user_id,
        conv_id: cx.conv_id,
        content,
        message_type,
        reply_to: id(fields, "reply_to")?,
        forwarded_from: id(fields, "forwarded_from")?,
        client_id: client_id(fields)?,
        at: cx.at,
    })
}

/// `POST .../messages/<id>/forward/`: `conversation_id` (the target,
/// required) and an optional `client_id`, as a send's.
pub fn forward_message(
    fields: &Fields,
    message_id: MessageId,
    cx: Context,
) -> Result<Command, Invalid> {
    let to_conv = id(fields, "conversation_id")
        .map_err(|_| Invalid::detail("conversation_id required."))?
        .ok_or_else(|| Invalid::detail("conversation_id required."))?;
    Ok(Command::ForwardMessage {
        by: cx.user_id,
        conv_id: cx.conv_id,
        message_id,
        to_conv,
        client_id: client_id(fields)?,
        at: cx.at,
    })
}

/// `message.edit` / `PATCH .../messages/<id>/`.
pub fn edit_message(
    fields: &Fields,
    message_id: MessageId,
    cx: Context,
) -> Result<Command, Invalid> {
    let Some(content) = string(fields, "content")?.filter(|c| !c.trim().is_empty()) else {
        return Err(Invalid::detail("content required."));
    };
    check_length(&content, cx.max_message_chars)?;
    Ok(Command::EditMessage {
        by: cx.user_id,
        conv_id: cx.conv_id,
        message_id,
        content,
        at: cx.at,
    })
}

/// `POST .../messages/<id>/react/`.
pub fn toggle_reaction(
    fields: &Fields,
    message_id: MessageId,
    cx: Context,
) -> Result<Command, Invalid> {
    let Some(emoji) =
        string(fields, "emoji")?.filter(|e| !e.is_empty() && e.chars().count() <= MAX_EMOJI_CHARS)
    else {
        return Err(Invalid::detail("emoji required."));
    };
    Ok(Command::ToggleReaction {
        by: cx.user_id,
        conv_id: cx.conv_id,
        message_id,
        emoji,
        at: cx.at,
    })
}

/// An account's `phone_number` in E.164 (`+15550001111`), so that one
/// number typed two ways is one number; `None` when absent or blank.
pub fn phone_number(fields: &Fields) -> Result<Option<String>, Invalid> {
    let Some(raw) = string(fields, "phone_number")?.filter(|p| !p.trim().is_empty()) else {
        return Ok(None);
    };
    if raw.chars().count() > MAX_PHONE_CHARS {
        return Err(Invalid::field(
            "phone_number",
            format!("Ensure this field has no more than {MAX_PHONE_CHARS} characters."),
        ));
    }
    let number: String = raw
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    let valid = number.strip_prefix('+').is_some_and(|digits| {
        (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
    });
    if !valid {
        return Err(Invalid::field(
            "phone_number",
            "Enter a valid phone number in international format, such as +15550001111.",
        ));
    }
    Ok(Some(number))
}

/// A required `message_id` (the socket's read, edit and delete frames).
pub fn message_id(fields: &Fields) -> Result<MessageId, Invalid> {
    id(fields, "message_id")?.ok_or_else(|| Invalid::field("message_id", "This field is required."))
}

/// The `client_id` a send carries, as given (for echoing it in an error
/// frame, even when it is not a valid one).
pub fn raw_client_id(fields: &Fields) -> Option<&Value> {
    fields.get("client_id").filter(|c| !c.is_null())
}

fn check_length(content: &str, max: usize) -> Result<(), Invalid> {
    if content.chars().count() > max {
        return Err(Invalid::field(
            "content",
            format!("Ensure this field has no more than {max} characters."),
        ));
    }
    Ok(())
}

fn client_id(fields: &Fields) -> Result<Option<String>, Invalid> {
    let Some(key) = string(fields, "client_id")? else {
        return Ok(None);
    };
    if key.is_empty() {
        return Err(Invalid::field("client_id", "This field may not be blank."));
    }
    if key.chars().count() > MAX_CLIENT_ID_CHARS {
        return Err(Invalid::field(
            "client_id",
            format!("Ensure this field has no more than {MAX_CLIENT_ID_CHARS} characters."),
        ));
    }
    Ok(Some(key))
}

/// A string field; `None` when absent or null.
pub fn string(fields: &Fields, field: &'static str) -> Result<Option<String>, Invalid> {
    match fields.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Invalid::field(field, "Not a valid string.")),
    }
}

/// A required id field (`call_id` of the call frames).
pub fn required_id(fields: &Fields, field: &'static str) -> Result<u64, Invalid> {
    id(fields, field)?.ok_or_else(|| Invalid::field(field, "This field is required."))
}

/// A list of user ids (`participant_ids`); empty when absent or null.
pub fn id_list(fields: &Fields, field: &'static str) -> Result<Vec<u64>, Invalid> {
    let invalid = || Invalid::field(field, "A list of user ids is required.");
    match fields.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(ids)) => ids
            .iter()
            .map(Value::as_u64)
            .collect::<Option<Vec<u64>>>()
            .ok_or_else(invalid),
        Some(_) => Err(invalid()),
    }
}

/// An id field given as a number or a string of digits; `None` when absent,
/// null or an empty string.
pub fn id(fields: &Fields, field: &'static str) -> Result<Option<u64>, Invalid> {
    let invalid = || Invalid::field(field, "A valid integer is required.");
    match fields.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(invalid),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| invalid()),
        Some(_) => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const CX: Context = Context {
        user_id: 1,
        conv_id: 2,
        at: 3,
        max_message_chars: 10,
    };

    fn fields(value: Value) -> Fields {
        match value {
            Value::Object(map) => map,
            _ => panic!("not an object"),
        }
    }

    fn post(value: Value) -> Result<Command, Invalid> {
        post_message(&fields(value), CX, false)
    }

    fn refused_field(result: Result<Command, Invalid>) -> Option<&'static str> {
        result.expect_err("should be refused").field
    }

    #[test]
    fn a_plain_send_defaults_to_text_without_client_id() {
        let Command::PostMessage {
            sender,
            conv_id,
            content,
            message_type,
            reply_to,
            forwarded_from,
            client_id,
            at,
        } = post(json!({"content": "hola"})).unwrap()
        else {
            panic!("not a post");
        };
        assert_eq!((sender, conv_id, at), (1, 2, 3));
        assert_eq!(content, "hola");
        assert_eq!(message_type, "text");
        assert_eq!((reply_to, forwarded_from, client_id), (None, None, None));
    }

    #[test]
    fn content_must_be_a_string_and_not_blank_for_text() {
        assert_eq!(refused_field(post(json!({"content": 5}))), Some("content"));
        for blank in [
            json!({}),
            json!({"content": null}),
            json!({"content": "  "}),
        ] {
            let refused = post(blank).unwrap_err();
            assert_eq!(refused.field, Some("content"));
            assert_eq!(refused.message, "This field may not be blank.");
        }
        assert!(post(json!({"content": "", "message_type": "image"})).is_ok());
    }

    #[test]
    fn content_length_counts_characters() {
        assert!(post(json!({"content": "é".repeat(10)})).is_ok());
        let refused = post(json!({"content": "x".repeat(11)})).unwrap_err();
        assert_eq!(refused.field, Some("content"));
        assert_eq!(
            refused.message,
            "Ensure this field has no more than 10 characters."
        );
    }

    #[test]
    fn message_type_is_one_of_five() {
        for kind in MESSAGE_TYPES {
            assert!(post(json!({"content": "x", "message_type": kind})).is_ok());
        }
        let refused = post(json!({"content": "x", "message_type": "sticker"})).unwrap_err();
        assert_eq!(refused.field, Some("message_type"));
        assert_eq!(refused.message, "\"sticker\" is not a valid choice.");
        let not_a_string = post(json!({"content": "x", "message_type": 1}));
        assert_eq!(refused_field(not_a_string), Some("message_type"));
    }

    #[test]
    fn client_id_is_a_string_of_1_to_64_characters() {
        let with = |client_id: Value| post(json!({"content": "x", "client_id": client_id}));
        let Ok(Command::PostMessage { client_id, .. }) = with(json!("k1")) else {
            panic!("refused");
        };
        assert_eq!(client_id.as_deref(), Some("k1"));
        assert!(with(json!("é".repeat(64))).is_ok());
        assert!(with(Value::Null).is_ok());
        for bad in [json!(""), json!("c".repeat(65)), json!(7), json!(["k"])] {
            assert_eq!(refused_field(with(bad)), Some("client_id"));
        }
    }

    #[test]
    fn ids_are_integers_or_digit_strings() {
        let with = |reply_to: Value| post(json!({"content": "x", "reply_to": reply_to}));
        for (given, expected) in [
            (json!(12), Some(12)),
            (json!("12"), Some(12)),
            (json!(" 12 "), Some(12)),
            (json!("+12"), Some(12)),
            (json!(""), None),
            (Value::Null, None),
        ] {
            let Ok(Command::PostMessage { reply_to, .. }) = with(given.clone()) else {
                panic!("{given} refused");
            };
            assert_eq!(reply_to, expected, "{given}");
        }
        for bad in [
            json!(-1),
            json!(1.5),
            json!("-1"),
            json!("12a"),
            json!(true),
        ] {
            let refused = with(bad.clone()).unwrap_err();
            assert_eq!(refused.field, Some("reply_to"), "{bad}");
            assert_eq!(refused.message, "A valid integer is required.");
        }
        let forwarded = post(json!({"content": "x", "forwarded_from": "9"}));
        let Ok(Command::PostMessage { forwarded_from, .. }) = forwarded else {
            panic!("refused");
        };
        assert_eq!(forwarded_from, Some(9));
        let bad = post(json!({"content": "x", "forwarded_from": "x"}));
        assert_eq!(refused_field(bad), Some("forwarded_from"));
    }

    #[test]
    fn message_id_is_required() {
        assert_eq!(message_id(&fields(json!({"message_id": 4}))), Ok(4));
        assert_eq!(message_id(&fields(json!({"message_id": "4"}))), Ok(4));
        for bad in [
            json!({}),
            json!({"message_id": "x"}),
            json!({"message_id": ""}),
        ] {
            assert_eq!(
                message_id(&fields(bad)).unwrap_err().field,
                Some("message_id")
            );
        }
    }

    #[test]
    fn an_edit_needs_content_within_the_limit() {
        let edit = |value: Value| edit_message(&fields(value), 5, CX);
        let Ok(Command::EditMessage {
            message_id,
            content,
            ..
        }) = edit(json!({"content": "new"}))
        else {
            panic!("refused");
        };
        assert_eq!((message_id, content.as_str()), (5, "new"));
        for missing in [json!({}), json!({"content": " "})] {
            let refused = edit(missing).unwrap_err();
            assert_eq!(refused, Invalid::detail("content required."));
        }
        assert_eq!(
            refused_field(edit(json!({"content": "x".repeat(11)}))),
            Some("content")
        );
        assert_eq!(refused_field(edit(json!({"content": 1}))), Some("content"));
    }

    #[test]
    fn an_emoji_is_1_to_16_characters() {
        let react = |value: Value| toggle_reaction(&fields(value), 5, CX);
        assert!(react(json!({"emoji": "👍"})).is_ok());
        assert!(react(json!({"emoji": "👍".repeat(16)})).is_ok());
        for bad in [
            json!({}),
            json!({"emoji": ""}),
            json!({"emoji": "👍".repeat(17)}),
        ] {
            assert_eq!(react(bad).unwrap_err(), Invalid::detail("emoji required."));
        }
    }

    #[test]
    fn phone_numbers_become_e164() {
        let phone = |value: Value| phone_number(&fields(json!({ "phone_number": value })));
        for typed in [
            "+1 555 000 1111",
            "+15550001111",
            "+1 (555) 000-1111",
            "+1.555.000.1111",
        ] {
            assert_eq!(
                phone(json!(typed)),
                Ok(Some("+15550001111".into())),
                "{typed}"
            );
        }
        for none in [Value::Null, json!(""), json!("  ")] {
            assert_eq!(phone(none), Ok(None));
        }
        assert_eq!(phone_number(&fields(json!({}))), Ok(None));
        assert_eq!(phone(json!("+12345678")), Ok(Some("+12345678".into())));
        assert!(phone(json!("+123456789012345")).is_ok(), "15 digits");
        for bad in [
            json!("15550001111"),
            json!("+1234567"),
            json!("+1234567890123456"),
            json!("+1555000111x"),
            json!("+١٢٣٤٥٦٧٨٩"),
            json!("++15550001111"),
            json!(5550001111u64),
        ] {
            assert_eq!(
                refused_field_of(phone(bad.clone())),
                Some("phone_number"),
                "{bad}"
            );
        }
        let long = phone(json!("1".repeat(200_000))).unwrap_err();
        assert_eq!(
            long.message,
            "Ensure this field has no more than 32 characters."
        );
    }

    fn refused_field_of(result: Result<Option<String>, Invalid>) -> Option<&'static str> {
        result.expect_err("should be refused").field
    }

    #[test]
    fn the_message_names_the_field() {
        assert_eq!(
            Invalid::field("content", "Not a valid string.").to_string(),
            "content: Not a valid string."
        );
        assert_eq!(
            Invalid::detail("emoji required.").to_string(),
            "emoji required."
        );
    }
}
