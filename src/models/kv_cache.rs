//! The keys and values sequences have computed, per decoder layer, after their
//! norms and RoPE: what their next tokens attend to. They live in fixed-size
//! blocks of [`BLOCK_LEN`] positions (each block holds every layer's keys and
//! values for its positions) taken from a [`KvPool`] whose blocks are all
//! allocated when the pool is made, sized by a token budget. A sequence's
//! [`KvCache`] reserves the blocks it can ever need when it is made, takes them
//! from the pool one at a time as positions are appended (a block moves, nothing
//! is copied or reallocated while decoding) and gives them back the moment it is
//! dropped (a finished or cancelled sequence). Storage is f32 or bf16 (rounded to
//! nearest even when appended, widened when read).

use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::kernels::Kernels;

/// Positions per block.
pub const BLOCK_LEN: usize = 16;

/// How cached keys and values are stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum KvDtype {
    /// 32-bit floats: exactly what attention computed.
    #[default]
    F32,
    /// bfloat16 (rounded to nearest even): half the memory and bandwidth, about
    /// three significant digits.
    Bf16,
}

impl KvDtype {
    /// Every storage type, by name.
    pub const ALL: [KvDtype; 2] = [KvDtype::F32, KvDtype::Bf16];

    /// `"f32"` (or `"float32"`) and `"bf16"` (or `"bfloat16"`); anything else is
    /// [`Error::InvalidInput`] naming the allowed values.
    pub fn parse(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(Self::F32),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            _ => Err(Error::InvalidInput(format!(
                "kv_cache_dtype {name:?} is not one of \"f32\", \"bf16\""
            ))),
        }
    }

    /// Its name (`"f32"`, `"bf16"`).
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
        }
    }

    /// Bytes per stored value.
    pub fn size(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::Bf16 => 2,
        }
    }
}

impl std::fmt::Display for KvDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a cache holds per position: `layers` x (keys, values) x `kv_heads` x
/// `head_dim` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvShape {
    /// Decoder layers.
    pub layers: usize,
    /// Key/value heads per layer.
    pub kv_heads: usize,
    /// Values per head.
    pub head_dim: usize,
}

impl KvShape {
    /// Values per position of one layer's keys (or values).
    pub fn width(&self) -> usize {
        self.kv_heads * self.head_dim
    }

    /// Values one block holds (`usize::MAX` on overflow: no pool can hold one).
    fn block_values(&self) -> usize {
        [2, self.kv_heads, self.head_dim, BLOCK_LEN]
            .into_iter()
            .try_fold(self.layers, usize::checked_mul)
            .unwrap_or(usize::MAX)
    }
}

/// Storage of one block: `[layer][keys, values][kv head][slot][head_dim]`, so one
/// head's rows within a block are contiguous.
enum Block {
    F32(Box<[f32]>),
    Bf16(Box<[u16]>),
}

impl Block {
    fn new(values: usize, dtype: KvDtype) -> Self {
        match dtype {
            KvDtype::F32 => Self::F32(vec![0.0; values].into_boxed_slice()),
            KvDtype::Bf16 => Self::Bf16(vec![0; values].into_boxed_slice()),
        }
    }
}

/// The pool's books, behind its mutex.
struct State {
    /// Blocks no cache holds.
    free: Vec<Block>,
    /// Blocks that exist (free or held).
    allocated: usize,
    /// Blocks promised to caches, held or not yet taken.
    reserved: usize,
}

/// The blocks of every cache of one model (one scheduler's or one batch's).
pub struct KvPool {
    shape: KvShape,
    dtype: KvDtype,
    /// Values per block.
    block_values: usize,
    /// Blocks kept for good (the budget); more exist only while a sequence larger
    /// than the rest of the pool needs them.
    standing: usize,
    state: Mutex<State>,
}

/// Counters of a [`KvPool`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStats {
    /// How values are stored.
    pub dtype: KvDtype,
    /// Positions per block.
    pub block_len: usize,
    /// Blocks that exist now (the budget's, plus any a too-large sequence added).
    pub blocks_total: usize,
    /// Blocks holding some sequence's keys and values.
    pub blocks_in_use: usize,
    /// Blocks promised to running sequences (in use, or to be taken as they grow).
    pub blocks_reserved: usize,
    /// Bytes of one block.
    pub block_bytes: usize,
}

