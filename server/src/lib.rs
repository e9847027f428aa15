//! `vato-server`: the Vatochito chat API (REST + WebSocket) on Vato's
//! durable event log.
//!
//! Read in this order:
//!
//! * [`config`]: every flag and `VATO_*` variable.
//! * this file: [`start`] opens the store, the fan-out and the sequencer;
//!   [`Server::serve`] serves a listener until shutdown. `main.rs` only
//!   parses flags and calls them. [`startup`] holds the start-up helpers
//!   (JWT secret, demo accounts, CORS, signals).
//! * `app`: the shared context every handler gets.
//! * `sequencer`: the one way a command reaches the state machine,
//!   embedded (the local store) or cluster (NATS JetStream).
//! * `intake`: the one place client fields become a command, with every
//!   limit; REST and sockets both use it.
//! * `limits`: per-user rates and socket counts, checked before a command
//!   is submitted (REST and sockets alike), and typing coalescing.
//! * `api`: REST, one file per resource, its extractors and its one error
//!   type (`error`).
//! * `ws`: the socket endpoint: handshake, frames, reader, writer.
//! * `hub`: fan-out of committed events to sockets; `render`: the
//!   contract's JSON objects and frames; `burst`: the socket write buffer.
//! * `auth`: tokens and passwords, no HTTP; `clock`: time stamps.
//!
//! Only `api/`, `ws/` and `error` know HTTP; below them, modules return
//! their own errors.

mod api;
mod app;
mod auth;
mod burst;
mod clock;
pub mod config;
mod error;
mod hub;
mod intake;
mod limits;
mod render;
mod sequencer;
pub mod startup;
mod ws;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use vato_eventlog::{Store, StoreConfig};

use crate::app::App;
use crate::auth::Jwt;
use crate::config::Config;
use crate::hub::Hub;
use crate::sequencer::{Cluster, Sequencer};

pub use startup::BoxError;

/// A server ready to serve: its store is open, cluster mode has caught up
/// with the stream, and the demo accounts exist.
pub struct Server {
    app: Arc<App>,
}

/// Opens everything a server needs before it may answer anyone.
pub async fn start(config: Config) -> Result<Server, BoxError> {
    let secret = startup::jwt_secret(&config)?;
    if config.nats_url.is_some() && config.jwt_secret.is_none() {
        tracing::warn!("cluster mode with a generated JWT secret: tokens issued here are refused by other nodes; give every node the same --jwt-secret");
    }
    std::fs::create_dir_all(&config.data_dir)?;
    let mut store_config = StoreConfig::new(&config.data_dir);
    store_config.snapshot_every = config.snapshot_every;
    let (store, committed) = Store::open(store_config)?;
    let hub = Arc::new(Hub::new(&store.state()));
    tokio::spawn(hub::run_fan_out(hub.clone(), store.clone(), committed));
    // Cluster mode catches up with the stream before anything is served.
    let sequencer = match &config.nats_url {
        Some(urls) => {
            Sequencer::Cluster(Cluster::start(&config, urls, store.clone(), hub.clone()).await?)
        }
        None => Sequencer::Embedded {
            store: store.clone(),
            hub: hub.clone(),
        },
    };
    let app = Arc::new(App {
        jwt: Jwt::new(
            secret.as_bytes(),
            config.access_token_minutes * 60,
            config.refresh_token_days * 86_400,
        ),
        store,
        hub,
        connections: Arc::new(Semaphore::new(
            config.max_connections.min(Semaphore::MAX_PERMITS),
        )),
        sequencer,
        limits: limits::Limits::new(&config),
        config,
    });
    if app.config.demo {
        startup::seed_demo(&app).await?;
    }
    Ok(Server { app })
}

impl Server {
    /// Serves `listener` until `shutdown` resolves, then closes the sockets
    /// with 1001 and the store with a snapshot.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), BoxError> {
        let Server { app } = self;
        let (store, hub) = (app.store.clone(), app.hub.clone());
        let router = router(app);
        // Chat frames are small and latency-bound: without TCP_NODELAY,
        // Nagle holds a frame back while an earlier one is unacknowledged,
        // and the peer's delayed ACK turns that into tens of milliseconds
        // under load.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        // A failed disk stops the store; the process must not pretend to
        // work.
        let watched = store.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if watched.failed() {
                    tracing::error!(
                        "the event log failed; exiting so a restart recovers from disk"
                    );
                    std::process::exit(1);
                }
            }
        });
        let shutdown_hub = hub.clone();
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                shutdown.await;
                tracing::info!("shutting down: closing sockets with 1001");
                shutdown_hub.close_all(1001);
            })
            .await?;
        // Sockets are detached from the HTTP server: give them a moment to
        // send their close frames.
        for _ in 0..20 {
            if hub.socket_count() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::task::spawn_blocking(move || store.close()).await??;
        tracing::info!("snapshot written; bye");
        Ok(())
    }

    /// Where the data lives, for the start-up log line.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.app.config.data_dir
    }
}

/// [`start`], then [`Server::serve`]: for tests and embedders.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BoxError> {
    start(config).await?.serve(listener, shutdown).await
}

/// The REST routes with their layers, and the socket routes.
fn router(app: Arc<App>) -> Router {
    let config = &app.config;
    // The socket routes are merged after the layers: a WebSocket handshake
    // has no body and no CORS (browsers do not apply it to WebSockets), and
    // the CORS layer's per-request clone was ~5% of the CPU of opening
    // sockets.
    let sockets = Router::new()
        .route("/ws/conversations/{id}/", get(ws::handshake))
        .route("/ws/chat/{id}/", get(ws::handshake));
    Router::new()
        .merge(api::router())
        .fallback(api::web::fallback)
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(axum::middleware::map_response(error::json_413))
        .layer(startup::cors(&config.cors_origins))
        .merge(sockets)
        .with_state(app)
}

/// The line scripts and tests read to learn the port.
pub fn listening_line(address: SocketAddr) -> String {
    format!("vato-server listening on http://{address}")
}
