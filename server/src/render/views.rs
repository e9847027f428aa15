//! The contract's objects as serde structs: rendered to text in one pass,
//! and to a `Value` (field order kept) where a handler needs one. Each is
//! the only definition of its object.

use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;
use vato_eventlog::profile::Settings;
use vato_eventlog::state::{Conversation, Member, Message, User};
use vato_eventlog::{
    AttachmentId, ConvId, Envelope, Event, MessageId, ReactionId, Seq, State, UserId,
};

use crate::clock::format;

#[derive(Serialize, ToSchema)]
#[schema(as = User)]
pub struct UserView<'a> {
    id: UserId,
    username: &'a str,
    email: &'a str,
    display_name: &'a str,
    phone_number: Option<&'a str>,
    avatar: Option<String>,
    status_message: &'a str,
    bio: &'a str,
    is_online: bool,
    last_seen_at: Option<String>,
    date_of_birth: Option<&'a str>,
    country: &'a str,
    city: &'a str,
    website: &'a str,
    show_phone_number: bool,
    show_last_seen: bool,
    show_profile_photo: bool,
    allow_calls: bool,
    allow_group_invite: bool,
    settings: Option<SettingsView<'a>>,
}

impl<'a> UserView<'a> {
    /// The user as `viewer` may see them. Others get `email` `""`,
    /// `date_of_birth` and `settings` null, `phone_number` only if
    /// `show_phone_number`, `avatar` only if `show_profile_photo`, and `is_online` false with `last_seen_at` null
    /// unless `show_last_seen`; the keys stay (the object has 20).
    pub(super) fn new(u: &'a User, viewer: Option<UserId>) -> Self {
        let own = viewer == Some(u.id);
        let p = &u.profile;
        let presence = own || p.show_last_seen;
        UserView {
            id: u.id,
            username: &u.username,
            email: if own { &u.email } else { "" },
            display_name: &u.display_name,
            phone_number: if own || p.show_phone_number {
                u.phone_number.as_deref()
            } else {
                None
            },
            // Hidden from others as the profile view hides it.
            avatar: u
                .avatar
                .as_deref()
                .filter(|_| own || p.show_profile_photo)
                .map(super::media_url),
            status_message: &p.status_message,
            bio: &p.bio,
            is_online: presence && u.is_online,
            last_seen_at: u.last_seen_at.filter(|_| presence).map(format),
            date_of_birth: p.date_of_birth.as_deref().filter(|_| own),
            country: &p.country,
            city: &p.city,
            website: &p.website,
            show_phone_number: p.show_phone_number,
            show_last_seen: p.show_last_seen,
            show_profile_photo: p.show_profile_photo,
            allow_calls: p.allow_calls,
            allow_group_invite: p.allow_group_invite,
            settings: u.settings.as_ref().filter(|_| own).map(SettingsView::new),
        }
    }

    /// The user object of `id`, or null if unknown.
    pub(super) fn of(state: &'a State, id: UserId, viewer: Option<UserId>) -> Option<Self> {
        state.user(id).map(|u| UserView::new(u, viewer))
    }
}

/// A user object nested in another (a sender, a member, a reader, a
/// reaction's author). Its own user gets it rendered live; everyone else
/// gets the text cached on the user ([`User::rendered`]), rendered once
/// per change to the user (about 600 bytes per user, bounded by the
/// users). The list of a user in 500 groups of 8 holds 4,000 of them:
/// rendered anew they were a fifth of its CPU, and its p50 went 6.4 ->
/// 5.5 ms with them kept (BENCHMARKS.md, #12).
pub enum UserRef<'a> {
    Own(Box<UserView<'a>>),
    Others(Arc<OthersText>),
}

/// A user's object as others see it, as JSON text. `base` is the media
/// base its avatar URL was made under, `None` when it holds no URL; under
/// another base it is rendered again (and not cached). No base is `""`,
/// as for [`super::media_url`].
pub struct OthersText {
    base: Option<Arc<str>>,
    json: Box<RawValue>,
}

impl OthersText {
    fn render(u: &User) -> Self {
        let view = UserView::new(u, None);
        OthersText {
            base: view.avatar.as_ref().map(|_| super::media_base()),
            json: serde_json::value::to_raw_value(&view).expect("a user object renders"),
        }
    }
}

impl<'a> UserRef<'a> {
    pub(super) fn of(state: &'a State, id: UserId, viewer: Option<UserId>) -> Option<Self> {
        let u = state.user(id)?;
        if viewer == Some(id) {
            return Some(UserRef::Own(Box::new(UserView::new(u, viewer))));
        }
        let cached = u.rendered.get_or_init(|| OthersText::render(u));
        let current = match &cached.base {
            Some(base) if *super::media_base() != **base => Arc::new(OthersText::render(u)),
            _ => cached,
        };
        Some(UserRef::Others(current))
    }

