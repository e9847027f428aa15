//! A retry with the same (sender, conversation, client_id) yields the one
//! original message: sequentially, across restarts, and when the copies
//! arrive together in one group commit.

mod common;

use std::time::Duration;

use common::message_id;
use vato_eventlog::Event;

/// The MessagePosted events in the log carrying `client_id`.
fn posted_with(store: &vato_eventlog::Store, client_id: &str) -> usize {
    store
        .log()
        .read_from(0)
        .map(|e| e.expect("log read"))
        .filter(|e| matches!(&e.event, Event::MessagePosted { client_id: Some(c), .. } if c == client_id))
        .count()
}

#[test]
fn a_retry_returns_the_original_message_even_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = common::runtime();
    let config = common::config(dir.path(), 1_000_000);
    let store = common::open(config.clone());
    let (users, conv) = common::users_and_group(&rt, &store, &["ana", "bo"]);
    let (ana, bo) = (users[0], users[1]);

    let first =
        common::submit(&rt, &store, common::post(ana, conv, "hi", Some("k1"), 10)).expect("post");
    let (id, created) = message_id(&first.reply);
    assert!(created);
    // The message, and bo's notification (he is offline).
    assert_eq!(posts(&first), 1);
    assert_eq!(first.events().len(), 2);

    // Same key, even with other content: the original, nothing appended.
    let before = store.state().detached();
    let retry = common::submit(
        &rt,
        &store,
        common::post(ana, conv, "hi (edited?)", Some("k1"), 11),
    )
    .expect("retry");
    assert_eq!(message_id(&retry.reply), (id, false));
    assert!(retry.events().is_empty());
    assert!(*store.state() == before);

    // The key is per sender: bo's "k1" is another message. No key, no dedup.
    let other =
        common::submit(&rt, &store, common::post(bo, conv, "hi", Some("k1"), 12)).expect("post");
    assert!(message_id(&other.reply).1);
    for at in [13, 14] {
        let unkeyed =
            common::submit(&rt, &store, common::post(ana, conv, "hi", None, at)).expect("post");
        assert!(message_id(&unkeyed.reply).1);
    }

    // After a clean restart (snapshot) ...
    common::close(store);
    let store = common::open(config.clone());
    let retry =
        common::submit(&rt, &store, common::post(ana, conv, "hi", Some("k1"), 20)).expect("retry");
    assert_eq!(message_id(&retry.reply), (id, false));
    assert!(retry.events().is_empty());
    // ... and after one that replays the whole log (no snapshot).
    common::close(store);
    common::discard_snapshot(dir.path());
    let store = common::open(config);
    let retry =
        common::submit(&rt, &store, common::post(ana, conv, "hi", Some("k1"), 21)).expect("retry");
    assert_eq!(message_id(&retry.reply), (id, false));
    assert_eq!(posted_with(&store, "k1"), 2, "one for ana, one for bo");
    assert_eq!(
        store.state().message_ids(conv, 0..u64::MAX, false).count(),
        4
    );
    common::close(store);
}

#[test]
fn concurrent_copies_in_one_batch_make_one_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = common::runtime();
    let store = common::open(common::config(dir.path(), 1_000_000));
    let (users, conv) = common::users_and_group(&rt, &store, &["ana", "bo"]);

    // Worker threads run the submitters while this thread holds the lock.
    let workers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let copies = 32;
    // Hold a read lock so the writer, once it has taken its next batch (the
    // unrelated post), blocks before deciding it; meanwhile every copy
    // queues up, and the batch after that holds all of them.
    let guard = store.state();
    let blocker = {
        let (store, post) = (
            store.clone(),
            common::post(users[1], conv, "unrelated", None, 1),
        );
        workers.spawn(async move { store.submit(post).await })
    };
    std::thread::sleep(Duration::from_millis(50));
    let handles: Vec<_> = (0..copies)
        .map(|i| {
            let store = store.clone();
            let post = common::post(users[0], conv, "once", Some("dup"), 100 + i);
            workers.spawn(async move { store.submit(post).await })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    drop(guard);
    let replies = workers.block_on(async {
        blocker
            .await
            .expect("task")
            .expect("storage")
            .expect("post");
        let mut replies = Vec::new();
        for handle in handles {
            replies.push(handle.await.expect("task").expect("storage").expect("post"));
        }
        replies
    });

    let created: Vec<_> = replies.iter().filter(|a| message_id(&a.reply).1).collect();
    assert_eq!(created.len(), 1, "exactly one copy creates the message");
    let id = message_id(&created[0].reply).0;
    assert!(
        replies.iter().all(|a| message_id(&a.reply).0 == id),
        "all copies name one message"
    );
    assert_eq!(replies.iter().map(posts).sum::<usize>(), 1);
    assert_eq!(posted_with(&store, "dup"), 1);
    common::close(store);
}

/// How many messages an answer's events posted.
fn posts(applied: &vato_eventlog::Applied) -> usize {
    applied
        .events()
        .iter()
        .filter(|e| matches!(e.event, vato_eventlog::Event::MessagePosted { .. }))
        .count()
}
