//! Logins without a password (issue 13): a code sent to a phone number,
//! and an identity of an external provider (Google).
//!
//! Both are decided here, so that every node agrees on who a code or an
//! identity logs in, on whether a wrong try burns a code, and on the name
//! a new account gets. The server checks what only it can: it draws and
//! sends the code and keeps only its keyed hash; it verifies the
//! provider's signed token before asking for [`Command::ExternalLogin`].

use serde::{Deserialize, Serialize};

use crate::command::{Command, ExternalIdentity, Rejection, Reply};
use crate::event::{Event, Micros, UserId};
use crate::profile::ProfileChanges;

use super::users::phone_key;
use super::{Decision, State};

/// Wrong tries a phone code survives: the fifth wrong one burns it (the
/// original allowed unlimited tries).
pub const OTP_MAX_TRIES: u32 = 5;

/// The password hash of accounts made by a phone code or an external
/// identity: no password verifies against it (Django's unusable password
/// is `!` followed by random characters; nothing parses this one either).
pub const UNUSABLE_PASSWORD: &str = "!";

/// A code waiting to be used.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PendingOtp {
    pub code_hash: String,
    pub expires_at: Micros,
    /// Wrong tries so far.
    pub tries: u32,
}

impl State {
    /// The code pending for `phone` (any spelling of the number), if any.
    pub fn pending_otp(&self, phone: &str) -> Option<&PendingOtp> {
        self.otps.get(&phone_key(phone))
    }

    /// The user linked to `provider`'s `subject`, if any.
    pub fn user_by_identity(&self, provider: &str, subject: &str) -> Option<UserId> {
        self.identities
            .get(&identity_key(provider, subject))
            .copied()
    }

    pub(super) fn decide_issue_otp(&self, command: &Command) -> Result<Decision, Rejection> {
        let Command::IssueOtp {
            phone,
            code_hash,
            expires_at,
            at,
        } = command
        else {
            unreachable!("State::decide dispatches only Command::IssueOtp here")
        };
        Ok(Decision::one(
            Event::OtpIssued {
                phone: phone_key(phone),
                code_hash: code_hash.clone(),
                expires_at: *expires_at,
                at: *at,
            },
            Reply::Done,
        ))
    }

    /// No pending code (or one past its time): [`Rejection::OtpExpired`].
    /// A wrong code: an `OtpRejected` and [`Reply::WrongCode`]. The right
    /// one: `OtpUsed`, the registration of a new user if no user has the
    /// number, and the login.
    pub(super) fn decide_verify_otp(&self, command: &Command) -> Result<Decision, Rejection> {
        let Command::VerifyOtp {
            phone,
            code_hash,
            first_name,
            last_name,
            at,
        } = command
        else {
            unreachable!("State::decide dispatches only Command::VerifyOtp here")
        };
        let key = phone_key(phone);
        let pending = self
            .otps
            .get(&key)
            .filter(|p| p.expires_at > *at && p.tries < OTP_MAX_TRIES)
            .ok_or(Rejection::OtpExpired)?;
        if pending.code_hash != *code_hash {
            return Ok(Decision::one(
                Event::OtpRejected {
                    phone: key,
                    at: *at,
                },
                Reply::WrongCode,
            ));
        }
        let mut events = vec![Event::OtpUsed {
            phone: key.clone(),
            at: *at,
        }];
        let existing = self.users_by_phone.get(&key).copied();
        let (user_id, created) = match existing {
            Some(user_id) => (user_id, false),
            None => {
                let base: String = phone.chars().filter(|c| !matches!(c, '+' | '-')).collect();
                let user_id = self.register_events(
                    &mut events,
                    &base,
                    String::new(),
                    Some(phone.clone()),
                    *at,
                );
                events.extend(names_event(user_id, first_name, last_name, *at));
                (user_id, true)
            }
        };
        events.push(Event::UserSeen { user_id, at: *at });
        Ok(Decision {
            events,
            reply: Reply::Login { user_id, created },
        })
    }

