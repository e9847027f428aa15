//! Reactions and attachments: what is added to a posted message.

use crate::command::{Command, Invalid, Rejection, Reply};
use crate::event::Event;

use super::model::{Attachment, Reaction};
use super::{Decision, State};

impl State {
    /// Adds the reaction, or removes it when the user already has it.
    pub(super) fn decide_reaction(&self, command: &Command) -> Result<Decision, Rejection> {
        let Command::ToggleReaction {
            by,
            conv_id,
            message_id,
            emoji,
            at,
        } = command
        else {
            unreachable!("State::decide dispatches only Command::ToggleReaction here")
        };
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

    pub(super) fn apply_reaction_added(&mut self, event: &Event) {
        let Event::ReactionAdded {
            reaction_id,
            message_id,
            user_id,
            emoji,
            at,
            ..
        } = event
        else {
            unreachable!("State::apply dispatches only Event::ReactionAdded here")
        };
        self.next_reaction_id = self.next_reaction_id.max(*reaction_id);
        self.history.update(*message_id, |m| {
            m.reactions.push(Reaction {
                id: *reaction_id,
                user_id: *user_id,
                emoji: emoji.clone(),
                created_at: *at,
            });
        });
    }

    pub(super) fn apply_reaction_removed(&mut self, event: &Event) {
        let Event::ReactionRemoved {
            reaction_id,
            message_id,
            ..
        } = event
        else {
            unreachable!("State::apply dispatches only Event::ReactionRemoved here")
        };
        self.history.update(*message_id, |m| {
            m.reactions.retain(|r| r.id != *reaction_id);
        });
    }

    pub(super) fn decide_attachment(&self, command: &Command) -> Result<Decision, Rejection> {
        let Command::StoreAttachment {
            by,
            conv_id,
            message_id,
            file_name,
            file_size,
            mime_type,
            blob_key,
            at,
        } = command
        else {
            unreachable!("State::decide dispatches only Command::StoreAttachment here")
        };
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

    pub(super) fn apply_attachment_stored(&mut self, event: &Event) {
        let Event::AttachmentStored {
            attachment_id,
            message_id,
            file_name,
            file_size,
            mime_type,
            blob_key,
            ..
        } = event
        else {
            unreachable!("State::apply dispatches only Event::AttachmentStored here")
        };
        self.next_attachment_id = self.next_attachment_id.max(*attachment_id);
        let stored = self.history.update(*message_id, |m| {
            m.attachments.push(Attachment {
                id: *attachment_id,
                file_name: file_name.clone(),
                file_size: *file_size,
                mime_type: mime_type.clone(),
                blob_key: blob_key.clone(),
            });
        });
        if stored.is_some() {
            self.history.insert_attachment(*attachment_id, *message_id);
            *self.media_refs.entry(blob_key.clone()).or_default() += 1;
        }
    }
}
