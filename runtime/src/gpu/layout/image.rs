//! Host images of device-resident weights: exactly the bytes each kernel reads, prepared on the
//! CPU from a codec [`CompressedTensor`] so the layout rules are unit-tested without a GPU.

use unweight_codegen::abi;
use unweight_codegen::variant::{ASource, HuffRefill};

use crate::codec::{self, CompressedTensor, Encoding, Indices, Orientation, GROUP};

use super::escapes;
use super::fragments::{self, FragElem};
use super::multi;
use super::tiles::{self, Packing};
use super::{Geometry, LayoutError};

/// Zero bytes appended to the Huffman bitstream ([`abi::BITS_TAIL`]).
pub const BITS_TAIL: usize = abi::BITS_TAIL as usize;

/// How a weight is kept on the GPU; each execution pipeline needs one (`ExecPipeline::residency`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Residency {
    /// The codec's Huffman stream, decoded per call ([`HuffmanImage`]).
    Huffman,
    /// Tiled palette nibbles, read by the direct-palette rmm ([`PaletteImage`]).
    Palette,
    /// Plain bf16 (the raw rmm and the cuBLAS reference).
    Raw,
}

impl Residency {
    /// `huffman` / `palette` / `raw`, as tables, logs and bench rows spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Residency::Huffman => "huffman",
            Residency::Palette => "palette",
            Residency::Raw => "raw",
        }
    }
}

impl std::fmt::Display for Residency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the elements of each (CTA tile, k block) block are ordered on the GPU: tiled rows for the
/// SS rmm (and the Huffman kernels' tiled outputs), WGMMA A fragments for the RS rmm. Chosen at
/// upload; a variant reads only its own layout (`BlockLayout::of`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlockLayout {
    /// Tiled rows (SS rmm, Huffman kernels' tiled outputs).
    Tiled,
    /// WGMMA A fragments (RS rmm).
    Fragments,
}

impl BlockLayout {
    /// The rmm form that reads blocks in this layout: tiled the SS form, fragments the RS form.
    pub fn a_src(self) -> ASource {
        match self {
            BlockLayout::Tiled => ASource::Smem,
            BlockLayout::Fragments => ASource::Regs,
        }
    }

    /// The layout a palette-resident weight of geometry `g` takes by default, from the host
    /// ([`DeviceWeights::palette`](crate::gpu::weights::DeviceWeights::palette)) or from a GPU
    /// transcode (`mlp::load::transcode_to_palette`): fragments (the RS rmm, the faster form at
    /// decode batches) wherever the rmm takes the shape.
    pub fn palette_default(g: &Geometry) -> Option<BlockLayout> {
        g.rmm_ok().then_some(BlockLayout::Fragments)
    }

    /// `tiled` / `fragments`, as logs spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            BlockLayout::Tiled => "tiled",
            BlockLayout::Fragments => "fragments",
        }
    }
}

impl std::fmt::Display for BlockLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `huff_*` kernels read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HuffmanImage {
    /// The weight's shape and encoded matrix.
    pub geometry: Geometry,
    /// Bitstream followed by at least [`BITS_TAIL`] zero bytes, length a multiple of 16.
    pub bits: Vec<u8>,
    /// Bit offset of each chunk's first symbol.
    pub chunk_offsets: Vec<u32>,
    /// The kernels' decode tables ([`multi::tables`]), in the entry format of refills word /
    /// vec4 / sub256 and of sub256m4 / sub256win.
    pub tables: Vec<u32>,
    /// See `tables`.
    pub tables_m4: Vec<u32>,
    /// The 16 exponents the symbols index.
    pub palette: [u8; 16],
    /// Row-major sm bytes, only for a shape the rmm does not take: otherwise `huff_bf16` reads
    /// the tiled copy in `rmm` (one byte per weight, not two).
    pub sm: Option<Vec<u8>>,
    /// One bit per 64-element group: whether it holds an escape.
    pub esc_bitmap: Vec<u64>,
    /// Escaped groups before each bitmap word.
    pub esc_prefix: Vec<u32>,
    /// The escape exponents, one per escaped group, in group order.
    pub esc_exp: Vec<u8>,
    /// Symbols per chunk (the last chunk may hold fewer).
    pub chunk_symbols: u32,
    /// Chunks of the stream.
    pub n_chunks: u32,
    /// The stream's length before the padding, and its bit count: the kernels' `stream_bytes`
    /// (every load stays inside) and `stream_bits` (where the last chunk must end).
    pub stream_bytes: u64,
    /// See `stream_bytes`.
    pub stream_bits: u64,
    /// Sub-chunk offsets the device keeps ([`subs::sub_count`](super::subs::sub_count)): filled on the
    /// GPU by the validating decode; `None` when chunks do not hold whole sub-chunks.
    pub sub_count: Option<usize>,
    /// What the exponent / palette-transcode rmm reads besides the preprocess output (present
    /// when the shape is rmm-eligible).
    pub rmm: Option<RmmTables>,
}

