//! `decompress`: a bundle → the original tensors and metadata.

use std::mem::MaybeUninit;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;
use safetensors::Dtype;

use super::bytes::bytes_of;
use super::components::BufferPool;
use super::copy;
use super::error::{BundleError, Problem};
use super::reader::{Bundle, CompressedEntry, PlainTensor};
use super::reserve::prefault;
use super::writeback::{unmap_final, Writeback};
use super::writer::{byte_len, header_json, HeaderEntry, MappedOutput};
use super::{check_output, sort_for_alignment};
use crate::codec;

/// A tensor of the decompressed file: stored as is, or to decode.
#[derive(Clone, Copy)]
pub(super) enum Source<'a> {
    Plain(&'a PlainTensor),
    Compressed(&'a CompressedEntry),
}

pub(super) struct Item<'a> {
    pub(super) name: &'a str,
    pub(super) dtype: Dtype,
    pub(super) shape: &'a [usize],
    pub(super) source: Source<'a>,
}

/// Decodes one compressed tensor of an open bundle to its original BF16 bits (hash checked).
pub fn decode_entry(bundle: &Bundle, e: &CompressedEntry) -> Result<Vec<u16>, BundleError> {
    let ct = e
        .parts
        .load(&e.name, bundle.bytes(), &e.meta)
        .map_err(|err| err.at(&bundle.path))?;
    codec::decompress(&ct).map_err(|err| BundleError::tensor(&bundle.path, &e.name, err))
}

/// [`decode_entry`] of several tensors: loaded in parallel, then decoded with the codec's batch
/// function (parallel over the tensors as well as within each).
pub fn decode_entries(
    bundle: &Bundle,
    entries: &[&CompressedEntry],
) -> Vec<Result<Vec<u16>, BundleError>> {
    let loaded: Vec<_> = entries
        .par_iter()
        .map(|e| {
            e.parts
                .load(&e.name, bundle.bytes(), &e.meta)
                .map_err(|err| err.at(&bundle.path))
        })
        .collect();
    let ok: Vec<&codec::CompressedTensor> = loaded.iter().filter_map(|r| r.as_ref().ok()).collect();
    let mut decoded = codec::decompress_batch(&ok).into_iter();
    loaded
        .into_iter()
        .zip(entries)
        .map(|(l, e)| {
            l?;
            match decoded.next() {
                Some(r) => r.map_err(|err| BundleError::tensor(&bundle.path, &e.name, err)),
                None => Err(BundleError::tensor(
                    &bundle.path,
                    &e.name,
                    codec::CodecError::Stream {
                        problem: "no decode result".into(),
                    },
                )),
            }
        })
        .collect()
}

