//! The write-ahead log on real files: records come back exactly, across
//! segments, checkpoints, recycling, torn tails and damage.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use vato_eventlog::log::wal::{Record, Wal, WalError, MIN_SEGMENT_BYTES};

const SEGMENT: u64 = MIN_SEGMENT_BYTES;

type Open = fn(&Path, u64, u64) -> Result<(Wal, Vec<Record>), WalError>;
/// Every test runs twice: segments written with `O_DIRECT` where the
/// file system takes it (`open`), and through the page cache, as where it
/// does not (`open_buffered`).
const OPENS: [Open; 2] = [Wal::open, Wal::open_buffered];

fn payload(i: u64) -> Vec<u8> {
    // Varied sizes: 1 byte to ~9 KiB, so records straddle segment ends.
    let len = 1 + (i * 7919 % 9000) as usize;
    (0..len).map(|j| (i as usize + j) as u8).collect()
}

fn append_all(wal: &mut Wal, range: std::ops::RangeInclusive<u64>) {
    for i in range {
        assert_eq!(wal.append(&payload(i)).unwrap(), i);
    }
}

fn assert_records(records: &[Record], range: std::ops::RangeInclusive<u64>) {
    let lsns: Vec<u64> = records.iter().map(|r| r.lsn).collect();
    assert_eq!(lsns, range.clone().collect::<Vec<_>>());
    for record in records {
        assert_eq!(
            record.payload,
            payload(record.lsn),
            "payload of {}",
            record.lsn
        );
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    files.sort();
    files
}

/// Where record `lsn` starts, found by walking the headers.
fn record_at(dir: &Path, lsn: u64) -> (PathBuf, u64) {
    for path in segments(dir) {
        let bytes = std::fs::read(&path).unwrap();
        let mut pos = 0usize;
        while pos + 16 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
            let at = u64::from_le_bytes(bytes[pos + 8..pos + 16].try_into().unwrap());
            if len == 0 && at == 0 {
                break;
            }
            if at == lsn {
                return (path, pos as u64);
            }
            pos += 16 + len;
        }
    }
    panic!("record {lsn} not found");
}

fn flip(path: &Path, at: u64) {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, at).unwrap();
    file.write_all_at(&[byte[0] ^ 0x40], at).unwrap();
}

#[test]
fn records_come_back_in_order_across_segments_and_appends_continue() {
    for open in OPENS {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, records) = open(dir.path(), SEGMENT, 0).unwrap();
        assert!(records.is_empty());
        append_all(&mut wal, 1..=200);
        drop(wal);
        assert!(
            segments(dir.path()).len() > 5,
            "200 records of ~4.5 KiB span segments"
        );

        let (mut wal, records) = open(dir.path(), SEGMENT, 0).unwrap();
        assert_records(&records, 1..=200);
        assert_eq!(wal.next_lsn(), 201);
        append_all(&mut wal, 201..=260);
        drop(wal);
        let (_, records) = open(dir.path(), SEGMENT, 0).unwrap();
        assert_records(&records, 1..=260);
    }
}

#[test]
fn a_checkpoint_skips_records_and_recycles_segments() {
    for open in OPENS {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = open(dir.path(), SEGMENT, 0).unwrap();
        let mut most_files = 0;
        for round in 0..10u64 {
            let first = round * 100 + 1;
            append_all(&mut wal, first..=first + 99);
            // Everything but the last 10 records is durable elsewhere.
            wal.checkpoint(first + 89);
            most_files = most_files.max(segments(dir.path()).len());
        }
        drop(wal);
        // 1,000 records (~4.5 MB) written, but segments are reused: what stays
        // is what the last checkpoint does not cover plus a spare or two.
        assert!(most_files <= 14, "{most_files} segment files");

        let (mut wal, records) = open(dir.path(), SEGMENT, 990).unwrap();
        assert_records(&records, 991..=1000);
        append_all(&mut wal, 1001..=1100);
        drop(wal);
        let (_, records) = open(dir.path(), SEGMENT, 1000).unwrap();
        assert_records(&records, 1001..=1100);
    }
}

#[test]
fn everything_checkpointed_reopens_empty_and_continues_after_the_checkpoint() {
    for open in OPENS {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = open(dir.path(), SEGMENT, 0).unwrap();
        append_all(&mut wal, 1..=120);
        wal.checkpoint(120);
        drop(wal);
        let (mut wal, records) = open(dir.path(), SEGMENT, 120).unwrap();
        assert!(records.is_empty());
        assert_eq!(wal.next_lsn(), 121);
        append_all(&mut wal, 121..=130);
        drop(wal);
        // The recycled segments' old records (all ≤ 120) are not mistaken for
        // the log.
        let (_, records) = open(dir.path(), SEGMENT, 120).unwrap();
        assert_records(&records, 121..=130);
    }
}

