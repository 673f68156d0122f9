//! `MlpStack`: L MLP layers on one GPU, each easy (palette-resident) or hard (Huffman-resident),
//! run back to back (`x → layer 0 → … → layer L-1 → y`) with every buffer allocated at build time.
//!
//! ```ignore
//! let stack = MlpStack::new(&dev, layers, max_m)?;           // buffers for batches up to max_m
//! let plan = stack.plan(m, &PlanOptions::tuned(&table))?;    // per batch size; cheap, cacheable
//! unsafe { stack.forward_raw(&stream, x_ptr, y_ptr, &plan)? } // enqueues only: graph-capturable
//! ```

use std::sync::Arc;

pub use crate::gpu::launch::decode_blocks_of;
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut};
use unweight_codegen::variant::{HuffOutput, HuffRefill, HuffVariant};

use crate::gpu::device::GpuDevice;
use crate::gpu::error::{DriverContext, GpuError};
use crate::gpu::harness::check::twin_plan;
use crate::gpu::layout::Residency;
use crate::gpu::linear::SplitBufs;
use crate::gpu::mlp::budget::LayerKind;
use crate::gpu::mlp::layer::{Mlp, Scratch};
use crate::gpu::plan::{self, ExecPipeline, Plan};
use crate::gpu::scheduler::{order, Order, Scheduler, Work};
use crate::gpu::tuner::{best_stack_split, Table};

/// How [`MlpStack::plan`] chooses.
#[derive(Clone, Copy, Debug)]
pub struct PlanOptions<'a> {
    /// Tuned variants and CTA counts per matrix ([`Linear::plan_auto`](crate::gpu::linear::Linear::plan_auto));
    /// entries whose pipeline is not the layer's are ignored (defaults instead).
    pub table: Option<&'a Table>,
    /// Hard layers decode on the second stream, overlapped with earlier layers (else on the
    /// caller's stream, right before their layer: the no-overlap baseline).
    pub overlap: bool,
    /// SMs a concurrent decode keeps: the matmuls of layers that overlap a decode launch on the
    /// rest. `None`: the table's `decode_sms` for the hard matrices, else [`default_decode_sms`].
    /// 0 (given, or where the table's pair times sum least for serial): no overlap, as with
    /// `overlap: false`. To measure the share on the stack itself, pass what
    /// [`tune_stack_split`](crate::gpu::tuner::split::tune_stack_split) returns.
    pub decode_sms: Option<u32>,
    /// Layers ahead of its compute a hard layer's decode is issued ([`order::overlapped`]).
    pub window: usize,
    /// What raw-resident layers run: [`ExecPipeline::Raw`] (the rmm on bf16, the bit-exact
    /// twin) or [`ExecPipeline::Cublas`] (the reference).
    pub raw: ExecPipeline,
}

impl Default for PlanOptions<'_> {
    fn default() -> Self {
        PlanOptions {
            table: None,
            overlap: true,
            decode_sms: None,
            window: 1,
            raw: ExecPipeline::Raw,
        }
    }
}

impl<'a> PlanOptions<'a> {
    /// The defaults with a tuning table.
    pub fn tuned(table: &'a Table) -> Self {
        PlanOptions {
            table: Some(table),
            ..Default::default()
        }
    }
}

/// SMs a decode keeps by default while matmuls run beside it: a quarter of the GPU.
pub fn default_decode_sms(sm_count: u32) -> u32 {
    (sm_count / 4).max(1)
}

/// SMs the decodes of an overlapped forward keep, 0 for a serial one: the caller's `requested`
/// share, else the tuning table's (`tabled`, 0 where overlap measured slower than serial), else
/// [`default_decode_sms`]; at most all SMs but one.
pub fn decode_split(
    overlap: bool,
    requested: Option<u32>,
    tabled: Option<u32>,
    sm_count: u32,
) -> u32 {
    if !overlap {
        return 0;
    }
    requested
        .or(tabled)
        .unwrap_or_else(|| default_decode_sms(sm_count))
        .min(sm_count - 1)
}

/// Blocks of the stack's Huffman decode (palette output, default refill) that fill `sms` SMs.
pub fn decode_blocks(sms: u32) -> u32 {
    decode_blocks_of(
        &HuffVariant {
            output: HuffOutput::Palette,
            refill: HuffRefill::DEFAULT,
        },
        sms,
    )
}

