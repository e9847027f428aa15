//! Socket frames (PROTOCOL.md, "Frames"): builders for what a client sends,
//! and typed access to what the server sends.
//!
//! Frames stay `serde_json::Value`: tests assert on exact keys, and a
//! checker must be able to show a frame it did not expect. [`Kind`] names
//! every frame type once; the accessors read the fields every caller needs
//! without copying.

use serde_json::{json, Value};

/// Every frame type of the protocol, inbound and outbound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    // Client → server.
    MessageSend,
    MessageEdit,
    MessageDelete,
    Sync,
    Ping,
    CallAnswer,
    // Server → client.
    MessageNew,
    MessageEdited,
    MessageDeleted,
    ReactionAdded,
    ReactionRemoved,
    MemberAdded,
    MemberRemoved,
    MemberPromoted,
    ConversationUpdated,
    ConversationDeleted,
    MessagePinned,
    MessageUnpinned,
    Pong,
    SyncDone,
    Error,
    Presence,
    CallIncoming,
    CallAnswered,
    CallEnded,
    // Both ways: the client's frame and the server's event share a name.
    MessageRead,
    Typing,
    WebrtcOffer,
    WebrtcAnswer,
}

impl Kind {
    /// Every kind.
    #[cfg(test)]
    const ALL: [Kind; 29] = [
        Kind::MessageSend,
        Kind::MessageEdit,
        Kind::MessageDelete,
        Kind::Sync,
        Kind::Ping,
        Kind::MessageNew,
        Kind::MessageEdited,
        Kind::MessageDeleted,
        Kind::ReactionAdded,
        Kind::ReactionRemoved,
        Kind::MemberAdded,
        Kind::MemberRemoved,
        Kind::MemberPromoted,
        Kind::ConversationUpdated,
        Kind::ConversationDeleted,
        Kind::MessagePinned,
        Kind::MessageUnpinned,
        Kind::Pong,
        Kind::SyncDone,
        Kind::Error,
        Kind::Presence,
        Kind::MessageRead,
        Kind::Typing,
        Kind::CallAnswer,
        Kind::CallIncoming,
        Kind::CallAnswered,
        Kind::CallEnded,
        Kind::WebrtcOffer,
        Kind::WebrtcAnswer,
    ];

