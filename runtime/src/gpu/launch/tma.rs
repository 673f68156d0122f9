//! TMA tensor maps for the rmm kernels (x, and raw weights; docs/CONTRACT.md), checked on the
//! host before the driver sees them so a bad shape or pointer fails with a sentence, not
//! `CUDA_ERROR_INVALID_VALUE`.

use cudarc::driver::sys::{
    self, CUtensorMapDataType, CUtensorMapFloatOOBfill, CUtensorMapInterleave,
    CUtensorMapL2promotion, CUtensorMapSwizzle,
};
use cudarc::driver::DeviceRepr;
use unweight_codegen::abi::{BK, BM};

use crate::gpu::error::GpuError;

/// A driver-encoded tensor map, passed to kernels by value (`const __grid_constant__ TmaDesc`).
#[repr(transparent)]
#[derive(Clone, Copy)]
pub struct TmaDesc(pub sys::CUtensorMap);

// SAFETY: a plain 128-byte POD the driver copies into the kernel's parameter space; the kernel
// declares a 128-byte struct aligned to 64, which the 128-aligned host object satisfies.
unsafe impl DeviceRepr for TmaDesc {}

impl std::fmt::Debug for TmaDesc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TmaDesc(..)")
    }
}

/// Element type of a tensor map (the driver's data type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElemType {
    Bf16,
    U8,
}

impl ElemType {
    pub fn bytes(self) -> u64 {
        match self {
            ElemType::Bf16 => 2,
            ElemType::U8 => 1,
        }
    }
}

/// Shared-memory swizzle of a tensor map's box.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Swizzle {
    None,
    /// 128-byte swizzle: the inner box extent must be at most 128 bytes.
    B128,
}

/// A 2-D tiled tensor map before encoding: dimension 0 is the contiguous one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapSpec {
    /// What the map describes (for errors), e.g. "x", "sm", "nibbles".
    pub what: &'static str,
    pub elem: ElemType,
    /// `{inner, outer}` extents in elements.
    pub dims: [u64; 2],
    /// Bytes from one outer index to the next.
    pub row_stride: u64,
    /// `{inner, outer}` box in elements.
    pub box_dims: [u32; 2],
    pub swizzle: Swizzle,
}

impl MapSpec {
    /// The bytes the described tensor spans in memory.
    pub fn span_bytes(&self) -> u64 {
        if self.dims[1] == 0 {
            return 0;
        }
        (self.dims[1] - 1) * self.row_stride + self.dims[0] * self.elem.bytes()
    }

    /// Checks the driver's rules (HOPPER_NOTES §3.1) and that the tensor lies inside a buffer of
    /// `buffer_bytes` starting at `addr`.
    pub fn validate(&self, addr: u64, buffer_bytes: u64) -> Result<(), GpuError> {
        let err = |reason: String| {
            Err(GpuError::TensorMap {
                what: self.what.to_string(),
                reason,
            })
        };
        if addr == 0 {
            return err("null device address".into());
        }
        if addr % 16 != 0 {
            return err(format!("address {addr:#x} is not 16-byte aligned"));
        }
        for (i, &d) in self.dims.iter().enumerate() {
            if d == 0 || d > 1 << 32 {
                return err(format!("dimension {i} = {d} is outside [1, 2^32]"));
            }
        }
        if self.row_stride % 16 != 0 {
            return err(format!(
                "row stride {} bytes is not a multiple of 16",
                self.row_stride
            ));
        }
        if self.row_stride >= 1 << 40 {
            return err(format!(
                "row stride {} bytes is not below 2^40",
                self.row_stride
            ));
        }
        if self.row_stride < self.dims[0] * self.elem.bytes() {
            return err(format!(
                "row stride {} bytes is shorter than a row of {} elements",
                self.row_stride, self.dims[0]
            ));
        }
        for (i, &b) in self.box_dims.iter().enumerate() {
            if b == 0 || b > 256 {
                return err(format!("box dimension {i} = {b} is outside [1, 256]"));
            }
        }
        let inner = self.box_dims[0] as u64 * self.elem.bytes();
        if inner % 16 != 0 {
            return err(format!(
                "inner box extent {inner} bytes is not a multiple of 16"
            ));
        }
        if self.swizzle == Swizzle::B128 && inner > 128 {
            return err(format!(
                "inner box extent {inner} bytes exceeds the 128-byte swizzle span"
            ));
        }
        if self.span_bytes() > buffer_bytes {
            return err(format!(
                "tensor spans {} bytes but the buffer holds {buffer_bytes}",
                self.span_bytes()
            ));
        }
        Ok(())
    }

