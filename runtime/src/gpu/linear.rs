//! The linear-layer API an inference engine calls: `y = x·Wᵀ` on the engine's stream, with the
//! engine's device buffers (`x` bf16 `[m][k]`, `y` bf16 `[m][n_out]`, row-major).
//!
//! ```ignore
//! let dev = GpuDevice::from_context(ctx)?;                 // once per GPU
//! let lin = Linear::new(DeviceWeights::palette(&dev, "mlp.up", &tensor)?)?;
//! let plan = lin.plan(ExecPipeline::DirectPalette, m)?;    // per batch size; cheap, cacheable
//! lin.forward(&stream, &x, &mut y, &plan)?;                // enqueues, does not synchronize
//! ```

use cudarc::driver::{CudaStream, DevicePtr, DevicePtrMut};
use unweight_codegen::variant::{HuffOutput, RegistryEntry};

use super::cublas::gemm_params;
use super::error::GpuError;
use super::launch::{self, HuffLayout, RmmArgs};
use super::pipelines::{self, ExecPipeline, Plan};
use super::tma;
use super::scratch::ScratchSlot;
use super::weights::{DeviceWeights, HuffmanDev, Resident};
use crate::codec::Orientation;

/// The scratch slot the linear API uses (the MLP scheduler alternates both).
const SLOT: usize = 0;

/// Batch size the stream-K buffers are sized for at registration. A larger batch grows them
/// once, with a device synchronization, on its first call.
pub const DEFAULT_MAX_BATCH: usize = 1024;

pub struct Linear {
    weights: DeviceWeights,
}

impl Linear {
    /// Wraps uploaded weights; Huffman-resident ones reserve preprocess scratch now, so no
    /// call allocates.
    pub fn new(weights: DeviceWeights) -> Result<Self, GpuError> {
        let scratch = &weights.device().scratch;
        if let Resident::Huffman(_) = weights.resident {
            let (a, b, c) = weights.geometry.scratch_bytes();
            scratch.reserve(a.max(b).max(c))?;
        }
        if weights.geometry.rmm_ok() {
            let g = &weights.geometry;
            let (ws, flags) = pipelines::split_buffers_bound(g.n_out, g.k, DEFAULT_MAX_BATCH, weights.device().info.sm_count);
            scratch.reserve_split(ws, flags)?;
        }
        Ok(Linear { weights })
    }

    pub fn weights(&self) -> &DeviceWeights {
        &self.weights
    }

    pub fn n_out(&self) -> usize {
        self.weights.geometry.n_out
    }

    pub fn k(&self) -> usize {
        self.weights.geometry.k
    }

    /// The default plan of `pipeline` at batch `m` (see [`pipelines::default_variant`]).
    pub fn plan(&self, pipeline: ExecPipeline, m: usize) -> Result<Plan, GpuError> {
        self.check_residency(pipeline)?;
        pipelines::plan(&self.weights.geometry, pipeline, m, None, self.weights.device().info.sm_count)
    }

    /// A plan with an explicit rmm variant (the benchmark's search, a tuning table).
    pub fn plan_with(&self, pipeline: ExecPipeline, m: usize, rmm: &'static RegistryEntry) -> Result<Plan, GpuError> {
        self.check_residency(pipeline)?;
        pipelines::plan(&self.weights.geometry, pipeline, m, Some(rmm), self.weights.device().info.sm_count)
    }

    fn check_residency(&self, pipeline: ExecPipeline) -> Result<(), GpuError> {
        let actual = self.weights.resident.kind();
        if pipeline.residency() != actual {
            return Err(GpuError::Residency {
                pipeline: pipeline.as_str(),
                needs: pipeline.residency(),
                actual,
                tensor: self.weights.name.clone(),
            });
        }
        Ok(())
    }

