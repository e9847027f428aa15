//! The snapshot's state file: written private, only the latest kept, a
//! stray one removed, committed with the records in the records' file; a
//! file of the layout before read and replaced, and its layer written at
//! the next open when a crash left it unwritten.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use vato_eventlog::log::Log;
use vato_eventlog::{snapshot, State};

/// A closed store with `messages` messages, snapshotting every
/// `snapshot_every` events; returns its state.
fn populated(dir: &Path, messages: usize, snapshot_every: u64) -> State {
    let rt = common::runtime();
    let store = common::open(common::config(dir, snapshot_every));
    let (users, conv) = common::users_and_group(&rt, &store, &["ana", "bo"]);
    for i in 0..messages {
        let text = format!("message {i}");
        let post = common::post(users[i % 2], conv, &text, None, 10 + i as i64);
        common::submit(&rt, &store, post).expect("post");
    }
    let state = store.state().detached();
    common::close(store);
    state
}

fn snapshot_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join(snapshot::file::DIR))
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

/// The keys of the closed store in `dir`'s snapshot tree.
fn snapshot_tree_keys(dir: &Path) -> Vec<Vec<u8>> {
    let log = common::retry_lock(|| Log::open(dir)).expect("open log");
    let own = log.sled().open_tree(snapshot::SNAPSHOT_TREE).expect("tree");
    own.iter()
        .keys()
        .map(|k| k.expect("key").to_vec())
        .collect()
}

/// The records in `dir`'s `history.redb` (the store closed).
fn records(dir: &Path) -> u64 {
    let log = common::retry_lock(|| Log::open(dir)).expect("open log");
    let trees = snapshot::trees(&log).expect("trees");
    trees.records.len().expect("count")
}

#[test]
fn the_state_file_is_private_only_the_latest_is_kept_and_the_records_commit_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let expected = populated(dir.path(), 60, 10);
    let latest = common::retry_lock(|| snapshot::latest_file(dir.path()))
        .expect("read")
        .expect("a file");
    let name = latest.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(snapshot_files(dir.path()), vec![name.clone()]);
    assert!(
        name.as_str() > "00000000000000000001.snap",
        "several snapshots"
    );
    assert_eq!(mode(&latest), 0o600);
    assert_eq!(mode(&dir.path().join(snapshot::file::DIR)), 0o700);
    assert_eq!(
        snapshot_tree_keys(dir.path()),
        vec![snapshot::IN_RECORDS_KEY.to_vec()],
        "sled's tree only says where the commit is"
    );
    assert!(records(dir.path()) >= 60, "the messages are records");
    let file_bytes = std::fs::metadata(&latest).expect("stat").len();
    let state_bytes = common::retry_lock(|| snapshot::stored_state(dir.path()))
        .expect("state")
        .len() as u64;
    assert_eq!(
        file_bytes,
        24 + state_bytes,
        "the file holds the state alone"
    );

    // A snapshot killed before its commit leaves a file nobody names.
    let files = dir.path().join(snapshot::file::DIR);
    std::fs::write(files.join("00000000000000009999.snap"), b"torn").expect("stray");
    std::fs::write(files.join("notes.txt"), b"not ours").expect("other");
    let store = common::open(common::config(dir.path(), 1_000_000));
    assert!(*store.state() == expected, "the same state");
    assert_eq!(snapshot_files(dir.path()), vec![name, "notes.txt".into()]);
    common::close(store);
}

/// A directory of the layout before (the file holding the layer too,
/// committed in the snapshot tree) opens on that file; the next snapshot
/// commits in the records' file and removes the old file.
#[test]
fn a_snapshot_file_of_the_layout_before_is_read_and_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let expected = populated(dir.path(), 60, 10);
    let file = common::retry_lock(|| snapshot::to_file_layout(dir.path(), false)).expect("file");
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(
        snapshot_tree_keys(dir.path()),
        vec![
            snapshot::LAYER_DONE_KEY.to_vec(),
            snapshot::FILE_KEY.to_vec()
        ]
    );

    let store = common::open(common::config(dir.path(), 1_000_000));
    assert!(*store.state() == expected, "the same state, from the file");
    assert_eq!(snapshot_files(dir.path()), vec![name.clone()]);
    common::close(store);

    let now = snapshot_files(dir.path());
    assert_eq!(now.len(), 1, "{now:?}");
    assert!(now[0] > name, "a newer file: {now:?}");
    assert_eq!(
        snapshot_tree_keys(dir.path()),
        vec![snapshot::IN_RECORDS_KEY.to_vec()],
        "the old commit is gone"
    );
    let store = common::open(common::config(dir.path(), 1_000_000));
    assert!(
        *store.state() == expected,
        "the same state, committed in the records"
    );
    common::close(store);
}

