//! The socket's frames: a pure parser from an inbound frame's text to an
//! [`Inbound`] value (through [`intake`] for the commands), and the error
//! frames a socket answers with. Nothing here sends or reads state.
//!
//! Error codes: `bad_json` (not JSON), `unknown_type` (no or an unknown
//! `type`), `invalid` (a field intake or the state machine refuses),
//! `forbidden`, `not_found`, `unavailable` (retry with the same
//! `client_id`), `rate_limited` (the user is over a rate limit; nothing
//! was stored; retry after `retry_after_ms`), `busy` (a `sync` while this
//! socket's replay still runs). Every error about a frame carries its
//! `client_id`.

use serde_json::{json, Value};
use vato_eventlog::{CallAction, Command, Rejection, Seq};

use crate::intake::{self, Fields};
use crate::limits::RateLimited;

/// What one inbound frame asks for.
#[derive(Debug)]
pub enum Inbound {
    Ping,
    /// Replay everything after `since`, then `sync.done`.
    Sync {
        since: Seq,
    },
    Typing {
        is_typing: bool,
    },
    /// `message.send`, `.read`, `.edit` or `.delete`, for the sequencer;
    /// `client_id` as the frame gave it, for the answer frames.
    Command {
        command: Command,
        client_id: Option<Value>,
    },
    /// `webrtc.offer`, `.answer` or `.ice_candidate` for the other
    /// participants of `call_id`: relayed, never stored (issue 15).
    Signal {
        kind: &'static str,
        call_id: u64,
        payload: Value,
    },
}

/// A frame refused before it reached the sequencer: the error frame's text.
#[derive(Debug, PartialEq)]
pub struct Refused(pub String);

/// Parses one inbound frame. `cx` is the socket's user and conversation,
/// the time, and the content limit.
pub fn parse(bytes: &[u8], cx: intake::Context) -> Result<Inbound, Refused> {
    let Ok(frame) = serde_json::from_slice::<Value>(bytes) else {
        return Err(Refused(error("bad_json", "frame is not valid JSON", None)));
    };
    let empty = Fields::new();
    let fields = frame.as_object().unwrap_or(&empty);
    // Every error about this frame carries its client_id.
    let client_id = intake::raw_client_id(fields);
    let refuse = |e: intake::Invalid| {
        crate::telemetry::refused_at_intake(e.field);
        Refused(invalid(&e, client_id))
    };
    let Some(kind) = fields.get("type").and_then(Value::as_str) else {
        let detail = "frame has no \"type\"";
        return Err(Refused(error("unknown_type", detail, client_id)));
    };
    let command = match kind {
        "ping" => return Ok(Inbound::Ping),
        "sync" => match fields.get("since").and_then(Value::as_u64) {
            Some(since) => return Ok(Inbound::Sync { since }),
            None => {
                let detail = "sync needs an integer \"since\"";
                return Err(Refused(error("invalid", detail, client_id)));
            }
        },
        "typing" => {
            let is_typing = fields.get("is_typing").and_then(Value::as_bool);
            return Ok(Inbound::Typing {
                is_typing: is_typing.unwrap_or(true),
            });
        }
        "message.send" => intake::post_message(fields, cx, false).map_err(refuse)?,
        "message.read" => Command::MarkRead {
            by: cx.user_id,
            conv_id: cx.conv_id,
            message_id: intake::message_id(fields).map_err(refuse)?,
            at: cx.at,
        },
        "message.delete" => Command::DeleteMessage {
            by: cx.user_id,
            conv_id: cx.conv_id,
            message_id: intake::message_id(fields).map_err(refuse)?,
            at: cx.at,
        },
        "message.edit" => {
            let message_id = intake::message_id(fields).map_err(refuse)?;
            intake::edit_message(fields, message_id, cx).map_err(refuse)?
        }
        "call.initiate" => Command::StartCall {
            by: cx.user_id,
            conv_id: cx.conv_id,
            call_type: intake::string(fields, "call_type")
                .map_err(refuse)?
                .unwrap_or_else(|| "voice".into()),
            participants: intake::id_list(fields, "participant_ids").map_err(refuse)?,
            at: cx.at,
        },
        "call.answer" | "call.reject" | "call.end" => Command::CallAction {
            by: cx.user_id,
            conv_id: cx.conv_id,
            call_id: intake::required_id(fields, "call_id").map_err(refuse)?,
            action: match kind {
                "call.answer" => CallAction::Answer,
                "call.reject" => CallAction::Reject,
                _ => CallAction::End,
            },
            at: cx.at,
        },
        "webrtc.offer" | "webrtc.answer" | "webrtc.ice_candidate" => {
            let (kind, key) = match kind {
                "webrtc.offer" => ("webrtc.offer", "offer"),
                "webrtc.answer" => ("webrtc.answer", "answer"),
                _ => ("webrtc.ice_candidate", "candidate"),
            };
            return Ok(Inbound::Signal {
                kind,
                call_id: intake::required_id(fields, "call_id").map_err(refuse)?,
                payload: fields.get(key).cloned().unwrap_or(Value::Null),
            });
        }
        other => {
            let detail = format!("unknown frame type {other:?}");
            return Err(Refused(error("unknown_type", &detail, client_id)));
        }
    };
    Ok(Inbound::Command {
        command,
        client_id: client_id.cloned(),
    })
}

