//! The variant space as an explicit product of axes, and the budget check that prunes it.
//!
//! Every derived constant a template needs (shared-memory offsets, expect-tx bytes, accumulator
//! registers, launch geometry) is computed here, once, and handed to the template as a typed
//! context; the templates only substitute values and re-check them with `static_assert`s.
//! No dependencies, so the runtime can size launches from the same numbers.

use std::fmt;

use crate::abi::{
    self, huff_err, BITS_TAIL, BK, BM, ESC_RECORD_BYTES, GROUP, MAX_CODE_LEN, SMEM_LIMIT,
};
use crate::variant::{
    ASource, ActOp, ActVariant, GridRule, HuffOutput, HuffRefill, HuffVariant, Operand,
    RelayoutElem, RelayoutVariant, RmmVariant, Variant,
};
/// Shared memory per SM (228 KB); two co-resident CTAs also pay 1 KB of reserved smem each.
pub const SMEM_PER_SM: u32 = 233_472;
/// 32-bit registers per SM.
pub const REGS_PER_SM: u32 = 65_536;

/// Registers per thread ptxas allocates under `__launch_bounds__(threads, ctas)` (a multiple of 8).
pub fn regs_per_thread(threads: u32, ctas: u32) -> u32 {
    (REGS_PER_SM / (threads * ctas)).min(255) / 8 * 8
}

/// Tile widths (WGMMA N = batch tile).
pub const TILE_N: [u32; 6] = [8, 16, 32, 64, 128, 256];
/// Ring depths.
pub const STAGES: [u32; 7] = [2, 3, 4, 5, 6, 7, 8];
/// Transpose axis, `false` first.
pub const TRANSPOSE: [bool; 2] = [false, true];
/// Tile widths of the RS form: it is the small-batch kernel (HBM-bound decode); wide tiles stay SS,
/// where a rebuilt tile in shared memory is shared by more batch columns per weight byte.
pub const RS_TILE_N: [u32; 4] = [8, 16, 32, 64];
/// Ring depths of the RS form: a stage is 13-25 KB. 4 is the shallow comparison point (one k
/// block per consumer step); 8 and 12 take two k blocks per step ([`rs_kb_step`]), which holds 4
/// stages in the consumers, so 12 keeps as many in flight as 8 did with one-block steps (12 is
/// pruned for SMEM where the x tile is wide).
pub const RS_STAGES: [u32; 3] = [4, 8, 12];
/// Ring depths of the RS form at two CTAs per SM ([`RmmVariant::ctas_per_sm`] = 2): each CTA gets
/// half the shared memory (so at most ~110 KB of ring) and 80 registers per thread at launch, so
/// only one-block steps; 6 keeps ~4 stages per CTA in flight.
pub const RS_PAIR_STAGES: [u32; 2] = [4, 6];

/// Every combination of the axes, in the one variant order used everywhere (registry, manifest,
/// snapshots): SS rmm by pipeline, transpose, tile width, stages; the same for RS rmm over its
/// own tile widths and depths, at one CTA per SM and then at two; then the Huffman kernels, then the activations, then
/// the re-layouts. Includes
/// combinations that [`check`] prunes.
pub fn variants() -> impl Iterator<Item = Variant> {
    let rmm = |a_src: ASource, tiles: &'static [u32], stages: &'static [u32], ctas_per_sm: u32| {
        Operand::ALL.into_iter().flat_map(move |operand| {
            TRANSPOSE.into_iter().flat_map(move |transpose| {
                tiles.iter().flat_map(move |&tile_n| {
                    stages.iter().map(move |&stages| {
                        Variant::Rmm(RmmVariant {
                            operand,
                            tile_n,
                            stages,
                            transpose,
                            a_src,
                            ctas_per_sm,
                        })
                    })
                })
            })
        })
    };
    let rmm = rmm(ASource::Smem, &TILE_N, &STAGES, 1)
        .chain(rmm(ASource::Regs, &RS_TILE_N, &RS_STAGES, 1))
        .chain(rmm(ASource::Regs, &RS_TILE_N, &RS_PAIR_STAGES, 2));
    let huff = HuffOutput::ALL.into_iter().flat_map(|output| {
        HuffRefill::ALL
            .into_iter()
            .map(move |refill| Variant::Huff(HuffVariant { output, refill }))
    });
    let act = ActOp::ALL
        .into_iter()
        .map(|op| Variant::Act(ActVariant { op }));
    let relayout = RelayoutElem::ALL
        .into_iter()
        .map(|elem| Variant::Relayout(RelayoutVariant { elem }));
    rmm.chain(huff).chain(act).chain(relayout)
}

/// The variants that pass [`check`], with their budgets, in variant order.
pub fn kept() -> Vec<(Variant, Budget)> {
    variants()
        .filter_map(|v| check(&v).ok().map(|b| (v, b)))
        .collect()
}

/// The combinations [`check`] rejects, with the reason, in variant order.
pub fn pruned() -> Vec<(Variant, Pruned)> {
    variants()
        .filter_map(|v| check(&v).err().map(|p| (v, p)))
        .collect()
}

/// What a variant costs, and every constant derived from its parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Budget {
    Rmm(RmmBudget),
    Huff(HuffBudget),
    Act(ActBudget),
    Relayout(RelayoutBudget),
}

/// Why a combination is not generated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pruned {
    /// The shared-memory layout does not fit the per-block limit.
    Smem {
        dynamic_smem: u32,
        breakdown: String,
        limit: u32,
    },
    /// Accumulators plus working registers exceed what a consumer thread gets after `setmaxnreg`.
    Registers {
        acc_regs: u32,
        overhead: u32,
        budget: u32,
    },
    /// An axis value the template cannot express.
    Unsupported { reason: String },
}

