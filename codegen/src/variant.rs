//! The variant space: one type per kernel family and the one name function.
//!
//! A variant's name is the key everywhere (generated file, registry entry, `extern "C"`
//! symbol, snapshot, JIT cache key, tuning table), so it is produced by `Display` alone and
//! parsed back by `FromStr`; a test checks the round trip over every variant.

use std::fmt;
use std::str::FromStr;

/// What the reconstructive matmul reads as its weight operand ("pipeline" in kernel names and
/// templates; the runtime's execution paths are `ExecPipeline`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operand {
    /// Sign-mantissa bytes + real exponent bytes (escapes already applied).
    Exponent,
    /// Sign-mantissa bytes + 4-bit palette indices + escape groups.
    Palette,
    /// Plain BF16 weights through the same template (the bit-exact reference).
    Raw,
}

/// Where WGMMA reads the weight (A) operand from: a 128B-swizzled shared-memory tile through a
/// descriptor (SS form: raw weights by TMA, compressed ones rebuilt and stored by the consumers),
/// or registers (RS form: weights pre-shuffled at upload into WGMMA's A-fragment order, so each
/// consumer thread loads its own bytes as 16-byte vectors and rebuilds BF16 in registers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ASource {
    Smem,
    Regs,
}

/// What a Huffman preprocess kernel writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HuffOutput {
    Bf16,
    Exponent,
    Palette,
}

/// The elementwise activation between an MLP's matmuls (bf16 in and out, f32 math).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActOp {
    /// SwiGLU's `silu(gate) * up` (Llama, Mistral, Qwen), `silu(g) = g / (1 + e^-g)`.
    SiluMul,
    /// GELU in the exact erf form `x/2 * (1 + erf(x/√2))` (BERT, MiniLM; not the tanh approximation).
    Gelu,
}

/// Reconstructive matmul `Y[m, n_out] = X[m, k] · W[n_out, k]ᵀ`, swap-AB.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RmmVariant {
    pub operand: Operand,
    /// Batch tile = WGMMA N.
    pub tile_n: u32,
    /// Ring stages.
    pub stages: u32,
    /// Weights encoded as Wᵀ [k, n_out] (groups along n_out).
    pub transpose: bool,
    /// SS (`Smem`, names without a form) or RS (`Regs`, names `rmm_<pipeline>_rs_...`).
    pub a_src: ASource,
    /// CTAs resident per SM (`__launch_bounds__` min blocks): 1, or 2 for the RS form, whose
    /// consumers are latency-bound with one CTA (names `..._s<stages>_c2_...`).
    pub ctas_per_sm: u32,
}

/// How a Huffman decoder's lanes refill their bit buffers from the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HuffRefill {
    /// One 4-byte load per 32 bits consumed, issued one refill ahead (the first kernel's scheme,
    /// with the byte swap moved off the load; kept to compare against).
    Word,
    /// Two 16-byte blocks per lane in registers; the one used up is reloaded with the block after
    /// the other, so a load has ~128 bits of decoding to arrive in.
    Vec4,
    /// Each lane decodes one 256-symbol sub-chunk (4x the chains of one chunk per lane), from
    /// bit offsets the upload's validating decode records; a warp first copies its 32 sub-chunks'
    /// bits into shared memory with coalesced 16-byte loads (the clamped global word path when they
    /// do not fit the buffer).
    Sub256,
    /// `sub256`'s staging with a leaner decode loop: up to 4 symbols per lookup (16 bits of nibbles),
    /// 32-bit pending nibbles (funnel shifts), and the shared and global refill paths as separate
    /// loops, so the staged one reads shared memory with LDS instead of generic loads.
    Sub256M4,
    /// `sub256m4`'s decode without a shifted bit buffer: three stream words in registers (byte-swapped
    /// once as they are staged), one funnel shift per pair of lookups gives a 32-bit window, a
    /// crossing moves the words down by selects and loads the next a pair ahead (40 instructions per
    /// pair, 27 ALU, against 53 / 35); both lookups of a pair always count; and the next unit's
    /// bits are loaded into registers while the current one decodes.
    Sub256Win,
}

/// Huffman index stream → `output`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HuffVariant {
    pub output: HuffOutput,
    pub refill: HuffRefill,
}

/// Elementwise activation `op` over bf16 vectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActVariant {
    pub op: ActOp,
}

/// Element width of a weight component the re-layout kernels move (the family's one axis).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RelayoutElem {
    /// Palette indices, two per byte (low nibble first).
    Nibble,
    /// Sign-mantissa bytes.
    Byte,
}

/// The rmm's tiled blocks of one component → its fragment blocks (docs/CONTRACT.md, "Fragment
/// layout"), on the GPU at load: what turns a Huffman → palette transcode into RS-rmm input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelayoutVariant {
    pub elem: RelayoutElem,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Variant {
    Rmm(RmmVariant),
    Huff(HuffVariant),
    Act(ActVariant),
    Relayout(RelayoutVariant),
}

impl Operand {
    pub const ALL: [Operand; 3] = [Operand::Exponent, Operand::Palette, Operand::Raw];
    pub fn as_str(self) -> &'static str {
        match self {
            Operand::Exponent => "exponent",
            Operand::Palette => "palette",
            Operand::Raw => "raw",
        }
    }
}

