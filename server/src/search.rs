//! Searches that never scan under the state lock (issue 17, finding 4: a
//! member looping a history search held the lock through whole
//! conversations and raised everyone's send latency tenfold).
//!
//! Both searches copy what they compare in small chunks, each under a
//! short read lock (a memcpy of at most [`CHUNK_MESSAGES`] contents or
//! [`CHUNK_BYTES`]), then compare outside the lock and yield to the
//! runtime before the next chunk, so the writer waits for one copy at
//! most and other requests keep their worker threads. Message ids of a
//! conversation only grow by appending, so positions taken under one lock
//! still mean the same messages under the next.
//!
//! A history search also has a budget (`--search-scan-limit` messages per
//! request): its cost does not grow with the conversation. No HTTP here.

use std::ops::Range;

use vato_eventlog::{ConvId, MessageId, Store, UserId};

/// Most messages copied under one read lock.
const CHUNK_MESSAGES: usize = 256;
/// Most content bytes copied under one read lock (a chunk ends after the
/// message that passes it).
const CHUNK_BYTES: usize = 256 * 1024;
/// Users copied under one read lock.
const CHUNK_USERS: usize = 512;

/// Which way a history search walks its range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the newest message of the range back (the default page).
    NewestFirst,
    /// From the oldest message of the range on (an `after` page).
    OldestFirst,
}

/// What a history search found.
#[derive(Debug, Default)]
pub struct Found {
    /// The matching message ids, in the order they were walked.
    pub ids: Vec<MessageId>,
    /// When the budget ran out before the range did: the last message
    /// scanned, from which the client can go on (`before=`/`after=`).
    pub stopped_at: Option<MessageId>,
}

/// Scans the messages of `conv_id` with ids in `range` for `needle`
/// (lowercase; compared case-insensitively with the content), skipping
/// deleted ones, until `want` match or `budget` messages (0: no bound)
/// have been scanned. A chunk of messages is read per read lock, with a
/// yield between chunks: the writer never waits behind a long search.
pub async fn messages(
    store: &Store,
    conv_id: ConvId,
    range: Range<MessageId>,
    direction: Direction,
    needle: &str,
    want: usize,
    budget: usize,
) -> Found {
    let mut found = Found::default();
    let budget = if budget == 0 { usize::MAX } else { budget };
    let newest_first = direction == Direction::NewestFirst;
    let (mut lo, mut hi) = (range.start, range.end);
    let mut scanned = 0usize;
    let mut chunk: Vec<(MessageId, String)> = Vec::with_capacity(CHUNK_MESSAGES);
    while lo < hi && scanned < budget && found.ids.len() < want {
        chunk.clear();
        let mut last = None;
        let mut exhausted = true;
        {
            let state = store.state();
            if state.conversation(conv_id).is_none() {
                break;
            }
            let mut bytes = 0;
            for m in state.messages_of(conv_id, lo..hi, newest_first) {
                if scanned >= budget || chunk.len() >= CHUNK_MESSAGES || bytes >= CHUNK_BYTES {
                    exhausted = false;
                    break;
                }
                scanned += 1;
                last = Some(m.id);
                if !m.is_deleted {
                    bytes += m.content.len();
                    chunk.push((m.id, m.content));
                }
            }
        }
        match (last, newest_first) {
            (Some(id), true) => hi = id,
            (Some(id), false) => lo = id.saturating_add(1),
            (None, _) => exhausted = true,
        }
        for (id, content) in &chunk {
            if found.ids.len() < want && content.to_lowercase().contains(needle) {
                found.ids.push(*id);
            }
        }
        if exhausted {
            break;
        }
        if scanned >= budget && found.ids.len() < want {
            found.stopped_at = last;
        }
        tokio::task::yield_now().await;
    }
    found
}

/// Users other than `me` whose username or display name contains
/// `needle` (lowercase), at most `want`, in id order. Every user may be
/// scanned (a directory search must find anyone), but only a chunk at a
/// time under the lock.
pub async fn users(store: &Store, me: UserId, needle: &str, want: usize) -> Vec<UserId> {
    let mut found = Vec::new();
    let mut next: UserId = 0;
    let mut chunk: Vec<(UserId, String, String)> = Vec::with_capacity(CHUNK_USERS);
    loop {
        chunk.clear();
        {
            let state = store.state();
            chunk.extend(
                state
                    .users
                    .range(next..)
                    .take(CHUNK_USERS)
                    .map(|(id, u)| (*id, u.username.clone(), u.display_name.clone())),
            );
        }
        let Some(&(last, _, _)) = chunk.last() else {
            break;
        };
        for (id, username, display_name) in &chunk {
            if *id != me
                && found.len() < want
                && (username.to_lowercase().contains(needle)
                    || display_name.to_lowercase().contains(needle))
            {
                found.push(*id);
            }
        }
        if found.len() >= want || chunk.len() < CHUNK_USERS {
            break;
        }
        next = last + 1;
        tokio::task::yield_now().await;
    }
    found
}
