//! Crash safety: a child process (`vato-log-crash-child`) appends from 16
//! concurrent tasks and prints every acknowledged append; we SIGKILL it at a
//! random moment, reopen the same directory, and check that every ack
//! survived exactly once, that each conversation's seqs are gap-free, and
//! that the recovered state (snapshot + tail) equals a full replay. Repeated
//! over many trials on one directory, so recovery also runs on logs that
//! were themselves recovered. A second run does the same with 16 KiB
//! messages (the contract's limit), whose batches span several chunks.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use vato_eventlog::{ConvId, Event, Offset, Seq};

const TRIALS: usize = 24;

/// An acknowledged append, as the child reported it.
#[derive(Clone, Debug)]
struct Ack {
    offset: Offset,
    conv: ConvId,
    seq: Seq,
    client_id: String,
}

fn parse_acks(stdout: &str) -> Vec<Ack> {
    // A kill can cut the last line short; only whole lines count.
    let whole = &stdout[..stdout.rfind('\n').map_or(0, |i| i + 1)];
    whole
        .lines()
        .map(|line| {
            assert!(!line.starts_with("BAD"), "child reported: {line}");
            let fields: Vec<&str> = line.split(' ').collect();
            assert!(
                fields.len() == 5 && fields[0] == "ACK",
                "unexpected line {line:?}"
            );
            Ack {
                offset: fields[1].parse().expect("offset"),
                conv: fields[2].parse().expect("conv"),
                seq: fields[3].parse().expect("seq"),
                client_id: fields[4].to_string(),
            }
        })
        .collect()
}

/// Runs the child for `run_for`, then SIGKILLs it; returns its stdout.
fn run_and_kill(dir: &Path, tag: &str, content_bytes: usize, run_for: Duration) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vato-log-crash-child"))
        .arg(dir)
        .arg(tag)
        .arg(content_bytes.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child");
    // Drain both pipes while it runs, so it never blocks on a full pipe.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).map(|_| s)
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).map(|_| s)
    });
    std::thread::sleep(run_for);
    child.kill().expect("SIGKILL"); // Child::kill is SIGKILL on Unix
    let status = child.wait().expect("wait");
    let out = out.join().expect("reader").expect("stdout");
    let err = err.join().expect("reader").expect("stderr");
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "the child stopped by itself ({status}); stderr:\n{err}\nstdout tail:\n{}",
        &out[out.len().saturating_sub(500)..]
    );
    out
}

/// A small deterministic generator for the kill times; the seed is printed
/// so that a failing schedule can be replayed with CRASH_SEED.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn every_acknowledged_append_survives_sigkill() {
    kill_and_check(TRIALS, 0, 100);
}

#[test]
fn every_acknowledged_16_kib_append_survives_sigkill() {
    kill_and_check(8, 16 << 10, 50);
}

/// `trials` kills of a child posting messages of `content_bytes`; at least
/// `min_acks` acks in all, or the test proved little.
fn kill_and_check(trials: usize, content_bytes: usize, min_acks: usize) {
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    eprintln!("CRASH_SEED={seed}");
    let mut rng = XorShift(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    // Every ack of every trial: client id → (offset, conv, seq).
    let mut acked: HashMap<String, Ack> = HashMap::new();
    let mut total_events = 0;

    for trial in 0..trials {
        let run_for = Duration::from_millis(50 + rng.next() % 351);
        let stdout = run_and_kill(dir.path(), &format!("t{trial}"), content_bytes, run_for);
        let acks = parse_acks(&stdout);

        // Reopen: no manual repair, whatever moment the kill hit.
        let store = common::open(common::config(dir.path(), 500));
        let log = store.log();
        let state = store.state().detached();

        for ack in &acks {
            assert!(
                acked.insert(ack.client_id.clone(), ack.clone()).is_none(),
                "client id {} acknowledged twice",
                ack.client_id
            );
        }
        // Every ack so far (this trial's and earlier ones') is in the log
        // where the child was told it is, with its content.
        for ack in acked.values() {
            let envelope = log.get(ack.offset).expect("log read").unwrap_or_else(|| {
                panic!(
                    "trial {trial}: acknowledged offset {} is missing",
                    ack.offset
                )
            });
            match &envelope.event {
                Event::MessagePosted {
                    conv_id,
                    seq,
                    content,
                    client_id,
                    ..
                } => {
                    assert_eq!(
                        (*conv_id, *seq),
                        (ack.conv, ack.seq),
                        "offset {}",
                        ack.offset
                    );
                    assert_eq!(client_id.as_deref(), Some(ack.client_id.as_str()));
                    assert!(
                        *content == common::crash_content(&ack.client_id, content_bytes),
                        "offset {}: wrong content",
                        ack.offset
                    );
                }
                other => panic!(
                    "offset {} holds {other:?}, not the acknowledged message",
                    ack.offset
                ),
            }
        }

        // No message twice, acknowledged or not: the log is gap-free from
        // offset 0 and no client id appears in two events.
        let mut client_ids = HashSet::new();
        let mut next = 0;
        for envelope in log.read_from(0) {
            let envelope = envelope.expect("log read");
            assert_eq!(envelope.offset, next, "gap in the global log");
            next += 1;
            if let Event::MessagePosted {
                client_id: Some(id),
                ..
            } = &envelope.event
            {
                assert!(
                    client_ids.insert(id.clone()),
                    "client id {id} appended twice"
                );
            }
        }
        assert_eq!(
            next, state.next_offset,
            "state and log disagree on the length"
        );

        // Per conversation, the index holds seqs 1..=last_seq exactly.
        let mut seqs: BTreeMap<ConvId, Seq> = BTreeMap::new();
        for conv in state.conversations.values() {
            let events = log.conv_after(conv.id, 0, usize::MAX).expect("conv_after");
            for (i, envelope) in events.iter().enumerate() {
                assert_eq!(
                    envelope.event.conv_seq(),
                    Some((conv.id, i as Seq + 1)),
                    "conv {}",
                    conv.id
                );
            }
            assert_eq!(events.len() as Seq, conv.last_seq, "conv {}", conv.id);
            seqs.insert(conv.id, conv.last_seq);
        }

        common::close(store);
        let replayed = common::rebuild(dir.path()).expect("rebuild");
        assert!(
            replayed == state,
            "trial {trial}: recovered state differs from a full replay"
        );

        eprintln!(
            "trial {trial:2}: killed after {:3} ms, {:4} acks, log {next} events, seqs {seqs:?}",
            run_for.as_millis(),
            acks.len()
        );
        total_events = next;
    }
    eprintln!(
        "{trials} trials, {} acks, {total_events} events, {:.1} s",
        acked.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        acked.len() > min_acks,
        "the child hardly ever got an ack; the test proved little"
    );
}
