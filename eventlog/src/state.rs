//! The deterministic state machine and its read models.
//!
//! [`State::decide`] turns a command into events (or a rejection) without
//! changing anything; [`State::apply`] folds one event into the read models.
//! The writer calls both live; replay calls only `apply`. There is no second
//! code path that must agree with these two.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::command::{Command, Invalid, Rejection, Reply};
use crate::event::*;

/// Message types the contract knows.
pub const MESSAGE_TYPES: [&str; 5] = ["text", "image", "video", "audio", "file"];

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct State {
    /// Offset the next event will get; equals the number of events applied.
    pub next_offset: Offset,
    next_user_id: UserId,
    next_conv_id: ConvId,
    next_message_id: MessageId,
    next_reaction_id: ReactionId,
    next_attachment_id: AttachmentId,
    next_member_id: u64,
    pub users: BTreeMap<UserId, User>,
    /// Lower-cased username → user: names are unique regardless of case so
    /// that "Lalo" cannot pose as "lalo".
    users_by_name: HashMap<String, UserId>,
    users_by_phone: HashMap<String, UserId>,
    pub conversations: BTreeMap<ConvId, Conversation>,
    user_conversations: HashMap<UserId, BTreeSet<ConvId>>,
    /// (smaller user id, larger user id) → their direct conversation.
    directs: HashMap<(UserId, UserId), ConvId>,
    pub messages: HashMap<MessageId, Message>,
    /// (sender, conversation, client_id) → the message it created.
    idempotency: HashMap<(UserId, ConvId, String), MessageId>,
    /// (conversation, user) → read position.
    reads: HashMap<(ConvId, UserId), ReadPosition>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub password_hash: String,
    pub email: String,
    pub display_name: String,
    pub phone_number: Option<String>,
    pub is_online: bool,
    pub last_seen_at: Option<Micros>,
    pub date_joined: Micros,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Conversation {
    pub id: ConvId,
    pub kind: ConvKind,
    pub title: String,
    pub owner: UserId,
    pub description: String,
    pub is_public: bool,
    pub created_at: Micros,
    pub updated_at: Micros,
    pub members: BTreeMap<UserId, Member>,
    /// Seq of the newest event of this conversation (0: none yet).
    pub last_seq: Seq,
    /// Every message id, in seq order (ids grow with seq).
    pub message_ids: Vec<MessageId>,
    /// The newest message that is not deleted.
    pub last_message: Option<MessageId>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Member {
    pub is_admin: bool,
    pub joined_at: Micros,
    /// The membership's own id: the contract's member objects have one.
    pub id: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Message {
    pub id: MessageId,
    pub conv_id: ConvId,
    pub seq: Seq,
    pub sender: UserId,
    pub content: String,
    pub message_type: String,
    pub reply_to: Option<MessageId>,
    pub forwarded_from: Option<MessageId>,
    pub client_id: Option<String>,
    pub created_at: Micros,
    pub edited_at: Option<Micros>,
    pub is_deleted: bool,
    pub reactions: Vec<Reaction>,
    pub attachments: Vec<Attachment>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Reaction {
    pub id: ReactionId,
    pub user_id: UserId,
    pub emoji: String,
    pub created_at: Micros,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Attachment {
    pub id: AttachmentId,
    pub file_name: String,
    pub file_size: u64,
    pub mime_type: String,
    pub blob_key: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct ReadPosition {
    pub up_to: MessageId,
    pub at: Micros,
}

/// The outcome of an accepted command.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub events: Vec<Event>,
    pub reply: Reply,
}

impl Decision {
    fn none(reply: Reply) -> Decision {
        Decision {
            events: Vec::new(),
            reply,
        }
    }
    fn one(event: Event, reply: Reply) -> Decision {
        Decision {
            events: vec![event],
            reply,
        }
    }
}

impl State {
    // ---- queries -------------------------------------------------------

    pub fn user(&self, id: UserId) -> Option<&User> {
        self.users.get(&id)
    }

    pub fn user_by_name(&self, name: &str) -> Option<&User> {
        self.users_by_name
            .get(&name.to_lowercase())
            .and_then(|id| self.users.get(id))
    }

    pub fn user_by_phone(&self, phone: &str) -> Option<&User> {
        self.users_by_phone
            .get(phone)
            .and_then(|id| self.users.get(id))
    }

    pub fn conversation(&self, id: ConvId) -> Option<&Conversation> {
        self.conversations.get(&id)
    }

    pub fn message(&self, id: MessageId) -> Option<&Message> {
        self.messages.get(&id)
    }

    pub fn is_member(&self, conv_id: ConvId, user_id: UserId) -> bool {
        self.conversations
            .get(&conv_id)
            .is_some_and(|c| c.members.contains_key(&user_id))
    }

    /// The conversations a user belongs to, by id.
    pub fn conversations_of(&self, user_id: UserId) -> impl Iterator<Item = &Conversation> {
        self.user_conversations
            .get(&user_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.conversations.get(id))
    }

    pub fn direct_between(&self, a: UserId, b: UserId) -> Option<ConvId> {
        self.directs.get(&pair(a, b)).copied()
    }

    pub fn read_position(&self, conv_id: ConvId, user_id: UserId) -> Option<ReadPosition> {
        self.reads.get(&(conv_id, user_id)).copied()
    }

    /// Readers of `conv_id` whose read position covers `message_id`, with the
    /// time they read up to it.
    pub fn readers_of(&self, conv: &Conversation, message_id: MessageId) -> Vec<(UserId, Micros)> {
        conv.members
            .keys()
            .filter_map(|u| {
                self.reads
                    .get(&(conv.id, *u))
                    .filter(|r| r.up_to >= message_id)
                    .map(|r| (*u, r.at))
            })
            .collect()
    }

    /// Messages from others after the user's read position, deleted ones
    /// excluded. (The original also counted the user's own messages.)
    pub fn unread_count(&self, conv: &Conversation, user_id: UserId) -> usize {
        let up_to = self.reads.get(&(conv.id, user_id)).map_or(0, |r| r.up_to);
        let start = conv.message_ids.partition_point(|id| *id <= up_to);
        conv.message_ids[start..]
            .iter()
            .filter_map(|id| self.messages.get(id))
            .filter(|m| m.sender != user_id && !m.is_deleted)
            .count()
    }

    // ---- decide --------------------------------------------------------

    /// Decides `command` and applies its events, appending them (with
    /// their offsets) to `out`: what the writer does for each command, and
    /// what tests do to build a history. A rejection appends nothing.
    pub fn execute(
        &mut self,
        command: &Command,
        out: &mut Vec<Envelope>,
    ) -> Result<Reply, Rejection> {
        let decision = self.decide(command)?;
        for event in decision.events {
            let envelope = Envelope {
                offset: self.next_offset,
                event,
            };
            self.apply(&envelope);
            out.push(envelope);
        }
        Ok(decision.reply)
    }

    /// Decides a command against the current state. Pure: the state does
    /// not change until the returned events are applied.
    pub fn decide(&self, command: &Command) -> Result<Decision, Rejection> {
        match command {
            Command::Register {
                username,
                password_hash,
                email,
                display_name,
                phone_number,
                at,
            } => {
                if username.is_empty() {
                    return Err(Rejection::Invalid(Invalid::BlankUsername));
                }
                if self.users_by_name.contains_key(&username.to_lowercase()) {
                    return Err(Rejection::UsernameTaken);
                }
                if let Some(phone) = phone_number {
                    if self.users_by_phone.contains_key(phone) {
                        return Err(Rejection::PhoneTaken);
                    }
                }
                let user_id = self.next_user_id + 1;
                Ok(Decision::one(
                    Event::UserRegistered {
                        user_id,
                        username: username.clone(),
                        password_hash: password_hash.clone(),
                        email: email.clone(),
                        display_name: display_name.clone(),
                        phone_number: phone_number.clone(),
                        at: *at,
                    },
                    Reply::User(user_id),
                ))
            }
            Command::RecordLogin { user_id, at } => {
                self.existing_user(*user_id)?;
                Ok(Decision::one(
                    Event::UserSeen {
                        user_id: *user_id,
                        at: *at,
                    },
                    Reply::User(*user_id),
                ))
            }
            Command::CreateDirect { by, other, at } => {
                self.existing_user(*by)?;
                let other_user = self.existing_user(*other)?;
                if let Some(conv_id) = self.direct_between(*by, *other) {
                    return Ok(Decision::none(Reply::Conversation {
                        conv_id,
                        created: false,
                    }));
                }
                let by_user = self.existing_user(*by)?;
                let conv_id = self.next_conv_id + 1;
                let mut members = vec![(*by, true)];
                if other != by {
                    members.push((*other, false));
                }
                Ok(Decision::one(
                    Event::ConversationCreated {
                        conv_id,
                        kind: ConvKind::Direct,
                        title: format!("{} - {}", by_user.username, other_user.username),
                        owner: *by,
                        description: String::new(),
                        is_public: false,
                        members,
                        at: *at,
                    },
                    Reply::Conversation {
                        conv_id,
                        created: true,
                    },
                ))
            }
            Command::CreateGroup {
                by,
                title,
                description,
                is_public,
                member_ids,
                at,
            } => {
                self.existing_user(*by)?;
                let mut members = vec![(*by, true)];
                for id in member_ids {
                    self.existing_user(*id)?;
                    if !members.iter().any(|(m, _)| m == id) {
                        members.push((*id, false));
                    }
                }
                let conv_id = self.next_conv_id + 1;
                Ok(Decision::one(
                    Event::ConversationCreated {
                        conv_id,
                        kind: ConvKind::Group,
                        title: title.clone(),
                        owner: *by,
                        description: description.clone(),
                        is_public: *is_public,
                        members,
                        at: *at,
                    },
                    Reply::Conversation {
                        conv_id,
                        created: true,
                    },
                ))
            }
            Command::AddMember {
                by,
                conv_id,
                user_id,
                at,
            } => {
                let conv = self.member_conversation(*conv_id, *by)?;
                if conv.kind == ConvKind::Direct {
                    return Err(Rejection::Invalid(Invalid::DirectMembersFixed));
                }
                if !conv.members.get(by).is_some_and(|m| m.is_admin) {
                    return Err(Rejection::NotAnAdmin);
                }
                self.existing_user(*user_id)?;
                if conv.members.contains_key(user_id) {
                    return Err(Rejection::AlreadyMember);
                }
                Ok(Decision::one(
                    Event::MemberAdded {
                        conv_id: *conv_id,
                        seq: conv.last_seq + 1,
                        user_id: *user_id,
                        is_admin: false,
                        by: *by,
                        at: *at,
                    },
                    Reply::Done,
                ))
            }
            Command::RemoveMember {
                by,
                conv_id,
                user_id,
                at,
            } => {
                let conv = self.member_conversation(*conv_id, *by)?;
                // Anyone may leave; only admins may remove someone else.
                if by != user_id && !conv.members.get(by).is_some_and(|m| m.is_admin) {
                    return Err(Rejection::NotAnAdmin);
                }
                if !conv.members.contains_key(user_id) {
                    return Err(Rejection::NotAMember);
                }
                Ok(Decision::one(
                    Event::MemberRemoved {
                        conv_id: *conv_id,
                        seq: conv.last_seq + 1,
                        user_id: *user_id,
                        by: *by,
                        at: *at,
                    },
                    Reply::Done,
                ))
            }
            Command::PostMessage {
                sender,
                conv_id,
                content,
                message_type,
                reply_to,
                forwarded_from,
                client_id,
                at,
            } => {
                let conv = self.member_conversation(*conv_id, *sender)?;
                if let Some(key) = client_id {
                    if let Some(id) = self.idempotency.get(&(*sender, *conv_id, key.clone())) {
                        return Ok(Decision::none(Reply::Message {
                            message_id: *id,
                            created: false,
                        }));
                    }
                }
                if content.trim().is_empty() && message_type == "text" {
                    return Err(Rejection::Invalid(Invalid::BlankContent));
                }
                if !MESSAGE_TYPES.contains(&message_type.as_str()) {
                    return Err(Rejection::Invalid(Invalid::UnknownMessageType));
                }
                if let Some(reply_to) = reply_to {
                    if self.messages.get(reply_to).map(|m| m.conv_id) != Some(*conv_id) {
                        return Err(Rejection::Invalid(Invalid::ReplyToElsewhere));
                    }
                }
                if let Some(origin) = forwarded_from {
                    let visible = self
                        .messages
                        .get(origin)
                        .is_some_and(|m| self.is_member(m.conv_id, *sender));
                    if !visible {
                        return Err(Rejection::UnknownMessage);
                    }
                }
                let message_id = self.next_message_id + 1;
                Ok(Decision::one(
                    Event::MessagePosted {
                        message_id,
                        conv_id: *conv_id,
                        seq: conv.last_seq + 1,
                        sender: *sender,
                        content: content.clone(),
                        message_type: message_type.clone(),
                        reply_to: *reply_to,
                        forwarded_from: *forwarded_from,
                        client_id: client_id.clone(),
                        at: *at,
                    },
                    Reply::Message {
                        message_id,
                        created: true,
                    },
                ))
            }
            Command::EditMessage {
                by,
                conv_id,
                message_id,
                content,
                at,
            } => {
                let (conv, _) = self.own_message(*conv_id, *message_id, *by)?;
                if content.trim().is_empty() {
                    return Err(Rejection::Invalid(Invalid::BlankContent));
                }
                Ok(Decision::one(
                    Event::MessageEdited {
                        message_id: *message_id,
                        conv_id: *conv_id,
                        seq: conv.last_seq + 1,
                        content: content.clone(),
                        at: *at,
                    },
                    Reply::Message {
                        message_id: *message_id,
                        created: false,
                    },
                ))
            }
            Command::DeleteMessage {
                by,
                conv_id,
                message_id,
                at,
            } => {
                let (conv, _) = self.own_message(*conv_id, *message_id, *by)?;
                Ok(Decision::one(
                    Event::MessageDeleted {
                        message_id: *message_id,
                        conv_id: *conv_id,
                        seq: conv.last_seq + 1,
                        at: *at,
                    },
                    Reply::Done,
                ))
            }
            Command::MarkRead {
                by,
                conv_id,
                message_id,
                at,
            } => {
                let (conv, _) = self.visible_message(*conv_id, *message_id, *by)?;
                Ok(Decision::one(
                    Event::MessagesRead {
                        conv_id: *conv_id,
                        seq: conv.last_seq + 1,
                        user_id: *by,
                        up_to: *message_id,
                        at: *at,
                    },
                    Reply::Done,
                ))
            }
            Command::ToggleReaction {
                by,
                conv_id,
                message_id,
                emoji,
                at,
            } => {
                let (conv, message) = self.visible_message(*conv_id, *message_id, *by)?;
                if message.is_deleted {
                    return Err(Rejection::MessageDeleted);
                }
                if emoji.is_empty() {
                    return Err(Rejection::Invalid(Invalid::BlankEmoji));
                }
                let seq = conv.last_seq + 1;
                let existing = message
                    .reactions
                    .iter()
                    .find(|r| r.user_id == *by && r.emoji == *emoji);
                Ok(match existing {
                    Some(r) => Decision::one(
                        Event::ReactionRemoved {
                            reaction_id: r.id,
                            message_id: *message_id,
                            conv_id: *conv_id,
                            seq,
                            user_id: *by,
                            emoji: r.emoji.clone(),
                            at: *at,
                        },
                        Reply::Reaction {
                            reaction_id: r.id,
                            added: false,
                        },
                    ),
                    None => {
                        let reaction_id = self.next_reaction_id + 1;
                        Decision::one(
                            Event::ReactionAdded {
                                reaction_id,
                                message_id: *message_id,
                                conv_id: *conv_id,
                                seq,
                                user_id: *by,
                                emoji: emoji.clone(),
                                at: *at,
                            },
                            Reply::Reaction {
                                reaction_id,
                                added: true,
                            },
                        )
                    }
                })
            }
            Command::StoreAttachment {
                by,
                conv_id,
                message_id,
                file_name,
                file_size,
                mime_type,
                blob_key,
                at,
            } => {
                let (conv, _) = self.own_message(*conv_id, *message_id, *by)?;
                let attachment_id = self.next_attachment_id + 1;
                Ok(Decision::one(
                    Event::AttachmentStored {
                        attachment_id,
                        message_id: *message_id,
                        conv_id: *conv_id,
                        seq: conv.last_seq + 1,
                        file_name: file_name.clone(),
                        file_size: *file_size,
                        mime_type: mime_type.clone(),
                        blob_key: blob_key.clone(),
                        at: *at,
                    },
                    Reply::Attachment(attachment_id),
                ))
            }
        }
    }

    fn existing_user(&self, id: UserId) -> Result<&User, Rejection> {
        self.users.get(&id).ok_or(Rejection::UnknownUser)
    }

    fn member_conversation(
        &self,
        conv_id: ConvId,
        user: UserId,
    ) -> Result<&Conversation, Rejection> {
        let conv = self
            .conversations
            .get(&conv_id)
            .ok_or(Rejection::UnknownConversation)?;
        if !conv.members.contains_key(&user) {
            return Err(Rejection::NotAMember);
        }
        Ok(conv)
    }

    /// A message of `conv_id` that `user` may see.
    fn visible_message(
        &self,
        conv_id: ConvId,
        message_id: MessageId,
        user: UserId,
    ) -> Result<(&Conversation, &Message), Rejection> {
        let conv = self.member_conversation(conv_id, user)?;
        let message = self
            .messages
            .get(&message_id)
            .filter(|m| m.conv_id == conv_id)
            .ok_or(Rejection::UnknownMessage)?;
        Ok((conv, message))
    }

    /// A live message of `conv_id` that `user` sent.
    fn own_message(
        &self,
        conv_id: ConvId,
        message_id: MessageId,
        user: UserId,
    ) -> Result<(&Conversation, &Message), Rejection> {
        let (conv, message) = self.visible_message(conv_id, message_id, user)?;
        if message.sender != user {
            return Err(Rejection::NotYourMessage);
        }
        if message.is_deleted {
            return Err(Rejection::MessageDeleted);
        }
        Ok((conv, message))
    }

    // ---- apply ---------------------------------------------------------

    /// Folds one event into the read models. Events come from `decide`, so
    /// they are consistent with the state; a reference to something missing
    /// (only possible with a log written by a buggy version) is skipped
    /// rather than panicking.
    pub fn apply(&mut self, envelope: &Envelope) {
        debug_assert_eq!(
            envelope.offset, self.next_offset,
            "events applied out of order"
        );
        self.next_offset = envelope.offset + 1;
        if let Some((conv_id, seq)) = envelope.event.conv_seq() {
            if let Some(conv) = self.conversations.get_mut(&conv_id) {
                conv.last_seq = conv.last_seq.max(seq);
            }
        }
        match &envelope.event {
            Event::UserRegistered {
                user_id,
                username,
                password_hash,
                email,
                display_name,
                phone_number,
                at,
            } => {
                self.next_user_id = self.next_user_id.max(*user_id);
                self.users_by_name.insert(username.to_lowercase(), *user_id);
                if let Some(phone) = phone_number {
                    self.users_by_phone.insert(phone.clone(), *user_id);
                }
                self.users.insert(
                    *user_id,
                    User {
                        id: *user_id,
                        username: username.clone(),
                        password_hash: password_hash.clone(),
                        email: email.clone(),
                        display_name: display_name.clone(),
                        phone_number: phone_number.clone(),
                        is_online: false,
                        last_seen_at: None,
                        date_joined: *at,
                    },
                );
            }
            Event::UserSeen { user_id, at } => {
                if let Some(user) = self.users.get_mut(user_id) {
                    user.is_online = true;
                    user.last_seen_at = Some(*at);
                }
            }
            Event::ConversationCreated {
                conv_id,
                kind,
                title,
                owner,
                description,
                is_public,
                members,
                at,
            } => {
                self.next_conv_id = self.next_conv_id.max(*conv_id);
                let mut conv = Conversation {
                    id: *conv_id,
                    kind: *kind,
                    title: title.clone(),
                    owner: *owner,
                    description: description.clone(),
                    is_public: *is_public,
                    created_at: *at,
                    updated_at: *at,
                    members: BTreeMap::new(),
                    last_seq: 0,
                    message_ids: Vec::new(),
                    last_message: None,
                };
                for (user_id, is_admin) in members {
                    self.next_member_id += 1;
                    conv.members.insert(
                        *user_id,
                        Member {
                            is_admin: *is_admin,
                            joined_at: *at,
                            id: self.next_member_id,
                        },
                    );
                    self.user_conversations
                        .entry(*user_id)
                        .or_default()
                        .insert(*conv_id);
                }
                if *kind == ConvKind::Direct {
                    let other = members.get(1).map_or(*owner, |(u, _)| *u);
                    self.directs.insert(pair(*owner, other), *conv_id);
                }
                self.conversations.insert(*conv_id, conv);
            }
            Event::MemberAdded {
                conv_id,
                user_id,
                is_admin,
                at,
                ..
            } => {
                if let Some(conv) = self.conversations.get_mut(conv_id) {
                    self.next_member_id += 1;
                    conv.members.insert(
                        *user_id,
                        Member {
                            is_admin: *is_admin,
                            joined_at: *at,
                            id: self.next_member_id,
                        },
                    );
                    conv.updated_at = *at;
                    self.user_conversations
                        .entry(*user_id)
                        .or_default()
                        .insert(*conv_id);
                }
            }
            Event::MemberRemoved {
                conv_id,
                user_id,
                at,
                ..
            } => {
                if let Some(conv) = self.conversations.get_mut(conv_id) {
                    conv.members.remove(user_id);
                    conv.updated_at = *at;
                }
                if let Some(set) = self.user_conversations.get_mut(user_id) {
                    set.remove(conv_id);
                }
            }
            Event::MessagePosted {
                message_id,
                conv_id,
                seq,
                sender,
                content,
                message_type,
                reply_to,
                forwarded_from,
                client_id,
                at,
            } => {
                self.next_message_id = self.next_message_id.max(*message_id);
                if let Some(conv) = self.conversations.get_mut(conv_id) {
                    conv.message_ids.push(*message_id);
                    conv.last_message = Some(*message_id);
                    conv.updated_at = *at;
                }
                if let Some(key) = client_id {
                    self.idempotency
                        .insert((*sender, *conv_id, key.clone()), *message_id);
                }
                self.messages.insert(
                    *message_id,
                    Message {
                        id: *message_id,
                        conv_id: *conv_id,
                        seq: *seq,
                        sender: *sender,
                        content: content.clone(),
                        message_type: message_type.clone(),
                        reply_to: *reply_to,
                        forwarded_from: *forwarded_from,
                        client_id: client_id.clone(),
                        created_at: *at,
                        edited_at: None,
                        is_deleted: false,
                        reactions: Vec::new(),
                        attachments: Vec::new(),
                    },
                );
            }
            Event::MessageEdited {
                message_id,
                content,
                at,
                ..
            } => {
                if let Some(m) = self.messages.get_mut(message_id) {
                    m.content = content.clone();
                    m.edited_at = Some(*at);
                }
            }
            Event::MessageDeleted {
                message_id,
                conv_id,
                ..
            } => {
                if let Some(m) = self.messages.get_mut(message_id) {
                    m.is_deleted = true;
                }
                if let Some(conv) = self.conversations.get_mut(conv_id) {
                    if conv.last_message == Some(*message_id) {
                        let messages = &self.messages;
                        conv.last_message = conv
                            .message_ids
                            .iter()
                            .rev()
                            .find(|id| messages.get(id).is_some_and(|m| !m.is_deleted))
                            .copied();
                    }
                }
            }
            Event::MessagesRead {
                conv_id,
                user_id,
                up_to,
                at,
                ..
            } => {
                let position = self
                    .reads
                    .entry((*conv_id, *user_id))
                    .or_insert(ReadPosition { up_to: 0, at: *at });
                // Reading an older message never moves the position back.
                if *up_to >= position.up_to {
                    *position = ReadPosition {
                        up_to: *up_to,
                        at: *at,
                    };
                }
            }
            Event::ReactionAdded {
                reaction_id,
                message_id,
                user_id,
                emoji,
                at,
                ..
            } => {
                self.next_reaction_id = self.next_reaction_id.max(*reaction_id);
                if let Some(m) = self.messages.get_mut(message_id) {
                    m.reactions.push(Reaction {
                        id: *reaction_id,
                        user_id: *user_id,
                        emoji: emoji.clone(),
                        created_at: *at,
                    });
                }
            }
            Event::ReactionRemoved {
                reaction_id,
                message_id,
                ..
            } => {
                if let Some(m) = self.messages.get_mut(message_id) {
                    m.reactions.retain(|r| r.id != *reaction_id);
                }
            }
            Event::AttachmentStored {
                attachment_id,
                message_id,
                file_name,
                file_size,
                mime_type,
                blob_key,
                ..
            } => {
                self.next_attachment_id = self.next_attachment_id.max(*attachment_id);
                if let Some(m) = self.messages.get_mut(message_id) {
                    m.attachments.push(Attachment {
                        id: *attachment_id,
                        file_name: file_name.clone(),
                        file_size: *file_size,
                        mime_type: mime_type.clone(),
                        blob_key: blob_key.clone(),
                    });
                }
            }
        }
    }
}

fn pair(a: UserId, b: UserId) -> (UserId, UserId) {
    (a.min(b), a.max(b))
}
