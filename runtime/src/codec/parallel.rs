//! Decoding into a fresh buffer on every core while one of them hashes the result in order.
//!
//! XXH64 is sequential, so it cannot be split across tasks; instead the output is cut into
//! pieces that any thread may claim (an atomic counter) and decode, and the calling task hashes
//! the pieces in order as they complete, decoding pieces itself whenever the next one to hash is
//! not ready. There is no barrier between waves: the work spreads over however many threads
//! turn up (one, if the others are busy with other tensors), and the hash trails right behind.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use xxhash_rust::xxh64::Xxh64;

use super::CodecError;

/// A piece of the output, as it moves from undecoded to decoded.
enum State<'a> {
    Todo(&'a mut [MaybeUninit<u16>]),
    Busy,
    Done(&'a [u16]),
}

struct Piece<'a> {
    state: Mutex<State<'a>>,
    done: AtomicBool,
}

/// Scratch buffer one thread reuses across its pieces.
pub(super) type Scratch = Vec<u8>;

/// A fresh vector of `total` values filled by [`fill_hashed_into`], and its hash.
pub(super) fn fill_hashed<F>(
    total: usize,
    piece: usize,
    fill: F,
) -> Result<(Vec<u16>, u64), CodecError>
where
    F: Fn(usize, &mut [MaybeUninit<u16>], &mut Scratch) -> Result<(), CodecError> + Sync,
{
    let mut out = super::buffers::uninit_u16(total);
    let hash = fill_hashed_into(&mut out.spare_capacity_mut()[..total], piece, fill, &|_| {})?;
    // SAFETY: `fill_hashed_into` returned Ok, so every one of the first `total` elements is
    // initialised.
    unsafe { out.set_len(total) };
    Ok((out, hash))
}

/// Fill all of `out`: `fill(start, dst, scratch)` writes every element of each piece `dst`
/// (elements `start .. start + dst.len()` of `out`, pieces of `piece` elements); returns the
/// XXH64 (seed 0) of `out`'s little-endian bytes. On `Ok` every element of `out` is
/// initialised. `fill` must initialise all of `dst` whenever it returns `Ok`; it must not use
/// rayon itself (a thread waiting for a piece relies on the piece's owner running to
/// completion). `hashed(n)` is called, in order, each time the first `n` elements are decoded
/// and hashed (after every piece; last with `out.len()`).
pub(super) fn fill_hashed_into<F>(
    out: &mut [MaybeUninit<u16>],
    piece: usize,
    fill: F,
    hashed: &(dyn Fn(usize) + Sync),
) -> Result<u64, CodecError>
where
    F: Fn(usize, &mut [MaybeUninit<u16>], &mut Scratch) -> Result<(), CodecError> + Sync,
{
    let piece = piece.max(1);
    let pieces: Vec<Piece> = out
        .chunks_mut(piece)
        .map(|c| Piece {
            state: Mutex::new(State::Todo(c)),
            done: AtomicBool::new(false),
        })
        .collect();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let error: Mutex<Option<CodecError>> = Mutex::new(None);

    let waiting = AtomicBool::new(false);
    let hasher_thread: OnceLock<std::thread::Thread> = OnceLock::new();

    // Claims and decodes the next undecoded piece; false when none is left (or one failed).
    let work = |scratch: &mut Scratch| -> bool {
        if failed.load(Ordering::Relaxed) {
            return false;
        }
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(p) = pieces.get(i) else {
            return false;
        };
        let dst = match std::mem::replace(&mut *lock(&p.state), State::Busy) {
            State::Todo(d) => d,
            // Unreachable: the counter hands out each index once.
            _ => return true,
        };
        match fill(i * piece, &mut *dst, scratch) {
            Ok(()) => {
                // SAFETY: `fill` returned Ok, so by its contract every element of `dst` is
                // initialised; the exclusive borrow is given up for this shared one.
                let done = unsafe { assume_init(dst) };
                *lock(&p.state) = State::Done(done);
                p.done.store(true, Ordering::SeqCst);
            }
            Err(e) => {
                lock(&error).get_or_insert(e);
                failed.store(true, Ordering::SeqCst);
            }
        }
        // Wake the hasher if it sleeps on this piece (SeqCst with its `waiting` store and
        // `done` load, so one of the two sides sees the other).
        if waiting.load(Ordering::SeqCst) {
            if let Some(t) = hasher_thread.get() {
                t.unpark();
            }
        }
        true
    };

    let mut hasher = Xxh64::new(0);
    let helpers = rayon::current_num_threads()
        .min(pieces.len())
        .saturating_sub(1);
    rayon::scope(|s| {
        hasher_thread.get_or_init(std::thread::current);
        for _ in 0..helpers {
            s.spawn(|_| {
                let mut scratch = Scratch::new();
                while work(&mut scratch) {}
            });
        }
        let mut scratch = Scratch::new();
        let mut prefix = 0usize;
        for p in &pieces {
            let mut spins = 0u32;
            loop {
                if failed.load(Ordering::SeqCst) {
                    return;
                }
                if p.done.load(Ordering::SeqCst) {
                    if let State::Done(d) = &*lock(&p.state) {
                        super::hash::update(&mut hasher, d);
                        prefix += d.len();
                    }
                    hashed(prefix);
                    break;
                }
                if work(&mut scratch) {
                    continue;
                }
                // Every piece is claimed and this one is still being decoded elsewhere: spin
                // for about a piece's decoding time, then sleep until its decoder wakes us
                // (a spinning thread would keep a descheduled decoder off a busy machine's
                // cores). The timeout only guards against a missed wake-up.
                spins += 1;
                if spins < 1 << 8 {
                    std::hint::spin_loop();
                    continue;
                }
                waiting.store(true, Ordering::SeqCst);
                if !p.done.load(Ordering::SeqCst) && !failed.load(Ordering::SeqCst) {
                    std::thread::park_timeout(std::time::Duration::from_micros(500));
                }
                waiting.store(false, Ordering::SeqCst);
            }
        }
    });
    if let Some(e) = lock(&error).take() {
        return Err(e);
    }
    let complete = pieces
        .iter()
        .all(|p| matches!(*lock(&p.state), State::Done(_)));
    if !complete {
        return Err(CodecError::Stream {
            problem: "a decode piece was left unfinished".into(),
        });
    }
    Ok(hasher.digest())
}

