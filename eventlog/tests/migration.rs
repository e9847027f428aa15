//! A data directory written by the per-event layout (the log before chunks,
//! written here by `log::legacy::write`, the old code path) is migrated
//! when opened: every event, the conversation index and the stream position
//! survive, and reopening changes nothing. A migration interrupted anywhere
//! (in each intermediate state on disk, or by SIGKILL at a random moment)
//! is finished by the next open.

mod common;

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use vato_eventlog::log::{self, legacy, Log};
use vato_eventlog::{Command, ConvId, Envelope, Reply, State, UserId};

const POSITION: u64 = 777;

/// Decides and applies `command` the way the writer does, collecting the
/// events; a rejection appends nothing.
fn run(state: &mut State, events: &mut Vec<Envelope>, command: Command) -> Option<Reply> {
    state.execute(&command, events).ok()
}

/// Real events: four users, three groups and a direct conversation, then
/// `posts` messages with reads and reactions among them.
fn history(posts: usize) -> (Vec<Envelope>, State) {
    let mut state = State::default();
    let mut events = Vec::new();
    let users: Vec<UserId> = ["ana", "bo", "cy", "di"]
        .iter()
        .map(|name| {
            common::user_id(
                &run(&mut state, &mut events, common::register(name, 1)).expect("register"),
            )
        })
        .collect();
    // (conversation, a member who posts in it)
    let mut convs: Vec<(ConvId, UserId)> = (0..3)
        .map(|i| {
            let reply = run(
                &mut state,
                &mut events,
                common::group(users[i], &users[i + 1..], 2),
            );
            (common::conv_id(&reply.expect("group")), users[i])
        })
        .collect();
    let direct = common::direct(users[0], users[3], 2);
    let reply = run(&mut state, &mut events, direct).expect("direct");
    convs.push((common::conv_id(&reply), users[3]));
    extend(&mut state, &mut events, &convs, posts);
    (events, state)
}

fn extend(state: &mut State, events: &mut Vec<Envelope>, convs: &[(ConvId, UserId)], posts: usize) {
    for i in 0..posts {
        let (conv, sender) = convs[i % convs.len()];
        let at = 10 + i as i64;
        let post = common::post(sender, conv, &format!("message {i} in {conv}"), None, at);
        let Some(Reply::Message { message_id, .. }) = run(state, events, post) else {
            panic!("post {i} rejected");
        };
        if i % 7 == 0 {
            run(
                state,
                events,
                common::mark_read(sender, conv, message_id, at),
            );
        }
        if i % 11 == 0 {
            let react = common::toggle_reaction(sender, conv, message_id, "👍", at);
            run(state, events, react);
        }
    }
}

/// `events` in batches of varying size, as group commits made them.
fn batches(events: &[Envelope]) -> Vec<Vec<Envelope>> {
    let sizes = [1, 3, 50, 7, 400, 2];
    let mut out = Vec::new();
    let mut rest = events;
    for size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (batch, tail) = rest.split_at((*size).min(rest.len()));
        out.push(batch.to_vec());
        rest = tail;
    }
    out
}

/// Writes `events` into `dir` with the per-event layout.
fn write_legacy(dir: &Path, events: &[Envelope]) {
    legacy::write(dir, &batches(events), Some(POSITION)).expect("legacy write");
}

/// Writes `events` with the per-event layout in a directory of its own and
/// moves that database to `<dir>/sled.legacy`, where a migration keeps it.
fn place_legacy(dir: &Path, events: &[Envelope]) {
    let other = tempfile::tempdir().expect("tempdir");
    write_legacy(other.path(), events);
    std::fs::rename(other.path().join("sled"), dir.join("sled.legacy")).expect("move");
}

fn open(dir: &Path) -> Log {
    common::retry_lock(|| Log::open(dir)).expect("open log")
}

