//! The events: the only persistent state of Vato. Everything else (users,
//! conversations, unread counts, ...) is derived from them by
//! [`crate::state::State::apply`].

use serde::{Deserialize, Serialize};

use crate::profile::{ProfileChanges, SettingsChanges};

pub type UserId = u64;
pub type ConvId = u64;
pub type MessageId = u64;
pub type ReactionId = u64;
pub type AttachmentId = u64;
/// A contact entry's id (issue 14): one per (owner, user).
pub type ContactId = u64;
pub type PinId = u64;
/// A call's id (issue 15).
pub type CallId = u64;
/// A notification's id (issue 15): one per (recipient, message or call).
pub type NotificationId = u64;
/// A server node's stable id (kept in its data directory): whose sockets
/// make a user online.
pub type NodeId = u64;
/// Position of an event in the global log (0, 1, 2, ...).
pub type Offset = u64;
/// Position of an event within its conversation (1, 2, 3, ... gap-free).
pub type Seq = u64;
pub use crate::Micros;

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConvKind {
    Direct,
    Group,
}

impl ConvKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConvKind::Direct => "direct",
            ConvKind::Group => "group",
        }
    }
}

/// One chat event. Conversation-scoped events that a client sees on a socket
/// carry that conversation's `seq`; `ConversationCreated` starts the
/// conversation at seq 0 and has none.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Event {
    UserRegistered {
        user_id: UserId,
        username: String,
        /// Argon2 PHC string; the password itself never reaches the log.
        password_hash: String,
        email: String,
        display_name: String,
        phone_number: Option<String>,
        at: Micros,
    },
    /// A successful login: `is_online` and `last_seen_at`, as the original.
    UserSeen { user_id: UserId, at: Micros },
    ConversationCreated {
        conv_id: ConvId,
        kind: ConvKind,
        title: String,
        owner: UserId,
        description: String,
        is_public: bool,
        /// (user, is_admin), in the order they were given.
        members: Vec<(UserId, bool)>,
        at: Micros,
    },
    MemberAdded {
        conv_id: ConvId,
        seq: Seq,
        user_id: UserId,
        is_admin: bool,
        by: UserId,
        at: Micros,
    },
    MemberRemoved {
        conv_id: ConvId,
        seq: Seq,
        user_id: UserId,
        by: UserId,
        at: Micros,
    },
    MessagePosted {
        message_id: MessageId,
        conv_id: ConvId,
        seq: Seq,
        sender: UserId,
        content: String,
        message_type: String,
        reply_to: Option<MessageId>,
        forwarded_from: Option<MessageId>,
        client_id: Option<String>,
        at: Micros,
    },
    MessageEdited {
        message_id: MessageId,
        conv_id: ConvId,
        seq: Seq,
        content: String,
        at: Micros,
    },
    /// A tombstone: the message stays (ids and seqs never move) but is hidden.
    MessageDeleted {
        message_id: MessageId,
        conv_id: ConvId,
        seq: Seq,
        at: Micros,
    },
    /// `user_id` has read everything in the conversation up to `up_to`.
    MessagesRead {
        conv_id: ConvId,
        seq: Seq,
        user_id: UserId,
        up_to: MessageId,
        at: Micros,
    },
    ReactionAdded {
        reaction_id: ReactionId,
        message_id: MessageId,
        conv_id: ConvId,
        seq: Seq,
        user_id: UserId,
        emoji: String,
        at: Micros,
    },
    ReactionRemoved {
        reaction_id: ReactionId,
        message_id: MessageId,
        conv_id: ConvId,
        seq: Seq,
        user_id: UserId,
        emoji: String,
        at: Micros,
    },
    AttachmentStored {
        attachment_id: AttachmentId,
        message_id: MessageId,
        conv_id: ConvId,
        seq: Seq,
        file_name: String,
        file_size: u64,
        mime_type: String,
        /// Where the bytes live (content address in the blob store).
        blob_key: String,
        at: Micros,
    },
    /// Logout revoked a refresh token (`jti` is its JWT id): refused from
    /// now on, remembered until [`crate::state::REVOCATION_GRACE`] past
    /// `expires_at` (its `exp`), when it would be refused anyway.
    RefreshTokenRevoked {
        jti: String,
        user_id: UserId,
        expires_at: Micros,
        at: Micros,
    },
    /// The user logged out of the app: `is_online` false, `last_seen_at`.
    UserWentOffline { user_id: UserId, at: Micros },
    /// `PATCH`/`PUT` of the user's own profile: only the fields that
    /// change.
    ProfileUpdated {
        user_id: UserId,
        changes: Box<ProfileChanges>,
        at: Micros,
    },
    /// A settings call: the first one creates the row with the defaults
    /// (`created_at` = `at`), then `changes` apply; `updated_at` = `at`.
    SettingsUpdated {
        user_id: UserId,
        changes: Box<SettingsChanges>,
        at: Micros,
    },
    /// A read mark of a user whose `show_read_receipts` is off: it moves
    /// their read position (their unread counts) but has no seq, so no
    /// socket and no replay ever shows it to anyone.
    MessagesReadPrivately {
        conv_id: ConvId,
        user_id: UserId,
        up_to: MessageId,
        at: Micros,
    },
    /// A node's delivery probe went through the log (issue 16). Changes no
    /// read model; only the probing node's fan-out looks at it.
    ProbeRecorded { node: u64, nonce: u64 },
    /// The user's first socket on `node` opened: `node` holds them online.
    /// Only the presence bookkeeping; the visible change (when no node held
    /// them before) is the `UserSeen` decided with it.
    PresenceJoined {
        user_id: UserId,
        node: NodeId,
        at: Micros,
    },
    /// The user's last socket on `node` closed, and the grace passed
    /// without a new one: `node` no longer holds them online (when no other
    /// node does, a `UserWentOffline` is decided with it).
    PresenceLeft {
        user_id: UserId,
        node: NodeId,
        at: Micros,
    },
    /// `node` started: whatever sockets it had are gone, so it holds nobody
    /// online any more (the users no other node holds go offline with it).
    NodePresenceCleared { node: NodeId, at: Micros },
    /// `owner` put `user_id` in their contacts (issue 14). Private to the
    /// owner: no conversation, no socket frame.
    ContactAdded {
        contact_id: ContactId,
        owner: UserId,
        user_id: UserId,
        nickname: String,
        is_blocked: bool,
        is_favorite: bool,
        at: Micros,
    },
    /// A contact's fields changed: only those that change are `Some`.
    /// `is_blocked` is what blocking is decided on (direct conversations,
    /// posts, typing and presence).
    ContactUpdated {
        contact_id: ContactId,
        owner: UserId,
        nickname: Option<String>,
        is_blocked: Option<bool>,
        is_favorite: Option<bool>,
        at: Micros,
    },
    /// The owner deleted the contact (and with it any block).
    ContactRemoved {
        contact_id: ContactId,
        owner: UserId,
        at: Micros,
    },
    /// An admin changed a conversation's title, description or visibility
    /// (issue 14): the three values after the change.
    ConversationUpdated {
        conv_id: ConvId,
        seq: Seq,
        by: UserId,
        title: String,
        description: String,
        is_public: bool,
        at: Micros,
    },
    /// An admin deleted the conversation: it leaves every member's list and
    /// its messages leave the read models; its events stay in the log.
    ConversationDeleted {
        conv_id: ConvId,
        seq: Seq,
        by: UserId,
        at: Micros,
    },
    /// The group's last admin left: its longest-standing member is an
    /// admin now (decided with that `MemberRemoved`).
    MemberPromoted {
        conv_id: ConvId,
        seq: Seq,
        user_id: UserId,
        at: Micros,
    },
    /// An admin pinned a message of the conversation.
    MessagePinned {
        pin_id: PinId,
        message_id: MessageId,
        conv_id: ConvId,
        seq: Seq,
        by: UserId,
        at: Micros,
    },
    /// An admin unpinned it.
    MessageUnpinned {
        pin_id: PinId,
        message_id: MessageId,
        conv_id: ConvId,
        seq: Seq,
        by: UserId,
        at: Micros,
    },
    /// The user's avatar is now the media object `avatar` (a media store
    /// key, `<sha256 hex>.<ext>`), or none. The file was stored (and, in
    /// embedded mode, fsynced) before this event was submitted.
    AvatarChanged {
        user_id: UserId,
        avatar: Option<String>,
        at: Micros,
    },
    /// A login code was sent to `phone` (a [`crate::state::phone_key`]),
    /// issue 13. Only its keyed hash is kept; it replaces any earlier code
    /// of that number and is good until `expires_at` or
    /// [`crate::state::OTP_MAX_TRIES`] wrong tries. Codes expired at `at`
    /// are forgotten.
    OtpIssued {
        phone: String,
        code_hash: String,
        expires_at: Micros,
        at: Micros,
    },
    /// A wrong code was tried for `phone`; the last allowed try burns it.
    OtpRejected { phone: String, at: Micros },
    /// The code of `phone` logged someone in: it is gone.
    OtpUsed { phone: String, at: Micros },
    /// `user_id` logs in with the external identity `subject` of
    /// `provider` (Google's `sub`), decided with that user's registration.
    IdentityLinked {
        user_id: UserId,
        provider: String,
        subject: String,
        at: Micros,
    },
    /// `caller` rings `participants` (members of the conversation) for a
    /// `voice` or `video` call (issue 15).
    CallStarted {
        call_id: CallId,
        conv_id: ConvId,
        seq: Seq,
        caller: UserId,
        call_type: String,
        participants: Vec<UserId>,
        at: Micros,
    },
    /// A participant took the call: it is active from now.
    CallAnswered {
        call_id: CallId,
        conv_id: ConvId,
        seq: Seq,
        by: UserId,
        at: Micros,
    },
    /// A participant declined; when nobody is left to answer a call that
    /// nobody answered, it is over (`declined`).
    CallRejected {
        call_id: CallId,
        conv_id: ConvId,
        seq: Seq,
        by: UserId,
        at: Micros,
    },
    /// A participant hung up: the call is over (`ended`).
    CallEnded {
        call_id: CallId,
        conv_id: ConvId,
        seq: Seq,
        by: UserId,
        at: Micros,
    },
    /// Nobody answered within the ring time: the call is over (`missed`).
    CallMissed {
        call_id: CallId,
        conv_id: ConvId,
        seq: Seq,
        at: Micros,
    },
    /// A participant changed the call's type.
    CallUpdated {
        call_id: CallId,
        conv_id: ConvId,
        seq: Seq,
        by: UserId,
        call_type: String,
        at: Micros,
    },
    /// A participant removed a finished call from the log.
    CallDeleted {
        call_id: CallId,
        conv_id: ConvId,
        seq: Seq,
        by: UserId,
        at: Micros,
    },
    /// `users` (members with no socket open anywhere, notifications on,
    /// not blocking `from`) are told of a message (`kind` `message`,
    /// `message_id` set) or a ringing call (`call`, `call_id` set): the
    /// notifications `first_id`, `first_id + 1`, ... in the order of
    /// `users` (issue 15). Decided with the message or call itself, so
    /// every node derives the same ones; the log is the push outbox.
    NotificationsCreated {
        first_id: NotificationId,
        users: Vec<UserId>,
        kind: String,
        conv_id: ConvId,
        message_id: Option<MessageId>,
        call_id: Option<CallId>,
        from: UserId,
        at: Micros,
    },
    /// `user_id` read their notification `notification_id`.
    NotificationRead {
        user_id: UserId,
        notification_id: NotificationId,
        at: Micros,
    },
    /// `user_id`'s device receives pushes at `token` (taken from whoever
    /// had it before: a token is one device's).
    DeviceRegistered {
        user_id: UserId,
        token: String,
        platform: String,
        at: Micros,
    },
    /// `user_id` no longer receives pushes at `token`.
    DeviceRemoved {
        user_id: UserId,
        token: String,
        at: Micros,
    },
}

