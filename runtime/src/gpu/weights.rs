//! Device-resident weights: Huffman-resident (preprocessed per call), palette-resident (read by
//! the direct-palette rmm) or raw bf16 (the raw rmm and the cuBLAS reference).

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut, DeviceRepr};
use unweight_codegen::space::huff_err;
use unweight_codegen::variant::HuffOutput;

use crate::codec::{CompressedTensor, Orientation};

use super::device::GpuDevice;
use super::error::{DriverContext, GpuError};
use super::host::{Geometry, HuffmanImage, PaletteImage, RmmTables};
use super::launch::{self, HuffArgs, HuffLayout};
use super::pipelines;

/// A device buffer and its address, taken once at upload (weights never move).
pub struct DevBuf<T> {
    slice: CudaSlice<T>,
    pub ptr: u64,
    /// Elements the caller asked for (the allocation may hold a few more: never zero-sized).
    pub len: usize,
}

impl<T> DevBuf<T> {
    pub fn bytes(&self) -> usize {
        self.len * std::mem::size_of::<T>()
    }
    pub fn slice(&self) -> &CudaSlice<T> {
        &self.slice
    }
}

fn upload<T: DeviceRepr + Copy + Default>(stream: &Arc<CudaStream>, data: &[T], what: &str) -> Result<DevBuf<T>, GpuError> {
    // An empty table (no escapes) still gets a small buffer so its address is valid and aligned.
    let padded;
    let src = if data.is_empty() {
        padded = vec![T::default(); 16];
        &padded[..]
    } else {
        data
    };
    let slice = stream.clone_htod(src).ctx(|| format!("uploading {what} ({} elements)", src.len()))?;
    let ptr = slice.device_ptr(stream).0;
    Ok(DevBuf { slice, ptr, len: data.len() })
}

pub struct HuffmanDev {
    pub bits: DevBuf<u8>,
    pub chunk_offsets: DevBuf<u32>,
    pub lut: DevBuf<u16>,
    pub palette: DevBuf<u8>,
    /// Row-major sm bytes, only when the rmm does not take the shape (else `rmm.sm_tiles`).
    pub sm: Option<DevBuf<u8>>,
    pub esc_bitmap: DevBuf<u64>,
    pub esc_prefix: DevBuf<u32>,
    pub esc_exp: DevBuf<u8>,
    pub chunk_symbols: u32,
    pub n_chunks: u32,
    pub stream_bytes: u64,
    pub stream_bits: u64,
    /// This weight's decode error word (2 × u32, zero at upload; `huff_err`): every decode of it
    /// ORs in what it refused, so reading it names this tensor. Sticky: the stream never changes.
    pub err: DevBuf<u32>,
    /// Tiled sm and per-tile escape tables for the exponent / palette-transcode rmm (present
    /// when the rmm takes the shape); `huff_bf16` then reads this sm copy too.
    pub rmm: Option<RmmDev>,
}

impl HuffmanDev {
    /// The sm bytes `huff_bf16` reads and their layout (its `layout` argument).
    pub fn sm_input(&self, orientation: Orientation) -> Result<(u64, HuffLayout), GpuError> {
        match (&self.sm, &self.rmm, orientation) {
            (Some(sm), _, _) => Ok((sm.ptr, HuffLayout::RowMajor)),
            (None, Some(r), Orientation::Standard) => Ok((r.sm_tiles.ptr, HuffLayout::TiledStandard)),
            (None, Some(r), Orientation::Transposed) => Ok((r.sm_tiles.ptr, HuffLayout::TiledTransposed)),
            (None, None, _) => Err(GpuError::Weights { tensor: String::new(), reason: "no sign-mantissa bytes uploaded".into() }),
        }
    }