impl std::fmt::Debug for KvPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvPool")
            .field("shape", &self.shape)
            .field("stats", &self.stats())
            .finish()
    }
}

impl KvPool {
    /// Blocks that hold `positions` positions.
    pub fn blocks_for(positions: usize) -> usize {
        positions.div_ceil(BLOCK_LEN)
    }

    /// A pool with room for `positions` positions (rounded up to whole blocks), all
    /// of its blocks allocated now. Refused when the sizes overflow or the block
    /// list cannot be allocated.
    pub fn new(shape: KvShape, positions: usize, dtype: KvDtype) -> Result<Arc<Self>> {
        let pool = Self::on_demand(shape, dtype);
        let blocks = Self::blocks_for(positions);
        pool.grow(&mut pool.lock(), blocks, positions)?;
        Ok(Arc::new(Self {
            standing: blocks,
            ..pool
        }))
    }

    /// A pool with no standing blocks: each cache's blocks are allocated when it
    /// reserves them and freed when it is dropped (a batch with no budget).
    pub fn unbudgeted(shape: KvShape, dtype: KvDtype) -> Arc<Self> {
        Arc::new(Self::on_demand(shape, dtype))
    }

    fn on_demand(shape: KvShape, dtype: KvDtype) -> Self {
        Self {
            shape,
            dtype,
            block_values: shape.block_values(),
            standing: 0,
            state: Mutex::new(State {
                free: Vec::new(),
                allocated: 0,
                reserved: 0,
            }),
        }
    }

    /// Allocates `blocks` more blocks onto the free list, for a cache (or a pool)
    /// of `positions` positions; refused when the sizes overflow or the block list
    /// cannot be allocated.
    fn grow(&self, st: &mut State, blocks: usize, positions: usize) -> Result<()> {
        let dtype = self.dtype;
        let too_big = || {
            Error::InvalidInput(format!(
                "a KV cache of {positions} positions ({blocks} blocks of {} {dtype} values) \
                 cannot be allocated",
                self.block_values
            ))
        };
        self.block_values
            .checked_mul(dtype.size())
            .and_then(|b| b.checked_mul(blocks.saturating_add(st.allocated)))
            .filter(|&bytes| bytes <= isize::MAX as usize)
            .ok_or_else(too_big)?;
        st.free.try_reserve(blocks).map_err(|_| too_big())?;
        st.free
            .extend((0..blocks).map(|_| Block::new(self.block_values, dtype)));
        st.allocated += blocks;
        Ok(())
    }

    /// The books; a panic elsewhere while they were held leaves them consistent
    /// (every update is a few integer steps), so a poisoned lock is taken as is.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What each position holds.
    pub fn shape(&self) -> KvShape {
        self.shape
    }

    /// How values are stored.
    pub fn dtype(&self) -> KvDtype {
        self.dtype
    }

    /// Blocks kept for good (the budget).
    pub fn standing_blocks(&self) -> usize {
        self.standing
    }

    /// The counters.
    pub fn stats(&self) -> PoolStats {
        let st = self.lock();
        PoolStats {
            dtype: self.dtype,
            block_len: BLOCK_LEN,
            blocks_total: st.allocated,
            blocks_in_use: st.allocated - st.free.len(),
            blocks_reserved: st.reserved,
            block_bytes: self.block_values * self.dtype.size(),
        }
    }

    /// Whether a sequence of up to `positions` positions can reserve its blocks
    /// without the pool growing.
    pub fn fits(&self, positions: usize) -> bool {
        let st = self.lock();
        Self::blocks_for(positions) <= st.allocated.saturating_sub(st.reserved)
    }

    /// A cache for up to `positions` positions, its blocks reserved. When the pool
    /// has too few unreserved blocks it grows by the shortfall (allocated now, not
    /// while decoding); blocks beyond the budget are freed as they come back.
    /// A scheduler checks [`Self::fits`] first, so its pool grows only for a lone
    /// sequence larger than the whole budget.
    pub fn cache(self: &Arc<Self>, positions: usize) -> Result<KvCache> {
        let need = Self::blocks_for(positions);
        let mut st = self.lock();
        let short = need.saturating_sub(st.allocated.saturating_sub(st.reserved));
        if short > 0 {
            self.grow(&mut st, short, positions)?;
        }
        st.reserved += need;
        drop(st);
        Ok(KvCache {
            pool: self.clone(),
            blocks: Vec::with_capacity(need),
            reserved: need,
            len: 0,
            capacity: positions,
        })
    }
}

