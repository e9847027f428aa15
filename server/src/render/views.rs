//! The contract's objects as serde structs: rendered to text in one pass,
//! and to a `Value` (field order kept) where a handler needs one. Each is
//! the only definition of its object.

use serde::Serialize;
use vato_eventlog::state::{Message, User};
use vato_eventlog::{
    AttachmentId, ConvId, Envelope, Event, MessageId, ReactionId, Seq, State, UserId,
};

use crate::clock::format;

#[derive(Serialize)]
pub(super) struct UserView<'a> {
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
    pub(super) fn new(u: &'a User, viewer: Option<UserId>) -> Self {
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
    pub(super) fn of(state: &'a State, id: UserId, viewer: Option<UserId>) -> Option<Self> {
        state.user(id).map(|u| UserView::new(u, viewer))
    }
}

#[derive(Serialize)]
pub(super) struct MessageView<'a> {
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
pub(super) struct QuotedMessage<'a> {
    id: MessageId,
    sender: Option<UserView<'a>>,
    content: String,
}

#[derive(Serialize)]
pub(super) struct ForwardedMessage<'a> {
    id: MessageId,
    sender: Option<UserView<'a>>,
}

#[derive(Serialize)]
pub(super) struct Receipt<'a> {
    user: Option<UserView<'a>>,
    state: &'static str,
    updated_at: String,
}

#[derive(Serialize)]
pub(super) struct AttachmentView<'a> {
    id: AttachmentId,
    file: String,
    file_name: &'a str,
    file_size: u64,
    mime_type: &'a str,
    download_url: String,
}

#[derive(Serialize)]
pub(super) struct ReactionView<'a> {
    id: ReactionId,
    user: Option<UserView<'a>>,
    emoji: &'a str,
    created_at: String,
}

impl<'a> ReactionView<'a> {
    pub(super) fn new(
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
    pub(super) fn new(state: &'a State, m: &'a Message, viewer: Option<UserId>) -> Self {
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
pub(super) struct MessageFrame<'a> {
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
    pub(super) fn of(
        state: &'a State,
        envelope: &'a Envelope,
        viewer: Option<UserId>,
    ) -> Option<Self> {
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
    pub(super) fn posted(state: &'a State, m: &'a Message, viewer: Option<UserId>) -> Self {
        MessageFrame {
            kind: "message.new",
            data: MessageView::new(state, m, viewer),
            seq: m.seq,
            client_id: Some(m.client_id.as_deref()),
        }
    }
}