    /// Arguments of `huff_<output>` for this weight, writing `out` with `layout` (ignored by
    /// `huff_bf16`, which reads the sm copy in its layout) on `ctas` blocks (0: the natural grid).
    pub fn launch_args(&self, g: &Geometry, output: HuffOutput, layout: HuffLayout, out: u64, ctas: u32) -> Result<HuffArgs, GpuError> {
        let (sm, sm_layout) = self.sm_input(g.orientation)?;
        Ok(HuffArgs {
            bits: self.bits.ptr,
            chunk_offsets: self.chunk_offsets.ptr,
            lut: self.lut.ptr,
            palette: self.palette.ptr,
            sm,
            esc_bitmap: self.esc_bitmap.ptr,
            esc_prefix: self.esc_prefix.ptr,
            esc_exp: self.esc_exp.ptr,
            out,
            rows: g.rows as u64,
            cols: g.cols as u64,
            padded_cols: g.padded_cols as u64,
            chunk_symbols: self.chunk_symbols,
            n_chunks: self.n_chunks,
            layout: if output == HuffOutput::Bf16 { sm_layout } else { layout },
            stream_bits: self.stream_bits,
            stream_bytes: self.stream_bytes,
            esc_groups: (self.esc_exp.len / 64) as u32,
            err: self.err.ptr,
            ctas,
        })
    }

    /// Bytes of the sm copy.
    fn sm_bytes(&self) -> usize {
        self.sm.as_ref().or(self.rmm.as_ref().map(|r| &r.sm_tiles)).map_or(0, DevBuf::bytes)
    }
}

/// The rmm's tiled sm bytes, `tile_esc` records and tile-ordered escape exponents.
pub struct RmmDev {
    pub sm_tiles: DevBuf<u8>,
    pub tile_esc: DevBuf<u8>,
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

pub struct PaletteDev {
    pub rmm: RmmDev,
    pub nibble_tiles: DevBuf<u8>,
    pub palette: DevBuf<u8>,
}

pub struct RawDev {
    /// bf16 bits of the encoded matrix (`Wᵀ [k][n_out]` when transposed).
    pub w: DevBuf<u16>,
}

pub enum Resident {
    Huffman(Box<HuffmanDev>),
    Palette(Box<PaletteDev>),
    Raw(RawDev),
}

impl Resident {
    pub fn kind(&self) -> &'static str {
        match self {
            Resident::Huffman(_) => "huffman",
            Resident::Palette(_) => "palette",
            Resident::Raw(_) => "raw",
        }
    }
}

/// One weight matrix on the GPU.
pub struct DeviceWeights {
    pub name: String,
    pub geometry: Geometry,
    pub resident: Resident,
    dev: Arc<GpuDevice>,
}

impl DeviceWeights {
    /// Huffman-resident: the codec's bitstream, tables and escapes as the `huff_*` kernels read them.
    pub fn huffman(dev: &Arc<GpuDevice>, name: &str, t: &CompressedTensor) -> Result<Self, GpuError> {
        let img = HuffmanImage::new(t).map_err(|e| rename(e, name))?;
        let s = &dev.stream;
        let h = HuffmanDev {
            bits: upload(s, &img.bits, "huffman bits")?,
            chunk_offsets: upload(s, &img.chunk_offsets, "chunk offsets")?,
            lut: upload(s, &img.lut, "decode table")?,
            palette: upload(s, &img.palette, "palette")?,
            sm: img.sm.as_ref().map(|sm| upload(s, sm, "sign-mantissa bytes")).transpose()?,
            esc_bitmap: upload(s, &img.esc_bitmap, "escape bitmap")?,
            esc_prefix: upload(s, &img.esc_prefix, "escape prefix")?,
            esc_exp: upload(s, &img.esc_exp, "escape exponents")?,
            chunk_symbols: img.chunk_symbols,
            n_chunks: img.n_chunks,
            stream_bytes: img.stream_bytes,
            stream_bits: img.stream_bits,
            err: upload(s, &[0u32; 2], "decode error word")?,
            rmm: img.rmm.as_ref().map(|t| RmmDev::upload(s, t)).transpose()?,
        };
        let w = Self::finish(dev, name, img.geometry, Resident::Huffman(Box::new(h)))?;
        w.check_stream()?;
        Ok(w)
    }

    /// Decodes the stream once on the GPU (`huff_palette`, the cheapest output, into a temporary
    /// buffer) and reads the error word: a stream the decoder refuses never becomes a resident
    /// weight, so the per-call decodes of `Linear::forward` need no synchronizing check.
    fn check_stream(&self) -> Result<(), GpuError> {
        let Resident::Huffman(h) = &self.resident else { return Ok(()) };
        if h.n_chunks == 0 {
            return Ok(()); // nothing to decode (and no grid to launch)
        }
        let s = &self.dev.stream;
        let kernel = self.dev.kernels.get_entry(pipelines::huff_entry(HuffOutput::Palette)?)?;
        let bytes = self.geometry.scratch_bytes().2;
        let mut out = s.alloc_zeros::<u8>(bytes.max(16)).ctx(|| format!("allocating {bytes} bytes to check {}", self.name))?;
        {
            let (p, _write) = out.device_ptr_mut(s);
            let args = h.launch_args(&self.geometry, HuffOutput::Palette, HuffLayout::RowMajor, p, 0).map_err(|e| rename(e, &self.name))?;
            // SAFETY: every buffer is this weight's upload, `out` holds the palette output of its shape.
            unsafe { launch::huff(s, &kernel, &args)? };
        }
        self.take_decode_error(s)
    }

