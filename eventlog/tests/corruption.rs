//! Damage on disk: a corrupt or missing log entry is an error naming its
//! offset (never a panic, never a silently shorter state), whether it is
//! alone in its chunk or among others; a damaged snapshot is refused with
//! an error naming its file or tree, and `vato-admin rebuild` restores it.

mod common;

use std::path::Path;

use vato_eventlog::log::{self, Log};
use vato_eventlog::{codec, snapshot, Envelope, State, Store};

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
    let state = store.state().detached();
    common::close(store);
    state
}

/// Rewrites the log of a closed store with `per_chunk` events per batch
/// (the store above appends one event per batch, so one per chunk). The
/// snapshot stays valid: same events, same offsets.
fn regroup(dir: &Path, per_chunk: usize) {
    let events: Vec<Envelope> = {
        let log = common::retry_lock(|| Log::open(dir)).expect("open log");
        log.read_from(0).collect::<Result<_, _>>().expect("read")
    };
    std::fs::remove_dir_all(dir.join("sled")).expect("remove sled");
    std::fs::remove_dir_all(dir.join("wal")).expect("remove wal");
    let log = common::retry_lock(|| Log::open(dir)).expect("open log");
    for batch in events.chunks(per_chunk) {
        log.append_batch(batch).expect("append");
        // One batch per projector transaction: one chunk per batch.
        log.settle();
    }
    let chunks = log.sled().open_tree(log::CHUNKS).expect("tree").len();
    assert_eq!(chunks, events.len().div_ceil(per_chunk), "chunks written");
}

/// The raw value of the chunk starting at `first`.
fn chunk(dir: &Path, first: u64) -> Vec<u8> {
    let log = common::retry_lock(|| Log::open(dir)).expect("open log");
    let tree = log.sled().open_tree(log::CHUNKS).expect("tree");
    tree.get(first.to_be_bytes())
        .expect("read")
        .expect("chunk exists")
        .to_vec()
}

/// Below the log's API on purpose (the store never rewrites a chunk):
/// replaces or, with `None`, removes the chunk starting at `first`.
fn set_chunk(dir: &Path, first: u64, value: Option<&[u8]>) {
    let log = common::retry_lock(|| Log::open(dir)).expect("open log");
    let tree = log.sled().open_tree(log::CHUNKS).expect("tree");
    match value {
        Some(value) => tree.insert(first.to_be_bytes(), value).map(drop),
        None => tree.remove(first.to_be_bytes()).map(drop),
    }
    .expect("write chunk");
    log.sync().expect("sync");
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
    // 24 events: 4 to set up, then each post and the notifications of
    // the two members it was not from (all offline). One event per chunk,
    // then chunks of 5 (offsets 0..5, ..., 20..24). Offsets: the first
    // event, one in the middle of a chunk, and the last one.
    for per_chunk in [1, 5] {
        for offset in [0u64, 7, 23] {
            for (name, damage) in &damages {
                let dir = tempfile::tempdir().expect("tempdir");
                let state = populated(dir.path(), 10);
                assert_eq!(state.next_offset, 24);
                regroup(dir.path(), per_chunk);
                // Without the snapshot, opening must read (and reject) the entry.
                common::discard_snapshot(dir.path());
                let bytes = entry_bytes(dir.path(), offset);
                put_raw(dir.path(), offset, &damage(bytes));
                assert_fails_at(
                    dir.path(),
                    offset,
                    &format!("{name} at {offset}, {per_chunk} per chunk"),
                );
            }
        }
    }
}

#[test]
fn an_entry_moved_to_another_offset_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    populated(dir.path(), 10);
    common::discard_snapshot(dir.path());
    // Intact bytes, wrong place: the envelope names offset 4, the key 5.
    let bytes = entry_bytes(dir.path(), 4);
    put_raw(dir.path(), 5, &bytes);
    assert_fails_at(dir.path(), 5, "entry 4 copied to 5");
}

