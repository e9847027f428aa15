//! Notifications (issue 15): the object of `/api/chat/notifications/`
//! (the original's table, API-rest §8) and the push webhook's payload.
//! Title and body are rendered when asked, from the message or call as it
//! is then, with the recipient's `message_preview` then.

use serde_json::{json, Value};
use vato_eventlog::state::{Notification, User};
use vato_eventlog::{ConvKind, State};

use crate::clock::format;

/// What a notification says: its title and its body.
pub fn title_and_body(state: &State, n: &Notification) -> (String, String) {
    let sender = name(state.user(n.from));
    let conv = state.conversation(n.conv_id);
    let group = conv.filter(|c| c.kind == ConvKind::Group);
    if n.kind == "call" {
        let call_type = n
            .call_id
            .and_then(|id| state.call(id))
            .map_or("voice", |c| c.call_type.as_str());
        let title = match group {
            Some(g) => format!("{sender} in {}", g.title),
            None => sender,
        };
        return (title, format!("Incoming {call_type} call"));
    }
    let preview = state
        .user(n.user)
        .and_then(|u| u.settings.as_ref())
        .is_none_or(|s| s.values.message_preview);
    let text = match n.message_id.and_then(|id| state.message_in(n.conv_id, id)) {
        _ if !preview => "New message".to_owned(),
        None => "New message".to_owned(),
        Some(m) if m.is_deleted => "This message was deleted.".to_owned(),
        Some(m) if m.content.trim().is_empty() && !m.attachments.is_empty() => {
            "Sent an attachment".to_owned()
        }
        Some(m) => m.content,
    };
    match group {
        Some(g) => (g.title.clone(), format!("{sender}: {text}")),
        None => (sender, text),
    }
}

/// A user's display name, else their username.
fn name(user: Option<&User>) -> String {
    match user {
        Some(u) if !u.display_name.trim().is_empty() => u.display_name.clone(),
        Some(u) => u.username.clone(),
        None => "Someone".to_owned(),
    }
}

/// The original's notification object: its column names, related rows as
/// ids.
pub fn notification(state: &State, n: &Notification) -> Value {
    let (title, message) = title_and_body(state, n);
    json!({
        "id": n.id,
        "user": n.user,
        "notification_type": n.kind,
        "title": title,
        "message": message,
        "is_read": n.is_read,
        "created_at": format(n.created_at),
        "related_conversation": n.conv_id,
        "related_message": n.message_id,
        "related_call": n.call_id,
        "related_user": n.from,
    })
}

/// The JSON the push webhook receives for notification `n`.
pub fn push_payload(state: &State, n: &Notification) -> Value {
    let (title, body) = title_and_body(state, n);
    let mut data = json!({
        "conversation_id": n.conv_id,
        "sender_id": n.from,
        "created_at": format(n.created_at),
    });
    if let Some(message_id) = n.message_id {
        data["message_id"] = json!(message_id);
    }
    if let Some(call) = n.call_id.and_then(|id| state.call(id)) {
        data["call_id"] = json!(call.id);
        data["call_type"] = json!(call.call_type);
    }
    let devices: Vec<Value> = state
        .devices_of(n.user)
        .iter()
        .map(|d| json!({"token": d.token, "platform": d.platform}))
        .collect();
    json!({
        "id": n.id.to_string(),
        "user_id": n.user,
        "kind": n.kind,
        "conversation_id": n.conv_id,
        "title": title,
        "body": body,
        "data": data,
        "devices": devices,
    })
}