impl fmt::Display for Pruned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pruned::Smem { dynamic_smem, breakdown, limit } => write!(
                f,
                "smem {} B = {breakdown} > {} B (227 KB)",
                thousands(*dynamic_smem),
                thousands(*limit)
            ),
            Pruned::Registers { acc_regs, overhead, budget } => write!(
                f,
                "registers {acc_regs} accumulators + {overhead} working = {} > {budget} per consumer thread",
                acc_regs + overhead
            ),
            Pruned::Unsupported { reason } => write!(f, "unsupported: {reason}"),
        }
    }
}

/// Checks a variant against the hardware budget; on success returns its derived constants.
pub fn check(v: &Variant) -> Result<Budget, Pruned> {
    match v {
        Variant::Rmm(r) => RmmBudget::new(r).map(Budget::Rmm),
        Variant::Huff(h) => Ok(Budget::Huff(HuffBudget::new(h))),
        Variant::Act(a) => Ok(Budget::Act(ActBudget::new(a))),
        Variant::Relayout(r) => Ok(Budget::Relayout(RelayoutBudget::new(r))),
    }
}

/// A derived constant as the templates and the variant table see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Int(u64),
    Bool(bool),
    Str(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(x) => write!(f, "{x}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Str(s) => write!(f, "{s}"),
        }
    }
}

/// Shared-memory layout and register budget of one reconstructive-matmul variant
/// (the Tera context of templates/rmm.cu.tera; see docs in that template's header).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RmmBudget {
    pub variant: RmmVariant,
    pub bm: u32,
    pub bk: u32,
    pub consumers: u32,
    pub threads: u32,
    /// A tiles (reconstructed / TMA'd bf16, 128 × 64): one per stage for raw (TMA writes them),
    /// four for compressed pipelines (consumers rebuild two k blocks per step, pairs alternate).
    pub a_bufs: u32,
    pub a_bytes: u32,
    /// Per stage: sign-mantissa bytes.
    pub w0_bytes: u32,
    /// Per stage: exponent bytes or nibbles.
    pub w1_bytes: u32,
    /// Per stage: `esc_cap` staged escape groups (64 B each); palette only.
    pub esc_bytes: u32,
    /// Escaped groups per stage staged in shared memory; more are read from global memory.
    pub esc_cap: u32,
    /// Palette: the CTA's tile_esc records (32 B per k block), copied once; a CTA's stream-K range
    /// has at most `max_kb` k blocks (the runtime picks enough CTAs).
    pub rec_bytes: u32,
    pub max_kb: u32,
    /// Per x slot: the x tile (tile_n rows × 64 bf16).
    pub b_bytes: u32,
    pub off_a: u32,
    pub off_b: u32,
    pub off_w0: u32,
    pub off_w1: u32,
    pub off_esc: u32,
    pub off_rec: u32,
    pub off_bar: u32,
    pub smem_bytes: u32,
    /// `smem_bytes` + 1024 bytes of slack to align the window to 1024.
    pub dynamic_smem: u32,
    /// expect_tx bytes per stage.
    pub tx_bytes: u32,
    pub acc_regs: u32,
    /// k blocks per consumer step (SS compressed: [`ss_kb_step`]; RS: [`rs_kb_step`]).
    pub kb_step: u32,
    /// CTAs per SM (`__launch_bounds__` min blocks): 1 for SS; 1 or 2 for RS (the `_c2` pairs,
    /// see `RmmBudget::new`).
    pub ctas_per_sm: u32,
    /// Registers per thread at launch (ptxas), and the `setmaxnreg` split of that pool.
    pub regs_per_thread: u32,
    pub producer_regs: u32,
    pub consumer_regs: u32,
}

/// Escaped groups staged per palette stage (more are read from global memory, on the consumers'
/// critical path). Escapes are ~1-2% of groups, so a 128-group tile has ~2 on average and more
/// than 4 in a few % of stages; 16 makes the slow path practically unused for 1 KB per stage.
pub const RMM_ESC_CAP: u32 = 16;
/// k blocks (of 64) per CTA whose escape records a palette CTA keeps in shared memory
/// (docs/CONTRACT.md: 256, so k ≤ 16384 — a 14336-wide down projection — fits one CTA; longer
/// ranges are spread over more CTAs by the runtime).
pub const RMM_MAX_KB: u32 = 256;
/// k blocks a compressed SS consumer rebuilds per step (templates/rmm.cu.tera `KB_STEP`): 2 for
/// narrow batch tiles (more independent chunks per thread, half the fences and warpgroup barriers
/// per k block); 1 from `tile_n` 128 on, where one k block's wgmmas are long enough to hide the next
/// block's rebuild. Two A buffers instead of four leave room for a deeper ring (n256: 3 -> 4
/// stages), and with a ring of 2 or 3 stages only 1-block steps overlap rebuild and wgmma
/// (`OVERLAP`: stages >= 2 steps); 2-block steps there waited for each step's wgmmas.
pub fn ss_kb_step(tile_n: u32) -> u32 {
    if tile_n >= 128 {
        1
    } else {
        2
    }
}

