//! Fan-out: routes durable events and ephemeral signals to the sockets of
//! each conversation.
//!
//! Every socket has a bounded queue. The hub never waits on a socket: when
//! a queue is full the socket is closed with 4408 and its client resumes
//! with `since` — a slow reader never slows the others, and nothing is
//! dropped silently.
//!
//! The hub also knows, per conversation, the last seq it has fanned out.
//! A socket registers and reads that seq under the same lock, so every
//! event after it reaches the socket's queue and every event up to it is
//! in the log: that is the seam that makes `since` resume exact.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use vato_eventlog::{ConvId, Envelope, Event, Offset, Seq, State, Store, UserId};

use crate::render;

/// What a socket's writer receives from the hub.
pub enum Out {
    /// The conversation's events of one durable batch, in seq order, each
    /// rendered for its actor and for everyone else. One queue slot per
    /// batch: a big group commit does not overflow a fast reader's queue.
    Events(Arc<[RenderedEvent]>),
    /// An ephemeral frame (typing, presence): no seq.
    Ephemeral(Arc<str>),
    /// This node's delivery probe came through the log (only the probe's
    /// own subscriber, in [`PROBE_ROOM`], receives it).
    Probe { nonce: u64 },
    /// Close with this code once everything queued before it is written
    /// (a deleted conversation: its `conversation.deleted` frame, then
    /// 4404).
    Close(u16),
}

/// The room of the delivery probe's subscriber: a conversation id no
/// conversation ever has, so no user can list, search or open a socket on
/// it (a handshake for it is a 404).
pub const PROBE_ROOM: ConvId = ConvId::MAX;

pub struct RenderedEvent {
    pub seq: Seq,
    pub actor: Option<UserId>,
    pub for_actor: String,
    pub for_others: String,
}

impl RenderedEvent {
    pub fn text_for(&self, user: UserId) -> &str {
        if self.actor == Some(user) {
            &self.for_actor
        } else {
            &self.for_others
        }
    }
}

/// The hub's side of one socket.
pub struct SocketHandle {
    pub id: u64,
    pub user_id: UserId,
    pub conv_id: ConvId,
    queue: mpsc::Sender<Out>,
    /// The close code the socket must close with; 0 while it lives. The
    /// socket's writer watches it.
    closing: watch::Sender<u16>,
    /// A replay (`since`/`sync`) is running: set by the reader when it
    /// asks for one, cleared by the writer after `sync.done`; a second
    /// `sync` meanwhile is refused with `busy`.
    pub replaying: AtomicBool,
}

impl SocketHandle {
    pub fn close(&self, code: u16) {
        // The first reason wins: a 4408 is not turned into a 1001.
        self.closing.send_if_modified(|current| {
            let first = *current == 0;
            if first {
                *current = code;
            }
            first
        });
    }

    /// The socket was told to close: its writer sends nothing more but the
    /// close frame.
    pub fn is_closing(&self) -> bool {
        *self.closing.borrow() != 0
    }

    /// The close code the socket must close with (0 while it lives), to
    /// wait on with [`closed`]; the writer subscribes once.
    pub fn closing(&self) -> watch::Receiver<u16> {
        self.closing.subscribe()
    }
}

/// Resolves with the close code once the socket must close.
pub async fn closed(closing: &mut watch::Receiver<u16>) -> u16 {
    let code = match closing.wait_for(|code| *code != 0).await {
        Ok(code) => *code,
        Err(_) => 1000,
    };
    code
}

/// A user came online or went offline, as the fan-out delivers it.
struct PresenceChange {
    user_id: UserId,
    /// The conversations whose sockets are told.
    convs: Vec<ConvId>,
    /// The users they block, who are not told (issue 14).
    blocked: Vec<UserId>,
    frame: Arc<str>,
}

