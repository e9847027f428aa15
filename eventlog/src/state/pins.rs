//! Pins (issue 14): admins pin and unpin messages of their conversation;
//! the conversation lists its pinned message ids.

use crate::command::{Command, Rejection, Reply};
use crate::event::Event;

use super::model::Pin;
use super::{Decision, State};

impl State {
    /// A message of the conversation (deleted ones too, as the original),
    /// by an admin; pinning it again answers the existing pin.
    pub(super) fn decide_pin(&self, command: &Command) -> Result<Decision, Rejection> {
        let Command::PinMessage {
            by,
            conv_id,
            message_id,
            at,
        } = command
        else {
            unreachable!("State::decide dispatches only Command::PinMessage here")
        };
        let (conv, _) = self.visible_message(*conv_id, *message_id, *by)?;
        if !conv.is_admin(*by) {
            return Err(Rejection::NotAnAdmin);
        }
        if let Some(pin) = conv.pin_of(*message_id) {
            return Ok(Decision::none(Reply::Pin {
                pin_id: pin.id,
                created: false,
            }));
        }
        let pin_id = self.next_pin_id + 1;
        Ok(Decision::one(
            Event::MessagePinned {
                pin_id,
                message_id: *message_id,
                conv_id: *conv_id,
                seq: conv.last_seq + 1,
                by: *by,
                at: *at,
            },
            Reply::Pin {
                pin_id,
                created: true,
            },
        ))
    }

    pub(super) fn apply_message_pinned(&mut self, event: &Event) {
        let Event::MessagePinned {
            pin_id,
            message_id,
            conv_id,
            by,
            at,
            ..
        } = event
        else {
            unreachable!("State::apply dispatches only Event::MessagePinned here")
        };
        self.next_pin_id = self.next_pin_id.max(*pin_id);
        if let Some(conv) = self.conversations.get_mut(conv_id) {
            conv.pins.push(Pin {
                id: *pin_id,
                message_id: *message_id,
                by: *by,
                at: *at,
            });
        }
    }

    pub(super) fn decide_unpin(&self, command: &Command) -> Result<Decision, Rejection> {
        let Command::UnpinMessage {
            by,
            conv_id,
            message_id,
            at,
        } = command
        else {
            unreachable!("State::decide dispatches only Command::UnpinMessage here")
        };
        let (conv, _) = self.visible_message(*conv_id, *message_id, *by)?;
        if !conv.is_admin(*by) {
            return Err(Rejection::NotAnAdmin);
        }
        let pin = conv.pin_of(*message_id).ok_or(Rejection::NotPinned)?;
        Ok(Decision::one(
            Event::MessageUnpinned {
                pin_id: pin.id,
                message_id: *message_id,
                conv_id: *conv_id,
                seq: conv.last_seq + 1,
                by: *by,
                at: *at,
            },
            Reply::Done,
        ))
    }

    pub(super) fn apply_message_unpinned(&mut self, event: &Event) {
        let Event::MessageUnpinned {
            pin_id, conv_id, ..
        } = event
        else {
            unreachable!("State::apply dispatches only Event::MessageUnpinned here")
        };
        if let Some(conv) = self.conversations.get_mut(conv_id) {
            conv.pins.retain(|p| p.id != *pin_id);
        }
    }
}