/// k blocks an RS consumer takes per step: 2 (more independent loads and rebuild chains per
/// thread, half the warpgroup-wide wgmma meetings per k block) where the ring holds two steps'
/// stages and still has stages in flight, else 1.
pub fn rs_kb_step(stages: u32) -> u32 {
    if stages >= 8 {
        2
    } else {
        1
    }
}
/// Registers a consumer thread needs besides its accumulators (addresses, loop state, one
/// 16-byte reconstruction chunk, palette and escape mask).
pub const RMM_WORKING_REGS: u32 = 72;
/// RS form: A fragments of one k block (16 registers); two steps' worth live at once, so the
/// rebuild of step j + 1 overlaps wgmma j.
pub const RMM_RS_FRAG_REGS: u32 = 16;
/// RS form: registers a consumer needs besides accumulators and fragments (no rebuild chunk or
/// A-tile addresses; the staged vectors of a block, palette, lane constants). Set from ptxas
/// (NVRTC 13.0, 2026-12-02): `rmm_palette_rs_n8_s4` under `__launch_bounds__(384, 2)` needs 80
/// registers with 0 spills, which this estimate (+ 2 x 16 fragments + 4 accumulators = 92) covers.
pub const RMM_RS_WORKING_REGS: u32 = 56;

impl RmmBudget {
    pub fn new(v: &RmmVariant) -> Result<RmmBudget, Pruned> {
        let regs = v.a_src == ASource::Regs;
        let pair = v.ctas_per_sm == 2;
        if !TILE_N.contains(&v.tile_n)
            || !(STAGES.contains(&v.stages)
                || RS_STAGES.contains(&v.stages)
                || RS_PAIR_STAGES.contains(&v.stages))
        {
            return Err(Pruned::Unsupported {
                reason: format!("tile_n {} / stages {} outside the axes", v.tile_n, v.stages),
            });
        }
        if !matches!(v.ctas_per_sm, 1 | 2) || (pair && !regs) {
            return Err(Pruned::Unsupported {
                reason: format!(
                    "{} CTAs per SM: 1, or 2 for the RS form only",
                    v.ctas_per_sm
                ),
            });
        }
        if !regs && !STAGES.contains(&v.stages) {
            return Err(Pruned::Unsupported {
                reason: format!("stages {} outside the SS axis", v.stages),
            });
        }
        let rs_stages: &[u32] = if pair { &RS_PAIR_STAGES } else { &RS_STAGES };
        if regs && (!RS_TILE_N.contains(&v.tile_n) || !rs_stages.contains(&v.stages)) {
            return Err(Pruned::Unsupported {
                reason: format!(
                    "rs: tile_n {} / stages {} outside the RS axes",
                    v.tile_n, v.stages
                ),
            });
        }
        if regs && v.operand == Operand::Exponent {
            return Err(Pruned::Unsupported {
                reason: "rs: huff_exponent writes the tiled layout, not fragments".to_string(),
            });
        }
        let (bm, bk) = (BM, BK);
        let raw = v.operand == Operand::Raw;
        let a_bytes = bm * bk * 2;
        // SS: raw has one TMA'd A tile per stage; compressed pipelines rebuild a step's k blocks
        // into alternating sets of A buffers. RS: the A operand lives in registers.
        let a_bufs = match (regs, raw) {
            (true, _) => 0,
            (false, true) => v.stages,
            (false, false) => 2 * ss_kb_step(v.tile_n),
        };
        // RS raw: pre-shuffled bf16 fragments arrive by bulk copy like the compressed blocks.
        let w0_bytes = match (regs, raw) {
            (true, true) => abi::BF16_TILE_BYTES,
            (false, true) => 0,
            (_, false) => abi::SM_TILE_BYTES,
        };
        let w1_bytes = match v.operand {
            Operand::Raw => 0,
            Operand::Exponent => abi::EXP_TILE_BYTES,
            Operand::Palette => abi::NIBBLE_TILE_BYTES,
        };
        let palette = v.operand == Operand::Palette;
        let esc_cap = if palette { RMM_ESC_CAP } else { 0 };
        let esc_bytes = GROUP * esc_cap;
        let max_kb = if palette { RMM_MAX_KB } else { 0 };
        let rec_bytes = ESC_RECORD_BYTES * max_kb;
        let b_bytes = v.tile_n * bk * 2;
        let off_a = 0;
        let off_b = off_a + a_bufs * a_bytes;
        let off_w0 = off_b + v.stages * b_bytes;
        let off_w1 = off_w0 + v.stages * w0_bytes;
        let off_esc = off_w1 + v.stages * w1_bytes;
        let off_rec = off_esc + v.stages * esc_bytes;
        let off_bar = off_rec + rec_bytes;
        // full[stages], empty[stages], then one barrier for the records.
        let smem_bytes = off_bar + 16 * v.stages + 16;
        let dynamic_smem = smem_bytes + 1024;
        // The staged escape exponents vary per stage; the producer adds them to this at run time.
        let tx_bytes = if raw && !regs {
            a_bytes + b_bytes
        } else {
            w0_bytes + w1_bytes + b_bytes
        };
        let mut layout = RmmBudget {
            variant: *v,
            bm,
            bk,
            consumers: abi::RMM_CONSUMER_THREADS / 128,
            threads: 128 + abi::RMM_CONSUMER_THREADS,
            a_bufs,
            a_bytes,
            w0_bytes,
            w1_bytes,
            esc_bytes,
            esc_cap,
            rec_bytes,
            max_kb,
            b_bytes,
            off_a,
            off_b,
            off_w0,
            off_w1,
            off_esc,
            off_rec,
            off_bar,
            smem_bytes,
            dynamic_smem,
            tx_bytes,
            acc_regs: v.tile_n / 2,
            kb_step: if regs {
                rs_kb_step(v.stages)
            } else {
                ss_kb_step(v.tile_n)
            },
            ctas_per_sm: 1,
            regs_per_thread: 0,
            producer_regs: 0,
            consumer_regs: 0,
        };
        // SS: one CTA per SM (`__launch_bounds__(threads, 1)`): measured on the H100 (2026-11-22), a
        // second CTA per SM did not speed up narrow tiles, whose rebuild is bound by the SM's issue
        // rate. RS may take two: its consumers issue a third of the time at one CTA (H200 profile,
        // 2026-12-02) and wait on dependency chains that a second CTA's warps can fill.
        layout.ctas_per_sm = v.ctas_per_sm;
        layout.regs_per_thread = regs_per_thread(layout.threads, layout.ctas_per_sm);
        // The producer keeps the minimum that still issues copies (CUTLASS: 40); consumers get the
        // rest of the CTA's pool, rounded down to setmaxnreg's multiple of 8.
        layout.producer_regs = 40;
        let pool = layout.regs_per_thread * layout.threads;
        layout.consumer_regs = ((pool - layout.producer_regs * 128) / 256 / 8 * 8).min(256);
        // Co-resident CTAs split the SM's shared memory, each paying 1 KB of reserved smem.
        let smem_limit = if pair {
            SMEM_PER_SM / 2 - 1024
        } else {
            SMEM_LIMIT
        };
        if dynamic_smem > smem_limit {
            return Err(Pruned::Smem {
                dynamic_smem,
                breakdown: layout.smem_breakdown(),
                limit: smem_limit,
            });
        }
        let overhead = if regs {
            RMM_RS_WORKING_REGS + 2 * layout.kb_step * RMM_RS_FRAG_REGS
        } else {
            RMM_WORKING_REGS
        };
        if layout.acc_regs + overhead > layout.consumer_regs {
            return Err(Pruned::Registers {
                acc_regs: layout.acc_regs,
                overhead,
                budget: layout.consumer_regs,
            });
        }
        Ok(layout)
    }

