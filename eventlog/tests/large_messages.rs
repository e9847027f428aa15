//! Large messages (4096 characters is the contract's limit: up to 16 KiB of
//! UTF-8) make sled store whole leaves as separate blob files: another
//! write and read path, and one sled never fsyncs (`Log::sync` does). They
//! must read back, replay and survive a restart like small ones.

mod common;

use vato_eventlog::Event;

#[test]
fn messages_at_the_size_limit_survive_replay_and_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = common::runtime();
    let config = common::config(dir.path(), 1_000_000);
    let store = common::open(config.clone());
    let (users, conv) = common::users_and_group(&rt, &store, &["ana", "bo"]);
    // 4096 four-byte characters (16 KiB) each, and some four times that
    // (the log itself has no limit), so that leaves grow past sled's blob
    // threshold.
    let contents: Vec<String> = (0..40)
        .map(|i| "😀".repeat(if i % 4 == 0 { 16_384 } else { 4096 }))
        .collect();
    for (i, content) in contents.iter().enumerate() {
        common::submit(
            &rt,
            &store,
            common::post(users[i % 2], conv, content, None, i as i64),
        )
        .expect("post");
    }
    let blobs = std::fs::read_dir(dir.path().join("sled").join("blobs"))
        .expect("blobs dir")
        .count();
    assert!(
        blobs > 0,
        "expected sled to use blob files for 16 KiB messages"
    );

    let live = store.state().clone();
    common::close(store);
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
    assert_eq!(
        read_back,
        contents.iter().map(String::as_str).collect::<Vec<_>>()
    );
    common::close(store);
}
