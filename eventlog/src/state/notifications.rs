//! Notifications and push devices (issue 15).
//!
//! A member who has no socket open anywhere in the cluster is told of a
//! message or of a call that rings for them. Who that is, is decided with
//! the message or the call itself ([`State::decide`] appends a
//! `NotificationsCreated` to every decision that posts a message or starts
//! a call), so every node derives the same notifications with the same
//! ids, and the log is the push outbox: the server's pusher reads them
//! after its cursor and hands them to the webhook.
//!
//! A member is told unless they are online (presence, decided in the
//! log), turned `enable_notifications` off, or block the sender. Each user
//! keeps their last [`NOTIFICATIONS_KEPT`], 32 bytes each; `is_read` is an
//! event of its own. Devices are the push tokens the webhook receives: a
//! token belongs to one user (registering it moves it), at most
//! [`DEVICES_KEPT`] a user (the oldest goes).

use std::collections::VecDeque;

use imbl::OrdMap;

use serde::{Deserialize, Serialize};

use crate::command::{Command, Rejection, Reply};
use crate::event::{CallId, ConvId, Event, MessageId, Micros, NotificationId, UserId};

use super::{Decision, State};

/// How many notifications a user keeps (newest); older ones are dropped.
pub const NOTIFICATIONS_KEPT: usize = 50;
/// How many push devices a user keeps (newest registered).
pub const DEVICES_KEPT: usize = 20;
/// The platforms a device may name.
pub const PLATFORMS: [&str; 3] = ["android", "ios", "web"];

/// One notification of one user, as the queries answer it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Notification {
    pub id: NotificationId,
    pub user: UserId,
    /// `message` or `call` (the original's `notification_type` choices).
    pub kind: String,
    pub conv_id: ConvId,
    pub message_id: Option<MessageId>,
    pub call_id: Option<CallId>,
    /// The sender of the message, or the caller.
    pub from: UserId,
    pub created_at: Micros,
    pub is_read: bool,
}

/// A notification as a user keeps it: 32 bytes. Its conversation and
/// sender are the message's or the call's, looked up when it is read, so
/// that every user's last [`NOTIFICATIONS_KEPT`] cost little RAM (issue
/// 12: a service's users times 50 of these).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
struct Kept {
    id: NotificationId,
    /// The message id, or the call id when `call`.
    about: u64,
    at: Micros,
    call: bool,
    read: bool,
}

/// A push token of a user's device.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Device {
    pub token: String,
    pub platform: String,
    pub created_at: Micros,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub(crate) struct Notifications {
    /// Id of the last notification created.
    next_id: NotificationId,
    by_user: OrdMap<UserId, VecDeque<Kept>>,
    devices: OrdMap<UserId, Vec<Device>>,
}

impl State {
    /// `user`'s notifications, newest first, those of conversations they
    /// are no longer in (or of messages and calls gone with theirs) left
    /// out.
    pub fn notifications_of(&self, user: UserId) -> Vec<Notification> {
        self.notifications
            .by_user
            .get(&user)
            .into_iter()
            .flatten()
            .rev()
            .filter_map(|kept| self.expand(user, kept))
            .collect()
    }

    /// Notification `id` of `user`, while they are in its conversation.
    pub fn notification(&self, user: UserId, id: NotificationId) -> Option<Notification> {
        let kept = self
            .notifications
            .by_user
            .get(&user)?
            .iter()
            .find(|n| n.id == id)?;
        self.expand(user, kept)
    }

    fn expand(&self, user: UserId, kept: &Kept) -> Option<Notification> {
        let (conv_id, from, message_id, call_id) = match kept.call {
            true => {
                let call = self.calls.get(&kept.about)?;
                (call.conv_id, call.caller, None, Some(call.id))
            }
            false => {
                let message = self.history.get(kept.about)?;
                (message.conv_id, message.sender, Some(message.id), None)
            }
        };
        if !self.is_member(conv_id, user) {
            return None;
        }
        Some(Notification {
            id: kept.id,
            user,
            kind: if kept.call { "call" } else { "message" }.into(),
            conv_id,
            message_id,
            call_id,
            from,
            created_at: kept.at,
            is_read: kept.read,
        })
    }

    /// The id of the last notification created (0: none yet).
    pub fn last_notification_id(&self) -> NotificationId {
        self.notifications.next_id
    }

    /// `user`'s push devices, oldest first.
    pub fn devices_of(&self, user: UserId) -> &[Device] {
        self.notifications
            .devices
            .get(&user)
            .map_or(&[], Vec::as_slice)
    }

    /// Whether `user` is told of what `from` sends: offline everywhere,
    /// notifications on, not blocking `from`.
    fn notifies(&self, user: UserId, from: UserId) -> bool {
        let Some(recipient) = self.users.get(&user) else {
            return false;
        };
        let online = self.presence.get(&user).is_some_and(|n| !n.is_empty());
        let enabled = recipient
            .settings
            .as_ref()
            .is_none_or(|s| s.values.enable_notifications);
        user != from && !online && enabled && !self.blocks(user, from)
    }