/// One sequence's keys and values: the blocks it holds, in position order.
pub struct KvCache {
    pool: Arc<KvPool>,
    blocks: Vec<Block>,
    /// Blocks the pool promised this cache (held or not yet taken).
    reserved: usize,
    /// Positions held (every layer holds the same).
    len: usize,
    /// Positions reserved.
    capacity: usize,
}

impl std::fmt::Debug for KvCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvCache")
            .field("len", &self.len)
            .field("capacity", &self.capacity)
            .field("blocks", &self.blocks.len())
            .field("dtype", &self.pool.dtype)
            .finish()
    }
}

impl Drop for KvCache {
    fn drop(&mut self) {
        let mut st = self.pool.lock();
        st.reserved -= self.reserved;
        st.free.append(&mut self.blocks);
        // Blocks a too-large sequence added go once nothing needs them.
        let keep = self.pool.standing.max(st.reserved);
        let extra = st.allocated.saturating_sub(keep).min(st.free.len());
        let at = st.free.len() - extra;
        let gone: Vec<Block> = st.free.split_off(at);
        st.allocated -= extra;
        drop(st);
        drop(gone);
    }
}

impl KvCache {
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

    /// Blocks held now.
    pub fn blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Bytes of key and value storage reserved.
    pub fn reserved_bytes(&self) -> usize {
        self.reserved * self.pool.block_values * self.pool.dtype.size()
    }

    /// Values per position of one layer's keys.
    pub fn width(&self) -> usize {
        self.pool.shape.width()
    }

    /// What each position holds.
    pub fn shape(&self) -> KvShape {
        self.pool.shape
    }

    /// How values are stored.
    pub fn dtype(&self) -> KvDtype {
        self.pool.dtype
    }

    /// Checks that `new` more positions fit and takes the blocks they need from
    /// the pool (reserved when the cache was made, so they are there).
    pub(crate) fn make_room(&mut self, new: usize) -> Result<()> {
        let end = self.len + new;
        if end > self.capacity {
            return Err(Error::InvalidInput(format!(
                "the KV cache holds {} of {} positions; {new} more do not fit",
                self.len, self.capacity
            )));
        }
        let need = KvPool::blocks_for(end);
        if need > self.blocks.len() {
            let mut st = self.pool.lock();
            while self.blocks.len() < need {
                let block = st.free.pop().ok_or_else(|| {
                    Error::InvalidInput(
                        "the KV cache pool has no block left for a reserved one".into(),
                    )
                })?;
                self.blocks.push(block);
            }
        }
        Ok(())
    }

    /// Offset of head `g`'s row at `slot` of `layer`'s keys (`kind` 0) or values
    /// (`kind` 1) within a block.
    fn at(&self, layer: usize, kind: usize, g: usize, slot: usize) -> usize {
        offset(&self.pool.shape, layer, kind, g, slot)
    }

    /// Writes `layer`'s key and value rows (`kv_heads * head_dim` each) of position
    /// `pos`, whose block [`Self::make_room`] took.
    pub(crate) fn write(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let shape = self.pool.shape;
        let (dh, slot) = (shape.head_dim, pos % BLOCK_LEN);
        let block = &mut self.blocks[pos / BLOCK_LEN];
        for g in 0..shape.kv_heads {
            let (ko, vo) = (
                offset(&shape, layer, 0, g, slot),
                offset(&shape, layer, 1, g, slot),
            );
            let (ks, vs) = (&k[g * dh..(g + 1) * dh], &v[g * dh..(g + 1) * dh]);
            match block {
                Block::F32(d) => {
                    d[ko..ko + dh].copy_from_slice(ks);
                    d[vo..vo + dh].copy_from_slice(vs);
                }
                Block::Bf16(d) => {
                    narrow(ks, &mut d[ko..ko + dh]);
                    narrow(vs, &mut d[vo..vo + dh]);
                }
            }
        }
    }

    /// Records `n` written positions once every layer has them.
    pub(crate) fn commit(&mut self, n: usize) {
        self.len += n;
    }