#[test]
fn a_torn_last_record_is_cut_and_the_log_continues() {
    for open in OPENS {
        for cut in [1u64, 15, 17, 100] {
            let dir = tempfile::tempdir().unwrap();
            let (mut wal, _) = open(dir.path(), SEGMENT, 0).unwrap();
            append_all(&mut wal, 1..=30);
            drop(wal);
            // Record 30 was only partly written: zero it from `cut` bytes on,
            // as a crash between its pwrite reaching the disk and the fsync.
            let (path, at) = record_at(dir.path(), 30);
            let file = OpenOptions::new().write(true).open(&path).unwrap();
            let len = 16 + payload(30).len() as u64;
            let cut = cut.min(len - 1);
            file.write_all_at(&vec![0u8; (len - cut) as usize], at + cut)
                .unwrap();
            drop(file);

            let (mut wal, records) = open(dir.path(), SEGMENT, 0).unwrap();
            assert_records(&records, 1..=29);
            assert_eq!(wal.next_lsn(), 30);
            append_all(&mut wal, 30..=40);
            drop(wal);
            let (_, records) = open(dir.path(), SEGMENT, 0).unwrap();
            assert_records(&records, 1..=40);
        }
    }
}

#[test]
fn a_damaged_record_before_the_end_is_an_error_naming_the_segment() {
    for open in OPENS {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = open(dir.path(), SEGMENT, 0).unwrap();
        append_all(&mut wal, 1..=50);
        drop(wal);
        let (path, at) = record_at(dir.path(), 20);
        flip(&path, at + 16 + 3);
        match open(dir.path(), SEGMENT, 0) {
            Err(WalError::Damaged { segment, .. }) => {
                assert!(segment.ends_with(path.file_name().unwrap().to_str().unwrap()))
            }
            Err(other) => panic!("expected Damaged, got {other}"),
            Ok((_, records)) => panic!("damage read as {} records", records.len()),
        }
        // Damage that the checkpoint already covers is not read at all.
        let (_, records) = open(dir.path(), SEGMENT, 30).unwrap();
        assert_records(&records, 31..=50);
    }
}

#[test]
fn a_lost_segment_in_the_middle_is_an_error() {
    for open in OPENS {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = open(dir.path(), SEGMENT, 0).unwrap();
        append_all(&mut wal, 1..=200);
        drop(wal);
        let (path, _) = record_at(dir.path(), 100);
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            open(dir.path(), SEGMENT, 0),
            Err(WalError::Damaged { .. })
        ));
    }
}

#[test]
fn a_record_larger_than_a_segment_gets_a_segment_of_its_own() {
    for open in OPENS {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = open(dir.path(), SEGMENT, 0).unwrap();
        let big: Vec<u8> = (0..3 * SEGMENT as usize).map(|i| (i % 251) as u8).collect();
        append_all(&mut wal, 1..=3);
        assert_eq!(wal.append(&big).unwrap(), 4);
        assert_eq!(wal.append(&payload(5)).unwrap(), 5);
        drop(wal);
        let (_, records) = open(dir.path(), SEGMENT, 0).unwrap();
        assert_eq!(records.len(), 5);
        assert_eq!(records[3].payload, big);
        assert_eq!(records[4].payload, payload(5));
    }
}

#[test]
fn segments_are_private_and_preallocated() {
    for open in OPENS {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = open(dir.path(), SEGMENT, 0).unwrap();
        wal.append(b"x").unwrap();
        for path in segments(dir.path()) {
            let meta = std::fs::metadata(&path).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{path:?}");
            assert!(meta.len() >= SEGMENT, "{path:?} is {} bytes", meta.len());
        }
    }
}

#[test]
fn small_records_share_blocks_and_appends_continue_mid_block_after_reopening() {
    // Records of 17 to 56 bytes: many to a 4 KiB block, so most reopens
    // land inside a block whose start a direct write must write again.
    let tiny = |i: u64| -> Vec<u8> { vec![i as u8; 1 + (i % 40) as usize] };
    for open in OPENS {
        let dir = tempfile::tempdir().unwrap();
        let mut next = 1u64;
        for round in 0..40u64 {
            let (mut wal, records) = open(dir.path(), SEGMENT, 0).unwrap();
            assert_eq!(records.len() as u64, next - 1, "round {round}");
            for record in &records {
                assert_eq!(record.payload, tiny(record.lsn), "record {}", record.lsn);
            }
            for _ in 0..(1 + round % 7) * 13 {
                assert_eq!(wal.append(&tiny(next)).unwrap(), next);
                next += 1;
            }
        }
        let (_, records) = open(dir.path(), SEGMENT, 0).unwrap();
        assert_eq!(records.len() as u64, next - 1);
        assert!(
            segments(dir.path()).len() > 1,
            "the rounds cross a segment end"
        );
    }
}

#[test]
fn segments_are_written_direct_where_the_file_system_takes_it() {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = tempfile::tempdir().unwrap();
    let takes_direct = OpenOptions::new()
        .write(true)
        .create(true)
        .custom_flags(libc::O_DIRECT)
        .open(dir.path().join("probe"))
        .is_ok();
    std::fs::remove_file(dir.path().join("probe")).ok();
    let wal_dir = dir.path().join("direct");
    let (mut wal, _) = Wal::open(&wal_dir, SEGMENT, 0).unwrap();
    assert_eq!(wal.is_direct(), takes_direct);
    append_all(&mut wal, 1..=40);
    assert_eq!(
        wal.is_direct(),
        takes_direct,
        "after rolling to new segments"
    );
    drop(wal);
    let (wal, records) = Wal::open(&wal_dir, SEGMENT, 0).unwrap();
    assert_eq!(wal.is_direct(), takes_direct, "the reopened tail segment");
    assert_records(&records, 1..=40);
    let (wal, _) = Wal::open_buffered(&dir.path().join("buffered"), SEGMENT, 0).unwrap();
    assert!(!wal.is_direct());
}
