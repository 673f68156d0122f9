//! The linear-layer API an inference engine calls: `y = x·Wᵀ` on the engine's stream, with the
//! engine's device buffers (`x` bf16 `[m][k]`, `y` bf16 `[m][n_out]`, row-major).
//!
//! ```ignore
//! let dev = GpuDevice::from_context(ctx)?;                 // once per GPU
//! let lin = Linear::new(DeviceWeights::palette(&dev, "mlp.up", &tensor)?)?;
//! let plan = lin.plan(ExecPipeline::DirectPalette, m)?;    // per batch size; cheap, cacheable
//! lin.forward(&stream, &x, &mut y, &plan)?;                // enqueues, does not synchronize
//! ```

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut};
use unweight_codegen::abi::{HuffLayout, GROUP};
use unweight_codegen::variant::{
    ASource, HuffOutput, HuffRefill, HuffVariant, RegistryEntry, Variant,
};

use crate::codec::Orientation;
use crate::gpu::device::cublas::gemm_params;
use crate::gpu::device::scratch::ScratchSlot;
use crate::gpu::error::{weights_error, GpuError};
use crate::gpu::launch::{self, tma, HuffArgs, RmmArgs};
use crate::gpu::layout::{Geometry, LayoutError, Residency};
use crate::gpu::plan::{self, ExecPipeline, Plan};
use crate::gpu::tuner::{self, Source, Table};
use crate::gpu::weights::{DeviceWeights, HuffmanDev, RawDev, Resident};

/// The scratch slot the linear API uses (the MLP scheduler alternates both).
const SLOT: usize = 0;

/// Batch size the stream-K buffers are sized for at registration. A larger batch grows them
/// once, with a device synchronization, on its first call.
pub const DEFAULT_MAX_BATCH: usize = 1024;

/// Stream-K buffers of one rmm launch: f32 partials and per-CTA u32 flags (zero between
/// launches: the kernels reset what they set), as addresses with their sizes in bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct SplitBufs {
    /// Device address of the f32 partials (the stream-K workspace).
    pub ws: u64,
    /// Its size in bytes.
    pub ws_bytes: usize,
    /// Device address of the per-CTA u32 flags.
    pub flags: u64,
    /// Their size in bytes.
    pub flags_bytes: usize,
}

impl SplitBufs {
    fn of(slot: &ScratchSlot) -> Self {
        let ((ws, ws_bytes), (flags, flags_bytes)) = (slot.ws(), slot.flags());
        SplitBufs {
            ws,
            ws_bytes,
            flags,
            flags_bytes,
        }
    }
}

/// One weight matrix as a linear layer: plans and enqueues `y = x·Wᵀ` on it.
pub struct Linear {
    weights: DeviceWeights,
}

impl Linear {
    /// Wraps uploaded weights; Huffman-resident ones reserve preprocess scratch now, so no
    /// call allocates, and their stream is decoded once and checked (`check_stream`):
    /// one the GPU decoder refuses fails here with [`GpuError::CorruptStream`] naming the tensor.
    pub fn new(weights: DeviceWeights) -> Result<Self, GpuError> {
        let scratch = &weights.device().scratch;
        if let Resident::Huffman(_) = weights.resident {
            let (a, b, c) = weights.geometry.scratch_bytes();
            scratch.reserve(a.max(b).max(c))?;
        }
        if weights.geometry.rmm_ok() {
            let g = &weights.geometry;
            let (ws, flags) = plan::split_buffers_bound(
                g.n_out,
                g.k,
                DEFAULT_MAX_BATCH,
                weights.device().info.sm_count,
            );
            scratch.reserve_split(ws, flags)?;
        }
        let lin = Linear { weights };
        lin.check_stream()?;
        Ok(lin)
    }