#[test]
fn a_missing_chunk_is_an_error_naming_the_gap() {
    // (events per chunk, first offset of the chunk removed)
    for (per_chunk, first) in [(1, 6), (5, 5)] {
        let dir = tempfile::tempdir().expect("tempdir");
        populated(dir.path(), 10);
        regroup(dir.path(), per_chunk);
        common::discard_snapshot(dir.path());
        set_chunk(dir.path(), first, None);
        assert_fails_at(
            dir.path(),
            first,
            &format!("chunk {first} of {per_chunk} removed"),
        );
    }
}

#[test]
fn a_chunk_whose_lengths_do_not_add_up_is_an_error_naming_the_entry() {
    // Chunks 0..5, 5..10, 10..14; the middle one is damaged. (name, damage,
    // the offset the error must name)
    let damages: Vec<(&str, Damage, u64)> = vec![
        ("empty", |_| Vec::new(), 5),
        ("cut inside the first length", |b| b[..2].to_vec(), 5),
        (
            "cut inside the last entry",
            |b| b[..b.len() - 3].to_vec(),
            9,
        ),
        (
            "first length too big",
            |mut b| {
                b[0] = 0x7f;
                b
            },
            5,
        ),
        (
            "two stray bytes after the last entry",
            |mut b| {
                b.extend_from_slice(&[0, 1]);
                b
            },
            10,
        ),
    ];
    for (name, damage, offset) in damages {
        let dir = tempfile::tempdir().expect("tempdir");
        populated(dir.path(), 10);
        regroup(dir.path(), 5);
        common::discard_snapshot(dir.path());
        let value = chunk(dir.path(), 5);
        set_chunk(dir.path(), 5, Some(&damage(value)));
        assert_fails_at(dir.path(), offset, name);
    }
}

#[test]
fn damage_in_the_tail_after_a_snapshot_is_found_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = common::runtime();
    let config = common::config(dir.path(), 1_000_000);
    let store = common::open(config.clone());
    let (users, conv) = common::users_and_group(&rt, &store, &["ana", "bo"]);
    for i in 0..5 {
        common::submit(&rt, &store, common::post(users[0], conv, "before", None, i)).expect("post");
    }
    let at_snapshot = store.state().next_offset;
    // The snapshot close() writes covers offsets 0..8 ...
    common::close(store);
    let store = common::open(config);
    for i in 0..5 {
        common::submit(&rt, &store, common::post(users[1], conv, "after", None, i)).expect("post");
    }
    // ... and a store dropped without close() writes none: 8..13 is the tail.
    drop(store);
    let tail_offset = at_snapshot + 2;
    let bytes = entry_bytes(dir.path(), tail_offset);
    put_raw(dir.path(), tail_offset, &bytes[..bytes.len() - 3]);
    assert_fails_at(dir.path(), tail_offset, "truncated tail entry");
}

/// The latest snapshot file of the closed store in `dir`.
fn snapshot_file(dir: &Path) -> std::path::PathBuf {
    common::retry_lock(|| snapshot::latest_file(dir))
        .expect("read the snapshot's commit")
        .expect("a snapshot file written by close()")
}

/// The state in the latest snapshot file of the closed store in `dir`.
fn stored_state(dir: &Path) -> Vec<u8> {
    common::retry_lock(|| snapshot::stored_state(dir)).expect("read the state")
}

/// Opening the store in `dir` fails with an error holding `needle` and
/// telling to run `vato-admin rebuild`.
fn assert_refused(dir: &Path, needle: &str, what: &str) {
    let opened = common::retry_lock(|| Store::open(common::config(dir, 1_000_000)));
    let error = opened.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        error.contains(needle) && error.contains("vato-admin rebuild"),
        "{what}: {error:?}"
    );
}

/// The store in `dir` opens and holds `expected`.
fn assert_opens_with(dir: &Path, expected: &State, what: &str) {
    let store = common::open(common::config(dir, 1_000_000));
    assert!(*store.state() == *expected, "{what}");
    common::close(store);
}