/// What one forward at batch `m` runs: per layer one plan per matrix, the enqueue order, and
/// the decode grid.
#[derive(Clone, Debug)]
pub struct StackPlan {
    /// The batch: `x` and `y` are `[m][hidden]`.
    pub m: usize,
    /// Per layer, one plan per matrix in the order the layer consumes them.
    pub layers: Vec<Vec<Plan>>,
    /// What the scheduler enqueues, in order: decodes, computes, and which layers overlap one.
    pub order: Order,
    /// Hard layers decode on the second stream (else on the caller's, right before their layer).
    pub overlap: bool,
    /// Blocks of each overlapped decode (0: the natural grid, when not overlapped).
    pub decode_ctas: u32,
    /// SMs left to decodes by overlapped layers' matmuls (0 when none overlaps).
    pub decode_sms: u32,
}

/// L MLP layers on one GPU with their preallocated buffers and the scheduler.
pub struct MlpStack {
    dev: Arc<GpuDevice>,
    layers: Vec<Arc<Mlp>>,
    max_m: usize,
    /// Own the memory `ptrs` points to: gate, up, the two hidden buffers, stream-K ws and flags.
    _buffers: Buffers,
    slots: Vec<CudaSlice<u8>>,
    ptrs: Ptrs,
    sched: Scheduler,
}

type Buffers = (
    CudaSlice<u16>,
    CudaSlice<u16>,
    [CudaSlice<u16>; 2],
    CudaSlice<u8>,
    CudaSlice<u8>,
);

/// Device addresses of the stack's buffers, taken once (they never move).
struct Ptrs {
    gate: u64,
    up: u64,
    hidden: [u64; 2],
    split: SplitBufs,
    slots: Vec<u64>,
}

impl MlpStack {
    /// Builds a stack of `layers` (their widths must chain) for batches up to `max_m`: the
    /// intermediate and stream-K buffers and, when a layer is hard, the two preprocess slots.
    pub fn new(dev: &Arc<GpuDevice>, layers: Vec<Mlp>, max_m: usize) -> Result<Self, GpuError> {
        Self::from_shared(dev, layers.into_iter().map(Arc::new).collect(), max_m)
    }

    /// [`MlpStack::new`] over layers shared with other stacks (benchmarks compose mixes of the
    /// same uploaded layers); each stack has its own buffers and slots.
    pub fn from_shared(
        dev: &Arc<GpuDevice>,
        layers: Vec<Arc<Mlp>>,
        max_m: usize,
    ) -> Result<Self, GpuError> {
        let err = |reason: String| GpuError::Mlp {
            layer: "stack".into(),
            reason,
        };
        let first = layers.first().ok_or_else(|| err("no layers".into()))?;
        let hidden = first.hidden();
        if let Some((i, l)) = layers
            .iter()
            .enumerate()
            .find(|(_, l)| l.hidden() != hidden)
        {
            return Err(err(format!(
                "layer {i} is {} wide, layer 0 is {hidden}",
                l.hidden()
            )));
        }
        if max_m == 0 {
            return Err(err("max_m must be at least 1".into()));
        }
        let inter = layers.iter().map(|l| l.inter()).max().unwrap_or(0);
        let hard = layers
            .iter()
            .filter(|l| l.residency() == Residency::Huffman)
            .count();
        let slot_bytes = layers
            .iter()
            .filter(|l| l.residency() == Residency::Huffman)
            .map(|l| l.slot_layout().1)
            .max()
            .unwrap_or(0);
        let (mut ws_bytes, mut flag_bytes) = (16, 16);
        for lin in layers.iter().flat_map(|l| l.matrices()) {
            let (w, f) = plan::split_buffers_bound(lin.n_out(), lin.k(), max_m, dev.info.sm_count);
            ws_bytes = ws_bytes.max(w);
            flag_bytes = flag_bytes.max(f);
        }
        let s = &dev.stream;
        let alloc16 = |n: usize, what: &str| {
            s.alloc_zeros::<u16>(n.max(8))
                .ctx(|| format!("allocating the stack's {what} ({n} values)"))
        };
        let alloc8 = |n: usize, what: &str| {
            s.alloc_zeros::<u8>(n.max(16))
                .ctx(|| format!("allocating the stack's {what} ({n} bytes)"))
        };
        let gate = alloc16(max_m * inter, "gate buffer")?;
        let up = alloc16(max_m * inter, "up buffer")?;
        let hidden_bufs = [
            alloc16(max_m * hidden, "hidden buffer")?,
            alloc16(max_m * hidden, "hidden buffer")?,
        ];
        let ws = alloc8(ws_bytes, "stream-K workspace")?;
        let flags = alloc8(flag_bytes, "stream-K flags")?;
        let slots = (0..order::SLOTS.min(hard))
            .map(|_| alloc8(slot_bytes, "preprocess slot"))
            .collect::<Result<Vec<_>, _>>()?;
        s.synchronize().ctx(|| "allocating the stack".into())?;
        let p16 = |b: &CudaSlice<u16>| b.device_ptr(s).0;
        let ptrs = Ptrs {
            gate: p16(&gate),
            up: p16(&up),
            hidden: [p16(&hidden_bufs[0]), p16(&hidden_bufs[1])],
            split: SplitBufs {
                ws: ws.device_ptr(s).0,
                ws_bytes: ws.len(),
                flags: flags.device_ptr(s).0,
                flags_bytes: flags.len(),
            },
            slots: slots.iter().map(|b| b.device_ptr(s).0).collect(),
        };
        Ok(MlpStack {
            sched: Scheduler::new(&dev.ctx)?,
            dev: dev.clone(),
            layers,
            max_m,
            _buffers: (gate, up, hidden_bufs, ws, flags),
            slots,
            ptrs,
        })
    }

