//! The vendored sled's page-table snapshot (vendor/sled/VATO.md, the
//! eleventh change): sled writes it at every open as
//! `snap.<lsn>.generating` and renames it when done. A process killed in
//! between leaves a torn `.generating` file; the next open must not read
//! it (it used to, and failed with `Corruption { at: None }`).

mod common;

use std::path::Path;

/// Opens the database, waiting for the previous handle's lock to go
/// (sled's flusher thread lets it go shortly after the drop).
fn open(dir: &Path) -> sled::Db {
    for _ in 0..200 {
        match sled::Config::new().path(dir).open() {
            Ok(db) => return db,
            Err(e) if e.to_string().contains("could not acquire lock") => {
                std::thread::sleep(std::time::Duration::from_millis(25))
            }
            Err(e) => panic!("open: {e:?}"),
        }
    }
    panic!("the database stayed locked");
}

#[test]
fn a_torn_generating_snapshot_is_not_read_and_goes_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(dir.path());
        for i in 0u64..1_000 {
            db.insert(i.to_be_bytes(), vec![(i % 251) as u8; 64])
                .unwrap();
        }
        db.flush().unwrap();
    }
    // An open that died while writing its snapshot, at the newest lsn
    // (it sorts after every finished one), and one at an older lsn.
    let newest = dir
        .path()
        .join(format!("snap.{:016X}.generating", u64::MAX >> 1));
    std::fs::write(&newest, b"torn").unwrap();
    let older = dir.path().join(format!("snap.{:016X}.generating", 1));
    std::fs::write(&older, vec![0xAB; 64]).unwrap();

    let db = open(dir.path());
    for i in 0u64..1_000 {
        assert_eq!(
            db.get(i.to_be_bytes()).unwrap().unwrap(),
            vec![(i % 251) as u8; 64],
            "key {i}"
        );
    }
    let left = common::sled_snapshot_files(dir.path());
    assert!(
        left.iter().all(|n| !n.ends_with(".generating")),
        "the open's own snapshot removed the torn files: {left:?}"
    );
    assert_eq!(left.len(), 1, "one finished snapshot: {left:?}");
}
