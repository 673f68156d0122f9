//! BF16 bits ⇄ little-endian bytes without copying where the layout allows it.

use std::borrow::Cow;

/// The BF16 bit patterns stored little-endian in `data` (an odd trailing byte is ignored;
/// callers pass whole tensors).
pub fn bits_of(data: &[u8]) -> Cow<'_, [u16]> {
    #[cfg(target_endian = "little")]
    {
        // SAFETY: every bit pattern is a valid u16; align_to only yields the aligned middle.
        let (pre, mid, post) = unsafe { data.align_to::<u16>() };
        if pre.is_empty() && post.is_empty() {
            return Cow::Borrowed(mid);
        }
    }
    Cow::Owned(
        data.chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect(),
    )
}

/// The little-endian bytes of `bits`.
pub fn bytes_of(bits: &[u16]) -> Cow<'_, [u8]> {
    #[cfg(target_endian = "little")]
    {
        // SAFETY: u8 has alignment 1 and the length covers exactly the u16 slice's bytes.
        return Cow::Borrowed(unsafe {
            std::slice::from_raw_parts(bits.as_ptr().cast::<u8>(), bits.len() * 2)
        });
    }
    #[allow(unreachable_code)]
    Cow::Owned(bits.iter().flat_map(|b| b.to_le_bytes()).collect())
}

/// Processes `items` in windows of bounded input size: `work` runs in parallel within a window,
/// `sink` consumes results in item order. Memory stays at a window's worth of results, and the
/// output order (hence the written file) is deterministic.
pub fn windowed<T: Sync, R: Send, E: Send>(
    items: &[T],
    weight: impl Fn(&T) -> usize,
    work: impl Fn(&T) -> Result<R, E> + Sync,
    sink: impl FnMut(&T, R) -> Result<(), E>,
) -> Result<(), E> {
    use rayon::prelude::*;
    let max_items = 2 * rayon::current_num_threads();
    windowed_by(
        items,
        weight,
        max_items,
        BUDGET,
        |window| window.par_iter().map(&work).collect(),
        sink,
    )
}

/// [`windowed`] with `work` given a whole window at once (one result per item, in order), for
/// the codec's batch functions, which spread a window's tensors over the cores themselves.
/// Windows hold up to 256 tensors (within the byte budget), so a checkpoint of many small
/// tensors decodes into few, large buffers.
pub fn windowed_batch<T, R, E>(
    items: &[T],
    weight: impl Fn(&T) -> usize,
    work: impl Fn(&[T]) -> Vec<Result<R, E>>,
    sink: impl FnMut(&T, R) -> Result<(), E>,
) -> Result<(), E> {
    windowed_by(items, weight, 256, BUDGET, work, sink)
}

/// [`windowed_batch`] with windows of at most `budget` (weight units; a heavier item still
/// gets a window of its own): smaller windows let a writer start on one window's output while
/// the next is being computed.
pub fn windowed_batch_within<T, R, E>(
    items: &[T],
    budget: usize,
    weight: impl Fn(&T) -> usize,
    work: impl Fn(&[T]) -> Vec<Result<R, E>>,
    sink: impl FnMut(&T, R) -> Result<(), E>,
) -> Result<(), E> {
    windowed_by(items, weight, 256, budget, work, sink)
}

