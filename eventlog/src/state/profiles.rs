//! Profiles and settings: a user changing their own profile (uniqueness
//! of a new username or phone number decided here, the fields' shapes by
//! the server's intake) and writing their settings.

use crate::command::{Command, Invalid, Rejection, Reply};
use crate::event::{Event, UserId};
use crate::profile::{set, Nullable, ProfileChanges, Settings, SettingsValues};

use super::model::User;
use super::users::{phone_key, username_skeleton};
use super::{Decision, State};

impl State {
    /// Keeps only the fields that change; nothing to change is no event.
    pub(super) fn decide_update_profile(&self, command: &Command) -> Result<Decision, Rejection> {
        let Command::UpdateProfile {
            user_id,
            changes,
            at,
        } = command
        else {
            unreachable!("State::decide dispatches only Command::UpdateProfile here")
        };
        let user = self.existing_user(*user_id)?;
        let changes = changed_only(user, changes);
        if let Some(name) = &changes.username {
            if name.is_empty() {
                return Err(Rejection::Invalid(Invalid::BlankUsername));
            }
            if self.username_taken(name, *user_id) {
                return Err(Rejection::UsernameTaken);
            }
        }
        if let Some(Nullable::Value(phone)) = &changes.phone_number {
            if self.phone_taken(phone, *user_id) {
                return Err(Rejection::PhoneTaken);
            }
        }
        if changes.is_empty() {
            return Ok(Decision::none(Reply::User(*user_id)));
        }
        Ok(Decision::one(
            Event::ProfileUpdated {
                user_id: *user_id,
                changes: Box::new(changes),
                at: *at,
            },
            Reply::User(*user_id),
        ))
    }

    pub(super) fn apply_profile_updated(&mut self, event: &Event) {
        let Event::ProfileUpdated {
            user_id, changes, ..
        } = event
        else {
            unreachable!("State::apply dispatches only Event::ProfileUpdated here")
        };
        let Some(user) = super::user_mut(&mut self.users, *user_id) else {
            return;
        };
        if let Some(name) = &changes.username {
            let old = std::mem::replace(&mut user.username, name.clone());
            remove_if_held(&mut self.users_by_name, &old.to_lowercase(), *user_id);
            self.users_by_name.insert(name.to_lowercase(), *user_id);
            remove_if_held(
                &mut self.users_by_skeleton,
                &username_skeleton(&old),
                *user_id,
            );
            self.users_by_skeleton
                .entry(username_skeleton(name))
                .or_insert(*user_id);
        }
        if let Some(phone) = &changes.phone_number {
            let new = phone.clone().into_option();
            if let Some(old) = std::mem::replace(&mut user.phone_number, new.clone()) {
                remove_if_held(&mut self.users_by_phone, &phone_key(&old), *user_id);
            }
            if let Some(new) = new {
                self.users_by_phone
                    .entry(phone_key(&new))
                    .or_insert(*user_id);
            }
        }
        set(&mut user.email, &changes.email);
        set(&mut user.display_name, &changes.display_name);
        let p = &mut user.profile;
        set(&mut p.first_name, &changes.first_name);
        set(&mut p.last_name, &changes.last_name);
        set(&mut p.status_message, &changes.status_message);
        set(&mut p.bio, &changes.bio);
        if let Some(date) = &changes.date_of_birth {
            p.date_of_birth = date.clone().into_option();
        }
        set(&mut p.country, &changes.country);
        set(&mut p.city, &changes.city);
        set(&mut p.website, &changes.website);
        set(&mut p.show_phone_number, &changes.show_phone_number);
        set(&mut p.show_last_seen, &changes.show_last_seen);
        set(&mut p.show_profile_photo, &changes.show_profile_photo);
        set(&mut p.allow_calls, &changes.allow_calls);
        set(&mut p.allow_group_invite, &changes.allow_group_invite);
    }

    /// Every settings write is an event: `updated_at` moves even when no
    /// value changes, as the original's save.
    pub(super) fn decide_update_settings(&self, command: &Command) -> Result<Decision, Rejection> {
        let Command::UpdateSettings {
            user_id,
            changes,
            at,
        } = command
        else {
            unreachable!("State::decide dispatches only Command::UpdateSettings here")
        };
        self.existing_user(*user_id)?;
        Ok(Decision::one(
            Event::SettingsUpdated {
                user_id: *user_id,
                changes: changes.clone(),
                at: *at,
            },
            Reply::User(*user_id),
        ))
    }

