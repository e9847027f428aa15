//! Avatars (issue 13) and the media references they share with
//! attachments.
//!
//! The state machine never touches a file: it records which media store
//! key a user's avatar is, and counts, per key, the avatars and
//! attachments that refer to it. A key whose count is zero is garbage the
//! server may remove from its media store (after its own grace, see the
//! server's `media` module).

use crate::command::{Command, Rejection, Reply};
use crate::event::Event;

use super::{Decision, State};

impl State {
    /// How many avatars and attachments refer to the media store key
    /// `key` now.
    pub fn media_references(&self, key: &str) -> usize {
        self.media_refs.get(key).copied().unwrap_or(0)
    }

    /// One reference to `key` fewer (an avatar replaced, a deleted
    /// conversation's attachments).
    pub(crate) fn release_media(&mut self, key: &str) {
        if let Some(count) = self.media_refs.get_mut(key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.media_refs.remove(key);
            }
        }
    }

    /// Recounts the media references from the users' avatars and the
    /// messages' attachments (what the counters must equal).
    #[cfg(test)]
    pub(crate) fn rebuild_media_refs(&mut self) {
        let mut refs = imbl::OrdMap::<String, usize>::new();
        let avatars = self.users.values().filter_map(|u| u.avatar.as_ref());
        let messages = self.history.all_messages();
        let attachments = messages
            .values()
            .filter(|m| self.conversations.contains_key(&m.conv_id))
            .flat_map(|m| m.attachments.iter().map(|a| &a.blob_key));
        for key in avatars.chain(attachments) {
            *refs.entry(key.clone()).or_default() += 1;
        }
        self.media_refs = refs;
    }

    /// Setting the avatar the user has already (or removing none) appends
    /// nothing.
    pub(super) fn decide_set_avatar(&self, command: &Command) -> Result<Decision, Rejection> {
        let Command::SetAvatar {
            user_id,
            avatar,
            at,
        } = command
        else {
            unreachable!("State::decide dispatches only Command::SetAvatar here")
        };
        let user = self.existing_user(*user_id)?;
        if user.avatar == *avatar {
            return Ok(Decision::none(Reply::User(*user_id)));
        }
        Ok(Decision::one(
            Event::AvatarChanged {
                user_id: *user_id,
                avatar: avatar.clone(),
                at: *at,
            },
            Reply::User(*user_id),
        ))
    }

    pub(super) fn apply_avatar_changed(&mut self, event: &Event) {
        let Event::AvatarChanged {
            user_id, avatar, ..
        } = event
        else {
            unreachable!("State::apply dispatches only Event::AvatarChanged here")
        };
        let Some(user) = super::user_mut(&mut self.users, *user_id) else {
            return;
        };
        let old = std::mem::replace(&mut user.avatar, avatar.clone());
        if let Some(old) = old {
            self.release_media(&old);
        }
        if let Some(new) = avatar {
            *self.media_refs.entry(new.clone()).or_default() += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;

    fn register(state: &mut State, name: &str) -> u64 {
        let mut out = Vec::new();
        let reply = state
            .execute(
                &Command::Register {
                    username: name.into(),
                    password_hash: "x".into(),
                    email: String::new(),
                    display_name: String::new(),
                    phone_number: None,
                    at: 1,
                },
                &mut out,
            )
            .unwrap();
        match reply {
            Reply::User(id) => id,
            other => panic!("{other:?}"),
        }
    }

    fn set(state: &mut State, user_id: u64, avatar: Option<&str>) -> usize {
        let mut out = Vec::new();
        state
            .execute(
                &Command::SetAvatar {
                    user_id,
                    avatar: avatar.map(str::to_owned),
                    at: 2,
                },
                &mut out,
            )
            .unwrap();
        out.len()
    }

    #[test]
    fn references_follow_the_avatars_and_rebuild_the_same() {
        let mut state = State::default();
        let ana = register(&mut state, "ana");
        let bo = register(&mut state, "bo");
        assert_eq!(set(&mut state, ana, Some("a.png")), 1);
        assert_eq!(set(&mut state, bo, Some("a.png")), 1);
        assert_eq!(state.media_references("a.png"), 2);
        // The same avatar again appends nothing.
        assert_eq!(set(&mut state, ana, Some("a.png")), 0);
        assert_eq!(set(&mut state, ana, Some("b.gif")), 1);
        assert_eq!(state.media_references("a.png"), 1);
        assert_eq!(state.media_references("b.gif"), 1);
        assert_eq!(set(&mut state, bo, None), 1);
        assert_eq!(state.media_references("a.png"), 0);
        assert_eq!(set(&mut state, bo, None), 0);
        let mut rebuilt = state.clone();
        rebuilt.media_refs.clear();
        rebuilt.rebuild_media_refs();
        assert_eq!(rebuilt, state);
        assert_eq!(state.user(ana).unwrap().avatar.as_deref(), Some("b.gif"));
        assert!(
            state
                .execute(
                    &Command::SetAvatar {
                        user_id: 99,
                        avatar: None,
                        at: 3
                    },
                    &mut Vec::new()
                )
                .is_err(),
            "an unknown user is refused"
        );
    }
}
