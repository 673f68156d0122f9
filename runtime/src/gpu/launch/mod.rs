//! Kernel launches with the contract's ABIs (docs/CONTRACT.md). Geometry comes from the
//! registry entry; arguments are raw device addresses so a caller's buffers and streams need
//! not be cudarc-tracked.

pub mod tma;

use cudarc::driver::{CudaStream, LaunchConfig, PushKernelArg};
pub use unweight_codegen::abi::HuffLayout;
use unweight_codegen::abi::BK;
use unweight_codegen::space::{HuffBudget, SMEM_PER_SM};
use unweight_codegen::variant::{GridRule, HuffVariant, RegistryEntry};

use crate::gpu::error::{DriverContext, GpuError};
use crate::gpu::jit::Kernel;
use crate::gpu::launch::tma::TmaDesc;
use crate::gpu::plan::Schedule;

fn shape_err(entry: &RegistryEntry, reason: String) -> GpuError {
    GpuError::Shape {
        what: format!("launch of {}", entry.name),
        reason,
    }
}

/// Grid of an rmm launch: `(ctas, 1, 1)` over `(n_out / 128) × ceil(m / tile_n)` output tiles of
/// `k / 64` k blocks (data-parallel waves and a stream-K tail, [`Schedule`]). The kernel traps
/// unless `1 <= ctas <= tiles × k blocks` and, for a variant with `max_kb`, no CTA's work is longer.
pub fn rmm_grid(
    entry: &RegistryEntry,
    n_out: usize,
    k: usize,
    m: usize,
    ctas: u32,
) -> Result<(u32, u32, u32), GpuError> {
    let GridRule::RmmTiles {
        rows_per_cta,
        tile_n,
    } = entry.grid
    else {
        return Err(shape_err(entry, "not an rmm kernel".into()));
    };
    let kb = BK as usize;
    if m == 0 || n_out == 0 || n_out % rows_per_cta as usize != 0 || k == 0 || k % kb != 0 {
        return Err(shape_err(
            entry,
            format!("n_out {n_out} must be a positive multiple of {rows_per_cta}, k {k} of {kb}, m {m} positive"),
        ));
    }
    let tiles = (n_out / rows_per_cta as usize) as u64 * m.div_ceil(tile_n as usize) as u64;
    let units = tiles * (k / kb) as u64;
    let schedule = Schedule {
        kblocks: (k / kb) as u64,
        tiles,
        ctas: ctas as u64,
    };
    if !schedule.valid(entry.max_kb) || ctas > i32::MAX as u32 || units > i32::MAX as u64 {
        return Err(shape_err(
            entry,
            format!("{ctas} CTAs for {tiles} tiles of {} k blocks", k / kb),
        ));
    }
    Ok((ctas, 1, 1))
}

/// Grid of a Huffman preprocess launch: `ctas` blocks (the kernels loop over their chunks, so any
/// count decodes everything), at most the natural `ceil(n_chunks / chunks_per_block)`; 0 = natural.
pub fn huff_grid(
    entry: &RegistryEntry,
    n_chunks: u32,
    ctas: u32,
) -> Result<(u32, u32, u32), GpuError> {
    let GridRule::HuffChunks { chunks_per_block } = entry.grid else {
        return Err(shape_err(entry, "not a Huffman kernel".into()));
    };
    if n_chunks == 0 || chunks_per_block == 0 {
        return Err(shape_err(entry, "no chunks to decode".into()));
    }
    let natural = n_chunks.div_ceil(chunks_per_block);
    let blocks = if ctas == 0 {
        natural
    } else {
        ctas.min(natural)
    };
    Ok((blocks, 1, 1))
}

/// Blocks of the Huffman kernel `v` that fill `sms` SMs (as many per SM as shared memory and
/// the thread limit allow): what "decode on S SMs" launches, and (all SMs) the runtime's default
/// grid for the sub-chunk decoders.
pub fn decode_blocks_of(v: &HuffVariant, sms: u32) -> u32 {
    let b = HuffBudget::new(v);
    let per_sm = (SMEM_PER_SM / (b.smem_bytes + 1024))
        .min(2048 / b.threads)
        .max(1);
    sms * per_sm
}