/// [`decode_entries`] into one vector, the tensors back to back in the given order (see
/// [`codec::decompress_contiguous`]); the first failure as an error naming its tensor.
pub fn decode_entries_contiguous(
    bundle: &Bundle,
    entries: &[&CompressedEntry],
) -> Result<Vec<u16>, BundleError> {
    let loaded = entries
        .par_iter()
        .map(|e| {
            e.parts
                .load(&e.name, bundle.bytes(), &e.meta)
                .map_err(|err| err.at(&bundle.path))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let refs: Vec<&codec::CompressedTensor> = loaded.iter().collect();
    codec::decompress_contiguous(&refs)
        .map_err(|(i, err)| BundleError::tensor(&bundle.path, &entries[i].name, err))
}

/// The counts of [`decompress_file`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DecompressReport {
    pub decoded: usize,
    pub passed_through: usize,
}

/// Restores every tensor of the bundle `input` and the original metadata into `output`.
///
/// The output file is sized up front and memory-mapped: compressed tensors are decoded straight
/// into its pages, pass-through tensors are copied file to file inside the kernel where the OS
/// allows it (`copy_file_range`). With the bundle's `original_header` the result is
/// byte-identical to the file that was compressed. `progress` receives input bytes as they are
/// done (they sum to the input file's size).
pub fn decompress_file(
    input: &Path,
    output: &Path,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<DecompressReport, BundleError> {
    let src = Bundle::open(input)?;
    check_output(input, output)?;
    if !src.layout.is_bundle() {
        return Err(BundleError::file(input, Problem::NotBundle));
    }
    let items = items(&src);
    let (header, offsets) = restored_layout(&src, &items)?;
    let data_len = offsets.iter().map(|r| r.end).max().unwrap_or(0);
    let mut out = MappedOutput::create(output, &header, data_len)?;
    progress(src.data_start() as u64);

    for (i, off) in items.iter().zip(&offsets) {
        if let Source::Plain(t) = i.source {
            let at = (out.data_start() + off.start) as u64;
            let copied = copy::copy_range(
                src.file(),
                t.range.start as u64,
                out.file(),
                at,
                t.range.len(),
            )
            .map_err(|e| BundleError::io(output, "cannot write the output file", e))?;
            if !copied {
                out.data_mut()[off.clone()].copy_from_slice(src.slice(&t.range));
            }
            progress(t.range.len() as u64);
        }
    }
    let data_start = out.data_start() as u64;
    let writeback = Writeback::new(out.file());
    for (i, off) in items.iter().zip(&offsets) {
        if matches!(i.source, Source::Plain(_)) {
            writeback.start(data_start + off.start as u64, off.len() as u64);
        }
    }

    // Where the data section is mapped, to unmap finished ranges before their writeback.
    let data_addr = out.data_mut().as_mut_ptr() as usize;
    // Each compressed tensor's part of the mapped data section, in item order.
    let mut slots: Vec<Option<&mut [u8]>> = split_at_offsets(out.data_mut(), &offsets)
        .into_iter()
        .zip(&items)
        .map(|(s, i)| matches!(i.source, Source::Compressed(_)).then_some(s))
        .collect();
    let compressed: Vec<Dest> = items
        .iter()
        .zip(slots.iter_mut())
        .zip(&offsets)
        .filter_map(|((i, s), off)| match i.source {
            Source::Compressed(c) => Some((c, s.take()?, off.clone())),
            Source::Plain(_) => None,
        })
        .collect();
    let written = |r: &Range<usize>| {
        // SAFETY: `r` lies in the data section of the output's shared file mapping (live until
        // `out.finish`), and its bytes are final: nothing writes there again.
        unsafe { unmap_final(data_addr + r.start, r.len()) };
        writeback.start(data_start + r.start as u64, r.len() as u64)
    };
    let out_at = OutputAt {
        data_start: data_start as usize,
        written: &written,
    };
    decode_windows(&src, compressed, &out_at, progress)?;
    writeback.finish();
    drop(slots);
    out.finish()?;
    Ok(DecompressReport {
        decoded: src.layout.compressed.len(),
        passed_through: src.layout.plain.len(),
    })
}

/// Every tensor the restored file holds, in the order of FORMAT.md's layout.
pub(super) fn items(src: &Bundle) -> Vec<Item<'_>> {
    let mut items: Vec<Item> = src
        .layout
        .plain
        .iter()
        .map(|t| Item {
            name: &t.name,
            dtype: t.dtype,
            shape: &t.shape,
            source: Source::Plain(t),
        })
        .chain(src.layout.compressed.iter().map(|c| Item {
            name: &c.name,
            dtype: Dtype::BF16,
            shape: &c.parts.shape,
            source: Source::Compressed(c),
        }))
        .collect();
    sort_for_alignment(&mut items, |i| (i.dtype, i.name));
    items
}

/// A compressed tensor, where its bytes go, and their range in the data section.
type Dest<'a, 'b> = (&'a CompressedEntry, &'b mut [u8], Range<usize>);

/// What [`decode_windows`] needs to know of the mapped output file.
struct OutputAt<'a> {
    /// Byte position of the data section in the file.
    data_start: usize,
    /// Starts writing back a range of the data section once its bytes are final.
    written: &'a (dyn Fn(&Range<usize>) + Sync),
}

/// Bytes of a tensor decoded since its last writeback was started, at which the next one is
/// started: the final sync then waits for about this much per tensor instead of the last
/// window's hundreds of MB (measured on the development VM's disk: ~1.9 GB/s).
const WRITEBACK_STEP: usize = 8 << 20;

const PAGE: usize = 4096;

/// Per tensor of a window: how far into the data section its writeback has been started.
struct Prefixes {
    /// Each tensor's range in the data section.
    ranges: Vec<Range<usize>>,
    kicked: Vec<AtomicUsize>,
}

impl Prefixes {
    fn new(ranges: Vec<Range<usize>>) -> Self {
        let kicked = ranges.iter().map(|r| AtomicUsize::new(r.start)).collect();
        Self { ranges, kicked }
    }

