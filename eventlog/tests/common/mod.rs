//! Helpers shared by the integration tests: a runtime, opening and closing a
//! store on disk, and terse command builders.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::Path;
use std::time::{Duration, Instant};

use vato_eventlog::{Applied, Command, ConvId, Rejection, Reply, Store, StoreConfig, UserId};

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

pub fn config(dir: &Path, snapshot_every: u64) -> StoreConfig {
    let mut config = StoreConfig::new(dir);
    config.snapshot_every = snapshot_every;
    config
}

/// Runs `attempt` again while it fails on sled's file lock. sled 0.34
/// releases the lock only when its last internal reference goes, which can
/// be a few milliseconds after the `Db` (or a `Store` dropped without
/// `close()`, whose writer thread exits on its own) is dropped.
pub fn retry_lock<T, E: std::fmt::Display>(
    mut attempt: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match attempt() {
            Err(e)
                if Instant::now() < deadline
                    && e.to_string().contains("could not acquire lock") =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            result => return result,
        }
    }
}

/// Opens the store (fan-out receiver dropped: nobody reads it here).
pub fn open(config: StoreConfig) -> Store {
    match retry_lock(|| Store::open(config.clone())) {
        Ok((store, _committed)) => store,
        Err(e) => panic!("Store::open failed: {e}"),
    }
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

pub fn register(name: &str, at: i64) -> Command {
    Command::Register {
        username: name.to_string(),
        password_hash: format!("$argon2id$fake${name}"),
        email: format!("{name}@example.com"),
        display_name: name.to_uppercase(),
        phone_number: None,
        at,
    }
}

pub fn group(by: UserId, members: &[UserId], at: i64) -> Command {
    Command::CreateGroup {
        by,
        title: "group".to_string(),
        description: String::new(),
        is_public: false,
        member_ids: members.to_vec(),
        at,
    }
}

pub fn post(
    sender: UserId,
    conv_id: ConvId,
    content: &str,
    client_id: Option<&str>,
    at: i64,
) -> Command {
    Command::PostMessage {
        sender,
        conv_id,
        content: content.to_string(),
        message_type: "text".to_string(),
        reply_to: None,
        forwarded_from: None,
        client_id: client_id.map(str::to_string),
        at,
    }
}

pub fn user_id(reply: &Reply) -> UserId {
    match reply {
        Reply::User(id) => *id,
        other => panic!("expected a user, got {other:?}"),
    }
}

pub fn conv_id(reply: &Reply) -> ConvId {
    match reply {
        Reply::Conversation { conv_id, .. } => *conv_id,
        other => panic!("expected a conversation, got {other:?}"),
    }
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
