//! `vato-server`: the Vatochito chat API (REST + WebSocket) on Vato's
//! durable event log.
//!
//! Read in this order:
//!
//! * [`config`]: every flag and `VATO_*` variable.
//! * this file: [`start`] opens the store, the fan-out and the sequencer;
//!   [`Server::serve`] serves a listener until shutdown. `main.rs` only
//!   parses flags and calls them. [`startup`] holds the start-up helpers
//!   (JWT secret, demo accounts, CORS, signals, file modes, open-files
//!   limit, security headers).
//! * `serve`: the HTTP accept loop and its limits (header timeout, head
//!   size, connection cap, shutdown grace); `supervise`: a panic where the
//!   log is written or fanned out exits the process.
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
//! * `search`: history and user search, scanned off the state lock in
//!   chunks (history within `--search-scan-limit`).
//! * `hub`: fan-out of committed events to sockets; `render`: the
//!   contract's JSON objects and frames; `burst`: the socket write buffer.
//! * `auth`: tokens and passwords, no HTTP; `accounts`: the rules a new
//!   account must pass (password validators, registration throttle);
//!   `login_throttle`: failed logins per address and per account;
//!   `clock`: time stamps.
//! * `telemetry`: the metrics recorder behind `/metrics`, the hot paths'
//!   metric handles, and the HTTP middleware (request id span, counts);
//!   `probe`: the delivery probe and `/readyz`.
//! * `presence`: this node's sockets per user, reported to the log on the
//!   first open and after the grace of the last close.
//! * `media`: the media store (avatars, attachments): content-addressed
//!   files in the data directory or the cluster's Object Store bucket, and
//!   their removal once nothing refers to them.
//! * `calls`: the ring time of calls; `push`: the pusher, which hands the
//!   notifications in the log to `--push-webhook` (a cursor on disk, or a
//!   lease and a cursor in JetStream KV in cluster mode).
//!
//! Only `api/`, `ws/` and `error` know HTTP; below them, modules return
//! their own errors.

mod accounts;
mod api;
mod app;
mod auth;
mod burst;
mod calls;
mod clock;
pub mod config;
mod disk_check;
mod error;
mod google;
mod hub;
mod intake;
mod limits;
mod login_throttle;
mod media;
mod otp;
mod presence;
mod probe;
mod push;
mod render;
mod search;
mod sequencer;
mod serve;
pub mod startup;
mod supervise;
mod telemetry;
mod ws;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_http::timeout::TimeoutLayer;
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
    startup::raise_open_files_limit();
    supervise::exit_on_critical_panic();
    // Before the store: its writer creates its metric handles at start.
    telemetry::install();
    telemetry::spawn_upkeep();
    startup::private_data_dir(&config.data_dir)?;
    let secret = startup::jwt_secret(&config)?;
    if config.nats_url.is_some() && config.jwt_secret.is_none() {
        tracing::warn!("cluster mode with a generated JWT secret: tokens issued here are refused by other nodes; give every node the same --jwt-secret");
    }
    std::fs::create_dir_all(&config.data_dir)?;
    disk_check::warn_about_data_dir(&config.data_dir);
    let mut store_config = StoreConfig::new(&config.data_dir);
    store_config.wal_segment_bytes = config.wal_segment_mib << 20;
    store_config.cache_bytes = config.cache_mib << 20;
    store_config.snapshot_every = config.snapshot_every;
    store_config.writer_slice_us = config.writer_slice_us;
    store_config.gather_us = config.group_commit_gather_us;
    let (store, committed) = Store::open(store_config)?;
    let hub = Arc::new(Hub::new(&store.state()));
    supervise::spawn_critical(
        "fan-out",
        hub::run_fan_out(hub.clone(), store.clone(), committed),
    );
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
    let media = media::Media::open(
        &config,
        sequencer.cluster().map(|c| c.jetstream()),
        store.clone(),
    )
    .await?;
    let node = startup::node_id(&config.data_dir)?;
    let (presence, presence_reports) = presence::Presence::new(node, config.presence_grace_secs);
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
        register_throttle: accounts::RegisterThrottle::new(config.register_rate),
        login_throttle: login_throttle::LoginThrottle::new(
            config.login_fail_rate,
            config.login_user_fail_rate,
        ),
        limits: limits::Limits::new(&config),
        probe: probe::Probe::new(config.probe_interval_secs),
        presence,
        media,
        otp_key: otp::CodeKey::new(secret.as_bytes()),
        otp_throttle: otp::OtpThrottle::new(config.otp_rate),
        sms: otp::SmsWebhook::new(config.sms_webhook.as_deref()),
        google: google::GoogleVerifier::new(
            config.google_client_id.as_deref(),
            &config.google_jwks_url,
        ),
        config,
    });
    // Files a crash left between their write and their event.
    let sweeping = app.media.clone();
    tokio::spawn(async move {
        match sweeping.sweep().await {
            Ok(0) => {}
            Ok(n) => tracing::info!("removed {n} media files nothing refers to"),
            Err(e) => tracing::warn!("media sweep: {e}"),
        }
    });
    // Whoever this node held online before it (re)started is gone; then
    // its sockets report from here on.
    app.presence.clear_own(&app).await;
    tokio::spawn(presence::run_reports(app.clone(), presence_reports));
    tokio::spawn(calls::run_ring_timeouts(app.clone()));
    if let Some(pusher) = push::open(app.clone()).await? {
        tokio::spawn(pusher.run());
    }
    if app.config.probe_interval_secs > 0 || app.sequencer.cluster().is_some() {
        tokio::spawn(probe::run(app.clone()));
    }
    accounts::load_common_passwords();
    if app.config.demo {
        startup::seed_demo(&app).await?;
    }
    Ok(Server { app })
}

