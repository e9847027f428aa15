//! The pusher (issue 15): hands each notification to `--push-webhook`.
//!
//! The log is the outbox. Notifications are events (`NotificationsCreated`,
//! decided with the message or call that caused them), so the pusher reads
//! the committed log after its cursor, POSTs each notification with an
//! `Idempotency-Key` header equal to its id, retries with a doubling wait
//! (250 ms up to `--push-retry-max-ms`) until the webhook answers 2xx, and
//! only then moves its cursor past it and writes the cursor down:
//!
//! * at least once: a crash between the 2xx and the cursor's write sends
//!   that one notification again on restart, with the same
//!   `Idempotency-Key` (the receiver drops the repeat);
//! * never lost: the cursor never passes a notification without its 2xx;
//! * never re-sent after its 2xx was recorded.
//!
//! Embedded mode keeps the cursor in `<data-dir>/push-cursor` (replaced
//! whole and synced). Cluster mode keeps it in the JetStream KV bucket
//! `<stream>_push`, and only the node holding the lease in the bucket
//! `<stream>_push_lease` (an entry that expires [`LEASE_TTL`] after its
//! last renewal; taken with KV's create-if-absent, renewed with a
//! compare-and-set on its revision) delivers; the cursor is written with a
//! compare-and-set too, so a node that lost the lease cannot move it. A
//! holder that dies is replaced within the lease's time to live.
//!
//! Without a cursor (the first start with a webhook) the pusher starts at
//! the end of the log as it is at start-up, before anything is served.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use vato_eventlog::state::Notification;
use vato_eventlog::{Envelope, Event, NotificationId, Offset, Store};

use crate::app::App;
use crate::render;
use crate::startup::{replace_durably, BoxError};

/// A cluster lease's time to live: how long a dead holder blocks pushes.
const LEASE_TTL: Duration = Duration::from_secs(10);
/// How often the holder renews its lease, and others try to take it.
const LEASE_RENEW: Duration = Duration::from_secs(2);
/// The first wait after a failed push; it doubles on each failure.
const FIRST_RETRY: Duration = Duration::from_millis(250);
/// The cursor's file in the data directory (embedded mode).
const CURSOR_FILE: &str = "push-cursor";
/// How many log events one read takes.
const READ_BATCH: usize = 512;

/// Where the pusher is: every notification of an event before `offset`,
/// and those of the event at `offset` with ids below `next_id`, were
/// answered 2xx.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
struct Cursor {
    offset: Offset,
    next_id: NotificationId,
}

/// Where the cursor is kept, and (cluster mode) the lease.
enum Keeper {
    File(std::path::PathBuf),
    Cluster(Box<Lease>),
}

struct Lease {
    node: String,
    lease: kv::Store,
    cursor: kv::Store,
    /// The cursor entry's revision as this node last wrote or read it.
    cursor_revision: u64,
    /// Where to start if the cursor entry is missing (its creation at
    /// start-up failed): the end of the log at this node's start.
    start: Cursor,
    /// Cleared by the renewal task when the lease is lost.
    held: Arc<AtomicBool>,
}

/// The pusher, ready to run.
pub struct Pusher {
    app: Arc<App>,
    url: String,
    http: reqwest::Client,
    keeper: Keeper,
    retry_max: Duration,
    /// The end of the log at start-up: durable, all of it.
    durable_end: Offset,
}

/// Opens the pusher when `--push-webhook` is set, and writes its first
/// cursor (the end of the log now) if there is none: called at start-up,
/// before anything is served, so no notification is older than it.
pub async fn open(app: Arc<App>) -> Result<Option<Pusher>, BoxError> {
    let Some(url) = app.config.push_webhook.clone() else {
        return Ok(None);
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(app.config.push_timeout_ms))
        .build()?;
    let start = {
        let state = app.store.state();
        Cursor {
            offset: state.next_offset,
            next_id: state.last_notification_id() + 1,
        }
    };
    let keeper = match app.sequencer.cluster() {
        None => {
            let path = app.config.data_dir.join(CURSOR_FILE);
            if !path.exists() {
                write_cursor_file(&path, start)?;
            }
            Keeper::File(path)
        }
        Some(cluster) => {
            let lease = Lease::open(&app, cluster.jetstream(), start).await?;
            let first = serde_json::to_vec(&start)?;
            // Only the first node with a webhook sets it; later ones keep it.
            let _ = lease.cursor.create("cursor", first.into()).await;
            Keeper::Cluster(Box::new(lease))
        }
    };
    let retry_max = Duration::from_millis(app.config.push_retry_max_ms);
    Ok(Some(Pusher {
        app,
        url,
        http,
        keeper,
        retry_max,
        durable_end: start.offset,
    }))
}