/// Sign-mantissa bytes and per-tile escape tables of an rmm-eligible weight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RmmTables {
    /// sm bytes in the rmm's block layout (`w0_tiles`): tiled, except in a palette image whose
    /// `layout` is [`BlockLayout::Fragments`].
    pub sm_tiles: Vec<u8>,
    /// Per tile: where its escapes are (`abi::ESC_RECORD_BYTES` each).
    pub tile_esc: Vec<u8>,
    /// Escape exponents in tile order.
    pub esc_exp: Vec<u8>,
}

impl RmmTables {
    fn new(t: &CompressedTensor, g: &Geometry, layout: BlockLayout) -> Result<Self, LayoutError> {
        let sm_tiles = match layout {
            BlockLayout::Tiled => tiles::tile(&t.sm, t.orientation, g.n_out, g.k, Packing::Byte)?,
            BlockLayout::Fragments => {
                fragments::shuffle(&t.sm, t.orientation, g.n_out, g.k, FragElem::Byte)?
            }
        };
        let esc = escapes::build(&t.escapes, t.orientation, g.n_out, g.k)?;
        Ok(RmmTables {
            sm_tiles,
            tile_esc: esc.records,
            esc_exp: esc.exponents,
        })
    }
}

/// What `rmm_palette_*` reads (direct palette): every array already in the tiled layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaletteImage {
    /// The weight's shape and encoded matrix.
    pub geometry: Geometry,
    /// sm bytes and escape tables.
    pub tables: RmmTables,
    /// Palette nibbles in the rmm's block layout (`w1_tiles`).
    pub nibble_tiles: Vec<u8>,
    /// The 16 exponents the nibbles index.
    pub palette: [u8; 16],
    /// The order of sm bytes and nibbles inside each block (escape tables are the same for both).
    pub layout: BlockLayout,
}

impl HuffmanImage {
    /// The image of a Huffman-encoded tensor; any other encoding is refused.
    pub fn new(t: &CompressedTensor) -> Result<Self, LayoutError> {
        let Indices::Huffman(h) = &t.indices else {
            return Err(LayoutError::Encoding {
                residency: Residency::Huffman,
                needs: Encoding::Huffman,
                got: t.encoding(),
            });
        };
        let geometry = Geometry::of(t);
        let symbols = geometry.rows * geometry.padded_cols;
        // The huff kernels decode whole groups per chunk and index with 32-bit positions.
        if h.chunk_symbols == 0 || h.chunk_symbols as usize % GROUP != 0 {
            return Err(LayoutError::ChunkSymbols(h.chunk_symbols));
        }
        if symbols as u64 >= 1 << 32 {
            return Err(LayoutError::TooManySymbols(symbols));
        }
        let n_chunks = symbols.div_ceil(h.chunk_symbols.max(1) as usize);
        if h.chunk_offsets.len() != n_chunks {
            let (have, need) = (h.chunk_offsets.len(), n_chunks);
            return Err(LayoutError::Length {
                what: "chunk offsets",
                unit: "offsets",
                have,
                need,
            });
        }
        if t.sm.len() != symbols {
            return Err(LayoutError::Length {
                what: "sign-mantissa bytes",
                unit: "bytes",
                have: t.sm.len(),
                need: symbols,
            });
        }
        let mut bits = h.bits.clone();
        bits.resize((h.bits.len() + BITS_TAIL).div_ceil(16) * 16, 0);
        let rmm = if geometry.rmm_ok() {
            Some(RmmTables::new(t, &geometry, BlockLayout::Tiled)?)
        } else {
            None
        };
        let lut = h.decode_lut();
        Ok(HuffmanImage {
            geometry,
            bits,
            chunk_offsets: h.chunk_offsets.clone(),
            tables: multi::tables(&lut, HuffRefill::Word),
            tables_m4: multi::tables(&lut, HuffRefill::Sub256M4),
            palette: t.palette,
            sm: if rmm.is_none() {
                Some(t.sm.clone())
            } else {
                None
            },
            esc_bitmap: t.escapes.bitmap.clone(),
            esc_prefix: t.escapes.prefix.clone(),
            esc_exp: t.escapes.exponents.clone(),
            chunk_symbols: h.chunk_symbols,
            n_chunks: n_chunks as u32,
            stream_bytes: h.bits.len() as u64,
            stream_bits: h.total_bits,
            sub_count: super::subs::sub_count(symbols, h.chunk_symbols),
            rmm,
        })
    }
}

