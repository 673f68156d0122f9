//! Tiled rmm blocks → fragment blocks on the GPU (`relayout_nibble` / `relayout_byte`, from
//! templates/relayout.cu.tera). A weight transcoded from Huffman at load has its nibbles in the
//! tiled layout (`huff_palette` writes what the SS rmm and the palette-transcode pipeline read)
//! and its sm bytes tiled (a Huffman upload keeps them so for the SS rmm and `huff_bf16`); the RS
//! rmm, the faster kernel at decode batches, reads both in fragment order. The result equals what
//! [`DeviceWeights::palette`](crate::gpu::weights::DeviceWeights::palette) builds on the host
//! (`layout::fragments`) byte for byte; the escape tables need no change (they do not depend on the
//! block order). Load time only, so one launch per component.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut};
use unweight_codegen::variant::{RelayoutElem, RelayoutVariant, Variant};

use crate::codec::Orientation;
use crate::gpu::device::GpuDevice;
use crate::gpu::error::{weights_error, DriverContext, GpuError};
use crate::gpu::jit::registry;
use crate::gpu::launch::{self, RelayoutArgs};
use crate::gpu::layout::{Geometry, LayoutError};

/// Enqueues the re-layout of `tiled` (the first `bytes` bytes: `elem`'s component of the weight
/// `name` of geometry `g`, in tiled blocks) into a new buffer of fragment blocks, on the device's
/// upload stream. `tiled` must stay alive until that stream has run it.
pub fn to_fragments(
    dev: &Arc<GpuDevice>,
    name: &str,
    g: &Geometry,
    elem: RelayoutElem,
    tiled: &CudaSlice<u8>,
    bytes: usize,
) -> Result<CudaSlice<u8>, GpuError> {
    if !g.rmm_ok() {
        let problem = LayoutError::Untileable {
            n_out: g.n_out,
            k: g.k,
        };
        return Err(weights_error(name, problem));
    }
    let need = g.n_out * g.k * elem.bits() as usize / 8;
    if bytes != need || tiled.len() < bytes {
        let problem = LayoutError::Length {
            what: match elem {
                RelayoutElem::Nibble => "tiled palette nibbles",
                RelayoutElem::Byte => "tiled sign-mantissa bytes",
            },
            unit: "bytes",
            have: bytes.min(tiled.len()),
            need,
        };
        return Err(weights_error(name, problem));
    }
    let v = Variant::Relayout(RelayoutVariant { elem });
    let entry = registry::entry(&v).ok_or_else(|| GpuError::UnknownVariant {
        name: v.to_string(),
    })?;
    let kernel = dev.kernels.get_entry(entry)?;
    let s = &dev.stream;
    let mut frags = s
        .alloc_zeros::<u8>(bytes)
        .ctx(|| format!("allocating the fragment blocks of {name} ({bytes} bytes)"))?;
    {
        let (src, _read) = tiled.device_ptr(s);
        let (dst, _write) = frags.device_ptr_mut(s);
        let args = RelayoutArgs {
            tiled: src,
            frags: dst,
            bytes: bytes as u64,
            transposed: g.orientation == Orientation::Transposed,
        };
        // SAFETY: both buffers hold `bytes` bytes (checked above; `frags` was just allocated, so
        // they do not overlap) and are cudarc allocations (256-byte aligned); the guards record the
        // use on this stream for cudarc's tracking.
        unsafe { launch::relayout(s, &kernel, &args) }?;
    }
    Ok(frags)
}
