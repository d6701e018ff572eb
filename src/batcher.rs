//! Dynamic batching in process: concurrent callers submit texts, one worker thread
//! coalesces them into ragged batches (bounded by tokens), runs each batch once, and
//! hands every caller its own rows. Batching is continuous by default: a batch starts
//! as soon as the worker is free and takes whatever is queued, so a lone request
//! never waits for company (an optional `max_wait` trades latency for fuller
//! batches). A full queue is refused at once ([`Error::Overloaded`]) instead of
//! growing without bound.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ndarray::Array2;

use crate::engine::Embedder;
use crate::error::{Error, Result};
use crate::tokenizer::Encoded;

/// Limits of a [`Batcher`].
#[derive(Clone, Debug)]
pub struct BatcherConfig {
    /// A batch stops growing once its estimated token count reaches this.
    pub max_batch_tokens: usize,
    /// The longest a request waits for company before its batch runs; zero (the
    /// default) is continuous batching: a batch starts as soon as the worker is free.
    pub max_wait: Duration,
    /// Requests that may wait at once; more are refused.
    pub max_queue: usize,
}

impl Default for BatcherConfig {
    fn default() -> Self {
        Self {
            max_batch_tokens: 16_384,
            max_wait: Duration::ZERO,
            max_queue: 4096,
        }
    }
}

/// Counters since the batcher started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatcherStats {
    /// Engine batches run.
    pub batches: u64,
    /// Requests answered (successfully or with an error).
    pub requests: u64,
    /// Texts embedded.
    pub texts: u64,
    /// Tokens embedded.
    pub tokens: u64,
    /// Requests refused because the queue was full.
    pub rejected: u64,
    /// Requests dropped unrun: deadline passed or caller gone.
    pub dropped: u64,
    /// Requests waiting now.
    pub queued: u64,
}

/// How one submission is to be run.
#[derive(Clone, Debug, Default)]
pub struct Submit {
    /// L2-normalise; `None` follows the model.
    pub normalize: Option<bool>,
    /// Cut long inputs (else they fail with [`Error::InputTooLong`]).
    pub truncate: bool,
    /// Dropped unrun ([`Error::Expired`]) if not started by then.
    pub deadline: Option<Instant>,
    /// Set by the caller to give up; a request still queued is dropped unrun.
    pub cancel: Option<Arc<AtomicBool>>,
}

/// What a request gets back: its rows, in order, and the tokens they took.
#[derive(Debug)]
pub struct Rows {
    /// One row per text.
    pub vectors: Array2<f32>,
    /// Tokens of the request's texts after truncation, special tokens included.
    pub tokens: usize,
}

/// Called once with a request's rows (or its error), on the worker thread.
pub type Completion = Box<dyn FnOnce(Result<Rows>) + Send>;

struct Request {
    texts: Vec<String>,
    opts: Submit,
    arrived: Instant,
    done: Completion,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Request>,
    closed: bool,
}

#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    requests: AtomicU64,
    texts: AtomicU64,
    tokens: AtomicU64,
    rejected: AtomicU64,
    dropped: AtomicU64,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    counters: Counters,
    cfg: BatcherConfig,
}

/// The batcher: submit from any thread; one worker runs the batches.
pub struct Batcher {
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
}

/// Rough token count before tokenizing: about four bytes a token, plus specials.
fn estimate_tokens(texts: &[String]) -> usize {
    texts.iter().map(|t| t.len() / 4 + 2).sum()
}

