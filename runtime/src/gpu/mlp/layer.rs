//! One MLP layer over [`Linear`]s: SwiGLU `down(silu(gate·x) ⊙ up·x)` or GELU `fc2(gelu(fc1·x))`.
//! The layer owns no buffers: the stack hands it the intermediate ones, preallocated.

use unweight_codegen::variant::{ActOp, ActVariant, HuffOutput, Variant};

use crate::gpu::error::GpuError;
use crate::gpu::jit::registry;
use crate::gpu::launch::{self, ActArgs};
use crate::gpu::layout::Residency;
use crate::gpu::linear::{Linear, SplitBufs};
use crate::gpu::plan::Plan;

/// Preprocess outputs inside a slot start at multiples of this (TMA bulk copies need 16 bytes;
/// 256 keeps each matrix cache-line aligned).
pub const SLOT_ALIGN: usize = 256;

/// One MLP layer: its matrices in the order they are consumed (SwiGLU: gate, up, down; GELU: fc1,
/// fc2) and the activation between them.
pub struct Mlp {
    act: ActOp,
    mats: Vec<Linear>,
}

/// The intermediate buffers of one layer's forward (bf16 `[m][inter]`; `up` unused by GELU).
#[derive(Clone, Copy, Debug)]
pub struct Scratch {
    /// Device address of the gate (GELU: fc1) output, where the activation is written in place.
    pub gate: u64,
    /// Device address of the up output (SwiGLU only).
    pub up: u64,
}

impl Mlp {
    /// SwiGLU: `gate`, `up` are `[inter][hidden]` (n_out = inter), `down` is `[hidden][inter]`.
    pub fn swiglu(gate: Linear, up: Linear, down: Linear) -> Result<Self, GpuError> {
        let (inter, hidden) = (gate.n_out(), gate.k());
        let ok =
            up.n_out() == inter && up.k() == hidden && down.n_out() == hidden && down.k() == inter;
        if !ok {
            return Err(shape_error(&[&gate, &up, &down], "SwiGLU"));
        }
        Self::new(ActOp::SiluMul, vec![gate, up, down])
    }

    /// GELU: `fc1` is `[inter][hidden]`, `fc2` is `[hidden][inter]`.
    pub fn gelu(fc1: Linear, fc2: Linear) -> Result<Self, GpuError> {
        if fc2.n_out() != fc1.k() || fc2.k() != fc1.n_out() {
            return Err(shape_error(&[&fc1, &fc2], "GELU"));
        }
        Self::new(ActOp::Gelu, vec![fc1, fc2])
    }

    fn new(act: ActOp, mats: Vec<Linear>) -> Result<Self, GpuError> {
        let r = mats[0].weights().resident.residency();
        if let Some(other) = mats.iter().find(|l| l.weights().resident.residency() != r) {
            return Err(GpuError::Mlp {
                layer: mats[0].weights().name.clone(),
                reason: format!(
                    "its matrices must share one residency: {} is {r}, {} is {}",
                    mats[0].weights().name,
                    other.weights().name,
                    other.weights().resident.residency()
                ),
            });
        }
        Ok(Mlp { act, mats })
    }

    /// The activation between the matrices.
    pub fn act(&self) -> ActOp {
        self.act
    }

    /// The model width (input and output of the layer).
    pub fn hidden(&self) -> usize {
        self.mats[0].k()
    }

    /// The intermediate width.
    pub fn inter(&self) -> usize {
        self.mats[0].n_out()
    }

    /// The matrices in the order they are consumed.
    pub fn matrices(&self) -> &[Linear] {
        &self.mats
    }

    /// Where the layer's weights live (all its matrices share it).
    pub fn residency(&self) -> Residency {
        self.mats[0].weights().resident.residency()
    }

    /// Device bytes of its weights as resident.
    pub fn resident_bytes(&self) -> usize {
        self.mats.iter().map(|l| l.weights().resident_bytes()).sum()
    }

    /// Where each matrix's preprocess output (tiled palette indices) sits in a slot, and the
    /// slot bytes the layer needs.
    pub fn slot_layout(&self) -> (Vec<usize>, usize) {
        slot_layout(
            &self
                .mats
                .iter()
                .map(|l| l.decode_bytes(HuffOutput::Palette))
                .collect::<Vec<_>>(),
        )
    }

    /// Enqueues the preprocess of matrix `j` (its `plan`) into the slot at `slot` on `ctas`
    /// blocks.
    ///
    /// # Safety
    /// `slot` must be a live device buffer of at least [`Mlp::slot_layout`]'s bytes, not read by
    /// any matmul still queued for another layer.
    pub unsafe fn decode(
        &self,
        stream: &cudarc::driver::CudaStream,
        j: usize,
        plan: &Plan,
        slot: u64,
        ctas: u32,
    ) -> Result<(), GpuError> {
        let (offsets, _) = self.slot_layout();
        let lin = &self.mats[j];
        let bytes = lin.decode_bytes(HuffOutput::Palette);
        // SAFETY: the caller vouches for the slot; `preprocess_raw` checks the size.
        unsafe { lin.preprocess_raw(stream, plan, slot + offsets[j] as u64, bytes, ctas) }
    }

