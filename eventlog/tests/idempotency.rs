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
    let workers = common::workers();
    // The unrelated post is taken first; every copy queues up behind it
    // and the batch after that holds all of them.
    let copies = (0..32)
        .map(|i| common::post(users[0], conv, "once", Some("dup"), 100 + i))
        .collect();
    let unrelated = common::post(users[1], conv, "unrelated", None, 1);
    let (unrelated, replies) = common::submit_together(&workers, &store, unrelated, copies);
    unrelated.expect("post");
    let replies: Vec<_> = replies.into_iter().map(|r| r.expect("post")).collect();

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

/// Takes the answers that arrived, checking that none arrived before an
/// answer queued before it: from the last queued to the first, once one
/// has arrived, every one before it must have arrived too.
fn take_answers_in_order(
    queued: &mut [(usize, Option<vato_eventlog::store::Answer>)],
    replies: &mut [Option<(vato_eventlog::event::MessageId, bool)>],
) {
    let mut arrived_later: Option<usize> = None;
    for (i, answer) in queued.iter_mut().rev() {
        let Some(receiver) = answer.as_mut() else {
            continue;
        };
        match receiver.try_recv() {
            Ok(result) => {
                let applied = result.expect("storage").expect("post");
                replies[*i] = Some(message_id(&applied.reply));
                *answer = None;
                arrived_later.get_or_insert(*i);
            }
            Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {
                if let Some(later) = arrived_later {
                    panic!("command {later} was answered before command {i}, queued before it");
                }
            }
            Err(e) => panic!("command {i}: {e}"),
        }
    }
}

/// How many messages an answer's events posted.
fn posts(applied: &vato_eventlog::Applied) -> usize {
    applied
        .events()
        .iter()
        .filter(|e| matches!(e.event, vato_eventlog::Event::MessagePosted { .. }))
        .count()
}

/// Answers leave in the order the commands were queued, across group
/// commits and snapshots, so a repeat is never answered before its
/// original is durable. Written beside the pipelined writer tried for #18
/// (BENCHMARKS.md): a variant of it that answered a batch with nothing to
/// write at once, while the batch before it still synced, failed it.
#[test]
fn answers_leave_in_queue_order_across_group_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = common::runtime();
    let store = common::open(common::config(dir.path(), 300));
    let (users, conv) = common::users_and_group(&rt, &store, &["ana", "bo"]);
    let count = 3_000usize;
    // Commands 3k, 3k+1 and 3k+2 carry one key: an original, two repeats.
    // Rounds of originals, then their repeats a moment later, so that
    // batches of repeats alone (nothing to write) follow batches of
    // originals; the answers so far are checked after each part.
    let mut queued = Vec::new();
    let mut replies = vec![None; count];
    for round in 0..count / 30 {
        for part in 0..3 {
            for j in 0..10 {
                let i = round * 30 + j * 3 + part;
                let key = format!("k{}", i / 3);
                let post = common::post(users[0], conv, "x", Some(&key), 100 + i as i64);
                let answer = rt.block_on(store.enqueue(post, None)).expect("queued");
                queued.push((i, Some(answer)));
            }
            std::thread::sleep(Duration::from_micros(50));
            take_answers_in_order(&mut queued, &mut replies);
        }
    }
    while replies.iter().any(Option::is_none) {
        std::thread::sleep(Duration::from_micros(200));
        take_answers_in_order(&mut queued, &mut replies);
    }
    for (i, reply) in replies.iter().enumerate() {
        let (id, created) = reply.expect("answered");
        let (original, _) = replies[i - i % 3].expect("answered");
        assert_eq!(
            created,
            i % 3 == 0,
            "command {i}: only the first of three creates"
        );
        assert_eq!(id, original, "command {i} names its key's message");
    }
    assert_eq!(posted_with(&store, "k0"), 1);
    common::close(store);
}
