//! Damage on disk: a corrupt or missing log entry is an error naming its
//! offset (never a panic, never a silently shorter state); a damaged
//! snapshot is only a cache miss (full replay, same state).

mod common;

use std::path::Path;

use vato_eventlog::log::Log;
use vato_eventlog::{codec, snapshot, State, Store};

/// A closed store with users, a group and `messages` messages; returns the
/// final state. (`close()` leaves a snapshot behind.)
fn populated(dir: &Path, messages: usize) -> State {
    let rt = common::runtime();
    let store = common::open(common::config(dir, 1_000_000));
    let (users, conv) = common::users_and_group(&rt, &store, &["ana", "bo", "cy"]);
    for i in 0..messages {
        let sender = users[i % users.len()];
        common::submit(
            &rt,
            &store,
            common::post(sender, conv, &format!("message {i}"), None, 10 + i as i64),
        )
        .expect("post");
    }
    let state = store.state().clone();
    common::close(store);
    state
}

/// The encoded entry at `offset` (the codec is deterministic, so this is
/// byte for byte what the store wrote).
fn entry_bytes(dir: &Path, offset: u64) -> Vec<u8> {
    let log = common::retry_lock(|| Log::open(dir)).expect("open log");
    let envelope = log.get(offset).expect("read").expect("entry exists");
    codec::encode(&envelope).expect("encode")
}

fn put_raw(dir: &Path, offset: u64, bytes: &[u8]) {
    let log = common::retry_lock(|| Log::open(dir)).expect("open log");
    log.put_raw(offset, bytes).expect("put_raw");
}

/// Both ways of loading the log fail, and say where.
fn assert_fails_at(dir: &Path, offset: u64, what: &str) {
    let needle = format!("offset {offset}");
    match common::rebuild(dir) {
        Ok(_) => panic!("{what}: rebuild succeeded on a damaged log"),
        Err(e) => assert!(
            e.to_string().contains(&needle),
            "{what}: rebuild error {e:?} lacks {needle:?}"
        ),
    }
    match common::retry_lock(|| Store::open(common::config(dir, 1_000_000))) {
        Ok(_) => panic!("{what}: Store::open succeeded on a damaged log"),
        Err(e) => assert!(
            e.to_string().contains(&needle),
            "{what}: open error {e:?} lacks {needle:?}"
        ),
    }
}

/// A way to spoil an entry's bytes.
type Damage = fn(Vec<u8>) -> Vec<u8>;

#[test]
fn damaged_entries_are_errors_naming_their_offset() {
    // (name, damage applied to the entry's bytes)
    let damages: Vec<(&str, Damage)> = vec![
        ("empty", |_| Vec::new()),
        ("header only", |b| b[..3].to_vec()),
        ("truncated by one byte", |b| b[..b.len() - 1].to_vec()),
        ("truncated to half", |b| b[..b.len() / 2].to_vec()),
        ("flipped payload byte", |mut b| {
            let i = b.len() / 2;
            b[i] ^= 0x55;
            b
        }),
        ("flipped checksum byte", |mut b| {
            b[2] ^= 0x01;
            b
        }),
        ("unknown format version", |mut b| {
            b[0] = 9;
            b
        }),
        ("garbage", |b| {
            (0..b.len()).map(|i| (i * 131 + 7) as u8).collect()
        }),
        ("valid checksum, not an envelope", |_| {
            codec::encode(&"hello").expect("encode")
        }),
    ];
    // Offsets: the first event, one in the middle, and the last one.
    for offset in [0u64, 7, 13] {
        for (name, damage) in &damages {
            let dir = tempfile::tempdir().expect("tempdir");
            let state = populated(dir.path(), 10);
            assert_eq!(state.next_offset, 14);
            // Without the snapshot, opening must read (and reject) the entry.
            std::fs::remove_file(snapshot::path(dir.path())).expect("remove snapshot");
            let bytes = entry_bytes(dir.path(), offset);
            put_raw(dir.path(), offset, &damage(bytes));
            assert_fails_at(dir.path(), offset, &format!("{name} at {offset}"));
        }
    }
}

