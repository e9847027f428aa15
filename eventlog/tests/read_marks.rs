//! A read mark that does not move the reader's position is decided as no
//! event: nothing is stored and nothing is fanned out (issue 17).

mod common;

use vato_eventlog::{Command, Event, Rejection, Reply, State};

/// Decides and applies `command` the way the writer does; returns the
/// reply and the events it appended.
fn run(state: &mut State, command: Command) -> (Result<Reply, Rejection>, Vec<Event>) {
    let mut events = Vec::new();
    let reply = state.execute(&command, &mut events);
    (reply, events.into_iter().map(|e| e.event).collect())
}

#[test]
fn a_read_mark_that_does_not_move_the_position_appends_nothing() {
    let mut state = State::default();
    let ana = common::user_id(&run(&mut state, common::register("ana", 1)).0.expect("ana"));
    let bo = common::user_id(&run(&mut state, common::register("bo", 1)).0.expect("bo"));
    let conv = common::conv_id(
        &run(&mut state, common::group(ana, &[bo], 2))
            .0
            .expect("group"),
    );
    let post = |state: &mut State, text: &str| {
        common::message_id(
            &run(state, common::post(ana, conv, text, None, 3))
                .0
                .expect("post"),
        )
        .0
    };
    let m1 = post(&mut state, "one");
    let m2 = post(&mut state, "two");

    let (reply, events) = run(&mut state, common::mark_read(bo, conv, m2, 4));
    assert_eq!(reply, Ok(Reply::Done));
    assert_eq!(events.len(), 1, "the first mark moves the position");
    let last_seq = state.conversation(conv).expect("conv").last_seq;

    for message_id in [m2, m2, m1] {
        let (reply, events) = run(&mut state, common::mark_read(bo, conv, message_id, 5));
        assert_eq!(reply, Ok(Reply::Done), "a repeated mark still succeeds");
        assert!(
            events.is_empty(),
            "a mark at or behind the position is stored: {events:?}"
        );
    }
    assert_eq!(state.conversation(conv).expect("conv").last_seq, last_seq);
    assert_eq!(state.read_position(conv, bo).expect("position").up_to, m2);

    let m3 = post(&mut state, "three");
    let (_, events) = run(&mut state, common::mark_read(bo, conv, m3, 6));
    assert_eq!(events.len(), 1, "a mark past the position is stored");

    // A mark of a message the reader may not see is still refused.
    let cy = common::user_id(&run(&mut state, common::register("cy", 7)).0.expect("cy"));
    let (reply, events) = run(&mut state, common::mark_read(cy, conv, m3, 8));
    assert!(reply.is_err() && events.is_empty());
}