    /// Decodes a Huffman-resident weight's stream once on the device's stream (`huff_palette`,
    /// the cheapest output, one chain per chunk, into the scratch just reserved), recording its
    /// sub-chunk offsets on the way, and reads its error word (synchronizing). So a refused stream
    /// never becomes a layer (and its offsets are never read), and [`Linear::forward`] needs
    /// no check and no sync per call: device memory does not change after upload, and any later
    /// refusal still lands in the word ([`DeviceWeights::take_decode_error`]).
    fn check_stream(&self) -> Result<(), GpuError> {
        let Resident::Huffman(h) = &self.weights.resident else {
            return Ok(());
        };
        if h.n_chunks == 0 {
            return Ok(()); // nothing to decode (and no grid to launch)
        }
        let dev = self.weights.device();
        let stream = &dev.stream;
        let slot = dev.scratch.slot(SLOT);
        slot.acquire_on(stream)?;
        // SAFETY: the slot's buffer holds `capacity()` bytes, reserved above for every output of
        // this weight (`decode` checks the need); every input is this weight's live upload.
        let launched = unsafe {
            self.decode(
                stream,
                h,
                (HuffOutput::Palette, HuffRefill::CHUNKED),
                HuffLayout::RowMajor,
                slot.ptr(),
                slot.capacity(),
                0,
                true,
            )
        };
        slot.release_on(stream)?;
        drop(slot);
        launched?;
        self.weights.take_decode_error(stream)
    }

    /// A layer whose preprocess output and stream-K buffers the caller owns (the MLP scheduler's
    /// slots): nothing is reserved in the device's scratch pool. A Huffman-resident stream is
    /// decoded once into `check` (at least [`HuffOutput::Palette`]'s bytes) and checked, as
    /// [`Linear::new`] does. Run it with [`Linear::preprocess_raw`] and [`Linear::matmul_raw`];
    /// its [`Linear::forward`] refuses Huffman pipelines and stream-K plans (no pool scratch).
    pub fn with_own_scratch(
        weights: DeviceWeights,
        check: &mut CudaSlice<u8>,
    ) -> Result<Self, GpuError> {
        let lin = Linear { weights };
        let Resident::Huffman(h) = &lin.weights.resident else {
            return Ok(lin);
        };
        if h.n_chunks == 0 {
            return Ok(lin);
        }
        let stream = lin.weights.device().stream.clone();
        let have = check.len();
        let (p, _write) = check.device_ptr_mut(&stream);
        // SAFETY: `decode` checks `have` against the output size; the slice outlives the sync
        // in `take_decode_error` below.
        unsafe {
            lin.decode(
                &stream,
                h,
                (HuffOutput::Palette, HuffRefill::CHUNKED),
                HuffLayout::RowMajor,
                p,
                have,
                0,
                true,
            )?
        };
        lin.weights.take_decode_error(&stream)?;
        Ok(lin)
    }

    /// The preprocess a Huffman pipeline `plan` runs before its matmul, enqueued on `stream` into
    /// `out` on `ctas` blocks (0: the natural grid): tiled exponents / nibbles for the rmm
    /// pipelines, row-major bf16 for full decode. Refusals land in the weight's error word.
    ///
    /// # Safety
    /// `out` must be a live device buffer of at least `out_bytes` bytes (checked against the
    /// output size) that stays alive, and is not reused, until the matmul reading it completes.
    pub unsafe fn preprocess_raw(
        &self,
        stream: &CudaStream,
        plan: &Plan,
        out: u64,
        out_bytes: usize,
        ctas: u32,
    ) -> Result<(), GpuError> {
        self.check_residency(plan.pipeline)?;
        let Resident::Huffman(h) = &self.weights.resident else {
            return Err(self.plan_error(plan, "it has no preprocess".into()));
        };
        let output = match plan.preprocess.map(|e| e.variant) {
            // The refill follows the weight (sub256 where it holds sub-chunk offsets), as in forward.
            Some(Variant::Huff(v)) => v.output,
            _ => return Err(self.plan_error(plan, "it has no preprocess kernel".into())),
        };
        let layout = match (plan.pipeline, self.weights.geometry.orientation) {
            (ExecPipeline::FullDecode, _) => HuffLayout::RowMajor,
            (_, Orientation::Standard) => HuffLayout::TiledStandard,
            (_, Orientation::Transposed) => HuffLayout::TiledTransposed,
        };
        // SAFETY: `decode` checks the size; the caller vouches for `out` (this fn's contract).
        unsafe {
            self.decode(
                stream,
                h,
                (output, default_refill(h)),
                layout,
                out,
                out_bytes,
                ctas,
                false,
            )
        }
    }

