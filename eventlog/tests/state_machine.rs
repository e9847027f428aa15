//! The state machine where its logic is dense: unread counts, the last
//! message after deletions, reaction toggles. Pure `decide` + `apply`, no
//! disk.

mod common;

use vato_eventlog::{Command, Rejection, Reply, State};

/// Decides and applies `command` the way the writer does.
fn run(state: &mut State, command: Command) -> Result<Reply, Rejection> {
    state.execute(&command, &mut Vec::new())
}

/// ana, bo, cy in one group: (state, [ana, bo, cy], conv).
fn group_of_three() -> (State, [u64; 3], u64) {
    let mut state = State::default();
    let ids: Vec<u64> = ["ana", "bo", "cy"]
        .iter()
        .map(|n| common::user_id(&run(&mut state, common::register(n, 1)).expect("register")))
        .collect();
    let conv =
        common::conv_id(&run(&mut state, common::group(ids[0], &ids[1..], 2)).expect("group"));
    (state, [ids[0], ids[1], ids[2]], conv)
}

fn post(state: &mut State, sender: u64, conv: u64, text: &str) -> u64 {
    common::message_id(&run(state, common::post(sender, conv, text, None, 3)).expect("post")).0
}

fn read(state: &mut State, by: u64, conv: u64, message_id: u64) {
    run(state, common::mark_read(by, conv, message_id, 4)).expect("read");
}

fn delete(state: &mut State, by: u64, conv: u64, message_id: u64) {
    run(state, common::delete(by, conv, message_id, 5)).expect("delete");
}

#[test]
fn unread_count_skips_own_and_deleted_messages_and_never_moves_back() {
    let (mut state, [ana, bo, cy], conv) = group_of_three();
    let unread =
        |state: &State, user| state.unread_count(state.conversation(conv).expect("conv"), user);

    let m1 = post(&mut state, ana, conv, "one");
    let m2 = post(&mut state, bo, conv, "two");
    let m3 = post(&mut state, ana, conv, "three");
    assert_eq!(
        unread(&state, bo),
        2,
        "ana's two; bo's own message does not count"
    );
    assert_eq!(unread(&state, ana), 1);
    assert_eq!(unread(&state, cy), 3);

    delete(&mut state, ana, conv, m3);
    assert_eq!(unread(&state, bo), 1, "a deleted message is not unread");

    read(&mut state, cy, conv, m2);
    assert_eq!(unread(&state, cy), 0, "m3 is deleted, m1 and m2 read");
    // Reading an older message later does not make m2 unread again.
    read(&mut state, cy, conv, m1);
    assert_eq!(state.read_position(conv, cy).expect("position").up_to, m2);
    assert_eq!(unread(&state, cy), 0);

    post(&mut state, bo, conv, "four");
    assert_eq!(unread(&state, cy), 1);
    assert_eq!(
        state
            .readers_of(state.conversation(conv).expect("conv"), m2)
            .len(),
        1
    );
}

#[test]
fn last_message_falls_back_past_deleted_ones() {
    let (mut state, [ana, bo, _], conv) = group_of_three();
    let last = |state: &State| state.conversation(conv).expect("conv").last_message;

    let m1 = post(&mut state, ana, conv, "one");
    let m2 = post(&mut state, bo, conv, "two");
    let m3 = post(&mut state, ana, conv, "three");
    assert_eq!(last(&state), Some(m3));

    delete(&mut state, bo, conv, m2);
    assert_eq!(
        last(&state),
        Some(m3),
        "deleting an older message changes nothing"
    );
    delete(&mut state, ana, conv, m3);
    assert_eq!(last(&state), Some(m1), "skips m2, which is deleted too");
    delete(&mut state, ana, conv, m1);
    assert_eq!(last(&state), None);

    // Deleted stays deleted; ids and seqs never move.
    assert_eq!(
        run(
            &mut state,
            Command::DeleteMessage {
                by: ana,
                conv_id: conv,
                message_id: m1,
                at: 6
            }
        ),
        Err(Rejection::MessageDeleted)
    );
    let m4 = post(&mut state, bo, conv, "four");
    assert_eq!(last(&state), Some(m4));
    assert_eq!(
        state.message(m4).expect("m4").seq,
        7,
        "three posts and three deletes before it"
    );
}