/// `{"type": "pong"}`.
pub fn pong() -> String {
    json!({"type": "pong"}).to_string()
}

/// An error frame; `client_id` is echoed when the frame had one.
pub fn error(code: &str, detail: &str, client_id: Option<&Value>) -> String {
    let mut frame = json!({"type": "error", "code": code, "detail": detail});
    if let Some(client_id) = client_id.filter(|c| !c.is_null()) {
        frame["client_id"] = client_id.clone();
    }
    frame.to_string()
}

/// A command refused by the user's rate limits: nothing was stored.
pub fn rate_limited(limited: &RateLimited, client_id: Option<&Value>) -> String {
    let mut frame: Value =
        serde_json::from_str(&error("rate_limited", limited.detail, client_id)).unwrap_or_default();
    frame["retry_after_ms"] = json!(limited.retry_after.as_millis().max(1) as u64);
    frame.to_string()
}

/// A `sync` refused because this socket's replay is still running.
pub fn busy() -> String {
    let detail = "a replay is already running on this socket; wait for its sync.done";
    error("busy", detail, None)
}

/// What intake refused, as a socket error frame.
pub fn invalid(invalid: &intake::Invalid, client_id: Option<&Value>) -> String {
    error("invalid", &invalid.to_string(), client_id)
}

/// The socket's one mapping of a state-machine rejection to an error code.
pub fn rejection(rejection: &Rejection, client_id: Option<&Value>) -> String {
    let code = match rejection {
        Rejection::NotAMember
        | Rejection::NotAnAdmin
        | Rejection::NotYourMessage
        | Rejection::GroupInviteRefused { .. }
        | Rejection::Blocked => "forbidden",
        Rejection::UnknownMessage
        | Rejection::UnknownConversation
        | Rejection::UnknownUser
        | Rejection::UnknownContact
        | Rejection::NotPinned
        | Rejection::UnknownTarget
        | Rejection::OtpExpired
        | Rejection::UnknownCall
        | Rejection::UnknownNotification
        | Rejection::UnknownDevice => "not_found",
        Rejection::NotAParticipant => "forbidden",
        Rejection::CallState(_) | Rejection::CallInProgress => "invalid",
        Rejection::UsernameTaken
        | Rejection::PhoneTaken
        | Rejection::MessageDeleted
        | Rejection::AlreadyMember
        | Rejection::TokenRevoked
        | Rejection::ContactIsSelf
        | Rejection::ContactExists
        | Rejection::Invalid(_) => "invalid",
    };
    error(code, &rejection.to_string(), client_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CX: intake::Context = intake::Context {
        user_id: 1,
        conv_id: 2,
        at: 3,
        max_message_chars: 10,
    };

    fn parse_value(frame: Value) -> Result<Inbound, Refused> {
        parse(frame.to_string().as_bytes(), CX)
    }

    /// The refusal's frame, parsed back.
    fn refused(frame: Value) -> Value {
        let Err(Refused(text)) = parse_value(frame.clone()) else {
            panic!("{frame} was accepted");
        };
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn not_json_and_no_type_are_refused() {
        let Err(Refused(text)) = parse(b"{not json", CX) else {
            panic!("accepted");
        };
        assert!(text.contains("bad_json"), "{text}");
        for frame in [
            json!({"no": "type"}),
            json!({"type": 5}),
            json!([1]),
            json!({"type": "dance"}),
        ] {
            assert_eq!(refused(frame)["code"], "unknown_type");
        }
    }

    #[test]
    fn ping_sync_and_typing() {
        assert!(matches!(
            parse_value(json!({"type": "ping"})),
            Ok(Inbound::Ping)
        ));
        assert!(matches!(
            parse_value(json!({"type": "sync", "since": 4})),
            Ok(Inbound::Sync { since: 4 })
        ));
        assert_eq!(refused(json!({"type": "sync"}))["code"], "invalid");
        assert_eq!(
            refused(json!({"type": "sync", "since": "4"}))["code"],
            "invalid"
        );
        assert!(matches!(
            parse_value(json!({"type": "typing"})),
            Ok(Inbound::Typing { is_typing: true })
        ));
        assert!(matches!(
            parse_value(json!({"type": "typing", "is_typing": false})),
            Ok(Inbound::Typing { is_typing: false })
        ));
    }

    #[test]
    fn a_send_goes_through_intake_and_keeps_its_client_id() {
        let Ok(Inbound::Command { command, client_id }) = parse_value(
            json!({"type": "message.send", "content": "hola", "client_id": "k1", "reply_to": "7"}),
        ) else {
            panic!("refused");
        };
        assert_eq!(client_id, Some(json!("k1")));
        let Command::PostMessage {
            sender,
            conv_id,
            reply_to,
            ..
        } = command
        else {
            panic!("not a post");
        };
        assert_eq!((sender, conv_id, reply_to), (1, 2, Some(7)));

        let error = refused(json!({"type": "message.send", "content": 5, "client_id": "bad-1"}));
        assert_eq!(error["code"], "invalid");
        assert_eq!(error["client_id"], "bad-1");
        assert_eq!(error["detail"], "content: Not a valid string.");
        let error = refused(json!({"type": "message.send", "content": "hi", "client_id": ""}));
        assert_eq!(error["code"], "invalid");
    }

    #[test]
    fn read_edit_and_delete_need_a_message_id() {
        for kind in ["message.read", "message.edit", "message.delete"] {
            let error = refused(json!({"type": kind, "content": "x", "client_id": "c"}));
            assert_eq!(error["code"], "invalid", "{kind}");
            assert_eq!(error["client_id"], "c", "{kind}");
        }
        let command = |frame: Value| match parse_value(frame) {
            Ok(Inbound::Command { command, .. }) => command,
            other => panic!("{other:?}"),
        };
        assert!(matches!(
            command(json!({"type": "message.read", "message_id": "5"})),
            Command::MarkRead { message_id: 5, .. }
        ));
        assert!(matches!(
            command(json!({"type": "message.delete", "message_id": 5})),
            Command::DeleteMessage { message_id: 5, .. }
        ));
        assert!(matches!(
            command(json!({"type": "message.edit", "message_id": 5, "content": "new"})),
            Command::EditMessage { message_id: 5, .. }
        ));
        let error = refused(json!({"type": "message.edit", "message_id": 5}));
        assert_eq!(error["detail"], "content required.");
    }

    #[test]
    fn rejections_map_to_codes() {
        let code = |r: Rejection| -> Value {
            serde_json::from_str::<Value>(&rejection(&r, Some(&json!("c")))).unwrap()["code"]
                .clone()
        };
        assert_eq!(code(Rejection::NotYourMessage), "forbidden");
        assert_eq!(code(Rejection::Blocked), "forbidden");
        assert_eq!(code(Rejection::UnknownMessage), "not_found");
        assert_eq!(code(Rejection::MessageDeleted), "invalid");
        let frame: Value =
            serde_json::from_str(&rejection(&Rejection::NotAMember, Some(&json!("c")))).unwrap();
        assert_eq!(frame["client_id"], "c");
    }
}
