//! Segment files: their names, making one ready (zero-filled or
//! recycled, durable before use), and the preparer thread that keeps one
//! ready ahead of the writer.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

use super::{WalError, EXTENSION, TMP_NAME};
use crate::paced::{self, PacedWriter};

pub(super) fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:016x}.{EXTENSION}"))
}

pub(super) fn segment_numbers(dir: &Path) -> Result<Vec<u64>, WalError> {
    let mut numbers = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(stem) = name
            .to_str()
            .and_then(|n| n.strip_suffix(EXTENSION))
            .and_then(|n| n.strip_suffix('.'))
        else {
            continue;
        };
        if let Ok(number) = u64::from_str_radix(stem, 16) {
            numbers.push(number);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// A segment opened for the writer.
pub(super) struct Opened {
    pub(super) file: File,
    /// Opened with `O_DIRECT` (the file system allowed it): written a
    /// whole [`super::BLOCK`] at a time (`Wal::append`).
    pub(super) direct: bool,
}

/// Opens a segment for the writer, with `O_DIRECT` if `direct` and the
/// file system takes it, as it is without where it does not (`EINVAL`).
pub(super) fn open_segment(path: &Path, direct: bool) -> std::io::Result<Opened> {
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    if direct {
        match options.clone().custom_flags(libc::O_DIRECT).open(path) {
            Ok(file) => return Ok(Opened { file, direct: true }),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Opened {
        file: options.open(path)?,
        direct: false,
    })
}

/// How a new segment's zeros reach the device.
#[derive(Clone, Copy)]
pub(super) enum Zeroing {
    /// A piece at a time, with pauses ([`crate::paced`]): the preparer's
    /// way, while the writer's commits are in flight on the same device.
    Paced,
    /// As fast as the device takes them: on the writer's own thread (an
    /// open, a record larger than a segment), where no commit is in
    /// flight and every pause would be the writer's.
    Whole,
}

/// Makes segment `number` ready and durable under its name: a recycled
/// segment renamed (its old records are all at or below the checkpoint),
/// or a new one zero-filled under a temporary name, fsynced, renamed.
pub(super) fn prepare(
    dir: &Path,
    number: u64,
    len: u64,
    recycled: Option<u64>,
    direct: bool,
    zeroing: Zeroing,
) -> std::io::Result<Opened> {
    let path = segment_path(dir, number);
    match recycled {
        Some(old) => std::fs::rename(segment_path(dir, old), &path)?,
        None => {
            let tmp = dir.join(TMP_NAME);
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            grow_zeroed(&file, len, zeroing)?;
            std::fs::rename(&tmp, &path)?;
        }
    }
    File::open(dir)?.sync_all()?;
    open_segment(&path, direct)
}

/// Writes zeros up to `len` (real blocks, not a hole or an unwritten
/// extent, so later writes change no metadata) and fsyncs the file.
/// [`Zeroing::Paced`]: a new 16 MiB segment handed to the device at once
/// held the WAL's `fdatasync`s behind it for 9-15 ms.
pub(super) fn grow_zeroed(file: &File, len: u64, zeroing: Zeroing) -> std::io::Result<()> {
    let zeros = vec![0u8; paced::STEP as usize];
    let start = file.metadata()?.len();
    let mut paced = matches!(zeroing, Zeroing::Paced).then(|| PacedWriter::at(file, start));
    for at in (start..len).step_by(paced::STEP as usize) {
        let piece = &zeros[..(len - at).min(paced::STEP) as usize];
        match &mut paced {
            Some(paced) => paced.write_all(piece)?,
            None => file.write_all_at(piece, at)?,
        }
    }
    file.sync_all()
}

/// What the writer and the preparer thread share.
struct Shared {
    /// The segment ready for the writer, once prepared.
    ready: Option<std::io::Result<(u64, Opened)>>,
    /// Segments whose records are all checkpointed.
    recyclable: Vec<u64>,
    /// The number the next prepared segment gets.
    next_number: u64,
    stop: bool,
}

/// Keeps one segment ready ahead of the writer, on its own thread, so that
/// rolling to the next segment costs the writer nothing but a hand-over.
pub(super) struct Preparer {
    shared: Arc<(Mutex<Shared>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Preparer {
    pub(super) fn start(
        dir: PathBuf,
        segment_bytes: u64,
        first: u64,
        recyclable: Vec<u64>,
        direct: bool,
    ) -> Preparer {
        let shared = Arc::new((
            Mutex::new(Shared {
                ready: None,
                recyclable,
                next_number: first,
                stop: false,
            }),
            Condvar::new(),
        ));
        let theirs = shared.clone();
        let thread = std::thread::Builder::new()
            .name("vato-wal-prepare".into())
            .spawn(move || {
                crate::log::background_thread();
                prepare_ahead(&dir, segment_bytes, direct, &theirs)
            })
            .ok();
        Preparer { shared, thread }
    }

    /// The next segment, waiting for it if the preparer is not done.
    pub(super) fn take(&self) -> std::io::Result<(u64, Opened)> {
        let (lock, ready) = &*self.shared;
        let mut shared = lock.lock();
        loop {
            if let Some(prepared) = shared.ready.take() {
                ready.notify_all();
                return prepared;
            }
            if self.thread.is_none() {
                return Err(std::io::Error::other("the WAL preparer did not start"));
            }
            ready.wait(&mut shared);
        }
    }

    pub(super) fn recycle(&self, number: u64) {
        self.shared.0.lock().recyclable.push(number);
    }
}

fn prepare_ahead(dir: &Path, segment_bytes: u64, direct: bool, shared: &(Mutex<Shared>, Condvar)) {
    let (lock, ready) = shared;
    loop {
        let (number, recycled) = {
            let mut state = lock.lock();
            while state.ready.is_some() && !state.stop {
                ready.wait(&mut state);
            }
            if state.stop {
                return;
            }
            let number = state.next_number;
            state.next_number += 1;
            state.recyclable.sort_unstable();
            (number, state.recyclable.pop())
        };
        let prepared = prepare(dir, number, segment_bytes, recycled, direct, Zeroing::Paced)
            .map(|file| (number, file));
        let mut state = lock.lock();
        state.ready = Some(prepared);
        ready.notify_all();
    }
}

impl Drop for Preparer {
    fn drop(&mut self) {
        self.shared.0.lock().stop = true;
        self.shared.1.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
