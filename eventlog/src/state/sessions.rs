//! Sessions: logout. Revoking a refresh token, and going offline.
//!
//! Revoked tokens are kept only as long as they could still be presented:
//! a token is refused anyway once its `exp` is past, so each revocation is
//! forgotten [`REVOCATION_GRACE`] after its expiry. The grace covers clocks
//! that disagree between the node that forgets (the `at` of a later
//! revocation, chosen by its accepting node) and the node that checks a
//! token (its own clock). Forgetting happens while applying a revocation,
//! with that event's `at`, so live state and replay agree.

use crate::command::{Command, Rejection, Reply};
use crate::event::{Event, Micros};

use super::{Decision, State};

/// How long past its expiry a revoked refresh token is remembered: one
/// hour, far more than any sane clock skew between nodes.
pub const REVOCATION_GRACE: Micros = 3_600 * 1_000_000;

impl State {
    /// Whether the refresh token `jti` was revoked by a logout.
    pub fn is_revoked(&self, jti: &str) -> bool {
        self.revoked_tokens.contains_key(jti)
    }

    /// Revoked tokens remembered now (bounded by the tokens still valid).
    pub fn revoked_count(&self) -> usize {
        self.revoked_tokens.len()
    }

    /// Rebuilds the expiry index, which the snapshot does not hold.
    pub(crate) fn rebuild_token_index(&mut self) {
        self.revoked_by_expiry = self
            .revoked_tokens
            .iter()
            .map(|(jti, expiry)| (*expiry, jti.clone()))
            .collect();
    }

    /// A token revoked already is refused (the contract's 400 "Invalid
    /// token."); one past its grace needs no remembering and appends
    /// nothing.
    pub(super) fn decide_revoke(&self, command: &Command) -> Result<Decision, Rejection> {
        let Command::RevokeRefreshToken {
            jti,
            user_id,
            expires_at,
            at,
        } = command
        else {
            unreachable!("State::decide dispatches only Command::RevokeRefreshToken here")
        };
        self.existing_user(*user_id)?;
        if self.is_revoked(jti) {
            return Err(Rejection::TokenRevoked);
        }
        if expires_at.saturating_add(REVOCATION_GRACE) < *at {
            return Ok(Decision::none(Reply::Done));
        }
        Ok(Decision::one(
            Event::RefreshTokenRevoked {
                jti: jti.clone(),
                user_id: *user_id,
                expires_at: *expires_at,
                at: *at,
            },
            Reply::Done,
        ))
    }

    /// Forgets the revocations whose grace is over at this event's time,
    /// then remembers this one.
    pub(super) fn apply_token_revoked(&mut self, event: &Event) {
        let Event::RefreshTokenRevoked {
            jti,
            expires_at,
            at,
            ..
        } = event
        else {
            unreachable!("State::apply dispatches only Event::RefreshTokenRevoked here")
        };
        while let Some((expiry, _)) = self.revoked_by_expiry.get_min() {
            if expiry.saturating_add(REVOCATION_GRACE) >= *at {
                break;
            }
            if let Some((_, old)) = self.revoked_by_expiry.remove_min() {
                self.revoked_tokens.remove(&old);
            }
        }
        self.revoked_tokens.insert(jti.clone(), *expires_at);
        self.revoked_by_expiry.insert((*expires_at, jti.clone()));
    }

    /// Appends nothing for a user who is offline already, so repeating it
    /// costs the log nothing.
    pub(super) fn decide_go_offline(&self, command: &Command) -> Result<Decision, Rejection> {
        let Command::GoOffline { user_id, at } = command else {
            unreachable!("State::decide dispatches only Command::GoOffline here")
        };
        let user = self.existing_user(*user_id)?;
        if !user.is_online {
            return Ok(Decision::none(Reply::User(*user_id)));
        }
        Ok(Decision::one(
            Event::UserWentOffline {
                user_id: *user_id,
                at: *at,
            },
            Reply::User(*user_id),
        ))
    }

    pub(super) fn apply_went_offline(&mut self, event: &Event) {
        let Event::UserWentOffline { user_id, at } = event else {
            unreachable!("State::apply dispatches only Event::UserWentOffline here")
        };
        if let Some(user) = super::user_mut(&mut self.users, *user_id) {
            user.is_online = false;
            user.last_seen_at = Some(*at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;
    use crate::event::Envelope;

    fn registered() -> State {
        let mut state = State::default();
        let mut out = Vec::new();
        let register = Command::Register {
            username: "ana".into(),
            password_hash: "x".into(),
            email: String::new(),
            display_name: String::new(),
            phone_number: None,
            at: 1,
        };
        state.execute(&register, &mut out).expect("register");
        state
    }

    fn revoke(state: &mut State, jti: &str, expires_at: Micros, at: Micros) -> Vec<Envelope> {
        let mut out = Vec::new();
        let command = Command::RevokeRefreshToken {
            jti: jti.into(),
            user_id: 1,
            expires_at,
            at,
        };
        state.execute(&command, &mut out).expect("revoke");
        out
    }

    #[test]
    fn a_revoked_token_is_remembered_until_its_grace_is_over() {
        let mut state = registered();
        let hour = REVOCATION_GRACE;
        assert_eq!(revoke(&mut state, "a", 10 * hour, hour).len(), 1);
        assert!(state.is_revoked("a"));
        let again = Command::RevokeRefreshToken {
            jti: "a".into(),
            user_id: 1,
            expires_at: 10 * hour,
            at: 2 * hour,
        };
        assert_eq!(
            state.execute(&again, &mut Vec::new()),
            Err(Rejection::TokenRevoked)
        );
        // Still within the grace: kept.
        revoke(&mut state, "b", 20 * hour, 11 * hour);
        assert!(state.is_revoked("a") && state.is_revoked("b"));
        // Past it: forgotten by the next revocation.
        revoke(&mut state, "c", 30 * hour, 11 * hour + 1);
        assert!(!state.is_revoked("a"));
        assert_eq!(state.revoked_count(), 2);
        // A token past its grace already is not stored at all.
        assert!(revoke(&mut state, "d", hour, 3 * hour).is_empty());
        assert!(!state.is_revoked("d"));
    }

    #[test]
    fn going_offline_twice_appends_once() {
        let mut state = registered();
        let mut out = Vec::new();
        state
            .execute(&Command::RecordLogin { user_id: 1, at: 5 }, &mut out)
            .expect("login");
        let offline = |at| Command::GoOffline { user_id: 1, at };
        out.clear();
        state.execute(&offline(7), &mut out).expect("offline");
        assert_eq!(out.len(), 1);
        let user = state.user(1).expect("user");
        assert!(!user.is_online);
        assert_eq!(user.last_seen_at, Some(7));
        out.clear();
        state.execute(&offline(9), &mut out).expect("offline again");
        assert!(out.is_empty());
        assert_eq!(state.user(1).expect("user").last_seen_at, Some(7));
    }
}
