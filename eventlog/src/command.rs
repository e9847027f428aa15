//! Commands: what a client asks for. The state machine decides each one
//! ([`crate::state::State::decide`]) into events, or a [`Rejection`].
//!
//! A command carries everything its outcome depends on (the accepting node's
//! clock, a password hash computed there), so that deciding it is a pure
//! function of the state and the command.

use serde::{Deserialize, Serialize};

use crate::event::*;
use crate::profile::{ProfileChanges, SettingsChanges};

mod rejection;

pub use rejection::{Invalid, Rejection};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Command {
    Register {
        username: String,
        password_hash: String,
        email: String,
        display_name: String,
        phone_number: Option<String>,
        at: Micros,
    },
    RecordLogin {
        user_id: UserId,
        at: Micros,
    },
    /// Returns the pair's existing direct conversation, or creates it.
    CreateDirect {
        by: UserId,
        other: UserId,
        at: Micros,
    },
    CreateGroup {
        by: UserId,
        title: String,
        description: String,
        is_public: bool,
        member_ids: Vec<UserId>,
        at: Micros,
    },
    AddMember {
        by: UserId,
        conv_id: ConvId,
        user_id: UserId,
        at: Micros,
    },
    RemoveMember {
        by: UserId,
        conv_id: ConvId,
        user_id: UserId,
        at: Micros,
    },
    PostMessage {
        sender: UserId,
        conv_id: ConvId,
        content: String,
        message_type: String,
        reply_to: Option<MessageId>,
        forwarded_from: Option<MessageId>,
        /// Idempotency key: a retry with the same (sender, conv, client_id)
        /// returns the original message and appends nothing.
        client_id: Option<String>,
        at: Micros,
    },
    EditMessage {
        by: UserId,
        conv_id: ConvId,
        message_id: MessageId,
        content: String,
        at: Micros,
    },
    DeleteMessage {
        by: UserId,
        conv_id: ConvId,
        message_id: MessageId,
        at: Micros,
    },
    MarkRead {
        by: UserId,
        conv_id: ConvId,
        message_id: MessageId,
        at: Micros,
    },
    /// Adds the reaction, or removes it when the user already has it.
    ToggleReaction {
        by: UserId,
        conv_id: ConvId,
        message_id: MessageId,
        emoji: String,
        at: Micros,
    },
    /// A `PostMessage` and its files, in one decision: the message and one
    /// `AttachmentStored` per file, appended together, so no reader ever
    /// sees the message without them (issue 14: a multipart send). The
    /// files are in the media store already. A retry of its `client_id`
    /// answers the original message and stores nothing.
    PostWithAttachments {
        /// A [`Command::PostMessage`]; anything else is refused as invalid.
        post: Box<Command>,
        attachments: Vec<NewAttachment>,
    },
    StoreAttachment {
        by: UserId,
        conv_id: ConvId,
        message_id: MessageId,
        file_name: String,
        file_size: u64,
        mime_type: String,
        blob_key: String,
        at: Micros,
    },
    /// Logout: the refresh token `jti` (valid until `expires_at`) of
    /// `user_id` is refused from now on.
    RevokeRefreshToken {
        jti: String,
        user_id: UserId,
        expires_at: Micros,
        at: Micros,
    },
    /// Logout of the app: the user is offline (a no-op when already so).
    GoOffline {
        user_id: UserId,
        at: Micros,
    },
    /// Changes the user's own profile: the fields given, already checked
    /// by the server's intake; uniqueness is decided here.
    UpdateProfile {
        user_id: UserId,
        changes: Box<ProfileChanges>,
        at: Micros,
    },
    /// Writes the user's settings, creating the row on first use. Always
    /// an event (`updated_at` moves), as the original's save.
    UpdateSettings {
        user_id: UserId,
        changes: Box<SettingsChanges>,
        at: Micros,
    },
    /// Creates the user's settings row with the defaults if there is none
    /// (a first `GET settings/`); nothing otherwise.
    CreateSettings {
        user_id: UserId,
        at: Micros,
    },
    /// A node's delivery probe (issue 16): one event through the whole
    /// path (sequencer, log, fan-out) to the node's own internal
    /// subscriber. It belongs to no conversation and no user, so no list,
    /// search or socket ever shows it.
    Probe {
        /// The probing node (random per process start).
        node: u64,
        /// The node's probe number.
        nonce: u64,
    },
    /// The user's first socket on `node` opened (a no-op when `node` holds
    /// them already). Online everywhere when no node held them before.
    SocketsOpened {
        user_id: UserId,
        node: NodeId,
        at: Micros,
    },
    /// The user's last socket on `node` closed, the grace is over (a no-op
    /// when `node` does not hold them). Offline when no other node holds
    /// them.
    SocketsClosed {
        user_id: UserId,
        node: NodeId,
        at: Micros,
    },
    /// `node` (re)started: it holds nobody online any more (a no-op when
    /// it held nobody).
    ClearNodePresence {
        node: NodeId,
        at: Micros,
    },
    /// `owner` adds `user_id` to their contacts (one entry per pair; not
    /// themselves).
    AddContact {
        owner: UserId,
        user_id: UserId,
        nickname: String,
        is_blocked: bool,
        is_favorite: bool,
        at: Micros,
    },
    /// Sets the fields given of one of `owner`'s contacts (an event only
    /// when something changes).
    UpdateContact {
        owner: UserId,
        contact_id: ContactId,
        nickname: Option<String>,
        is_blocked: Option<bool>,
        is_favorite: Option<bool>,
        at: Micros,
    },
    /// Flips `is_blocked` or `is_favorite` (the contract's toggles), decided
    /// here so that two toggles at once flip twice.
    ToggleContact {
        owner: UserId,
        contact_id: ContactId,
        flag: ContactFlag,
        at: Micros,
    },
    RemoveContact {
        owner: UserId,
        contact_id: ContactId,
        at: Micros,
    },
    /// `PUT`/`PATCH` of a conversation (issue 14): the fields given, already
    /// checked by the server. Admins only; nothing when nothing changes.
    UpdateConversation {
        by: UserId,
        conv_id: ConvId,
        title: Option<String>,
        description: Option<String>,
        is_public: Option<bool>,
        at: Micros,
    },
    /// Deletes the conversation for every member (admins only).
    DeleteConversation {
        by: UserId,
        conv_id: ConvId,
        at: Micros,
    },
    /// Pins a message of the conversation (admins only); a no-op when it
    /// is pinned already.
    PinMessage {
        by: UserId,
        conv_id: ConvId,
        message_id: MessageId,
        at: Micros,
    },
    UnpinMessage {
        by: UserId,
        conv_id: ConvId,
        message_id: MessageId,
        at: Micros,
    },
    /// Posts a copy of message `message_id` of `conv_id` into `to_conv`,
    /// with `forwarded_from` set and the same attachments (the files are
    /// shared). Idempotent by `client_id` in `to_conv`, as a post.
    ForwardMessage {
        by: UserId,
        conv_id: ConvId,
        message_id: MessageId,
        to_conv: ConvId,
        client_id: Option<String>,
        at: Micros,
    },
    /// Sets (`Some`: a media store key whose file is stored already) or
    /// removes (`None`) the user's avatar; a no-op when it is that already.
    SetAvatar {
        user_id: UserId,
        avatar: Option<String>,
        at: Micros,
    },
    /// Keeps a login code for `phone` (E.164), as its keyed hash, until
    /// `expires_at`; it replaces the number's earlier code.
    IssueOtp {
        phone: String,
        code_hash: String,
        expires_at: Micros,
        at: Micros,
    },
    /// Logs in by the code sent to `phone`: a wrong code counts a try
    /// ([`Reply::WrongCode`]); the right one is used up and logs in the
    /// user with that number, registering one (named after the number,
    /// with `first_name`/`last_name`, no usable password) if none has it.
    VerifyOtp {
        phone: String,
        code_hash: String,
        first_name: String,
        last_name: String,
        at: Micros,
    },
    /// Logs in the user linked to the identity, or registers one (named
    /// `username`, or the first free `username_N`) and links it.
    ExternalLogin {
        identity: Box<ExternalIdentity>,
        at: Micros,
    },
    /// `by` calls the members `participants` of `conv_id` (none given: every
    /// other member). One call at a time per conversation.
    StartCall {
        by: UserId,
        conv_id: ConvId,
        call_type: String,
        participants: Vec<UserId>,
        at: Micros,
    },
    /// `by` (a participant) answers, rejects, ends, retypes or deletes the
    /// call `call_id` of `conv_id`.
    CallAction {
        by: UserId,
        conv_id: ConvId,
        call_id: CallId,
        action: CallAction,
        at: Micros,
    },
    /// The ring time of `call_id` is over: missed if still ringing at `at`,
    /// `ring` after it started; nothing otherwise.
    CallTimeout {
        call_id: CallId,
        ring: Micros,
        at: Micros,
    },
    /// `by` receives pushes on the device `token` (`android`, `ios` or
    /// `web`).
    RegisterDevice {
        by: UserId,
        token: String,
        platform: String,
        at: Micros,
    },
    /// `by` stops receiving pushes on `token`.
    RemoveDevice {
        by: UserId,
        token: String,
        at: Micros,
    },
    /// `by` marks their notification `notification_id` read.
    ReadNotification {
        by: UserId,
        notification_id: NotificationId,
        at: Micros,
    },
}

