//! A push webhook receiver for the tests (issue 15): it records every
//! request (its `Idempotency-Key`, `Vato-Node` and JSON body), fails the
//! first `fail_first` with a 500, can hang the first `hang_first` past any
//! timeout, and dedupes by `Idempotency-Key` as a real receiver must.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use parking_lot::Mutex;
use serde_json::Value;

/// One request the webhook got.
#[derive(Clone, Debug)]
pub struct Push {
    pub key: String,
    pub node: String,
    pub body: Value,
    /// Whether it was answered 2xx.
    pub accepted: bool,
}

#[derive(Default)]
struct Inner {
    fail_first: usize,
    hang_first: usize,
    /// How long each accepted request takes to answer.
    delay: Duration,
    seen: Vec<Push>,
}

#[derive(Clone)]
pub struct Hook {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

impl Hook {
    /// A webhook on a free port that fails its first `fail_first` requests
    /// (500) and hangs (10 s) on the `hang_first` after them.
    pub async fn start(fail_first: usize, hang_first: usize) -> Hook {
        let inner = Arc::new(Mutex::new(Inner {
            fail_first,
            hang_first,
            delay: Duration::ZERO,
            seen: Vec::new(),
        }));
        let app = Router::new()
            .route("/push", post(receive))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Hook {
            url: format!("http://{address}/push"),
            inner,
        }
    }

    /// From now on each accepted request is answered after `delay`.
    pub fn set_delay(&self, delay: Duration) {
        self.inner.lock().delay = delay;
    }

    /// Every request so far, in arrival order.
    pub fn seen(&self) -> Vec<Push> {
        self.inner.lock().seen.clone()
    }

    /// The accepted notifications by `Idempotency-Key`, deduped: what the
    /// receiver acts on (the first accepted body of each key).
    pub fn delivered(&self) -> BTreeMap<String, Push> {
        let mut out = BTreeMap::new();
        for push in self.seen().into_iter().filter(|p| p.accepted) {
            out.entry(push.key.clone()).or_insert(push);
        }
        out
    }

    /// Waits (up to 30 s) until `n` distinct notifications were accepted.
    pub async fn wait_delivered(&self, n: usize) -> BTreeMap<String, Push> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let delivered = self.delivered();
            if delivered.len() >= n {
                return delivered;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of {n} notifications delivered; seen: {:?}",
                delivered.len(),
                self.seen()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn receive(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut push = Push {
        key: header("idempotency-key"),
        node: header("vato-node"),
        body,
        accepted: false,
    };
    let (fail, hang, delay) = {
        let mut inner = inner.lock();
        let fail = inner.fail_first > 0;
        let hang = !fail && inner.hang_first > 0;
        if fail {
            inner.fail_first -= 1;
        } else if hang {
            inner.hang_first -= 1;
        }
        if fail || hang {
            inner.seen.push(push.clone());
        }
        (fail, hang, inner.delay)
    };
    if fail {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    if hang {
        tokio::time::sleep(Duration::from_secs(10)).await;
        return StatusCode::GATEWAY_TIMEOUT;
    }
    tokio::time::sleep(delay).await;
    push.accepted = true;
    inner.lock().seen.push(push);
    StatusCode::NO_CONTENT
}
