//! Device-resident weights: Huffman-resident (preprocessed per call), palette-resident (read by
//! the direct-palette rmm) or raw bf16 (the raw rmm and the cuBLAS reference). Upload only: the
//! host images come from `layout`, the launches that read them live in `launch` and `linear`.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DeviceRepr};
use unweight_codegen::abi::{huff_err, HuffLayout};

use crate::codec::{CompressedTensor, Orientation};

use crate::gpu::device::GpuDevice;
use crate::gpu::error::{weights_error, DriverContext, GpuError};
use crate::gpu::layout::{
    multi, raw_fragments, BlockLayout, Geometry, HuffmanImage, LayoutError, PaletteImage,
    Residency, RmmTables,
};
use crate::gpu::relayout;
use unweight_codegen::variant::{ASource, HuffRefill, RelayoutElem};

/// A device buffer and its address, taken once at upload (weights never move).
pub struct DevBuf<T> {
    slice: CudaSlice<T>,
    /// Its device address.
    pub ptr: u64,
    /// Elements the caller asked for (the allocation may hold a few more: never zero-sized).
    pub len: usize,
}

impl<T> DevBuf<T> {
    /// The bytes of the `len` elements asked for.
    pub fn bytes(&self) -> usize {
        self.len * std::mem::size_of::<T>()
    }
    /// The buffer, for cudarc calls.
    pub fn slice(&self) -> &CudaSlice<T> {
        &self.slice
    }
}

fn upload<T: DeviceRepr + Copy + Default>(
    stream: &Arc<CudaStream>,
    data: &[T],
    what: &str,
) -> Result<DevBuf<T>, GpuError> {
    // An empty table (no escapes) still gets a small buffer so its address is valid and aligned.
    let padded;
    let src = if data.is_empty() {
        padded = vec![T::default(); 16];
        &padded[..]
    } else {
        data
    };
    let slice = stream
        .clone_htod(src)
        .ctx(|| format!("uploading {what} ({} elements)", src.len()))?;
    let ptr = slice.device_ptr(stream).0;
    Ok(DevBuf {
        slice,
        ptr,
        len: data.len(),
    })
}

/// A Huffman-resident weight's device buffers (what the `huff_*` kernels read).
pub struct HuffmanDev {
    /// The Huffman stream of the exponent symbols, padded for the decoder's refills.
    pub bits: DevBuf<u8>,
    /// Bit offset of each chunk's first symbol.
    pub chunk_offsets: DevBuf<u32>,
    /// The kernels' decode tables (`layout::multi`): for refills word / vec4 / sub256, and for
    /// sub256m4 and sub256win ([`HuffmanDev::tables_for`]).
    pub tables: DevBuf<u32>,
    /// See `tables`.
    pub tables_m4: DevBuf<u32>,
    /// The 16 exponents the symbols index.
    pub palette: DevBuf<u8>,
    /// Row-major sm bytes, only when the rmm does not take the shape (else `rmm.sm_tiles`).
    pub sm: Option<DevBuf<u8>>,
    /// One bit per 64-element group: whether it holds an escape.
    pub esc_bitmap: DevBuf<u64>,
    /// Escaped groups before each bitmap word (where a group's escape exponent is).
    pub esc_prefix: DevBuf<u32>,
    /// The escape exponents, one per escaped group, in group order.
    pub esc_exp: DevBuf<u8>,
    /// Symbols per chunk (the last chunk may hold fewer).
    pub chunk_symbols: u32,
    /// Chunks of the stream.
    pub n_chunks: u32,
    /// The stream's bytes before the upload's padding (the kernels' `stream_bytes`) and bits.
    pub stream_bytes: u64,
    /// Bits of the stream that hold symbols.
    pub stream_bits: u64,
    /// This weight's decode error word ([`huff_err::WORDS`] u32, zero at upload): every decode of
    /// it ORs in what it refused, so reading it names this tensor. Sticky: the stream never changes.
    pub err: DevBuf<u32>,
    /// Bit offset of every `abi::SUB_SYMBOLS`-th symbol of each chunk (zero at upload), written by
    /// the validating decode in [`Linear::new`](crate::gpu::linear::Linear::new) and read by the
    /// `sub256` decoders; `None` when chunks do not hold whole sub-chunks (the weight then decodes
    /// with [`HuffRefill::CHUNKED`](unweight_codegen::variant::HuffRefill::CHUNKED)).
    pub sub_offsets: Option<DevBuf<u32>>,
    /// Tiled sm and per-tile escape tables for the exponent / palette-transcode rmm (present
    /// when the rmm takes the shape); `huff_bf16` then reads this sm copy too.
    pub rmm: Option<RmmDev>,
}

