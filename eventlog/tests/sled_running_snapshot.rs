//! The vendored sled's snapshot of its page table written while the
//! database runs (`Tree::write_page_table_snapshot`, vendor/sled/VATO.md,
//! the thirteenth change): the next open replays the log only from it.
//! Written while other threads insert, remove and apply batches, it must
//! leave a database that opens to exactly what was made durable, after a
//! clean close and after SIGKILL at any moment.
//!
//! The SIGKILL trials run this test binary again as the writing process
//! (the `child` test below, which does nothing unless the parent set
//! `VATO_SLED_CHILD_DIR`).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHILD_DIR: &str = "VATO_SLED_CHILD_DIR";
/// Every `REMOVED_EVERY`-th key is removed again `REMOVED_AFTER` ops later
/// (pages empty and merge); every `BATCH_EVERY`-th op is a batch of two
/// keys that must be there together or not at all.
const REMOVED_EVERY: u64 = 7;
const REMOVED_AFTER: u64 = 300;
const BATCH_EVERY: u64 = 3;
/// The child flushes (and reports) every so many ops.
const ACK_EVERY: u64 = 40;

fn open(dir: &Path) -> sled::Db {
    for _ in 0..200 {
        // Small segments and a small cache: segments are reused and pages
        // paged out while the snapshot walks the table.
        match sled::Config::new()
            .path(dir)
            .segment_size(64 << 10)
            .cache_capacity(256 << 10)
            .flush_every_ms(None)
            .open()
        {
            Ok(db) => return db,
            Err(e) if e.to_string().contains("could not acquire lock") => {
                std::thread::sleep(Duration::from_millis(25))
            }
            Err(e) => panic!("open: {e:?}"),
        }
    }
    panic!("the database stayed locked");
}

fn key(prefix: &str, i: u64) -> Vec<u8> {
    format!("{prefix}/{i:012}").into_bytes()
}

fn value(i: u64) -> Vec<u8> {
    // sizes from 8 bytes to a few KiB, so that leaves split at both rules
    let len = 8 + (i * 37 % 61) as usize * if i.is_multiple_of(50) { 100 } else { 1 };
    vec![(i % 251) as u8; len]
}

/// One op of the writer: `i` in order from 0.
fn write_op(db: &sled::Db, i: u64) {
    if i.is_multiple_of(BATCH_EVERY) {
        let mut batch = sled::Batch::default();
        batch.insert(key("a", i), value(i));
        batch.insert(key("b", i), value(i));
        db.apply_batch(batch).unwrap();
    } else {
        db.insert(key("k", i), value(i)).unwrap();
    }
    if i >= REMOVED_AFTER && (i - REMOVED_AFTER).is_multiple_of(REMOVED_EVERY) {
        let gone = i - REMOVED_AFTER;
        if !gone.is_multiple_of(BATCH_EVERY) {
            db.remove(key("k", gone)).unwrap();
        }
    }
}

/// Checks what a reopened database holds: every op up to `acked` (made
/// durable before it was reported) is there, removals included; ops after
/// it may or may not be, but batches are whole; nothing else is there.
fn check(db: &sled::Db, acked: Option<u64>) {
    for item in db.iter() {
        let (k, v) = item.expect("the tree reads back");
        if &k[..] == b"next" {
            continue;
        }
        let text = std::str::from_utf8(&k).unwrap();
        let (prefix, i) = text.split_once('/').unwrap();
        let i: u64 = i.parse().unwrap();
        assert_eq!(&v[..], &value(i)[..], "value of {text}");
        match prefix {
            "a" => assert!(
                db.get(key("b", i)).unwrap().is_some(),
                "batch {i}: a without b"
            ),
            "b" => assert!(
                db.get(key("a", i)).unwrap().is_some(),
                "batch {i}: b without a"
            ),
            "k" => {}
            other => panic!("unexpected key prefix {other}"),
        }
    }
    let Some(acked) = acked else { return };
    for i in 0..=acked {
        let removed_by_ack =
            i % REMOVED_EVERY == 0 && i % BATCH_EVERY != 0 && i + REMOVED_AFTER <= acked;
        let removal_may_have_run = i % REMOVED_EVERY == 0 && i % BATCH_EVERY != 0;
        if i % BATCH_EVERY == 0 {
            assert!(
                db.get(key("a", i)).unwrap().is_some(),
                "acked batch {i} lost"
            );
        } else if removed_by_ack {
            assert!(
                db.get(key("k", i)).unwrap().is_none(),
                "acked removal of {i} lost"
            );
        } else if !removal_may_have_run {
            assert!(
                db.get(key("k", i)).unwrap().is_some(),
                "acked insert {i} lost"
            );
        }
    }
}

