//! Cluster mode: NATS JetStream is the sequencer and the replicated log of
//! record; every node applies the same stream to the same state machine.
//!
//! A node publishes each command (with its own node id and a request id) to
//! the command's subject: `vato.conv.<id>` for conversation commands,
//! `vato.users` and `vato.dir` for accounts and the directory. Every node
//! consumes the whole stream, in stream order, with an ordered pull consumer
//! (flow-controlled, never a plain core subscription) and queues each
//! command into its local store, whose writer decides and applies it exactly
//! as in embedded mode and records the stream sequence in the same sled
//! transaction as the events. So every node derives the same seqs, ids and
//! outcomes, and a restarted node resumes right after the last command it
//! made durable. The node that accepted a request answers it once its own
//! applier has applied that command.
//!
//! Ephemeral signals (typing) go over core NATS on `vato.eph.conv.<id>` and
//! are never stored.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use vato_eventlog::{Answer, Applied, Command, ConvId, Rejection, Store, StoreError, UserId};

use super::outcome::Unavailable;
use super::stream::open_stream;
use crate::config::Config;
use crate::hub::Hub;

/// What travels on the stream: a command and who waits for its outcome.
#[derive(Serialize, Deserialize)]
struct StreamCommand {
    /// The accepting node (random per process start).
    origin: u64,
    /// The accepting node's request number.
    request: u64,
    command: Command,
}

/// An ephemeral signal on core NATS.
#[derive(Serialize, Deserialize)]
struct Signal {
    conv_id: ConvId,
    except_user: UserId,
    /// Users the sender blocks: they get nothing (issue 14).
    #[serde(default)]
    hidden_from: Vec<UserId>,
    frame: Value,
}

/// How long creating the applier's consumer may take before it is tried
/// again.
const CONSUMER_CREATE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the applier may see nothing before it checks that its
/// consumer still delivers (see `consume`).
const STALL_CHECK: Duration = Duration::from_secs(1);

type Outcome = Result<Result<Applied, Rejection>, StoreError>;

pub struct Cluster {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    node_id: u64,
    next_request: AtomicU64,
    pending: Mutex<HashMap<u64, oneshot::Sender<Outcome>>>,
    /// Stream sequence of the last command applied and durable here.
    applied: watch::Sender<u64>,
    /// How long a publish (send + JetStream ack) may take before the
    /// request fails with 503.
    publish_timeout: Duration,
    /// How long the accepting node waits for its own applier.
    apply_timeout: Duration,
    pub slow_consumers: Arc<AtomicU64>,
    /// The stream, for its last position (readiness, `vato_stream_lag`).
    stream: stream::Stream,
}

/// The subject a command is published on.
fn subject(command: &Command) -> String {
    match command {
        Command::Register { .. }
        | Command::RecordLogin { .. }
        | Command::RevokeRefreshToken { .. }
        | Command::GoOffline { .. }
        | Command::UpdateProfile { .. }
        | Command::UpdateSettings { .. }
        | Command::CreateSettings { .. }
        | Command::SocketsOpened { .. }
        | Command::SocketsClosed { .. }
        | Command::ClearNodePresence { .. }
        | Command::AddContact { .. }
        | Command::UpdateContact { .. }
        | Command::ToggleContact { .. }
        | Command::RemoveContact { .. }
        | Command::SetAvatar { .. }
        | Command::IssueOtp { .. }
        | Command::VerifyOtp { .. }
        | Command::ExternalLogin { .. }
        | Command::RegisterDevice { .. }
        | Command::RemoveDevice { .. }
        | Command::ReadNotification { .. } => "vato.users".into(),
        Command::CreateDirect { .. } | Command::CreateGroup { .. } | Command::Probe { .. } => {
            "vato.dir".into()
        }
        Command::AddMember { conv_id, .. }
        | Command::RemoveMember { conv_id, .. }
        | Command::PostMessage { conv_id, .. }
        | Command::EditMessage { conv_id, .. }
        | Command::DeleteMessage { conv_id, .. }
        | Command::MarkRead { conv_id, .. }
        | Command::ToggleReaction { conv_id, .. }
        | Command::StoreAttachment { conv_id, .. }
        | Command::UpdateConversation { conv_id, .. }
        | Command::DeleteConversation { conv_id, .. }
        | Command::PinMessage { conv_id, .. }
        | Command::UnpinMessage { conv_id, .. }
        | Command::StartCall { conv_id, .. }
        | Command::CallAction { conv_id, .. } => format!("vato.conv.{conv_id}"),
        Command::CallTimeout { .. } => "vato.dir".into(),
        // It appends to the target conversation.
        Command::ForwardMessage { to_conv, .. } => format!("vato.conv.{to_conv}"),
        Command::PostWithAttachments { post, .. } => subject(post),
    }
}

