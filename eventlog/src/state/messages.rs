//! Messages: posting (idempotent by `client_id`), editing, deleting and
//! reading. Reactions and attachments are in `reactions.rs`.

use crate::command::{Command, Invalid, Rejection, Reply};
use crate::event::{ConvKind, Event};

use super::model::{Message, ReadPosition};
use super::{Decision, State};

/// Message types the contract knows.
pub const MESSAGE_TYPES: [&str; 5] = ["text", "image", "video", "audio", "file"];

impl State {
    /// A repeated (sender, conversation, `client_id`) returns the original
    /// message and appends nothing.
    pub(super) fn decide_post(&self, command: &Command) -> Result<Decision, Rejection> {
        self.decide_post_checked(command, false)
    }

    /// The message as [`State::decide_post`] (its content may be blank:
    /// the files are the message), then one `AttachmentStored` per file,
    /// with the seqs and attachment ids that follow.
    pub(super) fn decide_post_with_attachments(
        &self,
        command: &Command,
    ) -> Result<Decision, Rejection> {
        let Command::PostWithAttachments { post, attachments } = command else {
            unreachable!("State::decide dispatches only Command::PostWithAttachments here")
        };
        let Command::PostMessage {
            sender, conv_id, ..
        } = &**post
        else {
            return Err(Rejection::Invalid(Invalid::NotAPost));
        };
        let mut decision = self.decide_post_checked(post, !attachments.is_empty())?;
        let Reply::Message {
            message_id,
            created: true,
        } = decision.reply
        else {
            return Ok(decision);
        };
        let conv = self.member_conversation(*conv_id, *sender)?;
        let at = match decision.events.first() {
            Some(Event::MessagePosted { at, .. }) => *at,
            _ => return Ok(decision),
        };
        for (n, file) in (1..).zip(attachments) {
            decision.events.push(Event::AttachmentStored {
                attachment_id: self.next_attachment_id + n,
                message_id,
                conv_id: *conv_id,
                seq: conv.last_seq + 1 + n,
                file_name: file.file_name.clone(),
                file_size: file.file_size,
                mime_type: file.mime_type.clone(),
                blob_key: file.blob_key.clone(),
                at,
            });
        }
        Ok(decision)
    }