    /// Attention of one query head `q` over kv head `g` of `layer` at positions
    /// `keys` (all written): scores `q·k * scale`, `exp_shifted` (softmax without
    /// the division), the weighted values into `o`, with the path's vector kernels.
    /// Reads block by block; bf16 is widened on the fly. `scores` is scratch.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn attend(
        &self,
        kern: &Kernels,
        layer: usize,
        g: usize,
        q: &[f32],
        keys: Range<usize>,
        scale: f32,
        o: &mut [f32],
        scores: &mut Vec<f32>,
    ) {
        let dh = self.pool.shape.head_dim;
        scores.clear();
        for (b, slots) in segments(keys.clone()) {
            let at = self.at(layer, 0, g, slots.start);
            let n = slots.len() * dh;
            match &self.blocks[b] {
                Block::F32(d) => scores.extend(
                    d[at..at + n]
                        .chunks_exact(dh)
                        .map(|k| (kern.dot)(q, k) * scale),
                ),
                Block::Bf16(d) => scores.extend(
                    d[at..at + n]
                        .chunks_exact(dh)
                        .map(|k| (kern.dot_bf16)(q, k) * scale),
                ),
            }
        }
        let sum = (kern.exp_shifted)(scores);
        o.fill(0.0);
        let mut p = scores.iter();
        for (b, slots) in segments(keys) {
            let at = self.at(layer, 1, g, slots.start);
            let n = slots.len() * dh;
            match &self.blocks[b] {
                Block::F32(d) => {
                    for (v, p) in d[at..at + n].chunks_exact(dh).zip(&mut p) {
                        (kern.axpy)(o, *p, v);
                    }
                }
                Block::Bf16(d) => {
                    for (v, p) in d[at..at + n].chunks_exact(dh).zip(&mut p) {
                        (kern.axpy_bf16)(o, *p, v);
                    }
                }
            }
        }
        let inv = 1.0 / sum;
        o.iter_mut().for_each(|a| *a *= inv);
    }

    /// `layer`'s keys and values of kv head `g` at `pos`, widened to f32.
    pub fn row(&self, layer: usize, g: usize, pos: usize) -> Option<(Vec<f32>, Vec<f32>)> {
        let s = &self.pool.shape;
        if pos >= self.len || layer >= s.layers || g >= s.kv_heads {
            return None;
        }
        let dh = s.head_dim;
        let read = |kind| {
            let at = self.at(layer, kind, g, pos % BLOCK_LEN);
            match &self.blocks[pos / BLOCK_LEN] {
                Block::F32(d) => d[at..at + dh].to_vec(),
                Block::Bf16(d) => d[at..at + dh].iter().map(|&b| widen(b)).collect(),
            }
        };
        Some((read(0), read(1)))
    }
}

/// Positions `r` split at block edges: (block, slots within it).
fn segments(r: Range<usize>) -> impl Iterator<Item = (usize, Range<usize>)> {
    let (lo, hi) = (r.start, r.end);
    let first = lo / BLOCK_LEN;
    let last = if hi > lo {
        hi.div_ceil(BLOCK_LEN)
    } else {
        first
    };
    (first..last).map(move |b| {
        let start = lo.max(b * BLOCK_LEN);
        let end = hi.min((b + 1) * BLOCK_LEN);
        (b, start - b * BLOCK_LEN..end - b * BLOCK_LEN)
    })
}

/// Offset of head `g`'s row at `slot` of `layer`'s keys (`kind` 0) or values
/// (`kind` 1) within a block of `shape`.
#[inline(always)]
fn offset(shape: &KvShape, layer: usize, kind: usize, g: usize, slot: usize) -> usize {
    (((layer * 2 + kind) * shape.kv_heads + g) * BLOCK_LEN + slot) * shape.head_dim
}