impl ASource {
    pub const ALL: [ASource; 2] = [ASource::Smem, ASource::Regs];
    /// The form's short name (tables, logs); kernel names spell only `rs` (SS names predate the axis).
    pub fn as_str(self) -> &'static str {
        match self {
            ASource::Smem => "ss",
            ASource::Regs => "rs",
        }
    }
}

impl HuffOutput {
    pub const ALL: [HuffOutput; 3] = [HuffOutput::Bf16, HuffOutput::Exponent, HuffOutput::Palette];
    pub fn as_str(self) -> &'static str {
        match self {
            HuffOutput::Bf16 => "bf16",
            HuffOutput::Exponent => "exponent",
            HuffOutput::Palette => "palette",
        }
    }
}

impl HuffRefill {
    pub const ALL: [HuffRefill; 5] = [
        HuffRefill::Word,
        HuffRefill::Vec4,
        HuffRefill::Sub256,
        HuffRefill::Sub256M4,
        HuffRefill::Sub256Win,
    ];
    /// What the runtime launches (decode_into, the pipelines) on a weight that has sub-chunk
    /// offsets; `unweight bench` times every value. sub256m4 from 2026-12-02 s4 (beside sub256,
    /// `bench/results/2026-12-02-nvidia-h200-8b-s4.md`: palette 71.5 → 63.1 µs), sub256win from
    /// s7 (beside sub256m4 in the same run, trained-weight histogram, 14336×4096,
    /// `…-8b-s7c.md`: palette 43.5 → 39.8 µs, exponent 56.0 → 55.5, bf16 89.3 → 88.8).
    pub const DEFAULT: HuffRefill = HuffRefill::Sub256Win;
    /// What the runtime launches on a weight without them (chunks not a multiple of the
    /// sub-chunk), and what records them (the upload's validating decode).
    pub const CHUNKED: HuffRefill = HuffRefill::Vec4;
    pub fn as_str(self) -> &'static str {
        match self {
            HuffRefill::Word => "word",
            HuffRefill::Vec4 => "vec4",
            HuffRefill::Sub256 => "sub256",
            HuffRefill::Sub256M4 => "sub256m4",
            HuffRefill::Sub256Win => "sub256win",
        }
    }
    /// Symbols per lane's chain when the decoder reads sub-chunk offsets, else `None`.
    pub fn sub_symbols(self) -> Option<u32> {
        match self {
            HuffRefill::Sub256 | HuffRefill::Sub256M4 | HuffRefill::Sub256Win => {
                Some(crate::abi::SUB_SYMBOLS)
            }
            HuffRefill::Word | HuffRefill::Vec4 => None,
        }
    }
    /// Whole codes per multi-symbol table lookup.
    pub fn multi_syms(self) -> u32 {
        match self {
            HuffRefill::Sub256M4 | HuffRefill::Sub256Win => 4,
            HuffRefill::Word | HuffRefill::Vec4 | HuffRefill::Sub256 => 3,
        }
    }
}

impl ActOp {
    pub const ALL: [ActOp; 2] = [ActOp::SiluMul, ActOp::Gelu];
    pub fn as_str(self) -> &'static str {
        match self {
            ActOp::SiluMul => "silu_mul",
            ActOp::Gelu => "gelu",
        }
    }
    /// Whether the kernel reads a second input (`up` of SwiGLU).
    pub fn gated(self) -> bool {
        self == ActOp::SiluMul
    }
}

impl RelayoutElem {
    pub const ALL: [RelayoutElem; 2] = [RelayoutElem::Nibble, RelayoutElem::Byte];
    pub fn as_str(self) -> &'static str {
        match self {
            RelayoutElem::Nibble => "nibble",
            RelayoutElem::Byte => "byte",
        }
    }
    /// Bits per element.
    pub fn bits(self) -> u32 {
        match self {
            RelayoutElem::Nibble => 4,
            RelayoutElem::Byte => 8,
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Variant::Rmm(v) => write!(
                f,
                "rmm_{}{}_n{}_s{}{}_{}",
                v.operand.as_str(),
                match v.a_src {
                    ASource::Smem => "",
                    ASource::Regs => "_rs",
                },
                v.tile_n,
                v.stages,
                if v.ctas_per_sm > 1 {
                    format!("_c{}", v.ctas_per_sm)
                } else {
                    String::new()
                },
                if v.transpose { "t" } else { "nt" }
            ),
            Variant::Huff(v) => write!(f, "huff_{}_{}", v.output.as_str(), v.refill.as_str()),
            Variant::Act(v) => write!(f, "act_{}", v.op.as_str()),
            Variant::Relayout(v) => write!(f, "relayout_{}", v.elem.as_str()),
        }
    }
}

impl fmt::Display for RmmVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Variant::Rmm(*self).fmt(f)
    }
}

impl fmt::Display for HuffVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Variant::Huff(*self).fmt(f)
    }
}

impl fmt::Display for ActVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Variant::Act(*self).fmt(f)
    }
}