/// A poisoned lock only means another piece's decoder panicked; the panic propagates through
/// `rayon::scope`, so the state behind it is never used after that.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// # Safety
/// Every element of `d` must be initialised.
unsafe fn assume_init(d: &mut [MaybeUninit<u16>]) -> &[u16] {
    // SAFETY: MaybeUninit<u16> has u16's layout; the caller guarantees initialisation.
    unsafe { std::slice::from_raw_parts(d.as_ptr().cast::<u16>(), d.len()) }
}

/// [`fill_hashed`] without the hash: the pieces decoded in parallel by rayon.
pub(super) fn fill_parallel<F>(total: usize, piece: usize, fill: F) -> Result<Vec<u16>, CodecError>
where
    F: Fn(usize, &mut [MaybeUninit<u16>], &mut Scratch) -> Result<(), CodecError> + Sync,
{
    use rayon::prelude::*;
    let piece = piece.max(1);
    let mut out = super::buffers::uninit_u16(total);
    out.spare_capacity_mut()[..total]
        .par_chunks_mut(piece)
        .enumerate()
        .try_for_each_init(Scratch::new, |scratch, (i, dst)| {
            fill(i * piece, dst, scratch)
        })?;
    // SAFETY: the chunks partition the first `total` elements and `fill` returned Ok for each,
    // so by its contract all of them are initialised.
    unsafe { out.set_len(total) };
    Ok(out)
}

/// `f(i)` for every `i` in `0..n`, the indices claimed one at a time by every thread of the
/// pool, and the results in index order (`None` only if an index was never run, which
/// `broadcast` rules out; callers treat it as an error rather than trust it). `rayon::broadcast` starts a task on each thread
/// outright; a parallel iterator started after a pause often left the second thread asleep for
/// the whole of a few-millisecond batch (rayon wakes sleeping threads lazily).
pub(super) fn map_shared<R: Send>(n: usize, f: impl Fn(usize) -> R + Sync) -> Vec<Option<R>> {
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<R>>> = (0..n).map(|_| Mutex::new(None)).collect();
    if n > 0 {
        rayon::broadcast(|_| loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= n {
                break;
            }
            *lock(&slots[i]) = Some(f(i));
        });
    }
    slots
        .into_iter()
        .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect()
}

/// The error for a batch index that [`map_shared`] did not run.
pub(super) fn not_run(i: usize) -> CodecError {
    CodecError::Stream {
        problem: format!("batch item {i} was not processed"),
    }
}
