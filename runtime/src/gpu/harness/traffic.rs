//! The bytes each benchmarked call must move through HBM, from the sizes of a weight's device
//! components, and its floor: those bytes over the copy bandwidth measured in the same run.
//!
//! A floor counts every byte once: what a call reads (the weight in its resident form, the
//! activations, a preprocess output read back) and what it writes (`y`, a preprocess output).
//! Stream-K partial sums and tables re-read from L2 are the kernel's overhead, not the floor's.

use unweight_codegen::variant::HuffOutput;

use crate::gpu::layout::{multi, Geometry, HuffmanImage, PaletteImage};
use crate::gpu::plan::ExecPipeline;
use crate::gpu::weights::{DeviceWeights, Resident};

/// Bytes of each device component of one weight (0 where the residency has none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Plain bf16 weights (raw residency).
    pub bf16: u64,
    /// Sign-mantissa bytes: the one copy a palette or Huffman residency keeps.
    pub sm: u64,
    /// Tiled palette nibbles (palette residency).
    pub nibbles: u64,
    /// The rmm's per-tile escape records and tile-ordered escape exponents.
    pub tile_esc: u64,
    pub tile_esc_exp: u64,
    /// The 16-byte exponent palette.
    pub palette: u64,
    /// Huffman: the bitstream without its upload padding (no load passes `stream_bytes`), the
    /// chunk offsets and the decode tables (both entry formats; a decode reads one).
    pub stream: u64,
    pub chunk_offsets: u64,
    pub tables: u64,
    /// Huffman: the codec's escape bitmap, its prefix counts and the escape exponents.
    pub esc_bitmap: u64,
    pub esc_prefix: u64,
    pub esc_exp: u64,
}

fn len<T>(v: &[T]) -> u64 {
    std::mem::size_of_val(v) as u64
}

impl Footprint {
    /// A raw bf16 weight of geometry `g`.
    pub fn raw(g: &Geometry) -> Self {
        Footprint {
            bf16: (g.rows * g.cols * 2) as u64,
            ..Default::default()
        }
    }

    /// What the direct-palette rmm reads, from the host image uploaded as it is.
    pub fn of_palette(p: &PaletteImage) -> Self {
        Footprint {
            sm: len(&p.tables.sm_tiles),
            nibbles: len(&p.nibble_tiles),
            tile_esc: len(&p.tables.tile_esc),
            tile_esc_exp: len(&p.tables.esc_exp),
            palette: len(&p.palette),
            ..Default::default()
        }
    }

    /// What the Huffman decoders and the exponent / palette-transcode rmm read.
    pub fn of_huffman(h: &HuffmanImage) -> Self {
        let sm =
            h.sm.as_deref()
                .or(h.rmm.as_ref().map(|r| &r.sm_tiles[..]))
                .map_or(0, len);
        Footprint {
            sm,
            tile_esc: h.rmm.as_ref().map_or(0, |r| len(&r.tile_esc)),
            tile_esc_exp: h.rmm.as_ref().map_or(0, |r| len(&r.esc_exp)),
            palette: len(&h.palette),
            stream: h.stream_bytes,
            chunk_offsets: len(&h.chunk_offsets),
            tables: len(&h.tables) + len(&h.tables_m4),
            esc_bitmap: len(&h.esc_bitmap),
            esc_prefix: len(&h.esc_prefix),
            esc_exp: len(&h.esc_exp),
            ..Default::default()
        }
    }

    /// The same from the uploaded buffers (their lengths are the host images').
    pub fn of_device(w: &DeviceWeights) -> Self {
        let b = |n: usize| n as u64;
        match &w.resident {
            Resident::Raw(r) => Footprint {
                bf16: b(r.w.bytes()),
                ..Default::default()
            },
            Resident::Palette(p) => Footprint {
                sm: b(p.rmm.sm_tiles.bytes()),
                nibbles: b(p.nibble_tiles.bytes()),
                tile_esc: b(p.rmm.tile_esc.bytes()),
                tile_esc_exp: b(p.rmm.esc_exp.bytes()),
                palette: b(p.palette.bytes()),
                ..Default::default()
            },
            Resident::Huffman(h) => Footprint {
                sm: b(h
                    .sm
                    .as_ref()
                    .or(h.rmm.as_ref().map(|r| &r.sm_tiles))
                    .map_or(0, |s| s.bytes())),
                tile_esc: h.rmm.as_ref().map_or(0, |r| b(r.tile_esc.bytes())),
                tile_esc_exp: h.rmm.as_ref().map_or(0, |r| b(r.esc_exp.bytes())),
                palette: b(h.palette.bytes()),
                stream: h.stream_bytes,
                chunk_offsets: b(h.chunk_offsets.bytes()),
                tables: b(h.tables.bytes() + h.tables_m4.bytes()),
                esc_bitmap: b(h.esc_bitmap.bytes()),
                esc_prefix: b(h.esc_prefix.bytes()),
                esc_exp: b(h.esc_exp.bytes()),
                ..Default::default()
            },
        }
    }