    /// Enqueues `y = x·Wᵀ` on `stream`; `x` holds at least `plan.m × k` values, `y` at least
    /// `plan.m × n_out`.
    pub fn forward(
        &self,
        stream: &CudaStream,
        x: &impl DevicePtr<u16>,
        y: &mut impl DevicePtrMut<u16>,
        plan: &Plan,
    ) -> Result<(), GpuError> {
        let (m, k, n) = (plan.m, self.k(), self.n_out());
        let short = |what: &str, have: usize, need: usize| GpuError::Shape {
            what: format!("{what} of {} (m={m})", self.weights.name),
            reason: format!("{have} values, need {need}"),
        };
        if x.len() < m * k {
            return Err(short("x", x.len(), m * k));
        }
        if y.len() < m * n {
            return Err(short("y", y.len(), m * n));
        }
        let (xp, _x_read) = x.device_ptr(stream);
        let (yp, _y_write) = y.device_ptr_mut(stream);
        // SAFETY: both buffers were checked to hold the plan's shapes; the guards keep cudarc's
        // event tracking informed until the work is enqueued.
        unsafe { self.forward_raw(stream, xp, yp, plan) }
    }

    /// [`Linear::forward`] on raw device addresses.
    ///
    /// # Safety
    /// `x` must address `plan.m × k` bf16 values and `y` `plan.m × n_out`, both live until the
    /// enqueued work completes, and be 16-byte aligned.
    pub unsafe fn forward_raw(&self, stream: &CudaStream, x: u64, y: u64, plan: &Plan) -> Result<(), GpuError> {
        self.check_residency(plan.pipeline)?;
        let g = &self.weights.geometry;
        let (m, k, n_out) = (plan.m, g.k, g.n_out);
        if m == 0 {
            return Ok(());
        }
        let dev = self.weights.device();
        let transpose = g.orientation == Orientation::Transposed;
        let x_bytes = (m * k * 2) as u64;
        if let Some(e) = plan.rmm {
            // A plan made for another weight must not launch a kernel of the wrong orientation.
            let fits = matches!(e.variant, unweight_codegen::variant::Variant::Rmm(v)
                if v.transpose == transpose && Some(v.pipeline) == plan.pipeline.rmm());
            if !fits || !g.rmm_ok() {
                return Err(GpuError::NoVariantFits {
                    shape: g.shape_text(),
                    reason: format!("plan {} ({}) was made for another weight", plan.pipeline, e.name),
                });
            }
            let (ws, flags) = pipelines::split_buffers(e, n_out, m, plan.ctas);
            dev.scratch.reserve_split(ws, flags)?; // no-op unless m exceeds DEFAULT_MAX_BATCH
        }
        if plan.pipeline == ExecPipeline::Cublas {
            if let Resident::Raw(r) = &self.weights.resident {
                let p = gemm_params(g.orientation, m, n_out, k)?;
                return unsafe { dev.blas.gemm_bf16(stream, &p, r.w.ptr, x, y) };
            }
        }
        // Everything else uses a scratch slot (preprocess output and/or stream-K buffers); its
        // event orders this stream after the slot's previous user.
        let slot = dev.scratch.slot(SLOT);
        slot.acquire_on(stream)?;
        let s = &*slot;
        let r = match (&self.weights.resident, plan.pipeline) {
            (Resident::Raw(r), ExecPipeline::Raw) => {
                let w = tma::raw_weight_map(transpose, n_out, k).encode(r.w.ptr, r.w.bytes() as u64)?;
                unsafe { self.rmm(stream, s, plan, x, x_bytes, y, Some(w), [0, 0], [0, 0, 0]) }
            }
            (Resident::Palette(p), ExecPipeline::DirectPalette) => {
                let (t, w) = (&p.rmm, [p.rmm.sm_tiles.ptr, p.nibble_tiles.ptr]);
                unsafe { self.rmm(stream, s, plan, x, x_bytes, y, None, w, [t.tile_esc.ptr, t.esc_exp.ptr, p.palette.ptr]) }
            }
            (Resident::Huffman(h), pipe) => unsafe { self.huffman_pipeline(stream, s, h, pipe, plan, x, x_bytes, y) },
            (res, pipe) => Err(GpuError::Residency {
                pipeline: pipe.as_str(),
                needs: pipe.residency(),
                actual: res.kind(),
                tensor: self.weights.name.clone(),
            }),
        };
        slot.release_on(stream)?;
        r
    }