    /// Enqueues the layer on `stream`: `y = mlp(x)` for the batch of `plans` (one per matrix,
    /// same `m`). `ready(j)` runs before matrix `j`'s matmul is enqueued (the scheduler makes the
    /// stream wait for its decode there). `slot` holds the decoded weights of a hard layer (0
    /// otherwise).
    ///
    /// # Safety
    /// `x` and `y` must address `m × hidden` bf16 values, `scratch` buffers `m × inter` each,
    /// all 16-byte aligned and live until the work completes; `slot` as for [`Mlp::decode`] with
    /// every matrix decoded (ordered before by `ready`); `split` as [`Linear::matmul_raw`] asks.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn forward(
        &self,
        stream: &cudarc::driver::CudaStream,
        x: u64,
        y: u64,
        plans: &[Plan],
        scratch: Scratch,
        slot: u64,
        split: SplitBufs,
        ready: &mut dyn FnMut(usize) -> Result<(), GpuError>,
    ) -> Result<(), GpuError> {
        if plans.len() != self.mats.len() {
            return Err(GpuError::Mlp {
                layer: self.mats[0].weights().name.clone(),
                reason: format!("{} plans for {} matrices", plans.len(), self.mats.len()),
            });
        }
        let m = plans[0].m;
        let n = (m * self.inter()) as u64;
        let (offsets, _) = self.slot_layout();
        let pre = |j: usize| {
            if slot == 0 {
                0
            } else {
                slot + offsets[j] as u64
            }
        };
        let kernel = self
            .mats
            .first()
            .expect("a layer has matrices")
            .weights()
            .device()
            .kernels
            .get_entry(act_entry(self.act)?)?;
        let mm = |j: usize, x: u64, y: u64| {
            // SAFETY: the caller vouches for x, y, the slot and split (this fn's contract); each
            // matmul reads what the previous launch on the same stream wrote.
            unsafe { self.mats[j].matmul_raw(stream, x, y, &plans[j], pre(j), split) }
        };
        let activate = |b: u64| {
            let args = ActArgs {
                a: scratch.gate,
                b,
                out: scratch.gate,
                n,
            };
            // SAFETY: gate (and up) hold m × inter values (the contract), written just before
            // on this stream; the kernel works in place.
            unsafe { launch::act(stream, &kernel, &args) }
        };
        match self.act {
            ActOp::SiluMul => {
                ready(0)?;
                mm(0, x, scratch.gate)?;
                ready(1)?;
                mm(1, x, scratch.up)?;
                activate(scratch.up)?;
                ready(2)?;
                mm(2, scratch.gate, y)
            }
            ActOp::Gelu => {
                ready(0)?;
                mm(0, x, scratch.gate)?;
                activate(0)?;
                ready(1)?;
                mm(1, scratch.gate, y)
            }
        }
    }
}

/// The registry entry of `act_<op>`.
pub fn act_entry(op: ActOp) -> Result<&'static unweight_codegen::variant::RegistryEntry, GpuError> {
    let v = Variant::Act(ActVariant { op });
    registry::entry(&v).ok_or_else(|| GpuError::UnknownVariant {
        name: v.to_string(),
    })
}

/// Offsets of consecutive outputs of `bytes` in one slot (each aligned) and the total.
pub fn slot_layout(bytes: &[usize]) -> (Vec<usize>, usize) {
    let mut offsets = Vec::with_capacity(bytes.len());
    let mut at = 0;
    for &b in bytes {
        offsets.push(at);
        at += b.div_ceil(SLOT_ALIGN) * SLOT_ALIGN;
    }
    (offsets, at)
}

fn shape_error(mats: &[&Linear], kind: &str) -> GpuError {
    let shapes: Vec<String> = mats
        .iter()
        .map(|l| format!("{} {}x{}", l.weights().name, l.n_out(), l.k()))
        .collect();
    GpuError::Mlp {
        layer: mats[0].weights().name.clone(),
        reason: format!(
            "the matrices do not chain as a {kind} MLP ({})",
            shapes.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_outputs_are_aligned_and_disjoint() {
        let (o, total) = slot_layout(&[100, 256, 1]);
        assert_eq!(o, [0, 256, 512]);
        assert_eq!(total, 768);
        let llama = [14336 * 4096 / 2, 14336 * 4096 / 2, 4096 * 14336 / 2];
        let (o, total) = slot_layout(&llama);
        assert!(o.iter().all(|x| x % SLOT_ALIGN == 0));
        assert_eq!(total, 3 * 14336 * 4096 / 2);
        assert_eq!(slot_layout(&[]), (vec![], 0));
    }
}
