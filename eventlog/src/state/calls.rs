//! Calls (issue 15): the call log as events. A call rings the members it
//! invites, becomes active when one answers, and is over when someone
//! hangs up (`ended`), when every invited member declined before anyone
//! answered (`declined`), or when nobody answered within the ring time
//! (`missed`, by a [`Command::CallTimeout`] that any node may submit: the
//! state machine alone decides whether it still applies, so every node
//! agrees).
//!
//! The original's holes are closed here: the invited members must be
//! members of the conversation, a call is acted on only through its own
//! conversation, only its caller and invited members may act on it, and
//! an action must fit the call's state (no answering an ended call).

use crate::command::{CallAction, Command, Rejection, Reply};
use crate::event::{CallId, ConvId, Event, Micros, UserId};

use super::model::{Call, CallParticipant};
use super::{Decision, State};

/// The call types a client may choose (the original's choices).
pub const CALL_TYPES: [&str; 2] = ["voice", "video"];

impl State {
    pub fn call(&self, id: CallId) -> Option<&Call> {
        self.calls
            .get(&id)
            .filter(|c| self.conversations.contains_key(&c.conv_id))
    }

    /// The calls of the conversations `user` is a member of, newest first.
    pub fn calls_of(&self, user: UserId) -> Vec<&Call> {
        self.calls
            .values()
            .rev()
            .filter(|c| {
                self.conversations
                    .get(&c.conv_id)
                    .is_some_and(|conv| conv.members.contains_key(&user))
            })
            .collect()
    }

    /// Ringing or active calls `user` is the caller or an invited member
    /// of, newest first.
    pub fn active_calls_of(&self, user: UserId) -> Vec<&Call> {
        self.calls_of(user)
            .into_iter()
            .filter(|c| c.is_ongoing() && c.participant(user).is_some())
            .collect()
    }

    /// Calls still ringing (in conversations that still exist): what the
    /// nodes time out.
    pub fn ringing_calls(&self) -> Vec<&Call> {
        self.ringing
            .iter()
            .filter_map(|id| self.call(*id))
            .collect()
    }

    /// Rebuilds the index of ringing calls, which the snapshot does not
    /// hold.
    pub(crate) fn rebuild_ringing_index(&mut self) {
        self.ringing = self
            .calls
            .values()
            .filter(|c| c.state == "ringing")
            .map(|c| c.id)
            .collect();
    }

    pub(super) fn decide_start_call(&self, command: &Command) -> Result<Decision, Rejection> {
        let Command::StartCall {
            by,
            conv_id,
            call_type,
            participants,
            at,
        } = command
        else {
            unreachable!("State::decide dispatches only Command::StartCall here")
        };
        let conv = self.member_conversation(*conv_id, *by)?;
        if !CALL_TYPES.contains(&call_type.as_str()) {
            return Err(Rejection::CallState("call_type must be voice or video."));
        }
        let mut invited: Vec<UserId> = Vec::new();
        if participants.is_empty() {
            invited.extend(conv.members.keys().filter(|m| *m != by));
        } else {
            for user in participants {
                if !conv.members.contains_key(user) {
                    return Err(Rejection::CallState(
                        "participant_ids must be members of this conversation.",
                    ));
                }
                if user != by && !invited.contains(user) {
                    invited.push(*user);
                }
            }
        }
        if invited.is_empty() {
            return Err(Rejection::CallState("Nobody else to call."));
        }
        let ongoing = self
            .calls
            .values()
            .any(|c| c.conv_id == *conv_id && c.is_ongoing());
        if ongoing {
            return Err(Rejection::CallInProgress);
        }
        let call_id = self.next_call_id + 1;
        Ok(Decision::one(
            Event::CallStarted {
                call_id,
                conv_id: *conv_id,
                seq: conv.last_seq + 1,
                caller: *by,
                call_type: call_type.clone(),
                participants: invited,
                at: *at,
            },
            Reply::Call(call_id),
        ))
    }