#[derive(Default)]
struct Room {
    /// Last seq fanned out (durable and delivered to the queues).
    last_seq: Seq,
    /// By socket id: a socket leaving a room of thousands is not a scan.
    sockets: HashMap<u64, Arc<SocketHandle>>,
    /// The conversation was deleted: a socket whose handshake passed just
    /// before that and registers after it is closed with 4404 at once.
    deleted: bool,
}

#[derive(Default)]
pub struct Hub {
    rooms: Mutex<HashMap<ConvId, Room>>,
    next_id: AtomicU64,
    /// Log offset of the last batch fanned out. Requests wait for it, so
    /// an acknowledged event is already queued for every socket and
    /// counted in its room's `last_seq` (a `since` replay right after a
    /// 201 includes it before `sync.done`).
    fanned_out: watch::Sender<Offset>,
    /// The most frames one socket's queue held right after a delivery,
    /// since the last scrape of `/metrics`.
    queue_high_water: AtomicUsize,
    /// This node's probe id: only its own probes reach [`PROBE_ROOM`] (in
    /// cluster mode every node fans out every node's probes).
    probe_node: AtomicU64,
    /// The base of absolute media URLs in frames (`--public-url`, or
    /// `http://` and the listen address), set when the server starts
    /// serving; empty (relative URLs) until then.
    media_base: std::sync::OnceLock<Arc<str>>,
}

impl Hub {
    /// A hub that knows every conversation's last seq at start.
    pub fn new(state: &State) -> Hub {
        let rooms = state
            .conversations
            .values()
            .map(|c| {
                (
                    c.id,
                    Room {
                        last_seq: c.last_seq,
                        sockets: HashMap::new(),
                        deleted: false,
                    },
                )
            })
            .collect();
        Hub {
            rooms: Mutex::new(rooms),
            next_id: AtomicU64::new(1),
            fanned_out: watch::Sender::new(0),
            queue_high_water: AtomicUsize::new(0),
            probe_node: AtomicU64::new(0),
            media_base: std::sync::OnceLock::new(),
        }
    }

    /// Sets the base of the media URLs in frames (once; later calls are
    /// ignored).
    pub fn set_media_base(&self, base: &str) {
        let _ = self.media_base.set(base.trim_end_matches('/').into());
    }

    /// The base of the media URLs in frames (empty: relative URLs).
    pub fn media_base(&self) -> Arc<str> {
        self.media_base.get().cloned().unwrap_or_else(|| "".into())
    }

    /// Adds a socket; returns its handle, its queue, and the seq up to
    /// which everything is in the log (and nothing after it is missed).
    pub fn register(
        &self,
        conv_id: ConvId,
        user_id: UserId,
        queue: usize,
    ) -> (Arc<SocketHandle>, mpsc::Receiver<Out>, Seq) {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let handle = Arc::new(SocketHandle {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            user_id,
            conv_id,
            queue: tx,
            closing: watch::Sender::new(0),
            replaying: AtomicBool::new(false),
        });
        let mut rooms = self.rooms.lock();
        let room = rooms.entry(conv_id).or_default();
        room.sockets.insert(handle.id, handle.clone());
        if room.deleted {
            handle.close(4404);
        }
        (handle, rx, room.last_seq)
    }

    pub fn unregister(&self, handle: &SocketHandle) {
        let mut rooms = self.rooms.lock();
        if let Some(room) = rooms.get_mut(&handle.conv_id) {
            room.sockets.remove(&handle.id);
        }
    }

