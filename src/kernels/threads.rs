//! The one rayon pool rinfer computes on, sized by `RINFER_NUM_THREADS` or, by
//! default, by the CPUs this process may use (affinity and cgroup quota). It can be
//! resized ([`set_num_threads`]) and is rebuilt in a forked child, whose copy of
//! the parent's worker threads does not exist.

use std::sync::{Arc, Mutex};

use rayon::{ThreadPool, ThreadPoolBuilder};

struct Current {
    pool: Arc<ThreadPool>,
    pid: u32,
}

static POOL: Mutex<Option<Current>> = Mutex::new(None);

/// Threads the pool is built with by default: `RINFER_NUM_THREADS` when it is a
/// positive integer, else `std::thread::available_parallelism()` (which honours the
/// process's CPU affinity and cgroup quota).
pub fn configured_threads() -> usize {
    std::env::var("RINFER_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn build(n: usize) -> Arc<ThreadPool> {
    let pool = ThreadPoolBuilder::new()
        .num_threads(n.max(1))
        .thread_name(|i| format!("rinfer-{i}"))
        .build()
        .or_else(|_| ThreadPoolBuilder::new().num_threads(1).build())
        .expect("a one-thread pool can always be built");
    Arc::new(pool)
}

fn lock() -> std::sync::MutexGuard<'static, Option<Current>> {
    // A panic while holding this lock cannot leave the pool half-built.
    POOL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The process-wide pool, built on first use (idle workers sleep).
pub fn pool() -> Arc<ThreadPool> {
    let mut cur = lock();
    let pid = std::process::id();
    if let Some(c) = cur.as_ref() {
        if c.pid == pid {
            return c.pool.clone();
        }
    }
    if let Some(old) = cur.take() {
        // Forked child: the parent's workers do not exist here. Dropping the pool
        // would wait for them forever, so its handle is leaked instead.
        std::mem::forget(old);
    }
    let pool = build(configured_threads());
    *cur = Some(Current {
        pool: pool.clone(),
        pid,
    });
    pool
}

/// Replaces the pool with one of `n` threads (work already running finishes on
/// the old one).
pub fn set_num_threads(n: usize) {
    let pool = build(n);
    let mut cur = lock();
    if let Some(old) = cur.take() {
        if old.pid != std::process::id() {
            std::mem::forget(old);
        }
    }
    *cur = Some(Current {
        pool,
        pid: std::process::id(),
    });
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
