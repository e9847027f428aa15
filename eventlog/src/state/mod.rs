//! The deterministic state machine and its read models.
//!
//! [`State::decide`] turns a command into events (or a rejection) without
//! changing anything; [`State::apply`] folds one event into the read models.
//! The writer calls both live; replay calls only `apply`. There is no second
//! code path that must agree with these two.
//!
//! Each area keeps the `decide_*` of its commands next to the `apply_*` of
//! their events: `users.rs`, `profiles.rs`, `conversations.rs`,
//! `messages.rs`, `reactions.rs`, `pins.rs`, `forward.rs`, `sessions.rs`,
//! `presence.rs`, `contacts.rs`, `avatars.rs`, `external_logins.rs`,
//! `calls.rs`, `notifications.rs`; `model.rs`
//! holds the read-model structs. An area's functions are reached only
//! through the two matches below, hence their `let ... else unreachable!`
//! (the command and event enums keep their serialized shape, so a variant
//! cannot become a struct of its own). A new command or event gets an arm
//! in [`State::decide`] or [`State::apply`] here and its logic in its area.

use std::collections::BTreeSet;

use imbl::{OrdMap, OrdSet};

use serde::{Deserialize, Serialize};

use crate::command::{Command, Rejection, Reply};
use crate::event::*;

mod avatars;
mod calls;
mod contacts;
mod conversations;
mod external_logins;
mod forward;
pub mod history;
mod maps;
mod messages;
mod model;
mod notifications;
mod pins;
mod presence;
mod probe;
mod profiles;
mod reactions;
mod sessions;
mod users;