    /// "A 2x16384 + B 4x8192 + ..." — the terms of `dynamic_smem`, for pruning reasons.
    pub fn smem_breakdown(&self) -> String {
        let s = self.variant.stages;
        let mut parts = vec![
            format!("A {}x{}", self.a_bufs, self.a_bytes),
            format!("B {s}x{}", self.b_bytes),
        ];
        for (label, bytes) in [
            ("W0", self.w0_bytes),
            ("W1", self.w1_bytes),
            ("esc", self.esc_bytes),
        ] {
            if bytes > 0 {
                parts.push(format!("{label} {s}x{bytes}"));
            }
        }
        if self.rec_bytes > 0 {
            parts.push(format!("records {}", self.rec_bytes));
        }
        parts.push(format!("barriers {s}x16+16"));
        parts.push("align 1024".to_string());
        parts.join(" + ")
    }

    /// Every context key of templates/rmm.cu.tera, in a fixed order.
    pub fn constants(&self) -> Vec<(&'static str, Value)> {
        let v = &self.variant;
        let int = |x: u32| Value::Int(x as u64);
        vec![
            ("name", Value::Str(Variant::Rmm(*v).to_string())),
            ("pipeline", Value::Str(v.operand.as_str().to_string())),
            ("is_raw", Value::Bool(v.operand == Operand::Raw)),
            ("is_palette", Value::Bool(v.operand == Operand::Palette)),
            ("is_exponent", Value::Bool(v.operand == Operand::Exponent)),
            ("transpose", Value::Bool(v.transpose)),
            ("a_regs", Value::Bool(v.a_src == ASource::Regs)),
            ("tile_n", int(v.tile_n)),
            ("stages", int(v.stages)),
            ("bm", int(self.bm)),
            ("bk", int(self.bk)),
            ("consumers", int(self.consumers)),
            ("threads", int(self.threads)),
            ("a_bufs", int(self.a_bufs)),
            ("a_bytes", int(self.a_bytes)),
            ("w0_bytes", int(self.w0_bytes)),
            ("w1_bytes", int(self.w1_bytes)),
            ("esc_bytes", int(self.esc_bytes)),
            ("esc_cap", int(self.esc_cap)),
            ("rec_bytes", int(self.rec_bytes)),
            ("max_kb", int(self.max_kb)),
            ("b_bytes", int(self.b_bytes)),
            ("kb_step", int(self.kb_step)),
            ("off_a", int(self.off_a)),
            ("off_b", int(self.off_b)),
            ("off_w0", int(self.off_w0)),
            ("off_w1", int(self.off_w1)),
            ("off_esc", int(self.off_esc)),
            ("off_rec", int(self.off_rec)),
            ("off_bar", int(self.off_bar)),
            ("smem_bytes", int(self.smem_bytes)),
            ("dynamic_smem", int(self.dynamic_smem)),
            ("tx_bytes", int(self.tx_bytes)),
            ("acc_regs", int(self.acc_regs)),
            ("ctas_per_sm", int(self.ctas_per_sm)),
            ("regs_per_thread", int(self.regs_per_thread)),
            ("producer_regs", int(self.producer_regs)),
            ("consumer_regs", int(self.consumer_regs)),
            ("smem_limit", int(SMEM_LIMIT)),
            ("group", int(GROUP)),
            ("consumer_threads", int(abi::RMM_CONSUMER_THREADS)),
            ("esc_record_bytes", int(ESC_RECORD_BYTES)),
            ("esc_record_words", int(abi::ESC_RECORD_WORDS)),
            ("esc_first_word", int(abi::ESC_FIRST_WORD)),
            ("esc_count_word", int(abi::ESC_COUNT_WORD)),
            ("frag_vector_bytes", int(abi::FRAG_VECTOR_BYTES)),
            ("frag_threads", int(abi::FRAG_THREADS)),
            ("frag_elems", int(abi::FRAG_ELEMS)),
        ]
    }
}

