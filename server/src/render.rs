//! The contract's JSON objects (user, profile, message, conversation) and
//! the WebSocket frames built from events, rendered from the read models.
//!
//! `viewer` is the user the object is rendered for: another user's email
//! and phone number are hidden from them (the original showed both to every
//! conversation partner).

use serde::Serialize;
use serde_json::{json, Map, Value};
use vato_eventlog::state::{Conversation, Message, User};
use vato_eventlog::{
    AttachmentId, ConvId, Envelope, Event, MessageId, ReactionId, Seq, State, UserId,
};

use crate::clock::format;

/// The 20-key user object (contract 1.1).
pub fn user(u: &User, viewer: Option<UserId>) -> Value {
    json!(UserView::new(u, viewer))
}

/// The user object of `id`, or null if unknown.
pub fn user_id_json(state: &State, id: UserId, viewer: Option<UserId>) -> Value {
    json!(UserView::of(state, id, viewer))
}

/// The 22-key profile object (contract 1.2), keys in the contract's order.
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
    out.insert("avatar_url".into(), Value::Null);
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
    out.insert("settings".into(), Value::Null);
    Value::Object(out)
}

/// The message object: the contract's 15 keys plus `seq` and `client_id`.
/// A deleted message's content is blanked.
pub fn message(state: &State, m: &Message, viewer: Option<UserId>) -> Value {
    json!(MessageView::new(state, m, viewer))
}

pub fn reaction(
    state: &State,
    r: &vato_eventlog::state::Reaction,
    viewer: Option<UserId>,
) -> Value {
    json!(ReactionView::new(state, r, viewer))
}

/// The 13-key conversation object (contract 1.4), for `viewer`.
pub fn conversation(state: &State, c: &Conversation, viewer: UserId) -> Value {
    let members: Vec<Value> = c
        .members
        .iter()
        .map(|(uid, m)| {
            json!({
                "id": m.id,
                "user": user_id_json(state, *uid, Some(viewer)),
                "nickname": "",
                "is_admin": m.is_admin,
                "joined_at": format(m.joined_at),
                "muted_until": Value::Null,
            })
        })
        .collect();
    let last_message = c
        .last_message
        .and_then(|id| state.message(id))
        .map(|m| message(state, m, Some(viewer)));
    json!({
        "id": c.id,
        "title": c.title,
        "conversation_type": c.kind.as_str(),
        "owner": c.owner,
        "description": c.description,
        "created_at": format(c.created_at),
        "updated_at": format(c.updated_at),
        "avatar": Value::Null,
        "is_public": c.is_public,
        "invite_link": Value::Null,
        "members": members,
        "last_message": last_message,
        "unread_count": state.unread_count(c, viewer),
    })
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
        _ => return None,
    };
    Some(frame)
}

// The views below are the contract's objects as serde structs: rendered to
// text in one pass, and to a `Value` (field order kept) where a handler
// needs one. Each is the only definition of its object.

#[derive(Serialize)]
struct UserView<'a> {
    id: UserId,
    username: &'a str,
    email: &'a str,
    display_name: &'a str,
    phone_number: Option<&'a str>,
    avatar: (),
    status_message: &'static str,
    bio: &'static str,
    is_online: bool,
    last_seen_at: Option<String>,
    date_of_birth: (),
    country: &'static str,
    city: &'static str,
    website: &'static str,
    show_phone_number: bool,
    show_last_seen: bool,
    show_profile_photo: bool,
    allow_calls: bool,
    allow_group_invite: bool,
    settings: (),
}

impl<'a> UserView<'a> {
    fn new(u: &'a User, viewer: Option<UserId>) -> Self {
        let own = viewer == Some(u.id);
        UserView {
            id: u.id,
            username: &u.username,
            email: if own { &u.email } else { "" },
            display_name: &u.display_name,
            phone_number: if own { u.phone_number.as_deref() } else { None },
            avatar: (),
            status_message: "",
            bio: "",
            is_online: u.is_online,
            last_seen_at: u.last_seen_at.map(format),
            date_of_birth: (),
            country: "",
            city: "",
            website: "",
            show_phone_number: false,
            show_last_seen: true,
            show_profile_photo: true,
            allow_calls: true,
            allow_group_invite: true,
            settings: (),
        }
    }

    /// The user object of `id`, or null if unknown.
    fn of(state: &'a State, id: UserId, viewer: Option<UserId>) -> Option<Self> {
        state.user(id).map(|u| UserView::new(u, viewer))
    }
}

#[derive(Serialize)]
struct MessageView<'a> {
    id: MessageId,
    conversation: ConvId,
    sender: Option<UserView<'a>>,
    message_type: &'a str,
    content: &'a str,
    created_at: String,
    edited_at: Option<String>,
    reply_to: Option<MessageId>,
    reply_to_message: Option<QuotedMessage<'a>>,
    forwarded_from: Option<MessageId>,
    forwarded_from_message: Option<ForwardedMessage<'a>>,
    is_deleted: bool,
    attachments: Vec<AttachmentView<'a>>,
    receipts: Vec<Receipt<'a>>,
    reactions: Vec<ReactionView<'a>>,
    seq: Seq,
    client_id: Option<&'a str>,
}

