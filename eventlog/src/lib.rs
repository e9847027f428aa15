//! `vato-eventlog`: the durable, ordered, replayable heart of Vato.
//!
//! Read in this order:
//!
//! * [`event`]: the events, the only persistent state.
//! * [`command`]: what clients ask for, and why a request can be refused.
//! * [`state`]: the deterministic state machine (`decide`, `apply`) and the
//!   read models it maintains.
//! * [`codec`]: the on-disk encoding (versioned, checksummed MessagePack).
//! * [`log`]: the sled layout: the global log in chunks (a group commit
//!   each) plus a per-conversation index; migration from the per-event
//!   layout in [`log::legacy`].
//! * [`snapshot`]: read-model snapshots that shorten a restart.
//! * [`store`]: the single writer with group commit that ties them together.
//!
//! This crate knows nothing about HTTP or sockets.

pub mod codec;
pub mod command;
pub mod event;
pub mod log;
pub mod snapshot;
pub mod state;
pub mod store;

pub use command::{Command, Invalid, Rejection, Reply};
pub use event::*;
pub use state::{Conversation, Message, State, User};
pub use store::{Answer, Applied, CommittedRx, Store, StoreConfig, StoreError};
