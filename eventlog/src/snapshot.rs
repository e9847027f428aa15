//! Snapshots of the read models, so that a restart replays only the log's
//! tail. A snapshot is a cache: a missing or damaged one costs a full replay,
//! never data.
//!
//! File: `<data dir>/snapshot.bin`, written as `snapshot.bin.tmp`, fsynced,
//! renamed over the old one, and the directory fsynced, so a crash leaves
//! either the old or the new snapshot whole.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::codec;
use crate::state::State;

const FILE: &str = "snapshot.bin";

pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

pub fn write(dir: &Path, state: &State) -> std::io::Result<()> {
    let bytes = codec::encode(state).map_err(std::io::Error::other)?;
    let tmp = dir.join("snapshot.bin.tmp");
    {
        let mut file = File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path(dir))?;
    File::open(dir)?.sync_all()
}

/// The latest snapshot, or `None` when there is none or it cannot be read
/// (then the caller replays from offset 0 and says so).
pub fn read(dir: &Path) -> Option<State> {
    let bytes = match fs::read(path(dir)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!("cannot read snapshot, replaying the whole log: {e}");
            return None;
        }
    };
    match codec::decode::<State>(&bytes) {
        // Indexes derived from `users` are not stored (the look-alike one)
        // or were keyed differently by older versions (the phone one); the
        // revoked tokens' expiry index and the unread counters are not stored
        // either.
        Ok(mut state) => {
            state.rebuild_user_indexes();
            state.rebuild_token_index();
            state.rebuild_unread();
            state.rebuild_media_refs();
            Some(state)
        }
        Err(e) => {
            tracing::warn!("damaged snapshot ignored, replaying the whole log: {e}");
            None
        }
    }
}
