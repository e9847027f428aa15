//! Calls (issue 15): the call object of the REST routes and the `call.*`
//! frames of the call events.

use serde_json::{json, Value};
use vato_eventlog::state::Call;
use vato_eventlog::{Event, Seq, State, UserId};

use super::user_id_json;
use crate::clock::format;

/// The contract's call object (API-rest §7): `duration` runs from the
/// first answer to the end (the original counted the ringing too).
pub fn call(state: &State, call: &Call, viewer: Option<UserId>) -> Value {
    let participants: Vec<Value> = call
        .participants
        .iter()
        .map(|p| {
            json!({
                "id": p.id,
                "user": user_id_json(state, p.user, viewer),
                "joined_at": p.joined_at.map(format),
                "left_at": p.left_at.map(format),
                "is_answered": p.is_answered,
            })
        })
        .collect();
    json!({
        "id": call.id,
        "conversation": call.conv_id,
        "caller": user_id_json(state, call.caller, viewer),
        "call_type": call.call_type,
        "state": call.state,
        "started_at": format(call.started_at),
        "ended_at": call.ended_at.map(format),
        "duration": call.duration_secs(),
        "participants": participants,
    })
}

/// `{"id", "username"}` of a user (the frames' short form).
fn short(state: &State, id: UserId) -> Value {
    let username = state.user(id).map_or("", |u| u.username.as_str());
    json!({"id": id, "username": username})
}

/// The frame of a call event, with its `seq`.
pub fn call_frame(state: &State, event: &Event, seq: Seq) -> Option<Value> {
    let frame = match event {
        Event::CallStarted {
            call_id,
            conv_id,
            caller,
            call_type,
            participants,
            ..
        } => {
            let user = state.user(*caller);
            let name = |f: fn(&vato_eventlog::state::User) -> &str| user.map_or("", f);
            json!({
                "type": "call.incoming",
                "call_id": call_id,
                "conversation": conv_id,
                "caller": {
                    "id": caller,
                    "username": name(|u| &u.username),
                    "first_name": name(|u| &u.profile.first_name),
                    "last_name": name(|u| &u.profile.last_name),
                },
                "call_type": call_type,
                "participant_ids": participants,
                "seq": seq,
            })
        }
        Event::CallAnswered { call_id, by, .. } => json!({
            "type": "call.answered",
            "call_id": call_id,
            "answerer": short(state, *by),
            "seq": seq,
        }),
        Event::CallRejected { call_id, by, .. } => json!({
            "type": "call.rejected",
            "call_id": call_id,
            "rejector": short(state, *by),
            "state": state.call(*call_id).map(|c| c.state.as_str()),
            "seq": seq,
        }),
        Event::CallEnded { call_id, by, .. } => json!({
            "type": "call.ended",
            "call_id": call_id,
            "ended_by": short(state, *by),
            "duration": state.call(*call_id).map_or(0, Call::duration_secs),
            "seq": seq,
        }),
        Event::CallMissed { call_id, .. } => json!({
            "type": "call.missed",
            "call_id": call_id,
            "seq": seq,
        }),
        Event::CallUpdated {
            call_id,
            by,
            call_type,
            ..
        } => json!({
            "type": "call.updated",
            "call_id": call_id,
            "call_type": call_type,
            "by": by,
            "seq": seq,
        }),
        Event::CallDeleted { call_id, by, .. } => json!({
            "type": "call.deleted",
            "call_id": call_id,
            "by": by,
            "seq": seq,
        }),
        _ => return None,
    };
    Some(frame)
}