#[test]
fn snapshots_taken_while_writing_reopen_to_everything_written() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(dir.path());
        db.insert(key("k", 1), value(1)).unwrap();
        db.flush().unwrap();
    }
    // This open replays the first one's writes and writes its snapshot.
    let db = Arc::new(open(dir.path()));
    let at_open = common::sled_snapshot_files(dir.path());
    assert_eq!(at_open.len(), 1, "{at_open:?}");
    let stop = Arc::new(AtomicBool::new(false));
    let snapshotter = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut written = 0;
            while !stop.load(Ordering::SeqCst) {
                if db.write_page_table_snapshot(true).unwrap() {
                    written += 1;
                }
            }
            written
        })
    };
    let mut last = 0;
    for i in 0..20_000 {
        write_op(&db, i);
        last = i;
    }
    stop.store(true, Ordering::SeqCst);
    let written = snapshotter.join().unwrap();
    assert!(written >= 2, "only {written} snapshots were written");
    db.flush().unwrap();
    assert!(
        db.write_page_table_snapshot(true).unwrap(),
        "one more after the flush"
    );
    assert!(
        !db.write_page_table_snapshot(true).unwrap(),
        "nothing was written since: no snapshot"
    );
    let running = common::sled_snapshot_files(dir.path());
    assert_eq!(running.len(), 1, "older snapshots removed: {running:?}");
    assert!(
        running[0] > at_open[0],
        "{running:?} is newer than {at_open:?}"
    );

    // Unforced, one waits until the log has grown by four times the last
    // one's size.
    let size = std::fs::metadata(dir.path().join(&running[0]))
        .unwrap()
        .len();
    write_op(&db, last + 1);
    db.flush().unwrap();
    assert!(
        !db.write_page_table_snapshot(false).unwrap(),
        "one op since: not yet"
    );
    let before = db.size_on_disk().unwrap();
    last += 1;
    while db.size_on_disk().unwrap() < before + 5 * size {
        last += 1;
        write_op(&db, last);
    }
    db.flush().unwrap();
    assert!(
        db.write_page_table_snapshot(false).unwrap(),
        "the log grew: written"
    );
    drop(db);

    for _ in 0..2 {
        let db = open(dir.path());
        check(&db, Some(last));
    }
}

/// The child: writes until killed; after each flush prints `ACK <i>`.
/// Another thread writes page-table snapshots all the while.
#[test]
fn child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let db = Arc::new(open(Path::new(&dir)));
    let start = db
        .get(b"next")
        .unwrap()
        .map_or(0, |v| u64::from_be_bytes(v.as_ref().try_into().unwrap()));
    {
        let db = db.clone();
        std::thread::spawn(move || loop {
            db.write_page_table_snapshot(true).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        });
    }
    let mut stdout = std::io::stdout();
    for i in start.. {
        write_op(&db, i);
        if i % ACK_EVERY == 0 {
            db.insert(b"next", &(i + 1).to_be_bytes()).unwrap();
            db.flush().unwrap();
            stdout.write_all(format!("ACK {i}\n").as_bytes()).unwrap();
            stdout.flush().unwrap();
        }
    }
}

#[test]
fn snapshots_taken_while_writing_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked: Option<u64> = None;
    for trial in 0..12u64 {
        let mut child = Command::new(&exe)
            .args(["--exact", "child", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let run_for = Duration::from_millis(200 + trial * 97 % 600);
        let started = Instant::now();
        let mut acks = 0;
        while started.elapsed() < run_for {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(i) = line.strip_prefix("ACK ") {
                        acked = Some(i.parse().unwrap());
                        acks += 1;
                    }
                }
                _ => panic!("the child stopped by itself"),
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(acks > 0, "trial {trial}: the child acknowledged nothing");
        let db = open(dir.path());
        check(&db, acked);
    }
}
