//! The process must not outlive the parts that write: a panic in the
//! store's writer (or its projector) or in the fan-out task would leave a
//! server that answers but never commits or delivers again. Such a panic is
//! logged and the process exits with [`EXIT_PANIC`]; a supervisor restarts
//! it and the log recovers everything acknowledged.

use std::future::Future;

/// The exit status after a panic of a critical thread or task (EX_SOFTWARE).
pub const EXIT_PANIC: i32 = 70;

/// The threads the store starts (named in `vato-eventlog`): a panic in one
/// of them stops all writes.
const CRITICAL_THREADS: [&str; 2] = ["vato-log-writer", "vato-projector"];

/// Installs a panic hook that exits with [`EXIT_PANIC`] when a critical
/// thread panics, after the default hook has printed the panic. Panics
/// elsewhere (a request handler's task) keep today's behaviour: tokio
/// catches them and the server goes on.
pub fn exit_on_critical_panic() {
    // Once per process: embedders and tests may start several servers.
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(install_hook);
}

fn install_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("");
        if CRITICAL_THREADS.contains(&name) {
            tracing::error!(
                thread = name,
                "a critical thread panicked: {info}; exiting so a restart recovers from the log"
            );
            std::process::exit(EXIT_PANIC);
        }
    }));
}

/// Spawns `task` (which runs as long as the server does) and exits the
/// process with [`EXIT_PANIC`] if it panics.
pub fn spawn_critical<F>(name: &'static str, task: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let handle = tokio::spawn(task);
    tokio::spawn(async move {
        if let Err(e) = handle.await {
            if e.is_panic() {
                tracing::error!(
                    task = name,
                    "a critical task panicked; exiting so a restart recovers from the log"
                );
                std::process::exit(EXIT_PANIC);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set in the child process the tests below start: which fault to run.
    const FAULT: &str = "VATO_SUPERVISE_TEST_FAULT";

    /// Runs this test binary again, filtered to `test`, with the fault
    /// `fault`, and returns its exit code: the hook calls `exit`, which a
    /// test cannot observe in its own process.
    fn child_exit_code(test: &str, fault: &str) -> Option<i32> {
        let exe = std::env::current_exe().expect("test binary");
        let status = std::process::Command::new(exe)
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(FAULT, fault)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("run the test binary");
        status.code()
    }

    fn run_fault(fault: &str) {
        exit_on_critical_panic();
        match fault {
            "writer" => {
                let _ = std::thread::Builder::new()
                    .name("vato-log-writer".into())
                    .spawn(|| panic!("simulated writer panic"))
                    .expect("spawn")
                    .join();
            }
            "other-thread" => {
                let _ = std::thread::Builder::new()
                    .name("some-helper".into())
                    .spawn(|| panic!("simulated harmless panic"))
                    .expect("spawn")
                    .join();
            }
            "fan-out" => {
                let runtime = tokio::runtime::Runtime::new().expect("runtime");
                runtime.block_on(async {
                    spawn_critical("fan-out", async { panic!("simulated fan-out panic") });
                    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                });
            }
            other => panic!("unknown fault {other}"),
        }
        // Reached only when nothing exited the process.
        std::process::exit(0);
    }

    #[test]
    fn a_writer_thread_panic_exits_70() {
        if let Ok(fault) = std::env::var(FAULT) {
            return run_fault(&fault);
        }
        assert_eq!(
            child_exit_code("supervise::tests::a_writer_thread_panic_exits_70", "writer"),
            Some(EXIT_PANIC)
        );
    }

    #[test]
    fn a_fan_out_panic_exits_70() {
        if let Ok(fault) = std::env::var(FAULT) {
            return run_fault(&fault);
        }
        assert_eq!(
            child_exit_code("supervise::tests::a_fan_out_panic_exits_70", "fan-out"),
            Some(EXIT_PANIC)
        );
    }

    #[test]
    fn another_threads_panic_does_not_exit() {
        if let Ok(fault) = std::env::var(FAULT) {
            return run_fault(&fault);
        }
        assert_eq!(
            child_exit_code(
                "supervise::tests::another_threads_panic_does_not_exit",
                "other-thread"
            ),
            Some(0)
        );
    }
}
