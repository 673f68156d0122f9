//! The SM-split axis of Huffman-resident ("hard") weights: how many SMs the MLP scheduler gives a
//! hard layer's decode while another layer's matmul runs on the rest.
//!
//! In the overlapped stack a hard layer's preprocess (Huffman → palette nibbles) runs on S CTAs
//! beside the previous layer's matmul on the other SMs, so the pair takes about
//! `max(decode(S), matmul(SMs − S))`. The tuner times both halves on this weight for each share
//! in [`SHARES`] (the matmul is this weight's own palette-transcode rmm on the preprocessed
//! nibbles, the layer the decode hides behind being of the same shape in an MLP) and keeps the
//! share with the smallest maximum ([`best_share`]).

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut};
use unweight_codegen::abi::BK;
use unweight_codegen::variant::HuffOutput;

use crate::gpu::error::DriverContext;
use crate::gpu::harness::bench;
use crate::gpu::linear::{Linear, SplitBufs};
use crate::gpu::mlp::stack::decode_blocks;
use crate::gpu::plan::{self, choose_ctas, cta_slots, rmm_tiles, ExecPipeline, Spread};

/// Decode shares tried, as fractions of the SMs (16, 33 and 66 of the H200's 132).
pub const SHARES: [(u32, u32); 3] = [(1, 8), (1, 4), (1, 2)];

/// One share's two halves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ShareTiming {
    pub decode_sms: u32,
    pub decode_us: f64,
    pub matmul_us: f64,
}

impl ShareTiming {
    /// The overlapped pair's time: the longer half.
    pub fn cost(&self) -> f64 {
        self.decode_us.max(self.matmul_us)
    }
}

/// The share with the smallest [`ShareTiming::cost`] (the fewer SMs on a tie), if any.
pub fn best_share(t: &[ShareTiming]) -> Option<ShareTiming> {
    t.iter().copied().min_by(|a, b| {
        a.cost()
            .total_cmp(&b.cost())
            .then(a.decode_sms.cmp(&b.decode_sms))
    })
}

/// Times each share of [`SHARES`] for the palette-transcode plan of the Huffman-resident `lins`
/// (rotated, so L2 does not flatter either half) at batch `m`. `None` when the weight has no
/// palette-transcode rmm (a shape the rmm does not take).
#[allow(clippy::too_many_arguments)]
pub fn time_shares(
    stream: &Arc<CudaStream>,
    lins: &[Linear],
    m: usize,
    x: &CudaSlice<u16>,
    y: &mut CudaSlice<u16>,
    warmup: usize,
    iters: usize,
    sm_count: u32,
) -> anyhow::Result<Option<Vec<ShareTiming>>> {
    let plans: Vec<_> = lins
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
    // One preprocess output per rotated weight, filled once for the matmul timings.
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
    let mut out = Vec::with_capacity(SHARES.len());
    for (num, den) in SHARES {
        let sms = (sm_count * num / den).max(1);
        // As the MLP scheduler launches it: as many blocks as fill `sms` SMs.
        let blocks = decode_blocks(sms);
        let decode_us = bench::time(stream, warmup, iters, |i| {
            let j = i % lins.len();
            let (ptr, _sync) = pre[j].device_ptr_mut(stream);
            // SAFETY: as above; the matmul timings below read these buffers only after this
            // loop's decodes are ordered before them on the same stream.
            unsafe { lins[j].preprocess_raw(stream, &plans[j], ptr, bytes, blocks)? };
            Ok(())
        })?;
        let ctas = choose_ctas(
            (g.k / BK as usize) as u32,
            rmm_tiles(rmm, g.n_out, m),
            cta_slots(rmm, sm_count - sms),
            rmm.max_kb,
            Spread::Even,
        );
        let (ws_bytes, flags_bytes) = plan::split_buffers(rmm, g.n_out, m, ctas);
        let mut ws = stream
            .alloc_zeros::<u8>(ws_bytes.max(4))
            .ctx(|| "allocating stream-K partials".into())?;
        let mut flags = stream
            .alloc_zeros::<u8>(flags_bytes.max(4))
            .ctx(|| "allocating stream-K flags".into())?;
        let matmul_us = bench::time(stream, warmup, iters, |i| {
            let j = i % lins.len();
            let mut p = plans[j];
            p.ctas = ctas;
            let (xp, _a) = x.device_ptr(stream);
            let (yp, _b) = y.device_ptr_mut(stream);
            let (pp, _c) = pre[j].device_ptr(stream);
            let (wp, _d) = ws.device_ptr_mut(stream);
            let (fp, _e) = flags.device_ptr_mut(stream);
            let split = SplitBufs {
                ws: wp,
                ws_bytes,
                flags: fp,
                flags_bytes,
            };
            // SAFETY: x holds ≥ m × k and y ≥ m × n_out bf16 (the tuner sizes them for its
            // largest batch); `pre` holds this weight's preprocess output for the plan; the
            // partials and flags are sized for `ctas` CTAs, flags start zero and the kernels
            // leave them zero; one launch at a time on this stream uses them.
            unsafe { lins[j].matmul_raw(stream, xp, yp, &p, pp, split)? };
            Ok(())
        })?;
        out.push(ShareTiming {
            decode_sms: sms,
            decode_us,
            matmul_us,
        });
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(decode_sms: u32, decode_us: f64, matmul_us: f64) -> ShareTiming {
        ShareTiming {
            decode_sms,
            decode_us,
            matmul_us,
        }
    }

    #[test]
    fn the_share_with_the_shorter_longest_half_wins() {
        // Few SMs: the decode is the long half; many: the matmul is.
        let shares = [t(16, 300.0, 40.0), t(33, 150.0, 45.0), t(66, 80.0, 70.0)];
        assert_eq!(best_share(&shares).unwrap().decode_sms, 66);
        let shares = [t(16, 30.0, 40.0), t(33, 20.0, 45.0), t(66, 10.0, 70.0)];
        assert_eq!(best_share(&shares).unwrap().decode_sms, 16);
        // A tie goes to the fewer SMs (more left to the matmul of the other layers).
        let shares = [t(33, 50.0, 50.0), t(16, 50.0, 50.0)];
        assert_eq!(best_share(&shares).unwrap().decode_sms, 16);
        assert!(best_share(&[]).is_none());
    }
}