impl Event {
    /// The conversation and seq of a conversation-scoped event, if it has one.
    pub fn conv_seq(&self) -> Option<(ConvId, Seq)> {
        use Event::*;
        match self {
            UserRegistered { .. }
            | NotificationsCreated { .. }
            | NotificationRead { .. }
            | DeviceRegistered { .. }
            | DeviceRemoved { .. }
            | UserSeen { .. }
            | ConversationCreated { .. }
            | RefreshTokenRevoked { .. }
            | UserWentOffline { .. }
            | ProfileUpdated { .. }
            | SettingsUpdated { .. }
            | MessagesReadPrivately { .. }
            | ProbeRecorded { .. }
            | PresenceJoined { .. }
            | PresenceLeft { .. }
            | NodePresenceCleared { .. }
            | ContactAdded { .. }
            | ContactUpdated { .. }
            | ContactRemoved { .. }
            | AvatarChanged { .. }
            | OtpIssued { .. }
            | OtpRejected { .. }
            | OtpUsed { .. }
            | IdentityLinked { .. } => None,
            MemberAdded { conv_id, seq, .. }
            | MemberRemoved { conv_id, seq, .. }
            | MessagePosted { conv_id, seq, .. }
            | MessageEdited { conv_id, seq, .. }
            | MessageDeleted { conv_id, seq, .. }
            | MessagesRead { conv_id, seq, .. }
            | ReactionAdded { conv_id, seq, .. }
            | ReactionRemoved { conv_id, seq, .. }
            | AttachmentStored { conv_id, seq, .. }
            | ConversationUpdated { conv_id, seq, .. }
            | ConversationDeleted { conv_id, seq, .. }
            | MemberPromoted { conv_id, seq, .. }
            | MessagePinned { conv_id, seq, .. }
            | MessageUnpinned { conv_id, seq, .. }
            | CallStarted { conv_id, seq, .. }
            | CallAnswered { conv_id, seq, .. }
            | CallRejected { conv_id, seq, .. }
            | CallEnded { conv_id, seq, .. }
            | CallMissed { conv_id, seq, .. }
            | CallUpdated { conv_id, seq, .. }
            | CallDeleted { conv_id, seq, .. } => Some((*conv_id, *seq)),
        }
    }

    /// The conversation an event belongs to (including its creation).
    pub fn conv_id(&self) -> Option<ConvId> {
        match self {
            Event::ConversationCreated { conv_id, .. }
            | Event::MessagesReadPrivately { conv_id, .. } => Some(*conv_id),
            other => other.conv_seq().map(|(c, _)| c),
        }
    }
}

/// An event at its place in the global log.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Envelope {
    pub offset: Offset,
    pub event: Event,
}