impl Cluster {
    /// Connects, makes sure the stream exists, starts the applier and waits
    /// until this node has caught up with the stream as it was at start.
    pub async fn start(
        config: &Config,
        urls: &str,
        store: Store,
        hub: Arc<Hub>,
    ) -> Result<Arc<Cluster>, Box<dyn std::error::Error + Send + Sync>> {
        let slow_consumers = Arc::new(AtomicU64::new(0));
        let counter = slow_consumers.clone();
        let urls: Vec<&str> = urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect();
        let client = async_nats::ConnectOptions::new()
            .name("vato-server")
            .retry_on_initial_connect()
            .event_callback(move |event| {
                let counter = counter.clone();
                async move {
                    match event {
                        async_nats::Event::SlowConsumer(sid) => {
                            counter.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!("NATS slow consumer on subscription {sid}");
                        }
                        async_nats::Event::Disconnected => tracing::warn!("NATS disconnected"),
                        async_nats::Event::Connected => tracing::info!("NATS connected"),
                        other => tracing::info!("NATS event: {other}"),
                    }
                }
            })
            .connect(urls)
            .await?;
        let jetstream = jetstream::new(client.clone());
        let (stream, target) = open_stream(&jetstream, config).await?;
        let start = store.position()?.unwrap_or(0);
        let (applied, mut applied_rx) = watch::channel(start);
        let cluster = Arc::new(Cluster {
            client: client.clone(),
            jetstream,
            node_id: rand::random(),
            next_request: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            applied,
            publish_timeout: Duration::from_millis(config.nats_timeout_ms),
            apply_timeout: Duration::from_millis(config.nats_timeout_ms.max(1) * 5),
            slow_consumers,
            stream: stream.clone(),
        });
        let (answers_tx, answers_rx) = mpsc::channel(65_536);
        tokio::spawn(cluster.clone().consume(stream, store, start, answers_tx));
        tokio::spawn(cluster.clone().complete(answers_rx));
        tokio::spawn(relay_signals(client, hub));

        tracing::info!(from = start, to = target, "catching up with the stream");
        while *applied_rx.borrow_and_update() < target {
            applied_rx.changed().await?;
        }
        tracing::info!(position = target, "caught up with the stream");
        Ok(cluster)
    }

