//! Helpers shared by the integration tests: a runtime, opening and closing a
//! store on disk. The command builders live in `vato_eventlog::testing`
//! (re-exported here), shared with the crash child and the bench.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::Path;

use vato_eventlog::{Applied, Command, ConvId, Rejection, Store, StoreConfig, StoreError, UserId};

pub use vato_eventlog::testing::*;

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Two worker threads: they run submitters while the test's own thread
/// holds the state's lock ([`submit_together`]).
pub fn workers() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

pub fn config(dir: &Path, snapshot_every: u64) -> StoreConfig {
    let mut config = StoreConfig::new(dir);
    config.snapshot_every = snapshot_every;
    config
}

/// Opens the store (fan-out receiver dropped: nobody reads it here).
pub fn open(config: StoreConfig) -> Store {
    match retry_lock(|| Store::open(config.clone())) {
        Ok((store, _committed)) => store,
        Err(e) => panic!("Store::open failed: {e}"),
    }
}

/// Drops the snapshot and history tree of the closed store in `dir`: its
/// next open replays the whole log.
pub fn discard_snapshot(dir: &Path) {
    retry_lock(|| vato_eventlog::snapshot::discard(dir)).expect("discard snapshot");
}

/// `store::rebuild`, waiting out the lock of a store just closed.
pub fn rebuild(dir: &Path) -> Result<vato_eventlog::State, vato_eventlog::StoreError> {
    retry_lock(|| vato_eventlog::store::rebuild(dir))
}

/// Closes the store (joining its writer and writing a snapshot) and releases
/// the sled lock so the directory can be reopened or rebuilt.
pub fn close(store: Store) {
    store.close().expect("close");
    drop(store);
}

/// Submits and unwraps the store-level result (a storage error fails the
/// test; a rejection is returned).
pub fn submit(
    rt: &tokio::runtime::Runtime,
    store: &Store,
    command: Command,
) -> Result<Applied, Rejection> {
    rt.block_on(store.submit(command)).expect("storage error")
}

/// Submits `command` from a task on `workers`; its answer is the task's.
pub fn spawn_submit(
    workers: &tokio::runtime::Runtime,
    store: &Store,
    command: Command,
) -> tokio::task::JoinHandle<Result<Result<Applied, Rejection>, StoreError>> {
    let store = store.clone();
    workers.spawn(async move { store.submit(command).await })
}

/// Submits `first`, then `rest` while the writer, having taken `first`,
/// waits for the state's lock, held here: `rest` queue up behind it and
/// make the next group commit, all of them. `workers` (a multi-threaded
/// runtime) runs the submitters. Returns the answers, `rest`'s in order.
pub fn submit_together(
    workers: &tokio::runtime::Runtime,
    store: &Store,
    first: Command,
    rest: Vec<Command>,
) -> (Result<Applied, Rejection>, Vec<Result<Applied, Rejection>>) {
    let submit = |command| spawn_submit(workers, store, command);
    let guard = store.state();
    let first = submit(first);
    std::thread::sleep(std::time::Duration::from_millis(50));
    let rest: Vec<_> = rest.into_iter().map(submit).collect();
    std::thread::sleep(std::time::Duration::from_millis(100));
    drop(guard);
    workers.block_on(async {
        let first = first.await.expect("task").expect("storage error");
        let mut answers = Vec::new();
        for handle in rest {
            answers.push(handle.await.expect("task").expect("storage error"));
        }
        (first, answers)
    })
}

/// Registers users `names` and creates one group of all of them, owned by
/// the first. Returns (user ids, conversation id).
pub fn users_and_group(
    rt: &tokio::runtime::Runtime,
    store: &Store,
    names: &[&str],
) -> (Vec<UserId>, ConvId) {
    let users: Vec<UserId> = names
        .iter()
        .map(|name| {
            user_id(
                &submit(rt, store, register(name, 1))
                    .expect("register")
                    .reply,
            )
        })
        .collect();
    let conv = conv_id(
        &submit(rt, store, group(users[0], &users[1..], 2))
            .expect("group")
            .reply,
    );
    (users, conv)
}

/// The names of sled's page-table snapshots (`snap.<lsn>`, and
/// `snap.<lsn>.generating` while one is written) in sled's directory
/// `dir`, oldest first.
pub fn sled_snapshot_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list sled's directory")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("snap."))
        .collect();
    names.sort();
    names
}