    /// The call of `conv_id` that `by` may act on.
    fn own_call(&self, conv_id: ConvId, call_id: CallId, by: UserId) -> Result<&Call, Rejection> {
        self.member_conversation(conv_id, by)
            .map_err(|_| Rejection::UnknownCall)?;
        let call = self
            .call(call_id)
            .filter(|c| c.conv_id == conv_id)
            .ok_or(Rejection::UnknownCall)?;
        if call.participant(by).is_none() {
            return Err(Rejection::NotAParticipant);
        }
        Ok(call)
    }

    pub(super) fn decide_call_action(&self, command: &Command) -> Result<Decision, Rejection> {
        let Command::CallAction {
            by,
            conv_id,
            call_id,
            action,
            at,
        } = command
        else {
            unreachable!("State::decide dispatches only Command::CallAction here")
        };
        let call = self.own_call(*conv_id, *call_id, *by)?;
        let seq = self.conversations.get(conv_id).map_or(0, |c| c.last_seq) + 1;
        let (call_id, conv_id, by, at) = (*call_id, *conv_id, *by, *at);
        let me = call.participant(by).expect("checked by own_call");
        let event = match action {
            CallAction::Answer => {
                if by == call.caller {
                    return Err(Rejection::CallState("The caller cannot answer."));
                }
                if !call.is_ongoing() || me.rejected {
                    return Err(Rejection::CallState("This call is over."));
                }
                if me.is_answered {
                    return Ok(Decision::none(Reply::Call(call_id)));
                }
                Event::CallAnswered {
                    call_id,
                    conv_id,
                    seq,
                    by,
                    at,
                }
            }
            CallAction::Reject => {
                if by == call.caller {
                    return Err(Rejection::CallState(
                        "The caller ends a call, not rejects it.",
                    ));
                }
                if call.state != "ringing" || me.rejected || me.is_answered {
                    return Err(Rejection::CallState("This call is not ringing for you."));
                }
                Event::CallRejected {
                    call_id,
                    conv_id,
                    seq,
                    by,
                    at,
                }
            }
            CallAction::End => {
                if !call.is_ongoing() {
                    return Err(Rejection::CallState("This call is over."));
                }
                Event::CallEnded {
                    call_id,
                    conv_id,
                    seq,
                    by,
                    at,
                }
            }
            CallAction::SetType(call_type) => {
                if !CALL_TYPES.contains(&call_type.as_str()) {
                    return Err(Rejection::CallState("call_type must be voice or video."));
                }
                if *call_type == call.call_type {
                    return Ok(Decision::none(Reply::Call(call_id)));
                }
                Event::CallUpdated {
                    call_id,
                    conv_id,
                    seq,
                    by,
                    call_type: call_type.clone(),
                    at,
                }
            }
            CallAction::Delete => {
                if call.is_ongoing() {
                    return Err(Rejection::CallState("End the call before deleting it."));
                }
                Event::CallDeleted {
                    call_id,
                    conv_id,
                    seq,
                    by,
                    at,
                }
            }
        };
        Ok(Decision::one(event, Reply::Call(call_id)))
    }

    /// What `user`'s last socket anywhere closing does to their calls: a
    /// participant who is in an ongoing call (its caller, or one who
    /// answered) leaves it, and as a hang-up ends a Vato call, the call
    /// ends (`ended`, by them). A member still being rung keeps ringing:
    /// they may answer from another device until the ring time. `ended`
    /// holds the calls this decision ends already (two participants of
    /// one call may go with one crashed node).
    pub(super) fn calls_left(
        &self,
        user: UserId,
        at: Micros,
        ended: &mut std::collections::BTreeSet<CallId>,
    ) -> Vec<Event> {
        let mut events = Vec::new();
        for call in self.calls.values().filter(|c| c.is_ongoing()) {
            let in_call = call.participant(user).is_some_and(|p| p.is_answered);
            if !in_call || !self.conversations.contains_key(&call.conv_id) {
                continue;
            }
            if !ended.insert(call.id) {
                continue;
            }
            let seq = self.conversations[&call.conv_id].last_seq + 1;
            events.push(Event::CallEnded {
                call_id: call.id,
                conv_id: call.conv_id,
                seq,
                by: user,
                at,
            });
        }
        events
    }