impl PaletteImage {
    /// From a palette- or Huffman-encoded tensor (Huffman is transcoded on the CPU), tiled (SS rmm).
    pub fn new(t: &CompressedTensor) -> Result<Self, LayoutError> {
        Self::with_layout(t, BlockLayout::Tiled)
    }

    /// The same in `layout` ([`BlockLayout::Fragments`] for the RS rmm).
    pub fn with_layout(t: &CompressedTensor, layout: BlockLayout) -> Result<Self, LayoutError> {
        let geometry = Geometry::of(t);
        if !geometry.rmm_ok() {
            return Err(LayoutError::PaletteShape {
                shape: geometry.shape_text(),
            });
        }
        let nibbles = match &t.indices {
            Indices::Palette(n) => n.clone(),
            _ => codec::decode_palette_indices(t)?,
        };
        let (o, n, k) = (t.orientation, geometry.n_out, geometry.k);
        let nibble_tiles = match layout {
            BlockLayout::Tiled => tiles::tile(&nibbles, o, n, k, Packing::Nibble)?,
            BlockLayout::Fragments => fragments::shuffle(&nibbles, o, n, k, FragElem::Nibble)?,
        };
        Ok(PaletteImage {
            tables: RmmTables::new(t, &geometry, layout)?,
            geometry,
            nibble_tiles,
            palette: t.palette,
            layout,
        })
    }
}