fn write_cursor_file(path: &std::path::Path, cursor: Cursor) -> std::io::Result<()> {
    let dir = path.parent().expect("the cursor file is in the data dir");
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(CURSOR_FILE);
    replace_durably(dir, name, &serde_json::to_string(&cursor)?)
}

impl Lease {
    async fn open(app: &App, js: &jetstream::Context, start: Cursor) -> Result<Lease, BoxError> {
        let stream = &app.config.stream_name;
        let storage = match app.config.stream_storage.as_str() {
            "memory" => jetstream::stream::StorageType::Memory,
            _ => jetstream::stream::StorageType::File,
        };
        let bucket = |name: String, max_age: Duration| {
            open_bucket(js, name, max_age, storage, app.config.stream_replicas)
        };
        let lease = bucket(format!("{stream}_push_lease"), LEASE_TTL).await?;
        let cursor = bucket(format!("{stream}_push"), Duration::ZERO).await?;
        Ok(Lease {
            node: app.presence.node.to_string(),
            lease,
            cursor,
            cursor_revision: 0,
            start,
            held: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Waits until this node holds the lease, and keeps renewing it in the
    /// background until that fails.
    async fn acquire(&mut self) {
        loop {
            let taken = match self.lease.entry("holder").await {
                // Ours already (a renewal that failed once): take it back.
                Ok(Some(e)) if e.operation == kv::Operation::Put && e.value == self.node => self
                    .lease
                    .update("holder", self.node.clone().into(), e.revision)
                    .await
                    .ok(),
                _ => self
                    .lease
                    .create("holder", self.node.clone().into())
                    .await
                    .ok(),
            };
            if let Some(revision) = taken {
                tracing::info!("push: this node delivers the notifications now");
                let held = Arc::new(AtomicBool::new(true));
                self.held = held.clone();
                tokio::spawn(renew(self.lease.clone(), self.node.clone(), revision, held));
                return;
            }
            tokio::time::sleep(LEASE_RENEW).await;
        }
    }
}

/// The KV bucket `name` (one value a key; entries expire after `max_age`
/// unless zero), created if missing by whichever node comes first. Its
/// stream is made here with the settings KV gives its buckets, rather
/// than by `create_key_value`, which first reads the account's JetStream
/// info, and async-nats 0.51 cannot parse NATS 2.9's.
async fn open_bucket(
    js: &jetstream::Context,
    name: String,
    max_age: Duration,
    storage: jetstream::stream::StorageType,
    replicas: usize,
) -> Result<kv::Store, BoxError> {
    let config = jetstream::stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_age,
        storage,
        num_replicas: replicas.max(1),
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: jetstream::stream::DiscardPolicy::New,
        ..Default::default()
    };
    js.get_or_create_stream(config).await?;
    Ok(js.get_key_value(name).await?)
}

async fn renew(lease: kv::Store, node: String, mut revision: u64, held: Arc<AtomicBool>) {
    loop {
        tokio::time::sleep(LEASE_RENEW).await;
        // Given up by the pusher (its cursor moved under it): let it go.
        if !held.load(Ordering::Acquire) {
            return;
        }
        match lease.update("holder", node.clone().into(), revision).await {
            Ok(next) => revision = next,
            Err(e) => {
                tracing::warn!("push: lease lost: {e}");
                held.store(false, Ordering::Release);
                return;
            }
        }
    }
}

impl Keeper {
    /// Whether this node may deliver now.
    fn holding(&self) -> bool {
        match self {
            Keeper::File(_) => true,
            Keeper::Cluster(lease) => lease.held.load(Ordering::Acquire),
        }
    }

    /// Becomes the deliverer (cluster: waits for the lease), and reads
    /// the cursor.
    async fn begin(&mut self) -> Result<Cursor, BoxError> {
        match self {
            Keeper::File(path) => Ok(serde_json::from_slice(&std::fs::read(path)?)?),
            Keeper::Cluster(lease) => {
                lease.acquire().await;
                match lease.cursor.entry("cursor").await? {
                    Some(entry) => {
                        lease.cursor_revision = entry.revision;
                        Ok(serde_json::from_slice(&entry.value)?)
                    }
                    None => {
                        let value = serde_json::to_vec(&lease.start)?;
                        lease.cursor_revision = lease.cursor.create("cursor", value.into()).await?;
                        Ok(lease.start)
                    }
                }
            }
        }
    }

    /// Writes the cursor down. Cluster: only if nobody moved it since this
    /// node read it (else the lease was lost).
    async fn save(&mut self, cursor: Cursor) -> Result<(), BoxError> {
        match self {
            Keeper::File(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || write_cursor_file(&path, cursor)).await??;
                Ok(())
            }
            Keeper::Cluster(lease) => {
                let value = serde_json::to_vec(&cursor)?;
                match lease
                    .cursor
                    .update("cursor", value.into(), lease.cursor_revision)
                    .await
                {
                    Ok(revision) => {
                        lease.cursor_revision = revision;
                        Ok(())
                    }
                    Err(e) => {
                        lease.held.store(false, Ordering::Release);
                        Err(format!("the push cursor moved under this node: {e}").into())
                    }
                }
            }
        }
    }
}

impl Pusher {
    /// Delivers forever. Cluster mode: while this node holds the lease.
    pub async fn run(mut self) {
        loop {
            let cursor = match self.keeper.begin().await {
                Ok(cursor) => cursor,
                Err(e) => {
                    tracing::error!("push: cannot read the cursor: {e}");
                    tokio::time::sleep(LEASE_RENEW).await;
                    continue;
                }
            };
            if let Err(e) = self.deliver_from(cursor).await {
                tracing::warn!("push: stopped delivering: {e}");
                tokio::time::sleep(LEASE_RENEW).await;
            }
        }
    }

