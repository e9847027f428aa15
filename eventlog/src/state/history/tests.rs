//! The history's records in a real redb file: owner blocks (read-modify-
//! write across snapshots), records of earlier versions, and seq cursors
//! bisecting a conversation's keys, each against a brute-force answer.

use std::collections::HashMap;

use super::keys::{id_key, idempotency_key, message_key, OWNER};
use super::*;

fn message(id: MessageId, conv: ConvId, seq: Seq) -> Message {
    Message {
        id,
        conv_id: conv,
        seq,
        sender: 1,
        content: format!("m{id}"),
        message_type: "text".into(),
        reply_to: None,
        forwarded_from: None,
        client_id: None,
        created_at: 0,
        edited_at: None,
        is_deleted: false,
        reactions: Vec::new(),
        attachments: Vec::new(),
    }
}

fn on_disk() -> (tempfile::TempDir, History, Trees) {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path().join("db")).unwrap();
    let trees = Trees::open(&db, dir.path(), 1 << 20).unwrap();
    let mut history = History::default();
    history.attach(trees.clone());
    (dir, history, trees)
}

/// Writes the active layer to the tree, as a snapshot does.
fn snapshot(history: &mut History, trees: &Trees) {
    let layer = history.freeze().expect("a layer to write");
    layer.write_records(&trees.records).unwrap();
    history.thaw();
}

#[test]
fn messages_are_found_by_id_and_by_seq_across_snapshots_and_blocks() {
    let (_dir, mut history, trees) = on_disk();
    // Three conversations posting in turn; each conversation's seqs have
    // gaps (its other events), ids are global.
    let mut all = Vec::new();
    let mut seqs: HashMap<ConvId, Seq> = HashMap::new();
    for id in 1..=300u64 {
        let conv = [7, 8, 9][(id % 3) as usize];
        let seq = seqs.entry(conv).or_insert(0);
        *seq += 1 + id % 4;
        all.push(message(id, conv, *seq));
        history.insert(all.last().unwrap().clone());
        // Snapshots cut blocks in the middle: a block is written, then
        // completed by a later snapshot.
        if id == 100 || id == 230 {
            snapshot(&mut history, &trees);
        }
    }
    snapshot(&mut history, &trees);
    // A fresh history on the same tree reads everything from disk.
    let mut cold = History::default();
    cold.attach(trees.clone());
    for m in &all {
        assert_eq!(cold.get(m.id).as_ref(), Some(m), "message {}", m.id);
    }
    assert_eq!(cold.get(301), None);
    for conv in [7, 8, 9] {
        let mine: Vec<&Message> = all.iter().filter(|m| m.conv_id == conv).collect();
        let last = mine.last().unwrap().seq;
        for seq in 0..=last + 2 {
            let expected = mine.iter().find(|m| m.seq >= seq).map(|m| m.id);
            assert_eq!(
                cold.first_at_seq(conv, seq),
                expected,
                "conv {conv} seq {seq}"
            );
        }
    }
    assert_eq!(cold.first_at_seq(10, 0), None);
    // Owner blocks: one record per 64 ids, not one per message.
    let blocks = trees.records.with_tag(b'X').unwrap().count();
    assert_eq!(blocks, 5);
}

#[test]
fn records_of_earlier_versions_are_still_read() {
    let (_dir, history, trees) = on_disk();
    // Written as earlier versions did: the message and its `x` record.
    let m = message(42, 5, 3);
    let encoded = crate::codec::encode(&m).unwrap();
    trees
        .records
        .write(true, |table| {
            table.insert(&message_key(5, 42)[..], &encoded[..]).unwrap();
            table
                .insert(&id_key(OWNER, 42)[..], &5u64.to_be_bytes()[..])
                .unwrap();
            Ok::<(), RecordsError>(())
        })
        .unwrap();
    assert_eq!(history.get(42), Some(m));
    assert_eq!(history.first_at_seq(5, 1), Some(42));
    assert_eq!(history.first_at_seq(5, 4), None);
}

fn post(sender: UserId, conv: ConvId, client_id: &str) -> crate::command::Command {
    crate::command::Command::PostMessage {
        sender,
        conv_id: conv,
        content: "hi".into(),
        message_type: "text".into(),
        reply_to: None,
        forwarded_from: None,
        client_id: Some(client_id.into()),
        at: 0,
    }
}

/// A probe's hint spares the writer its read of the tree only while no
/// layer was thawed since the probe: a key that moved from RAM to the tree
/// in between is still found, so a retry is never posted twice.
#[test]
fn a_probe_hint_holds_only_until_a_thaw() {
    let (_dir, mut history, trees) = on_disk();
    let probe = history.probe().expect("a history on disk has a probe");

    // Absent, probed, nothing thawed since: the hint answers (and is used
    // up; the tree still answers the same after it).
    probe.probe(&post(1, 7, "a"));
    assert!(history.hints.known_absent(&idempotency_key(1, 7, "a")));
    assert!(!history.hints.known_absent(&idempotency_key(1, 7, "a")));
    assert_eq!(history.key(1, 7, "a"), None);

    // The race: probed while absent, then another command with the same
    // key is posted and a snapshot moves it to the tree before the
    // probed command is decided.
    probe.probe(&post(1, 7, "b"));
    history.insert_key(1, 7, "b", 42);
    snapshot(&mut history, &trees);
    assert_eq!(history.key(1, 7, "b"), Some(42));

    // A key already in the tree leaves no hint; one in RAM is found there.
    probe.probe(&post(1, 7, "b"));
    assert_eq!(history.key(1, 7, "b"), Some(42));
    history.insert_key(2, 7, "c", 43);
    probe.probe(&post(2, 7, "c"));
    assert_eq!(history.key(2, 7, "c"), Some(43));
    // Commands without a key leave nothing.
    let hints = history.hints.pending();
    probe.probe(&crate::command::Command::PostMessage {
        sender: 3,
        conv_id: 7,
        content: "x".into(),
        message_type: "text".into(),
        reply_to: None,
        forwarded_from: None,
        client_id: None,
        at: 0,
    });
    assert_eq!(history.hints.pending(), hints);
}

/// A directory of the layout before keeps the records in sled's `history`
/// tree: the first open copies them to the records' file and drops the
/// tree; what a history reads is the same.
#[test]
fn records_in_the_sled_tree_of_the_layout_before_move_to_their_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path().join("db")).unwrap();
    let m = message(42, 5, 3);
    {
        let old = db.open_tree(TREE).unwrap();
        old.insert(message_key(5, 42), crate::codec::encode(&m).unwrap())
            .unwrap();
        old.insert(id_key(OWNER, 42), &5u64.to_be_bytes()[..])
            .unwrap();
        old.insert(idempotency_key(1, 5, "k"), &42u64.to_be_bytes()[..])
            .unwrap();
    }
    let trees = Trees::open(&db, dir.path(), 1 << 20).unwrap();
    assert!(!db.tree_names().iter().any(|name| name == TREE.as_bytes()));
    assert_eq!(trees.records.len().unwrap(), 3);
    let mut history = History::default();
    history.attach(trees.clone());
    assert_eq!(history.get(42), Some(m));
    assert_eq!(history.key(1, 5, "k"), Some(42));
    // A second open finds nothing more to move and the same records.
    drop((history, trees));
    let trees = Trees::open(&db, dir.path(), 1 << 20).unwrap();
    assert_eq!(trees.records.len().unwrap(), 3);
}