/// The layout before could crash between the file's commit and its
/// layer's records: the next open writes them from the file.
#[test]
fn a_file_layer_not_marked_written_is_written_at_the_next_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    // One snapshot (close's): its layer is the whole history.
    let expected = populated(dir.path(), 40, 1_000_000);
    common::retry_lock(|| snapshot::to_file_layout(dir.path(), true)).expect("file");
    assert_eq!(records(dir.path()), 0, "what the crash left");
    let store = common::open(common::config(dir.path(), 1_000_000));
    assert!(*store.state() == expected, "the records are written again");
    common::close(store);
    assert!(records(dir.path()) >= 40);
    let store = common::open(common::config(dir.path(), 1_000_000));
    assert!(*store.state() == expected, "committed in the records");
    common::close(store);
}

/// A snapshot changes the records only after its commit: one that fails
/// before it (here its file cannot be written) leaves them as they were.
/// Records ahead of the committed state would make the next open's replay
/// apply events against their own outcome (`snapshot`'s module doc).
#[test]
fn a_snapshot_that_fails_before_its_commit_leaves_the_records_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    populated(dir.path(), 40, 1_000_000);
    let before = records(dir.path());

    let rt = common::runtime();
    let store = common::open(common::config(dir.path(), 1_000_000));
    // No snapshot file can be written now: a file where their directory was.
    let files = dir.path().join(snapshot::file::DIR);
    let away = dir.path().join("snapshots-away");
    std::fs::rename(&files, &away).expect("move the directory away");
    std::fs::write(&files, b"not a directory").expect("block it");
    let ana = store.state().user_by_name("ana").expect("ana").id;
    let conv = store
        .state()
        .conversations_of(ana)
        .next()
        .expect("a group")
        .id;
    for i in 0..20 {
        let post = common::post(ana, conv, &format!("later {i}"), None, 200 + i);
        common::submit(&rt, &store, post).expect("post");
    }
    let expected = store.state().detached();
    assert!(
        store.close().is_err(),
        "the close's snapshot cannot be written"
    );
    drop(store);
    assert_eq!(records(dir.path()), before, "the records are as they were");

    // The directory back: the open replays the 20 messages.
    std::fs::remove_file(&files).expect("unblock");
    std::fs::rename(&away, &files).expect("move the directory back");
    let store = common::open(common::config(dir.path(), 1_000_000));
    assert!(
        *store.state() == expected,
        "the state before the failed close"
    );
    common::close(store);
    assert!(records(dir.path()) > before, "the next snapshot wrote them");
}

/// sled's snapshots of its page table (in `DATA_DIR/sled`), newest first.
fn sled_snapshots(dir: &Path) -> Vec<String> {
    let mut names = common::sled_snapshot_files(&dir.join("sled"));
    names.reverse();
    names
}

#[test]
fn each_snapshot_writes_sleds_page_table_so_an_open_replays_only_since() {
    let dir = tempfile::tempdir().expect("tempdir");
    populated(dir.path(), 10, 1_000_000);
    let rt = common::runtime();
    let store = common::open(common::config(dir.path(), 20));
    // The open wrote sled's snapshot at the log's tip.
    let at_open = sled_snapshots(dir.path());
    assert_eq!(at_open.len(), 1, "{at_open:?}");
    let (users, conv) = common::users_and_group(&rt, &store, &["cy", "dee"]);
    // Background snapshots (every 20 events) write a newer one while the
    // store runs, not only when it closes or opens, once sled's log has
    // grown (the projector makes it durable every 2 s): messages keep
    // coming until one has.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut sent = 0;
    let running = loop {
        for _ in 0..20 {
            let text = format!("m {sent}");
            let post = common::post(users[sent % 2], conv, &text, None, 100 + sent as i64);
            common::submit(&rt, &store, post).expect("post");
            sent += 1;
        }
        let now = sled_snapshots(dir.path());
        if now[0] > at_open[0] {
            break now;
        }
        assert!(std::time::Instant::now() < deadline, "still {now:?}");
        std::thread::sleep(std::time::Duration::from_millis(250));
    };
    let expected = store.state().detached();
    common::close(store);
    let closed = sled_snapshots(dir.path());
    assert!(closed[0] >= running[0], "{closed:?} after {running:?}");
    assert_eq!(closed.len(), 1, "older ones removed: {closed:?}");
    let store = common::open(common::config(dir.path(), 1_000_000));
    assert!(*store.state() == expected, "the same state");
    common::close(store);
}