    /// Appends what [`UserRef::of`] serializes to (`null` for an unknown
    /// user), with `base` the media base in effect: the conversation
    /// list's thousands of nested users, each without an `Arc` count
    /// touched or the task-local base read again.
    pub(super) fn write(state: &State, id: UserId, viewer: UserId, base: &str, out: &mut Vec<u8>) {
        let Some(u) = state.user(id) else {
            out.extend_from_slice(b"null");
            return;
        };
        if viewer == id {
            serde_json::to_writer(&mut *out, &UserView::new(u, Some(viewer)))
                .expect("a user object renders");
            return;
        }
        let fresh;
        let cached = match u.rendered.get::<OthersText>() {
            Some(cached) => cached,
            None => {
                fresh = u.rendered.get_or_init(|| OthersText::render(u));
                &*fresh
            }
        };
        match &cached.base {
            Some(made_under) if **made_under != *base => {
                out.extend_from_slice(OthersText::render(u).json.get().as_bytes())
            }
            _ => out.extend_from_slice(cached.json.get().as_bytes()),
        }
    }
}

impl Serialize for UserRef<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            UserRef::Own(view) => view.serialize(serializer),
            UserRef::Others(text) => text.json.serialize(serializer),
        }
    }
}

/// The settings object's 16 keys (contract §2), in its order.
#[derive(Serialize, ToSchema)]
#[schema(as = Settings)]
pub struct SettingsView<'a> {
    id: u64,
    enable_notifications: bool,
    notification_sound: bool,
    message_preview: bool,
    enter_to_send: bool,
    auto_download_photos: bool,
    auto_download_videos: bool,
    auto_download_files: bool,
    two_factor_enabled: bool,
    show_typing_indicator: bool,
    show_read_receipts: bool,
    theme: &'a str,
    font_size: &'a str,
    language: &'a str,
    created_at: String,
    updated_at: String,
}

impl<'a> SettingsView<'a> {
    pub(super) fn new(s: &'a Settings) -> Self {
        let v = &s.values;
        SettingsView {
            id: s.id,
            enable_notifications: v.enable_notifications,
            notification_sound: v.notification_sound,
            message_preview: v.message_preview,
            enter_to_send: v.enter_to_send,
            auto_download_photos: v.auto_download_photos,
            auto_download_videos: v.auto_download_videos,
            auto_download_files: v.auto_download_files,
            two_factor_enabled: v.two_factor_enabled,
            show_typing_indicator: v.show_typing_indicator,
            show_read_receipts: v.show_read_receipts,
            theme: &v.theme,
            font_size: &v.font_size,
            language: &v.language,
            created_at: format(s.created_at),
            updated_at: format(s.updated_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = Message)]
pub struct MessageView<'a> {
    id: MessageId,
    conversation: ConvId,
    #[schema(value_type = Option<UserView>)]
    sender: Option<UserRef<'a>>,
    message_type: String,
    content: String,
    created_at: String,
    edited_at: Option<String>,
    reply_to: Option<MessageId>,
    reply_to_message: Option<QuotedMessage<'a>>,
    forwarded_from: Option<MessageId>,
    forwarded_from_message: Option<ForwardedMessage<'a>>,
    is_deleted: bool,
    attachments: Vec<AttachmentView>,
    receipts: Vec<Receipt<'a>>,
    reactions: Vec<ReactionView<'a>>,
    seq: Seq,
    client_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = QuotedMessage)]
pub struct QuotedMessage<'a> {
    id: MessageId,
    #[schema(value_type = Option<UserView>)]
    sender: Option<UserRef<'a>>,
    content: String,
}

#[derive(Serialize, ToSchema)]
#[schema(as = ForwardedMessage)]
pub struct ForwardedMessage<'a> {
    id: MessageId,
    #[schema(value_type = Option<UserView>)]
    sender: Option<UserRef<'a>>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = Receipt)]
pub struct Receipt<'a> {
    #[schema(value_type = Option<UserView>)]
    user: Option<UserRef<'a>>,
    state: &'static str,
    updated_at: String,
}

#[derive(Serialize, ToSchema)]
#[schema(as = Attachment)]
pub struct AttachmentView {
    id: AttachmentId,
    file: String,
    file_name: String,
    file_size: u64,
    mime_type: String,
    download_url: String,
}

#[derive(Serialize, ToSchema)]
#[schema(as = Reaction)]
pub struct ReactionView<'a> {
    id: ReactionId,
    #[schema(value_type = Option<UserView>)]
    user: Option<UserRef<'a>>,
    emoji: String,
    created_at: String,
}

impl<'a> ReactionView<'a> {
    pub(super) fn new(
        state: &'a State,
        r: &vato_eventlog::state::Reaction,
        viewer: Option<UserId>,
    ) -> Self {
        ReactionView {
            id: r.id,
            user: UserRef::of(state, r.user_id, viewer),
            emoji: r.emoji.clone(),
            created_at: format(r.created_at),
        }
    }
}

