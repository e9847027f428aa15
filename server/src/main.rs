//! `vato-server`: the Vatochito chat API (REST + WebSocket) on Vato's
//! durable event log.
//!
//! Read in this order: [`config`] (flags), `main` (start-up and shutdown),
//! [`app`] (shared context), [`api`] (REST, one file per resource), [`ws`]
//! (the socket endpoint), [`hub`] (fan-out), [`render`] (the contract's JSON
//! objects), [`auth`] (tokens and passwords), [`error`] (one error type).

mod api;
mod app;
mod auth;
mod burst;
mod clock;
mod cluster;
mod config;
mod error;
mod hub;
mod render;
mod ws;

use std::path::Path;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::Router;
use clap::Parser;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use vato_eventlog::{Command, Store, StoreConfig};

use crate::app::App;
use crate::auth::{hash_password, Jwt};
use crate::config::Config;
use crate::hub::Hub;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VATO_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = Config::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("vato-server: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vato-server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn run(config: Config) -> Result<(), BoxError> {
    let secret = jwt_secret(&config)?;
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
    let cluster = match &config.nats_url {
        Some(urls) => {
            Some(cluster::Cluster::start(&config, urls, store.clone(), hub.clone()).await?)
        }
        None => None,
    };

    let app = Arc::new(App {
        jwt: Jwt::new(
            secret.as_bytes(),
            config.access_token_minutes * 60,
            config.refresh_token_days * 86_400,
        ),
        store: store.clone(),
        hub: hub.clone(),
        connections: AtomicUsize::new(0),
        config: config.clone(),
        cluster,
    });
    if config.demo {
        seed_demo(&app).await?;
    }
    // The socket routes are merged after the layers: a WebSocket handshake
    // has no body and no CORS (browsers do not apply it to WebSockets), and
    // the CORS layer's per-request clone was ~5% of the CPU of opening
    // sockets.
    let sockets = Router::new()
        .route("/ws/conversations/{id}/", get(ws::handshake))
        .route("/ws/chat/{id}/", get(ws::handshake));
    let router = Router::new()
        .merge(api::router())
        .fallback(api::web::fallback)
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(axum::middleware::map_response(error::json_413))
        .layer(cors(&config.cors_origins))
        .merge(sockets)
        .with_state(app);

    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let address = listener.local_addr()?;
    // Chat frames are small and latency-bound: without TCP_NODELAY, Nagle
    // holds a frame back while an earlier one is unacknowledged, and the
    // peer's delayed ACK turns that into tens of milliseconds under load.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    // Scripts and tests read this line to learn the port.
    println!("vato-server listening on http://{address}");
    tracing::info!(data_dir = %config.data_dir.display(), "vato-server listening on http://{address}");

    // A failed disk stops the store; the process must not pretend to work.
    let watched = store.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if watched.failed() {
                tracing::error!("the event log failed; exiting so a restart recovers from disk");
                std::process::exit(1);
            }
        }
    });

    let shutdown_hub = hub.clone();
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            tracing::info!("shutting down: closing sockets with 1001");
            shutdown_hub.close_all(1001);
        })
        .await?;
    // Sockets are detached from the HTTP server: give them a moment to send
    // their close frames.
    for _ in 0..20 {
        if hub.socket_count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let closing = store.clone();
    tokio::task::spawn_blocking(move || closing.close()).await??;
    tracing::info!("snapshot written; bye");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// The JWT secret: required in production. In --dev/--demo one is generated
/// once and kept in the data directory, so tokens survive a restart.
fn jwt_secret(config: &Config) -> Result<String, BoxError> {
    if let Some(secret) = &config.jwt_secret {
        if secret.len() < 16 {
            return Err("--jwt-secret / VATO_JWT_SECRET must be at least 16 characters".into());
        }
        return Ok(secret.clone());
    }
    if !config.dev_mode() {
        return Err("a JWT secret is required: set --jwt-secret or VATO_JWT_SECRET (or use --dev / --demo for local use)".into());
    }
    std::fs::create_dir_all(&config.data_dir)?;
    let path = Path::new(&config.data_dir).join("dev-jwt-secret");
    if let Ok(secret) = std::fs::read_to_string(&path) {
        if secret.trim().len() >= 16 {
            return Ok(secret.trim().to_string());
        }
    }
    let secret: String = {
        use rand::Rng;
        let bytes: [u8; 32] = rand::thread_rng().gen();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    };
    std::fs::write(&path, &secret)?;
    tracing::warn!("generated a development JWT secret in {}", path.display());
    Ok(secret)
}

/// The original's demo accounts and their direct conversation. Idempotent:
/// a restart finds them and adds nothing. Goes through the sequencer, so in
/// cluster mode every node sees the same (and racing nodes agree).
async fn seed_demo(app: &App) -> Result<(), BoxError> {
    let store = &app.store;
    let mut ids = Vec::new();
    for (name, password) in [("lalo", "lalo123"), ("kalu", "kalu123")] {
        let existing = store.state().user_by_name(name).map(|u| u.id);
        let id = match existing {
            Some(id) => id,
            None => {
                let password_hash = hash_password(password.to_string())
                    .await
                    .map_err(|e| format!("{e:?}"))?;
                let outcome = app
                    .submit(Command::Register {
                        username: name.to_string(),
                        password_hash,
                        email: format!("{name}@example.com"),
                        display_name: name.to_string(),
                        phone_number: None,
                        at: clock::now_micros(),
                    })
                    .await
                    .map_err(|e| format!("seeding {name}: {e:?}"))?;
                match outcome {
                    Ok(applied) => match applied.reply {
                        vato_eventlog::Reply::User(id) => id,
                        _ => return Err("seeding returned no user".into()),
                    },
                    // Another node seeded it a moment ago.
                    Err(vato_eventlog::Rejection::UsernameTaken) => store
                        .state()
                        .user_by_name(name)
                        .map(|u| u.id)
                        .ok_or("seeded user not found")?,
                    Err(r) => return Err(format!("seeding {name}: {r}").into()),
                }
            }
        };
        ids.push(id);
    }
    app.submit(Command::CreateDirect {
        by: ids[0],
        other: ids[1],
        at: clock::now_micros(),
    })
    .await
    .map_err(|e| format!("seeding the demo conversation: {e:?}"))?
    .map_err(|r| format!("seeding the demo conversation: {r}"))?;
    Ok(())
}

fn cors(origins: &str) -> CorsLayer {
    let layer = CorsLayer::new().allow_methods(Any).allow_headers(Any);
    let origins: Vec<_> = origins
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .collect();
    if origins.contains(&"*") {
        layer.allow_origin(Any)
    } else {
        layer.allow_origin(AllowOrigin::list(
            origins.iter().filter_map(|o| o.parse().ok()),
        ))
    }
}
