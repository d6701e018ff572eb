//! `aencode` glue: results of the batcher reach each event loop through an inbox
//! (a socket pair the loop watches), and a cancelled caller's request is dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use pyo3::prelude::*;

use super::common::rows_to_py;
use super::errors::to_py;
use crate::batcher::Rows;
use crate::error::Error;

/// Done-callback of an `aencode` future: a cancelled caller marks its queued
/// request so the batcher drops it unrun.
#[pyclass(module = "rinfer._rinfer", frozen)]
pub(super) struct CancelOnDone {
    pub(super) flag: Arc<AtomicBool>,
}

#[pymethods]
impl CancelOnDone {
    fn __call__(&self, fut: &Bound<'_, PyAny>) -> PyResult<()> {
        if fut.call_method0("cancelled")?.extract::<bool>()? {
            self.flag.store(true, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// A finished `aencode` call waiting for its event loop's thread.
pub(super) struct Finished {
    pub(super) fut: Py<PyAny>,
    pub(super) result: Result<Rows, Error>,
    pub(super) single: bool,
    pub(super) with_tokens: bool,
}

impl Finished {
    /// Completes the future (on its loop's thread), unless it was cancelled.
    fn resolve(self, py: Python<'_>) -> PyResult<()> {
        let fut = self.fut.bind(py);
        if fut.call_method0("done")?.extract::<bool>()? {
            return Ok(());
        }
        match self.result {
            Ok(rows) => {
                let v = rows_to_py(py, rows.vectors, self.single);
                if self.with_tokens {
                    fut.call_method1("set_result", ((v, rows.tokens),))?;
                } else {
                    fut.call_method1("set_result", (v,))?;
                }
            }
            Err(e) => {
                fut.call_method1("set_exception", (to_py(e).into_value(py),))?;
            }
        }
        Ok(())
    }
}

/// Finished `aencode` calls of one event loop, handed over without the GIL: the
/// batcher's worker pushes them here and, when the inbox was empty, writes a byte
/// to a socket pair whose other end the loop watches (`add_reader`). The loop's
/// thread then resolves every future at once: one wake-up per batch, and the
/// worker goes on to the next batch without ever waiting for the GIL.
pub(super) struct Inbox {
    done: Mutex<Vec<Finished>>,
    #[cfg(unix)]
    wake: std::os::unix::net::UnixStream,
    #[cfg(unix)]
    watch: std::os::unix::net::UnixStream,
}

impl Inbox {
    #[cfg(unix)]
    pub(super) fn new() -> std::io::Result<Self> {
        let (wake, watch) = std::os::unix::net::UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        watch.set_nonblocking(true)?;
        Ok(Self {
            done: Mutex::new(Vec::new()),
            wake,
            watch,
        })
    }

    #[cfg(unix)]
    pub(super) fn fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.watch.as_raw_fd()
    }

    #[cfg(unix)]
    pub(super) fn push(&self, f: Finished) {
        use std::io::Write;
        let first = {
            let mut d = self.done.lock().unwrap_or_else(|e| e.into_inner());
            d.push(f);
            d.len() == 1
        };
        if first {
            // A full socket buffer already holds a wake-up: nothing is lost.
            let _ = (&self.wake).write(&[1]);
        }
    }
}

/// The loop's reader callback: drains the wake-ups, then resolves what finished
/// (wake-ups first, so a push that races with the drain wakes the loop again).
#[pyclass(module = "rinfer._rinfer", frozen)]
pub(super) struct DrainInbox {
    pub(super) inbox: Arc<Inbox>,
}

#[pymethods]
impl DrainInbox {
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        #[cfg(unix)]
        {
            use std::io::Read;
            let mut buf = [0u8; 64];
            while matches!((&self.inbox.watch).read(&mut buf), Ok(n) if n > 0) {}
        }
        let done = std::mem::take(&mut *self.inbox.done.lock().unwrap_or_else(|e| e.into_inner()));
        let mut first_err = None;
        for f in done {
            if let Err(e) = f.resolve(py) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// How results reach one event loop: its inbox, or (a loop without `add_reader`,
/// such as the Windows proactor) `call_soon_threadsafe` per request.
pub(super) type LoopEntry = (usize, Py<PyAny>, Option<Arc<Inbox>>);
