//! The SM-split axis of Huffman-resident ("hard") weights: how many SMs the MLP scheduler gives a
//! hard layer's decode while another layer's matmul runs on the rest, or none (serial).
//!
//! In the overlapped stack a hard layer's preprocess (Huffman → palette nibbles) runs on S CTAs'
//! worth of SMs on a low-priority stream beside the previous layer's matmul on the rest. The tuner
//! times exactly that pair, both launched at once on two streams (the matmul is this weight's own
//! palette-transcode rmm on preprocessed nibbles, the layer the decode hides behind being of the
//! same shape in an MLP), for each share in [`SHARES`], and the same two kernels one after the
//! other on the whole GPU. Timing the halves apart and taking the longer one predicted overlap to
//! win at decode batch, where the H200 measured it losing (the two contend for the SMs' issue
//! slots and the memory system), so the pair is timed as it runs. [`best_split`] keeps the
//! fastest: a share, or 0 when serial wins, which the stack then schedules serially.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut};
use unweight_codegen::variant::HuffOutput;

use crate::gpu::error::DriverContext;
use crate::gpu::harness::bench;
use crate::gpu::linear::{Linear, SplitBufs};
use crate::gpu::mlp::stack::{decode_blocks, MlpStack, PlanOptions};
use crate::gpu::plan::{self, ExecPipeline, Plan, Spread};
use crate::gpu::scheduler;
use crate::gpu::tuner::Table;

/// Decode shares tried, as fractions of the SMs (16, 33, 66 and 99 of the H200's 132).
pub const SHARES: [(u32, u32); 4] = [(1, 8), (1, 4), (1, 2), (3, 4)];

/// One share: the decode on `decode_sms` SMs' worth of blocks beside the matmul on the rest,
/// launched together; `pair_us` is until both are done.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ShareTiming {
    pub decode_sms: u32,
    pub pair_us: f64,
}

/// Every share, and the decode then the matmul on the whole GPU.
#[derive(Clone, Debug, PartialEq)]
pub struct SplitTiming {
    pub serial_us: f64,
    pub shares: Vec<ShareTiming>,
}

impl SplitTiming {
    /// `(decode SMs, µs)` per share, serial first as 0: what the table keeps
    /// ([`Choice::split_us`](crate::gpu::tuner::Choice::split_us)).
    pub fn points(&self) -> Vec<(u32, f64)> {
        let mut p = vec![(0, self.serial_us)];
        p.extend(self.shares.iter().map(|s| (s.decode_sms, s.pair_us)));
        p
    }
}

/// The decode SMs to schedule: the fastest share (the fewer SMs on a tie), or 0 when no share
/// beats serial.
pub fn best_split(t: &SplitTiming) -> u32 {
    best_stack_split(&[&t.points()]).unwrap_or(0)
}

/// The decode share (0: serial) with the least summed pair time over hard matrices, each given
/// as its [`Choice::split_us`](crate::gpu::tuner::Choice::split_us), ties going to the fewer
/// SMs; `None` when some matrix has no timings (a table from before they were recorded) or no
/// share is timed for all of them.
pub fn best_stack_split(per_matrix: &[&[(u32, f64)]]) -> Option<u32> {
    let first = per_matrix.first()?;
    if per_matrix.iter().any(|t| t.is_empty()) {
        return None;
    }
    first
        .iter()
        .filter_map(|&(sms, _)| {
            let total: Option<f64> = per_matrix
                .iter()
                .map(|t| t.iter().find(|p| p.0 == sms).map(|p| p.1))
                .sum();
            total.map(|us| (sms, us))
        })
        .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))
        .map(|(sms, _)| sms)
}

/// SMs of each share of [`SHARES`] on a GPU of `sm_count` SMs (at least one, and one left over).
pub fn share_sms(sm_count: u32) -> Vec<u32> {
    SHARES
        .iter()
        .map(|&(n, d)| (sm_count * n / d).clamp(1, sm_count - 1))
        .collect()
}