    /// The layers, in order.
    pub fn layers(&self) -> &[Arc<Mlp>] {
        &self.layers
    }

    /// The GPU the stack lives on.
    pub fn device(&self) -> &Arc<GpuDevice> {
        &self.dev
    }

    /// The model width: `x` and `y` are `[m][hidden]`.
    pub fn hidden(&self) -> usize {
        self.layers[0].hidden()
    }

    /// The largest batch the buffers hold.
    pub fn max_m(&self) -> usize {
        self.max_m
    }

    /// Easy or hard per layer (raw-resident reference layers count as easy: no decode).
    pub fn kinds(&self) -> Vec<LayerKind> {
        self.layers
            .iter()
            .map(|l| match l.residency() {
                Residency::Huffman => LayerKind::Hard,
                _ => LayerKind::Easy,
            })
            .collect()
    }

    /// Device bytes of the weights as resident.
    pub fn weight_bytes(&self) -> usize {
        self.layers.iter().map(|l| l.resident_bytes()).sum()
    }

    /// Device bytes of the preprocess slots.
    pub fn slot_bytes(&self) -> usize {
        self.slots.iter().map(CudaSlice::len).sum()
    }

    /// What the stack keeps resident for its weights: weights plus slots (the budget's measure).
    pub fn resident_bytes(&self) -> usize {
        self.weight_bytes() + self.slot_bytes()
    }

    /// The bytes the same matrices take as BF16.
    pub fn bf16_bytes(&self) -> usize {
        self.layers
            .iter()
            .flat_map(|l| l.matrices())
            .map(|m| 2 * m.n_out() * m.k())
            .sum()
    }

    /// The plan of one forward at batch `m` (1 ≤ m ≤ `max_m`).
    pub fn plan(&self, m: usize, opts: &PlanOptions) -> Result<StackPlan, GpuError> {
        self.check_m(m)?;
        let kinds = self.kinds();
        let sm_count = self.dev.info.sm_count;
        let split = decode_split(
            opts.overlap,
            opts.decode_sms,
            self.table_decode_sms(opts.table, m),
            sm_count,
        );
        let overlap = split > 0;
        let order = if overlap {
            order::overlapped(&kinds, opts.window)
        } else {
            order::serial(&kinds)
        };
        let overlapping = order.overlaps.iter().any(|&o| o);
        let decode_sms = if overlapping { split } else { 0 };
        let mut layers = Vec::with_capacity(self.layers.len());
        for (l, layer) in self.layers.iter().enumerate() {
            let pipe = match layer.residency() {
                Residency::Palette => ExecPipeline::DirectPalette,
                Residency::Huffman => ExecPipeline::PaletteTranscode,
                Residency::Raw => opts.raw,
            };
            let mut plans = Vec::new();
            for lin in layer.matrices() {
                let mut p = match opts.table {
                    Some(t) => match lin.plan_auto(t, m)? {
                        (p, _) if p.pipeline == pipe => p,
                        _ => lin.plan(pipe, m)?,
                    },
                    None => lin.plan(pipe, m)?,
                };
                if let Some(e) = p.rmm {
                    let sms = if order.overlaps[l] {
                        sm_count - decode_sms
                    } else {
                        sm_count
                    };
                    let pipeline = p.pipeline;
                    let resize = || plan::default_ctas(pipeline, e, lin.n_out(), lin.k(), m, sms);
                    if order.overlaps[l] && decode_sms > 0 {
                        p.ctas = resize();
                    }
                    // A tuned CTA count whose partials exceed the stack's buffers (sized for the
                    // counts `choose_ctas` picks) falls back to the default count.
                    let (ws, flags) = plan::split_buffers(e, lin.n_out(), m, p.ctas);
                    if ws > self.ptrs.split.ws_bytes || flags > self.ptrs.split.flags_bytes {
                        p.ctas = resize();
                    }
                }
                plans.push(p);
            }
            layers.push(plans);
        }
        Ok(StackPlan {
            m,
            layers,
            order,
            overlap,
            decode_ctas: if overlapping {
                decode_blocks(decode_sms)
            } else {
                0
            },
            decode_sms,
        })
    }

