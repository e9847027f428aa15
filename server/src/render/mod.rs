//! The contract's JSON objects (user, profile, message, conversation) and
//! the WebSocket frames built from events, rendered from the read models.
//!
//! `viewer` is the user the object is rendered for: another user's email
//! and phone number are hidden from them (the original showed both to every
//! conversation partner).

use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use vato_eventlog::state::{Conversation, Message, Pin, User};
use vato_eventlog::{Envelope, Event, State, UserId};

use crate::clock::format;

pub mod calls;
mod list;
pub mod notifications;
pub mod views;

pub use list::conversations_text;

use views::{ConversationView, MessageFrame, MessageView, ReactionView, UserView};

tokio::task_local! {
    /// The base of absolute media URLs (`http://host:port`, no trailing
    /// slash) while rendering: set per REST request (`--public-url`, or
    /// the request's `Host`) and around the fan-out and socket replays
    /// (`--public-url`, or the listen address). A task-local rather than a
    /// parameter: every user object nested anywhere (senders, members,
    /// reactions, contacts) gets it without each renderer passing it on.
    static MEDIA_BASE: Arc<str>;
}

/// Runs `render` with `base` as the media URL base.
pub fn with_media_base<R>(base: Arc<str>, render: impl FnOnce() -> R) -> R {
    MEDIA_BASE.sync_scope(base, render)
}

/// Runs `future` with `base` as the media URL base.
pub async fn scope_media_base<F: std::future::Future>(base: Arc<str>, future: F) -> F::Output {
    MEDIA_BASE.scope(base, future).await
}

/// The media base in effect (what [`media_url`] builds on), `""` where
/// none is set.
fn media_base() -> Arc<str> {
    MEDIA_BASE
        .try_with(Arc::clone)
        .unwrap_or_else(|_| Arc::from(""))
}

/// The URL of a media store key: absolute under the current base, or
/// `/media/<key>` where no base is set (or it is empty).
pub fn media_url(key: &str) -> String {
    format!("{}/media/{key}", media_base())
}

/// The 20-key user object (contract 1.1).
pub fn user(u: &User, viewer: Option<UserId>) -> Value {
    json!(UserView::new(u, viewer))
}

/// The user object of `id`, or null if unknown.
pub fn user_id_json(state: &State, id: UserId, viewer: Option<UserId>) -> Value {
    json!(UserView::of(state, id, viewer))
}

/// The profile object (contract 1.2): its 22 keys in the contract's
/// order, then Vato's `first_name` and `last_name` (writable, and shown
/// nowhere else).
pub fn profile(u: &User) -> Value {
    let base = user(u, Some(u.id));
    let mut out = Map::new();
    for key in [
        "id",
        "username",
        "email",
        "display_name",
        "phone_number",
        "avatar",
    ] {
        out.insert(key.into(), base[key].clone());
    }
    // The profile's own copy of the avatar's absolute URL (contract 1.2).
    out.insert("avatar_url".into(), base["avatar"].clone());
    for key in [
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
    ] {
        out.insert(key.into(), base[key].clone());
    }
    out.insert("date_joined".into(), json!(format(u.date_joined)));
    out.insert("settings".into(), base["settings"].clone());
    out.insert("first_name".into(), json!(u.profile.first_name));
    out.insert("last_name".into(), json!(u.profile.last_name));
    Value::Object(out)
}

/// The settings object (contract §2, 16 keys), or null before the first
/// settings call.
pub fn settings(u: &User) -> Value {
    json!(u.settings.as_ref().map(views::SettingsView::new))
}

/// `GET profile/{id}/`: the privacy-filtered view of a user (contract
/// §1.2). Always `id, username, display_name, status_message, bio`; then
/// `avatar` if `show_profile_photo`, `phone_number` if
/// `show_phone_number`, `is_online` and `last_seen_at` if
/// `show_last_seen`. Hidden keys are absent, for the user themselves too.
pub fn public_profile(u: &User) -> Value {
    let p = &u.profile;
    let mut out = Map::new();
    out.insert("id".into(), json!(u.id));
    out.insert("username".into(), json!(u.username));
    out.insert("display_name".into(), json!(u.display_name));
    out.insert("status_message".into(), json!(p.status_message));
    out.insert("bio".into(), json!(p.bio));
    if p.show_profile_photo {
        out.insert("avatar".into(), json!(u.avatar.as_deref().map(media_url)));
    }
    if p.show_phone_number {
        out.insert("phone_number".into(), json!(u.phone_number));
    }
    if p.show_last_seen {
        out.insert("is_online".into(), json!(u.is_online));
        out.insert("last_seen_at".into(), json!(u.last_seen_at.map(format)));
    }
    Value::Object(out)
}