#[test]
fn an_entry_moved_to_another_offset_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    populated(dir.path(), 10);
    std::fs::remove_file(snapshot::path(dir.path())).expect("remove snapshot");
    // Intact bytes, wrong place: the envelope names offset 4, the key 5.
    let bytes = entry_bytes(dir.path(), 4);
    put_raw(dir.path(), 5, &bytes);
    assert_fails_at(dir.path(), 5, "entry 4 copied to 5");
}

#[test]
fn a_missing_entry_is_an_error_naming_the_gap() {
    let dir = tempfile::tempdir().expect("tempdir");
    populated(dir.path(), 10);
    std::fs::remove_file(snapshot::path(dir.path())).expect("remove snapshot");
    {
        // Below the log's API on purpose: the store never deletes.
        let db = common::retry_lock(|| sled::open(dir.path().join("sled"))).expect("sled");
        db.open_tree("events")
            .expect("tree")
            .remove(6u64.to_be_bytes())
            .expect("remove");
        db.flush().expect("flush");
    }
    assert_fails_at(dir.path(), 6, "entry 6 removed");
}

#[test]
fn damage_in_the_tail_after_a_snapshot_is_found_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = common::runtime();
    let store = common::open(common::config(dir.path(), 1_000_000));
    let (users, conv) = common::users_and_group(&rt, &store, &["ana", "bo"]);
    for i in 0..5 {
        common::submit(&rt, &store, common::post(users[0], conv, "before", None, i)).expect("post");
    }
    let at_snapshot = store.state().clone();
    for i in 0..5 {
        common::submit(&rt, &store, common::post(users[1], conv, "after", None, i)).expect("post");
    }
    common::close(store);
    // The snapshot covers offsets 0..8; offsets 8..13 are the tail.
    snapshot::write(dir.path(), &at_snapshot).expect("snapshot");
    let tail_offset = at_snapshot.next_offset + 2;
    let bytes = entry_bytes(dir.path(), tail_offset);
    put_raw(dir.path(), tail_offset, &bytes[..bytes.len() - 3]);
    assert_fails_at(dir.path(), tail_offset, "truncated tail entry");
}

#[test]
fn a_damaged_snapshot_costs_a_full_replay_not_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let expected = populated(dir.path(), 40);
    let good = std::fs::read(snapshot::path(dir.path())).expect("snapshot written by close()");

    // A snapshot "ahead" of the log (say, restored from another machine's
    // backup) must not be trusted either.
    let mut ahead = expected.clone();
    ahead.next_offset += 1000;
    let ahead = codec::encode(&ahead).expect("encode");

    let damaged: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("flipped byte", {
            let mut b = good.clone();
            let i = b.len() / 3;
            b[i] ^= 0xFF;
            b
        }),
        ("garbage", vec![0xAB; 4096]),
        (
            "not a state",
            codec::encode(&vec![1u32, 2, 3]).expect("encode"),
        ),
        ("ahead of the log", ahead),
    ];
    for (name, bytes) in damaged {
        std::fs::write(snapshot::path(dir.path()), &bytes).expect("write snapshot");
        let store = common::open(common::config(dir.path(), 1_000_000));
        assert!(
            *store.state() == expected,
            "{name}: wrong state after a damaged snapshot"
        );
        // Dropped, not closed: close() would replace the damaged file.
        drop(store);
    }
    std::fs::write(snapshot::path(dir.path()), &good).expect("restore snapshot");
    let store = common::open(common::config(dir.path(), 1_000_000));
    assert!(
        *store.state() == expected,
        "the intact snapshot gives the same state"
    );
    common::close(store);
    assert!(common::rebuild(dir.path()).expect("rebuild") == expected);
}