impl Server {
    /// Serves `listener` (and `--metrics-listen`) until `shutdown`
    /// resolves, then closes the sockets with 1001, waits at most
    /// `--shutdown-grace-secs` for HTTP connections, and closes the store
    /// with a snapshot.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), BoxError> {
        let Server { app } = self;
        let (store, hub) = (app.store.clone(), app.hub.clone());
        let limits = serve::Limits::from_config(&app.config);
        let metrics = match app.config.metrics_listen {
            Some(address) => Some(TcpListener::bind(address).await?),
            None => None,
        };
        if let Some(metrics) = &metrics {
            tracing::info!("metrics on http://{}/metrics only", metrics.local_addr()?);
        } else if app.config.metrics_token.is_none() && !app.config.dev_mode() {
            tracing::warn!("/metrics is open to anyone who reaches --listen: set --metrics-listen or --metrics-token");
        }
        let metrics_router = api::web::metrics_router(app.clone());
        app.hub
            .set_media_base(&media_base(&app.config, listener.local_addr()?));
        let router = router(app);
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
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let shutdown_hub = hub.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down: closing sockets with 1001");
            shutdown_hub.close_all(1001);
            let _ = stop.send(true);
        });
        let metrics_served = metrics.map(|listener| {
            tokio::spawn(serve::serve_http(
                listener,
                metrics_router,
                limits.clone(),
                stopped.clone(),
            ))
        });
        serve::serve_http(listener, router, limits, stopped).await;
        if let Some(served) = metrics_served {
            let _ = served.await;
        }
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
    let mut rest = Router::new()
        .merge(api::router())
        .fallback(api::web::fallback)
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(axum::middleware::map_response(error::json_413));
    // Handlers read their body inside the request's future: bounding the
    // future bounds a slow body (and a slow answer) with a 408.
    if config.body_timeout_secs > 0 {
        rest = rest.layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(config.body_timeout_secs),
        ));
    }
    let rest = rest.layer(startup::cors(config.cors_origins()));
    let rest = rest.layer(axum::middleware::from_fn_with_state(
        app.clone(),
        api::media::request_base,
    ));
    startup::security_headers(rest.merge(sockets))
        .layer(axum::middleware::from_fn(telemetry::http))
        .with_state(app)
}

/// The base of the media URLs where no request is at hand (socket
/// frames): `--public-url`, else `http://` and the listen address; empty
/// (relative URLs) when that address is a wildcard nobody can load from.
fn media_base(config: &Config, listening: SocketAddr) -> String {
    match &config.public_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None if listening.ip().is_unspecified() => String::new(),
        None => format!("http://{listening}"),
    }
}

/// The line scripts and tests read to learn the port.
pub fn listening_line(address: SocketAddr) -> String {
    format!("vato-server listening on http://{address}")
}
