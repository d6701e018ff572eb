//! A continuous-batching scheduler shared by every caller of one model: a thread
//! owns one [`Batch`]; callers submit sequences from any thread and read their
//! events from a channel. The batch's KV caches live in one [`KvPool`] of
//! `max_batch_tokens` positions (rounded up to blocks), allocated at start.
//! Sequences join between steps while the pool has the blocks of their prompt +
//! `max_tokens` unreserved, wait in a bounded queue beyond it, and are refused
//! ([`Error::Overloaded`]) past the queue. A sequence larger than the whole pool
//! still runs, alone: it joins an empty batch and the pool grows to fit it until
//! it ends. A caller that drops its [`Stream`] or cancels it ends its sequence at
//! the next step, giving its blocks back.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::generator::Generator;
use crate::error::{Error, Result};
use crate::generate::{Batch, Event, FinishReason, SamplingParams};
use crate::models::kv_cache::KvPool;

/// Limits of a [`Scheduler`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedulerLimits {
    /// Cache positions (prompt + `max_tokens` of every running sequence) at most:
    /// the size of the KV pool, rounded up to whole blocks.
    pub max_batch_tokens: usize,
    /// Sequences waiting for room at most; past it, submissions are refused.
    pub max_waiting: usize,
    /// Prompt tokens one sequence feeds per step at most (chunked prefill).
    pub prefill_chunk: usize,
}

impl Default for SchedulerLimits {
    fn default() -> Self {
        Self {
            max_batch_tokens: 32 * 1024,
            max_waiting: 256,
            prefill_chunk: 256,
        }
    }
}

/// Counters of a scheduler, readable while it runs.
#[derive(Debug, Default)]
pub struct SchedulerStats {
    /// Sequences in the batch.
    pub active: AtomicUsize,
    /// Sequences waiting for room.
    pub waiting: AtomicUsize,
    /// Cache positions reserved by the batch.
    pub reserved: AtomicUsize,
    /// Tokens generated since start.
    pub generated: AtomicUsize,
    /// Steps run since start.
    pub steps: AtomicUsize,
    /// Submissions refused as overloaded since start.
    pub refused: AtomicUsize,
}

struct Submission {
    prompt: Vec<u32>,
    params: SamplingParams,
    events: Sender<Result<Event>>,
    cancelled: Arc<AtomicBool>,
}

/// One submitted sequence's events, in order; the last has `finish` set.
pub struct Stream {
    rx: Receiver<Result<Event>>,
    cancelled: Arc<AtomicBool>,
    done: bool,
}

impl Stream {
    /// The next event, waiting for it; `None` after the last.
    pub fn next_event(&mut self) -> Option<Result<Event>> {
        if self.done {
            return None;
        }
        match self.rx.recv() {
            Ok(e) => {
                if e.as_ref().map_or(true, |e| e.finish.is_some()) {
                    self.done = true;
                }
                Some(e)
            }
            Err(_) => {
                self.done = true;
                Some(Err(Error::ShutDown))
            }
        }
    }

    /// Ends the sequence at the scheduler's next step.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// The shared continuous batch of one [`Generator`].
pub struct Scheduler {
    tx: Mutex<Option<Sender<Submission>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    stats: Arc<SchedulerStats>,
    limits: SchedulerLimits,
    pool: Arc<KvPool>,
}

impl Scheduler {
    /// Starts the scheduler thread for `model`, its KV pool (`max_batch_tokens`
    /// positions in the model's cache dtype) allocated now.
    ///
    /// # Panics
    ///
    /// When the pool cannot be allocated (a budget too large for memory); see
    /// [`Self::try_start`].
    pub fn start(model: Arc<Generator>, limits: SchedulerLimits) -> Self {
        Self::try_start(model, limits).unwrap_or_else(|e| panic!("cannot start the scheduler: {e}"))
    }

    /// [`Self::start`], refusing a pool that cannot be allocated.
    pub fn try_start(model: Arc<Generator>, limits: SchedulerLimits) -> Result<Self> {
        let pool = model.kv_pool(limits.max_batch_tokens)?;
        let (tx, rx) = mpsc::channel::<Submission>();
        let stats = Arc::new(SchedulerStats::default());
        let st = stats.clone();
        let batch = model.batch_in(pool.clone());
        let thread = std::thread::Builder::new()
            .name("rinfer-generate".into())
            .spawn(move || run(&model, batch, limits, &rx, &st))
            .map_err(|e| Error::InvalidInput(format!("cannot start the scheduler thread: {e}")))?;
        Ok(Self {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            stats,
            limits,
            pool,
        })
    }

    /// Submits a sequence (prompt token ids); its events arrive on the stream.
    pub fn submit(&self, prompt: Vec<u32>, params: SamplingParams) -> Result<Stream> {
        let (events, rx) = mpsc::channel();
        let cancelled = Arc::new(AtomicBool::new(false));
        let sub = Submission {
            prompt,
            params,
            events,
            cancelled: cancelled.clone(),
        };
        let guard = self.tx.lock().map_err(|_| Error::ShutDown)?;
        guard
            .as_ref()
            .ok_or(Error::ShutDown)?
            .send(sub)
            .map_err(|_| Error::ShutDown)?;
        Ok(Stream {
            rx,
            cancelled,
            done: false,
        })
    }

