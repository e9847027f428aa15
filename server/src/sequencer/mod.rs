//! The sequencer: the one way a command reaches the state machine, in one
//! total order.
//!
//! Embedded mode queues commands into the local store, whose writer decides
//! and applies them. Cluster mode publishes them to NATS JetStream, which
//! orders them for every node; each node's applier then queues them into
//! its own store alike (see [`cluster`]). Callers see the same thing either
//! way: a command's outcome, or [`Unavailable`] when the log cannot take it
//! now. How an outcome is shown to a client is the API's and the socket's
//! business, not this module's.

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use vato_eventlog::{Command, ConvId, Store, StoreError, UserId};

use crate::hub::Hub;

mod cluster;
mod outcome;
mod stream;

pub use cluster::Cluster;
pub use outcome::{Outcome, Pending, Unavailable};

/// Records a command's outcome in the metrics and passes it on.
fn observe(begun: Instant, outcome: Result<Outcome, Unavailable>) -> Result<Outcome, Unavailable> {
    match &outcome {
        Ok(Ok(applied)) => {
            let hot = crate::telemetry::hot();
            hot.ack.record(begun.elapsed().as_secs_f64());
            hot.ack_wake
                .record(applied.durable_at().elapsed().as_secs_f64());
        }
        Ok(Err(rejection)) => {
            metrics::counter!("vato_commands_rejected_total", "reason" => rejection.reason())
                .increment(1)
        }
        Err(_) => metrics::counter!("vato_commands_unavailable_total").increment(1),
    }
    outcome
}

/// Who orders the commands.
pub enum Sequencer {
    /// The local store's writer; signals go straight to this node's hub.
    Embedded { store: Store, hub: Arc<Hub> },
    /// NATS JetStream, shared by every node.
    Cluster(Arc<Cluster>),
}

impl Sequencer {
    /// Starts a command without waiting for its outcome; the returned future
    /// resolves to it. Commands begun one after the other are decided in that
    /// order, so a socket can pipeline its sends through one group commit.
    ///
    /// Every outcome is counted here: the ack latency of an applied
    /// command (begun → durable), the reason of a refused one.
    pub async fn begin(&self, command: Command) -> Pending {
        let begun = Instant::now();
        match self {
            Sequencer::Embedded { store, .. } => match store.enqueue(command, None).await {
                Ok(answer) => Box::pin(async move {
                    let outcome = match answer.await {
                        Ok(outcome) => outcome.map_err(Unavailable::from),
                        Err(_) => Err(Unavailable::Store(StoreError::Closed)),
                    };
                    observe(begun, outcome)
                }),
                Err(e) => Box::pin(std::future::ready(observe(begun, Err(e.into())))),
            },
            Sequencer::Cluster(cluster) => match cluster.begin(command).await {
                Ok(outcome) => Box::pin(async move { observe(begun, outcome.await) }),
                Err(e) => Box::pin(std::future::ready(observe(begun, Err(e)))),
            },
        }
    }

    /// Typing and other signals that are never stored, to every socket of
    /// the conversation on every node except the sender's and those of
    /// `hidden_from` (the users the sender blocks).
    pub async fn signal(
        &self,
        conv_id: ConvId,
        except_user: UserId,
        hidden_from: Vec<UserId>,
        frame: Value,
    ) {
        match self {
            Sequencer::Embedded { hub, .. } => {
                hub.ephemeral(conv_id, except_user, &hidden_from, &frame)
            }
            Sequencer::Cluster(cluster) => {
                cluster
                    .signal(conv_id, except_user, hidden_from, frame)
                    .await
            }
        }
    }

    /// Cluster mode's NATS state, for the metrics; `None` when embedded.
    pub fn cluster(&self) -> Option<&Cluster> {
        match self {
            Sequencer::Embedded { .. } => None,
            Sequencer::Cluster(cluster) => Some(cluster),
        }
    }
}