/// The message object: the contract's 15 keys plus `seq` and `client_id`.
/// A deleted message's content is blanked.
pub fn message(state: &State, m: &Message, viewer: Option<UserId>) -> Value {
    json!(MessageView::new(state, m, viewer))
}

/// [`message`] as JSON text, for a page of them.
pub fn message_text(state: &State, m: &Message, viewer: Option<UserId>) -> Box<RawValue> {
    serde_json::value::to_raw_value(&MessageView::new(state, m, viewer))
        .expect("a message object renders")
}

/// A pin as the contract's pin route answers it: `{"id", "message",
/// "pinned_by", "pinned_at"}`.
pub fn pin(state: &State, pin: &Pin, viewer: UserId) -> Value {
    json!({
        "id": pin.id,
        "message": state.message(pin.message_id).map(|m| message(state, &m, Some(viewer))),
        "pinned_by": user_id_json(state, pin.by, Some(viewer)),
        "pinned_at": format(pin.at),
    })
}

pub fn reaction(
    state: &State,
    r: &vato_eventlog::state::Reaction,
    viewer: Option<UserId>,
) -> Value {
    json!(ReactionView::new(state, r, viewer))
}

/// The contact object (contract API-rest.md §4): `id`, `contact` (the
/// user object as its owner may see it), `nickname`, `is_blocked`,
/// `is_favorite`, `added_at`.
pub fn contact(state: &State, c: &vato_eventlog::state::Contact) -> Value {
    json!({
        "id": c.id,
        "contact": user_id_json(state, c.user_id, Some(c.owner)),
        "nickname": c.nickname,
        "is_blocked": c.is_blocked,
        "is_favorite": c.is_favorite,
        "added_at": format(c.added_at),
    })
}

/// The conversation object (contract 1.4's 13 keys, then
/// `pinned_message_ids`), for `viewer`.
pub fn conversation(state: &State, c: &Conversation, viewer: UserId) -> Value {
    json!(ConversationView::new(state, c, viewer))
}

/// The `presence` frame of an event that changes whether a user is
/// online (`UserSeen`: online; `UserWentOffline`: offline), as the user's
/// conversation partners get it: `last_seen_at` is null when the user's
/// `show_last_seen` is off. `None` for any other event.
pub fn presence_frame(state: &State, event: &Event) -> Option<(UserId, String)> {
    let (user_id, is_online, at) = match event {
        Event::UserSeen { user_id, at } => (*user_id, true, *at),
        Event::UserWentOffline { user_id, at } => (*user_id, false, *at),
        _ => return None,
    };
    // A user who hides their last seen is offline with no time in every
    // REST object others get; a frame would tell what those hide.
    if !state.user(user_id)?.profile.show_last_seen {
        return None;
    }
    let frame = json!({
        "type": "presence",
        "user_id": user_id,
        "is_online": is_online,
        "last_seen_at": format(at),
    });
    Some((user_id, frame.to_string()))
}

/// The user who caused a conversation event.
pub fn actor(event: &Event, state: &State) -> Option<UserId> {
    match event {
        Event::MemberAdded { by, .. } | Event::MemberRemoved { by, .. } => Some(*by),
        Event::MessagePosted { sender, .. } => Some(*sender),
        Event::MessageEdited { message_id, .. }
        | Event::MessageDeleted { message_id, .. }
        | Event::AttachmentStored { message_id, .. } => {
            state.message(*message_id).map(|m| m.sender)
        }
        Event::MessagesRead { user_id, .. }
        | Event::ReactionAdded { user_id, .. }
        | Event::ReactionRemoved { user_id, .. } => Some(*user_id),
        Event::ConversationUpdated { by, .. }
        | Event::ConversationDeleted { by, .. }
        | Event::MessagePinned { by, .. }
        | Event::MessageUnpinned { by, .. }
        | Event::CallAnswered { by, .. }
        | Event::CallRejected { by, .. }
        | Event::CallEnded { by, .. }
        | Event::CallUpdated { by, .. }
        | Event::CallDeleted { by, .. } => Some(*by),
        Event::CallStarted { caller, .. } => Some(*caller),
        _ => None,
    }
}

