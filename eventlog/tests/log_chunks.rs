//! The log's read paths against a model, on batches the store's
//! one-command-at-a-time tests never make: many events per batch, entries
//! from a few bytes to past the 64 KiB chunk size, conversations
//! interleaved within a batch, jumps in the offsets and in a conversation's
//! seqs. Every read (`read_from`, `get`, `next_offset`, `conv_after`,
//! `conv_before`) must equal the model, before and after a reopen.

mod common;

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, TestCaseError};

use vato_eventlog::log::{Log, LogError};
use vato_eventlog::{ConvId, Envelope, Event, Offset, Seq};

/// One event to append: its conversation (none: a user event), its
/// content size, and whether it skips an offset or a seq before it.
#[derive(Clone, Debug)]
struct Spec {
    conv: Option<ConvId>,
    bytes: usize,
    skip_offset: bool,
    skip_seq: bool,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        proptest::option::weighted(0.8, 1u64..5),
        prop_oneof![8 => 0usize..300, 1 => 10_000usize..40_000, 1 => 60_000usize..70_000],
        proptest::bool::weighted(0.05),
        proptest::bool::weighted(0.05),
    )
        .prop_map(|(conv, bytes, skip_offset, skip_seq)| Spec {
            conv,
            bytes,
            skip_offset,
            skip_seq,
        })
}

/// What the log must hold.
#[derive(Default)]
struct Model {
    events: BTreeMap<Offset, Envelope>,
    index: BTreeMap<(ConvId, Seq), Offset>,
    last_seq: BTreeMap<ConvId, Seq>,
    next: Offset,
}

impl Model {
    fn envelope(&mut self, spec: &Spec) -> Envelope {
        if spec.skip_offset {
            self.next += 1;
        }
        let offset = self.next;
        self.next += 1;
        let event = match spec.conv {
            Some(conv) => {
                let last = self.last_seq.entry(conv).or_default();
                *last += if spec.skip_seq { 2 } else { 1 };
                self.index.insert((conv, *last), offset);
                Event::MessagePosted {
                    message_id: offset + 1,
                    conv_id: conv,
                    seq: *last,
                    sender: 1,
                    content: "x".repeat(spec.bytes),
                    message_type: "text".into(),
                    reply_to: None,
                    forwarded_from: None,
                    client_id: None,
                    at: offset as i64,
                }
            }
            None => Event::UserSeen {
                user_id: spec.bytes as u64,
                at: offset as i64,
            },
        };
        let envelope = Envelope { offset, event };
        self.events.insert(offset, envelope.clone());
        envelope
    }

    fn conv_after(&self, conv: ConvId, after: Seq, limit: usize) -> Vec<Envelope> {
        self.index
            .range((conv, after.saturating_add(1))..=(conv, Seq::MAX))
            .take(limit)
            .map(|(_, offset)| self.events[offset].clone())
            .collect()
    }

    fn conv_before(&self, conv: ConvId, before: Seq, limit: usize) -> Vec<Envelope> {
        self.index
            .range((conv, 0)..(conv, before))
            .rev()
            .take(limit)
            .map(|(_, offset)| self.events[offset].clone())
            .collect()
    }
}

/// 0..=n+1 when short, else about 20 points of it including both ends (the
/// full sweep is quadratic).
fn sample(n: u64) -> Vec<u64> {
    let step = (n / 16).max(1);
    let mut points: Vec<u64> = (0..=n + 1).step_by(step as usize).collect();
    points.extend([n.saturating_sub(1), n, n + 1]);
    points.sort_unstable();
    points.dedup();
    points
}