/// Times the split axis for the palette-transcode plan of the Huffman-resident `lins` (rotated,
/// so L2 does not flatter either kernel) at batch `m`: each share of [`SHARES`] as a concurrent
/// pair, and serial. `None` when the weight has no palette-transcode rmm (a shape the rmm does
/// not take).
#[allow(clippy::too_many_arguments)]
pub fn time_split(
    stream: &Arc<CudaStream>,
    lins: &[Linear],
    m: usize,
    x: &CudaSlice<u16>,
    y: &mut CudaSlice<u16>,
    warmup: usize,
    iters: usize,
    sm_count: u32,
) -> anyhow::Result<Option<SplitTiming>> {
    let plans: Vec<Plan> = lins
        .iter()
        .map(|l| l.plan(ExecPipeline::PaletteTranscode, m))
        .collect::<Result<_, _>>()?;
    let Some(rmm) = plans[0]
        .rmm
        .filter(|_| plans[0].pipeline == ExecPipeline::PaletteTranscode)
    else {
        return Ok(None);
    };
    let g = lins[0].weights().geometry;
    let bytes = lins[0].decode_bytes(HuffOutput::Palette);
    // One preprocess output per rotated weight, filled once so every matmul reads real nibbles.
    let mut pre: Vec<CudaSlice<u8>> = Vec::with_capacity(lins.len());
    for (l, p) in lins.iter().zip(&plans) {
        let mut buf = stream
            .alloc_zeros::<u8>(bytes)
            .ctx(|| format!("allocating the preprocess output of {}", l.weights().name))?;
        let (ptr, _sync) = buf.device_ptr_mut(stream);
        // SAFETY: `buf` is a live allocation of `bytes` bytes (this plan's output size), not
        // used by anything else until the stream has run the decode.
        unsafe { l.preprocess_raw(stream, p, ptr, bytes, 0)? };
        drop(_sync);
        pre.push(buf);
    }
    for l in lins {
        l.weights().take_decode_error(stream)?;
    }
    let (ws_bytes, flags_bytes) = plan::split_buffers_bound(g.n_out, g.k, m, sm_count);
    let mut ws = stream
        .alloc_zeros::<u8>(ws_bytes.max(4))
        .ctx(|| "allocating stream-K partials".into())?;
    let mut flags = stream
        .alloc_zeros::<u8>(flags_bytes.max(4))
        .ctx(|| "allocating stream-K flags".into())?;
    // Raw addresses, taken once: the pair runs on two streams the buffers' own tracking does
    // not know; the events below order everything.
    let pre_ptrs: Vec<u64> = pre.iter_mut().map(|b| b.device_ptr_mut(stream).0).collect();
    let split = SplitBufs {
        ws: ws.device_ptr_mut(stream).0,
        ws_bytes,
        flags: flags.device_ptr_mut(stream).0,
        flags_bytes,
    };
    let (xp, yp) = (x.device_ptr(stream).0, y.device_ptr_mut(stream).0);
    stream
        .synchronize()
        .ctx(|| "filling the preprocess outputs".into())?;
    // As the stack runs them: matmuls on a high-priority stream, decodes on a low one.
    let ctx = stream.context();
    let main = scheduler::compute_stream(ctx)?;
    let side = scheduler::decode_stream(ctx)?;
    let (fork, join) = (
        ctx.new_event(None)
            .ctx(|| "creating the fork event".into())?,
        ctx.new_event(None)
            .ctx(|| "creating the join event".into())?,
    );
    let n = lins.len();
    // SAFETY (both closures): x holds ≥ m × k and y ≥ m × n_out bf16 (the tuner sizes them for
    // its largest batch); pre[j] holds `bytes` bytes, weight j's preprocess output; the partials
    // and flags are sized for any CTA count on this GPU, flags start zero and the kernels leave
    // them zero, and one matmul at a time (on `main`) uses them.
    let matmul = |s: &CudaStream, j: usize, ctas: u32| -> anyhow::Result<()> {
        let mut p = plans[j];
        p.ctas = ctas;
        unsafe { lins[j].matmul_raw(s, xp, yp, &p, pre_ptrs[j], split)? };
        Ok(())
    };
    let decode = |s: &CudaStream, j: usize, blocks: u32| -> anyhow::Result<()> {
        unsafe { lins[j].preprocess_raw(s, &plans[j], pre_ptrs[j], bytes, blocks)? };
        Ok(())
    };
    let serial_us = bench::time(&main, warmup, iters, |i| {
        let j = i % n;
        decode(&main, j, 0)?;
        matmul(&main, j, plans[j].ctas)
    })?;
    let mut shares = Vec::with_capacity(SHARES.len());
    for sms in share_sms(sm_count) {
        // As the MLP scheduler launches them: as many decode blocks as fill `sms` SMs, the
        // matmul sized for the rest.
        let blocks = decode_blocks(sms);
        let ctas = plan::ctas_for(rmm, g.n_out, g.k, m, sm_count - sms, Spread::Even);
        let pair_us = bench::time(&main, warmup, iters, |i| {
            // The decode rewrites weight j's nibbles while the matmul reads weight j + 1's
            // (one weight: the same bytes it already holds, so the race changes nothing).
            let (j, k) = (i % n, (i + 1) % n);
            fork.record(&main)
                .ctx(|| "forking the decode stream".into())?;
            side.wait(&fork)
                .ctx(|| "forking the decode stream".into())?;
            decode(&side, j, blocks)?;
            matmul(&main, k, ctas)?;
            join.record(&side)
                .ctx(|| "joining the decode stream".into())?;
            main.wait(&join)
                .ctx(|| "joining the decode stream".into())?;
            Ok(())
        })?;
        shares.push(ShareTiming {
            decode_sms: sms,
            pair_us,
        });
    }
    main.synchronize()
        .ctx(|| "finishing the split timings".into())?;
    for l in lins {
        l.weights().take_decode_error(stream)?;
    }
    Ok(Some(SplitTiming { serial_us, shares }))
}