    #[allow(clippy::too_many_arguments)]
    unsafe fn huffman_pipeline(
        &self,
        stream: &CudaStream,
        slot: &ScratchSlot,
        h: &HuffmanDev,
        pipe: ExecPipeline,
        plan: &Plan,
        x: u64,
        x_bytes: u64,
        y: u64,
    ) -> Result<(), GpuError> {
        let g = &self.weights.geometry;
        let (m, k, n_out) = (plan.m, g.k, g.n_out);
        let transpose = g.orientation == Orientation::Transposed;
        let output = match plan.preprocess.map(|e| e.variant) {
            Some(unweight_codegen::variant::Variant::Huff(v)) => v.output,
            _ => return Err(GpuError::UnknownVariant { name: format!("preprocess of {pipe}") }),
        };
        match pipe {
            ExecPipeline::FullDecode => {
                unsafe { self.decode(stream, h, output, HuffLayout::RowMajor, slot.ptr(), slot.capacity(), 0)? };
                let p = gemm_params(g.orientation, m, n_out, k)?;
                unsafe { self.weights.device().blas.gemm_bf16(stream, &p, slot.ptr(), x, y) }
            }
            ExecPipeline::Exponent | ExecPipeline::PaletteTranscode => {
                let Some(t) = &h.rmm else {
                    return Err(GpuError::NoVariantFits { shape: g.shape_text(), reason: "no tiled rmm tables".into() });
                };
                let layout = if transpose { HuffLayout::TiledTransposed } else { HuffLayout::TiledStandard };
                unsafe { self.decode(stream, h, output, layout, slot.ptr(), slot.capacity(), 0)? };
                let esc = match pipe {
                    ExecPipeline::PaletteTranscode => [t.tile_esc.ptr, t.esc_exp.ptr, h.palette.ptr],
                    _ => [0, 0, 0],
                };
                unsafe { self.rmm(stream, slot, plan, x, x_bytes, y, None, [t.sm_tiles.ptr, slot.ptr()], esc) }
            }
            other => Err(GpuError::Residency {
                pipeline: other.as_str(),
                needs: other.residency(),
                actual: "huffman",
                tensor: self.weights.name.clone(),
            }),
        }
    }

    /// Launches the plan's rmm: `tm_w` the raw weight map (None: compressed, `tm_x` is passed in
    /// its place), `w` = (w0_tiles, w1_tiles), `esc` = (tile_esc, esc_exp, palette); 0 when unused.
    #[allow(clippy::too_many_arguments)]
    unsafe fn rmm(
        &self,
        stream: &CudaStream,
        slot: &ScratchSlot,
        plan: &Plan,
        x: u64,
        x_bytes: u64,
        y: u64,
        tm_w: Option<tma::TmaDesc>,
        w: [u64; 2],
        esc: [u64; 3],
    ) -> Result<(), GpuError> {
        let entry = plan.rmm.ok_or_else(|| GpuError::UnknownVariant { name: format!("rmm of {}", plan.pipeline) })?;
        let unweight_codegen::variant::Variant::Rmm(v) = entry.variant else {
            return Err(GpuError::UnknownVariant { name: entry.name.to_string() });
        };
        let g = &self.weights.geometry;
        let (need_ws, need_flags) = pipelines::split_buffers(entry, g.n_out, plan.m, plan.ctas);
        let ((ws, ws_cap), (flags, flags_cap)) = (slot.ws(), slot.flags());
        if need_ws > ws_cap || need_flags > flags_cap {
            return Err(GpuError::Shape {
                what: format!("stream-K buffers for {}", entry.name),
                reason: format!("need {need_ws} + {need_flags} bytes, have {ws_cap} + {flags_cap}"),
            });
        }
        let tm_x = tma::x_map(g.k, plan.m, v.tile_n).encode(x, x_bytes)?;
        let kernel = self.weights.device().kernels.get_entry(entry)?;
        let int = |v: usize| v as i32;
        let args = RmmArgs {
            tm_x,
            tm_w: tm_w.unwrap_or(tm_x),
            w0_tiles: w[0],
            w1_tiles: w[1],
            tile_esc: esc[0],
            esc_exp: esc[1],
            palette: esc[2],
            y,
            ws,
            flags,
            n_out: int(g.n_out),
            k: int(g.k),
            m: int(plan.m),
            ctas: plan.ctas,
        };
        unsafe { launch::rmm(stream, &kernel, &args) }
    }