/// [`windowed_batch_within`], with the `sink` calls of each window made on a thread of their
/// own while the next window's `work` runs (in item order, as there): the compress writer's
/// copies into the page cache then overlap with encoding instead of leaving the other cores
/// idle. At most two windows' results are held at once. The first error in item order is
/// returned; work computed after it is dropped.
pub fn windowed_batch_pipelined<T: Sync, R: Send, E: Send>(
    items: &[T],
    budget: usize,
    weight: impl Fn(&T) -> usize,
    work: impl Fn(&[T]) -> Vec<Result<R, E>>,
    sink: impl FnMut(&T, R) -> Result<(), E> + Send,
) -> Result<(), E> {
    let mut windows = Vec::new();
    let mut start = 0;
    while start < items.len() {
        let mut end = start;
        let mut size = 0usize;
        while end < items.len() && (end == start || (size < budget && end - start < 256)) {
            size = size.saturating_add(weight(&items[end]));
            end += 1;
        }
        windows.push(start..end);
        start = end;
    }
    // A rendezvous channel: a window's results are handed over only once the writer is done
    // with the previous window.
    let (tx, rx) = std::sync::mpsc::sync_channel::<(std::ops::Range<usize>, Vec<Result<R, E>>)>(0);
    std::thread::scope(|s| {
        let writer = s.spawn(move || -> Result<(), E> {
            let mut sink = sink;
            for (range, results) in rx {
                debug_assert_eq!(results.len(), range.len());
                for (item, r) in items[range].iter().zip(results) {
                    sink(item, r?)?;
                }
            }
            Ok(())
        });
        for range in windows {
            let results = work(&items[range.clone()]);
            // The writer stops at the first error; nothing more to hand it then.
            if tx.send((range, results)).is_err() {
                break;
            }
        }
        drop(tx);
        writer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Default window budget: 1 GiB of input.
const BUDGET: usize = 1 << 30;

fn windowed_by<T, R, E>(
    items: &[T],
    weight: impl Fn(&T) -> usize,
    max_items: usize,
    budget: usize,
    work: impl Fn(&[T]) -> Vec<Result<R, E>>,
    mut sink: impl FnMut(&T, R) -> Result<(), E>,
) -> Result<(), E> {
    let mut start = 0;
    while start < items.len() {
        let mut end = start;
        let mut size = 0usize;
        while end < items.len() && (end == start || (size < budget && end - start < max_items)) {
            size = size.saturating_add(weight(&items[end]));
            end += 1;
        }
        let window = &items[start..end];
        let results = work(window);
        debug_assert_eq!(results.len(), window.len());
        for (item, r) in window.iter().zip(results) {
            sink(item, r?)?;
        }
        start = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::windowed_batch_pipelined;

    /// Every item reaches the sink once, in order, in windows within the budget; the first
    /// error in item order stops it (from the work or from the sink itself).
    #[test]
    fn pipelined_windows_sink_in_order_and_stop_at_the_first_error() {
        let items: Vec<usize> = (0..50).collect();
        let windows = std::sync::Mutex::new(Vec::new());
        let mut seen = Vec::new();
        let r: Result<(), String> = windowed_batch_pipelined(
            &items,
            10,
            |&i| i % 7 + 1,
            |w| {
                windows.lock().unwrap().push(w.to_vec());
                w.iter().map(|&i| Ok(i * 3)).collect()
            },
            |&i, v| {
                assert_eq!(v, i * 3);
                seen.push(i);
                Ok(())
            },
        );
        r.unwrap();
        assert_eq!(seen, items);
        let windows = windows.into_inner().unwrap();
        assert!(windows.len() > 3, "{windows:?}");
        for w in &windows {
            let weight: usize = w[..w.len() - 1].iter().map(|&i| i % 7 + 1).sum();
            assert!(w.len() == 1 || weight < 10, "{w:?}");
        }

        let mut sunk = Vec::new();
        let r = windowed_batch_pipelined(
            &items,
            10,
            |_| 3,
            |w| {
                w.iter()
                    .map(|&i| if i == 17 || i == 30 { Err(i) } else { Ok(i) })
                    .collect()
            },
            |&i, _| {
                sunk.push(i);
                Ok(())
            },
        );
        assert_eq!(r, Err(17));
        assert_eq!(sunk, (0..17).collect::<Vec<_>>());

        let mut sunk = Vec::new();
        let r = windowed_batch_pipelined(
            &items,
            10,
            |_| 3,
            |w| w.iter().map(|&i| Ok::<_, usize>(i)).collect(),
            |&i, _| {
                if i == 23 {
                    return Err(i);
                }
                sunk.push(i);
                Ok(())
            },
        );
        assert_eq!(r, Err(23));
        assert_eq!(sunk, (0..23).collect::<Vec<_>>());
    }
}