    /// The linked user logs in; an unknown identity registers a user and
    /// links it, in one decision.
    pub(super) fn decide_external_login(&self, command: &Command) -> Result<Decision, Rejection> {
        let Command::ExternalLogin { identity, at } = command else {
            unreachable!("State::decide dispatches only Command::ExternalLogin here")
        };
        let ExternalIdentity {
            provider,
            subject,
            username,
            email,
            first_name,
            last_name,
        } = identity.as_ref();
        let linked = self
            .user_by_identity(provider, subject)
            .filter(|id| self.users.contains_key(id));
        if let Some(user_id) = linked {
            return Ok(Decision::one(
                Event::UserSeen { user_id, at: *at },
                Reply::Login {
                    user_id,
                    created: false,
                },
            ));
        }
        let mut events = Vec::new();
        let user_id = self.register_events(&mut events, username, email.clone(), None, *at);
        events.push(Event::IdentityLinked {
            user_id,
            provider: provider.clone(),
            subject: subject.clone(),
            at: *at,
        });
        events.extend(names_event(user_id, first_name, last_name, *at));
        events.push(Event::UserSeen { user_id, at: *at });
        Ok(Decision {
            events,
            reply: Reply::Login {
                user_id,
                created: true,
            },
        })
    }

    /// Pushes the registration of a passwordless user named `base`, or
    /// the first of `base_2`, `base_3`, ... that is free (a look-alike of
    /// a taken name is taken); returns the new id.
    fn register_events(
        &self,
        events: &mut Vec<Event>,
        base: &str,
        email: String,
        phone_number: Option<String>,
        at: Micros,
    ) -> UserId {
        let base = if base.is_empty() { "user" } else { base };
        let username = std::iter::once(base.to_string())
            .chain((2u64..).map(|n| format!("{base}_{n}")))
            .find(|name| !self.username_taken(name, 0))
            .expect("an unbounded sequence of names has a free one");
        let user_id = self.next_user_id + 1;
        events.push(Event::UserRegistered {
            user_id,
            username,
            password_hash: UNUSABLE_PASSWORD.into(),
            email,
            display_name: String::new(),
            phone_number,
            at,
        });
        user_id
    }

    /// Keeps the code, replacing the number's earlier one; forgets every
    /// code expired at this event's time (so the map holds only codes
    /// that could still be used).
    pub(super) fn apply_otp_issued(&mut self, event: &Event) {
        let Event::OtpIssued {
            phone,
            code_hash,
            expires_at,
            at,
        } = event
        else {
            unreachable!("State::apply dispatches only Event::OtpIssued here")
        };
        super::maps::retain_touched(&mut self.otps, |p| p.expires_at <= *at, |_| false);
        self.otps.insert(
            phone.clone(),
            PendingOtp {
                code_hash: code_hash.clone(),
                expires_at: *expires_at,
                tries: 0,
            },
        );
    }

    pub(super) fn apply_otp_rejected(&mut self, event: &Event) {
        let Event::OtpRejected { phone, .. } = event else {
            unreachable!("State::apply dispatches only Event::OtpRejected here")
        };
        if let Some(pending) = self.otps.get_mut(phone) {
            pending.tries += 1;
            if pending.tries >= OTP_MAX_TRIES {
                self.otps.remove(phone);
            }
        }
    }

    pub(super) fn apply_otp_used(&mut self, event: &Event) {
        let Event::OtpUsed { phone, .. } = event else {
            unreachable!("State::apply dispatches only Event::OtpUsed here")
        };
        self.otps.remove(phone);
    }

    pub(super) fn apply_identity_linked(&mut self, event: &Event) {
        let Event::IdentityLinked {
            user_id,
            provider,
            subject,
            ..
        } = event
        else {
            unreachable!("State::apply dispatches only Event::IdentityLinked here")
        };
        self.identities
            .insert(identity_key(provider, subject), *user_id);
    }
}

fn identity_key(provider: &str, subject: &str) -> String {
    format!("{provider}:{subject}")
}

