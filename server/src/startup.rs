//! Start-up helpers: the JWT secret, the demo accounts, the CORS layer and
//! the signals that stop the server; the process's file hygiene (private
//! data directory, open-files limit) and the security headers.

use std::path::Path;

use axum::Router;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use vato_eventlog::Command;

use crate::app::App;
use crate::auth::hash_password;
use crate::clock;
use crate::config::Config;

/// The error of start-up and shutdown: reported once, then the process
/// exits.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled: a SIGTERM right after the
/// listening line is printed must not kill the process outright.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let interrupt = signal(SignalKind::interrupt());
        async move {
            match (term, interrupt) {
                (Ok(mut term), Ok(mut interrupt)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = interrupt.recv() => {}
                    }
                }
                _ => {
                    tracing::warn!("cannot install the signal handlers");
                    std::future::pending::<()>().await
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
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
            // A secret written by an older version may be world-readable.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            return Ok(secret.trim().to_string());
        }
    }
    let secret: String = {
        use rand::Rng;
        let bytes: [u8; 32] = rand::thread_rng().gen();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    };
    write_private(&path, &secret)?;
    tracing::warn!("generated a development JWT secret in {}", path.display());
    Ok(secret)
}

/// This node's stable id, kept in `<data-dir>/node-id` (a random 64-bit
/// number written at the first start): presence events name the node that
/// holds a user online, so a restarted node must know which entries were
/// its own to clear them (see `presence`).
pub fn node_id(data_dir: &Path) -> Result<u64, BoxError> {
    let path = data_dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|_| format!("{} does not hold a node id", path.display()).into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id: u64 = rand::random();
            replace_durably(data_dir, "node-id", &id.to_string())?;
            Ok(id)
        }
        Err(e) => Err(e.into()),
    }
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

/// Makes everything Vato creates private to its user: a umask of 077 for
/// the whole process (sled's files, the WAL, snapshots and whatever a
/// dependency creates), then the data directory created (or tightened) to
/// 0700. Call before anything is created in it.
pub fn private_data_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: umask(2) only sets the process's file mode creation mask.
    unsafe { libc::umask(0o077) };
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Writes `<dir>/<name>` (0600) whole and durably: written beside it,
/// synced, then renamed over it and the directory synced, so a crash
/// leaves the old contents or the new, never half of them.
pub fn replace_durably(dir: &Path, name: &str, contents: &str) -> std::io::Result<()> {
    let partial = dir.join(format!("{name}.partial"));
    write_private(&partial, contents)?;
    std::fs::File::open(&partial)?.sync_all()?;
    std::fs::rename(&partial, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

/// Writes a new file readable by its owner only (0600), whatever the umask.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An older file keeps its mode on open: tighten it.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(contents.as_bytes())
}

/// Raises the open-files soft limit to the hard limit: every connection is
/// a descriptor, and a common soft limit of 1,024 lets a thousand idle
/// clients lock everyone out. Logs both limits.
pub fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        tracing::warn!(
            "cannot read the open-files limit: {}",
            std::io::Error::last_os_error()
        );
        return;
    }
    let soft = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            tracing::warn!(
                soft,
                hard = limit.rlim_max,
                "cannot raise the open-files limit: {}",
                std::io::Error::last_os_error()
            );
            return;
        }
    }
    tracing::info!(
        was = soft,
        soft = limit.rlim_cur,
        hard = limit.rlim_max,
        "open-files limit"
    );
}

/// The security headers every response carries (web client and API): a
/// CSP that allows only our own scripts, styles and API (and sockets), no
/// framing, no MIME sniffing, no referrer. The web client has no inline
/// script or style, so it works under this policy.
pub fn security_headers<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    use axum::http::{header, HeaderValue};
    use tower_http::set_header::SetResponseHeaderLayer;
    const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
        img-src 'self' data:; connect-src 'self' ws: wss:; object-src 'none'; \
        base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
    router
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
}
