//! Per-device kernel cache: a variant is compiled (or found on disk) on its first launch, loaded
//! into the context, its dynamic shared-memory limit raised, and kept in memory by name.
//!
//! The in-memory map is checked under the read lock, then again under the write lock, so two
//! threads asking for the same variant at once compile and load it once (FlashInfer's
//! `build_and_load`, not candle's read-then-write `get_or_load_func`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use cudarc::driver::sys::CUfunction_attribute;
use cudarc::driver::{CudaContext, CudaFunction};
use cudarc::nvrtc::Ptx;
use unweight_codegen::variant::RegistryEntry;

use super::cache::{self, CacheOutcome};
use super::error::GpuError;
use crate::kernels;

/// A loaded variant: its registry entry and the function handle to launch.
#[derive(Clone, Debug)]
pub struct Kernel {
    pub entry: &'static RegistryEntry,
    pub function: CudaFunction,
    /// How this process got the CUBIN (for logs and tests).
    pub outcome: CacheOutcome,
}

/// Kernels loaded into one context, by variant name.
pub struct KernelCache {
    ctx: Arc<CudaContext>,
    dir: PathBuf,
    loaded: RwLock<HashMap<&'static str, Kernel>>,
}

impl KernelCache {
    pub fn new(ctx: Arc<CudaContext>, dir: PathBuf) -> Self {
        KernelCache { ctx, dir, loaded: RwLock::new(HashMap::new()) }
    }

    pub fn cache_dir(&self) -> &Path {
        &self.dir
    }

    /// The kernel named `name` (a registry variant name), loading it on first use.
    pub fn get(&self, name: &str) -> Result<Kernel, GpuError> {
        let entry = kernels::find(name).ok_or_else(|| GpuError::UnknownVariant { name: name.to_string() })?;
        self.get_entry(entry)
    }

    /// The kernel of `entry`, loading it on first use.
    pub fn get_entry(&self, entry: &'static RegistryEntry) -> Result<Kernel, GpuError> {
        if let Some(k) = self.loaded.read().unwrap_or_else(|e| e.into_inner()).get(entry.name) {
            return Ok(k.clone());
        }
        let mut map = self.loaded.write().unwrap_or_else(|e| e.into_inner());
        // Second check: another thread may have loaded it between the two locks.
        if let Some(k) = map.get(entry.name) {
            return Ok(k.clone());
        }
        let kernel = self.load(entry)?;
        map.insert(entry.name, kernel.clone());
        Ok(kernel)
    }

    /// Compiles (or finds on disk) every entry in parallel without loading, so a later
    /// `get_entry` only reads the disk cache. NVRTC compiles are independent programs.
    pub fn precompile(&self, entries: &[&'static RegistryEntry]) -> Result<(), GpuError> {
        use rayon::prelude::*;
        entries.par_iter().try_for_each(|e| cache::compile_cached(e, &self.dir).map(|_| ()))
    }

    fn load(&self, entry: &'static RegistryEntry) -> Result<Kernel, GpuError> {
        let (cubin, outcome) = cache::compile_cached(entry, &self.dir)?;
        let load_err = |source| GpuError::Load { variant: entry.name.to_string(), source };
        let module = self.ctx.load_module(Ptx::from_binary(cubin)).map_err(load_err)?;
        let function = module.load_function(entry.name).map_err(load_err)?;
        // Above 48 KB the launch fails unless the function opted in to the larger window.
        function
            .set_attribute(
                CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                entry.dynamic_smem as i32,
            )
            .map_err(load_err)?;
        Ok(Kernel { entry, function, outcome })
    }
}