    /// The first `GET settings/` creates the row; later ones store nothing.
    pub(super) fn decide_create_settings(&self, command: &Command) -> Result<Decision, Rejection> {
        let Command::CreateSettings { user_id, at } = command else {
            unreachable!("State::decide dispatches only Command::CreateSettings here")
        };
        if self.existing_user(*user_id)?.settings.is_some() {
            return Ok(Decision::none(Reply::User(*user_id)));
        }
        Ok(Decision::one(
            Event::SettingsUpdated {
                user_id: *user_id,
                changes: Box::default(),
                at: *at,
            },
            Reply::User(*user_id),
        ))
    }

    pub(super) fn apply_settings_updated(&mut self, event: &Event) {
        let Event::SettingsUpdated {
            user_id,
            changes,
            at,
        } = event
        else {
            unreachable!("State::apply dispatches only Event::SettingsUpdated here")
        };
        let Some(user) = super::user_mut(&mut self.users, *user_id) else {
            return;
        };
        let settings = user.settings.get_or_insert_with(|| {
            self.next_settings_id += 1;
            Settings {
                id: self.next_settings_id,
                values: SettingsValues::default(),
                created_at: *at,
                updated_at: *at,
            }
        });
        changes.apply_to(&mut settings.values);
        settings.updated_at = *at;
    }
}

/// `changes` without the fields that already have the given value.
fn changed_only(user: &User, changes: &ProfileChanges) -> ProfileChanges {
    fn keep<T: PartialEq + Clone>(change: &Option<T>, current: &T) -> Option<T> {
        change.as_ref().filter(|v| *v != current).cloned()
    }
    let p = &user.profile;
    ProfileChanges {
        username: keep(&changes.username, &user.username),
        email: keep(&changes.email, &user.email),
        display_name: keep(&changes.display_name, &user.display_name),
        phone_number: keep(
            &changes.phone_number,
            &Nullable::from_option(user.phone_number.clone()),
        ),
        first_name: keep(&changes.first_name, &p.first_name),
        last_name: keep(&changes.last_name, &p.last_name),
        status_message: keep(&changes.status_message, &p.status_message),
        bio: keep(&changes.bio, &p.bio),
        date_of_birth: keep(
            &changes.date_of_birth,
            &Nullable::from_option(p.date_of_birth.clone()),
        ),
        country: keep(&changes.country, &p.country),
        city: keep(&changes.city, &p.city),
        website: keep(&changes.website, &p.website),
        show_phone_number: keep(&changes.show_phone_number, &p.show_phone_number),
        show_last_seen: keep(&changes.show_last_seen, &p.show_last_seen),
        show_profile_photo: keep(&changes.show_profile_photo, &p.show_profile_photo),
        allow_calls: keep(&changes.allow_calls, &p.allow_calls),
        allow_group_invite: keep(&changes.allow_group_invite, &p.allow_group_invite),
    }
}

