//! The snapshot's file (`snapshot::file`): written private, only the
//! latest kept, a stray one removed, and a layer whose records a crash
//! left unwritten written at the next open.

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

#[test]
fn snapshot_files_are_private_and_only_the_latest_is_kept() {
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

    // A snapshot killed before its commit leaves a file nobody names.
    let files = dir.path().join(snapshot::file::DIR);
    std::fs::write(files.join("00000000000000009999.snap"), b"torn").expect("stray");
    std::fs::write(files.join("notes.txt"), b"not ours").expect("other");
    let store = common::open(common::config(dir.path(), 1_000_000));
    assert!(*store.state() == expected, "the same state");
    assert_eq!(snapshot_files(dir.path()), vec![name, "notes.txt".into()]);
    common::close(store);
}

#[test]
fn a_layer_not_marked_written_is_written_at_the_next_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    // One snapshot (close's): its layer is the whole history.
    let expected = populated(dir.path(), 40, 1_000_000);
    {
        // What a crash between the commit and the records leaves.
        let log = common::retry_lock(|| Log::open(dir.path())).expect("open log");
        let own = log.sled().open_tree(snapshot::SNAPSHOT_TREE).expect("tree");
        own.remove(snapshot::LAYER_DONE_KEY)
            .expect("remove")
            .expect("the layer was marked written");
        log.sled()
            .open_tree(snapshot::TREE)
            .expect("tree")
            .clear()
            .expect("clear");
        log.sync().expect("sync");
    }
    let store = common::open(common::config(dir.path(), 1_000_000));
    assert!(*store.state() == expected, "the records are written again");
    drop(store);
    // Marked written now: a second open finds them without the file's layer.
    let log = common::retry_lock(|| Log::open(dir.path())).expect("open log");
    let own = log.sled().open_tree(snapshot::SNAPSHOT_TREE).expect("tree");
    assert!(own.get(snapshot::LAYER_DONE_KEY).expect("read").is_some());
}