    /// Validates, then encodes with the contract's fixed settings (INTERLEAVE_NONE,
    /// L2_PROMOTION_128B, OOB_FILL_NONE, element strides 1).
    pub fn encode(&self, addr: u64, buffer_bytes: u64) -> Result<TmaDesc, GpuError> {
        self.validate(addr, buffer_bytes)?;
        let dtype = match self.elem {
            ElemType::Bf16 => CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
            ElemType::U8 => CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_UINT8,
        };
        let swizzle = match self.swizzle {
            Swizzle::None => CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_NONE,
            Swizzle::B128 => CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_128B,
        };
        let strides = [self.row_stride];
        let elem_strides = [1u32, 1];
        let mut map = std::mem::MaybeUninit::<sys::CUtensorMap>::zeroed();
        // SAFETY: every pointer refers to a live local array of the length rank (2) or rank-1
        // requires; `map` is a properly aligned CUtensorMap the driver fills.
        let res = unsafe {
            sys::cuTensorMapEncodeTiled(
                map.as_mut_ptr(),
                dtype,
                2,
                addr as *mut std::ffi::c_void,
                self.dims.as_ptr(),
                strides.as_ptr(),
                self.box_dims.as_ptr(),
                elem_strides.as_ptr(),
                CUtensorMapInterleave::CU_TENSOR_MAP_INTERLEAVE_NONE,
                swizzle,
                CUtensorMapL2promotion::CU_TENSOR_MAP_L2_PROMOTION_L2_128B,
                CUtensorMapFloatOOBfill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
            )
        };
        res.result().map_err(|source| GpuError::Driver {
            context: format!("cuTensorMapEncodeTiled for {} ({self:?})", self.what),
            source,
        })?;
        // SAFETY: the driver wrote the whole map on success (and it was zeroed before).
        Ok(TmaDesc(unsafe { map.assume_init() }))
    }
}

/// `tm_x`: activations bf16 `[m][k]`, dims `{k, m}`, box `{64, tile_n}`, 128-byte swizzle.
pub fn x_map(k: usize, m: usize, tile_n: u32) -> MapSpec {
    MapSpec {
        what: "x",
        elem: ElemType::Bf16,
        dims: [k as u64, m as u64],
        row_stride: k as u64 * 2,
        box_dims: [BK, tile_n],
        swizzle: Swizzle::B128,
    }
}

/// `tm_w` of a raw rmm: W bf16 `[n_out][k]` (dims `{k, n_out}`, box `{64, 128}`) or, transposed,
/// Wᵀ `[k][n_out]` (dims `{n_out, k}`, box `{64, 64}`), 128-byte swizzle. Exponent and palette
/// variants read tiled byte arrays by bulk copy instead and get `tm_x` again in this slot.
pub fn raw_weight_map(transpose: bool, n_out: usize, k: usize) -> MapSpec {
    let (n, k64) = (n_out as u64, k as u64);
    let (cols, rows) = if transpose { (n, k64) } else { (k64, n) };
    MapSpec {
        what: "bf16 weights",
        elem: ElemType::Bf16,
        dims: [cols, rows],
        row_stride: cols * 2,
        // Transposed: one box per consumer warpgroup (half of the tile's rows).
        box_dims: if transpose { [BM / 2, BK] } else { [BK, BM] },
        swizzle: Swizzle::B128,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BIG: u64 = 1 << 40;

    #[test]
    fn contract_table_rows() {
        let w = raw_weight_map(false, 256, 128);
        assert_eq!(
            (w.elem, w.dims, w.row_stride, w.box_dims, w.swizzle),
            (ElemType::Bf16, [128, 256], 256, [64, 128], Swizzle::B128)
        );
        let w = raw_weight_map(true, 256, 128);
        assert_eq!(
            (w.dims, w.row_stride, w.box_dims),
            ([256, 128], 512, [64, 64])
        );
        let x = x_map(4096, 7, 8);
        assert_eq!(
            (x.dims, x.row_stride, x.box_dims, x.swizzle),
            ([4096, 7], 8192, [64, 8], Swizzle::B128)
        );
    }

    #[test]
    fn every_map_is_valid_for_rmm_shapes() {
        for t in [false, true] {
            for (n, k) in [(128, 64), (14336, 4096), (4096, 14336), (384, 1536)] {
                raw_weight_map(t, n, k)
                    .validate(0x1000, BIG)
                    .unwrap_or_else(|e| panic!("t={t} {n}x{k}: {e}"));
            }
        }
        for tile_n in [8, 16, 32, 64, 128, 256] {
            x_map(64, 1, tile_n).validate(0x1000, BIG).unwrap();
        }
    }

    #[test]
    fn rejects_with_reasons() {
        let x = x_map(4096, 7, 8);
        let msg = |s: &MapSpec, a: u64, b: u64| s.validate(a, b).unwrap_err().to_string();
        assert!(msg(&x, 0x1008, BIG).contains("not 16-byte aligned"));
        assert!(msg(&x, 0, BIG).contains("null"));
        assert!(msg(&x_map(4100, 7, 8), 0x1000, BIG).contains("not a multiple of 16"));
        assert!(msg(&x_map(4096, 7, 512), 0x1000, BIG).contains("outside [1, 256]"));
        assert!(msg(&x_map(4096, 0, 8), 0x1000, BIG).contains("dimension 1 = 0"));
        assert!(msg(&x, 0x1000, 100).contains("buffer holds 100"));
        let wide = MapSpec {
            box_dims: [128, 8],
            ..x.clone()
        };
        assert!(msg(&wide, 0x1000, BIG).contains("128-byte swizzle span"));
        let odd = MapSpec {
            elem: ElemType::U8,
            box_dims: [24, 8],
            swizzle: Swizzle::None,
            ..x
        };
        assert!(msg(&odd, 0x1000, BIG).contains("inner box extent 24 bytes"));
    }

    #[test]
    fn span_is_exact() {
        let x = x_map(64, 3, 8);
        assert_eq!(x.span_bytes(), 3 * 128);
        x.validate(0x1000, 384).unwrap();
        assert!(x.validate(0x1000, 383).is_err());
    }
}
