//! The MLP scheduler: runs a stack forward in the order [`order`] gives, hard layers' decodes on a
//! second stream into two preprocess slots, events ordering producer and consumer.
//!
//! Events used in one forward are all recorded in that forward before they are waited on (the
//! forward starts by forking the second stream from the caller's and ends by joining it back), so
//! a forward can be captured into a CUDA graph and replayed: nothing in it waits on work outside
//! it, and it enqueues no allocation, no host sync and no host callback.
//!
//! Per slot: `ready[slot][j]` is recorded on the second stream after matrix `j`'s decode, and the
//! consumer waits on it right before that matrix's matmul; `free[slot]` is recorded on the
//! caller's stream after the layer's last matmul, and the next decode into the slot waits on it.

pub mod order;

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaEvent, CudaStream};

use crate::gpu::error::{DriverContext, GpuError};

pub use order::{Order, Step, SLOTS};

/// Matrices per layer the scheduler has events for (SwiGLU's three).
pub const MAX_MATRICES: usize = 3;

/// What a stack forward enqueues, one layer or matrix at a time; the scheduler decides where.
pub trait Work {
    /// Matrices of `layer` (each decoded and consumed in order).
    fn matrices(&self, layer: usize) -> usize;

    /// Enqueues the decode of matrix `j` of hard layer `layer` into preprocess slot `slot`.
    ///
    /// # Safety
    /// The scheduler has ordered `stream` after every earlier reader of the slot.
    unsafe fn decode(
        &self,
        stream: &CudaStream,
        layer: usize,
        j: usize,
        slot: usize,
    ) -> Result<(), GpuError>;

    /// Enqueues `layer`'s matmuls and activation; `ready(j)` before matrix `j`'s matmul.
    ///
    /// # Safety
    /// `slot` holds the layer's decoded weights once `ready` has run for each matrix.
    unsafe fn compute(
        &self,
        stream: &CudaStream,
        layer: usize,
        slot: Option<usize>,
        ready: &mut dyn FnMut(usize) -> Result<(), GpuError>,
    ) -> Result<(), GpuError>;
}

/// A stream of the greatest priority for running stacks: the decode stream has the lowest, so
/// the matmuls' CTAs (one per SM, on the SMs the decode leaves them) are always placed before
/// pending decode blocks, and decode blocks only take the SMs the matmul does not use. An engine
/// that brings its own stream should give it a high priority for the same reason.
pub fn compute_stream(ctx: &Arc<CudaContext>) -> Result<Arc<CudaStream>, GpuError> {
    let (_, greatest) = cudarc::driver::result::stream::get_priority_range()
        .ctx(|| "reading the stream priority range".into())?;
    ctx.new_stream_with_priority(greatest)
        .ctx(|| "creating a high-priority stream".into())
}

/// A stream of the lowest priority, for decodes beside matmuls: when a matmul's CTAs and decode
/// blocks wait for SMs at once, the block scheduler places the matmul's first (see
/// [`compute_stream`]).
pub fn decode_stream(ctx: &Arc<CudaContext>) -> Result<Arc<CudaStream>, GpuError> {
    let (least, _) = cudarc::driver::result::stream::get_priority_range()
        .ctx(|| "reading the stream priority range".into())?;
    ctx.new_stream_with_priority(least)
        .ctx(|| "creating the decode stream".into())
}

/// The second stream and the events of the double buffer.
pub struct Scheduler {
    side: Arc<CudaStream>,
    fork: CudaEvent,
    join: CudaEvent,
    free: Vec<CudaEvent>,
    ready: Vec<Vec<CudaEvent>>,
}

impl Scheduler {
    /// The decode stream and the events of one stack, in `ctx`.
    pub fn new(ctx: &Arc<CudaContext>) -> Result<Self, GpuError> {
        let event = || {
            ctx.new_event(None)
                .ctx(|| "creating a scheduler event".into())
        };
        Ok(Scheduler {
            side: decode_stream(ctx)?,
            fork: event()?,
            join: event()?,
            free: (0..SLOTS).map(|_| event()).collect::<Result<_, _>>()?,
            ready: (0..SLOTS)
                .map(|_| (0..MAX_MATRICES).map(|_| event()).collect())
                .collect::<Result<_, _>>()?,
        })
    }

    /// The stream the decodes run on when overlapped.
    pub fn decode_stream(&self) -> &Arc<CudaStream> {
        &self.side
    }

    /// Enqueues one forward in `order` on `stream`; with `overlap` the decodes go to the second
    /// stream (forked from `stream` at the start, joined back at the end), else they run on
    /// `stream` itself right before their layer.
    ///
    /// # Safety
    /// `work`'s own contracts; the caller orders consecutive forwards of the same buffers (one
    /// stream, or its events).
    pub unsafe fn run(
        &self,
        stream: &CudaStream,
        order: &Order,
        overlap: bool,
        work: &dyn Work,
    ) -> Result<(), GpuError> {
        let drv = |r: Result<(), cudarc::driver::DriverError>, what: &str| {
            r.ctx(|| format!("scheduler: {what}"))
        };
        if overlap {
            drv(self.fork.record(stream), "forking the decode stream")?;
            drv(self.side.wait(&self.fork), "forking the decode stream")?;
        }
        let mut used = [false; SLOTS];
        for step in &order.steps {
            match *step {
                Step::Decode { layer, slot } => {
                    let n = work.matrices(layer);
                    if n > MAX_MATRICES {
                        return Err(GpuError::Mlp {
                            layer: format!("layer {layer}"),
                            reason: format!("{n} matrices; the scheduler takes {MAX_MATRICES}"),
                        });
                    }
                    let s: &CudaStream = if overlap { &self.side } else { stream };
                    if overlap && used[slot] {
                        drv(s.wait(&self.free[slot]), "waiting for a free slot")?;
                    }
                    for j in 0..n {
                        // SAFETY: the stream is ordered after the slot's previous reader (the
                        // wait above, or one stream); `work`'s contract covers the rest.
                        unsafe { work.decode(s, layer, j, slot)? };
                        if overlap {
                            drv(self.ready[slot][j].record(s), "marking a decode done")?;
                        }
                    }
                }
                Step::Compute { layer, slot } => {
                    let mut ready = |j: usize| match slot {
                        Some(sl) if overlap => drv(
                            stream.wait(&self.ready[sl][j]),
                            "waiting for a decoded matrix",
                        ),
                        _ => Ok(()),
                    };
                    // SAFETY: `ready` orders each matmul after its matrix's decode.
                    unsafe { work.compute(stream, layer, slot, &mut ready)? };
                    if let (Some(sl), true) = (slot, overlap) {
                        drv(self.free[sl].record(stream), "releasing a slot")?;
                        used[sl] = true;
                    }
                }
            }
        }
        if overlap {
            drv(self.join.record(&self.side), "joining the decode stream")?;
            drv(stream.wait(&self.join), "joining the decode stream")?;
        }
        Ok(())
    }
}