/// Grid of an activation over `n` values: one thread per `elems_per_thread` values, rounded up
/// to whole blocks (the kernels stride over the rest, so a smaller grid is also correct).
pub fn act_grid(entry: &RegistryEntry, n: u64) -> Result<(u32, u32, u32), GpuError> {
    let GridRule::Elementwise {
        threads,
        elems_per_thread,
    } = entry.grid
    else {
        return Err(shape_err(entry, "not an activation kernel".into()));
    };
    if n == 0 || threads == 0 || elems_per_thread == 0 {
        return Err(shape_err(entry, format!("{n} values to activate")));
    }
    let blocks = n
        .div_ceil(elems_per_thread as u64)
        .div_ceil(threads as u64)
        .min(i32::MAX as u64) as u32;
    Ok((blocks, 1, 1))
}

/// Grid of a re-layout over `bytes` bytes of blocks: one block per `bytes_per_block` (the
/// kernels loop over the rest, so a smaller grid is also correct). `bytes` must be a positive
/// multiple of the block.
pub fn relayout_grid(entry: &RegistryEntry, bytes: u64) -> Result<(u32, u32, u32), GpuError> {
    let GridRule::PerBlock {
        bytes_per_block, ..
    } = entry.grid
    else {
        return Err(shape_err(entry, "not a re-layout kernel".into()));
    };
    let per = bytes_per_block as u64;
    if bytes == 0 || per == 0 || bytes % per != 0 {
        return Err(shape_err(
            entry,
            format!("{bytes} bytes are not whole blocks of {bytes_per_block}"),
        ));
    }
    Ok(((bytes / per).min(i32::MAX as u64) as u32, 1, 1))
}

fn config(entry: &RegistryEntry, grid: (u32, u32, u32)) -> LaunchConfig {
    LaunchConfig {
        grid_dim: grid,
        block_dim: (entry.block[0], entry.block[1], entry.block[2]),
        shared_mem_bytes: entry.dynamic_smem,
    }
}

/// Arguments of `rmm_*` in ABI order.
pub struct RmmArgs {
    pub tm_x: TmaDesc,
    /// Raw: the bf16 weight map; exponent / palette: `tm_x` again (unused).
    pub tm_w: TmaDesc,
    /// Tiled sm bytes (exponent / palette), else 0.
    pub w0_tiles: u64,
    /// Tiled exponent bytes or nibbles (exponent / palette), else 0.
    pub w1_tiles: u64,
    pub tile_esc: u64,
    pub esc_exp: u64,
    pub palette: u64,
    pub y: u64,
    /// Stream-K partials and per-CTA flags (unused when every CTA holds whole tiles).
    pub ws: u64,
    pub flags: u64,
    pub n_out: i32,
    pub k: i32,
    pub m: i32,
    pub ctas: u32,
}

/// # Safety
/// Every address must be a live device buffer of the size the tensor maps and shape describe.
pub unsafe fn rmm(stream: &CudaStream, kernel: &Kernel, a: &RmmArgs) -> Result<(), GpuError> {
    let grid = rmm_grid(
        kernel.entry,
        a.n_out as usize,
        a.k as usize,
        a.m as usize,
        a.ctas,
    )?;
    let mut b = stream.launch_builder(&kernel.function);
    b.arg(&a.tm_x)
        .arg(&a.tm_w)
        .arg(&a.w0_tiles)
        .arg(&a.w1_tiles);
    b.arg(&a.tile_esc)
        .arg(&a.esc_exp)
        .arg(&a.palette)
        .arg(&a.y)
        .arg(&a.ws)
        .arg(&a.flags);
    b.arg(&a.n_out).arg(&a.k).arg(&a.m);
    // SAFETY: argument order and types follow the rmm ABI; the caller vouches for the buffers.
    unsafe { b.launch(config(kernel.entry, grid)) }
        .ctx(|| format!("launching {}", kernel.entry.name))?;
    Ok(())
}

