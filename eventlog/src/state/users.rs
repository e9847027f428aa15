//! Users: registering and logging in.
//!
//! Two keys decide uniqueness, both pure functions of the stored values so
//! that live decisions and replay agree:
//! * [`username_skeleton`]: a name is taken when another one looks the same
//!   (`lаlo` with a Cyrillic а, fullwidth `ｌａｌｏ`, `LALO` all fold to the
//!   key of `lalo`). Login still finds the exact name, case-insensitively.
//! * [`phone_key`]: the number without the separators people type, so a
//!   number stored raw before the server normalised them (`+1 555 000
//!   1111`) still blocks and still logs in as `+15550001111`.

use unicode_normalization::UnicodeNormalization;
use unicode_security::confusable_detection::skeleton;

use crate::command::{Command, Invalid, Rejection, Reply};
use crate::event::{Event, UserId};

use super::model::User;
use super::{Decision, State};

/// The look-alike key of a username: NFKC, lowercase, then the Unicode
/// confusables skeleton (UTS #39). Two names with the same key are the same
/// name to a reader. Depends only on the `unicode-security` tables compiled
/// in, so replay gives the same keys as the live decisions of this binary.
pub fn username_skeleton(name: &str) -> String {
    let folded: String = name.nfkc().collect::<String>().to_lowercase();
    skeleton(&folded).collect()
}

/// The index key of a phone number: without spaces, dashes, dots and
/// parentheses. The server stores E.164 already; this also folds numbers
/// stored raw by older versions.
pub fn phone_key(phone: &str) -> String {
    phone
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect()
}

impl State {
    /// Whether `name`, or a look-alike of it, is the name of a user other
    /// than `me`.
    pub fn username_taken(&self, name: &str, me: UserId) -> bool {
        let other = |id: Option<&UserId>| id.is_some_and(|id| *id != me);
        other(self.users_by_name.get(&name.to_lowercase()))
            || other(self.users_by_skeleton.get(&username_skeleton(name)))
    }

    /// Whether `phone` (up to separators) is the number of a user other
    /// than `me`.
    pub fn phone_taken(&self, phone: &str, me: UserId) -> bool {
        self.users_by_phone
            .get(&phone_key(phone))
            .is_some_and(|id| *id != me)
    }

    /// Rebuilds the user indexes that are not in the snapshot (or whose key
    /// changed since it was written) from `users`, in id order, exactly as
    /// replaying their registrations does.
    pub(crate) fn rebuild_user_indexes(&mut self) {
        self.users_by_skeleton.clear();
        self.users_by_phone.clear();
        for user in self.users.values() {
            index_user(
                &mut self.users_by_skeleton,
                &mut self.users_by_phone,
                user.id,
                &user.username,
                user.phone_number.as_deref(),
            );
        }
    }

    /// Usernames are unique up to look-alikes ([`username_skeleton`]);
    /// phone numbers up to separators ([`phone_key`]).
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
        if self.users_by_name.contains_key(&username.to_lowercase())
            || self
                .users_by_skeleton
                .contains_key(&username_skeleton(username))
        {
            return Err(Rejection::UsernameTaken);
        }
        if let Some(phone) = phone_number {
            if self.users_by_phone.contains_key(&phone_key(phone)) {
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
        index_user(
            &mut self.users_by_skeleton,
            &mut self.users_by_phone,
            *user_id,
            username,
            phone_number.as_deref(),
        );
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
                profile: Default::default(),
                settings: None,
                avatar: None,
                rendered: Default::default(),
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
        if let Some(user) = super::user_mut(&mut self.users, *user_id) {
            user.is_online = true;
            user.last_seen_at = Some(*at);
        }
    }
}

/// Adds a user to the look-alike and phone indexes. The first user keeps a
/// key: look-alikes registered before the skeleton existed stay as they are
/// (each still logs in by its exact name) and block new ones alike.
fn index_user(
    by_skeleton: &mut imbl::OrdMap<String, u64>,
    by_phone: &mut imbl::OrdMap<String, u64>,
    user_id: u64,
    username: &str,
    phone_number: Option<&str>,
) {
    by_skeleton
        .entry(username_skeleton(username))
        .or_insert(user_id);
    if let Some(phone) = phone_number {
        by_phone.entry(phone_key(phone)).or_insert(user_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_alikes_share_a_skeleton() {
        let lalo = username_skeleton("lalo");
        for alike in [
            "lalo",
            "LALO",
            "l\u{430}lo",
            "\u{ff4c}\u{ff41}\u{ff4c}\u{ff4f}",
            "Lalo",
        ] {
            assert_eq!(username_skeleton(alike), lalo, "{alike}");
        }
        assert_ne!(username_skeleton("kalu"), lalo);
        assert_ne!(username_skeleton("lala"), lalo);
    }

    #[test]
    fn phone_keys_drop_separators_only() {
        assert_eq!(phone_key("+1 (555) 000-11.11"), "+15550001111");
        assert_eq!(phone_key("+15550001111"), "+15550001111");
    }
}
