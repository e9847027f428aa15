//! Vato's operator tools.
//!
//! * [`check`]: `vato-check`, the end-to-end test runner. It drives a running
//!   Vato (or any server speaking the Vatochito contract) over real HTTP and
//!   WebSocket connections and asserts the five cases of the original
//!   `test_realtime_chat.py`, plus Vato's additions with `--extended`.
//!   Read `check/mod.rs` first (the order of the cases and their
//!   dependencies), then one case module at a time.
//! * [`generate`]: `vato-admin generate`, which fills a data directory with
//!   users, conversations and messages through the real store, for the
//!   memory and start-up benchmarks.

pub mod check;
pub mod generate;
