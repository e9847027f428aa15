//! Why a command is refused: [`Rejection`], and [`Invalid`] for a field
//! that breaks a rule.

use crate::event::UserId;

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
