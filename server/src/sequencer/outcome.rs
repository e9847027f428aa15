//! What the sequencer answers: a command's outcome, or [`Unavailable`].

use std::future::Future;
use std::pin::Pin;

use vato_eventlog::{Applied, Rejection, StoreError};

/// What a command comes to: applied (and durable), or refused by the state
/// machine.
pub type Outcome = Result<Applied, Rejection>;

/// The outcome of a begun command, still to come.
pub type Pending = Pin<Box<dyn Future<Output = Result<Outcome, Unavailable>> + Send>>;

/// The log cannot take the command now. Nothing is half-done: a client may
/// retry (with its `client_id`, a retry is safe).
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    /// Cluster mode: NATS did not take or acknowledge the command in time.
    #[error("NATS is unavailable")]
    Nats,
    /// The local store is closed, failed, or could not write.
    #[error(transparent)]
    Store(#[from] StoreError),
}