/// The decode shares [`tune_stack_split`] tries on a GPU of `sm_count` SMs: serial (0), then
/// [`SHARES`].
pub fn stack_candidates(sm_count: u32) -> Vec<u32> {
    let mut c = vec![0];
    c.extend(share_sms(sm_count));
    c.dedup();
    c
}

/// Times one forward of `stack` at batch `m` (plans from `table`, decodes `window` layers ahead)
/// for each decode share of `candidates` (0: serial) and returns the fastest (the fewer SMs on a
/// tie) with every timing. The per-weight pair times in the table only approximate a stack,
/// whose decode stream runs ahead across layers and matrices; this measures the stack itself,
/// for an engine that can afford a few forwards at load.
///
/// # Safety
/// `x` and `y` must address `m × hidden` bf16 values each, 16-byte aligned, live for the call
/// and not overlapping each other or the stack's buffers (as [`MlpStack::forward_raw`]).
#[allow(clippy::too_many_arguments)]
pub unsafe fn tune_stack_split(
    stream: &Arc<CudaStream>,
    stack: &MlpStack,
    m: usize,
    (x, y): (u64, u64),
    table: Option<&Table>,
    window: usize,
    candidates: &[u32],
    (warmup, iters): (usize, usize),
) -> anyhow::Result<(u32, Vec<(u32, f64)>)> {
    let mut timed = Vec::with_capacity(candidates.len());
    for &sms in candidates {
        let plan = stack.plan(
            m,
            &PlanOptions {
                table,
                decode_sms: Some(sms),
                window,
                ..Default::default()
            },
        )?;
        let us = bench::time(stream, warmup, iters, |_| {
            // SAFETY: the caller's contract for x and y; the stack's own buffers otherwise.
            unsafe { stack.forward_raw(stream, x, y, &plan) }.map_err(anyhow::Error::from)
        })?;
        timed.push((sms, us));
    }
    let best = best_stack_split(&[&timed]).unwrap_or(0);
    Ok((best, timed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(serial_us: f64, shares: &[(u32, f64)]) -> SplitTiming {
        SplitTiming {
            serial_us,
            shares: shares
                .iter()
                .map(|&(decode_sms, pair_us)| ShareTiming {
                    decode_sms,
                    pair_us,
                })
                .collect(),
        }
    }

    #[test]
    fn the_stack_split_minimises_the_summed_pairs() {
        // Gate and up lose with overlap, down gains less than they lose: serial.
        let gate: &[(u32, f64)] = &[(0, 88.0), (66, 127.0), (99, 101.0)];
        let down: &[(u32, f64)] = &[(0, 89.0), (66, 88.5), (99, 131.0)];
        assert_eq!(best_stack_split(&[gate, gate, down]), Some(0));
        // At large batch overlap wins on the sum.
        let gate: &[(u32, f64)] = &[(0, 291.0), (66, 270.0), (99, 291.0)];
        let down: &[(u32, f64)] = &[(0, 252.0), (66, 262.0), (99, 262.0)];
        assert_eq!(best_stack_split(&[gate, gate, down]), Some(66));
        assert_eq!(best_stack_split(&[down]), Some(0));
        // Ties go to the fewer SMs; a matrix without timings (an older table) decides nothing.
        let a: &[(u32, f64)] = &[(0, 1.0), (16, 1.0)];
        assert_eq!(best_stack_split(&[a]), Some(0));
        assert_eq!(best_stack_split(&[a, &[]]), None);
        assert_eq!(best_stack_split(&[]), None);
    }

    #[test]
    fn a_stack_tries_serial_then_every_share() {
        assert_eq!(stack_candidates(132), vec![0, 16, 33, 66, 99]);
        assert_eq!(stack_candidates(2), vec![0, 1]);
    }

    #[test]
    fn the_fastest_pair_wins_unless_serial_is_faster() {
        assert_eq!(
            best_split(&t(100.0, &[(16, 90.0), (33, 80.0), (66, 85.0)])),
            33
        );
        // A tie goes to the fewer SMs (more left to the matmul of the other layers).
        assert_eq!(best_split(&t(100.0, &[(33, 80.0), (16, 80.0)])), 16);
        // Overlap that loses to serial (as at decode batch on the H200): no split.
        assert_eq!(best_split(&t(100.0, &[(16, 130.0), (66, 110.0)])), 0);
        assert_eq!(best_split(&t(100.0, &[(66, 100.0)])), 0);
        assert_eq!(best_split(&t(100.0, &[])), 0);
    }
}