/// Everything the log's API shows equals `events`, and the migration left
/// nothing behind.
fn check(log: &Log, events: &[Envelope], state: &State, position: u64) {
    assert!(!log.dir().join("sled.legacy").exists(), "sled.legacy left");
    assert_eq!(log.next_offset().expect("next_offset"), events.len() as u64);
    let all: Vec<Envelope> = log
        .read_from(0)
        .collect::<Result<_, _>>()
        .expect("read_from");
    assert!(all == events, "read_from(0) differs");
    for envelope in events {
        let stored = log.get(envelope.offset).expect("get");
        assert!(
            stored.as_ref() == Some(envelope),
            "get({})",
            envelope.offset
        );
    }
    assert!(log.get(events.len() as u64).expect("get").is_none());
    for conv in state.conversations.values() {
        let expected: Vec<Envelope> = events
            .iter()
            .filter(|e| e.event.conv_seq().is_some_and(|(c, _)| c == conv.id))
            .cloned()
            .collect();
        assert_eq!(expected.len() as u64, conv.last_seq);
        let after = log.conv_after(conv.id, 0, usize::MAX).expect("conv_after");
        assert!(after == expected, "conv_after of {}", conv.id);
        let mut newest_first = expected.clone();
        newest_first.reverse();
        let before = log
            .conv_before(conv.id, conv.last_seq + 1, usize::MAX)
            .expect("conv_before");
        assert!(before == newest_first, "conv_before of {}", conv.id);
        let mid = conv.last_seq / 2;
        let page = log.conv_after(conv.id, mid, 5).expect("conv_after");
        assert!(page[..] == expected[mid as usize..(mid as usize + 5).min(expected.len())]);
        let page = log.conv_before(conv.id, mid, 5).expect("conv_before");
        let older = &expected[..(mid as usize).saturating_sub(1)];
        assert!(
            page.iter().eq(older.iter().rev().take(5)),
            "page before {mid}"
        );
    }
    assert_eq!(log.position().expect("position"), Some(position));
}

#[test]
fn a_per_event_log_is_migrated_on_open_and_reopening_changes_nothing() {
    let (mut events, mut state) = history(3000);
    let dir = tempfile::tempdir().expect("tempdir");
    write_legacy(dir.path(), &events);
    let conf = || std::fs::read(dir.path().join("sled").join("conf")).expect("sled conf");
    let segment = |conf: Vec<u8>| {
        String::from_utf8_lossy(&conf)
            .lines()
            .next()
            .map(str::to_string)
    };
    assert_eq!(segment(conf()).as_deref(), Some("segment_size: 524288"));

    {
        let log = open(dir.path());
        check(&log, &events, &state, POSITION);
        let chunks = log.sled().open_tree(log::CHUNKS).expect("tree").len();
        assert!(
            chunks * 20 < events.len(),
            "{chunks} chunks for {} events: not regrouped",
            events.len()
        );
    }
    // A new database, with the new segment size.
    assert_eq!(segment(conf()).as_deref(), Some("segment_size: 8388608"));
    assert!(common::rebuild(dir.path()).expect("rebuild") == state);

    // Reopening is a plain open; appending goes on where the copy ended.
    let log = open(dir.path());
    check(&log, &events, &state, POSITION);
    let convs: Vec<(ConvId, UserId)> = state
        .conversations
        .values()
        .map(|c| (c.id, c.members.keys().copied().next().expect("a member")))
        .collect();
    let before = events.len();
    extend(&mut state, &mut events, &convs, 100);
    log.append_batch_at(events[before..].into(), Some(POSITION + 1))
        .expect("append");
    drop(log);
    let log = open(dir.path());
    check(&log, &events, &state, POSITION + 1);
    drop(log);
    assert!(common::rebuild(dir.path()).expect("rebuild") == state);
}

