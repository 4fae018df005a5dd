//! How passes are spread over rayon's pool: row blocks of one pass ([`par_rows`]), a training
//! batch as one [`Shards`] shard per thread, two independent parts at once ([`join`]), and the
//! per-thread flag that keeps the kernels of a shard or part on its own thread
//! ([`on_this_thread`]).

use std::mem::MaybeUninit;
use std::ops::Range;

use rayon::prelude::*;

use crate::math::add_to;
thread_local! {
    static ONE_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with every kernel it calls on this thread only (no GEMM or row pass is split).
pub fn on_this_thread<R>(f: impl FnOnce() -> R) -> R {
    let before = ONE_THREAD.with(|c| c.replace(true));
    let out = f();
    ONE_THREAD.with(|c| c.set(before));
    out
}

pub(crate) fn on_one_thread() -> bool {
    ONE_THREAD.with(|c| c.get())
}

/// Below this many elements a row-wise pass runs on the calling thread: handing it to the
/// thread pool costs more than it saves (sampling for a few states stays latency-bound).
const PARALLEL_ELEMS: usize = 1 << 15;

/// Runs `f(first_row, block)` over blocks of whole rows of `z` (rows of `width`), on rayon's
/// pool when `z` is large. The GEMMs already use every core; without this the LayerNorm,
/// activation and bias passes between them ran on one.
pub fn par_rows<T: Send>(z: &mut [T], width: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    let Some(per_task) = rows_per_task(z.len() / width.max(1), width) else {
        return f(0, z);
    };
    z.par_chunks_mut(per_task * width)
        .enumerate()
        .for_each(|(i, block)| f(i * per_task, block));
}

/// A new row-major `[rows, width]` buffer whose rows `f(first_row, block)` writes (on the pool
/// when large, as [`par_rows`]), with no zero-fill before.
///
/// # Safety
/// `f` must initialise every element of each block it is given.
pub unsafe fn new_rows(
    rows: usize,
    width: usize,
    f: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows * width);
    par_rows(&mut out.spare_capacity_mut()[..rows * width], width, f);
    // SAFETY: `f` initialised every element (the caller's contract).
    unsafe { out.set_len(rows * width) };
    out
}

/// Rows per task of a pass over `rows` rows of `width`, or `None` when the pass should stay on
/// the calling thread.
fn rows_per_task(rows: usize, width: usize) -> Option<usize> {
    (rows * width >= PARALLEL_ELEMS && rows >= 2 && !on_one_thread())
        .then(|| rows.div_ceil(4 * rayon::current_num_threads()))
}

/// [`par_rows`] with a second buffer of `aux_width` values per row (`aux`, `[rows, aux_width]`)
/// and a per-row buffer (`per_row`, `[rows]`) handed out alongside each block.
pub fn par_rows_with<A: Send>(
    z: &mut [f32],
    width: usize,
    aux: &mut [A],
    aux_width: usize,
    per_row: &mut [f32],
    f: impl Fn(&mut [f32], &mut [A], &mut [f32]) + Sync,
) {
    let Some(per_task) = rows_per_task(per_row.len(), width) else {
        return f(z, aux, per_row);
    };
    z.par_chunks_mut(per_task * width)
        .zip(aux.par_chunks_mut(per_task * aux_width))
        .zip(per_row.par_chunks_mut(per_task))
        .for_each(|((block, aux), out)| f(block, aux, out));
}

/// [`par_rows`] whose blocks each return a vector (`len` long), summed.
pub fn par_rows_sum(
    z: &mut [f32],
    width: usize,
    len: usize,
    f: impl Fn(usize, &mut [f32]) -> Vec<f32> + Sync,
) -> Vec<f32> {
    let Some(per_task) = rows_per_task(z.len() / width.max(1), width) else {
        return f(0, z);
    };
    z.par_chunks_mut(per_task * width)
        .enumerate()
        .map(|(i, block)| f(i * per_task, block))
        .reduce(
            || vec![0.0; len],
            |mut a, b| {
                add_to(&mut a, &b);
                a
            },
        )
}

/// Fewest rows a shard gets a thread for.
const MIN_SHARD_ROWS: usize = 64;

/// A training batch cut into one contiguous block of rows per thread.
///
/// Each shard's forward and backward pass runs on one thread from start to end, its GEMMs and
/// row passes unsplit, and the parameter gradients are summed over shards: one hand-off per pass
/// where splitting every GEMM and row pass over the threads meant one per kernel, each with a
/// wait for the slower half (the gain measured: offrl's `benches/RESULTS.md`, "Measurements
/// behind the design constants").
#[derive(Debug, Clone)]
pub struct Shards(Vec<Range<usize>>);

impl Shards {
    /// The shards of `rows` rows: one per thread, at least `MIN_SHARD_ROWS` rows each (one
    /// shard when the batch is smaller, or inside [`join`]'s tasks).
    pub fn of(rows: usize) -> Self {
        let threads = if on_one_thread() {
            1
        } else {
            rayon::current_num_threads()
        };
        let count = (rows / MIN_SHARD_ROWS).clamp(1, threads);
        let per = rows.div_ceil(count);
        Self(
            (0..count)
                .map(|i| (i * per).min(rows)..((i + 1) * per).min(rows))
                .collect(),
        )
    }

    /// How many shards.
    pub fn count(&self) -> usize {
        self.0.len()
    }

    /// `f(i, rows)` for every shard `i`, in order. With several shards each runs on a thread of
    /// its own and its kernels on that thread only; a single shard runs here, its kernels free
    /// to split.
    pub fn map<R: Send>(&self, f: impl Fn(usize, Range<usize>) -> R + Sync) -> Vec<R> {
        if let [rows] = &self.0[..] {
            return vec![f(0, rows.clone())];
        }
        self.0
            .par_iter()
            .enumerate()
            .map(|(i, rows)| on_this_thread(|| f(i, rows.clone())))
            .collect()
    }

    /// [`Shards::map`] for row outputs: the shards' rows, in order, in one buffer. One shard's
    /// output is returned as it is (no copy: a few rows are latency-bound).
    pub fn map_concat<T: Clone + Send>(
        &self,
        f: impl Fn(usize, Range<usize>) -> Vec<T> + Sync,
    ) -> Vec<T> {
        match &self.0[..] {
            [rows] => f(0, rows.clone()),
            _ => self.map(f).concat(),
        }
    }
}

/// Two independent parts of a training step: with `parallel`, at once, each on a thread of its
/// own with its kernels unsplit (like a [`Shards`] shard); otherwise one after the other.
pub fn join<A: Send, B: Send>(
    parallel: bool,
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    if parallel {
        rayon::join(|| on_this_thread(a), || on_this_thread(b))
    } else {
        (a(), b())
    }
}