    /// Those of `users` told of what `from` sends. Nothing is allocated
    /// when nobody is (every post whose members are all online).
    fn told<'a>(&self, users: impl Iterator<Item = &'a UserId>, from: UserId) -> Vec<UserId> {
        users.copied().filter(|u| self.notifies(*u, from)).collect()
    }

    /// Appends to `events` the notifications its posts and call starts
    /// produce: what [`State::decide`] does to every decision.
    pub(super) fn add_notifications(&self, events: &mut Vec<Event>) {
        let mut next = self.notifications.next_id;
        let mut created = Vec::new();
        for event in events.iter() {
            let (kind, conv_id, from, message_id, call_id, at, users) = match event {
                Event::MessagePosted {
                    message_id,
                    conv_id,
                    sender,
                    at,
                    ..
                } => {
                    let conv = self.conversations.get(conv_id);
                    let members = conv.into_iter().flat_map(|c| c.members.keys());
                    let users = self.told(members, *sender);
                    let message_id = Some(*message_id);
                    ("message", *conv_id, *sender, message_id, None, *at, users)
                }
                Event::CallStarted {
                    call_id,
                    conv_id,
                    caller,
                    participants,
                    at,
                    ..
                } => {
                    let users = self.told(participants.iter(), *caller);
                    ("call", *conv_id, *caller, None, Some(*call_id), *at, users)
                }
                _ => continue,
            };
            if users.is_empty() {
                continue;
            }
            let first_id = next + 1;
            next += users.len() as u64;
            created.push(Event::NotificationsCreated {
                first_id,
                users,
                kind: kind.into(),
                conv_id,
                message_id,
                call_id,
                from,
                at,
            });
        }
        events.extend(created);
    }

    pub(super) fn decide_read_notification(
        &self,
        command: &Command,
    ) -> Result<Decision, Rejection> {
        let Command::ReadNotification {
            by,
            notification_id,
            at,
        } = command
        else {
            unreachable!("State::decide dispatches only Command::ReadNotification here")
        };
        let notification = self
            .notification(*by, *notification_id)
            .ok_or(Rejection::UnknownNotification)?;
        if notification.is_read {
            return Ok(Decision::none(Reply::Done));
        }
        Ok(Decision::one(
            Event::NotificationRead {
                user_id: *by,
                notification_id: *notification_id,
                at: *at,
            },
            Reply::Done,
        ))
    }

    pub(super) fn decide_register_device(&self, command: &Command) -> Result<Decision, Rejection> {
        let Command::RegisterDevice {
            by,
            token,
            platform,
            at,
        } = command
        else {
            unreachable!("State::decide dispatches only Command::RegisterDevice here")
        };
        self.existing_user(*by)?;
        let known = self
            .devices_of(*by)
            .iter()
            .any(|d| d.token == *token && d.platform == *platform);
        if known {
            return Ok(Decision::none(Reply::Done));
        }
        Ok(Decision::one(
            Event::DeviceRegistered {
                user_id: *by,
                token: token.clone(),
                platform: platform.clone(),
                at: *at,
            },
            Reply::Done,
        ))
    }

    pub(super) fn decide_remove_device(&self, command: &Command) -> Result<Decision, Rejection> {
        let Command::RemoveDevice { by, token, at } = command else {
            unreachable!("State::decide dispatches only Command::RemoveDevice here")
        };
        if !self.devices_of(*by).iter().any(|d| d.token == *token) {
            return Err(Rejection::UnknownDevice);
        }
        Ok(Decision::one(
            Event::DeviceRemoved {
                user_id: *by,
                token: token.clone(),
                at: *at,
            },
            Reply::Done,
        ))
    }

    pub(super) fn apply_notifications_created(&mut self, event: &Event) {
        let Event::NotificationsCreated {
            first_id,
            users,
            message_id,
            call_id,
            at,
            ..
        } = event
        else {
            unreachable!("State::apply dispatches only Event::NotificationsCreated here")
        };
        let (about, call) = match (message_id, call_id) {
            (_, Some(call_id)) => (*call_id, true),
            (Some(message_id), None) => (*message_id, false),
            (None, None) => return,
        };
        for (id, user) in (*first_id..).zip(users) {
            let kept = self.notifications.by_user.entry(*user).or_default();
            kept.push_back(Kept {
                id,
                about,
                at: *at,
                call,
                read: false,
            });
            if kept.len() > NOTIFICATIONS_KEPT {
                kept.pop_front();
            }
            self.notifications.next_id = self.notifications.next_id.max(id);
        }
    }

    pub(super) fn apply_notification_read(&mut self, event: &Event) {
        let Event::NotificationRead {
            user_id,
            notification_id,
            ..
        } = event
        else {
            unreachable!("State::apply dispatches only Event::NotificationRead here")
        };
        let found = self
            .notifications
            .by_user
            .get_mut(user_id)
            .and_then(|kept| kept.iter_mut().find(|n| n.id == *notification_id));
        if let Some(notification) = found {
            notification.read = true;
        }
    }

    pub(super) fn apply_device_registered(&mut self, event: &Event) {
        let Event::DeviceRegistered {
            user_id,
            token,
            platform,
            at,
        } = event
        else {
            unreachable!("State::apply dispatches only Event::DeviceRegistered here")
        };
        self.forget_token(token);
        let devices = self.notifications.devices.entry(*user_id).or_default();
        devices.push(Device {
            token: token.clone(),
            platform: platform.clone(),
            created_at: *at,
        });
        if devices.len() > DEVICES_KEPT {
            devices.remove(0);
        }
    }

    pub(super) fn apply_device_removed(&mut self, event: &Event) {
        let Event::DeviceRemoved { token, .. } = event else {
            unreachable!("State::apply dispatches only Event::DeviceRemoved here")
        };
        self.forget_token(token);
    }

    /// Removes `token` from whichever user has it.
    fn forget_token(&mut self, token: &str) {
        super::maps::retain_touched(
            &mut self.notifications.devices,
            |devices| devices.iter().any(|d| d.token == token),
            |devices| {
                devices.retain(|d| d.token != token);
                !devices.is_empty()
            },
        );
    }
}

#[cfg(test)]
mod tests;