    /// Output bytes of `huff_<output>` for this weight.
    pub fn decode_bytes(&self, output: HuffOutput) -> usize {
        let (bf16, exp, pal) = self.weights.geometry.scratch_bytes();
        match output {
            HuffOutput::Bf16 => bf16,
            HuffOutput::Exponent => exp,
            HuffOutput::Palette => pal,
        }
    }

    /// Runs the Huffman preprocess `output` into a caller buffer (tests, decode benchmarks);
    /// `tiled` asks exponent / palette outputs for the rmm's tiled layout (rmm-eligible weights).
    /// BF16 output is always row-major. Enqueues only: refusals land in the weight's error word
    /// ([`DeviceWeights::take_decode_error`]).
    pub fn decode_into<T>(
        &self,
        stream: &CudaStream,
        output: HuffOutput,
        tiled: bool,
        out: &mut impl DevicePtrMut<T>,
    ) -> Result<(), GpuError> {
        self.decode_into_ctas(stream, output, tiled, 0, out)
    }

    /// [`Linear::decode_into`] on `ctas` blocks (0: the natural grid), e.g. a share of the SMs
    /// left free by a concurrent matmul; the output is the same for any count.
    pub fn decode_into_ctas<T>(
        &self,
        stream: &CudaStream,
        output: HuffOutput,
        tiled: bool,
        ctas: u32,
        out: &mut impl DevicePtrMut<T>,
    ) -> Result<(), GpuError> {
        let Resident::Huffman(h) = &self.weights.resident else {
            return Err(GpuError::Residency {
                pipeline: "huffman decode",
                needs: "huffman",
                actual: self.weights.resident.kind(),
                tensor: self.weights.name.clone(),
            });
        };
        let g = &self.weights.geometry;
        let layout = match (tiled, output, g.orientation) {
            (false, _, _) | (_, HuffOutput::Bf16, _) => HuffLayout::RowMajor,
            (true, _, _) if !g.rmm_ok() => {
                return Err(GpuError::NoVariantFits { shape: g.shape_text(), reason: "the tiled layout needs an rmm-eligible shape".into() })
            }
            (true, _, Orientation::Standard) => HuffLayout::TiledStandard,
            (true, _, Orientation::Transposed) => HuffLayout::TiledTransposed,
        };
        let have = out.len() * std::mem::size_of::<T>();
        let (p, _write) = out.device_ptr_mut(stream);
        // SAFETY: `decode` checks `have` against the output size before launching.
        unsafe { self.decode(stream, h, output, layout, p, have, ctas) }
    }

    /// # Safety
    /// `out` must address `out_bytes` device bytes, live until the enqueued decode completes.
    #[allow(clippy::too_many_arguments)]
    unsafe fn decode(
        &self,
        stream: &CudaStream,
        h: &HuffmanDev,
        output: HuffOutput,
        layout: HuffLayout,
        out: u64,
        out_bytes: usize,
        ctas: u32,
    ) -> Result<(), GpuError> {
        let need = self.decode_bytes(output);
        if out_bytes < need || out == 0 {
            return Err(GpuError::Shape {
                what: format!("huff_{} output for {}", output.as_str(), self.weights.name),
                reason: format!("buffer holds {out_bytes} bytes, need {need}"),
            });
        }
        let g = &self.weights.geometry;
        let kernel = self.weights.device().kernels.get_entry(pipelines::huff_entry(output)?)?;
        // huff_bf16's `layout` says where it reads sm (its output is row-major); the others', where they write.
        // The stream was checked at upload; a refusal would still land in the weight's error word.
        let args = h.launch_args(g, output, layout, out, ctas).map_err(|e| super::weights::rename(e, &self.weights.name))?;
        unsafe { launch::huff(stream, &kernel, &args) }
    }
}