/// Geometry of one Huffman preprocess kernel (the Tera context of templates/huff.cu.tera).
///
/// One thread decodes one chunk; a warp decodes units of 32 chunks group by group (64 symbols),
/// stages the groups' indices in shared memory and writes the 32 groups out cooperatively. Warps loop
/// over the units (persistent), so any grid of at least one block decodes the whole stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HuffBudget {
    pub variant: HuffVariant,
    pub threads: u32,
    pub warps: u32,
    /// One chunk per thread.
    pub chunks_per_block: u32,
    /// Elements per group (escape and output unit); chunks must hold whole groups.
    pub group: u32,
    /// Longest code and the decode table it implies.
    pub max_code_len: u32,
    pub lut_entries: u32,
    /// Shared memory: the multi-symbol table (u32 per entry), built on the host from the decode
    /// table at upload (`gpu::layout::multi`) and copied in by each block, with up to
    /// `multi_syms` whole codes per peek.
    pub multi_bytes: u32,
    pub multi_syms: u32,
    /// Shared memory: byte → two exponent bytes (palette of two nibbles), u16 per entry.
    pub pal2_bytes: u32,
    /// Shared memory: code length per symbol (u32 each), for the chunk-end check.
    pub symlen_bytes: u32,
    /// Shared memory per warp: 32 groups of nibbles (8 words each, rows padded to `stage_stride_words`
    /// against bank conflicts) + 32 escape slots + 32 output places (u32 each).
    pub stage_stride_words: u32,
    pub stage_bytes_per_warp: u32,
    /// Output bytes per group, and the bytes each lane stores per write (16).
    pub out_group_bytes: u32,
    pub lanes_per_group: u32,
    /// Shared memory: the stream's last block index (one u32, read by every lane's reader) and the
    /// divider by the groups per row (three u32, read where a group is placed).
    pub misc_bytes: u32,
    /// Symbols between two resident sub-chunk offsets (`abi::SUB_SYMBOLS`), and the groups they hold.
    pub sub_symbols: u32,
    pub sub_groups: u32,
    /// Refill `sub256`: shared memory per warp for its 32 sub-chunks' bits (16-byte blocks; a unit
    /// whose bits do not fit decodes from global memory instead), 0 otherwise.
    pub stage_in_bytes: u32,
    /// Refill `sub256`: units of 32 sub-chunks per warp in the natural grid (chunks are then counted
    /// at the format's 1024 symbols): 1, as the runtime launches the sub-chunk decoders on a grid
    /// that fills each SM once (`decode_blocks_of`) when the natural one is larger. (3, the natural
    /// grid of 598 blocks for 14336 x 4096, loaded SMs of 4 and 5 blocks unevenly.)
    pub units_per_warp: u32,
    /// Total static shared memory.
    pub smem_bytes: u32,
}

impl HuffBudget {
    pub fn new(v: &HuffVariant) -> HuffBudget {
        let threads = 128;
        let warps = threads / 32;
        let group = GROUP;
        let max_code_len = MAX_CODE_LEN;
        let lut_entries = 1 << max_code_len;
        let pal2_bytes = 256 * 2;
        let symlen_bytes = 16 * 4;
        let multi_bytes = lut_entries * 4;
        let multi_syms = v.refill.multi_syms();
        let misc_bytes = 4 + 12;
        let stage_stride_words = group / 8 + 1;
        let stage_bytes_per_warp = 32 * stage_stride_words * 4 + 2 * 32 * 4;
        let sub_symbols = abi::SUB_SYMBOLS;
        let staged = v.refill.sub_symbols().is_some();
        // 4 KB: a unit of 32 x 256 symbols at up to ~3.9 bits per symbol (weights: ~2.7).
        let stage_in_bytes = if staged { 4096 } else { 0 };
        let units_per_warp = 1;
        // Lanes per chunk of the format's 1024 symbols.
        let lanes_per_chunk = if staged { 1024 / sub_symbols } else { 1 };
        let out_group_bytes = match v.output {
            HuffOutput::Bf16 => group * 2,
            HuffOutput::Exponent => group,
            HuffOutput::Palette => group / 2,
        };
        HuffBudget {
            variant: *v,
            threads,
            warps,
            chunks_per_block: threads * units_per_warp / lanes_per_chunk,
            group,
            max_code_len,
            lut_entries,
            multi_bytes,
            multi_syms,
            pal2_bytes,
            symlen_bytes,
            stage_stride_words,
            stage_bytes_per_warp,
            out_group_bytes,
            lanes_per_group: out_group_bytes / 16,
            misc_bytes,
            sub_symbols,
            sub_groups: sub_symbols / group,
            stage_in_bytes,
            units_per_warp,
            smem_bytes: (warps * stage_in_bytes).max(16)
                + multi_bytes
                + pal2_bytes
                + symlen_bytes
                + misc_bytes
                + warps * stage_bytes_per_warp,
        }
    }

