//! The log writer's thread asks the kernel for short time slices.
//!
//! On two busy cores the writer, woken by its next batch or its
//! `fdatasync`, at times waited 3-7 ms to run (`perf sched timehist`,
//! BENCHMARKS.md, "The writer's wake-up"): a tokio worker with sockets to
//! serve keeps its CPU until the scheduler's slice (1.4 ms on two vCPUs)
//! runs out, and a woken thread with the same slice waits for it. Linux
//! 6.12 and later let a thread ask for a shorter slice (`sched_setattr`'s
//! `sched_runtime` for `SCHED_OTHER`); a woken thread with a shorter slice
//! than the running one preempts it (the scheduler's `PREEMPT_SHORT`).
//! The writer runs for tens of microseconds per group commit, so a short
//! slice costs it nothing, and its CPU share is unchanged (that is its
//! weight, its nice value). On an older kernel the request is accepted
//! and has no effect.

/// Asks for slices of `slice_us` microseconds for the calling thread
/// (0: leave the kernel's default). The kernel clamps it to 0.1-100 ms.
/// Best effort: a refusal is logged, never an error.
pub fn ask_for_short_slices(slice_us: u64) {
    if slice_us == 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        /// `struct sched_attr` as of Linux 3.14 (`SCHED_ATTR_SIZE_VER0`).
        #[repr(C)]
        struct SchedAttr {
            size: u32,
            policy: u32,
            flags: u64,
            nice: i32,
            priority: u32,
            runtime: u64,
            deadline: u64,
            period: u64,
        }
        // The nice value is set with the slice: the thread's own is kept.
        // SAFETY: getpriority(2) of the calling thread.
        let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let attr = SchedAttr {
            size: std::mem::size_of::<SchedAttr>() as u32,
            policy: libc::SCHED_OTHER as u32,
            flags: 0,
            nice,
            priority: 0,
            runtime: slice_us.saturating_mul(1000),
            deadline: 0,
            period: 0,
        };
        // SAFETY: sched_setattr(2) of the calling thread (pid 0), with a
        // struct of the size it declares.
        let ret =
            unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
        if ret != 0 {
            tracing::info!(
                "the log writer's short slices were refused ({}); it runs with the kernel's default",
                std::io::Error::last_os_error()
            );
        }
    }
}