    /// The decode share the table gives this stack's hard matrices at `m`: the one with the least
    /// summed decode + matmul pair time over them ([`best_stack_split`]; 0, serial, where that
    /// is least), else (a table without pair times) the largest `decode_sms` they record.
    fn table_decode_sms(&self, table: Option<&Table>, m: usize) -> Option<u32> {
        let t = table?;
        let entries: Vec<_> = self
            .layers
            .iter()
            .filter(|l| l.residency() == Residency::Huffman)
            .flat_map(|l| l.matrices())
            .filter_map(|lin| {
                let g = lin.weights().geometry;
                t.nearest(g.n_out, g.k, g.orientation, Residency::Huffman, m)
            })
            .collect();
        let points: Vec<&[(u32, f64)]> = entries.iter().map(|e| &e.choice.split_us[..]).collect();
        best_stack_split(&points)
            .or_else(|| entries.iter().filter_map(|e| e.choice.decode_sms).max())
    }

    /// The plan of this stack (raw-resident, the same matrices) whose forward must equal
    /// `of`'s bit for bit: every matmul the raw rmm of the same tile and CTA count, in the
    /// same order (no decodes: this stack has no hard layers).
    pub fn plan_twin(&self, of: &StackPlan) -> Result<StackPlan, GpuError> {
        self.check_m(of.m)?;
        if of.layers.len() != self.layers.len() {
            return Err(GpuError::Mlp {
                layer: "stack".into(),
                reason: format!(
                    "a plan of {} layers for a stack of {}",
                    of.layers.len(),
                    self.layers.len()
                ),
            });
        }
        let mut layers = Vec::new();
        for (layer, plans) in self.layers.iter().zip(&of.layers) {
            let mut twins = Vec::new();
            for (lin, p) in layer.matrices().iter().zip(plans) {
                let t = twin_plan(lin, p)?.ok_or_else(|| GpuError::Mlp {
                    layer: lin.weights().name.clone(),
                    reason: format!("no raw twin for {}", p.variant_name()),
                })?;
                twins.push(t);
            }
            layers.push(twins);
        }
        Ok(StackPlan {
            m: of.m,
            layers,
            order: order::serial(&self.kinds()),
            overlap: false,
            decode_ctas: 0,
            decode_sms: 0,
        })
    }

    fn check_m(&self, m: usize) -> Result<(), GpuError> {
        if m == 0 || m > self.max_m {
            return Err(GpuError::Mlp {
                layer: "stack".into(),
                reason: format!("batch {m} outside 1..={} (the buffers' size)", self.max_m),
            });
        }
        Ok(())
    }

    /// Enqueues one forward `y = stack(x)` on `stream` (x, y bf16 `[m][hidden]`).
    pub fn forward(
        &self,
        stream: &CudaStream,
        x: &impl DevicePtr<u16>,
        y: &mut impl DevicePtrMut<u16>,
        plan: &StackPlan,
    ) -> Result<(), GpuError> {
        let need = plan.m * self.hidden();
        for (what, have) in [("x", x.len()), ("y", y.len())] {
            if have < need {
                return Err(GpuError::BufferTooSmall {
                    what: format!("{what} of the MLP stack (m={})", plan.m),
                    have: 2 * have,
                    need: 2 * need,
                });
            }
        }
        let (xp, _r) = x.device_ptr(stream);
        let (yp, _w) = y.device_ptr_mut(stream);
        // SAFETY: both hold m × hidden values (checked); the guards keep cudarc's tracking
        // informed until the work is enqueued.
        unsafe { self.forward_raw(stream, xp, yp, plan) }
    }

