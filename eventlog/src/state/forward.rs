//! Forwarding (issue 14): a message of one conversation posted again into
//! another (or the same) by a member of both, with `forwarded_from` set.

use crate::command::{Command, Rejection, Reply};
use crate::event::Event;

use super::{Decision, State};

impl State {
    /// One `MessagePosted` in the target (content and type copied,
    /// `forwarded_from` the source, no reply) and one `AttachmentStored`
    /// per attachment of the source: new attachment rows of the same
    /// stored bytes (`blob_key`), so each is downloadable by the members
    /// of its own conversation and no file is copied. A repeated
    /// `client_id` in the target answers the original, as a post does.
    pub(super) fn decide_forward(&self, command: &Command) -> Result<Decision, Rejection> {
        let Command::ForwardMessage {
            by,
            conv_id,
            message_id,
            to_conv,
            client_id,
            at,
        } = command
        else {
            unreachable!("State::decide dispatches only Command::ForwardMessage here")
        };
        // A message the caller cannot see is unknown to them, whatever the
        // reason (contract: 404 "No Message matches the given query.").
        let (_, source) = self
            .visible_message(*conv_id, *message_id, *by)
            .map_err(|_| Rejection::UnknownMessage)?;
        let target = self
            .member_conversation(*to_conv, *by)
            .map_err(|_| Rejection::UnknownTarget)?;
        if let Some(retry) = self.earlier_post(command) {
            return Ok(retry);
        }
        // The original republished a deleted message's text (API-rest 6.3).
        if source.is_deleted {
            return Err(Rejection::MessageDeleted);
        }
        let new_id = self.next_message_id + 1;
        let mut events = vec![Event::MessagePosted {
            message_id: new_id,
            conv_id: *to_conv,
            seq: target.last_seq + 1,
            sender: *by,
            content: source.content.clone(),
            message_type: source.message_type.clone(),
            reply_to: None,
            forwarded_from: Some(*message_id),
            client_id: client_id.clone(),
            at: *at,
        }];
        for (n, attachment) in (1..).zip(&source.attachments) {
            events.push(Event::AttachmentStored {
                attachment_id: self.next_attachment_id + n,
                message_id: new_id,
                conv_id: *to_conv,
                seq: target.last_seq + 1 + n,
                file_name: attachment.file_name.clone(),
                file_size: attachment.file_size,
                mime_type: attachment.mime_type.clone(),
                blob_key: attachment.blob_key.clone(),
                at: *at,
            });
        }
        Ok(Decision {
            events,
            reply: Reply::Message {
                message_id: new_id,
                created: true,
            },
        })
    }
}