/// Removes `key` from an index if it points at `user_id` (a key held by
/// another user, e.g. a look-alike registered before the skeleton rule,
/// stays theirs).
fn remove_if_held(index: &mut imbl::OrdMap<String, UserId>, key: &str, user_id: UserId) {
    if index.get(key) == Some(&user_id) {
        index.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Envelope;
    use crate::profile::SettingsChanges;

    fn register(state: &mut State, name: &str, phone: Option<&str>) -> UserId {
        let mut out = Vec::new();
        let reply = state
            .execute(
                &Command::Register {
                    username: name.into(),
                    password_hash: "h".into(),
                    email: String::new(),
                    display_name: String::new(),
                    phone_number: phone.map(Into::into),
                    at: 1,
                },
                &mut out,
            )
            .unwrap();
        let Reply::User(id) = reply else { panic!() };
        id
    }

    fn update(state: &mut State, user_id: UserId, changes: ProfileChanges) -> Vec<Envelope> {
        let mut out = Vec::new();
        state
            .execute(
                &Command::UpdateProfile {
                    user_id,
                    changes: Box::new(changes),
                    at: 2,
                },
                &mut out,
            )
            .map(|_| out)
            .unwrap_or_else(|r| panic!("{r}"))
    }

    #[test]
    fn only_changed_fields_are_stored_and_nothing_new_is_no_event() {
        let mut state = State::default();
        let ana = register(&mut state, "ana", None);
        let events = update(
            &mut state,
            ana,
            ProfileChanges {
                bio: Some("hola".into()),
                city: Some(String::new()),
                show_last_seen: Some(true),
                ..Default::default()
            },
        );
        let [Envelope {
            event: Event::ProfileUpdated { changes, .. },
            ..
        }] = events.as_slice()
        else {
            panic!("{events:?}")
        };
        assert_eq!(
            **changes,
            ProfileChanges {
                bio: Some("hola".into()),
                ..Default::default()
            }
        );
        assert_eq!(state.user(ana).unwrap().profile.bio, "hola");
        let again = ProfileChanges {
            bio: Some("hola".into()),
            ..Default::default()
        };
        assert!(update(&mut state, ana, again).is_empty());
    }

    #[test]
    fn new_usernames_and_phones_are_unique_and_move_the_indexes() {
        let mut state = State::default();
        let ana = register(&mut state, "ana", Some("+15550001111"));
        let bo = register(&mut state, "bo", None);
        let rename = |name: &str| ProfileChanges {
            username: Some(name.into()),
            ..Default::default()
        };
        let decide = |state: &State, user_id, changes| {
            state.decide(&Command::UpdateProfile {
                user_id,
                changes: Box::new(changes),
                at: 3,
            })
        };
        assert_eq!(
            decide(&state, bo, rename("ANA")).unwrap_err(),
            Rejection::UsernameTaken
        );
        assert_eq!(
            decide(&state, bo, rename("\u{430}na")).unwrap_err(),
            Rejection::UsernameTaken,
            "a look-alike"
        );
        let phone = ProfileChanges {
            phone_number: Some(Nullable::Value("+15550001111".into())),
            ..Default::default()
        };
        assert_eq!(
            decide(&state, bo, phone.clone()).unwrap_err(),
            Rejection::PhoneTaken
        );
        // Ana renames herself and drops her number: both are free again.
        update(&mut state, ana, rename("Anabel"));
        update(
            &mut state,
            ana,
            ProfileChanges {
                phone_number: Some(Nullable::Null),
                ..Default::default()
            },
        );
        assert_eq!(state.user(ana).unwrap().phone_number, None);
        update(&mut state, bo, rename("ana"));
        update(&mut state, bo, phone);
        assert_eq!(state.user_by_name("ana").unwrap().id, bo);
        assert_eq!(state.user_by_name("anabel").unwrap().id, ana);
        assert_eq!(state.user_by_phone("+15550001111").unwrap().id, bo);
        // The incremental indexes equal the ones rebuilt from the users.
        let mut rebuilt = state.clone();
        rebuilt.rebuild_user_indexes();
        assert_eq!(rebuilt.users_by_skeleton, state.users_by_skeleton);
        assert_eq!(rebuilt.users_by_phone, state.users_by_phone);
    }

    #[test]
    fn settings_are_created_once_and_every_write_moves_updated_at() {
        let mut state = State::default();
        let ana = register(&mut state, "ana", None);
        let bo = register(&mut state, "bo", None);
        let mut out = Vec::new();
        let create = |user_id, at| Command::CreateSettings { user_id, at };
        state.execute(&create(bo, 5), &mut out).unwrap();
        state.execute(&create(ana, 6), &mut out).unwrap();
        state.execute(&create(ana, 7), &mut out).unwrap();
        assert_eq!(out.len(), 2, "a second creation stores nothing");
        let settings = state.user(ana).unwrap().settings.clone().unwrap();
        assert_eq!((settings.id, settings.created_at), (2, 6));
        assert_eq!(settings.values, SettingsValues::default());
        let dark = SettingsChanges {
            theme: Some("dark".into()),
            ..Default::default()
        };
        let write = |changes, at| Command::UpdateSettings {
            user_id: ana,
            changes: Box::new(changes),
            at,
        };
        state.execute(&write(dark, 8), &mut out).unwrap();
        state
            .execute(&write(SettingsChanges::default(), 9), &mut out)
            .unwrap();
        let settings = state.user(ana).unwrap().settings.clone().unwrap();
        assert_eq!(settings.values.theme, "dark");
        assert_eq!((settings.created_at, settings.updated_at), (6, 9));
        state
            .execute(&write(SettingsChanges::reset(), 10), &mut out)
            .unwrap();
        let settings = state.user(ana).unwrap().settings.clone().unwrap();
        assert_eq!(settings.values, SettingsValues::default());
    }
}