/// Arguments of `huff_*` in ABI order.
pub struct HuffArgs {
    pub bits: u64,
    pub chunk_offsets: u64,
    /// The decode tables in the kernel's refill format (`layout::multi::tables`).
    pub tables: u64,
    pub palette: u64,
    pub sm: u64,
    pub esc_bitmap: u64,
    pub esc_prefix: u64,
    pub esc_exp: u64,
    pub out: u64,
    pub rows: u64,
    pub cols: u64,
    pub padded_cols: u64,
    pub chunk_symbols: u32,
    pub n_chunks: u32,
    /// Where `huff_exponent` / `huff_palette` place elements; where `huff_bf16` reads sm.
    pub layout: HuffLayout,
    /// The stream's bits (the last chunk ends there) and bytes (every load stays inside).
    pub stream_bits: u64,
    pub stream_bytes: u64,
    /// Escaped groups in `esc_exp`.
    pub esc_groups: u32,
    /// Two u32 (reasons, !first bad chunk), zero before the first launch; see `abi::huff_err`.
    pub err: u64,
    /// Sub-chunk offsets (`abi::SUB_SYMBOLS`): refill `sub256` reads them, word / vec4 record them
    /// when nonzero (the validating decode); 0 = none.
    pub sub_offsets: u64,
    /// Blocks to run on (0: the natural grid), so the decode can take a share of the SMs.
    pub ctas: u32,
}

/// # Safety
/// Every address must be a live device buffer of the size the shape describes; `out` must hold
/// the kernel's whole output.
pub unsafe fn huff(stream: &CudaStream, kernel: &Kernel, a: &HuffArgs) -> Result<(), GpuError> {
    let grid = huff_grid(kernel.entry, a.n_chunks, a.ctas)?;
    let mut b = stream.launch_builder(&kernel.function);
    b.arg(&a.bits)
        .arg(&a.chunk_offsets)
        .arg(&a.tables)
        .arg(&a.palette)
        .arg(&a.sm);
    b.arg(&a.esc_bitmap)
        .arg(&a.esc_prefix)
        .arg(&a.esc_exp)
        .arg(&a.out);
    b.arg(&a.rows)
        .arg(&a.cols)
        .arg(&a.padded_cols)
        .arg(&a.chunk_symbols)
        .arg(&a.n_chunks);
    let layout = a.layout.code();
    b.arg(&layout);
    b.arg(&a.stream_bits)
        .arg(&a.stream_bytes)
        .arg(&a.esc_groups)
        .arg(&a.err)
        .arg(&a.sub_offsets);
    // SAFETY: argument order and types follow the Huffman ABI; the caller vouches for the buffers.
    unsafe { b.launch(config(kernel.entry, grid)) }
        .ctx(|| format!("launching {}", kernel.entry.name))?;
    Ok(())
}

/// Arguments of `act_*` in ABI order: `out[i] = act(a[i], b[i])` for i < n; `b` is 0 for gelu.
pub struct ActArgs {
    pub a: u64,
    pub b: u64,
    pub out: u64,
    pub n: u64,
}

/// # Safety
/// `a`, `out` (and `b` for a gated activation) must be live, 16-byte aligned device buffers of
/// `n` bf16 values; `out` may equal `a` or `b`.
pub unsafe fn act(stream: &CudaStream, kernel: &Kernel, a: &ActArgs) -> Result<(), GpuError> {
    let grid = act_grid(kernel.entry, a.n)?;
    if [a.a, a.b, a.out].iter().any(|p| p % 16 != 0) {
        return Err(shape_err(
            kernel.entry,
            "buffers must be 16-byte aligned".into(),
        ));
    }
    let mut b = stream.launch_builder(&kernel.function);
    b.arg(&a.a).arg(&a.b).arg(&a.out).arg(&a.n);
    // SAFETY: argument order and types follow the activation ABI; the caller vouches for the
    // buffers.
    unsafe { b.launch(config(kernel.entry, grid)) }
        .ctx(|| format!("launching {}", kernel.entry.name))?;
    Ok(())
}

