//! `decompress`: a bundle → the original tensors and metadata.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

use rayon::prelude::*;
use safetensors::Dtype;

use super::bytes::{bytes_of, windowed_batch};
use super::error::{BundleError, Problem};
use super::reader::{Bundle, CompressedEntry};
use super::writer::{byte_len, header_json, HeaderEntry, OutputFile};
use super::{check_output, sort_for_alignment};
use crate::codec;

/// A tensor of the decompressed file: stored as is, or to decode.
#[derive(Clone, Copy)]
enum Source<'a> {
    Plain(&'a [u8]),
    Compressed(&'a CompressedEntry),
}

struct Item<'a> {
    name: &'a str,
    dtype: Dtype,
    shape: &'a [usize],
    source: Source<'a>,
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
    let mut items: Vec<Item> = src
        .layout
        .plain
        .iter()
        .map(|t| Item {
            name: &t.name,
            dtype: t.dtype,
            shape: &t.shape,
            source: Source::Plain(src.slice(&t.range)),
        })
        .chain(src.layout.compressed.iter().map(|c| Item {
            name: &c.name,
            dtype: Dtype::BF16,
            shape: &c.parts.shape,
            source: Source::Compressed(c),
        }))
        .collect();
    sort_for_alignment(&mut items, |i| (i.dtype, i.name));

    // Every size is known: the header is exact.
    let mut entries = Vec::with_capacity(items.len());
    let mut pos = 0usize;
    for i in &items {
        let len = byte_len(i.dtype, i.shape).ok_or_else(|| {
            BundleError::tensor(input, i.name, Problem::Overflow("tensor size".into()))
        })?;
        entries.push(HeaderEntry {
            name: i.name.to_string(),
            dtype: i.dtype,
            shape: i.shape.to_vec(),
            offsets: (pos, pos + len),
        });
        pos += len;
    }
    let header_len = header_json(src.layout.metadata.as_ref(), &entries).len();

    let mut out = OutputFile::create(output, header_len)?;
    windowed_batch(
        &items,
        |i| match i.source {
            Source::Plain(b) => b.len(),
            Source::Compressed(c) => c.parts.rows * c.parts.cols * 2,
        },
        |window| {
            let entries: Vec<&CompressedEntry> = window
                .iter()
                .filter_map(|i| match i.source {
                    Source::Compressed(c) => Some(c),
                    Source::Plain(_) => None,
                })
                .collect();
            // The window's tensors decode into one buffer, in file order.
            let mut batch = Some(decode_entries_contiguous(&src, &entries).map(Arc::new));
            let mut at = 0usize;
            window
                .iter()
                .map(|i| match i.source {
                    Source::Plain(_) => Ok(None),
                    Source::Compressed(c) => {
                        let n = c.parts.rows * c.parts.cols;
                        let range = at..at + n;
                        at += n;
                        match &batch {
                            Some(Ok(buf)) => Ok(Some((Arc::clone(buf), range))),
                            // The batch's error once; the sink stops at it.
                            _ => match batch.take() {
                                Some(Err(e)) => Err(e),
                                _ => Err(BundleError::tensor(
                                    input,
                                    &c.name,
                                    codec::CodecError::Stream {
                                        problem: "not decoded".into(),
                                    },
                                )),
                            },
                        }
                    }
                })
                .collect()
        },
        |i, decoded: Option<(Arc<Vec<u16>>, std::ops::Range<usize>)>| {
            let bytes = match (&i.source, &decoded) {
                (Source::Compressed(_), Some((buf, r))) => bytes_of(&buf[r.clone()]),
                (Source::Plain(b), _) => Cow::Borrowed(*b),
                (Source::Compressed(_), None) => Cow::Borrowed(&[][..]),
            };
            out.append(i.name, i.dtype, i.shape, &bytes)?;
            progress(bytes.len() as u64);
            Ok(())
        },
    )?;
    out.finish(src.layout.metadata.as_ref())?;
    Ok(DecompressReport {
        decoded: src.layout.compressed.len(),
        passed_through: src.layout.plain.len(),
    })
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
