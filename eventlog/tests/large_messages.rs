//! Large messages. 4096 characters is the contract's limit (up to 16 KiB of
//! UTF-8): a batch of them spans several chunks (a chunk closes at 64 KiB).
//! Bigger ones (the log itself has no limit) make sled store the leaf that
//! holds them as a separate blob file (above a quarter of its 8 MiB
//! segment): another write and read path, and one sled never fsyncs
//! (`Log::sync` does). All must read back, replay and survive a restart
//! like small ones. (`crash.rs` kills a writer of 16 KiB messages.)

mod common;

use vato_eventlog::{Event, Reply};

#[test]
fn messages_at_the_size_limit_and_beyond_survive_replay_and_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = common::runtime();
    let config = common::config(dir.path(), 1_000_000);
    let store = common::open(config.clone());
    let (users, conv) = common::users_and_group(&rt, &store, &["ana", "bo"]);
    // 4096 four-byte characters (16 KiB) each, some four times that, and
    // two of 2.5 MiB, past sled's blob threshold.
    let contents: Vec<String> = (0..40)
        .map(|i| {
            "😀".repeat(match i {
                10 | 30 => 655_360,
                i if i % 4 == 0 => 16_384,
                _ => 4096,
            })
        })
        .collect();
    // One at a time (a batch each), ...
    for (i, content) in contents.iter().enumerate() {
        common::submit(
            &rt,
            &store,
            common::post(users[i % 2], conv, content, None, i as i64),
        )
        .expect("post");
    }
    // ... then all queued before the first answer, so that the writer
    // takes many per batch.
    rt.block_on(async {
        let mut answers = Vec::new();
        for (i, content) in contents.iter().enumerate() {
            let command = common::post(users[i % 2], conv, content, None, 100 + i as i64);
            answers.push(store.enqueue(command, None).await.expect("enqueue"));
        }
        for answer in answers {
            let applied = answer.await.expect("answer").expect("store").expect("post");
            assert!(matches!(applied.reply, Reply::Message { .. }));
        }
    });
    let live = store.state().detached();
    // Closing projects every batch into sled (the projector does it up to
    // 100 ms after the acknowledgement otherwise).
    common::close(store);
    let blobs = std::fs::read_dir(dir.path().join("sled").join("blobs"))
        .expect("blobs dir")
        .count();
    assert!(
        blobs > 0,
        "expected sled to use blob files for 2.5 MiB messages"
    );
    assert!(common::rebuild(dir.path()).expect("rebuild") == live);
    let store = common::open(config);
    assert!(*store.state() == live);
    let events = store.conv_after(conv, 0, usize::MAX).expect("conv_after");
    let read_back: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::MessagePosted { content, .. } => Some(content.as_str()),
            _ => None,
        })
        .collect();
    let expected: Vec<&str> = contents
        .iter()
        .chain(&contents)
        .map(String::as_str)
        .collect();
    assert!(read_back == expected, "contents differ after a restart");
    common::close(store);
}