    /// Every context key of templates/huff.cu.tera, in a fixed order.
    pub fn constants(&self) -> Vec<(&'static str, Value)> {
        let v = &self.variant;
        let int = |x: u32| Value::Int(x as u64);
        vec![
            ("name", Value::Str(Variant::Huff(*v).to_string())),
            ("output", Value::Str(v.output.as_str().to_string())),
            ("is_bf16", Value::Bool(v.output == HuffOutput::Bf16)),
            ("is_exponent", Value::Bool(v.output == HuffOutput::Exponent)),
            ("is_palette", Value::Bool(v.output == HuffOutput::Palette)),
            ("refill", Value::Str(v.refill.as_str().to_string())),
            ("refill_vec4", Value::Bool(v.refill == HuffRefill::Vec4)),
            ("refill_sub", Value::Bool(v.refill.sub_symbols().is_some())),
            (
                "refill_m4",
                Value::Bool(matches!(
                    v.refill,
                    HuffRefill::Sub256M4 | HuffRefill::Sub256Win
                )),
            ),
            ("refill_win", Value::Bool(v.refill == HuffRefill::Sub256Win)),
            ("threads", int(self.threads)),
            ("warps", int(self.warps)),
            ("chunks_per_block", int(self.chunks_per_block)),
            ("group", int(self.group)),
            ("max_code_len", int(self.max_code_len)),
            ("lut_entries", int(self.lut_entries)),
            ("multi_bytes", int(self.multi_bytes)),
            ("multi_syms", int(self.multi_syms)),
            ("pal2_bytes", int(self.pal2_bytes)),
            ("symlen_bytes", int(self.symlen_bytes)),
            ("stage_stride_words", int(self.stage_stride_words)),
            ("stage_bytes_per_warp", int(self.stage_bytes_per_warp)),
            ("out_group_bytes", int(self.out_group_bytes)),
            ("lanes_per_group", int(self.lanes_per_group)),
            ("misc_bytes", int(self.misc_bytes)),
            ("sub_symbols", int(self.sub_symbols)),
            ("sub_groups", int(self.sub_groups)),
            ("stage_in_bytes", int(self.stage_in_bytes)),
            ("units_per_warp", int(self.units_per_warp)),
            ("smem_bytes", int(self.smem_bytes)),
            ("smem_per_sm", int(SMEM_PER_SM)),
            ("bits_tail", int(BITS_TAIL)),
            ("bm", int(BM)),
            ("bk", int(BK)),
            ("layout_row_major", int(abi::HuffLayout::RowMajor.code())),
            (
                "layout_tiled_standard",
                int(abi::HuffLayout::TiledStandard.code()),
            ),
            (
                "layout_tiled_transposed",
                int(abi::HuffLayout::TiledTransposed.code()),
            ),
            ("err_words", int(huff_err::WORDS)),
            ("err_args", int(huff_err::ARGS)),
            ("err_offset", int(huff_err::OFFSET)),
            ("err_no_code", int(huff_err::NO_CODE)),
            ("err_length", int(huff_err::LENGTH)),
            ("err_escape", int(huff_err::ESCAPE)),
        ]
    }
}

/// Launch geometry of one activation kernel (the Tera context of templates/act.cu.tera).
///
/// Memory-bound: each thread moves 16 bytes per input per step (`vec` bf16 values) with one
/// vector load, and the grid strides over the rest, so any grid of >= 1 blocks covers `n`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActBudget {
    pub variant: ActVariant,
    pub threads: u32,
    /// bf16 values per thread per step (one 16-byte load per input).
    pub vec: u32,
}

/// The f32 constants of the activation math as bit patterns: templates/act.cu.tera receives them
/// as context values and the runtime's CPU reference (`gpu::mlp::activation`) reads them here, so
/// both compute with the very same numbers.
pub mod act_math {
    /// log2(e).
    pub const LOG2E: u32 = 0x3fb8_aa3b;
    /// ln 2 split for Cody-Waite reduction: HI has 9 trailing zero bits (n·HI exact for |n| < 512).
    pub const LN2_HI: u32 = 0x3f31_7200;
    pub const LN2_LO: u32 = 0x35bf_be8e;
    /// 1.5·2^23: adding it rounds an f32 below 2^22 to an integer.
    pub const ROUND_MAGIC: u32 = 0x4b40_0000;
    /// exp overflows above this (88.72283935546875) and is 0 below `EXP_LO` (-103.97208…).
    pub const EXP_HI: u32 = 0x42b1_7218;
    pub const EXP_LO: u32 = 0xc2cf_f1b5;
    /// Taylor coefficients of e^r, highest degree first (1/7!, 1/6!, …, 1, 1), for Horner's rule.
    pub const EXP_POLY: [u32; 8] = [
        0x3950_0d01,
        0x3ab6_0b61,
        0x3c08_8889,
        0x3d2a_aaab,
        0x3e2a_aaab,
        0x3f00_0000,
        0x3f80_0000,
        0x3f80_0000,
    ];
    /// The Chebyshev fit erfc(z) = t·exp(-z² + P(t)), t = 1/(1 + z/2) (fractional error < 1.2e-7,
    /// Numerical Recipes §6.2): P's coefficients, highest degree first.
    pub const ERFC_POLY: [u32; 10] = [
        0x3e2e_f945,
        0xbf52_7892,
        0x3fbe_87b0,
        0xbf91_4e5d,
        0x3e8e_c7cc,
        0xbe3e_c24c,
        0x3dc6_36c9,
        0x3ebf_88fb,
        0x3f80_00c7,
        0xbfa1_fc4e,
    ];
    /// 1/√2.
    pub const FRAC_1_SQRT_2: u32 = 0x3f35_04f3;
}

/// Template keys of [`act_math::EXP_POLY`] and [`act_math::ERFC_POLY`], in the same order.
const EXP_KEYS: [&str; 8] = [
    "exp_c7", "exp_c6", "exp_c5", "exp_c4", "exp_c3", "exp_c2", "exp_c1", "exp_c0",
];
const ERFC_KEYS: [&str; 10] = [
    "erfc_c9", "erfc_c8", "erfc_c7", "erfc_c6", "erfc_c5", "erfc_c4", "erfc_c3", "erfc_c2",
    "erfc_c1", "erfc_c0",
];

/// Threads per activation block.
pub const ACT_THREADS: u32 = 256;
/// bf16 values per 16-byte vector.
pub const ACT_VEC: u32 = 8;

impl ActBudget {
    pub fn new(v: &ActVariant) -> ActBudget {
        ActBudget {
            variant: *v,
            threads: ACT_THREADS,
            vec: ACT_VEC,
        }
    }