#[test]
fn a_damaged_snapshot_is_refused_naming_its_file_and_rebuild_restores_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let expected = populated(dir.path(), 40);
    let file = snapshot_file(dir.path());
    let good = std::fs::read(&file).expect("read the snapshot file");

    let damaged: Vec<(&str, Option<Vec<u8>>)> = vec![
        ("missing", None),
        ("empty", Some(Vec::new())),
        ("truncated", Some(good[..good.len() / 2].to_vec())),
        ("one byte short", Some(good[..good.len() - 1].to_vec())),
        (
            "flipped byte",
            Some({
                let mut b = good.clone();
                let i = b.len() / 3;
                b[i] ^= 0xFF;
                b
            }),
        ),
        ("garbage", Some(vec![0xAB; 4096])),
    ];
    for (name, bytes) in damaged {
        match bytes {
            Some(bytes) => std::fs::write(&file, bytes).expect("damage"),
            None => std::fs::remove_file(&file).expect("remove"),
        }
        assert_refused(
            dir.path(),
            &format!("snapshot file {} is damaged", file.display()),
            name,
        );
        // The log itself is untouched: a full replay still gives the state.
        assert!(
            common::rebuild(dir.path()).expect("rebuild") == expected,
            "{name}"
        );
    }
    // A file whose parts are whole but whose state is not a state.
    common::retry_lock(|| {
        snapshot::replace_state(dir.path(), &codec::encode(&vec![1u32, 2, 3]).unwrap())
    })
    .expect("replace the state");
    let opened = common::retry_lock(|| Store::open(common::config(dir.path(), 1_000_000)));
    let error = opened.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        error.contains("is damaged (state: "),
        "not a state: {error:?}"
    );

    // `vato-admin rebuild` makes the tree and the file again from the log.
    {
        let log = common::retry_lock(|| Log::open(dir.path())).expect("open log");
        let rebuilt = vato_eventlog::store::rebuild_history(&log).expect("rebuild history");
        assert!(rebuilt.detached() == expected, "rebuilt history");
    }
    let store = common::open(common::config(dir.path(), 1_000_000));
    assert!(
        *store.state() == expected,
        "the store opens on the rebuilt tree"
    );
    common::close(store);

    // A snapshot "ahead" of the log (say, restored from another machine's
    // backup) is not trusted: the history is made again by a full replay.
    let mut ahead = expected.clone();
    ahead.next_offset += 1000;
    common::retry_lock(|| {
        snapshot::replace_state(dir.path(), &codec::encode(&ahead).expect("encode"))
    })
    .expect("replace the state");
    let store = common::open(common::config(dir.path(), 1_000_000));
    assert!(
        *store.state() == expected,
        "ahead of the log: the same state, replayed"
    );
    common::close(store);
}

/// A damaged or missing records file (`history.redb`) is refused with an
/// error naming it; `vato-admin rebuild` makes it again from the log.
#[test]
fn a_damaged_records_file_is_refused_naming_it_and_rebuild_restores_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let expected = populated(dir.path(), 40);
    let file = dir
        .path()
        .join(vato_eventlog::state::history::records::FILE);
    let good = std::fs::read(&file).expect("read the records file");
    let damaged: Vec<(&str, Option<Vec<u8>>)> = vec![
        // Opening on an empty file in its place would lose the history.
        ("missing", None),
        ("garbage", Some(vec![0xAB; 4096])),
        ("truncated header", Some(good[..100].to_vec())),
        (
            "header zeroed",
            Some({
                let mut b = good.clone();
                b[..512].fill(0);
                b
            }),
        ),
    ];
    for (name, bytes) in damaged {
        match bytes {
            Some(bytes) => std::fs::write(&file, bytes).expect("damage"),
            None => std::fs::remove_file(&file).expect("remove"),
        }
        assert_refused(dir.path(), &file.display().to_string(), name);
        {
            let log = common::retry_lock(|| Log::open(dir.path())).expect("open log");
            let rebuilt = vato_eventlog::store::rebuild_history(&log).expect("rebuild history");
            assert!(rebuilt.detached() == expected, "{name}: rebuilt history");
        }
        assert_opens_with(dir.path(), &expected, name);
    }
}

