//! The read models: what the state machine keeps of users, conversations
//! and messages, as queries and the server's renderers see them.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use crate::event::*;
use crate::profile::{Profile, Settings};

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
    /// Written by `ProfileUpdated`. Fields added after the first release
    /// come last with a default, so older snapshots still load.
    #[serde(default)]
    pub profile: Profile,
    /// `None` until the user's first settings call (contract §2).
    #[serde(default)]
    pub settings: Option<Settings>,
    /// The media store key of the user's avatar (issue 13), set by
    /// `AvatarChanged`. Last, with a default: older snapshots load.
    #[serde(default)]
    pub avatar: Option<String>,
    /// Not state: the reader's rendering of the user as others see them
    /// (the server keeps its JSON text here), emptied by every change
    /// through `state::user_mut`. Never written to a snapshot.
    #[serde(skip)]
    pub rendered: Rendered,
}

/// A cache slot for a reader's rendering of a read model: filled once by
/// whoever asks first ([`Rendered::get_or_init`]), emptied by the state
/// machine when the model changes. It is not part of the state: it is
/// never serialized, prints as nothing and compares equal to any other,
/// so a live state equals its replay whatever was rendered from either.
#[derive(Default, Clone)]
pub struct Rendered(OnceLock<Arc<dyn Any + Send + Sync>>);

impl Rendered {
    /// The cached rendering, made by `render` if there is none yet (two
    /// readers racing both render; the first one's is kept, and both are
    /// the same model's).
    pub fn get_or_init<T: Any + Send + Sync>(&self, render: impl FnOnce() -> T) -> Arc<T> {
        if let Some(it) = self
            .0
            .get()
            .and_then(|any| Arc::clone(any).downcast::<T>().ok())
        {
            return it;
        }
        let it = Arc::new(render());
        let _ = self.0.set(Arc::clone(&it) as Arc<dyn Any + Send + Sync>);
        it
    }

    /// The cached rendering if there is one, borrowed (no `Arc` count
    /// touched: the conversation list reads thousands).
    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.0.get().and_then(|any| any.downcast_ref::<T>())
    }

    /// Forgets the rendering: the model changed.
    pub fn clear(&mut self) {
        self.0 = OnceLock::new();
    }
}

impl std::fmt::Debug for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rendered")
    }
}

impl PartialEq for Rendered {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl User {
    /// Whether others may see this user's read marks.
    pub fn shows_read_receipts(&self) -> bool {
        self.settings
            .as_ref()
            .is_none_or(|s| s.values.show_read_receipts)
    }

    /// Whether others may see this user typing.
    pub fn shows_typing(&self) -> bool {
        self.settings
            .as_ref()
            .is_none_or(|s| s.values.show_typing_indicator)
    }
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
    /// The newest message that is not deleted.
    pub last_message: Option<MessageId>,
    /// Pinned messages, oldest pin first (issue 14). Last, with a default,
    /// so that older snapshots still load.
    #[serde(default)]
    pub pins: Vec<Pin>,
}

impl Conversation {
    pub fn pin_of(&self, message_id: MessageId) -> Option<&Pin> {
        self.pins.iter().find(|p| p.message_id == message_id)
    }

    pub fn is_admin(&self, user_id: UserId) -> bool {
        self.members.get(&user_id).is_some_and(|m| m.is_admin)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Pin {
    pub id: PinId,
    pub message_id: MessageId,
    pub by: UserId,
    pub at: Micros,
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

/// One entry of a user's contacts (issue 14).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Contact {
    pub id: ContactId,
    pub owner: UserId,
    pub user_id: UserId,
    pub nickname: String,
    /// While set, `user_id` cannot open a direct conversation with the
    /// owner nor post in it, and gets none of the owner's typing and
    /// presence frames.
    pub is_blocked: bool,
    pub is_favorite: bool,
    pub added_at: Micros,
}

/// A call (issue 15): who rang whom in which conversation, and how it went.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Call {
    pub id: CallId,
    pub conv_id: ConvId,
    pub caller: UserId,
    pub call_type: String,
    /// `ringing`, `active`, `ended`, `declined` or `missed`.
    pub state: String,
    pub started_at: Micros,
    /// When the first participant answered.
    pub answered_at: Option<Micros>,
    pub ended_at: Option<Micros>,
    /// The caller first, then the invited members in the order given.
    pub participants: Vec<CallParticipant>,
}

impl Call {
    /// Ringing or active.
    pub fn is_ongoing(&self) -> bool {
        matches!(self.state.as_str(), "ringing" | "active")
    }

    pub fn participant(&self, user: UserId) -> Option<&CallParticipant> {
        self.participants.iter().find(|p| p.user == user)
    }

    /// Whole seconds from the answer to the end (0 if never answered or
    /// not over).
    pub fn duration_secs(&self) -> i64 {
        match (self.answered_at, self.ended_at) {
            (Some(from), Some(to)) => (to - from).max(0) / 1_000_000,
            _ => 0,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CallParticipant {
    pub id: u64,
    pub user: UserId,
    /// When they joined: the caller at the start, the others on answering.
    pub joined_at: Option<Micros>,
    /// When their leg ended (the call's end for everyone in it).
    pub left_at: Option<Micros>,
    pub is_answered: bool,
    /// They declined.
    pub rejected: bool,
}