    /// Every context key of templates/act.cu.tera, in a fixed order.
    pub fn constants(&self) -> Vec<(&'static str, Value)> {
        let v = &self.variant;
        let int = |x: u32| Value::Int(x as u64);
        let mut c = vec![
            ("name", Value::Str(Variant::Act(*v).to_string())),
            ("op", Value::Str(v.op.as_str().to_string())),
            ("is_silu_mul", Value::Bool(v.op == ActOp::SiluMul)),
            ("is_gelu", Value::Bool(v.op == ActOp::Gelu)),
            ("threads", int(self.threads)),
            ("vec", int(self.vec)),
        ];
        for (key, bits) in [
            ("log2e", act_math::LOG2E),
            ("ln2_hi", act_math::LN2_HI),
            ("ln2_lo", act_math::LN2_LO),
            ("round_magic", act_math::ROUND_MAGIC),
            ("exp_hi", act_math::EXP_HI),
            ("exp_lo", act_math::EXP_LO),
            ("frac_1_sqrt_2", act_math::FRAC_1_SQRT_2),
        ] {
            c.push((key, int(bits)));
        }
        c.extend(
            EXP_KEYS
                .iter()
                .zip(act_math::EXP_POLY)
                .map(|(k, b)| (*k, int(b))),
        );
        c.extend(
            ERFC_KEYS
                .iter()
                .zip(act_math::ERFC_POLY)
                .map(|(k, b)| (*k, int(b))),
        );
        c
    }
}

/// Launch geometry of one re-layout kernel (the Tera context of templates/relayout.cu.tera): one
/// block of [`abi::FRAG_THREADS`] threads per fragment block, the tiled block staged in static
/// shared memory, each thread writing its own 16-byte vectors (so consecutive threads write
/// consecutive vectors: coalesced stores).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayoutBudget {
    pub variant: RelayoutVariant,
    pub threads: u32,
    /// Bytes of one block of the component (tiled and fragment blocks are the same size).
    pub block_bytes: u32,
    /// Fragment vectors each thread writes per block (`block_bytes / 16 / threads`).
    pub vectors: u32,
    /// Elements per vector.
    pub elems_per_vector: u32,
}

impl RelayoutBudget {
    pub fn new(v: &RelayoutVariant) -> RelayoutBudget {
        let threads = abi::FRAG_THREADS;
        let block_bytes = match v.elem {
            RelayoutElem::Nibble => abi::NIBBLE_TILE_BYTES,
            RelayoutElem::Byte => abi::SM_TILE_BYTES,
        };
        RelayoutBudget {
            variant: *v,
            threads,
            block_bytes,
            vectors: block_bytes / abi::FRAG_VECTOR_BYTES / threads,
            elems_per_vector: abi::FRAG_VECTOR_BYTES * 8 / v.elem.bits(),
        }
    }

    /// Every context key of templates/relayout.cu.tera, in a fixed order.
    pub fn constants(&self) -> Vec<(&'static str, Value)> {
        let v = &self.variant;
        let int = |x: u32| Value::Int(x as u64);
        vec![
            ("name", Value::Str(Variant::Relayout(*v).to_string())),
            ("elem", Value::Str(v.elem.as_str().to_string())),
            ("is_nibble", Value::Bool(v.elem == RelayoutElem::Nibble)),
            ("elem_bits", int(v.elem.bits())),
            ("threads", int(self.threads)),
            ("block_bytes", int(self.block_bytes)),
            ("vectors", int(self.vectors)),
            ("elems_per_vector", int(self.elems_per_vector)),
            ("bm", int(BM)),
            ("bk", int(BK)),
            ("frag_threads", int(abi::FRAG_THREADS)),
            ("frag_elems", int(abi::FRAG_ELEMS)),
            ("frag_vector_bytes", int(abi::FRAG_VECTOR_BYTES)),
        ]
    }
}

impl Budget {
    /// The template context: every key, every time.
    pub fn constants(&self) -> Vec<(&'static str, Value)> {
        match self {
            Budget::Rmm(l) => l.constants(),
            Budget::Huff(l) => l.constants(),
            Budget::Act(l) => l.constants(),
            Budget::Relayout(l) => l.constants(),
        }
    }

    /// The template file (under templates/) that renders this family.
    pub fn template(&self) -> &'static str {
        match self {
            Budget::Rmm(_) => "rmm.cu.tera",
            Budget::Huff(_) => "huff.cu.tera",
            Budget::Act(_) => "act.cu.tera",
            Budget::Relayout(_) => "relayout.cu.tera",
        }
    }

    pub fn block(&self) -> [u32; 3] {
        match self {
            Budget::Rmm(l) => [l.threads, 1, 1],
            Budget::Huff(l) => [l.threads, 1, 1],
            Budget::Act(l) => [l.threads, 1, 1],
            Budget::Relayout(l) => [l.threads, 1, 1],
        }
    }

    pub fn grid(&self) -> GridRule {
        match self {
            Budget::Rmm(l) => GridRule::RmmTiles {
                rows_per_cta: l.bm,
                tile_n: l.variant.tile_n,
            },
            Budget::Huff(l) => GridRule::HuffChunks {
                chunks_per_block: l.chunks_per_block,
            },
            Budget::Act(l) => GridRule::Elementwise {
                threads: l.threads,
                elems_per_thread: l.vec,
            },
            Budget::Relayout(l) => GridRule::PerBlock {
                threads: l.threads,
                bytes_per_block: l.block_bytes,
            },
        }
    }

    /// Dynamic shared memory to request at launch (the Huffman and re-layout kernels use static
    /// smem only, the activations none).
    pub fn dynamic_smem(&self) -> u32 {
        match self {
            Budget::Rmm(l) => l.dynamic_smem,
            Budget::Huff(_) | Budget::Act(_) | Budget::Relayout(_) => 0,
        }
    }

    /// k blocks one CTA may hold (palette: its escape records are staged in shared memory);
    /// `None` when the variant has no such limit.
    pub fn max_kb(&self) -> Option<u32> {
        match self {
            Budget::Rmm(l) if l.max_kb > 0 => Some(l.max_kb),
            _ => None,
        }
    }

    /// All shared memory of a block (static + dynamic), what the compile check compares to the limit.
    pub fn total_smem(&self) -> u32 {
        match self {
            Budget::Rmm(l) => l.dynamic_smem,
            Budget::Huff(l) => l.smem_bytes,
            Budget::Act(_) => 0,
            Budget::Relayout(l) => l.block_bytes,
        }
    }
}