    /// The matmul of `plan` with caller-owned buffers, enqueued on `stream`: Huffman pipelines
    /// read `pre`, the output of [`Linear::preprocess_raw`] for the same plan, ordered before
    /// this call (0 for the other residencies); stream-K partials and flags live in `split`.
    /// Enqueues only kernels (no allocation, no event, no sync), so it can be graph-captured.
    ///
    /// # Safety
    /// As [`Linear::forward_raw`] for `x` and `y`; `pre` must hold this weight's preprocess output
    /// for `plan` ([`Linear::decode_bytes`]) and `split` live buffers of the sizes it states,
    /// flags zero (the kernels leave them zero), none used concurrently by another launch.
    pub unsafe fn matmul_raw(
        &self,
        stream: &CudaStream,
        x: u64,
        y: u64,
        plan: &Plan,
        pre: u64,
        split: SplitBufs,
    ) -> Result<(), GpuError> {
        self.check_residency(plan.pipeline)?;
        let g = &self.weights.geometry;
        let (m, k, n_out) = (plan.m, g.k, g.n_out);
        if m == 0 {
            return Ok(());
        }
        if let Some(e) = plan.rmm {
            let fits = matches!(e.variant, Variant::Rmm(v)
                if v.transpose == g.transposed() && Some(v.operand) == plan.pipeline.rmm());
            if !fits || !g.rmm_ok() {
                return Err(self.plan_error(
                    plan,
                    format!("it was made for another weight ({})", g.shape_text()),
                ));
            }
        }
        let blas = &self.weights.device().blas;
        let x_bytes = (m * k * 2) as u64;
        let need_pre = plan.pipeline.residency() == Residency::Huffman;
        if need_pre && pre == 0 {
            return Err(self.plan_error(plan, "no preprocess output was given".into()));
        }
        match (&self.weights.resident, plan.pipeline) {
            (Resident::Raw(r), ExecPipeline::Cublas) => {
                let p = gemm_params(g.orientation, m, n_out, k)?;
                // SAFETY: `r.w` is this weight's upload; `x`/`y` per the contract.
                unsafe { blas.gemm_bf16(stream, &p, r.w.ptr, x, y) }
            }
            (Resident::Huffman(_), ExecPipeline::FullDecode) => {
                let p = gemm_params(g.orientation, m, n_out, k)?;
                // SAFETY: `pre` holds this weight's bf16 matrix (the contract).
                unsafe { blas.gemm_bf16(stream, &p, pre, x, y) }
            }
            (Resident::Raw(r), ExecPipeline::Raw) => {
                let (map, w) = self.raw_rmm_operand(r, plan)?;
                // SAFETY: `map` / `w` describe this weight's upload (its fragment blocks for the
                // RS twin); the rest per the contract.
                unsafe { self.rmm(stream, split, plan, x, x_bytes, y, map, w, [0, 0, 0]) }
            }
            (Resident::Palette(p), ExecPipeline::DirectPalette) => {
                let t = &p.rmm;
                // SAFETY: this weight's uploads for its geometry; the rest per the contract.
                unsafe {
                    self.rmm(
                        stream,
                        split,
                        plan,
                        x,
                        x_bytes,
                        y,
                        None,
                        [t.sm_tiles.ptr, p.nibble_tiles.ptr],
                        [t.tile_esc.ptr, t.esc_exp.ptr, p.palette.ptr],
                    )
                }
            }
            (Resident::Huffman(h), ExecPipeline::Exponent | ExecPipeline::PaletteTranscode) => {
                let Some(t) = &h.rmm else {
                    return Err(weights_error(&self.weights.name, LayoutError::NoRmmTables));
                };
                let esc = if plan.pipeline == ExecPipeline::PaletteTranscode {
                    [t.tile_esc.ptr, t.esc_exp.ptr, h.palette.ptr]
                } else {
                    [0, 0, 0]
                };
                // SAFETY: tiled sm and tables are this weight's uploads, `pre` its tiled
                // preprocess output (the contract).
                unsafe {
                    self.rmm(
                        stream,
                        split,
                        plan,
                        x,
                        x_bytes,
                        y,
                        None,
                        [t.sm_tiles.ptr, pre],
                        esc,
                    )
                }
            }
            (_, pipe) => Err(self.residency_error(pipe.as_str(), pipe.residency())),
        }
    }

