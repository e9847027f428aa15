//! Users: registering and logging in.

use crate::command::{Command, Invalid, Rejection, Reply};
use crate::event::Event;

use super::model::User;
use super::{Decision, State};

impl State {
    /// Usernames are unique regardless of case; phone numbers are unique.
    pub(super) fn decide_register(&self, command: &Command) -> Result<Decision, Rejection> {
        let Command::Register {
            username,
            password_hash,
            email,
            display_name,
            phone_number,
            at,
        } = command
        else {
            unreachable!("State::decide dispatches only Command::Register here")
        };
        if username.is_empty() {
            return Err(Rejection::Invalid(Invalid::BlankUsername));
        }
        if self.users_by_name.contains_key(&username.to_lowercase()) {
            return Err(Rejection::UsernameTaken);
        }
        if let Some(phone) = phone_number {
            if self.users_by_phone.contains_key(phone) {
                return Err(Rejection::PhoneTaken);
            }
        }
        let user_id = self.next_user_id + 1;
        Ok(Decision::one(
            Event::UserRegistered {
                user_id,
                username: username.clone(),
                password_hash: password_hash.clone(),
                email: email.clone(),
                display_name: display_name.clone(),
                phone_number: phone_number.clone(),
                at: *at,
            },
            Reply::User(user_id),
        ))
    }

    pub(super) fn apply_user_registered(&mut self, event: &Event) {
        let Event::UserRegistered {
            user_id,
            username,
            password_hash,
            email,
            display_name,
            phone_number,
            at,
        } = event
        else {
            unreachable!("State::apply dispatches only Event::UserRegistered here")
        };
        self.next_user_id = self.next_user_id.max(*user_id);
        self.users_by_name.insert(username.to_lowercase(), *user_id);
        if let Some(phone) = phone_number {
            self.users_by_phone.insert(phone.clone(), *user_id);
        }
        self.users.insert(
            *user_id,
            User {
                id: *user_id,
                username: username.clone(),
                password_hash: password_hash.clone(),
                email: email.clone(),
                display_name: display_name.clone(),
                phone_number: phone_number.clone(),
                is_online: false,
                last_seen_at: None,
                date_joined: *at,
            },
        );
    }

    pub(super) fn decide_login(&self, command: &Command) -> Result<Decision, Rejection> {
        let Command::RecordLogin { user_id, at } = command else {
            unreachable!("State::decide dispatches only Command::RecordLogin here")
        };
        self.existing_user(*user_id)?;
        Ok(Decision::one(
            Event::UserSeen {
                user_id: *user_id,
                at: *at,
            },
            Reply::User(*user_id),
        ))
    }

    /// A login marks the user online, as the original did.
    pub(super) fn apply_user_seen(&mut self, event: &Event) {
        let Event::UserSeen { user_id, at } = event else {
            unreachable!("State::apply dispatches only Event::UserSeen here")
        };
        if let Some(user) = self.users.get_mut(user_id) {
            user.is_online = true;
            user.last_seen_at = Some(*at);
        }
    }
}