    /// Every component: what the residency holds on the device.
    pub fn total(&self) -> u64 {
        self.bf16
            + self.sm
            + self.nibbles
            + self.tile_esc
            + self.tile_esc_exp
            + self.palette
            + self.stream
            + self.chunk_offsets
            + self.tables
            + self.esc_bitmap
            + self.esc_prefix
            + self.esc_exp
    }
}

/// Bytes read and written by one call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub read: u64,
    pub written: u64,
}

impl Traffic {
    /// Read + written: what the copy bandwidth counts too.
    pub fn total(&self) -> u64 {
        self.read + self.written
    }
}

impl std::ops::Add for Traffic {
    type Output = Traffic;
    fn add(self, o: Traffic) -> Traffic {
        Traffic {
            read: self.read + o.read,
            written: self.written + o.written,
        }
    }
}

/// `huff_<output>` of a Huffman-resident weight: the stream, its offsets and table; exponent and
/// bf16 also the codec's escapes (the palette output leaves escaped groups' indices don't-care)
/// and the palette; bf16 also the sm bytes. Writes the preprocess output.
pub fn decode(fp: &Footprint, g: &Geometry, output: HuffOutput) -> Traffic {
    // A decode reads the table of its own entry format, one of those `tables` counts.
    let stream = fp.stream + fp.chunk_offsets + 4 * multi::TABLE_WORDS as u64;
    let escapes = fp.palette + fp.esc_bitmap + fp.esc_prefix + fp.esc_exp;
    let (bf16, exponents, nibbles) = g.scratch_bytes();
    let (read, written) = match output {
        HuffOutput::Palette => (stream, nibbles),
        HuffOutput::Exponent => (stream + escapes, exponents),
        HuffOutput::Bf16 => (stream + escapes + fp.sm, bf16),
    };
    Traffic {
        read,
        written: written as u64,
    }
}

/// One `y = x·Wᵀ` call of `pipeline` at batch `m` on a weight of footprint `fp`: the weight in
/// its resident form, `x` (`m × k` bf16) and `y` (`m × n_out` bf16); the Huffman pipelines also
/// their preprocess, whose output the matmul reads back.
pub fn matmul(pipeline: ExecPipeline, fp: &Footprint, g: &Geometry, m: usize) -> Traffic {
    let io = Traffic {
        read: (m * g.k * 2) as u64,
        written: (m * g.n_out * 2) as u64,
    };
    let (bf16, exponents, nibbles) = g.scratch_bytes();
    let reads = |read: u64| Traffic { read, written: 0 };
    let palette_rmm = fp.sm + fp.tile_esc + fp.tile_esc_exp + fp.palette;
    io + match pipeline {
        ExecPipeline::Cublas | ExecPipeline::Raw => reads(fp.bf16),
        ExecPipeline::DirectPalette => reads(palette_rmm + fp.nibbles),
        ExecPipeline::PaletteTranscode => {
            decode(fp, g, HuffOutput::Palette) + reads(palette_rmm + nibbles as u64)
        }
        ExecPipeline::Exponent => {
            decode(fp, g, HuffOutput::Exponent) + reads(fp.sm + exponents as u64)
        }
        ExecPipeline::FullDecode => decode(fp, g, HuffOutput::Bf16) + reads(bf16 as u64),
    }
}

/// µs to move `bytes` at `tb_s` TB/s.
pub fn floor_us(bytes: u64, tb_s: f64) -> f64 {
    bytes as f64 / (tb_s * 1e6)
}

