//! Unit tests of `state/calls.rs`.

use super::*;
use crate::state::testing::three_in_a_group as scene;

const SECOND: Micros = 1_000_000;

fn act(state: &mut State, by: UserId, action: CallAction, at: Micros) -> Result<Reply, Rejection> {
    let command = Command::CallAction {
        by,
        conv_id: 1,
        call_id: 1,
        action,
        at,
    };
    state.execute(&command, &mut Vec::new())
}

fn start(state: &mut State, participants: Vec<UserId>) -> Result<Reply, Rejection> {
    let command = Command::StartCall {
        by: 1,
        conv_id: 1,
        call_type: "video".into(),
        participants,
        at: 0,
    };
    state.execute(&command, &mut Vec::new())
}

#[test]
fn a_call_rings_is_answered_and_ends_with_its_duration() {
    let mut state = scene();
    assert_eq!(start(&mut state, vec![]), Ok(Reply::Call(1)));
    assert_eq!(
        start(&mut state, vec![]),
        Err(Rejection::CallInProgress),
        "one call at a time"
    );
    let call = state.call(1).unwrap();
    assert_eq!(call.state, "ringing");
    assert_eq!(
        call.participants.iter().map(|p| p.user).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(
        act(&mut state, 1, CallAction::Answer, SECOND),
        Err(Rejection::CallState("The caller cannot answer."))
    );
    act(&mut state, 2, CallAction::Answer, 2 * SECOND).unwrap();
    assert_eq!(state.call(1).unwrap().state, "active");
    assert_eq!(state.active_calls_of(3).len(), 1, "cy is still invited");
    act(&mut state, 3, CallAction::End, 65 * SECOND).unwrap();
    let call = state.call(1).unwrap();
    assert_eq!((call.state.as_str(), call.duration_secs()), ("ended", 63));
    assert_eq!(
        act(&mut state, 2, CallAction::Answer, 66 * SECOND),
        Err(Rejection::CallState("This call is over.")),
        "no answering an ended call (the original reopened it)"
    );
    assert!(state.active_calls_of(2).is_empty());
    act(&mut state, 2, CallAction::Delete, 70 * SECOND).unwrap();
    assert!(state.call(1).is_none());
}

#[test]
fn declined_by_all_missed_by_time_and_only_participants_act() {
    let mut state = scene();
    start(&mut state, vec![2]).unwrap();
    assert_eq!(
        act(&mut state, 3, CallAction::Answer, 1),
        Err(Rejection::NotAParticipant)
    );
    act(&mut state, 2, CallAction::Reject, 1).unwrap();
    assert_eq!(state.call(1).unwrap().state, "declined");

    // Another call: nobody answers within the ring time.
    let mut state = scene();
    start(&mut state, vec![2, 3]).unwrap();
    let timeout = |at| Command::CallTimeout {
        call_id: 1,
        ring: 45 * SECOND,
        at,
    };
    let mut out = Vec::new();
    state.execute(&timeout(44 * SECOND), &mut out).unwrap();
    assert!(out.is_empty(), "too early: nothing");
    act(&mut state, 2, CallAction::Reject, SECOND).unwrap();
    assert_eq!(state.call(1).unwrap().state, "ringing", "cy may answer");
    state.execute(&timeout(45 * SECOND), &mut out).unwrap();
    assert_eq!(state.call(1).unwrap().state, "missed");
    state.execute(&timeout(46 * SECOND), &mut out).unwrap();
    assert_eq!(out.len(), 1, "missed once");
    assert_eq!(
        start(&mut state, vec![7]),
        Err(Rejection::CallState(
            "participant_ids must be members of this conversation."
        ))
    );
}

#[test]
fn the_last_socket_of_a_participant_closing_ends_the_call() {
    let mut state = scene();
    let mut out = Vec::new();
    let sockets = |user_id, open: bool, at| match open {
        true => Command::SocketsOpened {
            user_id,
            node: 7,
            at,
        },
        false => Command::SocketsClosed {
            user_id,
            node: 7,
            at,
        },
    };
    for user in [1, 2, 3] {
        state.execute(&sockets(user, true, 0), &mut out).unwrap();
    }
    start(&mut state, vec![2, 3]).unwrap();
    // Cy is only rung: his going leaves the call ringing for bo.
    state.execute(&sockets(3, false, SECOND), &mut out).unwrap();
    assert_eq!(state.call(1).unwrap().state, "ringing");
    act(&mut state, 2, CallAction::Answer, 2 * SECOND).unwrap();
    out.clear();
    state
        .execute(&sockets(2, false, 5 * SECOND), &mut out)
        .unwrap();
    let call = state.call(1).unwrap();
    assert_eq!((call.state.as_str(), call.duration_secs()), ("ended", 3));
    let ended: Vec<_> = out
        .iter()
        .filter(|e| matches!(e.event, Event::CallEnded { by: 2, .. }))
        .collect();
    assert_eq!(ended.len(), 1, "{out:?}");

    // A crashed node's users: one end for their one call.
    let mut state = scene();
    for user in [1, 2] {
        state.execute(&sockets(user, true, 0), &mut out).unwrap();
    }
    start(&mut state, vec![2]).unwrap();
    act(&mut state, 2, CallAction::Answer, SECOND).unwrap();
    out.clear();
    let clear = Command::ClearNodePresence {
        node: 7,
        at: 4 * SECOND,
    };
    state.execute(&clear, &mut out).unwrap();
    let ends = out
        .iter()
        .filter(|e| matches!(e.event, Event::CallEnded { .. }))
        .count();
    assert_eq!(ends, 1, "{out:?}");
    assert_eq!(state.call(1).unwrap().state, "ended");
}