    /// [`MlpStack::forward`] on raw device addresses; enqueues kernels and events only (no
    /// allocation, no sync), so it can be captured in a CUDA graph (run it once eagerly first,
    /// so every kernel is loaded).
    ///
    /// # Safety
    /// `x` and `y` must address `plan.m × hidden` bf16 values, 16-byte aligned, live until the
    /// work completes, and not overlap each other or the stack's buffers. Forwards of one stack
    /// must be ordered (one stream, or the caller's events).
    pub unsafe fn forward_raw(
        &self,
        stream: &CudaStream,
        x: u64,
        y: u64,
        plan: &StackPlan,
    ) -> Result<(), GpuError> {
        self.check_m(plan.m)?;
        if plan.layers.len() != self.layers.len() || plan.order.overlaps.len() != self.layers.len()
        {
            return Err(GpuError::Mlp {
                layer: "stack".into(),
                reason: "the plan was made for another stack".into(),
            });
        }
        let hard = self.kinds().contains(&LayerKind::Hard);
        let work = StackWork {
            stack: self,
            plan,
            x,
            y,
        };
        // SAFETY: the caller vouches for x and y; every other buffer is the stack's own, sized
        // for max_m at build; the scheduler orders slot reuse.
        unsafe {
            self.sched
                .run(stream, &plan.order, plan.overlap && hard, &work)
        }
    }
}

impl MlpStack {
    /// Enqueues layer `layer` alone on `stream` (x, y bf16 `[m][hidden]`), reading a hard layer's
    /// weights from slot 0 as [`MlpStack::decode_layer_raw`] left them: the per-layer times the
    /// benchmark adds up.
    ///
    /// # Safety
    /// As [`MlpStack::forward_raw`]; for a hard layer, slot 0 holds its decode, ordered before.
    pub unsafe fn layer_raw(
        &self,
        stream: &CudaStream,
        layer: usize,
        x: u64,
        y: u64,
        plan: &StackPlan,
    ) -> Result<(), GpuError> {
        self.check_layer(layer, plan)?;
        let slot = (self.layers[layer].residency() == Residency::Huffman).then_some(0);
        let l = &self.layers[layer];
        let scratch = Scratch {
            gate: self.ptrs.gate,
            up: self.ptrs.up,
        };
        let slot_ptr = slot.map_or(0, |i| self.ptrs.slots[i]);
        // SAFETY: the caller's contract; the scratch and split buffers are the stack's own.
        unsafe {
            l.forward(
                stream,
                x,
                y,
                &plan.layers[layer],
                scratch,
                slot_ptr,
                self.ptrs.split,
                &mut |_| Ok(()),
            )
        }
    }

    /// Enqueues the decode of hard layer `layer` into slot 0 on `stream`, on `ctas` blocks.
    ///
    /// # Safety
    /// No queued work still reads slot 0.
    pub unsafe fn decode_layer_raw(
        &self,
        stream: &CudaStream,
        layer: usize,
        plan: &StackPlan,
        ctas: u32,
    ) -> Result<(), GpuError> {
        self.check_layer(layer, plan)?;
        let l = &self.layers[layer];
        let slot = *self.ptrs.slots.first().ok_or_else(|| GpuError::Mlp {
            layer: format!("layer {layer}"),
            reason: "the stack has no hard layers".into(),
        })?;
        for j in 0..l.matrices().len() {
            // SAFETY: slot 0 holds the largest hard layer's outputs; the caller keeps it free.
            unsafe { l.decode(stream, j, &plan.layers[layer][j], slot, ctas)? };
        }
        Ok(())
    }

    fn check_layer(&self, layer: usize, plan: &StackPlan) -> Result<(), GpuError> {
        self.check_m(plan.m)?;
        if layer >= self.layers.len() || plan.layers.len() != self.layers.len() {
            return Err(GpuError::Mlp {
                layer: format!("layer {layer}"),
                reason: format!(
                    "not a layer of this {}-layer stack's plan",
                    self.layers.len()
                ),
            });
        }
        Ok(())
    }
}