impl<'a> MessageView<'a> {
    /// Owns what it takes of `m`: messages are read from disk, so the
    /// view outlives the copy it was made from.
    pub(super) fn new(state: &'a State, m: &Message, viewer: Option<UserId>) -> Self {
        let reply_to_message = m
            .reply_to
            .and_then(|id| state.message(id))
            .map(|r| QuotedMessage {
                id: r.id,
                sender: UserRef::of(state, r.sender, viewer),
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
                    sender: UserRef::of(state, f.sender, viewer),
                });
        let mut receipts = vec![Receipt {
            user: UserRef::of(state, m.sender, viewer),
            state: "sent",
            updated_at: format(m.created_at),
        }];
        if let Some(conv) = state.conversation(m.conv_id) {
            for (reader, at) in state.readers_of(conv, m.id) {
                // A reader who hides read receipts is shown only to
                // themselves.
                let shown = viewer == Some(reader)
                    || state.user(reader).is_some_and(User::shows_read_receipts);
                if reader != m.sender && shown {
                    receipts.push(Receipt {
                        user: UserRef::of(state, reader, viewer),
                        state: "read",
                        updated_at: format(at),
                    });
                }
            }
        }
        MessageView {
            id: m.id,
            conversation: m.conv_id,
            sender: UserRef::of(state, m.sender, viewer),
            message_type: m.message_type.clone(),
            content: if m.is_deleted {
                String::new()
            } else {
                m.content.clone()
            },
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
                    file: super::media_url(&a.blob_key),
                    file_name: a.file_name.clone(),
                    file_size: a.file_size,
                    mime_type: a.mime_type.clone(),
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
            client_id: m.client_id.clone(),
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
    client_id: Option<Option<String>>,
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
                Some(Self::posted(state, &state.message(*message_id)?, viewer))
            }
            Event::MessageEdited { message_id, .. }
            | Event::AttachmentStored { message_id, .. } => Some(MessageFrame {
                kind: "message.edited",
                data: MessageView::new(state, &state.message(*message_id)?, viewer),
                seq,
                client_id: None,
            }),
            _ => None,
        }
    }

    /// `message.new` of a message: its seq and the sender's `client_id`
    /// are those of the event that posted it.
    pub(super) fn posted(state: &'a State, m: &Message, viewer: Option<UserId>) -> Self {
        MessageFrame {
            kind: "message.new",
            data: MessageView::new(state, m, viewer),
            seq: m.seq,
            client_id: Some(m.client_id.clone()),
        }
    }
}

/// The conversation object (contract 1.4's 13 keys, then
/// `pinned_message_ids`), for `viewer`.
#[derive(Serialize, ToSchema)]
#[schema(as = Conversation)]
pub struct ConversationView<'a> {
    id: ConvId,
    title: &'a str,
    conversation_type: &'static str,
    owner: UserId,
    description: &'a str,
    created_at: String,
    updated_at: String,
    #[schema(value_type = Option<String>)]
    avatar: (),
    is_public: bool,
    #[schema(value_type = Option<String>)]
    invite_link: (),
    members: Vec<MemberView<'a>>,
    last_message: Option<MessageView<'a>>,
    unread_count: usize,
    /// Vato addition (issue 14): the pinned messages' ids, oldest pin
    /// first.
    pinned_message_ids: Vec<MessageId>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = Member)]
pub struct MemberView<'a> {
    id: u64,
    #[schema(value_type = Option<UserView>)]
    user: Option<UserRef<'a>>,
    nickname: &'static str,
    is_admin: bool,
    joined_at: String,
    #[schema(value_type = Option<String>)]
    muted_until: (),
}

impl<'a> ConversationView<'a> {
    pub(super) fn new(state: &'a State, c: &'a Conversation, viewer: UserId) -> Self {
        ConversationView {
            id: c.id,
            title: &c.title,
            conversation_type: c.kind.as_str(),
            owner: c.owner,
            description: &c.description,
            created_at: format(c.created_at),
            updated_at: format(c.updated_at),
            avatar: (),
            is_public: c.is_public,
            invite_link: (),
            members: c
                .members
                .iter()
                .map(|(uid, m): (&UserId, &'a Member)| MemberView {
                    id: m.id,
                    user: UserRef::of(state, *uid, Some(viewer)),
                    nickname: "",
                    is_admin: m.is_admin,
                    joined_at: format(m.joined_at),
                    muted_until: (),
                })
                .collect(),
            last_message: c
                .last_message
                // Its conversation is known: one read, not two (the
                // owner block, then the message).
                .and_then(|id| state.message_in(c.id, id))
                .map(|m| MessageView::new(state, &m, Some(viewer))),
            unread_count: state.unread_count(c, viewer),
            pinned_message_ids: c.pins.iter().map(|p| p.message_id).collect(),
        }
    }
}
