//! Vato: the scheduling of threads no caller waits on (see VATO.md).

/// Puts the calling thread behind the latency-critical ones: CPU nice 19
/// and the idle I/O class (Linux; elsewhere nothing). sled's IO threads
/// call it when they start; Vato's own background threads (projector,
/// snapshot, the WAL's segment preparer) call it through
/// `vato_eventlog::log::background_thread`, so both use this one.
pub fn background_thread() {
    #[cfg(target_os = "linux")]
    // SAFETY: both calls only change the scheduling of the calling thread
    // (tid from gettid); they touch no memory.
    unsafe {
        const IOPRIO_WHO_PROCESS: libc::c_long = 1;
        const IOPRIO_CLASS_IDLE: libc::c_long = 3;
        const IOPRIO_CLASS_SHIFT: u32 = 13;
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            0 as libc::c_long,
            IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT,
        );
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 19);
    }
}
