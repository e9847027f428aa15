//! Test support, behind the `testing` feature: terse command builders,
//! reply accessors, and waiting out sled's file lock. Shared by the
//! integration tests (`tests/common` re-exports it), the crash child
//! (`src/bin/vato-log-crash-child.rs`) and the bench, so that a new field
//! on a command is added to one builder, not to each of them.
//!
//! Builders fill what a test rarely cares about with fixed values (a fake
//! password hash, an e-mail derived from the name, text messages).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::command::{Command, Reply};
use crate::event::{ConvId, MessageId, Micros, UserId};

/// Runs `attempt` again while it fails on sled's file lock, for up to ten
/// seconds. sled 0.34 releases the lock only when its last internal
/// reference goes, which can be a few milliseconds after the `Db` (or a
/// `Store` dropped without `close()`) is dropped, or after another process
/// exits.
pub fn retry_lock<T, E: std::fmt::Display>(
    mut attempt: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match attempt() {
            Err(e)
                if Instant::now() < deadline
                    && (e.to_string().contains("could not acquire lock")
                        || e.to_string().contains("Cannot acquire lock")) =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            result => return result,
        }
    }
}

/// The wall clock in the log's unit.
pub fn now() -> Micros {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as Micros)
}

pub fn register(name: &str, at: Micros) -> Command {
    Command::Register {
        username: name.to_string(),
        password_hash: format!("$argon2id$fake${name}"),
        email: format!("{name}@example.com"),
        display_name: name.to_uppercase(),
        phone_number: None,
        at,
    }
}

pub fn direct(by: UserId, other: UserId, at: Micros) -> Command {
    Command::CreateDirect { by, other, at }
}

/// A private group titled "group" of `by` (its admin) and `members`.
pub fn group(by: UserId, members: &[UserId], at: Micros) -> Command {
    titled_group(by, "group", members, at)
}

pub fn titled_group(by: UserId, title: &str, members: &[UserId], at: Micros) -> Command {
    Command::CreateGroup {
        by,
        title: title.to_string(),
        description: String::new(),
        is_public: false,
        member_ids: members.to_vec(),
        at,
    }
}

/// A text message, with an idempotency key if `client_id` is given.
pub fn post(
    sender: UserId,
    conv_id: ConvId,
    content: &str,
    client_id: Option<&str>,
    at: Micros,
) -> Command {
    Command::PostMessage {
        sender,
        conv_id,
        content: content.to_string(),
        message_type: "text".to_string(),
        reply_to: None,
        forwarded_from: None,
        client_id: client_id.map(str::to_string),
        at,
    }
}

pub fn mark_read(by: UserId, conv_id: ConvId, message_id: MessageId, at: Micros) -> Command {
    Command::MarkRead {
        by,
        conv_id,
        message_id,
        at,
    }
}

pub fn delete(by: UserId, conv_id: ConvId, message_id: MessageId, at: Micros) -> Command {
    Command::DeleteMessage {
        by,
        conv_id,
        message_id,
        at,
    }
}

pub fn toggle_reaction(
    by: UserId,
    conv_id: ConvId,
    message_id: MessageId,
    emoji: &str,
    at: Micros,
) -> Command {
    Command::ToggleReaction {
        by,
        conv_id,
        message_id,
        emoji: emoji.to_string(),
        at,
    }
}

/// The content the crash child posts for a client id, padded with `x` to
/// `bytes`: the crash test checks what it reads back against it.
pub fn crash_content(client_id: &str, bytes: usize) -> String {
    let mut content = format!("payload of {client_id}");
    let pad = bytes.saturating_sub(content.len());
    content.push_str(&"x".repeat(pad));
    content
}

/// The user a reply names; panics on any other reply.
pub fn user_id(reply: &Reply) -> UserId {
    match reply {
        Reply::User(id) => *id,
        other => panic!("expected a user, got {other:?}"),
    }
}

/// The conversation a reply names; panics on any other reply.
pub fn conv_id(reply: &Reply) -> ConvId {
    match reply {
        Reply::Conversation { conv_id, .. } => *conv_id,
        other => panic!("expected a conversation, got {other:?}"),
    }
}

/// The message a reply names and whether it was created now; panics on
/// any other reply.
pub fn message_id(reply: &Reply) -> (MessageId, bool) {
    match reply {
        Reply::Message {
            message_id,
            created,
        } => (*message_id, *created),
        other => panic!("expected a message, got {other:?}"),
    }
}