impl Batcher {
    /// Starts the worker thread for `embedder`.
    pub fn new(embedder: Arc<Embedder>, cfg: BatcherConfig) -> Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            counters: Counters::default(),
            cfg,
        });
        let worker = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("rinfer-batcher".into())
                .spawn(move || worker(&shared, &embedder))
                .map_err(|e| Error::ThreadPool(e.to_string()))?
        };
        Ok(Self {
            shared,
            worker: Some(worker),
        })
    }

    /// Queues texts; `done` receives their rows, in order, when the batch ran.
    /// Refused at once with [`Error::Overloaded`] when the queue is full.
    pub fn submit(&self, texts: Vec<String>, opts: Submit, done: Completion) -> Result<()> {
        let mut q = self.lock();
        if q.closed {
            return Err(Error::ShutDown);
        }
        let cap = self.shared.cfg.max_queue;
        if q.items.len() >= cap {
            self.shared
                .counters
                .rejected
                .fetch_add(1, Ordering::Relaxed);
            return Err(Error::Overloaded {
                queued: q.items.len(),
                capacity: cap,
            });
        }
        q.items.push_back(Request {
            texts,
            opts,
            arrived: Instant::now(),
            done,
        });
        drop(q);
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Counters so far.
    pub fn stats(&self) -> BatcherStats {
        let c = &self.shared.counters;
        BatcherStats {
            batches: c.batches.load(Ordering::Relaxed),
            requests: c.requests.load(Ordering::Relaxed),
            texts: c.texts.load(Ordering::Relaxed),
            tokens: c.tokens.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            queued: self.lock().items.len() as u64,
        }
    }

    /// The limits in force.
    pub fn config(&self) -> &BatcherConfig {
        &self.shared.cfg
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.shared.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Batcher {
    /// Stops taking requests, answers what is queued, and joins the worker.
    fn drop(&mut self) {
        self.lock().closed = true;
        self.shared.wake.notify_all();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

fn worker(shared: &Shared, embedder: &Embedder) {
    let cfg = &shared.cfg;
    loop {
        let batch: Vec<Request> = {
            let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            while q.items.is_empty() && !q.closed {
                q = shared.wake.wait(q).unwrap_or_else(|e| e.into_inner());
            }
            if q.items.is_empty() {
                return; // closed and drained
            }
            // With a `max_wait`, wait for company until the oldest request's deadline
            // or a full batch; without one (continuous batching), start at once. A
            // wait too long for the clock has no deadline: a full batch ends it.
            let deadline = q.items[0].arrived.checked_add(cfg.max_wait);
            while !cfg.max_wait.is_zero() {
                let queued: usize = q.items.iter().map(|r| estimate_tokens(&r.texts)).sum();
                let now = Instant::now();
                if q.closed || queued >= cfg.max_batch_tokens || deadline.is_some_and(|d| now >= d)
                {
                    break;
                }
                q = match deadline {
                    Some(d) => {
                        let waited = shared.wake.wait_timeout(q, d - now);
                        waited.unwrap_or_else(|e| e.into_inner()).0
                    }
                    None => shared.wake.wait(q).unwrap_or_else(|e| e.into_inner()),
                };
            }
            let mut taken = Vec::new();
            let mut tokens = 0;
            while let Some(r) = q.items.front() {
                let t = estimate_tokens(&r.texts);
                if !taken.is_empty() && tokens + t > cfg.max_batch_tokens {
                    break;
                }
                tokens += t;
                taken.extend(q.items.pop_front());
            }
            taken
        };
        run_batch(shared, embedder, batch);
    }
}

/// Test hook: the worker panics inside its next batch's computation (to prove a
/// panic fails that batch's requests and the worker goes on).
#[doc(hidden)]
pub static PANIC_IN_NEXT_BATCH: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// The message of a caught panic.
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Tokenizes each request (a bad one fails alone), runs the rest as one batch
/// per (normalize) setting, and completes every request. A panic while computing
/// fails that batch's requests with [`Error::Internal`]; the worker goes on.
fn run_batch(shared: &Shared, embedder: &Embedder, batch: Vec<Request>) {
    let c = &shared.counters;
    let mut ready: Vec<(Request, Encoded)> = Vec::with_capacity(batch.len());
    let now = Instant::now();
    for r in batch {
        let gone = r
            .opts
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed));
        let late = r.opts.deadline.is_some_and(|d| d <= now);
        if gone || late {
            c.requests.fetch_add(1, Ordering::Relaxed);
            c.dropped.fetch_add(1, Ordering::Relaxed);
            (r.done)(Err(if gone {
                Error::Cancelled
            } else {
                Error::Expired
            }));
            continue;
        }
        match embedder.tokenizer().encode(&r.texts, r.opts.truncate) {
            Ok(enc) => ready.push((r, enc)),
            Err(e) => {
                c.requests.fetch_add(1, Ordering::Relaxed);
                (r.done)(Err(e));
            }
        }
    }
    for normalize in [None, Some(false), Some(true)] {
        let (group, rest): (Vec<_>, Vec<_>) = ready
            .into_iter()
            .partition(|(r, _)| r.opts.normalize == normalize);
        ready = rest;
        if group.is_empty() {
            continue;
        }
        let mut all = Encoded {
            offsets: vec![0],
            ..Default::default()
        };
        for (_, e) in &group {
            all.ids.extend_from_slice(&e.ids);
            all.type_ids.extend_from_slice(&e.type_ids);
            let base = *all.offsets.last().unwrap_or(&0);
            all.offsets.extend(e.offsets[1..].iter().map(|o| o + base));
        }
        let dim = embedder.dim();
        c.batches.fetch_add(1, Ordering::Relaxed);
        c.tokens.fetch_add(all.ids.len() as u64, Ordering::Relaxed);
        let computed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if PANIC_IN_NEXT_BATCH.swap(false, Ordering::Relaxed) {
                panic!("injected by the test hook");
            }
            embedder.embed_encoded(&all, normalize)
        }))
        .unwrap_or_else(|p| Err(Error::Internal(panic_message(p.as_ref()))));
        match computed {
            Ok(rows) => {
                let mut at = 0;
                for (r, e) in group {
                    let n = e.len();
                    let mine = rows[at * dim..(at + n) * dim].to_vec();
                    at += n;
                    c.requests.fetch_add(1, Ordering::Relaxed);
                    c.texts.fetch_add(n as u64, Ordering::Relaxed);
                    let vectors =
                        Array2::from_shape_vec((n, dim), mine).expect("n rows of dim values");
                    (r.done)(Ok(Rows {
                        vectors,
                        tokens: e.ids.len(),
                    }));
                }
            }
            Err(e) => {
                for (r, _) in group {
                    c.requests.fetch_add(1, Ordering::Relaxed);
                    (r.done)(Err(match &e {
                        Error::Internal(m) => Error::Internal(m.clone()),
                        other => Error::InvalidInput(other.to_string()),
                    }));
                }
            }
        }
    }
}