    /// The counters.
    pub fn stats(&self) -> &SchedulerStats {
        &self.stats
    }

    /// The limits it runs under.
    pub fn limits(&self) -> SchedulerLimits {
        self.limits
    }

    /// The pool the running sequences' KV caches take their blocks from (its
    /// [`KvPool::stats`]: blocks total, in use, reserved).
    pub fn kv_pool(&self) -> &KvPool {
        &self.pool
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

struct Running {
    id: u64,
    events: Sender<Result<Event>>,
    cancelled: Arc<AtomicBool>,
    reserved: usize,
}

fn run(
    model: &Generator,
    mut batch: Batch,
    limits: SchedulerLimits,
    rx: &Receiver<Submission>,
    stats: &SchedulerStats,
) {
    let dec = model.model();
    batch.prefill_chunk = limits.prefill_chunk.max(1);
    let mut running: Vec<Running> = Vec::new();
    let mut waiting: VecDeque<Submission> = VecDeque::new();
    let mut open = true;
    loop {
        // New submissions: wait for one when idle, else take what is there.
        loop {
            let got = if running.is_empty() && waiting.is_empty() {
                if !open {
                    return;
                }
                rx.recv_timeout(Duration::from_millis(200))
            } else {
                rx.recv_timeout(Duration::ZERO)
            };
            match got {
                Ok(sub) => waiting.push_back(sub),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        // Admit waiting sequences while the pool has their blocks unreserved (the
        // first always joins an empty batch, so one too large for the whole pool
        // still runs alone, the pool growing for it).
        while let Some(sub) = waiting.front() {
            if sub.cancelled.load(Ordering::Relaxed) {
                waiting.pop_front();
                continue;
            }
            let need = sub
                .prompt
                .len()
                .saturating_add(sub.params.max_tokens)
                .min(dec.config().max_tokens());
            if !batch.is_empty() && !batch.pool().fits(need) {
                break;
            }
            let sub = waiting.pop_front().expect("checked above");
            match batch.add(dec, sub.prompt, sub.params) {
                Ok(id) => {
                    running.push(Running {
                        id,
                        events: sub.events,
                        cancelled: sub.cancelled,
                        reserved: need,
                    });
                }
                Err(e) => {
                    let _ = sub.events.send(Err(e));
                }
            }
        }
        // What neither fits nor has a place in the queue is refused at once.
        while waiting.len() > limits.max_waiting {
            let sub = waiting.pop_back().expect("longer than the limit");
            stats.refused.fetch_add(1, Ordering::Relaxed);
            let _ = sub.events.send(Err(Error::Overloaded {
                queued: waiting.len(),
                capacity: limits.max_waiting,
            }));
        }
        stats.waiting.store(waiting.len(), Ordering::Relaxed);
        // Callers that left.
        running.retain(|r| {
            let gone = r.cancelled.load(Ordering::Relaxed);
            if gone {
                batch.cancel(r.id);
                let _ = r.events.send(Ok(Event {
                    seq: r.id,
                    token: None,
                    text: String::new(),
                    logprob: None,
                    finish: Some(FinishReason::Cancelled),
                }));
            }
            !gone
        });
        stats.active.store(running.len(), Ordering::Relaxed);
        stats
            .reserved
            .store(running.iter().map(|r| r.reserved).sum(), Ordering::Relaxed);
        if running.is_empty() {
            continue;
        }
        match batch.step(dec, model.tokenizer()) {
            Ok(events) => {
                stats.steps.fetch_add(1, Ordering::Relaxed);
                // Finished sequences leave (and the counters say so) before their
                // callers hear of it.
                let mut out = Vec::with_capacity(events.len());
                for e in events {
                    stats
                        .generated
                        .fetch_add(usize::from(e.token.is_some()), Ordering::Relaxed);
                    let Some(k) = running.iter().position(|r| r.id == e.seq) else {
                        continue;
                    };
                    let tx = running[k].events.clone();
                    if e.finish.is_some() {
                        running.swap_remove(k);
                    }
                    out.push((tx, e));
                }
                stats.active.store(running.len(), Ordering::Relaxed);
                stats
                    .reserved
                    .store(running.iter().map(|r| r.reserved).sum(), Ordering::Relaxed);
                for (tx, e) in out {
                    let (seq, finished) = (e.seq, e.finish.is_some());
                    if tx.send(Ok(e)).is_err() && !finished {
                        // The caller left: end its sequence now.
                        batch.cancel(seq);
                        running.retain(|r| r.id != seq);
                    }
                }
            }
            Err(e) => {
                // A failed step fails every running sequence; the batch starts over.
                for r in running.drain(..) {
                    batch.cancel(r.id);
                    let _ = r
                        .events
                        .send(Err(Error::InvalidInput(format!("generation failed: {e}"))));
                }
            }
        }
        stats.active.store(running.len(), Ordering::Relaxed);
        stats
            .reserved
            .store(running.iter().map(|r| r.reserved).sum(), Ordering::Relaxed);
    }
}
