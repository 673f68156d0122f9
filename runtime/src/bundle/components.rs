//! A compressed tensor as component tensors `NAME.uw.<component>` (all 1-D U8), and back.
//!
//! | component | bytes | content |
//! |---|---|---|
//! | `sm` | rows × padded_cols | sign-mantissa byte per element, row-major, padding 0 |
//! | `palette` | 16 | the 16 palette exponents |
//! | `idx` | huffman: ⌈total_bits/8⌉; palette: rows × padded_cols / 2; exponent: rows × padded_cols | index stream |
//! | `chunk_offsets` | 4 × chunks (huffman only) | u32 little-endian bit offset of each chunk |
//! | `esc_bitmap` | 8 × ⌈groups/64⌉ | u64 little-endian words, bit g%64 of word g/64 = group g escapes |
//! | `esc_exp` | 64 × escapes | the escaped groups' exponent bytes, in group order |
//!
//! The escape prefix counts are not stored: they follow from the bitmap and are rebuilt on load
//! (one pass over a few KB), which leaves one thing fewer to validate.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;

use super::error::{ParseError, Problem};
use super::meta::{self, TensorMeta};
use crate::codec::{
    self, CompressedTensor, Encoding, Escapes, HuffmanStream, Indices, Orientation,
};

/// The component tensors of a compressed tensor, in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    Sm,
    Palette,
    Idx,
    ChunkOffsets,
    EscBitmap,
    EscExp,
}

impl Component {
    pub const ALL: [Component; 6] = [
        Self::Sm,
        Self::Palette,
        Self::Idx,
        Self::ChunkOffsets,
        Self::EscBitmap,
        Self::EscExp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Sm => "sm",
            Self::Palette => "palette",
            Self::Idx => "idx",
            Self::ChunkOffsets => "chunk_offsets",
            Self::EscBitmap => "esc_bitmap",
            Self::EscExp => "esc_exp",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == s)
    }

    /// The components an encoding stores.
    pub fn expected(encoding: Encoding) -> &'static [Component] {
        match encoding {
            Encoding::Huffman => &Self::ALL,
            Encoding::Palette | Encoding::Exponent => &[
                Self::Sm,
                Self::Palette,
                Self::Idx,
                Self::EscBitmap,
                Self::EscExp,
            ],
        }
    }
}

/// The component bytes of a compressed tensor, in file order.
pub fn to_components(t: &CompressedTensor) -> Vec<(Component, Cow<'_, [u8]>)> {
    let mut out = vec![
        (Component::Sm, Cow::Borrowed(&t.sm[..])),
        (Component::Palette, Cow::Borrowed(&t.palette[..])),
    ];
    match &t.indices {
        Indices::Huffman(h) => {
            let used = h.total_bits.div_ceil(8) as usize;
            out.push((
                Component::Idx,
                Cow::Borrowed(&h.bits[..used.min(h.bits.len())]),
            ));
            out.push((
                Component::ChunkOffsets,
                Cow::Owned(
                    h.chunk_offsets
                        .iter()
                        .flat_map(|o| o.to_le_bytes())
                        .collect(),
                ),
            ));
        }
        Indices::Palette(v) | Indices::Exponent(v) => {
            out.push((Component::Idx, Cow::Borrowed(&v[..])))
        }
    }
    out.push((
        Component::EscBitmap,
        Cow::Owned(
            t.escapes
                .bitmap
                .iter()
                .flat_map(|w| w.to_le_bytes())
                .collect(),
        ),
    ));
    out.push((Component::EscExp, Cow::Borrowed(&t.escapes.exponents[..])));
    out
}

/// A compressed tensor's checked metadata and its components' byte ranges in the file.
#[derive(Debug, Clone)]
pub struct Parts {
    pub shape: Vec<usize>,
    pub orientation: Orientation,
    pub encoding: Encoding,
    pub rows: usize,
    pub cols: usize,
    pub padded_cols: usize,
    pub groups: usize,
    pub escapes: usize,
    pub hash: u64,
    /// The stored-components checksum (checked before decoding: see `codec::components_checksum`).
    pub checksum: u64,
    pub ranges: BTreeMap<Component, Range<usize>>,
}

fn overflow(what: &str) -> Problem {
    Problem::Overflow(what.to_string())
}

fn mul(a: usize, b: usize, what: &str) -> Result<usize, Problem> {
    a.checked_mul(b).ok_or_else(|| overflow(what))
}

fn usize_of(v: u64, what: &str) -> Result<usize, Problem> {
    usize::try_from(v).map_err(|_| overflow(what))
}