    /// Missed when still ringing `ring` after its start; else nothing.
    pub(super) fn decide_call_timeout(&self, command: &Command) -> Result<Decision, Rejection> {
        let Command::CallTimeout { call_id, ring, at } = command else {
            unreachable!("State::decide dispatches only Command::CallTimeout here")
        };
        let Some(call) = self.call(*call_id) else {
            return Ok(Decision::none(Reply::Done));
        };
        if call.state != "ringing" || *at < call.started_at.saturating_add(*ring) {
            return Ok(Decision::none(Reply::Call(*call_id)));
        }
        let seq = self
            .conversations
            .get(&call.conv_id)
            .map_or(0, |c| c.last_seq)
            + 1;
        Ok(Decision::one(
            Event::CallMissed {
                call_id: *call_id,
                conv_id: call.conv_id,
                seq,
                at: *at,
            },
            Reply::Call(*call_id),
        ))
    }

    pub(super) fn apply_call_started(&mut self, event: &Event) {
        let Event::CallStarted {
            call_id,
            conv_id,
            caller,
            call_type,
            participants,
            at,
            ..
        } = event
        else {
            unreachable!("State::apply dispatches only Event::CallStarted here")
        };
        self.next_call_id = self.next_call_id.max(*call_id);
        let mut rows = Vec::with_capacity(participants.len() + 1);
        let mut leg = |user: UserId, joined_at: Option<Micros>, is_answered: bool| {
            self.next_call_participant_id += 1;
            CallParticipant {
                id: self.next_call_participant_id,
                user,
                joined_at,
                left_at: None,
                is_answered,
                rejected: false,
            }
        };
        rows.push(leg(*caller, Some(*at), true));
        for user in participants {
            rows.push(leg(*user, None, false));
        }
        self.ringing.insert(*call_id);
        self.calls.insert(
            *call_id,
            Call {
                id: *call_id,
                conv_id: *conv_id,
                caller: *caller,
                call_type: call_type.clone(),
                state: "ringing".into(),
                started_at: *at,
                answered_at: None,
                ended_at: None,
                participants: rows,
            },
        );
    }

    pub(super) fn apply_call_change(&mut self, event: &Event) {
        let call_id = match event {
            Event::CallAnswered { call_id, .. }
            | Event::CallRejected { call_id, .. }
            | Event::CallEnded { call_id, .. }
            | Event::CallMissed { call_id, .. }
            | Event::CallUpdated { call_id, .. }
            | Event::CallDeleted { call_id, .. } => *call_id,
            _ => unreachable!("State::apply dispatches only call changes here"),
        };
        if let Event::CallDeleted { .. } = event {
            self.calls.remove(&call_id);
            self.ringing.remove(&call_id);
            return;
        }
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        // Whatever happens to a call, it rings no more unless it still
        // rings after this event (a decline with others still rung).
        let was_ringing = call.state == "ringing";
        let over = |call: &mut Call, state: &str, at: Micros| {
            call.state = state.into();
            call.ended_at = Some(at);
            for leg in &mut call.participants {
                if leg.joined_at.is_some() && leg.left_at.is_none() {
                    leg.left_at = Some(at);
                }
            }
        };
        match event {
            Event::CallAnswered { by, at, .. } => {
                call.state = "active".into();
                call.answered_at.get_or_insert(*at);
                if let Some(leg) = call.participants.iter_mut().find(|p| p.user == *by) {
                    leg.is_answered = true;
                    leg.joined_at = Some(*at);
                }
            }
            Event::CallRejected { by, at, .. } => {
                if let Some(leg) = call.participants.iter_mut().find(|p| p.user == *by) {
                    leg.rejected = true;
                }
                let caller = call.caller;
                let waiting = call
                    .participants
                    .iter()
                    .any(|p| p.user != caller && !p.rejected && !p.is_answered);
                if call.answered_at.is_none() && !waiting {
                    over(call, "declined", *at);
                }
            }
            Event::CallEnded { at, .. } => over(call, "ended", *at),
            Event::CallMissed { at, .. } => over(call, "missed", *at),
            Event::CallUpdated { call_type, .. } => call.call_type = call_type.clone(),
            _ => {}
        }
        if was_ringing && call.state != "ringing" {
            self.ringing.remove(&call_id);
        }
    }
}

#[cfg(test)]
mod tests;