    /// The first `elems` BF16 values of tensor `i` are final: start writeback of the whole
    /// pages among them not yet started, once they add up to [`WRITEBACK_STEP`]. Only the
    /// tensor's own hasher calls this for `i`, in order.
    fn decoded(&self, out: &OutputAt, i: usize, elems: usize) {
        let r = &self.ranges[i];
        let done = r.start + (2 * elems).min(r.len());
        // The page the prefix ends in is still being written: stop at the page before it.
        let end = ((out.data_start + done) / PAGE * PAGE).saturating_sub(out.data_start);
        let from = self.kicked[i].load(Ordering::Relaxed);
        if end >= from + WRITEBACK_STEP {
            self.kicked[i].store(end, Ordering::Relaxed);
            (out.written)(&(from..end));
        }
    }

    /// Tensor `i` is done: start writeback of what is left of it.
    fn finish(&self, out: &OutputAt, i: usize) {
        let (from, end) = (self.kicked[i].load(Ordering::Relaxed), self.ranges[i].end);
        if end > from {
            (out.written)(&(from..end));
        }
    }
}

/// Decodes the compressed tensors into their destinations, a window of about 64 MB of decoded
/// values at a time (a larger tensor gets a window of its own), each window's pages faulted in
/// first. Writeback of each tensor is started every
/// [`WRITEBACK_STEP`] decoded bytes and for the rest once its window is decoded, so it
/// overlaps with decoding what follows.
fn decode_windows(
    src: &Bundle,
    tensors: Vec<Dest>,
    out: &OutputAt,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(), BundleError> {
    const BUDGET: usize = 64 << 20;
    let pool = BufferPool::default();
    let mut rest = tensors.into_iter().peekable();
    while rest.peek().is_some() {
        let mut window = Vec::new();
        let mut size = 0usize;
        while let Some((c, _, _)) = rest.peek() {
            let n = 2 * c.parts.rows * c.parts.cols;
            if !window.is_empty() && (size.saturating_add(n) > BUDGET || window.len() >= 256) {
                break;
            }
            size = size.saturating_add(n);
            window.extend(rest.next());
        }
        let entries: Vec<&CompressedEntry> = window.iter().map(|(c, _, _)| *c).collect();
        let loaded = entries
            .par_iter()
            .map(|e| {
                e.parts
                    .load_pooled_sm_in_place(&e.name, src.bytes(), &e.meta, &pool)
                    .map_err(|err| err.at(&src.path))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (mut direct, mut direct_dst, mut copied) = (Vec::new(), Vec::new(), Vec::new());
        let mut direct_ranges = Vec::new();
        for ((e, dst, range), (ct, sm)) in window.into_iter().zip(&loaded) {
            // Without this, each fault on a fresh page of the allocated file also zeroes its
            // readahead window: several times the decode's own cost, measured.
            prefault(dst);
            match as_u16_slots(dst) {
                Ok(d) => {
                    direct.push((e, ct, Some(*sm)));
                    direct_dst.push(d);
                    direct_ranges.push(range);
                }
                Err(dst) => copied.push((e, ct, *sm, dst, range)),
            }
        }
        let cts: Vec<&codec::CompressedTensor> = direct.iter().map(|(_, ct, _)| *ct).collect();
        let sms: Vec<Option<&[u8]>> = direct.iter().map(|(_, _, sm)| *sm).collect();
        let prefixes = Prefixes::new(direct_ranges);
        // The sign-mantissa planes are read from the mapped bundle where they lie.
        codec::decompress_into_parts_notify(&cts, &sms, direct_dst, &|i, n| {
            prefixes.decoded(out, i, n)
        })
        .map_err(|(i, err)| BundleError::tensor(&src.path, &direct[i].0.name, err))?;
        for i in 0..direct.len() {
            prefixes.finish(out, i);
        }
        // A BF16 tensor at an odd offset (only possible with an unusual original header):
        // decoded into a buffer, then copied.
        for (e, ct, sm, dst, range) in copied {
            let mut owned = ct.clone();
            owned.sm = sm.to_vec();
            let bits = codec::decompress(&owned)
                .map_err(|err| BundleError::tensor(&src.path, &e.name, err))?;
            dst.copy_from_slice(&bytes_of(&bits));
            (out.written)(&range);
        }
        for (ct, _) in loaded {
            pool.recycle(ct);
        }
        let done: usize = entries
            .iter()
            .map(|e| e.parts.ranges.values().map(|r| r.len()).sum::<usize>())
            .sum();
        progress(done as u64);
    }
    Ok(())
}

/// `dst` as BF16 slots for the decoder, when it is 2-byte aligned (the whole slice).
fn as_u16_slots(dst: &mut [u8]) -> Result<&mut [MaybeUninit<u16>], &mut [u8]> {
    if cfg!(target_endian = "little") && dst.as_ptr() as usize % 2 == 0 && dst.len() % 2 == 0 {
        let n = dst.len() / 2;
        // SAFETY: the memory is `n` u16s' worth, 2-byte aligned (checked), exclusively
        // borrowed for the returned lifetime; every value the decoder writes is an initialised
        // u16 whose little-endian bytes are the tensor's bytes (little-endian target, checked).
        Ok(unsafe { std::slice::from_raw_parts_mut(dst.as_mut_ptr().cast(), n) })
    } else {
        Err(dst)
    }
}

/// Splits `data` into the given ranges (disjoint, any order), one slice per range, in the
/// ranges' order.
fn split_at_offsets<'a>(data: &'a mut [u8], ranges: &[Range<usize>]) -> Vec<&'a mut [u8]> {
    let mut order: Vec<usize> = (0..ranges.len()).collect();
    order.sort_by_key(|&i| ranges[i].start);
    let mut out: Vec<Option<&'a mut [u8]>> = (0..ranges.len()).map(|_| None).collect();
    let mut rest = data;
    let mut at = 0usize;
    for i in order {
        let r = &ranges[i];
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(r.start - at);
        let (mine, tail) = tail.split_at_mut(r.len());
        out[i] = Some(mine);
        rest = tail;
        at = r.end;
    }
    out.into_iter()
        .map(|s| s.expect("every range was split off"))
        .collect()
}

/// The header to write (exact bytes, padding included) and each item's byte range in the data
/// section: the input's original header when the bundle kept it (checked against the tensors
/// it restores), else the writer's own layout.
pub(super) fn restored_layout(
    src: &Bundle,
    items: &[Item],
) -> Result<(Vec<u8>, Vec<Range<usize>>), BundleError> {
    let meta = src.layout.bundle.as_ref();
    if let Some(h) = meta.and_then(|b| b.original_header.as_ref()) {
        let offsets = check_original_header(h, items, src.layout.metadata.as_ref()).map_err(
            |(tensor, why)| {
                let p = Problem::Metadata(format!("`original_header` {why}"));
                match tensor {
                    Some(t) => BundleError::tensor(&src.path, &t, p),
                    None => BundleError::file(&src.path, p),
                }
            },
        )?;
        return Ok((h.as_bytes().to_vec(), offsets));
    }
    let mut entries = Vec::with_capacity(items.len());
    let mut pos = 0usize;
    for i in items {
        let len = item_len(i).ok_or_else(|| {
            BundleError::tensor(&src.path, i.name, Problem::Overflow("tensor size".into()))
        })?;
        entries.push(HeaderEntry {
            name: i.name.to_string(),
            dtype: i.dtype,
            shape: i.shape.to_vec(),
            offsets: (pos, pos + len),
        });
        pos += len;
    }
    let mut header = header_json(src.layout.metadata.as_ref(), &entries);
    header.resize(header.len().next_multiple_of(8), b' ');
    Ok((
        header,
        entries.iter().map(|e| e.offsets.0..e.offsets.1).collect(),
    ))
}

fn item_len(i: &Item) -> Option<usize> {
    byte_len(i.dtype, i.shape)
}

/// Checks that `header` (a bundle's `original_header`) describes exactly the tensors `items`
/// and `metadata` restore, laid out back to back from offset 0; returns each item's range.
/// Errors: the tensor concerned (if one) and why.
fn check_original_header(
    header: &str,
    items: &[Item],
    metadata: Option<&std::collections::BTreeMap<String, String>>,
) -> Result<Vec<Range<usize>>, (Option<String>, String)> {
    use serde_json::Value;
    let root: serde_json::Map<String, Value> =
        serde_json::from_str(header).map_err(|e| (None, format!("is not a JSON object: {e}")))?;
    let original_meta: Option<std::collections::BTreeMap<String, String>> =
        match root.get("__metadata__") {
            None => None,
            Some(v) => Some(
                serde_json::from_value(v.clone())
                    .map_err(|e| (None, format!("has a bad `__metadata__`: {e}")))?,
            ),
        };
    if original_meta.as_ref() != metadata {
        return Err((None, "has other metadata than the bundle restores".into()));
    }
    let tensors = root.len() - usize::from(root.contains_key("__metadata__"));
    if tensors != items.len() {
        return Err((
            None,
            format!(
                "lists {tensors} tensors; the bundle restores {}",
                items.len()
            ),
        ));
    }
    let mut offsets = Vec::with_capacity(items.len());
    for i in items {
        let bad = |why: &str| (Some(i.name.to_string()), why.to_string());
        let t = root.get(i.name).ok_or_else(|| bad("does not list it"))?;
        let dtype = serde_json::to_value(i.dtype).expect("dtype serializes");
        if t.get("dtype") != Some(&dtype) {
            return Err(bad("gives it another dtype"));
        }
        let shape: Option<Vec<usize>> = t
            .get("shape")
            .and_then(|s| serde_json::from_value(s.clone()).ok());
        if shape.as_deref() != Some(i.shape) {
            return Err(bad("gives it another shape"));
        }
        let range: Option<(usize, usize)> = t
            .get("data_offsets")
            .and_then(|s| serde_json::from_value(s.clone()).ok());
        let len = item_len(i).ok_or_else(|| bad("size overflows"))?;
        match range {
            Some((a, b)) if b >= a && b - a == len => offsets.push(a..b),
            _ => return Err(bad("gives it data offsets that do not fit its size")),
        }
    }
    let mut sorted: Vec<&Range<usize>> = offsets.iter().collect();
    sorted.sort_by_key(|r| (r.start, r.end));
    let mut at = 0usize;
    for r in sorted {
        if r.start != at {
            return Err((None, "has gaps or overlaps between its tensors".into()));
        }
        at = r.end;
    }
    Ok(offsets)
}

/// Every tensor of a file, decoded: what decompression would write.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub metadata: Option<std::collections::BTreeMap<String, String>>,
    /// name → (dtype, shape, bytes).
    pub tensors: std::collections::BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>,
}

