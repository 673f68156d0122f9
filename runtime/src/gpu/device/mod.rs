//! The runtime object of one GPU: context, kernel cache, cuBLAS handle and preprocess scratch.

pub mod cublas;
pub mod scratch;

use std::sync::Arc;

use cudarc::driver::sys::CUdevice_attribute;
use cudarc::driver::{CudaContext, CudaStream};

use crate::gpu::device::cublas::Blas;
use crate::gpu::device::scratch::ScratchPool;
use crate::gpu::error::{DriverContext, GpuError};
use crate::gpu::jit::disk;
use crate::gpu::jit::KernelCache;

/// What the runtime knows about its GPU (bench results and tuning tables record it).
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    pub ordinal: usize,
    pub name: String,
    pub sm_count: u32,
    pub major: i32,
    pub minor: i32,
    pub total_mem: usize,
}

/// One GPU as the runtime uses it: its context, an upload stream, the loaded kernels, the
/// preprocess scratch, a cuBLAS handle and what it is ([`DeviceInfo`]). Shared as `Arc`.
pub struct GpuDevice {
    pub ctx: Arc<CudaContext>,
    /// The runtime's own stream for uploads (callers launch on theirs).
    pub stream: Arc<CudaStream>,
    pub kernels: KernelCache,
    pub scratch: ScratchPool,
    pub blas: Blas,
    pub info: DeviceInfo,
}

/// Whether the CUDA driver library can be loaded at all (false on GPU-less machines).
pub fn driver_present() -> bool {
    // SAFETY: only probes whether the shared library can be opened.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

impl GpuDevice {
    /// Opens GPU `ordinal` (its primary context) and checks that it is sm_90.
    pub fn new(ordinal: usize) -> Result<Arc<Self>, GpuError> {
        if !driver_present() {
            return Err(GpuError::LibraryMissing {
                library: "libcuda (the NVIDIA driver)",
                detail: "no GPU driver on this machine",
            });
        }
        let ctx = CudaContext::new(ordinal).ctx(|| format!("opening GPU {ordinal}"))?;
        Self::from_context(ctx)
    }

    /// Uses a context the caller (an inference engine) already owns.
    pub fn from_context(ctx: Arc<CudaContext>) -> Result<Arc<Self>, GpuError> {
        let name = ctx.name().ctx(|| "reading the device name".into())?;
        let (major, minor) = ctx
            .compute_capability()
            .ctx(|| "reading the compute capability".into())?;
        if major != 9 {
            return Err(GpuError::NotHopper {
                device: name,
                major,
                minor,
            });
        }
        let sm_count = ctx
            .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .ctx(|| "reading the SM count".into())? as u32;
        let total_mem = ctx.total_mem().ctx(|| "reading the memory size".into())?;
        let info = DeviceInfo {
            ordinal: ctx.ordinal(),
            name,
            sm_count,
            major,
            minor,
            total_mem,
        };
        let stream = ctx
            .new_stream()
            .ctx(|| "creating the runtime stream".into())?;
        let blas = Blas::new(stream.clone())?;
        let scratch = ScratchPool::new(&ctx)?;
        let kernels = KernelCache::new(ctx.clone(), disk::default_cache_dir());
        Ok(Arc::new(GpuDevice {
            ctx,
            stream,
            kernels,
            scratch,
            blas,
            info,
        }))
    }
}