    /// Delivers every notification after `cursor`, following the log as
    /// it grows; returns when this node may no longer deliver.
    async fn deliver_from(&mut self, mut cursor: Cursor) -> Result<(), BoxError> {
        let mut committed = self.app.hub.fanned_out_watch();
        let mut saved = cursor;
        loop {
            if !self.keeper.holding() {
                return Err("the lease was lost".into());
            }
            // Durable events only: those fanned out, or older than the start.
            let end = self.durable_end.max(*committed.borrow_and_update() + 1);
            let batch = read_batch(self.app.store.clone(), cursor.offset, end).await?;
            if batch.is_empty() {
                if cursor != saved {
                    self.keeper.save(cursor).await?;
                    saved = cursor;
                }
                // New events, or a second (a lost lease is noticed).
                let _ = tokio::time::timeout(Duration::from_secs(1), committed.changed()).await;
                continue;
            }
            for envelope in batch {
                for notification in notifications(&envelope) {
                    if notification.id < cursor.next_id {
                        continue;
                    }
                    if !self.deliver(&notification).await {
                        return Err("the lease was lost".into());
                    }
                    cursor = Cursor {
                        offset: envelope.offset,
                        next_id: notification.id + 1,
                    };
                    self.keeper.save(cursor).await?;
                    saved = cursor;
                }
                cursor.offset = envelope.offset + 1;
            }
        }
    }

    /// POSTs one notification until a 2xx; false if the lease went first.
    /// A recipient who left the conversation since is not told.
    async fn deliver(&self, notification: &Notification) -> bool {
        let payload: Option<Value> = {
            let state = self.app.store.state();
            state
                .is_member(notification.conv_id, notification.user)
                .then(|| render::notifications::push_payload(&state, notification))
        };
        let Some(payload) = payload else {
            return true;
        };
        let id = notification.id.to_string();
        let mut wait = FIRST_RETRY;
        loop {
            if !self.keeper.holding() {
                return false;
            }
            let sent = self
                .http
                .post(&self.url)
                .header("Idempotency-Key", &id)
                .header("Vato-Node", self.app.presence.node.to_string())
                .json(&payload)
                .send()
                .await;
            match sent {
                Ok(answer) if answer.status().is_success() => {
                    metrics::counter!("vato_push_delivered_total").increment(1);
                    return true;
                }
                Ok(answer) => {
                    tracing::warn!(id, status = %answer.status(), "push refused; retrying in {wait:?}")
                }
                Err(e) => tracing::warn!(id, "push failed: {e}; retrying in {wait:?}"),
            }
            metrics::counter!("vato_push_failures_total").increment(1);
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(self.retry_max);
        }
    }
}

/// The notifications an event creates, as the state machine keeps them.
fn notifications(envelope: &Envelope) -> Vec<Notification> {
    let Event::NotificationsCreated {
        first_id,
        users,
        kind,
        conv_id,
        message_id,
        call_id,
        from,
        at,
    } = &envelope.event
    else {
        return Vec::new();
    };
    (*first_id..)
        .zip(users)
        .map(|(id, user)| Notification {
            id,
            user: *user,
            kind: kind.clone(),
            conv_id: *conv_id,
            message_id: *message_id,
            call_id: *call_id,
            from: *from,
            created_at: *at,
            is_read: false,
        })
        .collect()
}

/// Up to [`READ_BATCH`] events from `offset` on, before `end`.
async fn read_batch(store: Store, offset: Offset, end: Offset) -> Result<Vec<Envelope>, BoxError> {
    if offset >= end {
        return Ok(Vec::new());
    }
    let events = tokio::task::spawn_blocking(move || {
        store
            .log()
            .read_from(offset)
            .take_while(|e| e.as_ref().map_or(true, |e| e.offset < end))
            .take(READ_BATCH)
            .collect::<Result<Vec<_>, _>>()
    })
    .await??;
    Ok(events)
}
