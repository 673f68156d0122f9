//! Preprocess scratch owned by the runtime: sized when a weight is registered for the largest
//! one seen, reused by every call, never allocated on the call path.
//!
//! Each slot carries an event recorded after its last use; a call on any stream first waits on
//! it, so two streams sharing a slot are ordered on the GPU without host synchronization.

use std::sync::{Arc, Mutex, MutexGuard};

use cudarc::driver::{CudaContext, CudaEvent, CudaSlice, CudaStream, DevicePtr};

use crate::gpu::error::{DriverContext, GpuError};

/// Scratch addresses are aligned to this (TMA needs 16; 256 keeps every view cache-line aligned).
pub const ALIGN: usize = 256;

/// Capacity bookkeeping of one slot, separate from the device buffer so it is testable on CPU.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlotCapacity {
    capacity: usize,
    allocations: usize,
}

impl SlotCapacity {
    /// Makes room for `bytes`; returns the capacity to allocate when the current one is too small.
    pub fn reserve(&mut self, bytes: usize) -> Option<usize> {
        if bytes <= self.capacity {
            return None;
        }
        self.capacity = bytes.div_ceil(ALIGN) * ALIGN;
        self.allocations += 1;
        Some(self.capacity)
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many times the slot was (re)allocated.
    pub fn allocations(&self) -> usize {
        self.allocations
    }
}

/// A device buffer grown only by [`ScratchPool::reserve`] / [`ScratchPool::reserve_split`].
#[derive(Default)]
struct Grown {
    cap: SlotCapacity,
    buf: Option<CudaSlice<u8>>,
    ptr: u64,
}

impl Grown {
    /// Grows to `bytes` (zero-filled: stream-K flags must start at 0). The caller has synchronized.
    fn grow(
        &mut self,
        stream: &Arc<CudaStream>,
        bytes: usize,
        what: &str,
    ) -> Result<bool, GpuError> {
        let Some(cap) = self.cap.reserve(bytes) else {
            return Ok(false);
        };
        self.buf = None;
        let buf = stream
            .alloc_zeros::<u8>(cap)
            .ctx(|| format!("allocating {cap} bytes of {what}"))?;
        self.ptr = buf.device_ptr(stream).0;
        self.buf = Some(buf);
        Ok(true)
    }
}

/// One preprocess buffer, the stream-K workspace and flags, and the event that marks the
/// slot's last use.
pub struct ScratchSlot {
    pre: Grown,
    ws: Grown,
    flags: Grown,
    last_use: CudaEvent,
}

impl ScratchSlot {
    pub fn capacity(&self) -> usize {
        self.pre.cap.capacity()
    }

    /// (Re)allocations of all the slot's buffers.
    pub fn allocations(&self) -> usize {
        self.pre.cap.allocations() + self.ws.cap.allocations() + self.flags.cap.allocations()
    }

    /// Device address of the preprocess buffer (0 while nothing is reserved).
    pub fn ptr(&self) -> u64 {
        self.pre.ptr
    }

    /// Split-K workspace (f32 partials) address and bytes.
    pub fn ws(&self) -> (u64, usize) {
        (self.ws.ptr, self.ws.cap.capacity())
    }

    /// Stream-K flags (u32 per CTA, zero between launches) address and bytes.
    pub fn flags(&self) -> (u64, usize) {
        (self.flags.ptr, self.flags.cap.capacity())
    }

    /// Orders `stream` after the slot's previous user.
    pub fn acquire_on(&self, stream: &CudaStream) -> Result<(), GpuError> {
        stream
            .wait(&self.last_use)
            .ctx(|| "waiting for the scratch slot's previous user".into())
    }

    /// Marks the slot as used by `stream` up to the work enqueued so far.
    pub fn release_on(&self, stream: &CudaStream) -> Result<(), GpuError> {
        self.last_use
            .record(stream)
            .ctx(|| "recording the scratch slot's release".into())
    }
}

/// The runtime's preprocess slots (two, so a scheduler can decode one layer while the
/// previous one computes).
pub struct ScratchPool {
    ctx: Arc<CudaContext>,
    slots: Vec<Mutex<ScratchSlot>>,
}

/// Preprocess slots per device.
pub const SLOTS: usize = 2;

impl ScratchPool {
    pub fn new(ctx: &Arc<CudaContext>) -> Result<Self, GpuError> {
        let slots = (0..SLOTS)
            .map(|_| {
                let last_use = ctx
                    .new_event(None)
                    .ctx(|| "creating a scratch event".into())?;
                Ok(Mutex::new(ScratchSlot {
                    pre: Grown::default(),
                    ws: Grown::default(),
                    flags: Grown::default(),
                    last_use,
                }))
            })
            .collect::<Result<_, GpuError>>()?;
        Ok(ScratchPool {
            ctx: ctx.clone(),
            slots,
        })
    }

    /// Grows every slot's preprocess buffer to hold `bytes` (called when a weight is registered,
    /// never per call). A reallocation synchronizes the context first, so no queued kernel
    /// still uses the old buffer.
    pub fn reserve(&self, bytes: usize) -> Result<(), GpuError> {
        self.grow_all(|s| &mut s.pre, bytes, "preprocess scratch")
    }

    /// Grows every slot's stream-K workspace and flags.
    pub fn reserve_split(&self, ws_bytes: usize, flag_bytes: usize) -> Result<(), GpuError> {
        self.grow_all(|s| &mut s.ws, ws_bytes, "stream-K workspace")?;
        self.grow_all(|s| &mut s.flags, flag_bytes, "stream-K flags")
    }

    fn grow_all(
        &self,
        pick: impl Fn(&mut ScratchSlot) -> &mut Grown,
        bytes: usize,
        what: &str,
    ) -> Result<(), GpuError> {
        for slot in &self.slots {
            let mut s = slot.lock().unwrap_or_else(|e| e.into_inner());
            if pick(&mut s).cap.capacity() >= bytes {
                continue;
            }
            self.ctx
                .synchronize()
                .ctx(|| format!("synchronizing before growing {what}"))?;
            let stream = self.ctx.default_stream();
            pick(&mut s).grow(&stream, bytes, what)?;
            stream.synchronize().ctx(|| format!("allocating {what}"))?;
        }
        Ok(())
    }

    /// Locks slot `i` for one call (slot 0 for the linear API; the scheduler alternates).
    pub fn slot(&self, i: usize) -> MutexGuard<'_, ScratchSlot> {
        self.slots[i % self.slots.len()]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Total (re)allocations over all slots.
    pub fn allocations(&self) -> usize {
        self.slots
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).allocations())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_only_for_a_larger_matrix() {
        let mut p = SlotCapacity::default();
        assert_eq!(p.reserve(1000), Some(1024));
        assert_eq!(p.reserve(1024), None);
        assert_eq!(p.reserve(10), None);
        assert_eq!(p.reserve(5000), Some(5120));
        // Many calls after registration never allocate.
        for _ in 0..1000 {
            assert_eq!(p.reserve(4000), None);
        }
        assert_eq!((p.capacity(), p.allocations()), (5120, 2));
    }

    #[test]
    fn llama_mlp_registration_allocates_once() {
        // Registering the largest first: later (smaller or equal) registrations reuse it.
        let mut p = SlotCapacity::default();
        let bf16 = 14336 * 4096 * 2;
        let sizes = [bf16, bf16, 4096 * 14336 * 2, 14336 * 4096];
        let allocs: usize = sizes.iter().filter_map(|&b| p.reserve(b)).count();
        assert_eq!(allocs, 1);
    }
}
