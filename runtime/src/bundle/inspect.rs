//! `inspect`: exponent statistics and sizes of the BF16 tensors of a file (plain or bundle).

use safetensors::Dtype;

use super::bytes::{bits_of, windowed};
use super::compress::TensorReport;
use super::decompress::decode_entry;
use super::error::BundleError;
use super::reader::Bundle;
use crate::codec::{self, Encoding, Orientation};

/// How a tensor is stored in the inspected file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stored {
    /// A plain BF16 tensor (sizes are what compression would give).
    Plain,
    Compressed(Encoding, Orientation),
}

/// Statistics of one BF16 tensor.
#[derive(Debug, Clone)]
pub struct TensorStats {
    pub name: String,
    pub shape: Vec<usize>,
    pub stored: Stored,
    pub elements: usize,
    /// Count per exponent byte.
    pub histogram: Box<[u64; 256]>,
    pub palette: [u8; 16],
    pub groups: usize,
    pub escapes: usize,
    /// Shannon entropy of the exponent bytes, bits per element.
    pub entropy: f64,
    /// Bytes in the file (BF16 for plain tensors, components for compressed ones).
    pub bytes_stored: usize,
    /// Bytes as BF16.
    pub bytes_bf16: usize,
    /// Bytes once compressed with huffman and with palette (standard orientation for plain
    /// tensors; the stored orientation for compressed ones).
    pub bytes_huffman: usize,
    pub bytes_palette: usize,
}

/// Shannon entropy in bits of a histogram.
pub fn entropy(hist: &[u64]) -> f64 {
    let n: u64 = hist.iter().sum();
    if n == 0 {
        return 0.0;
    }
    hist.iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n as f64;
            -p * p.log2()
        })
        .sum()
}

/// Counts exponent bytes `(bits >> 7) & 0xFF`.
pub fn exponent_histogram(bits: &[u16]) -> Box<[u64; 256]> {
    use rayon::prelude::*;
    bits.par_chunks(1 << 20)
        .map(|c| {
            let mut h = Box::new([0u64; 256]);
            for &b in c {
                h[((b >> 7) & 0xFF) as usize] += 1;
            }
            h
        })
        .reduce(
            || Box::new([0u64; 256]),
            |mut a, b| {
                a.iter_mut().zip(b.iter()).for_each(|(x, y)| *x += y);
                a
            },
        )
}

fn stats(
    name: &str,
    bits: &[u16],
    shape: &[usize],
    stored: Stored,
    bytes_stored: usize,
) -> Result<TensorStats, codec::CodecError> {
    // Plain 0-D/1-D tensors are measured as one row.
    let shape2: Vec<usize> = match shape.len() {
        0 => vec![1, 1],
        1 => vec![1, shape[0]],
        _ => shape.to_vec(),
    };
    let orientation = match stored {
        Stored::Compressed(_, o) => o,
        Stored::Plain => Orientation::Standard,
    };
    let huff = codec::compress(bits, &shape2, orientation, Encoding::Huffman)?;
    let pal = codec::transcode(&huff, Encoding::Palette)?;
    let histogram = exponent_histogram(bits);
    Ok(TensorStats {
        name: name.to_string(),
        shape: shape.to_vec(),
        stored,
        elements: bits.len(),
        entropy: entropy(&histogram[..]),
        histogram,
        palette: huff.palette,
        groups: huff.groups(),
        escapes: huff.escape_count(),
        bytes_stored,
        bytes_bf16: bits.len() * 2,
        bytes_huffman: TensorReport::of(name, &huff).bytes_after,
        bytes_palette: TensorReport::of(name, &pal).bytes_after,
    })
}

/// Statistics of every BF16 tensor of `file` (compressed ones are decoded first).
pub fn inspect(
    file: &Bundle,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<TensorStats>, BundleError> {
    enum Item<'a> {
        Plain(&'a super::PlainTensor),
        Compressed(&'a super::CompressedEntry),
    }
    let mut items: Vec<Item> = file
        .layout
        .plain
        .iter()
        .filter(|t| t.dtype == Dtype::BF16)
        .map(Item::Plain)
        .collect();
    items.extend(file.layout.compressed.iter().map(Item::Compressed));
    let size = |i: &Item| match i {
        Item::Plain(t) => t.range.len(),
        Item::Compressed(c) => c.parts.rows * c.parts.cols * 2,
    };
    let mut out = Vec::with_capacity(items.len());
    windowed(
        &items,
        size,
        |i| match i {
            Item::Plain(t) => stats(
                &t.name,
                &bits_of(file.slice(&t.range)),
                &t.shape,
                Stored::Plain,
                t.range.len(),
            )
            .map_err(|e| BundleError::tensor(&file.path, &t.name, e)),
            Item::Compressed(c) => {
                let bits = decode_entry(file, c)?;
                let stored = c.parts.ranges.values().map(|r| r.len()).sum();
                stats(
                    &c.name,
                    &bits,
                    &c.parts.shape,
                    Stored::Compressed(c.parts.encoding, c.parts.orientation),
                    stored,
                )
                .map_err(|e| BundleError::tensor(&file.path, &c.name, e))
            }
        },
        |i, s| {
            progress(size(i) as u64);
            out.push(s);
            Ok(())
        },
    )?;
    Ok(out)
}