impl HuffmanDev {
    /// Device address of the decode tables in `refill`'s entry format.
    pub fn tables_for(&self, refill: HuffRefill) -> u64 {
        if multi::byte_fields(refill) {
            self.tables_m4.ptr
        } else {
            self.tables.ptr
        }
    }

    /// The sm bytes `huff_bf16` reads and their layout (its `layout` argument).
    pub fn sm_input(&self, orientation: Orientation) -> Result<(u64, HuffLayout), LayoutError> {
        match (&self.sm, &self.rmm, orientation) {
            (Some(sm), _, _) => Ok((sm.ptr, HuffLayout::RowMajor)),
            (None, Some(r), Orientation::Standard) => {
                Ok((r.sm_tiles.ptr, HuffLayout::TiledStandard))
            }
            (None, Some(r), Orientation::Transposed) => {
                Ok((r.sm_tiles.ptr, HuffLayout::TiledTransposed))
            }
            (None, None, _) => Err(LayoutError::NoSignMantissa),
        }
    }

    /// Bytes of the sm copy.
    fn sm_bytes(&self) -> usize {
        self.sm
            .as_ref()
            .or(self.rmm.as_ref().map(|r| &r.sm_tiles))
            .map_or(0, DevBuf::bytes)
    }
}

/// The rmm's tiled sm bytes, `tile_esc` records and tile-ordered escape exponents.
pub struct RmmDev {
    /// Sign and mantissa bytes in the rmm's tile order.
    pub sm_tiles: DevBuf<u8>,
    /// Per tile: where its escapes are (`abi::ESC_RECORD_BYTES` each).
    pub tile_esc: DevBuf<u8>,
    /// The escape exponents in tile order.
    pub esc_exp: DevBuf<u8>,
}

impl RmmDev {
    fn upload(s: &Arc<CudaStream>, t: &RmmTables) -> Result<Self, GpuError> {
        Ok(RmmDev {
            sm_tiles: upload(s, &t.sm_tiles, "tiled sign-mantissa bytes")?,
            tile_esc: upload(s, &t.tile_esc, "tile escape records")?,
            esc_exp: upload(s, &t.esc_exp, "tile-ordered escape exponents")?,
        })
    }
}

/// A palette-resident weight's device buffers (what the direct-palette rmm reads).
pub struct PaletteDev {
    /// sm bytes in `layout` (`rmm.sm_tiles`), records and escape exponents.
    pub rmm: RmmDev,
    /// Nibbles in `layout`.
    pub nibble_tiles: DevBuf<u8>,
    /// The 16 exponents the nibbles index.
    pub palette: DevBuf<u8>,
    /// Tiled (SS rmm) or fragments (RS rmm), chosen at upload.
    pub layout: BlockLayout,
}

/// A raw weight's bf16 buffer.
pub struct RawDev {
    /// bf16 bits of the encoded matrix (`Wᵀ [k][n_out]` when transposed).
    pub w: DevBuf<u16>,
    /// The same weights in fragment layout for the raw RS twin, when uploaded
    /// ([`DeviceWeights::raw_with`] and [`BlockLayout::Fragments`]).
    pub frags: Option<DevBuf<u16>>,
}

/// The device buffers of one weight, by residency.
pub enum Resident {
    /// Huffman-resident (hard): decoded per call.
    Huffman(Box<HuffmanDev>),
    /// Palette-resident (easy): read by the direct-palette rmm.
    Palette(Box<PaletteDev>),
    /// Plain bf16 (the raw twin and the cuBLAS reference).
    Raw(RawDev),
}

