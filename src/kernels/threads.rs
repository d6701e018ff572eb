//! The one rayon pool rinfer computes on, sized by `RINFER_NUM_THREADS` or, by
//! default, by the CPUs this process may use (affinity and cgroup quota).

use std::sync::OnceLock;

use rayon::{ThreadPool, ThreadPoolBuilder};

static POOL: OnceLock<ThreadPool> = OnceLock::new();

/// Threads the pool is built with: `RINFER_NUM_THREADS` when it is a positive
/// integer, else `std::thread::available_parallelism()` (which honours the
/// process's CPU affinity and cgroup quota).
pub fn configured_threads() -> usize {
    std::env::var("RINFER_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The process-wide pool, built on first use. Idle workers sleep (rayon parks them).
pub fn pool() -> &'static ThreadPool {
    POOL.get_or_init(|| {
        let n = configured_threads();
        ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(|i| format!("rinfer-{i}"))
            .build()
            .unwrap_or_else(|_| {
                // Spawning threads failed (resource limits): fall back to one thread.
                ThreadPoolBuilder::new()
                    .num_threads(1)
                    .build()
                    .expect("a one-thread pool needs no extra OS thread beyond one")
            })
    })
}

/// Threads the next computation will use: the current rayon pool's when called
/// from inside one, else rinfer's pool's.
pub fn num_threads() -> usize {
    if rayon::current_thread_index().is_some() {
        rayon::current_num_threads()
    } else {
        pool().current_num_threads()
    }
}

/// Runs `f` on rinfer's pool, or in place when already inside a rayon pool (so a
/// caller may choose its own pool with `ThreadPool::install`).
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        f()
    } else {
        pool().install(f)
    }
}
