//! Batches that are durable in the WAL but not yet projected into sled's
//! chunks and index: the part of the log that readers take from memory.
//!
//! The writer pushes a batch once its WAL record is fsynced; the projector
//! writes it into sled and then drops it here. A reader takes a [`View`]
//! (the pending batches, shared, and the first offset they hold) and reads
//! sled only *below* that offset, the rest from the view: so a batch is
//! never missed between the two (it is dropped here only after sled has
//! it) nor read twice (sled's copy of it is at or above the view's first
//! offset, where sled is not read).

use std::collections::VecDeque;
use std::sync::Arc;

use super::wal::Lsn;
use crate::event::{ConvId, Envelope, Offset, Seq};

/// One group commit, as the writer made it durable.
#[derive(Clone, Debug)]
pub struct Batch {
    pub lsn: Lsn,
    pub events: Arc<[Envelope]>,
    /// The WAL record's payload: the encoded events, copied into chunks
    /// as they are.
    pub record: Arc<[u8]>,
    /// Cluster mode: the stream position of the batch's last command.
    pub position: Option<u64>,
}

#[derive(Default)]
pub struct Pending {
    batches: VecDeque<Batch>,
    /// Events held, to bound how far the projector may fall behind.
    events: usize,
}

impl Pending {
    pub fn push(&mut self, batch: Batch) {
        self.events += batch.events.len();
        self.batches.push_back(batch);
    }

    /// Up to `max_events` events' worth of the oldest batches (at least
    /// one batch), for the projector.
    pub fn oldest(&self, max_events: usize) -> Vec<Batch> {
        let mut out = Vec::new();
        let mut events = 0;
        for batch in &self.batches {
            if !out.is_empty() && events + batch.events.len() > max_events {
                break;
            }
            events += batch.events.len();
            out.push(batch.clone());
        }
        out
    }

    /// The projector wrote every batch up to `lsn` into sled.
    pub fn projected(&mut self, lsn: Lsn) {
        while self.batches.front().is_some_and(|b| b.lsn <= lsn) {
            if let Some(batch) = self.batches.pop_front() {
                self.events -= batch.events.len();
            }
        }
    }

    pub fn len_events(&self) -> usize {
        self.events
    }

    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// The newest stream position among the pending batches.
    pub fn position(&self) -> Option<u64> {
        self.batches.iter().rev().find_map(|b| b.position)
    }

    pub fn view(&self) -> View {
        View {
            batches: self.batches.iter().map(|b| b.events.clone()).collect(),
        }
    }
}

/// What a reader took of the pending batches.
pub struct View {
    batches: Vec<Arc<[Envelope]>>,
}

impl View {
    /// The first offset the view holds: read sled only below it. With
    /// nothing pending, sled has everything.
    pub fn first_offset(&self) -> Offset {
        self.events().next().map_or(Offset::MAX, |e| e.offset)
    }

    /// The offset after the last event held, if any.
    pub fn next_offset(&self) -> Option<Offset> {
        self.batches
            .iter()
            .rev()
            .find_map(|b| b.last())
            .map(|e| e.offset + 1)
    }

    pub fn events(&self) -> impl DoubleEndedIterator<Item = &Envelope> {
        self.batches.iter().flat_map(|b| b.iter())
    }

    pub fn get(&self, offset: Offset) -> Option<&Envelope> {
        self.events().find(|e| e.offset == offset)
    }

    /// Events of `conv` with seq > `after`, oldest first.
    pub fn conv_after(&self, conv: ConvId, after: Seq) -> impl Iterator<Item = &Envelope> {
        self.events()
            .filter(move |e| matches!(e.event.conv_seq(), Some((c, s)) if c == conv && s > after))
    }

    /// Events of `conv` with seq < `before`, newest first.
    pub fn conv_before(&self, conv: ConvId, before: Seq) -> impl Iterator<Item = &Envelope> {
        self.events()
            .rev()
            .filter(move |e| matches!(e.event.conv_seq(), Some((c, s)) if c == conv && s < before))
    }
}
