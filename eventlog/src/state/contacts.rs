//! Contacts and blocking (issue 14): each user's address book, one entry
//! per (owner, user), and the blocks that take effect elsewhere in the
//! state machine: while A blocks B, B cannot open a direct conversation
//! with A nor post in theirs (`conversations.rs`, `messages.rs` ask
//! [`State::blocks`]), and the server hides A's typing and presence from B.
//! Deciding blocks here, in log order, makes every node agree.

use imbl::OrdMap;

use serde::{Deserialize, Serialize};

use crate::command::{Command, ContactFlag, Rejection, Reply};
use crate::event::{ContactId, Event, UserId};

use super::model::Contact;
use super::{Decision, State};

/// Every contact, by id and by (owner, user). Kept whole in the snapshot.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub(super) struct Contacts {
    last_id: ContactId,
    by_id: OrdMap<ContactId, Contact>,
    /// (owner, user) → contact: the pair's uniqueness, an owner's list in
    /// order (a range), and what [`State::blocks`] looks up.
    by_pair: OrdMap<(UserId, UserId), ContactId>,
}

impl State {
    // ---- queries -------------------------------------------------------

    /// `owner`'s contact `id` (none for anyone else's).
    pub fn contact_of(&self, owner: UserId, id: ContactId) -> Option<&Contact> {
        self.contacts.by_id.get(&id).filter(|c| c.owner == owner)
    }

    /// `owner`'s contacts, by the contact's user id.
    pub fn contacts_of(&self, owner: UserId) -> impl Iterator<Item = &Contact> {
        self.contacts
            .by_pair
            .range((owner, UserId::MIN)..=(owner, UserId::MAX))
            .filter_map(|(_, id)| self.contacts.by_id.get(id))
    }

    /// Whether `owner` blocks `user`.
    pub fn blocks(&self, owner: UserId, user: UserId) -> bool {
        self.contacts
            .by_pair
            .get(&(owner, user))
            .and_then(|id| self.contacts.by_id.get(id))
            .is_some_and(|c| c.is_blocked)
    }