/// Raw bf16 weights `W [n_out][k]` (row-major, logical) in fragment layout, for the raw RS twin.
/// The fragment order is logical, so it does not depend on the stored orientation.
pub fn raw_fragments(w: &[u16], n_out: usize, k: usize) -> Result<Vec<u16>, LayoutError> {
    let bytes: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
    let f = fragments::shuffle(&bytes, Orientation::Standard, n_out, k, FragElem::Bf16)?;
    Ok(f.chunks_exact(2)
        .map(|p| u16::from_le_bytes([p[0], p[1]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::compress;

    fn bits(n: usize) -> Vec<u16> {
        (0..n)
            .map(|i| ((((i * 31) % 20) as u16 + 110) << 7) | (i as u16 & 0x807f))
            .collect()
    }

    #[test]
    fn huffman_image_pads_the_stream() {
        let b = bits(128 * 100);
        let t = compress(&b, &[128, 100], Orientation::Standard, Encoding::Huffman).unwrap();
        let img = HuffmanImage::new(&t).unwrap();
        let Indices::Huffman(h) = &t.indices else {
            unreachable!()
        };
        assert!(img.bits.len() >= h.bits.len() + BITS_TAIL);
        assert_eq!(img.bits.len() % 16, 0);
        assert!(img.bits[h.bits.len()..].iter().all(|&x| x == 0));
        assert_eq!(&img.bits[..h.bits.len()], &h.bits[..]);
        assert_eq!(
            (img.stream_bytes, img.stream_bits),
            (h.bits.len() as u64, h.total_bits)
        );
        assert_eq!(img.tables.len(), multi::ENTRIES + multi::SYMBOLS);
        assert_eq!(img.tables_m4.len(), multi::ENTRIES + multi::SYMBOLS);
        assert_eq!(img.geometry.padded_cols, 128);
        assert_eq!(
            img.n_chunks as usize,
            (128 * 128usize).div_ceil(h.chunk_symbols as usize)
        );
        assert!(!img.geometry.rmm_ok());
        assert!(img.rmm.is_none());
        assert_eq!(
            img.sm.as_deref(),
            Some(&t.sm[..]),
            "not rmm-eligible: huff_bf16 reads row-major sm"
        );
    }

    #[test]
    fn huffman_residency_holds_one_sm_copy_and_fewer_bytes_than_bf16() {
        // Trained-weight-like exponents: a few around 120 dominate, one group in ~100 has an outlier.
        let b: Vec<u16> = (0..512 * 256usize)
            .map(|i| {
                let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
                let e = if i % 6400 == 77 {
                    20
                } else {
                    118 + (h % 7).min(h % 5) as u16
                };
                (e << 7) | (h as u16 & 0x807f)
            })
            .collect();
        for o in [Orientation::Standard, Orientation::Transposed] {
            let h = HuffmanImage::new(&compress(&b, &[512, 256], o, Encoding::Huffman).unwrap())
                .unwrap();
            assert!(
                h.sm.is_none(),
                "rmm-eligible: the tiled sm is the only copy"
            );
            let r = h.rmm.as_ref().unwrap();
            let bytes = h.bits.len()
                + 4 * h.chunk_offsets.len()
                + 4 * (h.tables.len() + h.tables_m4.len())
                + 16
                + r.sm_tiles.len()
                + r.tile_esc.len()
                + r.esc_exp.len()
                + 8 * h.esc_bitmap.len()
                + 4 * h.esc_prefix.len()
                + h.esc_exp.len();
            assert!(
                bytes < b.len() * 2,
                "{o}: {bytes} resident bytes for {} bf16 bytes",
                b.len() * 2
            );
        }
    }

    #[test]
    fn geometry_of_transposed() {
        let b = bits(256 * 192);
        let t = compress(&b, &[256, 192], Orientation::Transposed, Encoding::Palette).unwrap();
        let g = Geometry::of(&t);
        assert_eq!((g.n_out, g.k, g.rows, g.cols), (256, 192, 192, 256));
        assert_eq!(g, Geometry::raw(256, 192, Orientation::Transposed));
        assert!(g.rmm_ok());
        assert_eq!(g.scratch_bytes(), (192 * 256 * 2, 192 * 256, 192 * 128));
    }

    #[test]
    fn palette_image_from_huffman_equals_from_palette() {
        let b = bits(256 * 128);
        for o in [Orientation::Standard, Orientation::Transposed] {
            let a = PaletteImage::new(&compress(&b, &[256, 128], o, Encoding::Huffman).unwrap())
                .unwrap();
            let p = PaletteImage::new(&compress(&b, &[256, 128], o, Encoding::Palette).unwrap())
                .unwrap();
            assert_eq!(a, p);
            assert_eq!(a.tables.tile_esc.len(), 2 * 2 * 32);
            assert_eq!(a.nibble_tiles.len(), 256 * 128 / 2);
            let h = HuffmanImage::new(&compress(&b, &[256, 128], o, Encoding::Huffman).unwrap())
                .unwrap();
            assert_eq!(
                h.rmm.as_ref(),
                Some(&a.tables),
                "huffman and palette residency share the rmm tables"
            );
            let sm = compress(&b, &[256, 128], o, Encoding::Huffman).unwrap().sm;
            assert_eq!(
                tiles::untile(&a.tables.sm_tiles, o, 256, 128, Packing::Byte).unwrap(),
                sm
            );
        }
    }

    /// What consumer thread `ct` of the RS palette rmm rebuilds from block `blk`, step by step as
    /// templates/partials/rmm_rs.cuh.tera does: its sm and nibble vectors, the palette, the
    /// hot-path escape test on the record (`lane_of`'s word and bits), then the escaped groups'
    /// real exponents by rank. Element `e` as in [`fragments::logical`].
    fn rs_thread_view(img: &PaletteImage, blk: usize, ct: usize) -> [u16; 32] {
        let sm = &img.tables.sm_tiles[blk * 8192..][..8192];
        let nib = &img.nibble_tiles[blk * 4096..][..4096];
        let rec: Vec<u32> = img.tables.tile_esc[blk * 32..][..32]
            .chunks_exact(4)
            .map(|w| u32::from_le_bytes(w.try_into().unwrap()))
            .collect();
        let transposed = img.geometry.transposed();
        let (cw, t) = (ct / 128, ct % 128);
        let (w, l) = (t / 32, t % 32);
        let (row, col) = (64 * cw + 16 * w + l / 4, 2 * (l % 4));
        let hit = if transposed {
            (rec[0] | rec[1] | rec[2] | rec[3]) & ((0x5u32 << (2 * col + cw)) * 0x10001)
        } else {
            rec[row >> 5] & (0x101u32 << (row & 31))
        };
        let mask = rec[..4]
            .iter()
            .rev()
            .fold(0u128, |m, &w| (m << 32) | w as u128);
        let mut out = [0u16; 32];
        for (e, o) in out.iter_mut().enumerate() {
            let s = sm[(e / 16 * 256 + ct) * 16 + e % 16] as u16;
            let idx = (nib[ct * 16 + e / 2] >> (4 * (e % 2))) & 0xF;
            let mut ex = img.palette[idx as usize] as u16;
            let (kk, reg, half) = (e / 8, (e / 2) % 4, e % 2);
            let (r, c) = (row + 8 * (reg & 1), 16 * kk + 8 * (reg >> 1) + col + half);
            let (j, pos) = if transposed {
                (2 * c + cw, r % 64)
            } else {
                (r, c)
            };
            if hit != 0 && (mask >> j) & 1 == 1 {
                let rank = (mask & ((1u128 << j) - 1)).count_ones() as usize;
                let first = rec[abi::ESC_FIRST_WORD as usize] as usize;
                ex = img.tables.esc_exp[(first + rank) * GROUP + pos] as u16;
            }
            *o = ((s & 0x80) << 8) | (ex << 7) | (s & 0x7F);
        }
        out
    }

    #[test]
    fn rs_view_of_palette_fragments_is_the_weights() {
        // Trained-weight-like exponents with an out-of-palette outlier every 977 elements, so
        // many tiles hold escaped groups (in both orientations the groups differ).
        let (n_out, k) = (256, 192);
        let b: Vec<u16> = (0..n_out * k)
            .map(|i| {
                let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
                let e = if i % 977 == 5 {
                    10 + (i % 61) as u16
                } else {
                    118 + (h % 7).min(h % 5) as u16
                };
                (e << 7) | (h as u16 & 0x807f)
            })
            .collect();
        for o in [Orientation::Standard, Orientation::Transposed] {
            let t = compress(&b, &[n_out, k], o, Encoding::Palette).unwrap();
            assert!(t.escape_count() > 20, "{o}: {}", t.escape_count());
            let img = PaletteImage::with_layout(&t, BlockLayout::Fragments).unwrap();
            assert_eq!(img.layout, BlockLayout::Fragments);
            assert_eq!(
                img.tables.tile_esc,
                PaletteImage::new(&t).unwrap().tables.tile_esc,
                "{o}: escape tables do not depend on the block layout"
            );
            let mut escaped_seen = 0;
            for i in 0..n_out / 128 {
                for kb in 0..k / 64 {
                    let blk = i * (k / 64) + kb;
                    escaped_seen += img.tables.tile_esc[blk * 32 + 20] as usize;
                    for ct in 0..256 {
                        let got = rs_thread_view(&img, blk, ct);
                        for (e, &g) in got.iter().enumerate() {
                            let (r, c) = fragments::logical(ct, e);
                            let want = b[(128 * i + r) * k + 64 * kb + c];
                            assert_eq!(g, want, "{o} block ({i},{kb}) thread {ct} element {e}");
                        }
                    }
                }
            }
            assert_eq!(escaped_seen, t.escape_count(), "{o}");
        }
    }

    #[test]
    fn raw_fragments_hold_every_weight_once() {
        let (n_out, k) = (128, 128);
        let w: Vec<u16> = (0..n_out * k).map(|i| i as u16).collect();
        let f = raw_fragments(&w, n_out, k).unwrap();
        let mut sorted = f.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, w);
        // Thread 0's first register of block (0, 1): rows 0, columns 64, 65.
        let blk = 16384 / 2;
        assert_eq!((f[blk], f[blk + 1]), (w[64], w[65]));
    }

    #[test]
    fn palette_image_rejects_rmm_incompatible_shapes() {
        let b = bits(100 * 64);
        let t = compress(&b, &[100, 64], Orientation::Standard, Encoding::Palette).unwrap();
        let e = PaletteImage::new(&t).unwrap_err().to_string();
        assert!(e.contains("keep it Huffman-resident"), "{e}");
        let h = compress(&b, &[100, 64], Orientation::Standard, Encoding::Palette).unwrap();
        assert!(HuffmanImage::new(&h)
            .unwrap_err()
            .to_string()
            .contains("needs the huffman encoding"));
    }
}
