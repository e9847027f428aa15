//! `vato-eventlog`: the durable, ordered, replayable heart of Vato.
//!
//! Read in this order:
//!
//! * [`event`]: the events, the only persistent state.
//! * [`command`]: what clients ask for, and why a request can be refused
//!   ([`Rejection`], with a typed [`Invalid`] reason).
//! * [`profile`]: a user's profile and settings, their defaults, and the
//!   changes the profile and settings events carry.
//! * [`state`]: the deterministic state machine. `state/mod.rs` holds the
//!   [`State`], its queries, `execute`, and the two thin matches `decide`
//!   and `apply` that hand each command and event to its area:
//!   `state/users.rs`, `state/conversations.rs`, `state/messages.rs`,
//!   `state/sessions.rs` (logout), `state/presence.rs` (which nodes hold
//!   a user online), `state/contacts.rs` (contacts and blocks), each
//!   keeping its commands' `decide_*` next to their events' `apply_*`.
//!   The read models are in `state/model.rs`.
//! * [`codec`]: the on-disk encoding (versioned, checksummed MessagePack).
//! * [`log`]: the sled layout: the global log in chunks (a group commit
//!   each) plus a per-conversation index. `log/mod.rs` opens it,
//!   `log/format.rs` has its bytes, `log/write.rs` the one transaction and
//!   the durable point, `log/read.rs` the reads; migration from the
//!   per-event layout in [`log::legacy`].
//! * [`snapshot`]: read-model snapshots that shorten a restart.
//! * [`store`]: the single writer with group commit that ties them together.
//! * `testing` (feature `testing`): command builders and helpers shared by
//!   the tests, the crash child and the bench.
//!
//! This crate knows nothing about HTTP or sockets.

pub mod codec;
pub mod command;
pub mod event;
pub mod log;
pub mod paced;
pub mod profile;
pub mod sched;
pub mod snapshot;
pub mod state;
pub mod store;
pub mod table_file;
#[cfg(feature = "testing")]
pub mod testing;

/// Microseconds since the Unix epoch, UTC. Always chosen by the node that
/// accepted the request and carried in the command, so that applying the log
/// is deterministic.
pub type Micros = i64;

pub use command::{
    CallAction, Command, ExternalIdentity, Invalid, NewAttachment, Rejection, Reply,
};
pub use event::*;
pub use state::{Conversation, Message, State, User};
pub use store::{Answer, Applied, Committed, CommittedRx, Store, StoreConfig, StoreError};