    fn decide_post_checked(
        &self,
        command: &Command,
        with_files: bool,
    ) -> Result<Decision, Rejection> {
        let Command::PostMessage {
            sender,
            conv_id,
            content,
            message_type,
            reply_to,
            forwarded_from,
            client_id,
            at,
        } = command
        else {
            unreachable!("State::decide dispatches only Command::PostMessage here")
        };
        let conv = self.member_conversation(*conv_id, *sender)?;
        if let Some(retry) = self.earlier_post(command) {
            return Ok(retry);
        }
        // In a direct conversation, the other member may block the sender
        // (a retry of a message posted before the block still answers).
        if conv.kind == ConvKind::Direct
            && conv
                .members
                .keys()
                .any(|m| m != sender && self.blocks(*m, *sender))
        {
            return Err(Rejection::Blocked);
        }
        if content.trim().is_empty() && message_type == "text" && !with_files {
            return Err(Rejection::Invalid(Invalid::BlankContent));
        }
        if !MESSAGE_TYPES.contains(&message_type.as_str()) {
            return Err(Rejection::Invalid(Invalid::UnknownMessageType));
        }
        if let Some(reply_to) = reply_to {
            if self.history.get_in(*conv_id, *reply_to).is_none() {
                return Err(Rejection::Invalid(Invalid::ReplyToElsewhere));
            }
        }
        if let Some(origin) = forwarded_from {
            let visible = self
                .history
                .get(*origin)
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

    /// The answer to a retry: the message an earlier post or forward with
    /// the same idempotency key made, ever.
    pub(super) fn earlier_post(&self, command: &Command) -> Option<Decision> {
        let (by, conv, client_id) = command.idempotency_key()?;
        let message_id = self.history.key(by, conv, client_id)?;
        Some(Decision::none(Reply::Message {
            message_id,
            created: false,
        }))
    }

    pub(super) fn apply_message_posted(&mut self, event: &Event) {
        let Event::MessagePosted {
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
        } = event
        else {
            unreachable!("State::apply dispatches only Event::MessagePosted here")
        };
        self.next_message_id = self.next_message_id.max(*message_id);
        self.message_count += 1;
        if let Some(conv) = self.conversations.get_mut(conv_id) {
            conv.last_message = Some(*message_id);
            conv.updated_at = *at;
            // O(members), as the fan-out of the message is.
            for member in conv.members.keys().filter(|m| *m != sender) {
                *self.unread.entry((*conv_id, *member)).or_insert(0) += 1;
            }
        }
        if let Some(key) = client_id {
            self.history.insert_key(*sender, *conv_id, key, *message_id);
        }
        self.history.insert(Message {
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
        });
    }

    pub(super) fn decide_edit(&self, command: &Command) -> Result<Decision, Rejection> {
        let Command::EditMessage {
            by,
            conv_id,
            message_id,
            content,
            at,
        } = command
        else {
            unreachable!("State::decide dispatches only Command::EditMessage here")
        };
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

    pub(super) fn apply_message_edited(&mut self, event: &Event) {
        let Event::MessageEdited {
            message_id,
            content,
            at,
            ..
        } = event
        else {
            unreachable!("State::apply dispatches only Event::MessageEdited here")
        };
        self.history.update(*message_id, |m| {
            m.content = content.clone();
            m.edited_at = Some(*at);
        });
    }

    pub(super) fn decide_delete(&self, command: &Command) -> Result<Decision, Rejection> {
        let Command::DeleteMessage {
            by,
            conv_id,
            message_id,
            at,
        } = command
        else {
            unreachable!("State::decide dispatches only Command::DeleteMessage here")
        };
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

    /// The message stays as a tombstone; the conversation's last message
    /// falls back to the newest one not deleted.
    pub(super) fn apply_message_deleted(&mut self, event: &Event) {
        let Event::MessageDeleted {
            message_id,
            conv_id,
            ..
        } = event
        else {
            unreachable!("State::apply dispatches only Event::MessageDeleted here")
        };
        let Some((sender, was_deleted)) = self.history.update(*message_id, |m| {
            let was = (m.sender, m.is_deleted);
            m.is_deleted = true;
            was
        }) else {
            return;
        };
        if !was_deleted {
            if let Some(conv) = self.conversations.get(conv_id) {
                for member in conv.members.keys().filter(|m| **m != sender) {
                    if self.read_up_to(*conv_id, *member) < *message_id {
                        if let Some(n) = self.unread.get_mut(&(*conv_id, *member)) {
                            *n = n.saturating_sub(1);
                        }
                    }
                }
            }
        }
        let is_last = self
            .conversations
            .get(conv_id)
            .is_some_and(|c| c.last_message == Some(*message_id));
        if is_last {
            let last = self
                .history
                .messages(*conv_id, 0..*message_id, true)
                .find(|m| !m.is_deleted)
                .map(|m| m.id);
            if let Some(conv) = self.conversations.get_mut(conv_id) {
                conv.last_message = last;
            }
        }
    }

    pub(super) fn decide_read(&self, command: &Command) -> Result<Decision, Rejection> {
        let Command::MarkRead {
            by,
            conv_id,
            message_id,
            at,
        } = command
        else {
            unreachable!("State::decide dispatches only Command::MarkRead here")
        };
        let (conv, _) = self.visible_message(*conv_id, *message_id, *by)?;
        // A mark that does not move the read position changes nothing: it
        // is not stored and nobody is told (a client repeating its read
        // mark must not fill the log and everyone's sockets).
        let read_up_to = self.reads.get(&(*conv_id, *by)).map(|r| r.up_to);
        if read_up_to.is_some_and(|up_to| up_to >= *message_id) {
            return Ok(Decision::none(Reply::Done));
        }
        // A user who hides read receipts still moves their own read
        // position, without a seq: no socket or replay shows it.
        if !self.existing_user(*by)?.shows_read_receipts() {
            return Ok(Decision::one(
                Event::MessagesReadPrivately {
                    conv_id: *conv_id,
                    user_id: *by,
                    up_to: *message_id,
                    at: *at,
                },
                Reply::Done,
            ));
        }
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

    /// `MessagesRead` and `MessagesReadPrivately` alike.
    pub(super) fn apply_messages_read(&mut self, event: &Event) {
        let (Event::MessagesRead {
            conv_id,
            user_id,
            up_to,
            at,
            ..
        }
        | Event::MessagesReadPrivately {
            conv_id,
            user_id,
            up_to,
            at,
        }) = event
        else {
            unreachable!("State::apply dispatches only the read events here")
        };
        let position = self
            .reads
            .entry((*conv_id, *user_id))
            .or_insert(ReadPosition { up_to: 0, at: *at });
        // Reading an older message never moves the position back.
        if *up_to < position.up_to {
            return;
        }
        let before = position.up_to;
        *position = ReadPosition {
            up_to: *up_to,
            at: *at,
        };
        // The messages between the old and the new position are read now.
        if !self.conversations.contains_key(conv_id) {
            return;
        }
        let read = self.unread_among(*conv_id, before + 1..up_to + 1, *user_id);
        if let Some(n) = self.unread.get_mut(&(*conv_id, *user_id)) {
            *n = n.saturating_sub(read);
        }
    }
}