/// bf16 bits to f32.
#[inline(always)]
fn widen(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// f32 to bf16 bits, rounding to nearest even (NaN stays NaN).
fn narrow(src: &[f32], dst: &mut [u16]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = half::bf16::from_f32(s).to_bits();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: KvShape = KvShape {
        layers: 2,
        kv_heads: 2,
        head_dim: 4,
    };

    #[test]
    fn blocks_are_reserved_taken_and_given_back() {
        let pool = KvPool::new(SHAPE, 100, KvDtype::F32).unwrap();
        let s = pool.stats();
        assert_eq!(
            (s.blocks_total, s.blocks_in_use, s.blocks_reserved),
            (7, 0, 0)
        );
        assert!(pool.fits(112) && !pool.fits(113));
        let mut a = pool.cache(40).unwrap();
        assert_eq!(pool.stats().blocks_reserved, 3);
        assert_eq!(pool.stats().blocks_in_use, 0, "blocks are taken lazily");
        a.make_room(17).unwrap();
        a.commit(17);
        assert_eq!(a.blocks(), 2);
        assert_eq!(pool.stats().blocks_in_use, 2);
        assert!(a.make_room(24).is_err(), "past the capacity");
        assert!(pool.fits(64) && !pool.fits(65));
        let b = pool.cache(64).unwrap();
        assert!(!pool.fits(1));
        drop(a);
        assert_eq!(pool.stats().blocks_in_use, 0);
        assert_eq!(pool.stats().blocks_reserved, 4);
        drop(b);
        let s = pool.stats();
        assert_eq!(
            (s.blocks_total, s.blocks_in_use, s.blocks_reserved),
            (7, 0, 0)
        );
    }

    #[test]
    fn a_sequence_larger_than_the_pool_grows_it_until_it_ends() {
        let pool = KvPool::new(SHAPE, 32, KvDtype::Bf16).unwrap();
        let mut big = pool.cache(100).unwrap();
        assert_eq!(pool.stats().blocks_total, 7);
        big.make_room(50).unwrap();
        assert_eq!(pool.stats().blocks_in_use, 4);
        drop(big);
        let s = pool.stats();
        assert_eq!(
            (s.blocks_total, s.blocks_in_use, s.blocks_reserved),
            (2, 0, 0)
        );
        let none = KvPool::unbudgeted(SHAPE, KvDtype::F32);
        let c = none.cache(20).unwrap();
        assert_eq!(none.stats().blocks_total, 2);
        drop(c);
        assert_eq!(none.stats().blocks_total, 0);
    }

    #[test]
    fn rows_round_trip_across_blocks_and_bf16_rounds_to_nearest_even() {
        for dtype in KvDtype::ALL {
            let pool = KvPool::new(SHAPE, 40, dtype).unwrap();
            let mut c = pool.cache(40).unwrap();
            c.make_room(40).unwrap();
            let row = |layer: usize, pos: usize, kind: usize| -> Vec<f32> {
                (0..8)
                    .map(|i| (layer * 1000 + pos * 10 + kind * 5 + i) as f32 + 0.25)
                    .collect()
            };
            for pos in 0..40 {
                for layer in 0..2 {
                    c.write(layer, pos, &row(layer, pos, 0), &row(layer, pos, 1));
                }
            }
            c.commit(40);
            for pos in [0, 15, 16, 17, 39] {
                for layer in 0..2 {
                    for g in 0..2 {
                        let (k, v) = c.row(layer, g, pos).unwrap();
                        for (got, want) in k.iter().zip(&row(layer, pos, 0)[g * 4..]) {
                            let exact = half::bf16::from_f32(*want).to_f32();
                            let want = if dtype == KvDtype::F32 { *want } else { exact };
                            assert_eq!(*got, want);
                        }
                        assert_eq!(v.len(), 4);
                    }
                }
            }
            assert!(c.row(0, 0, 40).is_none());
        }
        let mut d = [0u16; 3];
        // 1 + 2^-8 is halfway between two bf16 values: ties to even (1.0).
        narrow(&[1.0 + 1.0 / 256.0, 1.0 + 3.0 / 256.0, f32::NAN], &mut d);
        assert_eq!(widen(d[0]), 1.0);
        assert_eq!(widen(d[1]), 1.0 + 4.0 / 256.0);
        assert!(widen(d[2]).is_nan());
    }

    #[test]
    fn segments_split_at_block_edges() {
        let s: Vec<_> = segments(5..40).collect();
        assert_eq!(s, vec![(0, 5..16), (1, 0..16), (2, 0..8)]);
        assert_eq!(segments(16..17).collect::<Vec<_>>(), vec![(1, 0..1)]);
        assert_eq!(segments(3..3).count(), 0);
    }

    #[test]
    fn dtype_names() {
        assert_eq!(KvDtype::parse("BF16").unwrap(), KvDtype::Bf16);
        assert_eq!(KvDtype::parse("float32").unwrap(), KvDtype::F32);
        let err = KvDtype::parse("f16").unwrap_err().to_string();
        assert!(err.contains("\"f32\", \"bf16\""), "{err}");
    }
}