    /// Reads the error word of a Huffman-resident weight on `stream` (synchronizing it; other
    /// residencies: Ok). Nonzero: [`GpuError::CorruptStream`] naming this tensor, its first bad
    /// chunk and the reasons. An engine that decodes per forward may call it at its own sync
    /// points; upload already checked the stream.
    pub fn take_decode_error(&self, stream: &Arc<CudaStream>) -> Result<(), GpuError> {
        let Resident::Huffman(h) = &self.resident else { return Ok(()) };
        let word = stream.clone_dtoh(h.err.slice()).ctx(|| format!("reading the decode error word of {}", self.name))?;
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
    /// Needs an rmm-compatible shape (n_out % 128 == 0, k % 64 == 0).
    pub fn palette(dev: &Arc<GpuDevice>, name: &str, t: &CompressedTensor) -> Result<Self, GpuError> {
        let img = PaletteImage::new(t).map_err(|e| rename(e, name))?;
        let s = &dev.stream;
        let p = PaletteDev {
            rmm: RmmDev::upload(s, &img.tables)?,
            nibble_tiles: upload(s, &img.nibble_tiles, "tiled palette nibbles")?,
            palette: upload(s, &img.palette, "palette")?,
        };
        Self::finish(dev, name, img.geometry, Resident::Palette(Box::new(p)))
    }

    /// Raw bf16 weights `W[n_out][k]` (row-major bits), stored in `orientation`
    /// (transposed stores `Wᵀ [k][n_out]`, as the transposed rmm and cuBLAS path read it).
    pub fn raw(dev: &Arc<GpuDevice>, name: &str, w: &[u16], n_out: usize, k: usize, orientation: Orientation) -> Result<Self, GpuError> {
        if w.len() != n_out * k {
            return Err(GpuError::Weights { tensor: name.to_string(), reason: format!("{} values for {n_out}x{k}", w.len()) });
        }
        let geometry = Geometry::raw(n_out, k, orientation);
        let stored = match orientation {
            Orientation::Standard => w.to_vec(),
            Orientation::Transposed => transpose(w, n_out, k),
        };
        let r = RawDev { w: upload(&dev.stream, &stored, "bf16 weights")? };
        Self::finish(dev, name, geometry, Resident::Raw(r))
    }

    fn finish(dev: &Arc<GpuDevice>, name: &str, geometry: Geometry, resident: Resident) -> Result<Self, GpuError> {
        dev.stream.synchronize().ctx(|| format!("uploading {name}"))?;
        Ok(DeviceWeights { name: name.to_string(), geometry, resident, dev: dev.clone() })
    }

    pub fn device(&self) -> &Arc<GpuDevice> {
        &self.dev
    }

    /// Device bytes a call reads from HBM for this weight (Huffman: the decode's inputs; the
    /// tiled sm copy the rmm also reads is not counted).
    pub fn resident_bytes(&self) -> usize {
        match &self.resident {
            Resident::Huffman(h) => {
                h.bits.bytes() + h.chunk_offsets.bytes() + h.lut.bytes() + 16 + h.sm_bytes()
                    + h.esc_bitmap.bytes() + h.esc_prefix.bytes() + h.esc_exp.bytes()
            }
            Resident::Palette(p) => {
                p.rmm.sm_tiles.bytes() + p.nibble_tiles.bytes() + p.rmm.tile_esc.bytes() + p.rmm.esc_exp.bytes() + 16
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

/// Names the tensor in a weights error raised before the name was known.
pub(super) fn rename(e: GpuError, name: &str) -> GpuError {
    match e {
        GpuError::Weights { reason, .. } => GpuError::Weights { tensor: name.to_string(), reason },
        other => other,
    }
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