    /// Fans out one durable batch. Renders each event once per audience,
    /// only for conversations with sockets. The state's read lock is taken
    /// per event, not for the whole batch: the store's writer needs the
    /// write lock for the next batch, and rendering a big batch under one
    /// read lock held it up (a fifth of its time at 12k messages/s).
    pub fn fan_out<'e>(&self, store: &Store, batch: impl IntoIterator<Item = &'e Envelope>) {
        let mut rooms = self.rooms.lock();
        // Per conversation: its events of this batch, in order.
        let mut per_room: HashMap<ConvId, Vec<RenderedEvent>> = HashMap::new();
        let mut presence: Vec<PresenceChange> = Vec::new();
        let mut deleted: Vec<ConvId> = Vec::new();
        for envelope in batch {
            let Some((conv_id, seq)) = envelope.event.conv_seq() else {
                if let Event::ProbeRecorded { node, nonce } = envelope.event {
                    self.deliver_probe(&rooms, node, nonce);
                    continue;
                }
                let state = store.state();
                if let Some((user_id, frame)) = render::presence_frame(&state, &envelope.event) {
                    let convs = state.conversations_of(user_id).map(|c| c.id).collect();
                    let blocked = state.blocked_by(user_id).collect();
                    presence.push(PresenceChange {
                        user_id,
                        convs,
                        blocked,
                        frame: frame.into(),
                    });
                }
                continue;
            };
            let room = rooms.entry(conv_id).or_default();
            room.last_seq = room.last_seq.max(seq);
            if let Event::ConversationDeleted { .. } = &envelope.event {
                room.deleted = true;
            }
            if room.sockets.is_empty() {
                continue;
            }
            if let Event::MemberRemoved { user_id, .. } = &envelope.event {
                for socket in room.sockets.values().filter(|s| s.user_id == *user_id) {
                    socket.close(4403);
                }
            }
            if let Event::ConversationDeleted { .. } = &envelope.event {
                deleted.push(conv_id);
            }
            let state = store.state();
            let actor = render::actor(&envelope.event, &state);
            let Some(for_others) = render::event_text(&state, envelope, None) else {
                continue;
            };
            let for_actor = actor
                .and_then(|actor| render::event_text(&state, envelope, Some(actor)))
                .unwrap_or_default();
            drop(state);
            per_room.entry(conv_id).or_default().push(RenderedEvent {
                seq,
                actor,
                for_actor,
                for_others,
            });
        }
        for (conv_id, events) in per_room {
            let events: Arc<[RenderedEvent]> = events.into();
            if let Some(room) = rooms.get(&conv_id) {
                for socket in room.sockets.values() {
                    self.deliver(socket, Out::Events(events.clone()));
                }
            }
        }
        // A deleted conversation's sockets close with 4404 after its last
        // frames (the `conversation.deleted` among them).
        for conv_id in deleted {
            if let Some(room) = rooms.get(&conv_id) {
                for socket in room.sockets.values() {
                    self.deliver(socket, Out::Close(4404));
                }
            }
        }
        // To the sockets of every conversation the user shares, theirs and
        // those of the users they block excepted; no seq, so not ordered
        // against the events above.
        for PresenceChange {
            user_id,
            convs,
            blocked,
            frame,
        } in presence
        {
            for conv_id in convs {
                if let Some(room) = rooms.get(&conv_id) {
                    let audience = room
                        .sockets
                        .values()
                        .filter(|s| s.user_id != user_id && !blocked.contains(&s.user_id));
                    for socket in audience {
                        self.deliver(socket, Out::Ephemeral(frame.clone()));
                    }
                }
            }
        }
    }

    /// A probe reaches the probe's subscriber if it is this node's.
    fn deliver_probe(&self, rooms: &HashMap<ConvId, Room>, node: u64, nonce: u64) {
        if node != self.probe_node.load(Ordering::Relaxed) {
            return;
        }
        if let Some(room) = rooms.get(&PROBE_ROOM) {
            for socket in room.sockets.values() {
                self.deliver(socket, Out::Probe { nonce });
            }
        }
    }

    /// Sets the probe id this node's probes carry.
    pub fn set_probe_node(&self, node: u64) {
        self.probe_node.store(node, Ordering::Relaxed);
    }

    /// The fullest a socket queue was since the last call (for `/metrics`).
    pub fn take_queue_high_water(&self) -> usize {
        self.queue_high_water.swap(0, Ordering::Relaxed)
    }

    /// Waits until the batch holding log offset `offset` has been fanned
    /// out.
    /// The offset of the last event fanned out (durable, in every
    /// socket's queue), as it changes.
    pub fn fanned_out_watch(&self) -> watch::Receiver<Offset> {
        self.fanned_out.subscribe()
    }

    pub async fn fanned_out_to(&self, offset: Offset) {
        let _ = self.fanned_out.subscribe().wait_for(|o| *o >= offset).await;
    }

    /// Sends an ephemeral frame to every socket of the conversation except
    /// those of `except_user` and of the users in `hidden_from`.
    pub fn ephemeral(
        &self,
        conv_id: ConvId,
        except_user: UserId,
        hidden_from: &[UserId],
        frame: &Value,
    ) {
        let text: Arc<str> = frame.to_string().into();
        let rooms = self.rooms.lock();
        if let Some(room) = rooms.get(&conv_id) {
            let audience = room
                .sockets
                .values()
                .filter(|s| s.user_id != except_user && !hidden_from.contains(&s.user_id));
            for socket in audience {
                self.deliver(socket, Out::Ephemeral(text.clone()));
            }
        }
    }

    /// Closes every socket (shutdown: 1001).
    pub fn close_all(&self, code: u16) {
        for room in self.rooms.lock().values() {
            for socket in room.sockets.values() {
                socket.close(code);
            }
        }
    }

    /// Closes the sockets of one user; returns how many.
    pub fn close_user(&self, user_id: UserId, code: u16) -> usize {
        let mut count = 0;
        for room in self.rooms.lock().values() {
            for socket in room.sockets.values().filter(|s| s.user_id == user_id) {
                socket.close(code);
                count += 1;
            }
        }
        count
    }

    /// Client sockets (the probe's subscriber is not one).
    pub fn socket_count(&self) -> usize {
        self.rooms
            .lock()
            .iter()
            .filter(|(id, _)| **id != PROBE_ROOM)
            .map(|(_, r)| r.sockets.len())
            .sum()
    }

    fn deliver(&self, socket: &SocketHandle, out: Out) {
        match socket.queue.try_send(out) {
            Ok(()) => {
                let waiting = socket.queue.max_capacity() - socket.queue.capacity();
                // A load first: the read-modify-write only when it grows.
                if waiting > self.queue_high_water.load(Ordering::Relaxed) {
                    self.queue_high_water.fetch_max(waiting, Ordering::Relaxed);
                }
            }
            Err(mpsc::error::TrySendError::Full(_)) => socket.close(4408),
            // The socket is going away; it unregisters itself.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// Most waiting batches the fan-out sends as one.
const MERGED_BATCHES: usize = 64;

/// The fan-out task: every durable batch from the store, in log order.
pub async fn run_fan_out(
    hub: Arc<Hub>,
    store: vato_eventlog::Store,
    mut committed: vato_eventlog::CommittedRx,
) {
    let latency = &crate::telemetry::hot().fan_out;
    let mut ready = Vec::new();
    while let Some(first) = committed.recv().await {
        // Batches that are already waiting go out together: one queue
        // entry per socket, not one per batch. A fan-out that fell behind
        // (its thread starved on a busy machine) would otherwise push a
        // burst of entries into every queue faster than the sockets'
        // writers, starved too, take them, and close readers that keep up
        // with 4408.
        ready.push(first);
        while ready.len() < MERGED_BATCHES {
            match committed.try_recv() {
                Ok(batch) => ready.push(batch),
                Err(_) => break,
            }
        }
        let events = ready.iter().flat_map(|b| b.events.iter());
        render::with_media_base(hub.media_base(), || hub.fan_out(&store, events));
        // The last batch holds the highest offset (log order): one
        // notification for all of them.
        if let Some(last) = ready.last().and_then(|b| b.events.last()) {
            hub.fanned_out.send_modify(|o| *o = (*o).max(last.offset));
        }
        for batch in ready.drain(..) {
            latency.record(batch.durable_at.elapsed().as_secs_f64());
        }
    }
}