impl Parts {
    /// Checks the metadata against itself and the components' lengths against the metadata.
    pub fn check(
        name: &str,
        tm: &TensorMeta,
        ranges: BTreeMap<Component, Range<usize>>,
    ) -> Result<Self, ParseError> {
        Self::check_inner(tm, ranges).map_err(|p| ParseError::tensor(name, p))
    }

    fn check_inner(
        tm: &TensorMeta,
        ranges: BTreeMap<Component, Range<usize>>,
    ) -> Result<Self, Problem> {
        let bad = |s: String| Problem::Metadata(s);
        if tm.dtype != "BF16" {
            return Err(bad(format!(
                "dtype `{}`; version 1 stores only BF16",
                tm.dtype
            )));
        }
        let orientation = meta::parse_orientation(&tm.orientation)
            .ok_or_else(|| bad(format!("unknown orientation `{}`", tm.orientation)))?;
        let encoding = meta::parse_encoding(&tm.encoding)
            .ok_or_else(|| bad(format!("unknown encoding `{}`", tm.encoding)))?;
        let shape = tm
            .shape
            .iter()
            .map(|&d| usize_of(d, "shape"))
            .collect::<Result<Vec<_>, _>>()?;
        if shape.len() < 2 {
            return Err(bad(format!("shape {shape:?} has rank < 2")));
        }
        let (last, lead) = shape.split_last().expect("rank >= 2");
        let lead = lead
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| overflow("shape"))?;
        mul(lead, *last, "shape")?;
        mul(mul(lead, *last, "shape")?, 2, "shape")?;
        let (rows, cols) = match orientation {
            Orientation::Standard => (lead, *last),
            Orientation::Transposed => (*last, lead),
        };
        if (tm.rows, tm.cols) != (rows as u64, cols as u64) {
            return Err(bad(format!(
                "rows × cols = {} × {} does not match shape {shape:?} in {} orientation",
                tm.rows, tm.cols, tm.orientation
            )));
        }
        let padded_cols = mul(cols.div_ceil(codec::GROUP), codec::GROUP, "padded columns")?;
        let groups = mul(rows, padded_cols / codec::GROUP, "groups")?;
        if tm.groups != groups as u64 {
            return Err(bad(format!(
                "{} groups; the shape gives {groups}",
                tm.groups
            )));
        }
        let symbols = mul(rows, padded_cols, "elements")?;
        let escapes = usize_of(tm.escapes, "escapes")?;
        if escapes > groups {
            return Err(bad(format!("{escapes} escape groups out of {groups}")));
        }
        let hex = |what: &str, v: &str| {
            if v.len() != 16 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad(format!("{what} `{v}` is not 16 hex digits")));
            }
            u64::from_str_radix(v, 16).map_err(|e| bad(e.to_string()))
        };
        let hash = hex("hash", &tm.hash)?;
        let checksum = hex("checksum", &tm.checksum)?;

        let idx_len = match (encoding, &tm.huffman) {
            (Encoding::Huffman, Some(h)) => {
                check_huffman(h, symbols)?;
                usize_of(h.total_bits.div_ceil(8), "index stream")?
            }
            (Encoding::Huffman, None) => {
                return Err(bad("huffman tensor without `huffman` parameters".into()))
            }
            (_, Some(_)) => {
                return Err(bad(format!(
                    "`huffman` parameters on a {} tensor",
                    tm.encoding
                )))
            }
            (Encoding::Palette, None) => symbols / 2,
            (Encoding::Exponent, None) => symbols,
        };
        if encoding == Encoding::Exponent && escapes != 0 {
            return Err(bad("exponent encoding stores no escapes".into()));
        }
        let mut expect: Vec<(Component, usize)> = vec![
            (Component::Sm, symbols),
            (Component::Palette, 16),
            (Component::Idx, idx_len),
            // The exponent encoding applies escapes in place and stores an empty table.
            (
                Component::EscBitmap,
                if encoding == Encoding::Exponent {
                    0
                } else {
                    mul(groups.div_ceil(64), 8, "escape bitmap")?
                },
            ),
            (
                Component::EscExp,
                mul(escapes, codec::GROUP, "escape exponents")?,
            ),
        ];
        if let Some(h) = &tm.huffman {
            let chunks = symbols.div_ceil(h.chunk_symbols as usize);
            expect.push((Component::ChunkOffsets, mul(chunks, 4, "chunk offsets")?));
        }
        for (c, want) in expect {
            let found = ranges.get(&c).map_or(0, |r| r.len());
            if found != want {
                return Err(Problem::ComponentLength {
                    component: c.name(),
                    expected: want.to_string(),
                    found,
                });
            }
        }
        Ok(Self {
            shape,
            orientation,
            encoding,
            rows,
            cols,
            padded_cols,
            groups,
            escapes,
            hash,
            checksum,
            ranges,
        })
    }

    fn bytes<'a>(&self, file: &'a [u8], c: Component) -> &'a [u8] {
        self.ranges.get(&c).map_or(&[], |r| &file[r.clone()])
    }

    /// Copies the components out of `file` into a codec tensor, checking their contents.
    pub fn load(
        &self,
        name: &str,
        file: &[u8],
        tm: &TensorMeta,
    ) -> Result<CompressedTensor, ParseError> {
        self.load_inner(file, tm)
            .map_err(|p| ParseError::tensor(name, p))
    }

    /// [`Parts::load`] copying the two large components into buffers from `pool` where one is
    /// large enough (see [`BufferPool`]).
    pub fn load_pooled(
        &self,
        name: &str,
        file: &[u8],
        tm: &TensorMeta,
        pool: &BufferPool,
    ) -> Result<CompressedTensor, ParseError> {
        self.load_with(file, tm, &|b| pool.copy_of(b), true)
            .map_err(|p| ParseError::tensor(name, p))
    }

    /// [`Parts::load_pooled`] without copying the sign-mantissa plane (half the data): the
    /// tensor's `sm` is left empty and the plane is returned as the slice of `file` that holds
    /// it, for [`codec::decompress_into_parts_sm`].
    pub fn load_pooled_sm_in_place<'a>(
        &self,
        name: &str,
        file: &'a [u8],
        tm: &TensorMeta,
        pool: &BufferPool,
    ) -> Result<(CompressedTensor, &'a [u8]), ParseError> {
        let t = self
            .load_with(file, tm, &|b| pool.copy_of(b), false)
            .map_err(|p| ParseError::tensor(name, p))?;
        Ok((t, self.bytes(file, Component::Sm)))
    }

    fn load_inner(&self, file: &[u8], tm: &TensorMeta) -> Result<CompressedTensor, Problem> {
        self.load_with(file, tm, &codec::copied_u8, true)
    }

    fn load_with(
        &self,
        file: &[u8],
        tm: &TensorMeta,
        copy: &dyn Fn(&[u8]) -> Vec<u8>,
        with_sm: bool,
    ) -> Result<CompressedTensor, Problem> {
        let corrupt = |component, reason: String| Problem::Corrupt { component, reason };
        let mut palette = [0u8; 16];
        palette.copy_from_slice(self.bytes(file, Component::Palette));

        let bitmap: Vec<u64> = self
            .bytes(file, Component::EscBitmap)
            .chunks_exact(8)
            .map(|w| u64::from_le_bytes(w.try_into().expect("8-byte chunk")))
            .collect();
        let mut prefix = Vec::with_capacity(bitmap.len());
        let mut count: u64 = 0;
        for &w in &bitmap {
            prefix.push(u32::try_from(count).map_err(|_| overflow("escape count"))?);
            count += u64::from(w.count_ones());
        }
        if let Some(&last) = bitmap.last() {
            let tail = self.groups % 64;
            if tail != 0 && last >> tail != 0 {
                return Err(corrupt("esc_bitmap", "bits set past the last group".into()));
            }
        }
        if count != self.escapes as u64 {
            return Err(corrupt(
                "esc_bitmap",
                format!("{count} bits set, metadata says {} escapes", self.escapes),
            ));
        }
        let escapes = Escapes {
            bitmap,
            prefix,
            exponents: self.bytes(file, Component::EscExp).to_vec(),
        };

        let idx = copy(self.bytes(file, Component::Idx));
        let indices = match self.encoding {
            Encoding::Palette => Indices::Palette(idx),
            Encoding::Exponent => Indices::Exponent(idx),
            Encoding::Huffman => {
                let h = tm.huffman.as_ref().expect("checked in Parts::check");
                let offsets: Vec<u32> = self
                    .bytes(file, Component::ChunkOffsets)
                    .chunks_exact(4)
                    .map(|w| u32::from_le_bytes(w.try_into().expect("4-byte chunk")))
                    .collect();
                if offsets.first().is_some_and(|&o| o != 0) {
                    return Err(corrupt(
                        "chunk_offsets",
                        "the first chunk does not start at bit 0".into(),
                    ));
                }
                if let Some(i) = offsets.windows(2).position(|w| w[1] < w[0]) {
                    return Err(corrupt(
                        "chunk_offsets",
                        format!("offset of chunk {} is below chunk {i}'s", i + 1),
                    ));
                }
                if offsets.last().is_some_and(|&o| u64::from(o) > h.total_bits) {
                    return Err(corrupt(
                        "chunk_offsets",
                        "an offset lies past the end of the stream".into(),
                    ));
                }
                Indices::Huffman(HuffmanStream {
                    code_lengths: h.code_lengths,
                    chunk_symbols: h.chunk_symbols,
                    chunk_offsets: offsets,
                    bits: idx,
                    total_bits: h.total_bits,
                })
            }
        };
        Ok(CompressedTensor {
            shape: self.shape.clone(),
            orientation: self.orientation,
            rows: self.rows,
            cols: self.cols,
            palette,
            sm: if with_sm {
                copy(self.bytes(file, Component::Sm))
            } else {
                Vec::new()
            },
            escapes,
            indices,
            hash: self.hash,
            checksum: self.checksum,
        })
    }
}