/// Parses a file held in memory and decodes every compressed tensor (hash checked); the
/// in-memory counterpart of [`decompress_file`], used by the fuzz target and tests.
pub fn decode_bytes(bytes: &[u8]) -> Result<Decoded, super::ParseError> {
    let layout = super::parse(bytes)?;
    let mut tensors = std::collections::BTreeMap::new();
    for t in &layout.plain {
        tensors.insert(
            t.name.clone(),
            (t.dtype, t.shape.clone(), bytes[t.range.clone()].to_vec()),
        );
    }
    for c in &layout.compressed {
        let ct = c.parts.load(&c.name, bytes, &c.meta)?;
        let bits = codec::decompress(&ct).map_err(|e| super::ParseError::tensor(&c.name, e))?;
        tensors.insert(
            c.name.clone(),
            (
                Dtype::BF16,
                c.parts.shape.clone(),
                bytes_of(&bits).into_owned(),
            ),
        );
    }
    Ok(Decoded {
        metadata: layout.metadata,
        tensors,
    })
}

#[cfg(test)]
mod tests {
    use std::ops::Range;
    use std::sync::Mutex;

    use super::{OutputAt, Prefixes, PAGE, WRITEBACK_STEP};

    /// Writeback of a tensor decoded piece by piece starts in steps of at least
    /// [`WRITEBACK_STEP`] while it is decoded, each step ending on a page of the file (the page
    /// the decoder is in is left alone), and together with the rest at the end covers the
    /// tensor's bytes exactly once.
    #[test]
    fn writeback_follows_the_decoded_prefix() {
        let data_start = 1000;
        let tensor = 5_000..5_000 + 2 * 13_000_000;
        let calls: Mutex<Vec<Range<usize>>> = Mutex::default();
        let written = |r: &Range<usize>| calls.lock().unwrap().push(r.clone());
        let out = OutputAt {
            data_start,
            written: &written,
        };
        let p = Prefixes::new(vec![0..5_000, tensor.clone()]);
        let piece = 16_384;
        for n in (piece..13_000_000).step_by(piece) {
            p.decoded(&out, 1, n);
        }
        let during = calls.lock().unwrap().len();
        assert!(during >= 2, "{during} writebacks while decoding");
        p.decoded(&out, 1, 13_000_000);
        p.finish(&out, 1);
        let calls = calls.lock().unwrap().clone();
        let mut at = tensor.start;
        for (k, r) in calls.iter().enumerate() {
            assert_eq!(r.start, at, "{calls:?}");
            if k + 1 < calls.len() {
                assert!(r.len() >= WRITEBACK_STEP, "{calls:?}");
                assert_eq!((data_start + r.end) % PAGE, 0, "{calls:?}");
            }
            at = r.end;
        }
        assert_eq!(at, tensor.end);
        // A tensor never reported (decoded elsewhere) is written back whole at the end.
        let calls: Mutex<Vec<Range<usize>>> = Mutex::default();
        let written = |r: &Range<usize>| calls.lock().unwrap().push(r.clone());
        let out = OutputAt {
            data_start,
            written: &written,
        };
        p.finish(&out, 0);
        assert_eq!(calls.into_inner().unwrap(), vec![0..5_000]);
    }
}