impl fmt::Display for RelayoutVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Variant::Relayout(*self).fmt(f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseVariantError(pub String);

impl fmt::Display for ParseVariantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a variant name: {:?}", self.0)
    }
}

impl std::error::Error for ParseVariantError {}

impl FromStr for Variant {
    type Err = ParseVariantError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseVariantError(s.to_string());
        // Activation op names hold underscores themselves (`silu_mul`): match the whole rest.
        if let Some(op) = s.strip_prefix("act_") {
            let op = ActOp::ALL
                .into_iter()
                .find(|o| o.as_str() == op)
                .ok_or_else(err)?;
            return Ok(Variant::Act(ActVariant { op }));
        }
        let parts: Vec<&str> = s.split('_').collect();
        match parts.as_slice() {
            ["relayout", elem] => {
                let elem = RelayoutElem::ALL
                    .into_iter()
                    .find(|e| e.as_str() == *elem)
                    .ok_or_else(err)?;
                Ok(Variant::Relayout(RelayoutVariant { elem }))
            }
            ["huff", out, refill] => {
                let output = HuffOutput::ALL
                    .into_iter()
                    .find(|o| o.as_str() == *out)
                    .ok_or_else(err)?;
                let refill = HuffRefill::ALL
                    .into_iter()
                    .find(|r| r.as_str() == *refill)
                    .ok_or_else(err)?;
                Ok(Variant::Huff(HuffVariant { output, refill }))
            }
            ["rmm", pipe, rest @ ..] if matches!(rest.len(), 3..=5) => {
                let (a_src, n, st, c, t) = match rest {
                    [n, st, t] => (ASource::Smem, n, st, &"c1", t),
                    ["rs", n, st, t] => (ASource::Regs, n, st, &"c1", t),
                    ["rs", n, st, c, t] => (ASource::Regs, n, st, c, t),
                    _ => return Err(err()),
                };
                let ctas_per_sm = c
                    .strip_prefix('c')
                    .and_then(|x| x.parse().ok())
                    .ok_or_else(err)?;
                let pipeline = Operand::ALL
                    .into_iter()
                    .find(|p| p.as_str() == *pipe)
                    .ok_or_else(err)?;
                let tile_n = n
                    .strip_prefix('n')
                    .and_then(|x| x.parse().ok())
                    .ok_or_else(err)?;
                let stages = st
                    .strip_prefix('s')
                    .and_then(|x| x.parse().ok())
                    .ok_or_else(err)?;
                let transpose = match *t {
                    "t" => true,
                    "nt" => false,
                    _ => return Err(err()),
                };
                let v = Variant::Rmm(RmmVariant {
                    operand: pipeline,
                    tile_n,
                    stages,
                    transpose,
                    a_src,
                    ctas_per_sm,
                });
                // Reject non-canonical spellings such as "n064" so the name stays a unique key.
                if v.to_string() != s {
                    return Err(err());
                }
                Ok(v)
            }
            _ => Err(err()),
        }
    }
}

/// How the runtime sizes the grid of a variant's launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GridRule {
    /// `(ctas, 1, 1)` over `tiles = (n_out / rows_per_cta) × ceil(m / tile_n)` output tiles of
    /// `k / 64` k blocks each: `tiles / ctas` data-parallel waves of whole tiles, then the tail's
    /// units shared out in equal contiguous ranges (stream-K); `1 <= ctas <= tiles × k blocks`,
    /// and for a variant with `max_kb` no CTA over it (the runtime picks `ctas`, `plan::Schedule`).
    RmmTiles { rows_per_cta: u32, tile_n: u32 },
    /// `(ceil(chunks / chunks_per_block), 1, 1)`: Huffman chunks spread over blocks.
    HuffChunks { chunks_per_block: u32 },
    /// Elementwise over `n` values: `ceil(ceil(n / elems_per_thread) / threads)` blocks of
    /// `threads`, each thread taking `elems_per_thread` consecutive values (a grid-stride loop, so
    /// any grid of >= 1 blocks covers all `n`).
    Elementwise { threads: u32, elems_per_thread: u32 },
    /// One block of `threads` per `bytes_per_block` bytes of output (the re-layout kernels: one
    /// fragment block each), `ceil(bytes / bytes_per_block)` blocks; a block-stride loop, so any
    /// grid of >= 1 blocks covers every block.
    PerBlock { threads: u32, bytes_per_block: u32 },
}

/// One generated kernel, as `generated/registry.rs` lists it.
#[derive(Clone, Copy, Debug)]
pub struct RegistryEntry {
    pub variant: Variant,
    /// `variant.to_string()`; also the `extern "C"` symbol and the file stem in generated/.
    pub name: &'static str,
    pub block: [u32; 3],
    pub grid: GridRule,
    /// Dynamic shared memory to request at launch (bytes, includes alignment slack).
    pub dynamic_smem: u32,
    /// k blocks one CTA's stream-K range may hold (palette: its escape records live in shared
    /// memory); `None` when the variant has no such limit.
    pub max_kb: Option<u32>,
    /// xxh64 of `source`, for cache keys and snapshots.
    pub source_hash: u64,
    pub source: &'static str,
}
