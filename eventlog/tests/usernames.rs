//! Usernames are unique up to look-alikes (NFKC + Unicode confusables) and
//! phone numbers up to separators, live, after a restart from a snapshot,
//! and after a full replay.

mod common;

use vato_eventlog::{Command, Rejection, Store};

const CYRILLIC_A_LALO: &str = "l\u{430}lo";
const FULLWIDTH_LALO: &str = "\u{ff4c}\u{ff41}\u{ff4c}\u{ff4f}";

fn with_phone(name: &str, phone: &str) -> Command {
    let Command::Register {
        username,
        password_hash,
        email,
        display_name,
        at,
        ..
    } = common::register(name, 1)
    else {
        unreachable!("register builds a Register")
    };
    Command::Register {
        username,
        password_hash,
        email,
        display_name,
        phone_number: Some(phone.to_string()),
        at,
    }
}

/// What registering each look-alike of lalo and a reformatted phone gives.
fn attempts(rt: &tokio::runtime::Runtime, store: &Store) -> Vec<Result<(), Rejection>> {
    [
        common::register(CYRILLIC_A_LALO, 2),
        common::register(FULLWIDTH_LALO, 2),
        common::register("LALO", 2),
        with_phone("pia", "+15550001111"),
    ]
    .into_iter()
    .map(|command| common::submit(rt, store, command).map(|_| ()))
    .collect()
}

fn assert_all_refused(results: Vec<Result<(), Rejection>>, when: &str) {
    assert_eq!(
        results,
        vec![
            Err(Rejection::UsernameTaken),
            Err(Rejection::UsernameTaken),
            Err(Rejection::UsernameTaken),
            Err(Rejection::PhoneTaken),
        ],
        "{when}"
    );
}

#[test]
fn look_alikes_stay_refused_across_snapshot_and_replay() {
    let rt = common::runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = common::config(dir.path(), 1_000_000);
    let store = common::open(config.clone());
    common::submit(&rt, &store, common::register("lalo", 1)).expect("lalo");
    // Stored raw, as versions before E.164 normalisation did.
    common::submit(&rt, &store, with_phone("kalu", "+1 555 000 1111")).expect("kalu");
    assert_all_refused(attempts(&rt, &store), "live");
    assert_eq!(store.state().users.len(), 2, "nothing was registered");
    // Login lookups stay exact (case-insensitive) and find the raw number.
    {
        let state = store.state();
        assert_eq!(state.user_by_name("LaLo").map(|u| u.id), Some(1));
        assert!(state.user_by_name(CYRILLIC_A_LALO).is_none());
        assert_eq!(state.user_by_phone("+15550001111").map(|u| u.id), Some(2));
    }
    let live = store.state().detached();

    // A clean restart loads the snapshot, whose look-alike index is rebuilt.
    common::close(store);
    let store = common::open(config.clone());
    assert!(*store.state() == live, "snapshot state equals the live one");
    assert_all_refused(attempts(&rt, &store), "after a snapshot");

    // A full replay decides the same.
    common::close(store);
    common::discard_snapshot(dir.path());
    assert!(common::rebuild(dir.path()).expect("rebuild") == live);
    let store = common::open(config);
    assert_all_refused(attempts(&rt, &store), "after a full replay");
    common::submit(&rt, &store, common::register("lala", 3)).expect("a different name");
    common::close(store);
}