pub use calls::CALL_TYPES;
pub use external_logins::{PendingOtp, OTP_MAX_TRIES, UNUSABLE_PASSWORD};
pub use messages::MESSAGE_TYPES;
pub use model::{
    Attachment, Call, CallParticipant, Contact, Conversation, Member, Message, Pin, Reaction,
    ReadPosition, User,
};
pub use notifications::{Device, Notification, DEVICES_KEPT, NOTIFICATIONS_KEPT, PLATFORMS};
pub use sessions::REVOCATION_GRACE;
pub use users::{phone_key, username_skeleton};

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
    pub users: OrdMap<UserId, User>,
    /// Lower-cased username → user: names are unique regardless of case so
    /// that "Lalo" cannot pose as "lalo".
    users_by_name: OrdMap<String, UserId>,
    /// Look-alike key of the username ([`username_skeleton`]) → the first
    /// user with it: what registration's uniqueness is decided on. Derived
    /// from `users`, so not in the snapshot: rebuilt when one is loaded.
    #[serde(skip)]
    users_by_skeleton: OrdMap<String, UserId>,
    /// [`phone_key`] of the phone number → user.
    users_by_phone: OrdMap<String, UserId>,
    pub conversations: OrdMap<ConvId, Conversation>,
    user_conversations: OrdMap<UserId, BTreeSet<ConvId>>,
    /// (smaller user id, larger user id) → their direct conversation.
    directs: OrdMap<(UserId, UserId), ConvId>,
    /// Every message and idempotency key: on disk in the store, what
    /// changed since the last snapshot in RAM (issue 12). Not in the
    /// encoded state: the tree it lives in holds that.
    #[serde(skip)]
    pub(crate) history: history::History,
    /// Messages ever posted (deleted ones included).
    message_count: u64,
    /// (conversation, user) → read position.
    reads: OrdMap<(ConvId, UserId), ReadPosition>,
    /// Refresh tokens revoked by logout: jti → expiry, forgotten
    /// [`REVOCATION_GRACE`] after it. Last and defaulted, so that a
    /// snapshot written before logout existed still loads.
    #[serde(default)]
    revoked_tokens: OrdMap<String, Micros>,
    /// `revoked_tokens` by expiry, to forget them in order. Derived: not in
    /// the snapshot, rebuilt when one is loaded.
    #[serde(skip)]
    revoked_by_expiry: OrdSet<(Micros, String)>,
    /// Id of the last settings row created. Added after the first
    /// release: last, with a default, so older snapshots still load.
    #[serde(default)]
    next_settings_id: u64,
    /// (conversation, member) → messages from others after the member's
    /// read position, deleted ones excluded: what `unread_count` answers,
    /// kept up to date by `apply` so that a list of 500 conversations does
    /// not count through their histories (40 % of its time did, issue 12).
    /// Kept in the snapshot: recounting them would read every message.
    unread: OrdMap<(ConvId, UserId), usize>,
    /// User → the nodes whose sockets hold them online (presence, issue
    /// 13). A BTreeMap so that clearing a node decides its users in id
    /// order on every node. Last, with a default: older snapshots load.
    #[serde(default)]
    presence: OrdMap<UserId, BTreeSet<NodeId>>,
    /// Every user's contacts and blocks (issue 14). Last, with a default:
    /// older snapshots load.
    #[serde(default)]
    contacts: contacts::Contacts,
    /// Id of the last pin (issue 14). Last, with a default: older
    /// snapshots load.
    #[serde(default)]
    next_pin_id: PinId,
    /// Media store key → how many avatars and attachments refer to it:
    /// a key at zero may be removed from the store. Kept in the snapshot:
    /// recounting would read every message.
    media_refs: OrdMap<String, usize>,
    /// Phone login codes not yet used, expired or burnt, by
    /// [`phone_key`] (issue 13). Last, with a default: older snapshots
    /// load.
    #[serde(default)]
    otps: OrdMap<String, PendingOtp>,
    /// `provider:subject` of an external identity (Google's `sub`) → its
    /// user. Last, with a default: older snapshots load.
    #[serde(default)]
    identities: OrdMap<String, UserId>,
    /// Every call (issue 15), by id. Last, with a default: older snapshots
    /// load.
    #[serde(default)]
    calls: OrdMap<CallId, Call>,
    #[serde(default)]
    next_call_id: CallId,
    #[serde(default)]
    next_call_participant_id: u64,
    /// The calls still ringing: what the nodes' ring timers look at every
    /// second, without going through every call. Derived: not in the
    /// snapshot, rebuilt when one is loaded.
    #[serde(skip)]
    ringing: OrdSet<CallId>,
    /// Every user's recent notifications and push devices (issue 15).
    /// Last, with a default: older snapshots load.
    #[serde(default)]
    notifications: notifications::Notifications,
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
            .get(&phone_key(phone))
            .and_then(|id| self.users.get(id))
    }

    pub fn conversation(&self, id: ConvId) -> Option<&Conversation> {
        self.conversations.get(&id)
    }

    /// Message `id`, as it is now, unless its conversation was deleted.
    pub fn message(&self, id: MessageId) -> Option<Message> {
        self.history
            .get(id)
            .filter(|m| self.conversations.contains_key(&m.conv_id))
    }

    /// The message attachment `id` belongs to (with the attachment), unless
    /// its conversation was deleted.
    pub fn attachment(&self, id: AttachmentId) -> Option<(Message, Attachment)> {
        let message = self.message(self.history.attachment_message(id)?)?;
        let attachment = message.attachments.iter().find(|a| a.id == id)?.clone();
        Some((message, attachment))
    }

    /// Message `id` of conversation `conv_id` (one look-up on disk).
    pub fn message_in(&self, conv_id: ConvId, id: MessageId) -> Option<Message> {
        if !self.conversations.contains_key(&conv_id) {
            return None;
        }
        self.history.get_in(conv_id, id)
    }

    /// The ids of `conv_id`'s messages within `ids`, oldest first or
    /// newest first: a history page reads only what it shows.
    pub fn message_ids(
        &self,
        conv_id: ConvId,
        ids: std::ops::Range<MessageId>,
        newest_first: bool,
    ) -> impl Iterator<Item = MessageId> + '_ {
        self.history.ids(conv_id, ids, newest_first)
    }

    /// `conv_id`'s messages within `ids`, in the order of
    /// [`State::message_ids`].
    pub fn messages_of(
        &self,
        conv_id: ConvId,
        ids: std::ops::Range<MessageId>,
        newest_first: bool,
    ) -> impl Iterator<Item = Message> + '_ {
        self.history.messages(conv_id, ids, newest_first)
    }

    /// The first message of `conv_id` posted at seq `seq` or later.
    pub fn first_message_at_seq(&self, conv_id: ConvId, seq: Seq) -> Option<MessageId> {
        self.history.first_at_seq(conv_id, seq)
    }

    /// Messages ever posted, deleted ones included.
    pub fn message_count(&self) -> u64 {
        self.message_count
    }

    /// A copy wholly in RAM, tied to no store (tests, `verify`): a clone
    /// would share the store's history tree, and keep its database open.
    pub fn detached(&self) -> State {
        let mut copy = self.clone();
        copy.history = self.history.detached();
        copy
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
        self.unread.get(&(conv.id, user_id)).copied().unwrap_or(0)
    }

    /// [`State::unread_count`] by its definition: counted through the
    /// messages after the read position. What the counters are rebuilt
    /// from, and what tests hold them to.
    pub fn unread_recount(&self, conv: &Conversation, user_id: UserId) -> usize {
        let up_to = self.read_up_to(conv.id, user_id);
        self.unread_among(conv.id, up_to + 1..MessageId::MAX, user_id)
    }

    fn read_up_to(&self, conv_id: ConvId, user_id: UserId) -> MessageId {
        self.reads.get(&(conv_id, user_id)).map_or(0, |r| r.up_to)
    }

    /// How many of `conv_id`'s messages within `ids` count as unread for
    /// `user_id`.
    fn unread_among(
        &self,
        conv_id: ConvId,
        ids: std::ops::Range<MessageId>,
        user_id: UserId,
    ) -> usize {
        self.history
            .messages(conv_id, ids, false)
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
    /// not change until the returned events are applied. The messages it
    /// posts and the calls it starts bring their notifications along.
    pub fn decide(&self, command: &Command) -> Result<Decision, Rejection> {
        let mut decision = self.decide_command(command)?;
        self.add_notifications(&mut decision.events);
        Ok(decision)
    }

    fn decide_command(&self, command: &Command) -> Result<Decision, Rejection> {
        match command {
            Command::Register { .. } => self.decide_register(command),
            Command::RecordLogin { .. } => self.decide_login(command),
            Command::CreateDirect { .. } => self.decide_direct(command),
            Command::CreateGroup { .. } => self.decide_group(command),
            Command::AddMember { .. } => self.decide_add_member(command),
            Command::RemoveMember { .. } => self.decide_remove_member(command),
            Command::PostMessage { .. } => self.decide_post(command),
            Command::PostWithAttachments { .. } => self.decide_post_with_attachments(command),
            Command::EditMessage { .. } => self.decide_edit(command),
            Command::DeleteMessage { .. } => self.decide_delete(command),
            Command::MarkRead { .. } => self.decide_read(command),
            Command::ToggleReaction { .. } => self.decide_reaction(command),
            Command::StoreAttachment { .. } => self.decide_attachment(command),
            Command::RevokeRefreshToken { .. } => self.decide_revoke(command),
            Command::GoOffline { .. } => self.decide_go_offline(command),
            Command::UpdateProfile { .. } => self.decide_update_profile(command),
            Command::UpdateSettings { .. } => self.decide_update_settings(command),
            Command::CreateSettings { .. } => self.decide_create_settings(command),
            Command::Probe { node, nonce } => Ok(probe::decide_probe(*node, *nonce)),
            Command::SocketsOpened { .. } => self.decide_sockets_opened(command),
            Command::SocketsClosed { .. } => self.decide_sockets_closed(command),
            Command::ClearNodePresence { .. } => self.decide_clear_node(command),
            Command::AddContact { .. } => self.decide_add_contact(command),
            Command::UpdateContact { .. } => self.decide_update_contact(command),
            Command::ToggleContact { .. } => self.decide_toggle_contact(command),
            Command::RemoveContact { .. } => self.decide_remove_contact(command),
            Command::UpdateConversation { .. } => self.decide_update_conversation(command),
            Command::DeleteConversation { .. } => self.decide_delete_conversation(command),
            Command::PinMessage { .. } => self.decide_pin(command),
            Command::UnpinMessage { .. } => self.decide_unpin(command),
            Command::ForwardMessage { .. } => self.decide_forward(command),
            Command::SetAvatar { .. } => self.decide_set_avatar(command),
            Command::IssueOtp { .. } => self.decide_issue_otp(command),
            Command::VerifyOtp { .. } => self.decide_verify_otp(command),
            Command::ExternalLogin { .. } => self.decide_external_login(command),
            Command::StartCall { .. } => self.decide_start_call(command),
            Command::CallAction { .. } => self.decide_call_action(command),
            Command::CallTimeout { .. } => self.decide_call_timeout(command),
            Command::RegisterDevice { .. } => self.decide_register_device(command),
            Command::RemoveDevice { .. } => self.decide_remove_device(command),
            Command::ReadNotification { .. } => self.decide_read_notification(command),
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
    ) -> Result<(&Conversation, Message), Rejection> {
        let conv = self.member_conversation(conv_id, user)?;
        let message = self
            .history
            .get_in(conv_id, message_id)
            .ok_or(Rejection::UnknownMessage)?;
        Ok((conv, message))
    }

    /// A live message of `conv_id` that `user` sent.
    fn own_message(
        &self,
        conv_id: ConvId,
        message_id: MessageId,
        user: UserId,
    ) -> Result<(&Conversation, Message), Rejection> {
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
        let event = &envelope.event;
        match event {
            Event::UserRegistered { .. } => self.apply_user_registered(event),
            Event::UserSeen { .. } => self.apply_user_seen(event),
            Event::ConversationCreated { .. } => self.apply_conversation_created(event),
            Event::MemberAdded { .. } => self.apply_member_added(event),
            Event::MemberRemoved { .. } => self.apply_member_removed(event),
            Event::MessagePosted { .. } => self.apply_message_posted(event),
            Event::MessageEdited { .. } => self.apply_message_edited(event),
            Event::MessageDeleted { .. } => self.apply_message_deleted(event),
            Event::MessagesRead { .. } => self.apply_messages_read(event),
            Event::ReactionAdded { .. } => self.apply_reaction_added(event),
            Event::ReactionRemoved { .. } => self.apply_reaction_removed(event),
            Event::AttachmentStored { .. } => self.apply_attachment_stored(event),
            Event::RefreshTokenRevoked { .. } => self.apply_token_revoked(event),
            Event::UserWentOffline { .. } => self.apply_went_offline(event),
            Event::ProfileUpdated { .. } => self.apply_profile_updated(event),
            Event::SettingsUpdated { .. } => self.apply_settings_updated(event),
            Event::MessagesReadPrivately { .. } => self.apply_messages_read(event),
            // A probe changes no read model.
            Event::ProbeRecorded { .. } => {}
            Event::PresenceJoined { .. } => self.apply_presence_joined(event),
            Event::PresenceLeft { .. } => self.apply_presence_left(event),
            Event::NodePresenceCleared { .. } => self.apply_node_cleared(event),
            Event::ContactAdded { .. } => self.apply_contact_added(event),
            Event::ContactUpdated { .. } => self.apply_contact_updated(event),
            Event::ContactRemoved { .. } => self.apply_contact_removed(event),
            Event::ConversationUpdated { .. } => self.apply_conversation_updated(event),
            Event::ConversationDeleted { .. } => self.apply_conversation_deleted(event),
            Event::MemberPromoted { .. } => self.apply_member_promoted(event),
            Event::MessagePinned { .. } => self.apply_message_pinned(event),
            Event::MessageUnpinned { .. } => self.apply_message_unpinned(event),
            Event::AvatarChanged { .. } => self.apply_avatar_changed(event),
            Event::OtpIssued { .. } => self.apply_otp_issued(event),
            Event::OtpRejected { .. } => self.apply_otp_rejected(event),
            Event::OtpUsed { .. } => self.apply_otp_used(event),
            Event::IdentityLinked { .. } => self.apply_identity_linked(event),
            Event::CallStarted { .. } => self.apply_call_started(event),
            Event::CallAnswered { .. }
            | Event::CallRejected { .. }
            | Event::CallEnded { .. }
            | Event::CallMissed { .. }
            | Event::CallUpdated { .. }
            | Event::CallDeleted { .. } => self.apply_call_change(event),
            Event::NotificationsCreated { .. } => self.apply_notifications_created(event),
            Event::NotificationRead { .. } => self.apply_notification_read(event),
            Event::DeviceRegistered { .. } => self.apply_device_registered(event),
            Event::DeviceRemoved { .. } => self.apply_device_removed(event),
        }
    }
}

fn pair(a: UserId, b: UserId) -> (UserId, UserId) {
    (a.min(b), a.max(b))
}

#[cfg(test)]
pub(crate) mod testing;

/// The user to change: every change to a user goes through here, so its
/// cached rendering ([`User::rendered`]) is dropped with it. A function
/// of the map, not of `State`, so a caller can hold it beside the
/// other indexes it updates.
pub(crate) fn user_mut(users: &mut OrdMap<UserId, User>, id: UserId) -> Option<&mut User> {
    let user = users.get_mut(&id)?;
    user.rendered.clear();
    Some(user)
}