/// [`event_frame`] as text. The frames of messages, nearly all of the
/// traffic, are written straight from the read models, without building a
/// `Value` first (that was most of the fan-out's CPU at 10k messages/s).
pub fn event_text(state: &State, envelope: &Envelope, viewer: Option<UserId>) -> Option<String> {
    match MessageFrame::of(state, envelope, viewer) {
        Some(frame) => serde_json::to_string(&frame).ok(),
        None => event_frame(state, envelope, viewer).map(|frame| frame.to_string()),
    }
}

/// The `message.new` frame of a message as it is now: the answer to an
/// idempotent retry, which appends nothing.
pub fn message_new_text(state: &State, m: &Message, viewer: Option<UserId>) -> Option<String> {
    serde_json::to_string(&MessageFrame::posted(state, m, viewer)).ok()
}

/// The WebSocket frame of a conversation event, for `viewer`. Objects are
/// rendered as they are now (a replayed `message.new` of a message edited
/// since shows the edit; the `message.edited` frame follows it anyway).
pub fn event_frame(state: &State, envelope: &Envelope, viewer: Option<UserId>) -> Option<Value> {
    let (_, seq) = envelope.event.conv_seq()?;
    let frame = match &envelope.event {
        Event::MessagePosted { .. }
        | Event::MessageEdited { .. }
        | Event::AttachmentStored { .. } => json!(MessageFrame::of(state, envelope, viewer)?),
        Event::MessageDeleted { message_id, .. } => json!({
            "type": "message.deleted",
            "message_id": message_id,
            "seq": seq,
        }),
        Event::MessagesRead { user_id, up_to, .. } => json!({
            "type": "message.read",
            "message_id": up_to,
            "user_id": user_id,
            "seq": seq,
        }),
        Event::ReactionAdded {
            reaction_id,
            message_id,
            user_id,
            emoji,
            at,
            ..
        }
        | Event::ReactionRemoved {
            reaction_id,
            message_id,
            user_id,
            emoji,
            at,
            ..
        } => {
            let kind = if matches!(envelope.event, Event::ReactionAdded { .. }) {
                "reaction.added"
            } else {
                "reaction.removed"
            };
            json!({
                "type": kind,
                "message_id": message_id,
                "reaction": {
                    "id": reaction_id,
                    "user": user_id_json(state, *user_id, viewer),
                    "emoji": emoji,
                    "created_at": format(*at),
                },
                "seq": seq,
            })
        }
        Event::MemberAdded {
            conv_id, user_id, ..
        } => json!({
            "type": "member.added",
            "conversation": conv_id,
            "user": user_id_json(state, *user_id, viewer),
            "seq": seq,
        }),
        Event::MemberRemoved {
            conv_id, user_id, ..
        } => json!({
            "type": "member.removed",
            "conversation": conv_id,
            "user_id": user_id,
            "seq": seq,
        }),
        Event::MemberPromoted {
            conv_id, user_id, ..
        } => json!({
            "type": "member.promoted",
            "conversation": conv_id,
            "user_id": user_id,
            "seq": seq,
        }),
        Event::ConversationUpdated {
            conv_id,
            by,
            title,
            description,
            is_public,
            at,
            ..
        } => json!({
            "type": "conversation.updated",
            "conversation": conv_id,
            "title": title,
            "description": description,
            "is_public": is_public,
            "updated_at": format(*at),
            "by": by,
            "seq": seq,
        }),
        Event::ConversationDeleted { conv_id, by, .. } => json!({
            "type": "conversation.deleted",
            "conversation": conv_id,
            "by": by,
            "seq": seq,
        }),
        Event::MessagePinned {
            pin_id,
            message_id,
            by,
            at,
            ..
        } => json!({
            "type": "message.pinned",
            "message_id": message_id,
            "pin_id": pin_id,
            "pinned_by": user_id_json(state, *by, viewer),
            "pinned_at": format(*at),
            "seq": seq,
        }),
        Event::MessageUnpinned {
            pin_id,
            message_id,
            by,
            ..
        } => json!({
            "type": "message.unpinned",
            "message_id": message_id,
            "pin_id": pin_id,
            "by": by,
            "seq": seq,
        }),
        Event::CallStarted { .. }
        | Event::CallAnswered { .. }
        | Event::CallRejected { .. }
        | Event::CallEnded { .. }
        | Event::CallMissed { .. }
        | Event::CallUpdated { .. }
        | Event::CallDeleted { .. } => calls::call_frame(state, &envelope.event, seq)?,
        _ => return None,
    };
    Some(frame)
}
