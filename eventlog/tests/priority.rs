//! The threads no acknowledgement waits on run behind the others (issue
//! 18): CPU nice 19 and the idle I/O class; the writer keeps the default.
#![cfg(target_os = "linux")]

mod common;

use std::collections::HashMap;

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
