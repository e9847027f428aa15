//! The threads no acknowledgement waits on run behind the others (issue
//! 18): CPU nice 19 and the idle I/O class; the writer keeps the default.
#![cfg(target_os = "linux")]

mod common;

use std::collections::HashMap;
use std::sync::Mutex;

/// The tests read the threads of this process: one store at a time.
static ONE_STORE: Mutex<()> = Mutex::new(());

/// (nice, I/O priority class) of every thread of this process, by name.
fn threads() -> HashMap<String, Vec<(i64, i64)>> {
    let mut all: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let path = task.expect("task").path();
        let tid: i64 = path.file_name().unwrap().to_str().unwrap().parse().unwrap();
        let Ok(name) = std::fs::read_to_string(path.join("comm")) else {
            continue; // ended meanwhile
        };
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        // Fields after the parenthesised name start at field 3 (state);
        // nice is field 19.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let nice: i64 = rest.split(' ').nth(19 - 3).unwrap().parse().unwrap();
        // SAFETY: ioprio_get only reads the scheduling of thread `tid`.
        let ioprio = unsafe { libc::syscall(libc::SYS_ioprio_get, 1, tid) };
        all.entry(name.trim().to_string())
            .or_default()
            .push((nice, ioprio >> 13));
    }
    all
}

#[test]
fn background_threads_run_behind_the_writer() {
    let _one = ONE_STORE.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(common::config(dir.path(), 1_000_000));
    let rt = common::runtime();
    common::users_and_group(&rt, &store, &["ana", "bo", "cy"]);
    let threads = threads();
    const IDLE: i64 = 3;
    // Thread names are cut to 15 bytes in /proc.
    for name in ["vato-projector", "vato-wal-prepar"] {
        let found = threads
            .get(name)
            .unwrap_or_else(|| panic!("no thread {name}: {threads:?}"));
        assert_eq!(found, &vec![(19, IDLE)], "{name}");
    }
    let sled_io: Vec<_> = threads
        .iter()
        .filter(|(name, _)| name.starts_with("sled-io-"))
        .collect();
    assert!(!sled_io.is_empty(), "no sled IO thread: {threads:?}");
    for (name, found) in sled_io {
        assert!(found.iter().all(|t| *t == (19, IDLE)), "{name}: {found:?}");
    }
    let writer = &threads["vato-log-writer"];
    assert_eq!(writer.len(), 1);
    assert_eq!(writer[0].0, 0, "the writer keeps the default nice");
    assert_ne!(writer[0].1, IDLE, "the writer keeps its I/O class");
    common::close(store);
}

/// The slice (ns) the scheduler gives thread `name` of this process, from
/// `/proc/self/task/*/sched` (`se.slice`, Linux 6.6 and later).
fn slice_of(name: &str) -> Option<u64> {
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let path = task.expect("task").path();
        let Ok(comm) = std::fs::read_to_string(path.join("comm")) else {
            continue;
        };
        if comm.trim() != name {
            continue;
        }
        let sched = std::fs::read_to_string(path.join("sched")).expect("sched");
        return sched.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == "se.slice").then(|| value.trim().parse().expect("se.slice"))
        });
    }
    panic!("no thread {name}");
}

/// (major, minor) of the running kernel.
fn kernel() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let mut parts = release.trim().split(['.', '-']);
    let mut next = || parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (next(), next())
}

/// The writer asks for the slice its configuration names (Linux 6.12 and
/// later grant it; see `vato_eventlog::sched`); 0 leaves the kernel's.
#[test]
fn the_writer_runs_with_the_slice_it_asks_for() {
    let _one = ONE_STORE.lock().unwrap_or_else(|e| e.into_inner());
    let granted = kernel() >= (6, 12);
    for asked_us in [250u64, 0] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = common::config(dir.path(), 1_000_000);
        config.writer_slice_us = asked_us;
        let store = common::open(config);
        // Once it has answered, the writer's thread is named and set.
        common::users_and_group(&common::runtime(), &store, &["ana", "bo"]);
        let writer = slice_of("vato-log-writer");
        let projector = slice_of("vato-projector");
        if granted {
            let writer = writer.expect("se.slice");
            if asked_us == 0 {
                assert_eq!(Some(writer), projector, "the kernel's default slice");
            } else {
                assert_eq!(writer, asked_us * 1000);
                assert_ne!(Some(writer), projector, "the others keep the default");
            }
        }
        common::close(store);
    }
}
