//! Unit tests of `state/notifications.rs`.

use super::*;
use crate::event::Envelope;
use crate::profile::SettingsChanges;
use crate::state::testing::three_in_a_group as scene;

fn run(state: &mut State, command: Command) -> Vec<Event> {
    let mut out: Vec<Envelope> = Vec::new();
    state.execute(&command, &mut out).expect("accepted");
    out.into_iter().map(|e| e.event).collect()
}

fn post(sender: UserId, at: Micros) -> Command {
    Command::PostMessage {
        sender,
        conv_id: 1,
        content: "hi".into(),
        message_type: "text".into(),
        reply_to: None,
        forwarded_from: None,
        client_id: None,
        at,
    }
}

fn created(events: &[Event]) -> Vec<(NotificationId, Vec<UserId>)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::NotificationsCreated {
                first_id, users, ..
            } => Some((*first_id, users.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn offline_members_are_told_online_ones_and_the_sender_not() {
    let mut state = scene();
    assert_eq!(created(&run(&mut state, post(1, 1))), vec![(1, vec![2, 3])]);
    run(
        &mut state,
        Command::SocketsOpened {
            user_id: 2,
            node: 9,
            at: 2,
        },
    );
    assert_eq!(created(&run(&mut state, post(1, 3))), vec![(3, vec![3])]);
    // Bo online: his message tells cy and ana.
    assert_eq!(created(&run(&mut state, post(2, 4))), vec![(4, vec![1, 3])]);
    let cy: Vec<NotificationId> = state.notifications_of(3).iter().map(|n| n.id).collect();
    assert_eq!(cy, vec![5, 3, 2], "newest first");
    let n = state.notification(3, 5).expect("cy's");
    assert_eq!(
        (n.kind.as_str(), n.from, n.message_id),
        ("message", 2, Some(3))
    );
    assert!(state.notification(1, 5).is_none(), "not ana's");
}

#[test]
fn settings_and_blocks_silence_a_member() {
    let mut state = scene();
    let changes = SettingsChanges {
        enable_notifications: Some(false),
        ..SettingsChanges::default()
    };
    run(
        &mut state,
        Command::UpdateSettings {
            user_id: 2,
            changes: Box::new(changes),
            at: 1,
        },
    );
    run(
        &mut state,
        Command::AddContact {
            owner: 3,
            user_id: 1,
            nickname: String::new(),
            is_blocked: true,
            is_favorite: false,
            at: 1,
        },
    );
    assert!(created(&run(&mut state, post(1, 2))).is_empty());
    // Cy blocks ana, not bo.
    assert_eq!(created(&run(&mut state, post(2, 3))), vec![(1, vec![1, 3])]);
}

#[test]
fn a_ringing_call_tells_the_offline_members_it_rings() {
    let mut state = scene();
    let events = run(
        &mut state,
        Command::StartCall {
            by: 1,
            conv_id: 1,
            call_type: "video".into(),
            participants: vec![3],
            at: 5,
        },
    );
    assert_eq!(created(&events), vec![(1, vec![3])]);
    let n = state.notification(3, 1).expect("cy's");
    assert_eq!((n.kind.as_str(), n.call_id), ("call", Some(1)));
}

#[test]
fn read_marks_and_unknown_ids() {
    let mut state = scene();
    run(&mut state, post(1, 1));
    let read = |by, notification_id| Command::ReadNotification {
        by,
        notification_id,
        at: 2,
    };
    assert_eq!(
        state.execute(&read(1, 1), &mut Vec::new()),
        Err(Rejection::UnknownNotification),
        "another user's"
    );
    assert_eq!(run(&mut state, read(2, 1)).len(), 1);
    assert!(state.notification(2, 1).expect("bo's").is_read);
    assert!(run(&mut state, read(2, 1)).is_empty(), "read already");
    // Removed from the group: its notifications are gone for him.
    run(
        &mut state,
        Command::RemoveMember {
            by: 1,
            conv_id: 1,
            user_id: 2,
            at: 3,
        },
    );
    assert!(state.notifications_of(2).is_empty());
}

#[test]
fn only_the_newest_are_kept() {
    let mut state = scene();
    for at in 0..(NOTIFICATIONS_KEPT as i64 + 5) {
        run(&mut state, post(1, at));
    }
    let bo = state.notifications_of(2);
    assert_eq!(bo.len(), NOTIFICATIONS_KEPT);
    assert!(bo.windows(2).all(|w| w[0].id > w[1].id));
}

#[test]
fn a_token_is_one_users_and_removal_needs_it() {
    let mut state = scene();
    let register = |by, token: &str| Command::RegisterDevice {
        by,
        token: token.into(),
        platform: "android".into(),
        at: 1,
    };
    run(&mut state, register(1, "t1"));
    assert!(run(&mut state, register(1, "t1")).is_empty(), "known");
    run(&mut state, register(2, "t1"));
    assert!(state.devices_of(1).is_empty(), "moved to bo");
    assert_eq!(state.devices_of(2)[0].token, "t1");
    let remove = |by, token: &str| Command::RemoveDevice {
        by,
        token: token.into(),
        at: 2,
    };
    assert_eq!(
        state.execute(&remove(1, "t1"), &mut Vec::new()),
        Err(Rejection::UnknownDevice)
    );
    run(&mut state, remove(2, "t1"));
    assert!(state.devices_of(2).is_empty());
    for i in 0..DEVICES_KEPT + 2 {
        run(&mut state, register(3, &format!("d{i}")));
    }
    let cy = state.devices_of(3);
    assert_eq!(cy.len(), DEVICES_KEPT);
    assert_eq!(cy[0].token, "d2", "the oldest went");
}