/// Huffman parameters a decoder can trust: lengths within the limit, a prefix code (Kraft sum
/// at most 1), a stream no longer than every symbol at the longest length.
fn check_huffman(h: &meta::HuffmanMeta, symbols: usize) -> Result<(), Problem> {
    let bad = |s: String| Problem::Metadata(format!("huffman: {s}"));
    if h.chunk_symbols == 0 {
        return Err(bad("chunk_symbols is 0".into()));
    }
    if let Some(l) = h
        .code_lengths
        .iter()
        .find(|&&l| u32::from(l) > codec::MAX_CODE_LEN)
    {
        return Err(bad(format!(
            "code length {l} exceeds {}",
            codec::MAX_CODE_LEN
        )));
    }
    let kraft: u64 = h
        .code_lengths
        .iter()
        .filter(|&&l| l > 0)
        .map(|&l| 1u64 << (codec::MAX_CODE_LEN - u32::from(l)))
        .sum();
    if kraft > 1 << codec::MAX_CODE_LEN {
        return Err(bad("code lengths do not form a prefix code".into()));
    }
    if symbols > 0 && kraft == 0 {
        return Err(bad("no symbol has a code".into()));
    }
    if h.total_bits > (symbols as u64).saturating_mul(u64::from(codec::MAX_CODE_LEN))
        || h.total_bits > 1u64 << 32
    {
        return Err(bad(format!(
            "{} bits is too long for {symbols} symbols",
            h.total_bits
        )));
    }
    Ok(())
}