impl Resident {
    /// Whether these buffers feed rmm variants of the form `a_src`: tiled weights the SS form,
    /// fragment-layout palette weights the RS form, raw weights uploaded with fragments both.
    pub fn feeds(&self, a_src: ASource) -> bool {
        match (self, a_src) {
            (Resident::Palette(p), _) => p.layout.a_src() == a_src,
            (Resident::Raw(r), ASource::Regs) => r.frags.is_some(),
            (Resident::Raw(_), ASource::Smem) => true,
            (Resident::Huffman(_), a) => a == ASource::Smem,
        }
    }

    /// The form of the rmm a default plan launches for these buffers.
    pub fn default_a_src(&self) -> ASource {
        match self {
            Resident::Palette(p) => p.layout.a_src(),
            _ => ASource::Smem,
        }
    }

    /// Which residency these buffers are.
    pub fn residency(&self) -> Residency {
        match self {
            Resident::Huffman(_) => Residency::Huffman,
            Resident::Palette(_) => Residency::Palette,
            Resident::Raw(_) => Residency::Raw,
        }
    }
}

/// One weight matrix on the GPU, named for errors and logs.
pub struct DeviceWeights {
    /// The tensor's name in its checkpoint.
    pub name: String,
    /// Its shape and encoded matrix.
    pub geometry: Geometry,
    /// Its device buffers.
    pub resident: Resident,
    dev: Arc<GpuDevice>,
}

impl DeviceWeights {
    /// Huffman-resident: the codec's bitstream, tables and escapes as the `huff_*` kernels read them.
    /// The stream itself is decoded and checked once on the GPU when the weight becomes a
    /// [`Linear`](crate::gpu::linear::Linear) (upload has no kernel launch).
    pub fn huffman(
        dev: &Arc<GpuDevice>,
        name: &str,
        t: &CompressedTensor,
    ) -> Result<Self, GpuError> {
        check_upload(name, t)?;
        let img = HuffmanImage::new(t).map_err(|problem| weights_error(name, problem))?;
        let s = &dev.stream;
        let h = HuffmanDev {
            bits: upload(s, &img.bits, "huffman bits")?,
            chunk_offsets: upload(s, &img.chunk_offsets, "chunk offsets")?,
            tables: upload(s, &img.tables, "decode tables")?,
            tables_m4: upload(s, &img.tables_m4, "decode tables")?,
            palette: upload(s, &img.palette, "palette")?,
            sm: img
                .sm
                .as_ref()
                .map(|sm| upload(s, sm, "sign-mantissa bytes"))
                .transpose()?,
            esc_bitmap: upload(s, &img.esc_bitmap, "escape bitmap")?,
            esc_prefix: upload(s, &img.esc_prefix, "escape prefix")?,
            esc_exp: upload(s, &img.esc_exp, "escape exponents")?,
            chunk_symbols: img.chunk_symbols,
            n_chunks: img.n_chunks,
            stream_bytes: img.stream_bytes,
            stream_bits: img.stream_bits,
            err: upload(s, &[0u32; huff_err::WORDS as usize], "decode error word")?,
            sub_offsets: img
                .sub_count
                .map(|n| upload(s, &vec![0u32; n], "sub-chunk offsets"))
                .transpose()?,
            rmm: img.rmm.as_ref().map(|t| RmmDev::upload(s, t)).transpose()?,
        };
        Self::finish(dev, name, img.geometry, Resident::Huffman(Box::new(h)))
    }

    /// Reads the error word of a Huffman-resident weight on `stream` (synchronizing it; other
    /// residencies: Ok). Nonzero: [`GpuError::CorruptStream`] naming this tensor, its first bad
    /// chunk and the reasons. An engine that decodes per forward may call it at its own sync
    /// points; [`Linear::new`](crate::gpu::linear::Linear::new) already checked the stream.
    pub fn take_decode_error(&self, stream: &Arc<CudaStream>) -> Result<(), GpuError> {
        let Resident::Huffman(h) = &self.resident else {
            return Ok(());
        };
        let word = stream
            .clone_dtoh(h.err.slice())
            .ctx(|| format!("reading the decode error word of {}", self.name))?;
        let (reasons, chunk) = (word[0], word[1]);
        if reasons == 0 {
            return Ok(());
        }
        Err(GpuError::CorruptStream {
            tensor: self.name.clone(),
            chunk: (chunk != 0).then_some(!chunk),
            reason: huff_err::describe(reasons).join("; "),
        })
    }

