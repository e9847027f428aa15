//! The `vato-server` binary: flags, logging, the listener, then
//! [`vato_server::start`] and [`vato_server::Server::serve`].

use clap::Parser;
use vato_server::config::{Config, LogFormat};
use vato_server::{listening_line, startup, BoxError};

fn main() -> std::process::ExitCode {
    give_big_allocations_back();
    let config = Config::parse();
    init_logs(config.log_format);
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
    match runtime.block_on(serve(config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vato-server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs on stderr, filtered by `VATO_LOG` (default `info`); `json` writes
/// one object a line with the current span and its parents (`http` with
/// `request_id`, `ws` with `socket`).
fn init_logs(format: LogFormat) {
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("VATO_LOG").unwrap_or_else(|_| "info".into())
    };
    match format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .init(),
    }
}

async fn serve(config: Config) -> Result<(), BoxError> {
    let server = vato_server::start(config.clone()).await?;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    // Before the line below: a SIGTERM right after it shuts down cleanly.
    let shutdown = startup::shutdown_signal();
    let line = listening_line(listener.local_addr()?);
    // Printed once the server is ready: scripts and tests read it.
    println!("{line}");
    tracing::info!(data_dir = %server.data_dir().display(), "{line}");
    server.serve(listener, shutdown).await
}

/// Allocations of 1 MiB and more always get pages of their own from the
/// kernel and give them back when freed. Each argon2 hash allocates 19 MiB;
/// glibc's default raises its mmap threshold to the size of the last freed
/// block (up to 32 MiB), so from the second hash on those blocks came from
/// the arena of whichever blocking thread ran it and stayed there: 384
/// logins left the process at 451 MiB (from 12), for good. With a fixed
/// threshold a burst costs the hashes running at once (one per core) and
/// nothing after it (BENCHMARKS.md, #12).
fn give_big_allocations_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes a tuning parameter of glibc's allocator;
    // it is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}