fn check(log: &Log, model: &Model) -> Result<(), TestCaseError> {
    let last = model.events.keys().next_back().copied();
    prop_assert_eq!(
        log.next_offset().expect("next_offset"),
        last.map_or(0, |l| l + 1)
    );
    let all: Vec<Envelope> = log
        .read_from(0)
        .collect::<Result<_, _>>()
        .expect("read_from");
    prop_assert!(
        all.iter().eq(model.events.values()),
        "read_from(0) differs from the model"
    );
    for offset in 0..model.next + 2 {
        let stored = log.get(offset).expect("get");
        prop_assert_eq!(
            stored.as_ref(),
            model.events.get(&offset),
            "get({})",
            offset
        );
    }
    for offset in sample(model.next) {
        let from: Vec<Envelope> = log
            .read_from(offset)
            .collect::<Result<_, _>>()
            .expect("read_from");
        prop_assert!(
            from.iter().eq(model.events.range(offset..).map(|(_, e)| e)),
            "read_from({}) differs from the model",
            offset
        );
    }
    for conv in 0..6 {
        let last = model.last_seq.get(&conv).copied().unwrap_or(0);
        for seq in sample(last) {
            for limit in [0, 1, 3, usize::MAX] {
                prop_assert_eq!(
                    log.conv_after(conv, seq, limit).expect("conv_after"),
                    model.conv_after(conv, seq, limit),
                    "conv_after({}, {}, {})",
                    conv,
                    seq,
                    limit
                );
                prop_assert_eq!(
                    log.conv_before(conv, seq, limit).expect("conv_before"),
                    model.conv_before(conv, seq, limit),
                    "conv_before({}, {}, {})",
                    conv,
                    seq,
                    limit
                );
            }
        }
    }
    Ok(())
}

fn run_case(batches: &[Vec<Spec>], position: Option<u64>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut model = Model::default();
    {
        let log = Log::open(dir.path()).expect("open");
        for batch in batches {
            let envelopes: Vec<Envelope> = batch.iter().map(|s| model.envelope(s)).collect();
            log.append_batch_at(envelopes.clone().into(), position)
                .expect("append");
        }
        check(&log, &model)?;
    }
    let log = common::retry_lock(|| Log::open(dir.path())).expect("reopen");
    check(&log, &model)?;
    let expected = position.filter(|_| !batches.is_empty());
    prop_assert_eq!(log.position().expect("position"), expected);
    drop(log);
    // The index is derived from the chunks: without its file, an open
    // makes it again (what it does for the commits a crash lost).
    std::fs::remove_file(dir.path().join(vato_eventlog::log::INDEX_FILE)).expect("remove index");
    let log = common::retry_lock(|| Log::open(dir.path())).expect("reopen without index");
    check(&log, &model)?;
    // The layout before: the index in sled's `conv_chunks` tree (here a
    // run of one seq per entry, which readers take as any run), no file.
    // An open moves it into the file and drops the tree.
    {
        let tree = log
            .sled()
            .open_tree(vato_eventlog::log::CONV_CHUNKS)
            .expect("tree");
        for ((conv, seq), offset) in &model.index {
            let mut key = conv.to_be_bytes().to_vec();
            key.extend_from_slice(&seq.to_be_bytes());
            tree.insert(key, &offset.to_be_bytes()[..]).expect("insert");
        }
        log.sync().expect("sync");
    }
    drop(log);
    std::fs::remove_file(dir.path().join(vato_eventlog::log::INDEX_FILE)).expect("remove index");
    let log = common::retry_lock(|| Log::open(dir.path())).expect("reopen, migrating");
    check(&log, &model)?;
    let names = log.sled().tree_names();
    prop_assert!(!names
        .iter()
        .any(|n| n == vato_eventlog::log::CONV_CHUNKS.as_bytes()));
    Ok(())
}

proptest! {
    // 32 cases: a few seconds in release; soak with PROPTEST_CASES.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(32),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn reads_equal_the_model(
        batches in proptest::collection::vec(proptest::collection::vec(spec(), 0..40), 0..12),
        position in proptest::option::of(0u64..1000),
    ) {
        run_case(&batches, position)?;
    }
}

#[test]
fn offsets_within_a_batch_must_increase() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path()).expect("open");
    let event = |offset| Envelope {
        offset,
        event: Event::UserSeen { user_id: 1, at: 0 },
    };
    match log.append_batch(&[event(3), event(2)]) {
        Err(LogError::OutOfOrder {
            offset: 2,
            previous: 3,
        }) => {}
        other => panic!("expected OutOfOrder, got {other:?}"),
    }
    assert_eq!(
        log.next_offset().expect("next_offset"),
        0,
        "nothing written"
    );
}