/// Arguments of `relayout_*` in ABI order: `bytes` of tiled blocks at `tiled` re-laid into
/// fragment blocks at `frags`.
pub struct RelayoutArgs {
    pub tiled: u64,
    pub frags: u64,
    /// Bytes of each buffer (whole blocks).
    pub bytes: u64,
    /// The weight's encoded orientation: Wᵀ when true.
    pub transposed: bool,
}

/// # Safety
/// `tiled` and `frags` must be live, non-overlapping device buffers of `bytes` bytes each.
pub unsafe fn relayout(
    stream: &CudaStream,
    kernel: &Kernel,
    a: &RelayoutArgs,
) -> Result<(), GpuError> {
    let grid = relayout_grid(kernel.entry, a.bytes)?;
    if a.tiled % 16 != 0 || a.frags % 16 != 0 {
        return Err(shape_err(
            kernel.entry,
            "buffers must be 16-byte aligned".into(),
        ));
    }
    let (lo, hi) = (a.tiled.min(a.frags), a.tiled.max(a.frags));
    if lo + a.bytes > hi {
        return Err(shape_err(kernel.entry, "the buffers overlap".into()));
    }
    let blocks = grid.0 as u64;
    let transposed = u32::from(a.transposed);
    let mut b = stream.launch_builder(&kernel.function);
    b.arg(&a.tiled).arg(&a.frags).arg(&blocks).arg(&transposed);
    // SAFETY: argument order and types follow the re-layout ABI; the caller vouches for the
    // buffers.
    unsafe { b.launch(config(kernel.entry, grid)) }
        .ctx(|| format!("launching {}", kernel.entry.name))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use unweight_codegen::variant::{
        ASource, HuffOutput, HuffRefill, HuffVariant, Operand, RmmVariant, Variant,
    };

    fn rmm_entry(tile_n: u32) -> RegistryEntry {
        RegistryEntry {
            variant: Variant::Rmm(RmmVariant {
                operand: Operand::Raw,
                tile_n,
                stages: 4,
                transpose: false,
                a_src: ASource::Smem,
                ctas_per_sm: 1,
            }),
            name: "rmm_raw_test",
            block: [384, 1, 1],
            grid: GridRule::RmmTiles {
                rows_per_cta: 128,
                tile_n,
            },
            dynamic_smem: 100_000,
            max_kb: None,
            source_hash: 0,
            source: "",
        }
    }

    #[test]
    fn rmm_grid_follows_the_contract() {
        assert_eq!(rmm_grid(&rmm_entry(8), 128, 64, 1, 1).unwrap(), (1, 1, 1));
        assert_eq!(
            rmm_grid(&rmm_entry(8), 14336, 4096, 7, 132).unwrap(),
            (132, 1, 1)
        );
        assert_eq!(
            rmm_grid(&rmm_entry(64), 4096, 4096, 200, 128).unwrap(),
            (128, 1, 1)
        );
        // Fewer CTAs than tiles is fine (persistent stream-K); none, more than units, bad shapes.
        assert_eq!(
            rmm_grid(&rmm_entry(64), 4096, 4096, 200, 7).unwrap(),
            (7, 1, 1)
        );
        assert!(rmm_grid(&rmm_entry(8), 128, 128, 1, 3).is_err());
        assert!(rmm_grid(&rmm_entry(8), 100, 64, 1, 1).is_err());
        assert!(rmm_grid(&rmm_entry(8), 128, 100, 1, 1).is_err());
        assert!(rmm_grid(&rmm_entry(8), 128, 64, 0, 1).is_err());
        assert!(rmm_grid(&rmm_entry(8), 4096, 4096, 1, 0).is_err());
        // A range past max_kb: 32 row tiles × 64 k blocks on 8 CTAs is 256 k blocks each.
        let capped = RegistryEntry {
            max_kb: Some(256),
            ..rmm_entry(8)
        };
        assert!(rmm_grid(&capped, 4096, 4096, 1, 8).is_ok());
        assert!(rmm_grid(&capped, 4096, 4096, 1, 7).is_err());
    }

    #[test]
    fn every_default_plan_launches() {
        // The planner's CTA count must pass the launch's checks for the real registry, on the
        // Llama shapes at every bench batch and in both rmm forms (a plan the launch refuses
        // fails the whole forward).
        use crate::codec::Orientation;
        use crate::gpu::layout::Geometry;
        use crate::gpu::plan::{plan_for, ExecPipeline};
        for (n_out, k) in [
            (14336, 4096),
            (4096, 14336),
            (28672, 8192),
            (8192, 28672),
            (256, 320),
        ] {
            for o in [Orientation::Standard, Orientation::Transposed] {
                let g = Geometry::raw(n_out, k, o);
                for m in [1, 4, 16, 64, 256, 512, 1024, 2048, 4096] {
                    for p in ExecPipeline::ALL {
                        for a_src in [ASource::Smem, ASource::Regs] {
                            let Ok(plan) = plan_for(&g, p, m, None, a_src, 132) else {
                                continue;
                            };
                            if let Some(e) = plan.rmm {
                                rmm_grid(e, n_out, k, m, plan.ctas).unwrap_or_else(|err| {
                                    panic!("{n_out}x{k} {o} m={m} {p} {a_src:?}: {err}")
                                });
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn act_grid_covers_every_value() {
        use unweight_codegen::variant::{ActOp, ActVariant};
        let e = RegistryEntry {
            variant: Variant::Act(ActVariant { op: ActOp::Gelu }),
            name: "act_gelu",
            block: [256, 1, 1],
            grid: GridRule::Elementwise {
                threads: 256,
                elems_per_thread: 8,
            },
            dynamic_smem: 0,
            max_kb: None,
            source_hash: 0,
            source: "",
        };
        assert_eq!(act_grid(&e, 1).unwrap(), (1, 1, 1));
        assert_eq!(act_grid(&e, 2048).unwrap(), (1, 1, 1));
        assert_eq!(act_grid(&e, 2049).unwrap(), (2, 1, 1));
        assert_eq!(act_grid(&e, 1024 * 14336).unwrap(), (7168, 1, 1));
        assert!(act_grid(&e, 0).is_err());
        assert!(huff_grid(&e, 10, 0).is_err());
    }

    #[test]
    fn relayout_grid_is_one_block_per_fragment_block() {
        use unweight_codegen::variant::{RelayoutElem, RelayoutVariant};
        let e = RegistryEntry {
            variant: Variant::Relayout(RelayoutVariant {
                elem: RelayoutElem::Nibble,
            }),
            name: "relayout_nibble",
            block: [256, 1, 1],
            grid: GridRule::PerBlock {
                threads: 256,
                bytes_per_block: 4096,
            },
            dynamic_smem: 0,
            max_kb: None,
            source_hash: 0,
            source: "",
        };
        assert_eq!(relayout_grid(&e, 4096).unwrap(), (1, 1, 1));
        assert_eq!(relayout_grid(&e, 14336 * 4096 / 2).unwrap(), (7168, 1, 1));
        assert!(relayout_grid(&e, 0).is_err());
        assert!(relayout_grid(&e, 4097).is_err());
        assert!(act_grid(&e, 10).is_err());
    }

    #[test]
    fn huff_grid_rounds_up() {
        let e = RegistryEntry {
            variant: Variant::Huff(HuffVariant {
                output: HuffOutput::Bf16,
                refill: HuffRefill::Vec4,
            }),
            name: "huff_bf16_vec4",
            block: [256, 1, 1],
            grid: GridRule::HuffChunks {
                chunks_per_block: 256,
            },
            dynamic_smem: 8192,
            max_kb: None,
            source_hash: 0,
            source: "",
        };
        assert_eq!(huff_grid(&e, 1, 0).unwrap(), (1, 1, 1));
        assert_eq!(huff_grid(&e, 257, 0).unwrap(), (2, 1, 1));
        assert!(huff_grid(&e, 0, 0).is_err());
        // A chosen CTA count, capped at the natural grid.
        assert_eq!(huff_grid(&e, 2570, 3).unwrap(), (3, 1, 1));
        assert_eq!(huff_grid(&e, 257, 66).unwrap(), (2, 1, 1));
        assert!(rmm_grid(&e, 128, 64, 1, 1).is_err());
    }
}
