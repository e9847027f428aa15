//! Start-up helpers: the JWT secret, the demo accounts, the CORS layer and
//! the signals that stop the server.

use std::path::Path;

use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use vato_eventlog::Command;

use crate::app::App;
use crate::auth::hash_password;
use crate::clock;
use crate::config::Config;

/// The error of start-up and shutdown: reported once, then the process
/// exits.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
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
pub fn jwt_secret(config: &Config) -> Result<String, BoxError> {
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
pub async fn seed_demo(app: &App) -> Result<(), BoxError> {
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

pub fn cors(origins: &str) -> CorsLayer {
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