#[test]
fn a_reaction_toggles_per_user_and_emoji() {
    let (mut state, [ana, bo, _], conv) = group_of_three();
    let m = post(&mut state, ana, conv, "react to me");
    let toggle = |state: &mut State, by, emoji: &str| match run(
        state,
        Command::ToggleReaction {
            by,
            conv_id: conv,
            message_id: m,
            emoji: emoji.to_string(),
            at: 7,
        },
    )
    .expect("toggle")
    {
        Reply::Reaction { reaction_id, added } => (reaction_id, added),
        other => panic!("{other:?}"),
    };
    let reactions = |state: &State| -> Vec<(u64, String)> {
        let message = state.message(m).expect("message");
        message
            .reactions
            .iter()
            .map(|r| (r.user_id, r.emoji.clone()))
            .collect()
    };

    let (r1, added) = toggle(&mut state, ana, "👍");
    assert!(added);
    let (_, added) = toggle(&mut state, bo, "👍");
    assert!(added, "bo's 👍 is his own reaction");
    let (_, added) = toggle(&mut state, ana, "🎉");
    assert!(added, "another emoji is another reaction");
    assert_eq!(reactions(&state).len(), 3);

    let (removed, added) = toggle(&mut state, ana, "👍");
    assert_eq!(
        (removed, added),
        (r1, false),
        "the same one again removes it"
    );
    assert_eq!(
        reactions(&state),
        vec![(bo, "👍".to_string()), (ana, "🎉".to_string())]
    );

    let (r4, added) = toggle(&mut state, ana, "👍");
    assert!(added && r4 != r1, "re-adding makes a new reaction");

    delete(&mut state, ana, conv, m);
    assert_eq!(
        state.decide(&Command::ToggleReaction {
            by: bo,
            conv_id: conv,
            message_id: m,
            emoji: "👍".to_string(),
            at: 8
        }),
        Err(Rejection::MessageDeleted)
    );
}

#[test]
fn a_forward_shares_the_sources_attachments_under_new_ids() {
    let (mut state, [ana, bo, _], conv) = group_of_three();
    let target = common::conv_id(&run(&mut state, common::direct(bo, ana, 6)).expect("direct"));
    let source = post(&mut state, ana, conv, "a photo");
    let attached = run(
        &mut state,
        Command::StoreAttachment {
            by: ana,
            conv_id: conv,
            message_id: source,
            file_name: "cat.png".into(),
            file_size: 1234,
            mime_type: "image/png".into(),
            blob_key: "sha256-cat".into(),
            at: 7,
        },
    )
    .expect("attach");
    let Reply::Attachment(original) = attached else {
        panic!("not an attachment: {attached:?}")
    };
    let mut events = Vec::new();
    let forward = Command::ForwardMessage {
        by: bo,
        conv_id: conv,
        message_id: source,
        to_conv: target,
        client_id: Some("fw".into()),
        at: 8,
    };
    let reply = state.execute(&forward, &mut events).expect("forward");
    let (copy, created) = common::message_id(&reply);
    assert!(created);
    // The message, then its attachment, in consecutive seqs of the target.
    let seqs: Vec<_> = events.iter().filter_map(|e| e.event.conv_seq()).collect();
    assert_eq!(seqs, [(target, 1), (target, 2)]);
    let copy = state.message(copy).expect("forwarded message").clone();
    assert_eq!(
        (copy.conv_id, copy.sender, copy.forwarded_from),
        (target, bo, Some(source))
    );
    assert_eq!(copy.content, "a photo");
    assert_eq!(copy.attachments.len(), 1);
    let shared = &copy.attachments[0];
    assert_ne!(shared.id, original, "a row of its own");
    assert_eq!(shared.blob_key, "sha256-cat", "the same stored bytes");
    assert_eq!(
        (shared.file_name.as_str(), shared.file_size),
        ("cat.png", 1234)
    );
    // The retry appends nothing.
    let mut again = Vec::new();
    let reply = state.execute(&forward, &mut again).expect("retry");
    assert_eq!(common::message_id(&reply), (copy.id, false));
    assert!(again.is_empty());
    assert_eq!(
        state.unread_count(state.conversation(target).unwrap(), ana),
        1
    );
}

#[test]
fn deleting_a_conversation_drops_it_from_lists_and_frees_the_direct_pair() {
    let (mut state, [ana, bo, cy], conv) = group_of_three();
    let direct = common::conv_id(&run(&mut state, common::direct(ana, bo, 6)).expect("direct"));
    let m = post(&mut state, bo, conv, "bye");
    post(&mut state, ana, direct, "hi");
    assert_eq!(
        run(
            &mut state,
            Command::DeleteConversation {
                by: bo,
                conv_id: conv,
                at: 7
            }
        ),
        Err(Rejection::NotAnAdmin)
    );
    for (by, conv_id) in [(ana, conv), (ana, direct)] {
        run(
            &mut state,
            Command::DeleteConversation { by, conv_id, at: 8 },
        )
        .expect("delete");
    }
    for user in [ana, bo, cy] {
        assert_eq!(state.conversations_of(user).count(), 0);
    }
    assert!(state.message(m).is_none());
    assert_eq!(state.direct_between(ana, bo), None);
    let again = run(&mut state, common::direct(bo, ana, 9)).expect("direct again");
    assert_ne!(common::conv_id(&again), direct);
}