    /// Palette-resident: sm bytes, nibbles and per-tile escape tables for the direct-palette rmm.
    /// Needs an rmm-compatible shape (n_out % 128 == 0, k % 64 == 0). The blocks are in
    /// [`BlockLayout::Fragments`], which the RS rmm reads: the faster form at decode batches
    /// (M ≤ 64; on the H200, 2026-12-02, 0.97× cuBLAS against the SS form's 1.27× at M = 1). For
    /// prefill-heavy use (M ≥ 128, where the SS form's wide tiles win) upload with
    /// [`palette_with`](Self::palette_with) and [`BlockLayout::Tiled`].
    pub fn palette(
        dev: &Arc<GpuDevice>,
        name: &str,
        t: &CompressedTensor,
    ) -> Result<Self, GpuError> {
        Self::palette_with(dev, name, t, BlockLayout::Fragments)
    }

    /// [`palette`](Self::palette) with the blocks in `layout`: [`BlockLayout::Fragments`] for the
    /// RS rmm (the small-batch kernel; its default plans then pick RS variants).
    pub fn palette_with(
        dev: &Arc<GpuDevice>,
        name: &str,
        t: &CompressedTensor,
        layout: BlockLayout,
    ) -> Result<Self, GpuError> {
        check_upload(name, t)?;
        let img =
            PaletteImage::with_layout(t, layout).map_err(|problem| weights_error(name, problem))?;
        let s = &dev.stream;
        let p = PaletteDev {
            rmm: RmmDev::upload(s, &img.tables)?,
            nibble_tiles: upload(s, &img.nibble_tiles, "palette nibble blocks")?,
            palette: upload(s, &img.palette, "palette")?,
            layout,
        };
        Self::finish(dev, name, img.geometry, Resident::Palette(Box::new(p)))
    }

    /// Raw bf16 weights `W[n_out][k]` (row-major bits), stored in `orientation`
    /// (transposed stores `Wᵀ [k][n_out]`, as the transposed rmm and cuBLAS path read it).
    pub fn raw(
        dev: &Arc<GpuDevice>,
        name: &str,
        w: &[u16],
        n_out: usize,
        k: usize,
        orientation: Orientation,
    ) -> Result<Self, GpuError> {
        Self::raw_with(dev, name, w, n_out, k, orientation, BlockLayout::Tiled)
    }

    /// [`raw`](Self::raw) that also holds fragment blocks where the rmm takes the shape, so it
    /// feeds the raw twin of every compressed plan, SS or RS (the bit-exact references).
    pub fn raw_twin(
        dev: &Arc<GpuDevice>,
        name: &str,
        w: &[u16],
        n_out: usize,
        k: usize,
        orientation: Orientation,
    ) -> Result<Self, GpuError> {
        let layout = if Geometry::raw(n_out, k, orientation).rmm_ok() {
            BlockLayout::Fragments
        } else {
            BlockLayout::Tiled
        };
        Self::raw_with(dev, name, w, n_out, k, orientation, layout)
    }

    /// [`raw`](Self::raw), plus a fragment-layout copy for the raw RS twin when `layout` is
    /// [`BlockLayout::Fragments`] (needs an rmm-eligible shape).
    pub fn raw_with(
        dev: &Arc<GpuDevice>,
        name: &str,
        w: &[u16],
        n_out: usize,
        k: usize,
        orientation: Orientation,
        layout: BlockLayout,
    ) -> Result<Self, GpuError> {
        if w.len() != n_out * k {
            let problem = LayoutError::Length {
                what: "bf16 weights",
                unit: "values",
                have: w.len(),
                need: n_out * k,
            };
            return Err(weights_error(name, problem));
        }
        let geometry = Geometry::raw(n_out, k, orientation);
        let stored = match orientation {
            Orientation::Standard => w.to_vec(),
            Orientation::Transposed => transpose(w, n_out, k),
        };
        let frags = match layout {
            BlockLayout::Tiled => None,
            BlockLayout::Fragments => {
                let f = raw_fragments(w, n_out, k).map_err(|p| weights_error(name, p))?;
                Some(upload(&dev.stream, &f, "bf16 fragment blocks")?)
            }
        };
        let r = RawDev {
            w: upload(&dev.stream, &stored, "bf16 weights")?,
            frags,
        };
        Self::finish(dev, name, geometry, Resident::Raw(r))
    }

