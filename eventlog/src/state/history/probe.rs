//! Idempotency keys looked up on disk before their command reaches the
//! writer.
//!
//! Deciding a post or a forward with a `client_id` asks whether the key was
//! used before: in RAM (the active and frozen layers) or in the tree. For a
//! new key, which is nearly every post, the tree's answer is "no", found by
//! a sled read on the writer thread while it holds the state's lock: a
//! third of the writer's time in the store benchmark, and a page read from
//! disk whenever the key's leaf is not in sled's cache (BENCHMARKS.md, #12).
//! So the request's own task reads the tree first ([`KeyProbe::probe`],
//! called by `Store::enqueue`) and leaves a hint that the key was absent;
//! the writer trusts the hint only if no snapshot thawed a layer since the
//! probe began.
//!
//! Why that is enough: keys reach the tree only from a frozen layer, and
//! stay in that layer, where the writer looks first, until the snapshot
//! thaws it, which counts a thaw. A key in the tree and in no layer at the
//! writer's check was thawed before the check. Thawed before the probe
//! read the count, it was in the tree before the probe's read, which would
//! have found it; thawed after, the count differs and the writer reads the
//! tree itself. A key posted after the probe is in the active layer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::command::Command;

use super::keys::idempotency_key;

/// Hints left and not yet used, at most (a command refused before its key
/// is checked leaves its hint behind); past it they are dropped, which
/// only costs the writer a read.
const MAX_HINTS: usize = 65_536;

/// Shared by a [`super::History`] and its [`KeyProbe`]s.
#[derive(Clone, Default)]
pub(super) struct KeyHints(Arc<Hints>);

#[derive(Default)]
struct Hints {
    thaws: AtomicU64,
    /// Tree key -> the thaw count before the read that did not find it.
    absent: Mutex<HashMap<Vec<u8>, u64>>,
}

impl KeyHints {
    /// A frozen layer, written to the tree, leaves RAM.
    pub(super) fn thawed(&self) {
        self.0.thaws.fetch_add(1, Ordering::AcqRel);
    }

    /// True if a probe found tree key `key` absent and no layer was thawed
    /// since; the hint is used up either way.
    pub(super) fn known_absent(&self, key: &[u8]) -> bool {
        let hint = self.0.absent.lock().remove(key);
        hint == Some(self.0.thaws.load(Ordering::Acquire))
    }

    #[cfg(test)]
    pub(super) fn pending(&self) -> usize {
        self.0.absent.lock().len()
    }
}

/// Reads a command's idempotency key in the tree ahead of the writer.
#[derive(Clone)]
pub struct KeyProbe {
    pub(super) tree: super::Records,
    pub(super) hints: KeyHints,
}

impl KeyProbe {
    /// Leaves a hint if `command` carries an idempotency key that the tree
    /// does not hold. A read error leaves none: the writer reads again.
    pub fn probe(&self, command: &Command) {
        let Some((sender, conv, client_id)) = command.idempotency_key() else {
            return;
        };
        // Read before the tree, so that a thaw between the two shows.
        let thaws = self.hints.0.thaws.load(Ordering::Acquire);
        let key = idempotency_key(sender, conv, client_id);
        if let Ok(None) = self.tree.get(&key) {
            let mut absent = self.hints.0.absent.lock();
            if absent.len() >= MAX_HINTS {
                absent.clear();
            }
            absent.insert(key, thaws);
        }
    }
}