    /// The uploaded weight.
    pub fn weights(&self) -> &DeviceWeights {
        &self.weights
    }

    /// Gives the weight back (e.g. to change its residency).
    pub fn into_weights(self) -> DeviceWeights {
        self.weights
    }

    /// Output features (rows of W).
    pub fn n_out(&self) -> usize {
        self.weights.geometry.n_out
    }

    /// Input features (columns of W).
    pub fn k(&self) -> usize {
        self.weights.geometry.k
    }

    /// The default plan of `pipeline` at batch `m` (see [`plan::default_variant`]).
    pub fn plan(&self, pipeline: ExecPipeline, m: usize) -> Result<Plan, GpuError> {
        self.check_residency(pipeline)?;
        // Fragment-layout palette weights take the RS rmm (their only form); raw weights keep
        // the SS default even with a fragment copy (the RS twin is picked explicitly).
        let a_src = match pipeline {
            ExecPipeline::DirectPalette => self.weights.resident.default_a_src(),
            _ => ASource::Smem,
        };
        plan::plan_for(
            &self.weights.geometry,
            pipeline,
            m,
            None,
            a_src,
            self.weights.device().info.sm_count,
        )
    }

    /// A plan with an explicit rmm variant (the benchmark's search, a tuning table).
    pub fn plan_with(
        &self,
        pipeline: ExecPipeline,
        m: usize,
        rmm: &'static RegistryEntry,
    ) -> Result<Plan, GpuError> {
        self.check_residency(pipeline)?;
        plan::plan(
            &self.weights.geometry,
            pipeline,
            m,
            Some(rmm),
            self.weights.device().info.sm_count,
        )
    }

    /// The tuned plan at batch `m`: `table`'s nearest bucket for this shape and residency, else
    /// the default ([`tuner::plan_auto`]); the [`Source`] says which, for logging.
    pub fn plan_auto(&self, table: &Table, m: usize) -> Result<(Plan, Source), GpuError> {
        tuner::plan_auto(self, table, m)
    }

    fn check_residency(&self, pipeline: ExecPipeline) -> Result<(), GpuError> {
        if pipeline.residency() != self.weights.resident.residency() {
            return Err(self.residency_error(pipeline.as_str(), pipeline.residency()));
        }
        Ok(())
    }

    fn residency_error(&self, what: &str, needs: Residency) -> GpuError {
        GpuError::Residency {
            pipeline: what.to_string(),
            needs,
            actual: self.weights.resident.residency(),
            tensor: self.weights.name.clone(),
        }
    }

    /// What the raw rmm reads of a raw-resident weight: the RS twin its fragment blocks by bulk
    /// copy (no weight tensor map), the SS kernel the bf16 matrix through a TMA map. The Linear's
    /// own forward and the stack's `matmul_raw` both go through here, so they cannot disagree.
    fn raw_rmm_operand(
        &self,
        r: &RawDev,
        plan: &Plan,
    ) -> Result<(Option<tma::TmaDesc>, [u64; 2]), GpuError> {
        let g = &self.weights.geometry;
        let rs = matches!(plan.rmm.map(|e| e.variant), Some(Variant::Rmm(v)) if v.a_src == ASource::Regs);
        match (rs, &r.frags) {
            (true, Some(f)) => Ok((None, [f.ptr, 0])),
            (true, None) => Err(self.plan_error(
                plan,
                "the RS raw rmm reads fragment blocks, which this upload lacks \
                 (DeviceWeights::raw_with(.., BlockLayout::Fragments))"
                    .into(),
            )),
            (false, _) => {
                let w = tma::raw_weight_map(g.transposed(), g.n_out, g.k)
                    .encode(r.w.ptr, r.w.bytes() as u64)?;
                Ok((Some(w), [0, 0]))
            }
        }
    }