/// One forward as the scheduler sees it.
struct StackWork<'a> {
    stack: &'a MlpStack,
    plan: &'a StackPlan,
    x: u64,
    y: u64,
}

impl Work for StackWork<'_> {
    fn matrices(&self, layer: usize) -> usize {
        self.stack.layers[layer].matrices().len()
    }

    unsafe fn decode(
        &self,
        stream: &CudaStream,
        layer: usize,
        j: usize,
        slot: usize,
    ) -> Result<(), GpuError> {
        let s = &self.stack;
        let ctas = self.plan.decode_ctas;
        let slot_ptr = *s.ptrs.slots.get(slot).ok_or_else(|| GpuError::Mlp {
            layer: format!("layer {layer}"),
            reason: format!("no preprocess slot {slot} (the stack has no hard layers)"),
        })?;
        // SAFETY: the slot holds the largest hard layer's outputs (sized at build); the
        // scheduler ordered this stream after the slot's previous reader.
        unsafe { s.layers[layer].decode(stream, j, &self.plan.layers[layer][j], slot_ptr, ctas) }
    }

    unsafe fn compute(
        &self,
        stream: &CudaStream,
        layer: usize,
        slot: Option<usize>,
        ready: &mut dyn FnMut(usize) -> Result<(), GpuError>,
    ) -> Result<(), GpuError> {
        let s = &self.stack;
        let last = s.layers.len() - 1;
        let x = if layer == 0 {
            self.x
        } else {
            s.ptrs.hidden[(layer - 1) % 2]
        };
        let y = if layer == last {
            self.y
        } else {
            s.ptrs.hidden[layer % 2]
        };
        let slot_ptr = slot.map_or(0, |i| s.ptrs.slots[i]);
        let scratch = Scratch {
            gate: s.ptrs.gate,
            up: s.ptrs.up,
        };
        // SAFETY: x / y are the caller's (its contract) or the stack's ping-pong buffers, never
        // the same one; scratch and split buffers are the stack's, sized for max_m.
        unsafe {
            s.layers[layer].forward(
                stream,
                x,
                y,
                &self.plan.layers[layer],
                scratch,
                slot_ptr,
                s.ptrs.split,
                ready,
            )
        }
    }
}

impl Drop for MlpStack {
    fn drop(&mut self) {
        // Kernels read the buffers through raw addresses: let queued work finish first.
        let _ = self.dev.ctx.synchronize();
    }
}

/// The stack's easy/hard mix in one line (`EEHEEH…`), for logs and bench rows.
pub fn kinds_text(kinds: &[LayerKind]) -> String {
    kinds
        .iter()
        .map(|k| match k {
            LayerKind::Easy => 'E',
            LayerKind::Hard => 'H',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use unweight_codegen::space::{HuffBudget, SMEM_PER_SM};

    #[test]
    fn a_decode_on_s_sms_fills_them_with_blocks() {
        for output in HuffOutput::ALL {
            let v = HuffVariant {
                output,
                refill: HuffRefill::DEFAULT,
            };
            let per_sm = decode_blocks_of(&v, 1);
            // Several 128-thread blocks fit an SM: one per SM would leave most of it idle.
            assert!(per_sm >= 4, "{output:?}: {per_sm} blocks per SM");
            assert_eq!(decode_blocks_of(&v, 66), 66 * per_sm);
            let b = HuffBudget::new(&v);
            assert!(per_sm * (b.smem_bytes + 1024) <= SMEM_PER_SM);
        }
        assert_eq!(
            decode_blocks(33),
            decode_blocks_of(
                &HuffVariant {
                    output: HuffOutput::Palette,
                    refill: HuffRefill::DEFAULT
                },
                33
            )
        );
    }

    #[test]
    fn the_split_follows_the_caller_then_the_table_and_zero_means_serial() {
        assert_eq!(decode_split(true, None, None, 132), 33);
        assert_eq!(decode_split(true, None, Some(66), 132), 66);
        assert_eq!(decode_split(true, Some(16), Some(66), 132), 16);
        // The table measured serial faster: no overlap unless the caller asks for a share.
        assert_eq!(decode_split(true, None, Some(0), 132), 0);
        assert_eq!(decode_split(true, Some(33), Some(0), 132), 33);
        assert_eq!(decode_split(false, Some(33), Some(66), 132), 0);
        assert_eq!(decode_split(true, Some(500), None, 132), 131);
    }
}
