//! Scheduling priority of the threads that index a layer.
//!
//! Layers join the model in order, and only the first one is merged while it streams: the
//! later layers' indexes are not needed until it is complete. On a two-core machine every
//! layer's decoder, hash and walk threads are runnable at once, and the scheduler shared the
//! cores out evenly, so the later layers took half of them from the layer the model was
//! waiting for. A later layer's threads run below normal priority instead: they take what the
//! first layer's threads leave idle (a stage waiting on the one before it), and the cores
//! when it is done. Where the kernel groups threads by session (autogroup, on in Debian's
//! kernels), nice values only weigh a thread against the others of its session: lowering
//! these costs other programs nothing and concedes them nothing. Without that grouping,
//! other programs' threads may also come before a background layer's.

/// How far below the thread's current priority a background thread runs: Linux weighs a
/// thread at nice 10 about a tenth of one at nice 0.
#[cfg(target_os = "linux")]
const BACKGROUND_STEP: i32 = 10;

/// The lowest priority (highest nice value) there is.
#[cfg(target_os = "linux")]
const LOWEST: i32 = 19;

/// Run the calling thread below its current priority, for a layer that nothing waits for
/// yet. Only for a thread of its own that ends with the layer: an unprivileged thread cannot
/// raise its priority again. Linux only, where a nice value is a thread's own (elsewhere it
/// is the whole process's, and this does nothing); a refusal changes nothing.
pub fn lower_this_thread() {
    #[cfg(target_os = "linux")]
    if let Ok(current) = rustix::process::getpriority_process(None) {
        let lower = current.saturating_add(BACKGROUND_STEP).min(LOWEST);
        let _ = rustix::process::setpriority_process(None, lower);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_lowered_thread_runs_below_the_others() {
        let before = rustix::process::getpriority_process(None).expect("nice value");
        let lowered = std::thread::spawn(|| {
            lower_this_thread();
            rustix::process::getpriority_process(None).expect("nice value")
        })
        .join()
        .expect("the thread ends");
        assert_eq!(lowered, (before + BACKGROUND_STEP).min(LOWEST));
        // Only that thread: this one keeps its priority.
        assert_eq!(
            rustix::process::getpriority_process(None).expect("nice value"),
            before
        );
    }
}