    /// The `type` field's value.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::MessageSend => "message.send",
            Kind::MessageEdit => "message.edit",
            Kind::MessageDelete => "message.delete",
            Kind::Sync => "sync",
            Kind::Ping => "ping",
            Kind::MessageNew => "message.new",
            Kind::MessageEdited => "message.edited",
            Kind::MessageDeleted => "message.deleted",
            Kind::ReactionAdded => "reaction.added",
            Kind::ReactionRemoved => "reaction.removed",
            Kind::MemberAdded => "member.added",
            Kind::MemberRemoved => "member.removed",
            Kind::MemberPromoted => "member.promoted",
            Kind::ConversationUpdated => "conversation.updated",
            Kind::ConversationDeleted => "conversation.deleted",
            Kind::MessagePinned => "message.pinned",
            Kind::MessageUnpinned => "message.unpinned",
            Kind::Pong => "pong",
            Kind::SyncDone => "sync.done",
            Kind::Error => "error",
            Kind::Presence => "presence",
            Kind::MessageRead => "message.read",
            Kind::Typing => "typing",
            Kind::CallAnswer => "call.answer",
            Kind::CallIncoming => "call.incoming",
            Kind::CallAnswered => "call.answered",
            Kind::CallEnded => "call.ended",
            Kind::WebrtcOffer => "webrtc.offer",
            Kind::WebrtcAnswer => "webrtc.answer",
        }
    }

    /// The kind called `name`, if the protocol has one.
    pub fn from_name(name: &str) -> Option<Kind> {
        Some(match name {
            "message.send" => Kind::MessageSend,
            "message.edit" => Kind::MessageEdit,
            "message.delete" => Kind::MessageDelete,
            "sync" => Kind::Sync,
            "ping" => Kind::Ping,
            "message.new" => Kind::MessageNew,
            "message.edited" => Kind::MessageEdited,
            "message.deleted" => Kind::MessageDeleted,
            "reaction.added" => Kind::ReactionAdded,
            "reaction.removed" => Kind::ReactionRemoved,
            "member.added" => Kind::MemberAdded,
            "member.removed" => Kind::MemberRemoved,
            "member.promoted" => Kind::MemberPromoted,
            "conversation.updated" => Kind::ConversationUpdated,
            "conversation.deleted" => Kind::ConversationDeleted,
            "message.pinned" => Kind::MessagePinned,
            "message.unpinned" => Kind::MessageUnpinned,
            "pong" => Kind::Pong,
            "sync.done" => Kind::SyncDone,
            "error" => Kind::Error,
            "presence" => Kind::Presence,
            "message.read" => Kind::MessageRead,
            "typing" => Kind::Typing,
            "call.answer" => Kind::CallAnswer,
            "call.incoming" => Kind::CallIncoming,
            "call.answered" => Kind::CallAnswered,
            "call.ended" => Kind::CallEnded,
            "webrtc.offer" => Kind::WebrtcOffer,
            "webrtc.answer" => Kind::WebrtcAnswer,
            _ => return None,
        })
    }

    /// The kind of `frame` (`None`: no `type`, or one the protocol lacks).
    pub fn of(frame: &Value) -> Option<Kind> {
        type_name(frame).and_then(Kind::from_name)
    }

    /// Whether `frame` is of this kind.
    pub fn is(self, frame: &Value) -> bool {
        type_name(frame) == Some(self.name())
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

// ------------------------------------------------------------ accessors

/// The frame's `type` field.
pub fn type_name(frame: &Value) -> Option<&str> {
    frame.get("type").and_then(Value::as_str)
}

/// The event's per-conversation seq (frames that are not stored have none).
pub fn seq(frame: &Value) -> Option<u64> {
    frame.get("seq").and_then(Value::as_u64)
}

/// The message object of `message.new` / `message.edited`.
pub fn message(frame: &Value) -> Option<&Value> {
    frame.get("data")
}

/// The content of the frame's message object.
pub fn content(frame: &Value) -> Option<&str> {
    message(frame)?.get("content").and_then(Value::as_str)
}

/// The sender's id of the frame's message object.
pub fn sender_id(frame: &Value) -> Option<u64> {
    message(frame)?.get("sender")?.get("id")?.as_u64()
}

/// The `client_id` the frame echoes, if any.
pub fn client_id(frame: &Value) -> Option<&str> {
    frame.get("client_id").and_then(Value::as_str)
}

/// `code` and `detail` of an `error` frame.
pub fn error(frame: &Value) -> Option<(&str, &str)> {
    if !Kind::Error.is(frame) {
        return None;
    }
    let code = frame.get("code").and_then(Value::as_str).unwrap_or("?");
    let detail = frame.get("detail").and_then(Value::as_str).unwrap_or("");
    Some((code, detail))
}

// ------------------------------------------------------------ client → server

/// `message.send`: `client_id` makes a retry idempotent; `reply_to` is a
/// message id of the same conversation.
pub fn send(content: &str, client_id: Option<&str>, reply_to: Option<u64>) -> Value {
    let mut frame = json!({"type": Kind::MessageSend.name(), "content": content});
    if let Some(client_id) = client_id {
        frame["client_id"] = json!(client_id);
    }
    if let Some(reply_to) = reply_to {
        frame["reply_to"] = json!(reply_to);
    }
    frame
}

/// `message.send` as text, built without a `Value`: the load generator's
/// hot path (content and client id are the generator's own ASCII).
pub fn send_text(content: &str, client_id: &str) -> String {
    // One allocation: serde_json escapes the strings straight into it.
    let mut text = Vec::with_capacity(content.len() + client_id.len() + 64);
    text.extend_from_slice(br#"{"type":"message.send","content":"#);
    serde_json::to_writer(&mut text, content).expect("a str serializes");
    text.extend_from_slice(br#","client_id":"#);
    serde_json::to_writer(&mut text, client_id).expect("a str serializes");
    text.push(b'}');
    String::from_utf8(text).expect("JSON is UTF-8")
}

/// `typing`: started (`true`) or stopped typing.
pub fn typing(is_typing: bool) -> Value {
    json!({"type": Kind::Typing.name(), "is_typing": is_typing})
}

/// `message.read`: everything up to `message_id` is read.
pub fn read(message_id: u64) -> Value {
    json!({"type": Kind::MessageRead.name(), "message_id": message_id})
}

/// `message.edit` of one's own message.
pub fn edit(message_id: u64, content: &str) -> Value {
    json!({"type": Kind::MessageEdit.name(), "message_id": message_id, "content": content})
}

/// `message.delete` of one's own message.
pub fn delete(message_id: u64) -> Value {
    json!({"type": Kind::MessageDelete.name(), "message_id": message_id})
}

/// `sync`: replay every event after `since`, then `sync.done`.
pub fn sync(since: u64) -> Value {
    json!({"type": Kind::Sync.name(), "since": since})
}

/// `ping`: the server answers `pong` to this socket.
pub fn ping() -> Value {
    json!({"type": Kind::Ping.name()})
}

/// `{"type":"ping"}` as text.
pub const PING_TEXT: &str = r#"{"type":"ping"}"#;

// ------------------------------------------------------------ server → client
//
// What a server sends, built here too: stand-in servers in tests speak the
// same frames, and a test can compare a frame with the expected one.

/// `message.new`: the message object, its seq, the echoed client id.
pub fn message_new(message: Value, seq: u64, client_id: Option<&str>) -> Value {
    json!({"type": Kind::MessageNew.name(), "data": message, "seq": seq, "client_id": client_id})
}

/// `message.edited`: the edited message object and the edit's seq.
pub fn message_edited(message: Value, seq: u64) -> Value {
    json!({"type": Kind::MessageEdited.name(), "data": message, "seq": seq})
}

/// `message.deleted`.
pub fn message_deleted(message_id: u64, seq: u64) -> Value {
    json!({"type": Kind::MessageDeleted.name(), "message_id": message_id, "seq": seq})
}

/// `message.read` as the server relays it.
pub fn message_read(message_id: u64, user_id: u64, seq: u64) -> Value {
    json!({"type": Kind::MessageRead.name(), "message_id": message_id, "user_id": user_id, "seq": seq})
}

/// `typing` as the server relays it.
pub fn typing_event(user_id: u64, username: &str, is_typing: bool) -> Value {
    json!({"type": Kind::Typing.name(), "user_id": user_id, "username": username, "is_typing": is_typing})
}

/// `pong`.
pub fn pong() -> Value {
    json!({"type": Kind::Pong.name()})
}

/// `sync.done` after a replay up to `seq`.
pub fn sync_done(seq: u64) -> Value {
    json!({"type": Kind::SyncDone.name(), "seq": seq})
}

/// `error` with its code (`invalid`, `not_found`, ...) and detail.
pub fn error_frame(code: &str, detail: &str) -> Value {
    json!({"type": Kind::Error.name(), "code": code, "detail": detail})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in Kind::ALL {
            assert_eq!(Kind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(Kind::of(&json!({"type": "nope"})), None);
        assert_eq!(Kind::of(&pong()), Some(Kind::Pong));
    }

    #[test]
    fn send_text_is_the_send_frame() {
        let text = send_text("a \"quoted\"\nline", "vl-7");
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, send("a \"quoted\"\nline", Some("vl-7"), None));
    }

    #[test]
    fn reads_fields() {
        let frame = message_new(json!({"content": "hi", "sender": {"id": 3}}), 4, Some("c"));
        assert_eq!(seq(&frame), Some(4));
        assert_eq!(content(&frame), Some("hi"));
        assert_eq!(sender_id(&frame), Some(3));
        assert_eq!(client_id(&frame), Some("c"));
        assert_eq!(error(&error_frame("invalid", "x")), Some(("invalid", "x")));
    }
}