/// The new user's names, when any is given.
fn names_event(user_id: UserId, first_name: &str, last_name: &str, at: Micros) -> Option<Event> {
    let changes = ProfileChanges {
        first_name: Some(first_name.to_string()).filter(|s| !s.is_empty()),
        last_name: Some(last_name.to_string()).filter(|s| !s.is_empty()),
        ..Default::default()
    };
    (!changes.is_empty()).then(|| Event::ProfileUpdated {
        user_id,
        changes: Box::new(changes),
        at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Micros = 60_000_000;

    fn issue(state: &mut State, phone: &str, hash: &str, at: Micros) {
        let command = Command::IssueOtp {
            phone: phone.into(),
            code_hash: hash.into(),
            expires_at: at + 10 * MINUTE,
            at,
        };
        state.execute(&command, &mut Vec::new()).unwrap();
    }

    fn verify(state: &mut State, phone: &str, hash: &str, at: Micros) -> Result<Reply, Rejection> {
        let command = Command::VerifyOtp {
            phone: phone.into(),
            code_hash: hash.into(),
            first_name: "Ana".into(),
            last_name: String::new(),
            at,
        };
        state.execute(&command, &mut Vec::new())
    }

    #[test]
    fn a_code_logs_in_once_and_registers_a_new_number() {
        let mut state = State::default();
        issue(&mut state, "+15550001111", "h1", 0);
        let reply = verify(&mut state, "+15550001111", "h1", MINUTE).unwrap();
        let Reply::Login { user_id, created } = reply else {
            panic!("{reply:?}")
        };
        assert!(created);
        let user = state.user(user_id).unwrap();
        assert_eq!(user.username, "15550001111");
        assert_eq!(user.phone_number.as_deref(), Some("+15550001111"));
        assert_eq!(user.profile.first_name, "Ana");
        assert!(user.is_online);
        assert_eq!(
            verify(&mut state, "+15550001111", "h1", MINUTE),
            Err(Rejection::OtpExpired),
            "a used code is gone"
        );
        issue(&mut state, "+15550001111", "h2", 2 * MINUTE);
        assert_eq!(
            verify(&mut state, "+15550001111", "h2", 3 * MINUTE),
            Ok(Reply::Login {
                user_id,
                created: false
            }),
            "the number's user again"
        );
    }

    #[test]
    fn wrong_tries_burn_the_code_and_time_expires_it() {
        let mut state = State::default();
        issue(&mut state, "+15550001111", "right", 0);
        for _ in 0..OTP_MAX_TRIES {
            assert_eq!(
                verify(&mut state, "+15550001111", "wrong", 1),
                Ok(Reply::WrongCode)
            );
        }
        assert_eq!(
            verify(&mut state, "+15550001111", "right", 2),
            Err(Rejection::OtpExpired),
            "burnt by the fifth wrong try"
        );
        issue(&mut state, "+15550001111", "right", 10);
        assert_eq!(
            verify(&mut state, "+15550001111", "right", 10 + 10 * MINUTE),
            Err(Rejection::OtpExpired)
        );
        // A later code forgets the expired ones of other numbers.
        issue(&mut state, "+15550002222", "x", 11 * MINUTE);
        assert!(state.pending_otp("+15550001111").is_none());
        assert!(state.pending_otp("+1 555 000 2222").is_some());
    }

    #[test]
    fn an_identity_registers_once_under_a_free_name() {
        let mut state = State::default();
        let login = |state: &mut State, subject: &str| {
            let command = Command::ExternalLogin {
                identity: Box::new(ExternalIdentity {
                    provider: "google".into(),
                    subject: subject.into(),
                    username: "ana_123456".into(),
                    email: "ana@example.com".into(),
                    first_name: "Ana".into(),
                    last_name: "Lima".into(),
                }),
                at: 5,
            };
            state.execute(&command, &mut Vec::new()).unwrap()
        };
        let Reply::Login { user_id, created } = login(&mut state, "123456789") else {
            panic!()
        };
        assert!(created);
        assert_eq!(state.user_by_identity("google", "123456789"), Some(user_id));
        let user = state.user(user_id).unwrap();
        assert_eq!(
            (user.username.as_str(), user.email.as_str()),
            ("ana_123456", "ana@example.com")
        );
        assert_eq!(user.profile.last_name, "Lima");
        assert_eq!(
            login(&mut state, "123456789"),
            Reply::Login {
                user_id,
                created: false
            }
        );
        // Another identity whose name is taken gets the next free one.
        let Reply::Login { user_id: other, .. } = login(&mut state, "123456000") else {
            panic!()
        };
        assert_eq!(state.user(other).unwrap().username, "ana_123456_2");
    }
}
