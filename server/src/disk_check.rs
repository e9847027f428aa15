//! What the data directory's file system adds to every commit.
//!
//! The WAL's writes change the segment's modification time, once per
//! clock tick (4 ms at the common `HZ=250`), and with it the inode's
//! change counter (`i_version`, always on for ext4 since Linux 6.2, which
//! makes the inode dirty even under `lazytime`). On ext4 **without a
//! journal** (and ext2) that dirty inode is a metadata buffer tied to the
//! file, and the next `fdatasync` writes it before the device's cache
//! flush: a second device round trip for the commits that follow a tick,
//! one group commit in six at 2,000 msg/s. On this project's benchmark
//! machine (ext4 without a journal) those commits took nearly twice as
//! long (mean 0.20 against 0.11 ms, p99 0.52 against 0.27 ms) and made 25
//! of the 39 commits over 2 ms in a 60 s run (BENCHMARKS.md, "One commit
//! in six writes the inode"). A journaled ext4 (the default) or xfs
//! commits a timestamp in its journal and does not wait for it at
//! `fdatasync`.
//!
//! No system call stops a write from updating the time, so the server
//! cannot avoid it itself: it says so at start-up, once, naming the mount.
//! Tried and dropped: making commits durable through the `fdatasync` of
//! another file of the same directory that is never written (the flush
//! is device-wide). ext4 writes that file's inode table block at its
//! `fdatasync` too, and the segments' inodes share it: the same writes,
//! one per tick, in a probe's block trace.

use std::path::{Path, PathBuf};

/// One line of `/proc/self/mountinfo`, the fields this check reads.
#[derive(Debug, PartialEq)]
pub struct Mount {
    /// `major:minor` of the device.
    pub device: String,
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
}

/// The mount that holds `dir` (which must be absolute and canonical): the
/// one with the longest mount point that is a prefix of it, the last such
/// line winning (a later mount hides an earlier one at the same point).
pub fn mount_of(mountinfo: &str, dir: &Path) -> Option<Mount> {
    let mut best: Option<Mount> = None;
    for line in mountinfo.lines() {
        let Some(mount) = parse_line(line) else {
            continue;
        };
        if !dir.starts_with(&mount.mount_point) {
            continue;
        }
        let longer = best.as_ref().is_none_or(|b| {
            mount.mount_point.components().count() >= b.mount_point.components().count()
        });
        if longer {
            best = Some(mount);
        }
    }
    best
}

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`
/// (proc(5)): optional fields up to the lone `-`, then the type and the
/// source.
fn parse_line(line: &str) -> Option<Mount> {
    let (before, after) = line.split_once(" - ")?;
    let mut head = before.split(' ');
    let _id = head.next()?;
    let _parent = head.next()?;
    let device = head.next()?.to_string();
    let _root = head.next()?;
    let mount_point = PathBuf::from(unescape(head.next()?));
    let mut tail = after.split(' ');
    let fs_type = tail.next()?.to_string();
    let source = unescape(tail.next()?);
    Some(Mount {
        device,
        mount_point,
        fs_type,
        source,
    })
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|digits| {
            std::str::from_utf8(digits)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// True when every `fdatasync` after a timestamp tick on this mount also
/// writes the file's inode: ext2, or ext3/ext4 without a journal.
/// `journaled` tells whether the kernel runs a journal for the mount's
/// device.
pub fn writes_inode_at_sync(mount: &Mount, journaled: bool) -> bool {
    match mount.fs_type.as_str() {
        "ext2" => true,
        "ext4" | "ext3" => !journaled,
        _ => false,
    }
}

/// Whether the kernel runs a jbd2 journal for block device `major:minor`:
/// one directory `/proc/fs/jbd2/<name>-<inode>` per journal, `<name>`
/// the device's (`vda`, `nvme0n1p2`), found through `/sys/dev/block`.
fn journaled(device: &str) -> Option<bool> {
    let link = std::fs::read_link(Path::new("/sys/dev/block").join(device)).ok()?;
    let name = link.file_name()?.to_str()?.to_string();
    let prefix = format!("{name}-");
    let journals = match std::fs::read_dir("/proc/fs/jbd2") {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(false),
        Err(_) => return None,
    };
    Some(journals.flatten().any(|entry| {
        entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(&prefix))
    }))
}

/// Logs a warning when the data directory's file system writes the WAL's
/// inode at commits (see the module's documentation). Anything it cannot
/// read (not Linux, no /proc) it leaves unsaid.
pub fn warn_about_data_dir(dir: &Path) {
    let Ok(dir) = dir.canonicalize() else {
        return;
    };
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let Some(mount) = mount_of(&mountinfo, &dir) else {
        return;
    };
    // Only the ext family has a journal to look for (tmpfs, xfs, ... have
    // no block device entry of their own to read, or no need).
    if !matches!(mount.fs_type.as_str(), "ext2" | "ext3" | "ext4") {
        return;
    }
    let Some(journaled) = journaled(&mount.device) else {
        return;
    };
    if writes_inode_at_sync(&mount, journaled) {
        tracing::warn!(
            data_dir = %dir.display(),
            mount_point = %mount.mount_point.display(),
            source = %mount.source,
            fs_type = %mount.fs_type,
            "the data directory's file system has no journal: the WAL's fdatasync also writes \
             the segment's inode once per clock tick, a second device round trip for those \
             commits (one in six at 2,000 msg/s); a journaled ext4 or xfs does not"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard,resv_strict
30 27 0:26 / /dev/shm rw,nosuid,nodev - tmpfs tmpfs rw,size=24000000k
41 27 259:2 / /srv/vato\\040data rw,relatime shared:5 - ext2 /dev/nvme0n1p2 rw
42 27 259:3 / /var/lib rw,noatime - xfs /dev/nvme1n1 rw,attr2
";

    #[test]
    fn the_longest_mount_point_holds_the_directory() {
        let root = mount_of(MOUNTINFO, Path::new("/work/main/data")).unwrap();
        assert_eq!(root.mount_point, Path::new("/"));
        assert_eq!(root.device, "254:0");
        assert_eq!(root.fs_type, "ext4");
        let shm = mount_of(MOUNTINFO, Path::new("/dev/shm/x")).unwrap();
        assert_eq!(shm.fs_type, "tmpfs");
        // Escaped spaces, and the optional fields before the `-`.
        let srv = mount_of(MOUNTINFO, Path::new("/srv/vato data/log")).unwrap();
        assert_eq!(srv.mount_point, Path::new("/srv/vato data"));
        assert_eq!(srv.source, "/dev/nvme0n1p2");
        // A path that only shares a prefix of characters is not inside.
        let lib = mount_of(MOUNTINFO, Path::new("/var/library")).unwrap();
        assert_eq!(lib.mount_point, Path::new("/"));
    }

    #[test]
    fn only_ext_without_a_journal_writes_the_inode() {
        let at = |dir: &str| mount_of(MOUNTINFO, Path::new(dir)).unwrap();
        assert!(writes_inode_at_sync(&at("/work"), false));
        assert!(!writes_inode_at_sync(&at("/work"), true));
        assert!(writes_inode_at_sync(&at("/srv/vato data"), true));
        assert!(!writes_inode_at_sync(&at("/var/lib/vato"), false));
        assert!(!writes_inode_at_sync(&at("/dev/shm/vato"), false));
    }

    #[test]
    fn this_machines_mounts_parse() {
        // Every line of the real table parses, and the root is found.
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        for line in mountinfo.lines() {
            assert!(parse_line(line).is_some(), "unparsed: {line}");
        }
        assert!(mount_of(&mountinfo, Path::new("/")).is_some());
    }
}
