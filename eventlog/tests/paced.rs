//! Big files written and removed a megabyte at a time (`vato_eventlog::paced`):
//! the bytes are the bytes, and a removed file is gone, its name and its
//! blocks.

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;

use vato_eventlog::paced::{self, PacedWriter, PAUSE, REMOVE_STEP, STEP};

/// 3.5 removal steps (14 write steps) of bytes that differ from megabyte
/// to megabyte.
fn bytes() -> Vec<u8> {
    (0..(REMOVE_STEP * 7 / 2) as usize)
        .map(|i| (i % 251) as u8 ^ (i >> 20) as u8)
        .collect()
}

#[test]
fn a_paced_write_holds_every_byte_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big");
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap();
    let mut paced = PacedWriter::new(&file);
    let (head, tail) = (b"head".as_slice(), bytes());
    paced.write_all(head).unwrap();
    paced.write_all(&tail).unwrap();
    paced.write_all(&[]).unwrap();
    file.sync_data().unwrap();
    let read = std::fs::read(&path).unwrap();
    assert_eq!(read.len(), head.len() + tail.len());
    assert_eq!(&read[..4], head);
    assert!(
        read[4..] == tail[..],
        "the bytes after the first write differ"
    );
}

/// A pause after every step, whether the steps come in one call or in
/// many: the time between pieces is the WAL's. (A lower bound set by
/// sleeps, not a speed.) On tmpfs where there is one, so that the writes
/// themselves take far less than the pauses: without them this fails.
#[test]
fn a_paced_write_pauses_between_its_pieces() {
    let dir = match std::path::Path::new("/dev/shm").is_dir() {
        true => tempfile::tempdir_in("/dev/shm").unwrap(),
        false => tempfile::tempdir().unwrap(),
    };
    let bytes = bytes();
    let pieces = (bytes.len() as u64).div_ceil(STEP) as u32;
    assert!(pieces >= 8);

    for call in [bytes.len(), 4096] {
        let path = dir.path().join(format!("in-calls-of-{call}"));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        let started = std::time::Instant::now();
        let mut paced = PacedWriter::new(&file);
        for chunk in bytes.chunks(call) {
            paced.write_all(chunk).unwrap();
        }
        assert!(
            started.elapsed() >= PAUSE * (pieces - 1),
            "written in calls of {call} bytes without a pause between pieces"
        );
        file.sync_data().unwrap();
        assert!(std::fs::read(&path).unwrap() == bytes);
    }
}

#[test]
fn a_paced_removal_frees_the_blocks_and_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let (big, small) = (dir.path().join("big"), dir.path().join("small"));
    std::fs::write(&big, bytes()).unwrap();
    std::fs::write(&small, b"tiny").unwrap();
    // Held open, the file's blocks stay in use after the removal unless
    // the removal itself freed them.
    let held = std::fs::File::open(&big).unwrap();
    assert!(held.metadata().unwrap().blocks() * 512 >= REMOVE_STEP * 3);

    paced::remove(&big).unwrap();
    paced::remove(&small).unwrap();

    assert_eq!(
        std::fs::metadata(&big).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        std::fs::metadata(&small).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let left = held.metadata().unwrap();
    assert!(
        left.len() <= REMOVE_STEP && left.blocks() * 512 <= REMOVE_STEP,
        "shrunk to at most a step before the name went: {} bytes, {} blocks",
        left.len(),
        left.blocks()
    );
    assert_eq!(
        paced::remove(&big).unwrap_err().kind(),
        ErrorKind::NotFound,
        "a missing file is an error its callers can tell apart"
    );
}
