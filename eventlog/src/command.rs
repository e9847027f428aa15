//! Commands: what a client asks for. The state machine decides each one
//! ([`crate::state::State::decide`]) into events, or a [`Rejection`].
//!
//! A command carries everything its outcome depends on (the accepting node's
//! clock, a password hash computed there), so that deciding it is a pure
//! function of the state and the command.

use serde::{Deserialize, Serialize};

use crate::event::*;
use crate::profile::{ProfileChanges, SettingsChanges};

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

/// Why a command was refused. The state is unchanged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("unknown user")]
    UnknownUser,
    #[error("unknown conversation")]
    UnknownConversation,
    #[error("not a member of this conversation")]
    NotAMember,
    #[error("only admins can do this")]
    NotAnAdmin,
    #[error("a user with that username already exists")]
    UsernameTaken,
    #[error("a user with that phone number already exists")]
    PhoneTaken,
    #[error("unknown message")]
    UnknownMessage,
    #[error("you can only change your own messages")]
    NotYourMessage,
    #[error("the message was deleted")]
    MessageDeleted,
    #[error("already a member")]
    AlreadyMember,
    #[error("the token was revoked already")]
    TokenRevoked,
    /// The user turned `allow_group_invite` off (issue 17).
    #[error("{username} does not accept group invitations.")]
    GroupInviteRefused { user_id: UserId, username: String },
    /// A field breaks a rule; the reason names both.
    #[error("{0}")]
    Invalid(Invalid),
    /// Adding yourself as a contact (issue 14; the original allowed it).
    #[error("you cannot add yourself as a contact")]
    ContactIsSelf,
    /// The owner has this user as a contact already.
    #[error("the contact exists already")]
    ContactExists,
    /// No contact of the caller's with that id.
    #[error("unknown contact")]
    UnknownContact,
    /// The other user blocks the caller: no direct conversation with them,
    /// no posts in it (issue 14).
    #[error("this user does not accept messages from you")]
    Blocked,
    /// Unpinning a message that is not pinned.
    #[error("this message is not pinned")]
    NotPinned,
    /// A forward's target conversation is unknown or not the caller's.
    #[error("conversation not found")]
    UnknownTarget,
    /// No code is pending for the phone number: never sent, used, expired
    /// or burnt by wrong tries.
    #[error("OTP expired or not found")]
    OtpExpired,
    /// No call with that id in the conversation, or the caller is not a
    /// member of it.
    #[error("No Call matches the given query.")]
    UnknownCall,
    /// Only the caller and the invited participants may act on a call.
    #[error("You are not a participant of this call.")]
    NotAParticipant,
    /// The call is over (or, for delete, not over yet), or the action does
    /// not fit its state.
    #[error("{0}")]
    CallState(&'static str),
    /// The conversation has a call ringing or active already.
    #[error("A call is already in progress in this conversation.")]
    CallInProgress,
    /// None of the caller's notifications has that id.
    #[error("Notification not found.")]
    UnknownNotification,
    /// The caller has no device with that token.
    #[error("Device not found.")]
    UnknownDevice,
}

/// Which field of a command breaks which rule. Servers map it to their own
/// shapes (a DRF field error, a socket error frame) by [`Invalid::field`];
/// nothing branches on the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("username may not be blank")]
    BlankUsername,
    #[error("a direct conversation has exactly its two members")]
    DirectMembersFixed,
    #[error("content may not be blank")]
    BlankContent,
    #[error("unknown message_type")]
    UnknownMessageType,
    #[error("reply_to must be a message of this conversation")]
    ReplyToElsewhere,
    #[error("emoji required")]
    BlankEmoji,
    #[error("this user is not a member of the conversation")]
    NotAMemberToRemove,
    #[error("the files must come with a message")]
    NotAPost,
}

impl Rejection {
    /// A short stable name for metrics labels: the variant, never the
    /// text (which may carry a username).
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::UnknownUser => "unknown_user",
            Rejection::UnknownConversation => "unknown_conversation",
            Rejection::NotAMember => "not_a_member",
            Rejection::NotAnAdmin => "not_an_admin",
            Rejection::UsernameTaken => "username_taken",
            Rejection::PhoneTaken => "phone_taken",
            Rejection::UnknownMessage => "unknown_message",
            Rejection::NotYourMessage => "not_your_message",
            Rejection::MessageDeleted => "message_deleted",
            Rejection::AlreadyMember => "already_member",
            Rejection::TokenRevoked => "token_revoked",
            Rejection::GroupInviteRefused { .. } => "group_invite_refused",
            Rejection::Invalid(invalid) => invalid.reason(),
            Rejection::ContactIsSelf => "contact_is_self",
            Rejection::ContactExists => "contact_exists",
            Rejection::UnknownContact => "unknown_contact",
            Rejection::Blocked => "blocked",
            Rejection::NotPinned => "not_pinned",
            Rejection::UnknownTarget => "unknown_target",
            Rejection::OtpExpired => "otp_expired",
            Rejection::UnknownCall => "unknown_call",
            Rejection::NotAParticipant => "not_a_participant",
            Rejection::CallState(_) => "call_state",
            Rejection::CallInProgress => "call_in_progress",
            Rejection::UnknownNotification => "unknown_notification",
            Rejection::UnknownDevice => "unknown_device",
        }
    }
}

impl Invalid {
    /// A short stable name for metrics labels (`invalid_` and the rule).
    pub fn reason(self) -> &'static str {
        match self {
            Invalid::BlankUsername => "invalid_blank_username",
            Invalid::DirectMembersFixed => "invalid_direct_members_fixed",
            Invalid::BlankContent => "invalid_blank_content",
            Invalid::UnknownMessageType => "invalid_unknown_message_type",
            Invalid::ReplyToElsewhere => "invalid_reply_to_elsewhere",
            Invalid::BlankEmoji => "invalid_blank_emoji",
            Invalid::NotAMemberToRemove => "invalid_not_a_member_to_remove",
            Invalid::NotAPost => "invalid_not_a_post",
        }
    }

    /// The request field at fault (`non_field_errors` when it is the
    /// conversation itself).
    pub fn field(self) -> &'static str {
        match self {
            Invalid::BlankUsername => "username",
            Invalid::DirectMembersFixed => "non_field_errors",
            Invalid::BlankContent => "content",
            Invalid::UnknownMessageType => "message_type",
            Invalid::ReplyToElsewhere => "reply_to",
            Invalid::BlankEmoji => "emoji",
            Invalid::NotAMemberToRemove => "user_id",
            Invalid::NotAPost => "non_field_errors",
        }
    }
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
