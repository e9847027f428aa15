//! Pairs of goose users. Within each scenario, users take indexes 0, 1, 2, ... as
//! they start; user k pairs with user k^1 (0 with 1, 2 with 3, ...). Each user
//! publishes a [`Peer`] here; its partner waits for it with a timeout.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Login,
    Setup,
    Connect,
    Messaging,
    Rest,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Messaging,
        Kind::Login,
        Kind::Setup,
        Kind::Connect,
        Kind::Rest,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Login => "login",
            Kind::Setup => "setup",
            Kind::Connect => "connect",
            Kind::Messaging => "messaging",
            Kind::Rest => "rest",
        }
    }

    /// Short tag used in user names.
    pub fn tag(self) -> char {
        match self {
            Kind::Login => 'l',
            Kind::Setup => 's',
            Kind::Connect => 'c',
            Kind::Messaging => 'm',
            Kind::Rest => 'r',
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// What one user shares with its partner.
pub struct Peer {
    pub user_id: i64,
    /// The pair's direct conversation, published by the even member.
    pub conv: OnceLock<i64>,
    /// The even member could not get the conversation: the odd one stops waiting.
    pub failed: AtomicBool,
    /// The user's socket is connected (messaging).
    pub ready: AtomicBool,
    /// The user has stopped sending (messaging, on_stop).
    pub stopping: AtomicBool,
    /// Messages the user sent that are still in flight.
    pub outstanding: AtomicUsize,
}

impl Peer {
    pub fn new(user_id: i64) -> Arc<Self> {
        Arc::new(Peer {
            user_id,
            conv: OnceLock::new(),
            failed: AtomicBool::new(false),
            ready: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            outstanding: AtomicUsize::new(0),
        })
    }
}

type Registry = Mutex<HashMap<(Kind, usize), Arc<Peer>>>;

fn registry() -> &'static Registry {
    static REG: OnceLock<Registry> = OnceLock::new();
    REG.get_or_init(|| Mutex::new(HashMap::new()))
}

static COUNTERS: [AtomicUsize; 5] = [
    AtomicUsize::new(0),
    AtomicUsize::new(0),
    AtomicUsize::new(0),
    AtomicUsize::new(0),
    AtomicUsize::new(0),
];

/// The next scenario-local index of `kind`.
pub fn next_index(kind: Kind) -> usize {
    COUNTERS[kind.slot()].fetch_add(1, SeqCst)
}

pub fn publish(kind: Kind, index: usize, peer: Arc<Peer>) {
    registry().lock().unwrap().insert((kind, index), peer);
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes.
pub async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

static COUNTS: OnceLock<HashMap<Kind, usize>> = OnceLock::new();

/// How many users each scenario gets, when known (see `expected_counts`).
pub fn set_counts(counts: HashMap<Kind, usize>) {
    let _ = COUNTS.set(counts);
}

/// Whether user `index` of `kind` is known to have no partner (the last user of
/// a scenario with an odd number of users).
pub fn is_lone(kind: Kind, index: usize) -> bool {
    COUNTS
        .get()
        .and_then(|c| c.get(&kind))
        .is_some_and(|n| (index ^ 1) >= *n)
}

/// The users goose gives each scenario: the same allocation as goose's round
/// robin scheduler (weights reduced by their gcd, one user per scenario per round
/// while a scenario has weight left, the list repeated over the users).
pub fn expected_counts(total: usize, weights: &[(Kind, usize)]) -> HashMap<Kind, usize> {
    fn gcd(a: usize, b: usize) -> usize {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    let active: Vec<(Kind, usize)> = weights.iter().copied().filter(|(_, w)| *w > 0).collect();
    let mut counts: HashMap<Kind, usize> = weights.iter().map(|(k, _)| (*k, 0)).collect();
    let g = active.iter().fold(0, |g, (_, w)| gcd(g, *w));
    if g == 0 {
        return counts;
    }
    let mut left: Vec<usize> = active.iter().map(|(_, w)| w / g).collect();
    let mut order = Vec::new();
    while left.iter().any(|l| *l > 0) {
        for (i, l) in left.iter_mut().enumerate() {
            if *l > 0 {
                *l -= 1;
                order.push(active[i].0);
            }
        }
    }
    for i in 0..total {
        *counts.entry(order[i % order.len()]).or_default() += 1;
    }
    counts
}

/// Waits for the partner of user `index` to publish itself.
pub async fn partner(kind: Kind, index: usize, timeout: Duration) -> Option<Arc<Peer>> {
    let key = (kind, index ^ 1);
    let mut found = None;
    wait_until(timeout, || {
        found = registry().lock().unwrap().get(&key).cloned();
        found.is_some()
    })
    .await;
    found
}

// ---- the chat start barrier ----
//
// Registration (argon2) saturates a small server while users start, so the
// chatting users start sending together, once every user of the run has started
// every user has finished its start (registered, paired; for a chatting user,
// connected), or has failed: delivery is measured at
// the steady load, while connect timings of the ramp-up are kept.

static TOTAL_USERS: OnceLock<Option<usize>> = OnceLock::new();
static STARTED: AtomicUsize = AtomicUsize::new(0);
static MSG_STARTED: AtomicUsize = AtomicUsize::new(0);
static MSG_SETTLED: AtomicUsize = AtomicUsize::new(0);
static SETTLED: AtomicUsize = AtomicUsize::new(0);

/// The number of users the run starts, when known (not with a test plan).
pub fn set_total_users(total: Option<usize>) {
    let _ = TOTAL_USERS.set(total);
}

/// A user (any scenario) starts.
pub fn user_started(kind: Kind) {
    STARTED.fetch_add(1, SeqCst);
    if kind == Kind::Messaging {
        MSG_STARTED.fetch_add(1, SeqCst);
    }
}

/// A user has finished its start (for a chatting user: connected), or gave up.
pub fn user_settled(kind: Kind) {
    SETTLED.fetch_add(1, SeqCst);
    if kind == Kind::Messaging {
        MSG_SETTLED.fetch_add(1, SeqCst);
    }
}

/// Waits (up to `timeout`) until every user of the run has finished its start
/// (when the number of users is known), and every chatting user that started
/// has settled. Returns false on timeout.
pub async fn chat_barrier(timeout: Duration) -> bool {
    let total = TOTAL_USERS.get().copied().flatten();
    wait_until(timeout, || {
        total.is_none_or(|t| STARTED.load(SeqCst) >= t && SETTLED.load(SeqCst) >= t)
            && MSG_SETTLED.load(SeqCst) >= MSG_STARTED.load(SeqCst)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_goose_round_robin() {
        let w = [
            (Kind::Messaging, 20),
            (Kind::Login, 1),
            (Kind::Setup, 1),
            (Kind::Connect, 1),
            (Kind::Rest, 1),
        ];
        let c = expected_counts(240, &w);
        assert_eq!(c[&Kind::Messaging], 200);
        assert_eq!(c[&Kind::Login], 10);
        let c = expected_counts(5, &w);
        // One round gives one user to each scenario first.
        assert_eq!(c[&Kind::Messaging], 1);
        assert_eq!(c[&Kind::Rest], 1);
        let c = expected_counts(7, &[(Kind::Messaging, 1), (Kind::Login, 0)]);
        assert_eq!(c[&Kind::Messaging], 7);
        assert_eq!(c[&Kind::Login], 0);
    }
}
