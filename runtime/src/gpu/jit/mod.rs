//! Per-device kernel cache: a variant is compiled (or found on disk) on its first launch, loaded
//! into the context, its dynamic shared-memory limit raised, and kept in memory by name.
//!
//! The in-memory map is checked under the read lock, then again under the write lock, so two
//! threads asking for the same variant at once compile and load it once (FlashInfer's
//! `build_and_load`, not candle's read-then-write `get_or_load_func`).

pub mod disk;
pub mod nvrtc;
pub mod registry;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use cudarc::driver::sys::CUfunction_attribute;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream};
use cudarc::nvrtc::Ptx;
use unweight_codegen::variant::{RegistryEntry, Variant};

use crate::gpu::error::GpuError;
use disk::CacheOutcome;

/// A loaded variant: its registry entry and the function handle to launch.
#[derive(Clone, Debug)]
pub struct Kernel {
    pub entry: &'static RegistryEntry,
    pub function: CudaFunction,
    /// How this process got the CUBIN (for logs and tests).
    pub outcome: CacheOutcome,
    /// The loaded module (its globals: the timeline probe of a diagnostic build).
    pub module: Arc<CudaModule>,
}

impl Kernel {
    /// The module's `unweight_probe` words (a build with `UNWEIGHT_PROBE=1`, see
    /// `unweight_codegen::nvrtc::PROBE_ENV`), `None` when the kernel has no probe.
    pub fn read_probe(&self, stream: &Arc<CudaStream>) -> Result<Option<Vec<u64>>, GpuError> {
        let Ok(view) = self.module.get_global("unweight_probe", stream) else {
            return Ok(None);
        };
        let bytes: Vec<u8> = stream.clone_dtoh(&view).map_err(|source| GpuError::Load {
            variant: self.entry.name.to_string(),
            source,
        })?;
        Ok(Some(
            bytes
                .chunks_exact(8)
                .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")))
                .collect(),
        ))
    }
}

/// A name → value map filled at most once per name: looked up under the read lock, and again
/// under the write lock before loading, so concurrent first uses load once.
pub struct OnceMap<V> {
    map: RwLock<HashMap<&'static str, V>>,
}

impl<V: Clone> Default for OnceMap<V> {
    fn default() -> Self {
        OnceMap {
            map: RwLock::new(HashMap::new()),
        }
    }
}

impl<V: Clone> OnceMap<V> {
    pub fn get_or_load<E>(
        &self,
        name: &'static str,
        load: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, E> {
        if let Some(v) = self.map.read().unwrap_or_else(|e| e.into_inner()).get(name) {
            return Ok(v.clone());
        }
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        // Second check: another thread may have loaded it between the two locks.
        if let Some(v) = map.get(name) {
            return Ok(v.clone());
        }
        let v = load()?;
        map.insert(name, v.clone());
        Ok(v)
    }

    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Kernels loaded into one context, by variant name.
pub struct KernelCache {
    ctx: Arc<CudaContext>,
    dir: PathBuf,
    loaded: OnceMap<Kernel>,
}

impl KernelCache {
    pub fn new(ctx: Arc<CudaContext>, dir: PathBuf) -> Self {
        KernelCache {
            ctx,
            dir,
            loaded: OnceMap::default(),
        }
    }

    pub fn cache_dir(&self) -> &Path {
        &self.dir
    }

    /// The kernel named `name` (a registry variant name), loading it on first use.
    pub fn get(&self, name: &str) -> Result<Kernel, GpuError> {
        let entry = registry::find(name).ok_or_else(|| GpuError::UnknownVariant {
            name: name.to_string(),
        })?;
        self.get_entry(entry)
    }

    /// The kernel of `entry`, loading it on first use.
    pub fn get_entry(&self, entry: &'static RegistryEntry) -> Result<Kernel, GpuError> {
        self.loaded.get_or_load(entry.name, || self.load(entry))
    }

    /// Compiles (or finds on disk) every entry in parallel without loading, so a later
    /// `get_entry` only reads the disk cache. NVRTC compiles are independent programs.
    pub fn precompile(&self, entries: &[&'static RegistryEntry]) -> Result<(), GpuError> {
        use rayon::prelude::*;
        entries
            .par_iter()
            .try_for_each(|e| disk::compile_cached(e, &self.dir).map(|_| ()))
    }

    fn load(&self, entry: &'static RegistryEntry) -> Result<Kernel, GpuError> {
        let (cubin, outcome) = disk::compile_cached(entry, &self.dir)?;
        let load_err = |source| GpuError::Load {
            variant: entry.name.to_string(),
            source,
        };
        let module = self
            .ctx
            .load_module(Ptx::from_binary(cubin))
            .map_err(load_err)?;
        let function = module.load_function(entry.name).map_err(load_err)?;
        // Above 48 KB the launch fails unless the function opted in to the larger window.
        function
            .set_attribute(
                CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                entry.dynamic_smem as i32,
            )
            .map_err(load_err)?;
        if let Variant::Rmm(v) = entry.variant {
            if v.ctas_per_sm > 1 {
                co_resident(&function, entry, v.ctas_per_sm)?;
            }
        }
        Ok(Kernel {
            entry,
            function,
            outcome,
            module,
        })
    }
}

/// Makes room for `need` CTAs of `entry` per SM and checks that they fit: a stream-K CTA waits
/// for partials of others, so a grid of `need` × SMs CTAs that were not all resident would hang.
fn co_resident(
    function: &CudaFunction,
    entry: &'static RegistryEntry,
    need: u32,
) -> Result<(), GpuError> {
    let load_err = |source| GpuError::Load {
        variant: entry.name.to_string(),
        source,
    };
    // The carveout is a hint the driver may round; ask for all of L1 as shared memory.
    function
        .set_attribute(
            CUfunction_attribute::CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT,
            100,
        )
        .map_err(load_err)?;
    let got = function
        .occupancy_max_active_blocks_per_multiprocessor(
            entry.block[0] * entry.block[1] * entry.block[2],
            entry.dynamic_smem as usize,
            None,
        )
        .map_err(load_err)?;
    if got < need {
        return Err(GpuError::Occupancy {
            variant: entry.name.to_string(),
            need,
            got,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn concurrent_first_uses_load_once() {
        let map = OnceMap::<u32>::default();
        let loads = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    let v = map
                        .get_or_load("rmm_raw_n8_s2_nt", || {
                            loads.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(20));
                            Ok::<u32, ()>(7)
                        })
                        .unwrap();
                    assert_eq!(v, 7);
                });
            }
        });
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert_eq!(map.len(), 1);
    }

    #[test]
    fn a_failed_load_is_retried() {
        let map = OnceMap::<u32>::default();
        assert!(map
            .get_or_load("huff_bf16", || Err("nvrtc missing"))
            .is_err());
        assert!(map.is_empty());
        assert_eq!(
            map.get_or_load("huff_bf16", || Ok::<u32, &str>(3)).unwrap(),
            3
        );
    }
}