/// TB/s of `bytes` moved in `us` µs.
pub fn tb_s(bytes: u64, us: f64) -> f64 {
    bytes as f64 / (us * 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{compress, Encoding, Indices, Orientation};

    /// 256×128 bf16 bits with exactly the 16 exponents 110..126 (no escape), except that one
    /// element of each group in `escaped` takes exponent 20.
    fn weights(escaped: &[usize]) -> Vec<u16> {
        (0..256 * 128usize)
            .map(|i| {
                let e = if i % 64 == 5 && escaped.contains(&(i / 64)) {
                    20
                } else {
                    110 + ((i * 7) % 16) as u16
                };
                (e << 7) | (i as u16 & 0x807f)
            })
            .collect()
    }

    #[test]
    fn raw_and_cublas_move_the_bf16_matrix_x_and_y() {
        let g = Geometry::raw(256, 128, Orientation::Standard);
        let fp = Footprint::raw(&g);
        assert_eq!(fp.total(), 65_536);
        // m = 4: x 4·128·2 = 1024 bytes, y 4·256·2 = 2048.
        for p in [ExecPipeline::Cublas, ExecPipeline::Raw] {
            let t = matmul(p, &fp, &g, 4);
            assert_eq!(
                t,
                Traffic {
                    read: 65_536 + 1024,
                    written: 2048
                },
                "{p}"
            );
        }
    }

    #[test]
    fn direct_palette_reads_sm_nibbles_and_its_escape_tables() {
        for o in [Orientation::Standard, Orientation::Transposed] {
            let t = compress(&weights(&[3]), &[256, 128], o, Encoding::Palette).unwrap();
            let img = PaletteImage::new(&t).unwrap();
            let fp = Footprint::of_palette(&img);
            // sm 1 byte/weight, nibbles 1/2, 2×2 tiles × 32-byte records, one escaped group's
            // 64 exponents, the palette.
            let want = Footprint {
                sm: 32_768,
                nibbles: 16_384,
                tile_esc: 128,
                tile_esc_exp: 64,
                palette: 16,
                ..Default::default()
            };
            assert_eq!(fp, want, "{o}");
            let m = 1;
            let (x, y) = (128 * 2, 256 * 2);
            let mm = matmul(ExecPipeline::DirectPalette, &fp, &img.geometry, m);
            assert_eq!(
                mm,
                Traffic {
                    read: 32_768 + 16_384 + 128 + 64 + 16 + x,
                    written: y
                },
                "{o}"
            );
        }
    }

    #[test]
    fn huffman_pipelines_add_their_preprocess_round_trip() {
        let t = compress(
            &weights(&[3, 400]),
            &[256, 128],
            Orientation::Standard,
            Encoding::Huffman,
        )
        .unwrap();
        let Indices::Huffman(h) = &t.indices else {
            unreachable!()
        };
        let (stream, chunks) = (h.bits.len() as u64, h.chunk_offsets.len() as u64);
        let img = HuffmanImage::new(&t).unwrap();
        let fp = Footprint::of_huffman(&img);
        // 512 groups: 8 bitmap words (64 bytes), 8 prefix counts (32 bytes), 2 escaped groups
        // (128 exponent bytes, again in tile order); two decode tables of 4096 + 16 u32 (a decode
        // reads one); one sm copy (tiled).
        let want = Footprint {
            sm: 32_768,
            tile_esc: 128,
            tile_esc_exp: 128,
            palette: 16,
            stream,
            chunk_offsets: 4 * chunks,
            tables: 2 * 16_448,
            esc_bitmap: 64,
            esc_prefix: 32,
            esc_exp: 128,
            ..Default::default()
        };
        assert_eq!(fp, want);
        let g = img.geometry;
        let table = stream + 4 * chunks + 16_448;
        let escapes = 16 + 64 + 32 + 128;
        assert_eq!(
            decode(&fp, &g, HuffOutput::Palette),
            Traffic {
                read: table,
                written: 16_384
            }
        );
        assert_eq!(
            decode(&fp, &g, HuffOutput::Exponent),
            Traffic {
                read: table + escapes,
                written: 32_768
            }
        );
        assert_eq!(
            decode(&fp, &g, HuffOutput::Bf16),
            Traffic {
                read: table + escapes + 32_768,
                written: 65_536
            }
        );
        let m = 16;
        let (x, y) = (16 * 128 * 2, 16 * 256 * 2);
        let pal_rmm = 32_768 + 128 + 128 + 16;
        let cases = [
            (
                ExecPipeline::PaletteTranscode,
                table + 16_384 + pal_rmm,
                16_384,
            ),
            (
                ExecPipeline::Exponent,
                table + escapes + 32_768 + 32_768,
                32_768,
            ),
            (
                ExecPipeline::FullDecode,
                table + escapes + 32_768 + 65_536,
                65_536,
            ),
        ];
        for (p, read, written) in cases {
            assert_eq!(
                matmul(p, &fp, &g, m),
                Traffic {
                    read: read + x,
                    written: written + y
                },
                "{p}"
            );
        }
    }

    #[test]
    fn floor_is_bytes_over_the_copy_bandwidth() {
        // DESIGN.md: the palette matrix of 14336×4096 (88.9 MB) at 4.1 TB/s takes ~21.7 µs.
        let f = floor_us(88_900_000, 4.1);
        assert!((f - 21.683).abs() < 1e-3, "{f}");
        assert!((tb_s(88_900_000, f) - 4.1).abs() < 1e-12);
        // 117.4 MB in 32.0 µs is 3.67 TB/s (cuBLAS at M = 1 on the H200).
        assert!((tb_s(117_440_512, 32.0) - 3.67).abs() < 1e-3);
    }
}
