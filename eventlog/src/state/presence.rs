//! Presence (issue 13): a user is online while some node holds a socket of
//! theirs.
//!
//! A node knows only its own sockets, so each node reports its part: the
//! first socket of a user on it (`SocketsOpened` → `PresenceJoined`) and,
//! after the grace, the last one closed (`SocketsClosed` →
//! `PresenceLeft`). The log keeps, per user, the set of nodes that hold
//! them; every node applies the same log, so all agree on who is online.
//! A node that crashed cannot report its closes: it clears its own entries
//! when it starts again (`ClearNodePresence` → `NodePresenceCleared`).
//!
//! The visible change is decided with the bookkeeping, as the events every
//! client already knows: `UserSeen` (online, `last_seen_at` now) when the
//! first node takes the user, `UserWentOffline` when the last lets go. So
//! the fan-out sends a presence frame for exactly those two events.

use std::collections::BTreeSet;

use crate::command::{Command, Rejection, Reply};
use crate::event::{Event, NodeId, UserId};

use super::{Decision, State};

impl State {
    /// The nodes whose sockets hold `user_id` online (empty: none).
    pub fn presence_nodes(&self, user_id: UserId) -> Option<&BTreeSet<NodeId>> {
        self.presence.get(&user_id)
    }

    /// The users `node` holds online, by id.
    pub fn users_held_by(&self, node: NodeId) -> impl Iterator<Item = UserId> + '_ {
        self.presence
            .iter()
            .filter(move |(_, nodes)| nodes.contains(&node))
            .map(|(user, _)| *user)
    }

    pub(super) fn decide_sockets_opened(&self, command: &Command) -> Result<Decision, Rejection> {
        let Command::SocketsOpened { user_id, node, at } = command else {
            unreachable!("State::decide dispatches only Command::SocketsOpened here")
        };
        self.existing_user(*user_id)?;
        let nodes = self.presence.get(user_id);
        if nodes.is_some_and(|n| n.contains(node)) {
            return Ok(Decision::none(Reply::User(*user_id)));
        }
        let mut events = vec![Event::PresenceJoined {
            user_id: *user_id,
            node: *node,
            at: *at,
        }];
        if nodes.is_none_or(BTreeSet::is_empty) {
            events.push(Event::UserSeen {
                user_id: *user_id,
                at: *at,
            });
        }
        Ok(Decision {
            events,
            reply: Reply::User(*user_id),
        })
    }

    pub(super) fn decide_sockets_closed(&self, command: &Command) -> Result<Decision, Rejection> {
        let Command::SocketsClosed { user_id, node, at } = command else {
            unreachable!("State::decide dispatches only Command::SocketsClosed here")
        };
        self.existing_user(*user_id)?;
        let Some(nodes) = self.presence.get(user_id).filter(|n| n.contains(node)) else {
            return Ok(Decision::none(Reply::User(*user_id)));
        };
        let mut events = vec![Event::PresenceLeft {
            user_id: *user_id,
            node: *node,
            at: *at,
        }];
        if nodes.len() == 1 {
            events.push(Event::UserWentOffline {
                user_id: *user_id,
                at: *at,
            });
            events.extend(self.calls_left(*user_id, *at, &mut BTreeSet::new()));
        }
        Ok(Decision {
            events,
            reply: Reply::User(*user_id),
        })
    }

    pub(super) fn decide_clear_node(&self, command: &Command) -> Result<Decision, Rejection> {
        let Command::ClearNodePresence { node, at } = command else {
            unreachable!("State::decide dispatches only Command::ClearNodePresence here")
        };
        let held: Vec<(UserId, usize)> = self
            .presence
            .iter()
            .filter(|(_, nodes)| nodes.contains(node))
            .map(|(user, nodes)| (*user, nodes.len()))
            .collect();
        if held.is_empty() {
            return Ok(Decision::none(Reply::Done));
        }
        let mut events = vec![Event::NodePresenceCleared {
            node: *node,
            at: *at,
        }];
        let mut ended = BTreeSet::new();
        for (user_id, _) in held.into_iter().filter(|(_, nodes)| *nodes == 1) {
            events.push(Event::UserWentOffline { user_id, at: *at });
            events.extend(self.calls_left(user_id, *at, &mut ended));
        }
        Ok(Decision {
            events,
            reply: Reply::Done,
        })
    }

    pub(super) fn apply_presence_joined(&mut self, event: &Event) {
        let Event::PresenceJoined { user_id, node, .. } = event else {
            unreachable!("State::apply dispatches only Event::PresenceJoined here")
        };
        self.presence.entry(*user_id).or_default().insert(*node);
    }

    pub(super) fn apply_presence_left(&mut self, event: &Event) {
        let Event::PresenceLeft { user_id, node, .. } = event else {
            unreachable!("State::apply dispatches only Event::PresenceLeft here")
        };
        if let Some(nodes) = self.presence.get_mut(user_id) {
            nodes.remove(node);
            if nodes.is_empty() {
                self.presence.remove(user_id);
            }
        }
    }

    pub(super) fn apply_node_cleared(&mut self, event: &Event) {
        let Event::NodePresenceCleared { node, .. } = event else {
            unreachable!("State::apply dispatches only Event::NodePresenceCleared here")
        };
        super::maps::retain_touched(
            &mut self.presence,
            |nodes| nodes.contains(node),
            |nodes| {
                nodes.remove(node);
                !nodes.is_empty()
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Envelope;

    fn with_users(n: u64) -> State {
        let mut state = State::default();
        for i in 0..n {
            let register = Command::Register {
                username: format!("u{i}"),
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

    fn run(state: &mut State, command: Command) -> Vec<Event> {
        let mut out: Vec<Envelope> = Vec::new();
        state.execute(&command, &mut out).expect("accepted");
        out.into_iter().map(|e| e.event).collect()
    }

    fn opened(user_id: UserId, node: NodeId, at: i64) -> Command {
        Command::SocketsOpened { user_id, node, at }
    }

    fn closed(user_id: UserId, node: NodeId, at: i64) -> Command {
        Command::SocketsClosed { user_id, node, at }
    }

    #[test]
    fn online_while_any_node_holds_the_user() {
        let mut state = with_users(1);
        let first = run(&mut state, opened(1, 7, 10));
        assert_eq!(first.len(), 2, "joined + seen: {first:?}");
        assert!(state.user(1).expect("user").is_online);
        // Same node again: nothing; another node: bookkeeping only.
        assert!(run(&mut state, opened(1, 7, 11)).is_empty());
        assert_eq!(run(&mut state, opened(1, 8, 12)).len(), 1);
        // One node lets go: still online, nothing visible.
        assert_eq!(run(&mut state, closed(1, 7, 13)).len(), 1);
        assert!(state.user(1).expect("user").is_online);
        // The last one: offline, last seen then.
        assert_eq!(run(&mut state, closed(1, 8, 14)).len(), 2);
        let user = state.user(1).expect("user");
        assert!(!user.is_online);
        assert_eq!(user.last_seen_at, Some(14));
        // A close from a node that holds nobody changes nothing.
        assert!(run(&mut state, closed(1, 8, 15)).is_empty());
    }

    #[test]
    fn a_restarted_node_lets_go_of_its_users() {
        let mut state = with_users(3);
        run(&mut state, opened(1, 7, 10));
        run(&mut state, opened(2, 7, 10));
        run(&mut state, opened(2, 8, 10));
        run(&mut state, opened(3, 8, 10));
        let cleared = run(&mut state, Command::ClearNodePresence { node: 7, at: 20 });
        // The bookkeeping, then user 1 (held by 7 alone) goes offline.
        assert_eq!(
            cleared,
            vec![
                Event::NodePresenceCleared { node: 7, at: 20 },
                Event::UserWentOffline { user_id: 1, at: 20 },
            ]
        );
        assert!(!state.user(1).expect("user").is_online);
        assert!(state.user(2).expect("user").is_online);
        assert_eq!(state.users_held_by(7).count(), 0);
        assert_eq!(state.users_held_by(8).collect::<Vec<_>>(), vec![2, 3]);
        // Nothing left to clear: no event.
        assert!(run(&mut state, Command::ClearNodePresence { node: 7, at: 21 }).is_empty());
    }
}
