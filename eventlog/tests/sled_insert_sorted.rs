//! The vendored sled's `Tree::insert_sorted` (vendor/sled/VATO.md), which
//! the history's snapshot writes its records with: a run of sorted items
//! replaces each leaf once instead of linking each item. Checked against a
//! `BTreeMap` given the same writes, on a real sled on disk: across leaf
//! splits, over existing keys, with values past the 16 KiB leaf rule,
//! while another thread inserts into the same leaves, and after a reopen.

use std::collections::BTreeMap;

use proptest::prelude::*;
use sled::IVec;

fn key(conv: u64, id: u64) -> Vec<u8> {
    let mut k = vec![b'm'];
    k.extend_from_slice(&conv.to_be_bytes());
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn value(id: u64, len: usize) -> Vec<u8> {
    let mut v = id.to_be_bytes().to_vec();
    v.resize(len.max(8), (id % 251) as u8);
    v
}

fn sorted(items: BTreeMap<Vec<u8>, Vec<u8>>) -> Vec<(IVec, IVec)> {
    items
        .into_iter()
        .map(|(k, v)| (IVec::from(k), IVec::from(v)))
        .collect()
}

fn contents(tree: &sled::Tree) -> BTreeMap<Vec<u8>, Vec<u8>> {
    tree.iter()
        .map(|item| {
            let (k, v) = item.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect()
}

/// sled's own threads let go of a dropped database a moment later.
fn reopen(path: &std::path::Path) -> sled::Db {
    for _ in 0..100 {
        match sled::open(path) {
            Ok(db) => return db,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
    sled::open(path).expect("reopen the database")
}

/// One batch: `(conv, first id, count, value length)` runs.
fn batches() -> impl Strategy<Value = Vec<Vec<(u64, u64, u64, usize)>>> {
    let run = (
        0..6u64,
        0..400u64,
        1..150u64,
        prop_oneof![8..300usize, 2000..6000usize],
    );
    prop::collection::vec(prop::collection::vec(run, 1..5), 1..6)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn insert_sorted_writes_what_inserts_would(batches in batches()) {
        let dir = tempfile::tempdir().unwrap();
        let mut expected = BTreeMap::new();
        {
            let db = sled::open(dir.path()).unwrap();
            let tree = db.open_tree("t").unwrap();
            for batch in &batches {
                let mut items = BTreeMap::new();
                for &(conv, first, count, len) in batch {
                    for id in first..first + count {
                        // The same key again in a later batch gets a new
                        // value (an edit).
                        items.insert(key(conv, id), value(id ^ expected.len() as u64, len));
                    }
                }
                expected.extend(items.clone());
                tree.insert_sorted(&sorted(items)).unwrap();
                prop_assert_eq!(&contents(&tree), &expected);
            }
            db.flush().unwrap();
        }
        let db = reopen(dir.path());
        let tree = db.open_tree("t").unwrap();
        prop_assert_eq!(contents(&tree), expected);
    }
}

#[test]
fn insert_sorted_beside_a_concurrent_writer_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path()).unwrap();
    let tree = db.open_tree("t").unwrap();
    // The two writers share leaves: even ids in sorted runs, odd ids one
    // by one from another thread, so replaces meet links on one page and
    // must retry rather than drop the other's item.
    let evens: BTreeMap<_, _> = (0..20_000u64)
        .step_by(2)
        .map(|id| (key(id % 3, id), value(id, 100)))
        .collect();
    let odds: Vec<_> = (1..20_000u64)
        .step_by(2)
        .map(|id| (key(id % 3, id), value(id, 100)))
        .collect();
    let other = {
        let tree = tree.clone();
        let odds = odds.clone();
        std::thread::spawn(move || {
            for (k, v) in odds {
                tree.insert(k, v).unwrap();
            }
        })
    };
    for chunk in sorted(evens.clone()).chunks(700) {
        tree.insert_sorted(chunk).unwrap();
    }
    other.join().unwrap();
    let mut expected = evens;
    expected.extend(odds);
    assert_eq!(contents(&tree).len(), 20_000);
    assert_eq!(contents(&tree), expected);
}