#[derive(Serialize)]
struct QuotedMessage<'a> {
    id: MessageId,
    sender: Option<UserView<'a>>,
    content: String,
}

#[derive(Serialize)]
struct ForwardedMessage<'a> {
    id: MessageId,
    sender: Option<UserView<'a>>,
}

#[derive(Serialize)]
struct Receipt<'a> {
    user: Option<UserView<'a>>,
    state: &'static str,
    updated_at: String,
}

#[derive(Serialize)]
struct AttachmentView<'a> {
    id: AttachmentId,
    file: String,
    file_name: &'a str,
    file_size: u64,
    mime_type: &'a str,
    download_url: String,
}

#[derive(Serialize)]
struct ReactionView<'a> {
    id: ReactionId,
    user: Option<UserView<'a>>,
    emoji: &'a str,
    created_at: String,
}

impl<'a> ReactionView<'a> {
    fn new(
        state: &'a State,
        r: &'a vato_eventlog::state::Reaction,
        viewer: Option<UserId>,
    ) -> Self {
        ReactionView {
            id: r.id,
            user: UserView::of(state, r.user_id, viewer),
            emoji: &r.emoji,
            created_at: format(r.created_at),
        }
    }
}

impl<'a> MessageView<'a> {
    fn new(state: &'a State, m: &'a Message, viewer: Option<UserId>) -> Self {
        let reply_to_message = m
            .reply_to
            .and_then(|id| state.message(id))
            .map(|r| QuotedMessage {
                id: r.id,
                sender: UserView::of(state, r.sender, viewer),
                content: if r.is_deleted {
                    String::new()
                } else {
                    r.content.chars().take(100).collect()
                },
            });
        let forwarded_from_message =
            m.forwarded_from
                .and_then(|id| state.message(id))
                .map(|f| ForwardedMessage {
                    id: f.id,
                    sender: UserView::of(state, f.sender, viewer),
                });
        let mut receipts = vec![Receipt {
            user: UserView::of(state, m.sender, viewer),
            state: "sent",
            updated_at: format(m.created_at),
        }];
        if let Some(conv) = state.conversation(m.conv_id) {
            for (reader, at) in state.readers_of(conv, m.id) {
                if reader != m.sender {
                    receipts.push(Receipt {
                        user: UserView::of(state, reader, viewer),
                        state: "read",
                        updated_at: format(at),
                    });
                }
            }
        }
        MessageView {
            id: m.id,
            conversation: m.conv_id,
            sender: UserView::of(state, m.sender, viewer),
            message_type: &m.message_type,
            content: if m.is_deleted { "" } else { &m.content },
            created_at: format(m.created_at),
            edited_at: m.edited_at.map(format),
            reply_to: m.reply_to,
            reply_to_message,
            forwarded_from: m.forwarded_from,
            forwarded_from_message,
            is_deleted: m.is_deleted,
            attachments: m
                .attachments
                .iter()
                .map(|a| AttachmentView {
                    id: a.id,
                    file: format!("/media/attachments/{}", a.blob_key),
                    file_name: &a.file_name,
                    file_size: a.file_size,
                    mime_type: &a.mime_type,
                    download_url: format!("/api/chat/attachments/{}/download/", a.id),
                })
                .collect(),
            receipts,
            reactions: m
                .reactions
                .iter()
                .map(|r| ReactionView::new(state, r, viewer))
                .collect(),
            seq: m.seq,
            client_id: m.client_id.as_deref(),
        }
    }
}

/// `message.new` (with the sender's `client_id`) or `message.edited`.
#[derive(Serialize)]
struct MessageFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    data: MessageView<'a>,
    seq: Seq,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<Option<&'a str>>,
}

impl<'a> MessageFrame<'a> {
    /// The frame of a message event; `None` for other events or a message
    /// the read models do not have.
    fn of(state: &'a State, envelope: &'a Envelope, viewer: Option<UserId>) -> Option<Self> {
        let (_, seq) = envelope.event.conv_seq()?;
        match &envelope.event {
            Event::MessagePosted { message_id, .. } => {
                Some(Self::posted(state, state.message(*message_id)?, viewer))
            }
            Event::MessageEdited { message_id, .. }
            | Event::AttachmentStored { message_id, .. } => Some(MessageFrame {
                kind: "message.edited",
                data: MessageView::new(state, state.message(*message_id)?, viewer),
                seq,
                client_id: None,
            }),
            _ => None,
        }
    }

    /// `message.new` of a message: its seq and the sender's `client_id`
    /// are those of the event that posted it.
    fn posted(state: &'a State, m: &'a Message, viewer: Option<UserId>) -> Self {
        MessageFrame {
            kind: "message.new",
            data: MessageView::new(state, m, viewer),
            seq: m.seq,
            client_id: Some(m.client_id.as_deref()),
        }
    }
}