    /// The users `owner` blocks.
    pub fn blocked_by(&self, owner: UserId) -> impl Iterator<Item = UserId> + '_ {
        self.contacts_of(owner)
            .filter(|c| c.is_blocked)
            .map(|c| c.user_id)
    }

    // ---- decide and apply ------------------------------------------------

    /// One contact per pair; not yourself; the user must exist.
    pub(super) fn decide_add_contact(&self, command: &Command) -> Result<Decision, Rejection> {
        let Command::AddContact {
            owner,
            user_id,
            nickname,
            is_blocked,
            is_favorite,
            at,
        } = command
        else {
            unreachable!("State::decide dispatches only Command::AddContact here")
        };
        self.existing_user(*owner)?;
        if owner == user_id {
            return Err(Rejection::ContactIsSelf);
        }
        self.existing_user(*user_id)?;
        if self.contacts.by_pair.contains_key(&(*owner, *user_id)) {
            return Err(Rejection::ContactExists);
        }
        let contact_id = self.contacts.last_id + 1;
        Ok(Decision::one(
            Event::ContactAdded {
                contact_id,
                owner: *owner,
                user_id: *user_id,
                nickname: nickname.clone(),
                is_blocked: *is_blocked,
                is_favorite: *is_favorite,
                at: *at,
            },
            Reply::Contact(contact_id),
        ))
    }

    pub(super) fn apply_contact_added(&mut self, event: &Event) {
        let Event::ContactAdded {
            contact_id,
            owner,
            user_id,
            nickname,
            is_blocked,
            is_favorite,
            at,
        } = event
        else {
            unreachable!("State::apply dispatches only Event::ContactAdded here")
        };
        let contacts = &mut self.contacts;
        contacts.last_id = contacts.last_id.max(*contact_id);
        contacts.by_pair.insert((*owner, *user_id), *contact_id);
        contacts.by_id.insert(
            *contact_id,
            Contact {
                id: *contact_id,
                owner: *owner,
                user_id: *user_id,
                nickname: nickname.clone(),
                is_blocked: *is_blocked,
                is_favorite: *is_favorite,
                added_at: *at,
            },
        );
    }

    /// Only the fields that change go into the event; none: no event.
    pub(super) fn decide_update_contact(&self, command: &Command) -> Result<Decision, Rejection> {
        let Command::UpdateContact {
            owner,
            contact_id,
            nickname,
            is_blocked,
            is_favorite,
            at,
        } = command
        else {
            unreachable!("State::decide dispatches only Command::UpdateContact here")
        };
        let contact = self
            .contact_of(*owner, *contact_id)
            .ok_or(Rejection::UnknownContact)?;
        let nickname = nickname.clone().filter(|n| *n != contact.nickname);
        let is_blocked = is_blocked.filter(|b| *b != contact.is_blocked);
        let is_favorite = is_favorite.filter(|f| *f != contact.is_favorite);
        let reply = Reply::Contact(*contact_id);
        if nickname.is_none() && is_blocked.is_none() && is_favorite.is_none() {
            return Ok(Decision::none(reply));
        }
        Ok(Decision::one(
            Event::ContactUpdated {
                contact_id: *contact_id,
                owner: *owner,
                nickname,
                is_blocked,
                is_favorite,
                at: *at,
            },
            reply,
        ))
    }

    /// A toggle is an update to the opposite of the current value.
    pub(super) fn decide_toggle_contact(&self, command: &Command) -> Result<Decision, Rejection> {
        let Command::ToggleContact {
            owner,
            contact_id,
            flag,
            at,
        } = command
        else {
            unreachable!("State::decide dispatches only Command::ToggleContact here")
        };
        let contact = self
            .contact_of(*owner, *contact_id)
            .ok_or(Rejection::UnknownContact)?;
        let (is_blocked, is_favorite) = match flag {
            ContactFlag::Blocked => (Some(!contact.is_blocked), None),
            ContactFlag::Favorite => (None, Some(!contact.is_favorite)),
        };
        Ok(Decision::one(
            Event::ContactUpdated {
                contact_id: *contact_id,
                owner: *owner,
                nickname: None,
                is_blocked,
                is_favorite,
                at: *at,
            },
            Reply::Contact(*contact_id),
        ))
    }

    pub(super) fn apply_contact_updated(&mut self, event: &Event) {
        let Event::ContactUpdated {
            contact_id,
            nickname,
            is_blocked,
            is_favorite,
            ..
        } = event
        else {
            unreachable!("State::apply dispatches only Event::ContactUpdated here")
        };
        if let Some(contact) = self.contacts.by_id.get_mut(contact_id) {
            if let Some(nickname) = nickname {
                contact.nickname = nickname.clone();
            }
            if let Some(is_blocked) = is_blocked {
                contact.is_blocked = *is_blocked;
            }
            if let Some(is_favorite) = is_favorite {
                contact.is_favorite = *is_favorite;
            }
        }
    }

    pub(super) fn decide_remove_contact(&self, command: &Command) -> Result<Decision, Rejection> {
        let Command::RemoveContact {
            owner,
            contact_id,
            at,
        } = command
        else {
            unreachable!("State::decide dispatches only Command::RemoveContact here")
        };
        self.contact_of(*owner, *contact_id)
            .ok_or(Rejection::UnknownContact)?;
        Ok(Decision::one(
            Event::ContactRemoved {
                contact_id: *contact_id,
                owner: *owner,
                at: *at,
            },
            Reply::Done,
        ))
    }

    pub(super) fn apply_contact_removed(&mut self, event: &Event) {
        let Event::ContactRemoved { contact_id, .. } = event else {
            unreachable!("State::apply dispatches only Event::ContactRemoved here")
        };
        if let Some(contact) = self.contacts.by_id.remove(contact_id) {
            self.contacts
                .by_pair
                .remove(&(contact.owner, contact.user_id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;

    fn two_users() -> State {
        let mut state = State::default();
        for name in ["ana", "bo"] {
            let register = Command::Register {
                username: name.into(),
                password_hash: "x".into(),
                email: String::new(),
                display_name: String::new(),
                phone_number: None,
                at: 1,
            };
            state.execute(&register, &mut Vec::new()).expect("register");
        }
        state
    }

    fn add(owner: UserId, user_id: UserId) -> Command {
        Command::AddContact {
            owner,
            user_id,
            nickname: String::new(),
            is_blocked: false,
            is_favorite: false,
            at: 2,
        }
    }

    #[test]
    fn one_contact_per_pair_and_never_yourself() {
        let mut state = two_users();
        assert_eq!(
            state.execute(&add(1, 1), &mut Vec::new()),
            Err(Rejection::ContactIsSelf)
        );
        assert_eq!(
            state.execute(&add(1, 9), &mut Vec::new()),
            Err(Rejection::UnknownUser)
        );
        assert_eq!(
            state.execute(&add(1, 2), &mut Vec::new()),
            Ok(Reply::Contact(1))
        );
        assert_eq!(
            state.execute(&add(1, 2), &mut Vec::new()),
            Err(Rejection::ContactExists)
        );
        // The other direction is another owner's entry.
        assert_eq!(
            state.execute(&add(2, 1), &mut Vec::new()),
            Ok(Reply::Contact(2))
        );
        assert_eq!(state.contacts_of(1).count(), 1);
        assert!(state.contact_of(2, 1).is_none(), "not bo's contact");
    }

    #[test]
    fn toggles_flip_and_unchanged_updates_append_nothing() {
        let mut state = two_users();
        state.execute(&add(1, 2), &mut Vec::new()).expect("add");
        let toggle = Command::ToggleContact {
            owner: 1,
            contact_id: 1,
            flag: ContactFlag::Blocked,
            at: 3,
        };
        state.execute(&toggle, &mut Vec::new()).expect("block");
        assert!(state.blocks(1, 2) && !state.blocks(2, 1));
        assert_eq!(state.blocked_by(1).collect::<Vec<_>>(), vec![2]);
        state.execute(&toggle, &mut Vec::new()).expect("unblock");
        assert!(!state.blocks(1, 2));
        let mut out = Vec::new();
        let same = Command::UpdateContact {
            owner: 1,
            contact_id: 1,
            nickname: Some(String::new()),
            is_blocked: Some(false),
            is_favorite: None,
            at: 4,
        };
        state.execute(&same, &mut out).expect("update");
        assert!(out.is_empty());
        let remove = Command::RemoveContact {
            owner: 2,
            contact_id: 1,
            at: 5,
        };
        assert_eq!(
            state.execute(&remove, &mut Vec::new()),
            Err(Rejection::UnknownContact),
            "only the owner removes it"
        );
    }
}
