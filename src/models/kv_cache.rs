//! The keys and values one sequence has computed, per decoder layer, after their
//! norms and RoPE: what the next tokens attend to. Storage for the whole sequence
//! (prompt + tokens to generate) is reserved up front, so decoding never
//! reallocates or copies, and it is freed when the cache is dropped.

use crate::error::{Error, Result};

/// One sequence's keys and values, `[positions x kv_heads * head_dim]` per layer.
#[derive(Clone, Debug)]
pub struct KvCache {
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    /// Values per position (`kv_heads * head_dim`).
    width: usize,
    /// Positions held (every layer holds the same).
    len: usize,
    /// Positions reserved.
    capacity: usize,
}

impl KvCache {
    /// A cache for `layers` layers of `width` values per position, with room for
    /// `capacity` positions.
    pub fn new(layers: usize, width: usize, capacity: usize) -> Self {
        let room = || {
            (0..layers)
                .map(|_| Vec::with_capacity(capacity * width))
                .collect()
        };
        Self {
            keys: room(),
            values: room(),
            width,
            len: 0,
            capacity,
        }
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions reserved.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes of key and value storage reserved.
    pub fn reserved_bytes(&self) -> usize {
        2 * self.keys.len() * self.capacity * self.width * std::mem::size_of::<f32>()
    }

    /// Checks that `new` more positions fit.
    pub(crate) fn check_room(&self, new: usize) -> Result<()> {
        if self.len + new > self.capacity {
            return Err(Error::InvalidInput(format!(
                "the KV cache holds {} of {} positions; {new} more do not fit",
                self.len, self.capacity
            )));
        }
        Ok(())
    }

    /// Appends one layer's rows for the positions being computed.
    pub(crate) fn append(&mut self, layer: usize, k: &[f32], v: &[f32]) {
        self.keys[layer].extend_from_slice(k);
        self.values[layer].extend_from_slice(v);
    }

    /// Keys and values of `layer` (all positions appended so far).
    pub(crate) fn layer(&self, layer: usize) -> (&[f32], &[f32]) {
        (&self.keys[layer], &self.values[layer])
    }

    /// Records `n` appended positions once every layer has them.
    pub(crate) fn commit(&mut self, n: usize) {
        self.len += n;
    }

    /// Values per position.
    pub fn width(&self) -> usize {
        self.width
    }
}