#[test]
fn a_migration_stopped_in_any_state_on_disk_is_finished_by_the_next_open() {
    let (events, state) = history(500);

    // Stopped right after moving the per-event database aside.
    let dir = tempfile::tempdir().expect("tempdir");
    place_legacy(dir.path(), &events);
    check(&open(dir.path()), &events, &state, POSITION);

    // Stopped in the middle of the copy: a new database without `layout`,
    // holding part of a copy (here: junk, a damaged first chunk, an index
    // entry of a conversation that does not exist, a wrong position).
    let dir = tempfile::tempdir().expect("tempdir");
    write_legacy(dir.path(), &events);
    {
        let log = open(dir.path());
        let db = log.sled();
        let meta = db.open_tree(log::META).expect("meta");
        meta.remove(log::LAYOUT).expect("remove layout");
        meta.insert("position", &1u64.to_be_bytes())
            .expect("position");
        let chunks = db.open_tree(log::CHUNKS).expect("chunks");
        chunks
            .insert(0u64.to_be_bytes(), &b"junk"[..])
            .expect("junk");
        chunks
            .insert((events.len() as u64 + 100).to_be_bytes(), &b"junk"[..])
            .expect("junk");
        let mut key = 99u64.to_be_bytes().to_vec();
        key.extend_from_slice(&1u64.to_be_bytes());
        db.open_tree(log::CONV_CHUNKS)
            .expect("conv_chunks")
            .insert(key, &0u64.to_be_bytes())
            .expect("junk");
        log.sync().expect("sync");
    }
    place_legacy(dir.path(), &events);
    let log = open(dir.path());
    check(&log, &events, &state, POSITION);
    assert!(log
        .conv_after(99, 0, usize::MAX)
        .expect("conv_after")
        .is_empty());
    drop(log);

    // Stopped after the copy was complete, before the old database was
    // removed: the copy is the log (the leftover is not copied again).
    let dir = tempfile::tempdir().expect("tempdir");
    write_legacy(dir.path(), &events);
    drop(open(dir.path()));
    place_legacy(dir.path(), &events[..10]);
    check(&open(dir.path()), &events, &state, POSITION);

    // Killed while the new database's `conf` was being written (sled 0.34
    // wrote it in place, in two writes: the text, then its crc): a torn
    // `conf` is a database that was never created, not a corrupt one.
    for torn in [
        &b"segment_size: 8388608\nuse_compression: false\nversion: 0.34\n"[..],
        b"segment_size: 83",
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        place_legacy(dir.path(), &events);
        std::fs::create_dir(dir.path().join("sled")).expect("mkdir");
        std::fs::write(dir.path().join("sled").join("conf"), torn).expect("torn conf");
        check(&open(dir.path()), &events, &state, POSITION);
        // The same without a migration: a new log whose creation was killed.
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("sled")).expect("mkdir");
        std::fs::write(dir.path().join("sled").join("conf"), torn).expect("torn conf");
        let log = open(dir.path());
        assert_eq!(log.next_offset().expect("next_offset"), 0);
    }

    // A per-event database both in place and aside: refused, untouched.
    let dir = tempfile::tempdir().expect("tempdir");
    write_legacy(dir.path(), &events);
    place_legacy(dir.path(), &events);
    match common::retry_lock(|| Log::open(dir.path())) {
        Ok(_) => panic!("opened a directory with two per-event databases"),
        Err(e) => assert!(e.to_string().contains("both"), "{e}"),
    }
    assert!(dir.path().join("sled").join("conf").exists());
    assert!(dir.path().join("sled.legacy").join("conf").exists());
}

#[test]
fn a_gap_or_a_damaged_entry_in_a_per_event_log_is_still_reported_after_migration() {
    let (events, _) = history(50);
    let dir = tempfile::tempdir().expect("tempdir");
    write_legacy(dir.path(), &events);
    {
        // The per-event layout's own trees, damaged below its API.
        let db = common::retry_lock(|| sled::open(dir.path().join("sled"))).expect("sled");
        let tree = db.open_tree("events").expect("events");
        tree.remove(20u64.to_be_bytes()).expect("remove");
        tree.insert(30u64.to_be_bytes(), &b"\x01garbage"[..])
            .expect("damage");
        db.flush().expect("flush");
    }
    let log = open(dir.path());
    assert!(log.get(20).expect("get").is_none(), "the gap stays a gap");
    let error = log.get(30).expect_err("entry 30 is damaged");
    assert!(error.to_string().contains("offset 30"), "{error}");
    drop(log);
    let error = common::rebuild(dir.path()).expect_err("rebuild of a log with a gap");
    assert!(error.to_string().contains("offset 20"), "{error}");
}

#[test]
fn a_migration_killed_at_any_moment_is_finished_by_the_next_open() {
    let (events, state) = history(20_000);
    let dir = tempfile::tempdir().expect("tempdir");
    write_legacy(dir.path(), &events);
    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let started = Instant::now();
    // Kills at growing delays (plus jitter) until a child gets to finish;
    // the 60th child is left to finish in any case.
    let mut killed_mid_migration = 0;
    let mut trials = 0;
    loop {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_micros(trials * 2000 + seed % 2000);
        let mut child = Process::new(env!("CARGO_BIN_EXE_vato-log-crash-child"))
            .arg(dir.path())
            .arg("--open-only")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn child");
        trials += 1;
        if trials < 60 {
            std::thread::sleep(delay);
            let _ = child.kill();
        }
        let status = child.wait().expect("wait");
        let mut out = String::new();
        child
            .stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut out)
            .expect("read stdout");
        let mut err = String::new();
        let _ = child
            .stderr
            .take()
            .expect("stderr")
            .read_to_string(&mut err);
        if status.success() {
            assert_eq!(out, "OPENED\n");
            break;
        }
        assert!(
            status.signal() == Some(libc::SIGKILL),
            "the child failed ({status}): {err}"
        );
        if dir.path().join("sled.legacy").exists() {
            killed_mid_migration += 1;
        }
    }
    eprintln!(
        "{trials} children, {killed_mid_migration} killed during the migration, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        killed_mid_migration >= 3,
        "too few kills landed in the migration; the test proved little"
    );
    check(&open(dir.path()), &events, &state, POSITION);
}