    fn plan_error(&self, plan: &Plan, reason: String) -> GpuError {
        GpuError::PlanMismatch {
            plan: format!("{} ({})", plan.pipeline, plan.variant_name()),
            tensor: self.weights.name.clone(),
            reason,
        }
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
        let short = |what: &str, have: usize, need: usize| GpuError::BufferTooSmall {
            what: format!("{what} of {} (m={m})", self.weights.name),
            have: 2 * have,
            need: 2 * need,
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
    pub unsafe fn forward_raw(
        &self,
        stream: &CudaStream,
        x: u64,
        y: u64,
        plan: &Plan,
    ) -> Result<(), GpuError> {
        self.check_residency(plan.pipeline)?;
        let g = &self.weights.geometry;
        let (m, k, n_out) = (plan.m, g.k, g.n_out);
        if m == 0 {
            return Ok(());
        }
        let dev = self.weights.device();
        let transpose = g.transposed();
        let x_bytes = (m * k * 2) as u64;
        if let Some(e) = plan.rmm {
            // A plan made for another weight must not launch a kernel of the wrong orientation.
            // Nor one whose block layout (A-operand form) these buffers do not hold.
            let fits = matches!(e.variant, Variant::Rmm(v)
                if v.transpose == transpose && Some(v.operand) == plan.pipeline.rmm()
                    && self.weights.resident.feeds(v.a_src));
            if !fits || !g.rmm_ok() {
                return Err(self.plan_error(
                    plan,
                    format!("it was made for another weight ({})", g.shape_text()),
                ));
            }
            // A CTA count the kernel would trap on (an empty range, one past `max_kb`) is refused
            // here, before the split buffers are sized from it (the launch checks it again).
            if !plan::ctas_valid(e, n_out, k, m, plan.ctas) {
                return Err(
                    self.plan_error(plan, format!("{} CTAs cannot share its units", plan.ctas))
                );
            }
            let (ws, flags) = plan::split_buffers(e, n_out, m, plan.ctas);
            dev.scratch.reserve_split(ws, flags)?; // no-op unless m exceeds DEFAULT_MAX_BATCH
        }
        if plan.pipeline == ExecPipeline::Cublas {
            if let Resident::Raw(r) = &self.weights.resident {
                let p = gemm_params(g.orientation, m, n_out, k)?;
                // SAFETY: `r.w` is this weight's live upload of `n_out × k` bf16 values; the
                // caller vouches for `x` and `y` (this function's contract).
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
                let (map, w) = self.raw_rmm_operand(r, plan)?;
                // SAFETY: `map` / `w` describe this weight's live upload (its fragment blocks for
                // the RS twin, checked by `feeds` above); `x`/`y` per the contract.
                unsafe {
                    self.rmm(
                        stream,
                        SplitBufs::of(s),
                        plan,
                        x,
                        x_bytes,
                        y,
                        map,
                        w,
                        [0, 0, 0],
                    )
                }
            }
            (Resident::Palette(p), ExecPipeline::DirectPalette) => {
                let (t, w) = (&p.rmm, [p.rmm.sm_tiles.ptr, p.nibble_tiles.ptr]);
                // SAFETY: tiled blocks, records, escape exponents and palette are this weight's
                // live uploads for its geometry; `x`/`y` per the contract.
                unsafe {
                    self.rmm(
                        stream,
                        SplitBufs::of(s),
                        plan,
                        x,
                        x_bytes,
                        y,
                        None,
                        w,
                        [t.tile_esc.ptr, t.esc_exp.ptr, p.palette.ptr],
                    )
                }
            }
            // SAFETY: `h` is this weight's live Huffman upload, `s` the locked slot; `x`/`y` per the contract.
            (Resident::Huffman(h), pipe) => unsafe {
                self.huffman_pipeline(stream, s, h, pipe, plan, x, x_bytes, y)
            },
            (_, pipe) => Err(self.residency_error(pipe.as_str(), pipe.residency())),
        };
        slot.release_on(stream)?;
        r
    }

    /// The Huffman-resident pipelines: the preprocess into `slot`, then cuBLAS or the rmm.
    ///
    /// # Safety
    /// As [`Linear::forward_raw`]; `h` must be this weight's upload and `slot` locked by the caller.
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
        let transpose = g.transposed();
        let output = match plan.preprocess.map(|e| e.variant) {
            Some(Variant::Huff(v)) => v.output,
            _ => {
                return Err(
                    self.plan_error(plan, format!("{pipe} needs a Huffman preprocess kernel"))
                )
            }
        };
        match pipe {
            ExecPipeline::FullDecode => {
                // SAFETY: the slot's buffer holds `capacity()` bytes (`decode` checks the need).
                unsafe {
                    self.decode(
                        stream,
                        h,
                        (output, default_refill(h)),
                        HuffLayout::RowMajor,
                        slot.ptr(),
                        slot.capacity(),
                        0,
                        false,
                    )?
                };
                let p = gemm_params(g.orientation, m, n_out, k)?;
                // SAFETY: the slot now holds this weight's bf16 matrix; `x`/`y` per the contract.
                unsafe {
                    self.weights
                        .device()
                        .blas
                        .gemm_bf16(stream, &p, slot.ptr(), x, y)
                }
            }
            ExecPipeline::Exponent | ExecPipeline::PaletteTranscode => {
                let Some(t) = &h.rmm else {
                    return Err(weights_error(&self.weights.name, LayoutError::NoRmmTables));
                };
                let layout = if transpose {
                    HuffLayout::TiledTransposed
                } else {
                    HuffLayout::TiledStandard
                };
                // SAFETY: as for full decode.
                unsafe {
                    self.decode(
                        stream,
                        h,
                        (output, default_refill(h)),
                        layout,
                        slot.ptr(),
                        slot.capacity(),
                        0,
                        false,
                    )?
                };
                let esc = match pipe {
                    ExecPipeline::PaletteTranscode => {
                        [t.tile_esc.ptr, t.esc_exp.ptr, h.palette.ptr]
                    }
                    _ => [0, 0, 0],
                };
                // SAFETY: tiled sm and tables are this weight's uploads, the slot holds the
                // tiled preprocess output just enqueued on the same stream.
                unsafe {
                    self.rmm(
                        stream,
                        SplitBufs::of(slot),
                        plan,
                        x,
                        x_bytes,
                        y,
                        None,
                        [t.sm_tiles.ptr, slot.ptr()],
                        esc,
                    )
                }
            }
            other => Err(self.residency_error(other.as_str(), other.residency())),
        }
    }

    /// Launches the plan's rmm: `tm_w` the raw weight map (None: compressed, `tm_x` is passed in
    /// its place), `w` = (w0_tiles, w1_tiles), `esc` = (tile_esc, esc_exp, palette); 0 when unused.
    ///
    /// # Safety
    /// Every nonzero address must be a live device buffer the variant reads (this weight's
    /// uploads, the slot's buffers); `x` and `y` as in [`Linear::forward_raw`].
    #[allow(clippy::too_many_arguments)]
    unsafe fn rmm(
        &self,
        stream: &CudaStream,
        split: SplitBufs,
        plan: &Plan,
        x: u64,
        x_bytes: u64,
        y: u64,
        tm_w: Option<tma::TmaDesc>,
        w: [u64; 2],
        esc: [u64; 3],
    ) -> Result<(), GpuError> {
        let Some(entry) = plan.rmm else {
            return Err(self.plan_error(plan, format!("{} needs an rmm variant", plan.pipeline)));
        };
        let Variant::Rmm(v) = entry.variant else {
            return Err(GpuError::WrongVariant {
                variant: entry.name.to_string(),
                expected: "rmm".into(),
            });
        };
        let g = &self.weights.geometry;
        let (need_ws, need_flags) = plan::split_buffers(entry, g.n_out, plan.m, plan.ctas);
        let ((ws, ws_cap), (flags, flags_cap)) =
            ((split.ws, split.ws_bytes), (split.flags, split.flags_bytes));
        for (what, have, need) in [
            ("workspace", ws_cap, need_ws),
            ("flags", flags_cap, need_flags),
        ] {
            if need > have {
                return Err(GpuError::BufferTooSmall {
                    what: format!("stream-K {what} for {}", entry.name),
                    have,
                    need,
                });
            }
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
        // SAFETY: the caller vouches for every address (this function's contract); the tensor
        // maps were validated against their buffers above.
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
            return Err(self.residency_error("huffman decode", Residency::Huffman));
        };
        self.decode_into_refill(stream, output, default_refill(h), tiled, ctas, out)
    }

    /// The refill [`Linear::decode_into`] and the pipelines use for this weight:
    /// [`HuffRefill::DEFAULT`] when it has sub-chunk offsets, else [`HuffRefill::CHUNKED`].
    pub fn default_refill(&self) -> Option<HuffRefill> {
        match &self.weights.resident {
            Resident::Huffman(h) => Some(default_refill(h)),
            _ => None,
        }
    }

    /// [`Linear::decode_into_ctas`] with the decoder's `refill` variant chosen (benchmarks and tests
    /// compare them; everything else runs [`Linear::default_refill`]). `sub256` needs a weight
    /// with sub-chunk offsets.
    pub fn decode_into_refill<T>(
        &self,
        stream: &CudaStream,
        output: HuffOutput,
        refill: HuffRefill,
        tiled: bool,
        ctas: u32,
        out: &mut impl DevicePtrMut<T>,
    ) -> Result<(), GpuError> {
        let Resident::Huffman(h) = &self.weights.resident else {
            return Err(self.residency_error("huffman decode", Residency::Huffman));
        };
        let g = &self.weights.geometry;
        let layout = match (tiled, output, g.orientation) {
            (false, _, _) | (_, HuffOutput::Bf16, _) => HuffLayout::RowMajor,
            (true, _, _) if !g.rmm_ok() => {
                return Err(weights_error(
                    &self.weights.name,
                    LayoutError::Untileable {
                        n_out: g.n_out,
                        k: g.k,
                    },
                ))
            }
            (true, _, Orientation::Standard) => HuffLayout::TiledStandard,
            (true, _, Orientation::Transposed) => HuffLayout::TiledTransposed,
        };
        let have = out.len() * std::mem::size_of::<T>();
        let (p, _write) = out.device_ptr_mut(stream);
        // SAFETY: `decode` checks `have` against the output size before launching.
        unsafe { self.decode(stream, h, (output, refill), layout, p, have, ctas, false) }
    }

    /// Blocks a decode with `v` on `ctas` blocks launches: `ctas` (at most the natural grid), or for
    /// 0 the runtime's default: the natural grid, except that sub-chunk decoders fill every SM once
    /// when their natural grid (one unit per warp) is larger. Persistent warps then share the last
    /// units over all SMs, where a natural grid of 3 units per warp left the SMs holding 4 or 5
    /// blocks unevenly loaded (60 units on some, 48 on others, for 14336 x 4096).
    pub fn decode_ctas(&self, v: HuffVariant, ctas: u32) -> Result<u32, GpuError> {
        let Resident::Huffman(h) = &self.weights.resident else {
            return Err(self.residency_error("huffman decode", Residency::Huffman));
        };
        let asked = match (ctas, v.refill.sub_symbols()) {
            (0, Some(_)) => launch::decode_blocks_of(&v, self.weights.device().info.sm_count),
            _ => ctas,
        };
        let entry = plan::huff_variant_entry(v.output, v.refill)?;
        Ok(launch::huff_grid(entry, h.n_chunks, asked)?.0)
    }

    /// Enqueues `huff_<output>_<refill>` writing `layout` into `out` on `ctas` blocks (0: the
    /// runtime's default, [`Linear::decode_ctas`]). A refusal of the stream lands in the weight's error word. `record`: a chunk
    /// decoder (word / vec4) also writes the weight's sub-chunk offsets (the validating pass).
    ///
    /// # Safety
    /// `out` must be a live device buffer of at least `out_bytes` bytes (checked against the
    /// output size here) that stays alive until the enqueued work completes.
    #[allow(clippy::too_many_arguments)]
    unsafe fn decode(
        &self,
        stream: &CudaStream,
        h: &HuffmanDev,
        (output, refill): (HuffOutput, HuffRefill),
        layout: HuffLayout,
        out: u64,
        out_bytes: usize,
        ctas: u32,
        record: bool,
    ) -> Result<(), GpuError> {
        let need = self.decode_bytes(output);
        let subs = h.sub_offsets.as_ref().map_or(0, |b| b.ptr);
        // sub256 reads the offsets; the chunk decoders record them only in the validating pass.
        let sub_offsets = match (refill.sub_symbols(), record) {
            (Some(_), _) if subs == 0 => {
                return Err(weights_error(
                    &self.weights.name,
                    LayoutError::NoSubOffsets(h.chunk_symbols),
                ))
            }
            (Some(_), _) | (None, true) => subs,
            (None, false) => 0,
        };
        if out_bytes < need || out == 0 {
            let what = format!("huff_{} output for {}", output.as_str(), self.weights.name);
            return Err(GpuError::BufferTooSmall {
                what,
                have: out_bytes,
                need,
            });
        }
        let g = &self.weights.geometry;
        let kernel = self
            .weights
            .device()
            .kernels
            .get_entry(plan::huff_variant_entry(output, refill)?)?;
        let ctas = self.decode_ctas(HuffVariant { output, refill }, ctas)?;
        let args = huff_args(h, g, (output, refill), layout, out, sub_offsets, ctas)
            .map_err(|p| weights_error(&self.weights.name, p))?;
        // SAFETY: every input is this weight's live upload for its geometry; `out` per the contract.
        unsafe { launch::huff(stream, &kernel, &args) }
    }
}

/// The refill the runtime decodes `h` with: one chain per sub-chunk when it has the offsets.
fn default_refill(h: &HuffmanDev) -> HuffRefill {
    if h.sub_offsets.is_some() {
        HuffRefill::DEFAULT
    } else {
        HuffRefill::CHUNKED
    }
}

/// Arguments of `huff_<output>` for the upload `h` of a weight of geometry `g`, writing `out` on
/// `ctas` blocks (0: the natural grid), with `sub_offsets` (0: none). `huff_bf16`'s `layout` says where it reads sm (its output
/// is row-major), so it gets the sm copy's; the others' say where they write.
fn huff_args(
    h: &HuffmanDev,
    g: &Geometry,
    (output, refill): (HuffOutput, HuffRefill),
    layout: HuffLayout,
    out: u64,
    sub_offsets: u64,
    ctas: u32,
) -> Result<HuffArgs, LayoutError> {
    let (sm, sm_layout) = h.sm_input(g.orientation)?;
    Ok(HuffArgs {
        bits: h.bits.ptr,
        chunk_offsets: h.chunk_offsets.ptr,
        tables: h.tables_for(refill),
        palette: h.palette.ptr,
        sm,
        esc_bitmap: h.esc_bitmap.ptr,
        esc_prefix: h.esc_prefix.ptr,
        esc_exp: h.esc_exp.ptr,
        out,
        rows: g.rows as u64,
        cols: g.cols as u64,
        padded_cols: g.padded_cols as u64,
        chunk_symbols: h.chunk_symbols,
        n_chunks: h.n_chunks,
        layout: if output == HuffOutput::Bf16 {
            sm_layout
        } else {
            layout
        },
        stream_bits: h.stream_bits,
        stream_bytes: h.stream_bytes,
        esc_groups: (h.esc_exp.len / GROUP as usize) as u32,
        err: h.err.ptr,
        sub_offsets,
        ctas,
    })
}
