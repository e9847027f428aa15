//! The delivery probe (issue 16): a node's probe command always becomes one
//! `ProbeRecorded` event, so that it is written, made durable and fanned
//! out like any message, and changes no read model.

use super::Decision;
use crate::command::Reply;
use crate::event::Event;

pub(super) fn decide_probe(node: u64, nonce: u64) -> Decision {
    Decision::one(Event::ProbeRecorded { node, nonce }, Reply::Done)
}