/// A damaged index file (`log-index.redb`) is refused with an error
/// naming it; `vato-admin rebuild` (`Log::open_reindexing`) makes it again
/// from the log's chunks, which it only reads.
#[test]
fn a_damaged_index_file_is_refused_naming_it_and_rebuild_restores_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let expected = populated(dir.path(), 40);
    let file = dir.path().join(log::INDEX_FILE);
    let conv = *expected
        .conversations
        .keys()
        .next()
        .expect("a conversation");
    let pages = |log: &Log| {
        (
            log.conv_after(conv, 0, usize::MAX).expect("conv_after"),
            log.conv_before(conv, u64::MAX, usize::MAX)
                .expect("conv_before"),
        )
    };
    let before = {
        let log = common::retry_lock(|| Log::open(dir.path())).expect("open log");
        pages(&log)
    };
    assert!(
        before.0.len() >= 40,
        "the conversation's events are indexed: {}",
        before.0.len()
    );
    std::fs::write(&file, vec![0xAB; 4096]).expect("damage");
    assert_refused(dir.path(), &file.display().to_string(), "index");
    {
        let log = common::retry_lock(|| Log::open_reindexing(dir.path())).expect("reindex");
        assert!(pages(&log) == before, "the index made again");
    }
    assert_opens_with(dir.path(), &expected, "opens on the new index");
}

/// What a creation or a removal of a table's file killed half-way leaves
/// (`<file>.new`, `<file>.removed`: the file takes its name only once
/// redb has made it whole, and loses it before it is shrunk) is never
/// opened as the file, and the next open removes it.
#[test]
fn a_table_file_half_made_or_half_removed_is_not_opened_as_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let expected = populated(dir.path(), 40);
    let index = dir.path().join(log::INDEX_FILE);
    let records = dir
        .path()
        .join(vato_eventlog::state::history::records::FILE);
    let beside = |file: &Path, suffix: &str| {
        let mut name = file.as_os_str().to_os_string();
        name.push(suffix);
        std::path::PathBuf::from(name)
    };
    let leftovers = [
        beside(&index, ".new"),
        beside(&index, ".removed"),
        beside(&records, ".new"),
        beside(&records, ".removed"),
    ];
    // The index killed while it was made (no file under its name yet),
    // the records with a removal's leftover beside them.
    std::fs::remove_file(&index).expect("remove the index");
    for leftover in &leftovers {
        std::fs::write(leftover, vec![0xAB; 4096]).expect("leftover");
    }
    assert_opens_with(dir.path(), &expected, "opens beside the leftovers");
    for leftover in &leftovers {
        assert!(!leftover.exists(), "{} removed", leftover.display());
    }
    assert!(index.exists(), "the index made again");

    // A removal killed after the rename: the name is free, the next
    // removal (a rebuild's) finishes it.
    std::fs::rename(&index, beside(&index, ".removed")).expect("rename");
    {
        let log = common::retry_lock(|| Log::open_reindexing(dir.path())).expect("reopen");
        drop(log);
    }
    assert!(!beside(&index, ".removed").exists());
    assert_opens_with(dir.path(), &expected, "opens on the index made again");
}

