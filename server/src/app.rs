//! The shared context every handler gets: configuration, the store, the
//! fan-out hub, the token keys, and the sequencer (embedded or cluster).

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use serde_json::Value;
use vato_eventlog::{Applied, Command, ConvId, Rejection, Store, UserId};

use crate::auth::Jwt;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::error::ApiError;
use crate::hub::Hub;

/// The outcome of a begun command.
pub type Pending = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Result<Applied, Rejection>, ApiError>> + Send>,
>;

pub struct App {
    pub config: Config,
    pub store: Store,
    pub hub: Arc<Hub>,
    pub jwt: Jwt,
    /// Open WebSocket connections, against `--max-connections`.
    pub connections: AtomicUsize,
    /// Cluster mode: JetStream orders the commands. `None`: embedded, the
    /// local store's writer does.
    pub cluster: Option<Arc<Cluster>>,
}

impl App {
    /// The one way a request changes state. A failure of the sequencer (the
    /// store, or NATS) becomes a 503; a rejection is the command's own.
    pub async fn submit(&self, command: Command) -> Result<Result<Applied, Rejection>, ApiError> {
        let outcome = self.begin(command).await.await?;
        // Answer only once the events are fanned out: a client that gets
        // its 201 and then resumes with `since` finds them in the replay.
        if let Some(last) = outcome.as_ref().ok().and_then(|a| a.events().last()) {
            // Bounded: the events are durable already; if the fan-out were
            // ever stuck, the client still gets its answer.
            let fanned = self.hub.fanned_out_to(last.offset);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), fanned).await;
        }
        Ok(outcome)
    }

    /// Starts a command without waiting for its outcome; the returned future
    /// resolves to it. Commands begun one after the other are decided in that
    /// order, so a socket can pipeline its sends through one group commit.
    pub async fn begin(&self, command: Command) -> Pending {
        match &self.cluster {
            None => match self.store.enqueue(command, None).await {
                Ok(answer) => Box::pin(async move {
                    match answer.await {
                        Ok(outcome) => Ok(outcome?),
                        Err(_) => Err(ApiError::Unavailable),
                    }
                }),
                Err(e) => Box::pin(std::future::ready(Err(e.into()))),
            },
            Some(cluster) => match cluster.begin(command).await {
                Ok(outcome) => Box::pin(async move { Ok(outcome.await?) }),
                Err(e) => Box::pin(std::future::ready(Err(e.into()))),
            },
        }
    }

    /// Typing and other signals that are never stored.
    pub async fn signal(&self, conv_id: ConvId, except_user: UserId, frame: Value) {
        match &self.cluster {
            None => self.hub.ephemeral(conv_id, except_user, &frame),
            Some(cluster) => cluster.signal(conv_id, except_user, frame).await,
        }
    }
}