/// Buffers of decoded tensors' components, kept for the next tensors' components: copying
/// into memory that is already mapped costs no page faults (with fresh buffers, faulting them
/// in cost more than the copy).
#[derive(Default)]
pub struct BufferPool(std::sync::Mutex<Vec<Vec<u8>>>);

impl BufferPool {
    /// `bytes` in a kept buffer with room for them (the smallest such), else a fresh one.
    pub fn copy_of(&self, bytes: &[u8]) -> Vec<u8> {
        let kept = {
            let mut pool = self.0.lock().unwrap_or_else(|e| e.into_inner());
            let best = pool
                .iter()
                .enumerate()
                .filter(|(_, v)| v.capacity() >= bytes.len())
                .min_by_key(|(_, v)| v.capacity())
                .map(|(i, _)| i);
            best.map(|i| pool.swap_remove(i))
        };
        match kept {
            Some(mut v) => {
                v.clear();
                v.extend_from_slice(bytes);
                v
            }
            None => codec::copied_u8(bytes),
        }
    }

    /// Takes back the large buffers of a tensor that is no longer needed.
    pub fn recycle(&self, t: CompressedTensor) {
        let mut pool = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let idx = match t.indices {
            Indices::Huffman(h) => h.bits,
            Indices::Palette(v) | Indices::Exponent(v) => v,
        };
        pool.extend([t.sm, idx].into_iter().filter(|v| v.capacity() > 0));
    }
}

#[cfg(test)]
mod tests {
    use super::BufferPool;

    #[test]
    fn pool_reuses_the_smallest_buffer_with_room() {
        let pool = BufferPool::default();
        let a = pool.copy_of(&[1u8; 1000]);
        let b = pool.copy_of(&[2u8; 100]);
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        {
            let mut kept = pool.0.lock().unwrap();
            kept.push(a);
            kept.push(b);
        }
        let c = pool.copy_of(&[3u8; 50]);
        assert_eq!((c.as_ptr(), &c[..]), (pb, &[3u8; 50][..]));
        let d = pool.copy_of(&[4u8; 999]);
        assert_eq!((d.as_ptr(), &d[..]), (pa, &[4u8; 999][..]));
        // Nothing left with room: a fresh buffer.
        let e = pool.copy_of(&[5u8; 10]);
        assert!(e.as_ptr() != pa && e.as_ptr() != pb);
        assert_eq!(e, vec![5u8; 10]);
    }
}