/// A damaged commit in the snapshot tree (the layout before: the file's
/// generation) is refused naming the tree; so is a tree that says the
/// state is in the records' file when it is not.
#[test]
fn a_damaged_snapshot_commit_is_refused_naming_its_tree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let expected = populated(dir.path(), 10);
    common::retry_lock(|| snapshot::to_file_layout(dir.path(), false)).expect("file layout");
    {
        let log = common::retry_lock(|| Log::open(dir.path())).expect("open log");
        let tree = log.sled().open_tree(snapshot::SNAPSHOT_TREE).expect("tree");
        tree.insert(snapshot::FILE_KEY, &[1u8, 2, 3][..])
            .expect("insert");
        log.sync().expect("sync");
    }
    assert_refused(
        dir.path(),
        &format!("history tree `{}` is damaged", snapshot::SNAPSHOT_TREE),
        "commit",
    );
    {
        let log = common::retry_lock(|| Log::open(dir.path())).expect("open log");
        vato_eventlog::store::rebuild_history(&log).expect("rebuild history");
    }
    assert_opens_with(dir.path(), &expected, "rebuilt");

    // A commit in the records' file that is not a generation, and none
    // where sled's tree says there is one: refused, not replayed into an
    // empty history.
    let file = dir
        .path()
        .join(vato_eventlog::state::history::records::FILE);
    let commit = |value: Option<&[u8]>| {
        let log = common::retry_lock(|| Log::open(dir.path())).expect("open log");
        let trees = snapshot::trees(&log).expect("trees");
        trees
            .records
            .write_both(true, |_, side| {
                match value {
                    Some(value) => side.insert(snapshot::FILE_KEY, value).map(|_| ()),
                    None => side.remove(snapshot::FILE_KEY).map(|_| ()),
                }
                .map_err(|e| trees.records.error(e))
            })
            .expect("write the commit");
    };
    commit(Some(&[1u8, 2, 3][..]));
    assert_refused(
        dir.path(),
        &format!("commit in {} is damaged (a file generation", file.display()),
        "a damaged commit",
    );
    commit(None);
    assert_refused(
        dir.path(),
        &format!("commit in {} is damaged (no commit", file.display()),
        "no commit",
    );
    {
        let log = common::retry_lock(|| Log::open(dir.path())).expect("open log");
        vato_eventlog::store::rebuild_history(&log).expect("rebuild history");
    }
    assert_opens_with(dir.path(), &expected, "rebuilt again");
}

/// The first layout of issue 12 kept the snapshot's state (and a pending
/// layer) among the records in the `history` tree, the second as values
/// of the snapshot tree; an open reads either and serves the same state,
/// and the next snapshot commits it in the records' file and drops the
/// old values.
#[test]
fn a_snapshot_of_an_earlier_layout_is_read_and_replaced() {
    for layout in [snapshot::TREE, snapshot::SNAPSHOT_TREE] {
        let dir = tempfile::tempdir().expect("tempdir");
        let expected = populated(dir.path(), 30);
        let offset = expected.next_offset;
        let state = stored_state(dir.path());
        // Out of the records' file (into a file, removed below).
        common::retry_lock(|| snapshot::to_file_layout(dir.path(), false)).expect("move");
        {
            let log = common::retry_lock(|| Log::open(dir.path())).expect("open log");
            let own = log
                .sled()
                .open_tree(snapshot::SNAPSHOT_TREE)
                .expect("snapshot");
            own.clear().expect("clear");
            let tree = log.sled().open_tree(layout).expect("tree");
            tree.insert(snapshot::STATE_KEY, state).expect("insert");
            log.sync().expect("sync");
        }
        std::fs::remove_dir_all(dir.path().join(snapshot::file::DIR)).expect("remove files");
        assert_eq!(
            common::retry_lock(|| snapshot::stored_offset(dir.path())).expect("offset"),
            Some(offset),
            "{layout}: the state is found where that layout kept it"
        );
        let store = common::open(common::config(dir.path(), 1_000_000));
        assert!(*store.state() == expected, "{layout}: the same state");
        common::close(store);
        let log = common::retry_lock(|| Log::open(dir.path())).expect("open log");
        for name in [snapshot::TREE, snapshot::SNAPSHOT_TREE] {
            let tree = log.sled().open_tree(name).expect("tree");
            assert!(
                tree.get(snapshot::STATE_KEY).expect("read").is_none(),
                "{layout}: no state left in {name}"
            );
        }
        let records = snapshot::trees(&log).expect("trees").records;
        assert!(
            records.get(snapshot::STATE_KEY).expect("read").is_none(),
            "{layout}: no state left among the records"
        );
        drop(records);
        drop(log);
        assert!(
            !stored_state(dir.path()).is_empty(),
            "{layout}: in the records' file"
        );
        assert_eq!(
            common::retry_lock(|| snapshot::stored_offset(dir.path())).expect("offset"),
            Some(offset),
            "{layout}"
        );
        let store = common::open(common::config(dir.path(), 1_000_000));
        assert!(*store.state() == expected, "{layout}: the same state");
        common::close(store);
    }
}