    /// The JetStream context, for the media store's Object Store bucket.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.jetstream
    }

    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    pub fn applied_position(&self) -> u64 {
        *self.applied.borrow()
    }

    /// The stream's last sequence, asked of JetStream (bounded by the
    /// publish timeout).
    pub async fn stream_last_sequence(&self) -> Result<u64, String> {
        match tokio::time::timeout(self.publish_timeout, self.stream.get_info()).await {
            Ok(Ok(info)) => Ok(info.state.last_sequence),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".into()),
        }
    }

    /// Publishes a command (the send is ordered: commands begun one after
    /// the other reach the stream in that order) and returns the future of
    /// its outcome: the JetStream ack, then this node's applier.
    pub async fn begin(
        self: &Arc<Self>,
        command: Command,
    ) -> Result<
        impl std::future::Future<Output = Result<Result<Applied, Rejection>, Unavailable>>
            + Send
            + 'static,
        Unavailable,
    > {
        // Fail fast while NATS is away: nothing is half-done, the client
        // retries (with its client_id, a retry is safe).
        if !self.connected() {
            return Err(Unavailable::Nats);
        }
        let request = self.next_request.fetch_add(1, Ordering::Relaxed);
        let subject = subject(&command);
        let payload = rmp_serde::to_vec(&StreamCommand {
            origin: self.node_id,
            request,
            command,
        })
        .map_err(|_| Unavailable::Nats)?;
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(request, tx);
        let publishing = std::time::Instant::now();
        let sent = tokio::time::timeout(
            self.publish_timeout,
            self.jetstream.publish(subject, payload.into()),
        )
        .await;
        let ack = match sent {
            Ok(Ok(ack)) => ack,
            other => {
                self.pending.lock().remove(&request);
                tracing::warn!("publish failed: {other:?}");
                return Err(Unavailable::Nats);
            }
        };
        let cluster = self.clone();
        Ok(async move {
            let acked = tokio::time::timeout(cluster.publish_timeout, ack).await;
            if !matches!(acked, Ok(Ok(_))) {
                cluster.pending.lock().remove(&request);
                tracing::warn!("publish not acknowledged: {acked:?}");
                return Err(Unavailable::Nats);
            }
            crate::telemetry::hot()
                .nats_publish
                .record(publishing.elapsed().as_secs_f64());
            match tokio::time::timeout(cluster.apply_timeout, rx).await {
                Ok(Ok(outcome)) => Ok(outcome?),
                _ => {
                    cluster.pending.lock().remove(&request);
                    Err(Unavailable::Nats)
                }
            }
        })
    }

    /// Publishes an ephemeral signal to every node's sockets.
    pub async fn signal(
        &self,
        conv_id: ConvId,
        except_user: UserId,
        hidden_from: Vec<UserId>,
        frame: Value,
    ) {
        let signal = Signal {
            conv_id,
            except_user,
            hidden_from,
            frame,
        };
        if let Ok(bytes) = serde_json::to_vec(&signal) {
            let _ = self
                .client
                .publish(format!("vato.eph.conv.{conv_id}"), bytes.into())
                .await;
        }
    }

    /// Reads the stream in order from `start + 1` and queues every command
    /// into the store. Recreates the consumer after any error, resuming
    /// right after the last command queued.
    async fn consume(
        self: Arc<Self>,
        stream: stream::Stream,
        store: Store,
        start: u64,
        answers: mpsc::Sender<(u64, Option<u64>, Answer)>,
    ) {
        let mut queued = start;
        let mut backoff = Duration::from_millis(100);
        loop {
            // Bounded: right after a NATS server died, the consumer may be
            // placed on it and never answer; a new attempt is placed anew.
            let consumer = tokio::time::timeout(
                CONSUMER_CREATE_TIMEOUT,
                stream.create_consumer(consumer::pull::OrderedConfig {
                    deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                        start_sequence: queued + 1,
                    },
                    ..Default::default()
                }),
            )
            .await
            .map_err(|_| "timed out".to_string())
            .and_then(|created| created.map_err(|e| e.to_string()));
            let messages = match consumer {
                Ok(consumer) => consumer.messages().await,
                Err(e) => {
                    tracing::warn!("cannot create the stream consumer: {e}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            };
            let mut messages = match messages {
                Ok(messages) => messages,
                Err(e) => {
                    tracing::warn!("cannot read the stream: {e}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            };
            loop {
                let next = match tokio::time::timeout(STALL_CHECK, messages.next()).await {
                    Ok(next) => next,
                    // Idle a while. Fine if there is nothing to read; but if
                    // the stream holds more than we queued, the consumer is
                    // lost (the NATS server hosting it died, or restarted
                    // without it) and async-nats would notice only after two
                    // missed 15 s heartbeats, if at all: writes on this node
                    // would time out meanwhile. Recreate it now.
                    Err(_) => match tokio::time::timeout(STALL_CHECK, stream.get_info()).await {
                        Ok(Ok(info)) if info.state.last_sequence > queued => {
                            tracing::warn!(
                                queued,
                                last = info.state.last_sequence,
                                "the stream consumer stalled, recreating"
                            );
                            break;
                        }
                        _ => continue,
                    },
                };
                let Some(message) = next else { break };
                let message = match message {
                    Ok(message) => message,
                    Err(e) => {
                        tracing::warn!("stream consumer error, recreating: {e}");
                        break;
                    }
                };
                let Ok(info) = message.info() else { continue };
                let position = info.stream_sequence;
                if position <= queued {
                    continue;
                }
                backoff = Duration::from_millis(100);
                let decoded: Result<StreamCommand, _> = rmp_serde::from_slice(&message.payload);
                let Ok(StreamCommand {
                    origin,
                    request,
                    command,
                }) = decoded
                else {
                    // Not ours (or from a newer version): every node skips it alike.
                    tracing::warn!(position, "undecodable command on the stream, skipped");
                    queued = position;
                    continue;
                };
                let answer = match store.enqueue(command, Some(position)).await {
                    Ok(answer) => answer,
                    Err(e) => {
                        tracing::error!("the store stopped: {e}");
                        return;
                    }
                };
                queued = position;
                let mine = (origin == self.node_id).then_some(request);
                if answers.send((position, mine, answer)).await.is_err() {
                    return;
                }
            }
            tokio::time::sleep(backoff).await;
        }
    }

    /// Waits for each queued command's outcome, in order, and hands it to
    /// the request that waits for it on this node.
    async fn complete(self: Arc<Self>, mut answers: mpsc::Receiver<(u64, Option<u64>, Answer)>) {
        while let Some((position, mine, answer)) = answers.recv().await {
            let outcome = answer.await.unwrap_or(Err(StoreError::Closed));
            self.applied.send_replace(position);
            if let Some(request) = mine {
                if let Some(waiter) = self.pending.lock().remove(&request) {
                    let _ = waiter.send(outcome);
                }
            }
        }
    }
}

/// Delivers every node's ephemeral signals to this node's sockets.
async fn relay_signals(client: async_nats::Client, hub: Arc<Hub>) {
    loop {
        match client.subscribe("vato.eph.>").await {
            Ok(mut subscription) => {
                while let Some(message) = subscription.next().await {
                    if let Ok(signal) = serde_json::from_slice::<Signal>(&message.payload) {
                        hub.ephemeral(
                            signal.conv_id,
                            signal.except_user,
                            &signal.hidden_from,
                            &signal.frame,
                        );
                    }
                }
            }
            Err(e) => tracing::warn!("cannot subscribe to signals: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
