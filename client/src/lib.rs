//! `vato-client`: the one client-side implementation of Vato's wire
//! protocol, shared by the server's integration tests, `vato-check` and
//! `vato-load`.
//!
//! Read in this order:
//!
//! * [`frames`]: socket frames as JSON: builders for what a client sends
//!   (`message.send`, `typing`, `sync`, ...), [`frames::Kind`] and typed
//!   accessors for what the server sends. Frames stay `serde_json::Value`,
//!   because callers assert on exact keys.
//! * [`rest`]: [`Api`], a REST client (base URL, optional bearer token)
//!   answering [`Resp`] (status, headers, JSON body), typed helpers for the
//!   contract's calls, and [`User`], a logged-in session.
//! * [`socket`]: socket URLs, the handshake (with the HTTP status and JSON
//!   detail of a refusal), the raw read step a reader task loops on, and
//!   [`Ws`], a socket with bounded waits for tests.
//!
//! Two styles of call: `try_*` functions return errors (a checker reports
//! them); the short forms (`get`, `post`, `Ws::recv`, ...) panic with a
//! precise message, which is what a test wants.

pub mod frames;
pub mod rest;
pub mod socket;

pub use frames::Kind;
pub use rest::{message_path, messages_path, Api, Resp, RestError, User};
pub use socket::{ws_url, ConnectError, Ws};

use std::time::Duration;

/// Longest wait of the panicking helpers for anything the server owes:
/// a frame, a response, a handshake.
pub const TIMEOUT: Duration = Duration::from_secs(15);