    fn finish(
        dev: &Arc<GpuDevice>,
        name: &str,
        geometry: Geometry,
        resident: Resident,
    ) -> Result<Self, GpuError> {
        dev.stream
            .synchronize()
            .ctx(|| format!("uploading {name}"))?;
        Ok(DeviceWeights {
            name: name.to_string(),
            geometry,
            resident,
            dev: dev.clone(),
        })
    }

    /// Makes a Huffman-resident weight palette-resident in `layout`, keeping its escape tables
    /// (both residencies and both block layouts share them) and its sm bytes, and taking
    /// `nibble_tiles`, the tiled palette indices its `huff_palette` decode wrote (`len` bytes), in
    /// place of the Huffman stream, which is freed. [`BlockLayout::Fragments`] (the RS rmm's)
    /// re-lays nibbles and sm bytes on the GPU ([`relayout::to_fragments`]) and frees the tiled
    /// copies: the buffers then equal [`palette`](Self::palette)'s upload byte for byte.
    /// The caller has checked the decode's error word; `palette` is the tensor's palette.
    pub fn into_palette(
        mut self,
        nibble_tiles: CudaSlice<u8>,
        len: usize,
        palette: &[u8; 16],
        layout: BlockLayout,
    ) -> Result<Self, GpuError> {
        let name = self.name.clone();
        let Resident::Huffman(h) = &mut self.resident else {
            return Err(GpuError::Residency {
                pipeline: "the Huffman → palette transcode".into(),
                needs: Residency::Huffman,
                actual: self.resident.residency(),
                tensor: name,
            });
        };
        let mut rmm = h
            .rmm
            .take()
            .ok_or_else(|| weights_error(&name, LayoutError::NoRmmTables))?;
        let dev = self.dev.clone();
        let s = &dev.stream;
        let nibbles = match layout {
            BlockLayout::Tiled => nibble_tiles,
            BlockLayout::Fragments => {
                let g = &self.geometry;
                let sm_len = rmm.sm_tiles.len;
                let sm = relayout::to_fragments(
                    &dev,
                    &name,
                    g,
                    RelayoutElem::Byte,
                    &rmm.sm_tiles.slice,
                    sm_len,
                )?;
                let nib = relayout::to_fragments(
                    &dev,
                    &name,
                    g,
                    RelayoutElem::Nibble,
                    &nibble_tiles,
                    len,
                )?;
                // The tiled copies are freed once the re-layouts that read them have run.
                s.synchronize()
                    .ctx(|| format!("re-laying out the blocks of {name}"))?;
                let ptr = sm.device_ptr(s).0;
                rmm.sm_tiles = DevBuf {
                    slice: sm,
                    ptr,
                    len: sm_len,
                };
                nib
            }
        };
        // Queued decodes still read the Huffman buffers dropped below.
        s.synchronize()
            .ctx(|| format!("finishing the transcode of {name}"))?;
        let ptr = nibbles.device_ptr(s).0;
        self.resident = Resident::Palette(Box::new(PaletteDev {
            rmm,
            nibble_tiles: DevBuf {
                slice: nibbles,
                ptr,
                len,
            },
            palette: upload(s, palette, "palette")?,
            layout,
        }));
        s.synchronize().ctx(|| format!("uploading {name}"))?;
        Ok(self)
    }

    /// The GPU the weight lives on.
    pub fn device(&self) -> &Arc<GpuDevice> {
        &self.dev
    }

