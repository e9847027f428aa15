//! Presence on this node (issue 13): which users have sockets here, and
//! the two moments worth an event.
//!
//! A user is online while some node holds a socket of theirs. This node
//! counts its own sockets per user and reports only its transitions to the
//! log, so the hot path (a socket of a user who has one here already) costs
//! a map update and nothing else:
//!
//! * the first socket of a user here → `SocketsOpened { node }`;
//! * the last one closed, and `--presence-grace-secs` passed without a new
//!   one → `SocketsClosed { node }`. A socket opened within the grace
//!   cancels it: a reconnect is invisible.
//!
//! The state machine (`eventlog/src/state/presence.rs`) keeps the set of
//! nodes per user and decides when that is the first or the last node, so
//! "the last socket anywhere in the cluster" is decided once, in log order,
//! identically on every node. A node that crashed never sent its closes:
//! [`Presence::clear_own`] at start-up (before serving) lets go of every
//! user it held.
//!
//! The reports go through one task, in the order the transitions happened
//! here, so an open and the close after it reach the log in that order.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::mpsc;
use vato_eventlog::{Command, NodeId, UserId};

use crate::app::App;
use crate::clock::now_micros;

/// How long a report may keep failing (NATS away, a full disk) before it
/// is given up, logged as an error.
const REPORT_RETRY: Duration = Duration::from_secs(1);
const REPORT_ATTEMPTS: u32 = 60;

pub struct Presence {
    /// This node's stable id (`<data-dir>/node-id`).
    pub node: NodeId,
    grace: Duration,
    users: Arc<Mutex<HashMap<UserId, Local>>>,
    reports: mpsc::UnboundedSender<Command>,
}

/// One user's sockets on this node.
#[derive(Default)]
struct Local {
    sockets: usize,
    /// Bumped by every last close and every open that cancels its grace: a
    /// grace timer acts only if the epoch is still the one it started with.
    epoch: u64,
    /// A last close is waiting out its grace (the node still holds the
    /// user in the log).
    in_grace: bool,
}

impl Presence {
    /// The tracker, and the receiving end of its reports for [`run_reports`].
    pub fn new(node: NodeId, grace_secs: u64) -> (Presence, mpsc::UnboundedReceiver<Command>) {
        let (reports, rx) = mpsc::unbounded_channel();
        let presence = Presence {
            node,
            grace: Duration::from_secs(grace_secs),
            users: Arc::default(),
            reports,
        };
        (presence, rx)
    }

    /// A socket of `user_id` was opened here.
    pub fn opened(&self, user_id: UserId) {
        let mut users = self.users.lock();
        let local = users.entry(user_id).or_default();
        local.sockets += 1;
        if local.sockets > 1 {
            return;
        }
        if local.in_grace {
            // A reconnect within the grace: the log still has the user
            // here; nothing to tell anyone.
            local.in_grace = false;
            local.epoch += 1;
            return;
        }
        // Sent under the lock: reports of one user keep their order.
        let _ = self.reports.send(Command::SocketsOpened {
            user_id,
            node: self.node,
            at: now_micros(),
        });
    }

    /// A socket of `user_id` (one counted by [`Presence::opened`]) closed.
    pub fn closed(&self, user_id: UserId) {
        let mut users = self.users.lock();
        let Some(local) = users.get_mut(&user_id) else {
            return;
        };
        local.sockets = local.sockets.saturating_sub(1);
        if local.sockets > 0 {
            return;
        }
        local.in_grace = true;
        local.epoch += 1;
        let epoch = local.epoch;
        let (users, reports, node, grace) = (
            self.users.clone(),
            self.reports.clone(),
            self.node,
            self.grace,
        );
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let mut users = users.lock();
            let over = users
                .get(&user_id)
                .is_some_and(|l| l.sockets == 0 && l.in_grace && l.epoch == epoch);
            if over {
                users.remove(&user_id);
                let _ = reports.send(Command::SocketsClosed {
                    user_id,
                    node,
                    at: now_micros(),
                });
            }
        });
    }

    /// Start-up: every user this node held online in the log (its sockets
    /// died with its previous process) goes, before anything is served.
    pub async fn clear_own(&self, app: &App) {
        let command = Command::ClearNodePresence {
            node: self.node,
            at: now_micros(),
        };
        match app.submit(command).await {
            Ok(_) => {}
            Err(e) => tracing::warn!("could not clear this node's presence at start: {e}"),
        }
    }
}

/// The reporting task: every transition, in order, into the log. A report
/// that cannot be written now (NATS away) is retried, holding back the ones
/// after it so the order stays.
pub async fn run_reports(app: Arc<App>, mut reports: mpsc::UnboundedReceiver<Command>) {
    while let Some(command) = reports.recv().await {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match app.submit(command.clone()).await {
                Ok(Ok(_)) => break,
                // An unknown user (nothing else refuses these): nothing to
                // record.
                Ok(Err(rejection)) => {
                    tracing::debug!("presence report refused: {rejection}");
                    break;
                }
                Err(e) if attempt < REPORT_ATTEMPTS => {
                    tracing::warn!("presence report failed ({e}); retrying");
                    tokio::time::sleep(REPORT_RETRY).await;
                }
                Err(e) => {
                    tracing::error!("presence report given up after {attempt} attempts: {e}");
                    break;
                }
            }
        }
    }
}