/// Named variant sets for `--filter`: `all`, `smoke`, or a comma-separated union of name globs
/// (`*`, `?`) and the names `all` / `smoke` (`smoke,rmm_*_n32_s4_*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VariantSet {
    All,
    /// One of each family and orientation at a middle tile width, plus the tile-width and depth
    /// extremes: quick to compile, touches every template branch.
    Smoke,
    Globs(Vec<String>),
}

impl VariantSet {
    pub fn parse(s: &str) -> VariantSet {
        match s {
            "all" => VariantSet::All,
            "smoke" => VariantSet::Smoke,
            _ => VariantSet::Globs(
                s.split(',')
                    .map(|g| g.trim().to_string())
                    .filter(|g| !g.is_empty())
                    .collect(),
            ),
        }
    }

    pub fn contains(&self, v: &Variant) -> bool {
        match self {
            VariantSet::All => true,
            VariantSet::Smoke => match v {
                Variant::Huff(_) | Variant::Act(_) | Variant::Relayout(_) => true,
                Variant::Rmm(r) => match r.a_src {
                    ASource::Smem => matches!((r.tile_n, r.stages), (64, 4) | (8, 2) | (256, 2)),
                    ASource::Regs => matches!((r.tile_n, r.stages), (8, 8) | (64, 4)),
                },
            },
            VariantSet::Globs(globs) => {
                let name = v.to_string();
                globs.iter().any(|g| match g.as_str() {
                    "all" => true,
                    "smoke" => VariantSet::Smoke.contains(v),
                    _ => glob_match(g, &name),
                })
            }
        }
    }
}

/// Shell-style match of the whole name: `*` any run of characters, `?` one character.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Iterative matcher with one backtrack point for the last `*` (linear in practice).
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// 232448 → "232,448".
pub fn thousands(x: u32) -> String {
    let digits = x.to_string();
    let head = digits.len() % 3;
    let mut groups: Vec<&str> = if head > 0 {
        vec![&digits[..head]]
    } else {
        vec![]
    };
    groups.extend(
        digits.as_bytes()[head..]
            .chunks(3)
            .map(|c| std::str::from_utf8(c).expect("ASCII digits")),
    );
    groups.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob() {
        assert!(glob_match("rmm_palette_*_t", "rmm_palette_n64_s4_t"));
        assert!(!glob_match("rmm_palette_*_t", "rmm_palette_n64_s4_nt"));
        assert!(glob_match("huff_*", "huff_bf16_vec4"));
        assert!(glob_match("rmm_?aw_*", "rmm_raw_n8_s2_nt"));
        assert!(!glob_match("rmm", "rmm_raw_n8_s2_nt"));
    }

    #[test]
    fn sets_combine_names_and_globs() {
        let set = VariantSet::parse("smoke,rmm_*_n32_s4_t");
        let names: Vec<String> = variants()
            .filter(|v| set.contains(v))
            .map(|v| v.to_string())
            .collect();
        assert!(
            names.contains(&"rmm_raw_n32_s4_t".to_string())
                && names.contains(&"huff_bf16_vec4".to_string())
        );
        assert!(!names.contains(&"rmm_raw_n32_s4_nt".to_string()));
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(232448), "232,448");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
    }

    #[test]
    fn smem_pruning_names_the_terms() {
        let v = RmmVariant {
            operand: Operand::Raw,
            tile_n: 256,
            stages: 8,
            transpose: false,
            a_src: ASource::Smem,
            ctas_per_sm: 1,
        };
        let err = RmmBudget::new(&v).unwrap_err();
        assert_eq!(
            err.to_string(),
            "smem 394,384 B = A 8x16384 + B 8x32768 + barriers 8x16+16 + align 1024 > 232,448 B (227 KB)"
        );
    }

    #[test]
    fn two_ctas_per_sm_only_for_narrow_rs_tiles_that_fit_half_an_sm() {
        let v = |a_src, tile_n, stages, ctas_per_sm| RmmVariant {
            operand: Operand::Palette,
            tile_n,
            stages,
            transpose: false,
            a_src,
            ctas_per_sm,
        };
        let b = RmmBudget::new(&v(ASource::Regs, 8, 6, 2)).unwrap();
        assert_eq!((b.ctas_per_sm, b.kb_step), (2, 1));
        assert_eq!(b.regs_per_thread, 80);
        assert!(2 * (b.dynamic_smem + 1024) <= SMEM_PER_SM);
        // SS at two CTAs, a third CTA, and depths of the one-CTA axis are not generated.
        for bad in [
            v(ASource::Smem, 8, 4, 2),
            v(ASource::Regs, 8, 4, 3),
            v(ASource::Regs, 8, 12, 2),
        ] {
            assert!(matches!(
                RmmBudget::new(&bad),
                Err(Pruned::Unsupported { .. })
            ));
        }
        // Wide tiles' accumulators do not fit the pair's registers.
        assert!(matches!(
            RmmBudget::new(&v(ASource::Regs, 64, 4, 2)),
            Err(Pruned::Registers { .. })
        ));
    }
}