    /// Device bytes a call reads from HBM for this weight (Huffman: the decode's inputs; the
    /// tiled sm copy the rmm also reads is not counted).
    pub fn resident_bytes(&self) -> usize {
        match &self.resident {
            Resident::Huffman(h) => {
                h.bits.bytes()
                    + h.chunk_offsets.bytes()
                    + h.sub_offsets.as_ref().map_or(0, DevBuf::bytes)
                    + h.tables.bytes()
                    + h.tables_m4.bytes()
                    + 16
                    + h.sm_bytes()
                    + h.esc_bitmap.bytes()
                    + h.esc_prefix.bytes()
                    + h.esc_exp.bytes()
            }
            Resident::Palette(p) => {
                p.rmm.sm_tiles.bytes()
                    + p.nibble_tiles.bytes()
                    + p.rmm.tile_esc.bytes()
                    + p.rmm.esc_exp.bytes()
                    + 16
            }
            Resident::Raw(r) => r.w.bytes(),
        }
    }
}

impl Drop for DeviceWeights {
    fn drop(&mut self) {
        // Kernels read these buffers through raw addresses, outside cudarc's event tracking:
        // wait for queued work before the buffers are freed.
        let _ = self.dev.ctx.synchronize();
    }
}

/// What every upload of a [`CompressedTensor`] checks first: its stored-components checksum.
/// The GPU decoders cannot check the original's hash, so a component altered after
/// compression is caught here or not at all.
pub fn check_upload(name: &str, t: &CompressedTensor) -> Result<(), GpuError> {
    t.check_checksum().map_err(|source| GpuError::Checksum {
        tensor: name.to_string(),
        source,
    })
}

/// Row-major `[rows][cols]` → `[cols][rows]`, in 64×64 blocks so both sides stay in cache
/// (a Llama MLP matrix is 58.7 M elements).
pub fn transpose<T: Copy + Default>(src: &[T], rows: usize, cols: usize) -> Vec<T> {
    const B: usize = 64;
    let mut out = vec![T::default(); src.len()];
    for r0 in (0..rows).step_by(B) {
        for c0 in (0..cols).step_by(B) {
            for r in r0..(r0 + B).min(rows) {
                for c in c0..(c0 + B).min(cols) {
                    out[c * rows + r] = src[r * cols + c];
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{compress, Encoding, Indices};

    type Edit = (&'static str, fn(&mut CompressedTensor));

    /// The check every upload runs first: a component byte changed after compression (sm,
    /// index stream, escape exponents) is refused with an error naming the tensor.
    #[test]
    fn upload_check_refuses_a_changed_component() {
        let bits: Vec<u16> = (0..128 * 192u32)
            .map(|i| {
                let e = if i % 301 == 0 {
                    160 + (i / 301) % 40
                } else {
                    120 + ((i * 7919) >> 5) % 9
                };
                ((e as u16) << 7) | (i as u16 & 0x807F)
            })
            .collect();
        for e in [Encoding::Huffman, Encoding::Palette] {
            let good = compress(&bits, &[128, 192], Orientation::Standard, e).unwrap();
            check_upload("w", &good).unwrap();
            assert!(good.escape_count() > 0, "{e}");
            let edits: [Edit; 3] = [
                ("sm", |t| t.sm[7] ^= 0x80),
                ("idx", |t| match &mut t.indices {
                    Indices::Huffman(h) => h.bits[3] ^= 1,
                    Indices::Palette(v) | Indices::Exponent(v) => v[3] ^= 1,
                }),
                ("esc_exp", |t| t.escapes.exponents[1] ^= 1),
            ];
            for (what, edit) in edits {
                let mut bad = good.clone();
                edit(&mut bad);
                let err = check_upload("layers.0.w", &bad).unwrap_err();
                let msg = err.to_string();
                assert!(
                    matches!(&err, GpuError::Checksum { tensor, .. } if tensor == "layers.0.w"),
                    "{e} {what}: {msg}"
                );
                assert!(msg.contains("layers.0.w"), "{msg}");
                assert!(msg.contains("stored-components checksum mismatch"), "{msg}");
            }
        }
    }

    #[test]
    fn transpose_is_exact_on_ragged_blocks() {
        for (r, c) in [(1, 1), (3, 200), (130, 70), (64, 64)] {
            let src: Vec<u32> = (0..(r * c) as u32).collect();
            let t = transpose(&src, r, c);
            for i in 0..r {
                for j in 0..c {
                    assert_eq!(t[j * r + i], src[i * c + j]);
                }
            }
            assert_eq!(transpose(&t, c, r), src);
        }
    }
}
