//! The batcher's worker survives a panic inside a batch: that batch's requests
//! fail with `Error::Internal` naming the panic, and the next request succeeds.

mod common;

use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use rinfer::batcher::{Batcher, BatcherConfig, Submit, PANIC_IN_NEXT_BATCH};
use rinfer::{Embedder, Error};

fn embed(b: &Batcher, text: &str) -> rinfer::Result<rinfer::batcher::Rows> {
    let (tx, rx) = mpsc::channel();
    b.submit(
        vec![text.to_string()],
        Submit {
            truncate: true,
            ..Default::default()
        },
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    )?;
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the request was never completed (worker dead?)")
}

#[test]
fn a_panic_in_a_batch_fails_its_requests_and_the_worker_goes_on() {
    let model = Arc::new(Embedder::load(common::minilm_dir()).unwrap());
    let b = Batcher::new(model, BatcherConfig::default()).unwrap();
    embed(&b, "warm up").unwrap();
    PANIC_IN_NEXT_BATCH.store(true, Ordering::Relaxed);
    let err = embed(&b, "this batch panics").unwrap_err();
    assert!(
        matches!(&err, Error::Internal(m) if m.contains("injected")),
        "{err}"
    );
    let ok = embed(&b, "and the next one runs").unwrap();
    assert_eq!(ok.vectors.nrows(), 1);
}

/// A `max_wait` too long for the clock (`Duration::MAX`; from Python,
/// `max_wait_ms=1e22`) has no deadline: a full batch runs (it used to overflow
/// `Instant + Duration` and kill the worker).
#[test]
fn a_max_wait_past_the_clock_waits_for_a_full_batch() {
    let model = Arc::new(Embedder::load("tests/data/models/gelu-mean").unwrap());
    let cfg = BatcherConfig {
        max_batch_tokens: 1,
        max_wait: Duration::MAX,
        max_queue: 8,
    };
    let b = Batcher::new(model, cfg).unwrap();
    assert_eq!(embed(&b, "a full batch").unwrap().vectors.nrows(), 1);
}
