//! A busy log's writer gathers: after a group commit of `GATHER_AFTER`
//! commands or more it waits `gather_us` for more before deciding the
//! next; with `gather_us` 0 it never waits.

mod common;

use std::time::Duration;

use vato_eventlog::store::GATHER_AFTER;

#[test]
fn after_a_busy_commit_the_writer_gathers_unless_told_not_to() {
    for gather_us in [2_000_000, 0] {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = common::runtime();
        let mut config = common::config(dir.path(), 1_000_000);
        config.gather_us = gather_us;
        let store = common::open(config);
        let (users, conv) = common::users_and_group(&rt, &store, &["ana", "bo"]);
        let workers = common::workers();
        let post = |text: &str, at: i64| {
            common::spawn_submit(
                &workers,
                &store,
                common::post(users[0], conv, text, None, at),
            )
        };

        // A busy commit: GATHER_AFTER posts in one group commit.
        let busy = (0..GATHER_AFTER as i64)
            .map(|i| common::post(users[0], conv, "busy", None, 11 + i))
            .collect();
        let first = common::post(users[0], conv, "first", None, 10);
        let (first, busy) = common::submit_together(&workers, &store, first, busy);
        first.expect("post");
        let busy: Vec<_> = busy.into_iter().map(|r| r.expect("post")).collect();
        let per_post = busy[0].events().len();
        assert_eq!(busy[0].group_commit_events(), GATHER_AFTER * per_post);

        // The next post comes alone, and another 300 ms after it: gathered
        // into its commit, or committed apart.
        let alone = post("alone", 20);
        std::thread::sleep(Duration::from_millis(300));
        let later = post("later", 21);
        let (alone, later) = workers.block_on(async {
            let alone = alone.await.expect("task").expect("storage").expect("post");
            let later = later.await.expect("task").expect("storage").expect("post");
            (alone, later)
        });
        if gather_us > 0 {
            assert_eq!(alone.group_commit_events(), 2 * per_post, "gathered");
            assert_eq!(later.group_commit_events(), 2 * per_post);
        } else {
            assert_eq!(alone.group_commit_events(), per_post, "never waits");
            assert_eq!(later.group_commit_events(), per_post);
        }
        drop(workers);
        common::close(store);
    }
}