/// What a participant does to a call ([`Command::CallAction`]).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum CallAction {
    Answer,
    Reject,
    End,
    SetType(String),
    Delete,
}

/// An identity at an external provider, verified by the server, and what
/// a new account made for it gets.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ExternalIdentity {
    /// `google`.
    pub provider: String,
    /// The provider's stable id of the account (Google's `sub`).
    pub subject: String,
    pub username: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
}

/// The contact flags [`Command::ToggleContact`] flips.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContactFlag {
    Blocked,
    Favorite,
}

/// What the caller learns besides the events: which object the command
/// resolved to, and whether it was created now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    User(UserId),
    Conversation {
        conv_id: ConvId,
        created: bool,
    },
    Message {
        message_id: MessageId,
        created: bool,
    },
    Reaction {
        reaction_id: ReactionId,
        added: bool,
    },
    Attachment(AttachmentId),
    Done,
    Contact(ContactId),
    /// The message's pin; `created` false when it was pinned already.
    Pin {
        pin_id: PinId,
        created: bool,
    },
    /// A phone-code or external login: the user, and whether the login
    /// registered them.
    Login {
        user_id: UserId,
        created: bool,
    },
    /// The phone code was wrong; the try was counted.
    WrongCode,
    Call(CallId),
}

/// A file of a [`Command::PostWithAttachments`], already stored.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct NewAttachment {
    pub file_name: String,
    pub file_size: u64,
    pub mime_type: String,
    /// The media store's key of its bytes.
    pub blob_key: String,
}

impl Command {
    /// The idempotency key a post or a forward carries: (sender, the
    /// conversation it posts to, `client_id`). What deciding it looks up
    /// (`State::earlier_post`), and what `Store::enqueue` probes ahead of
    /// the writer.
    pub fn idempotency_key(&self) -> Option<(UserId, ConvId, &str)> {
        match self {
            Command::PostMessage {
                sender,
                conv_id,
                client_id: Some(client_id),
                ..
            } => Some((*sender, *conv_id, client_id)),
            Command::ForwardMessage {
                by,
                to_conv,
                client_id: Some(client_id),
                ..
            } => Some((*by, *to_conv, client_id)),
            _ => None,
        }
    }
}
