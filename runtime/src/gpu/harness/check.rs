//! The GPU correctness harness behind tests/tests/gpu_*.rs: fresh random inputs, outputs
//! poisoned before every launch, every pipeline compared bit for bit with its reference
//! (compressed rmm vs the raw rmm of the same tile and ring; full decode vs cuBLAS on the
//! original weights) and with cuBLAS to BF16 tolerance. Functions return the list of failures
//! (empty = pass) so a test prints all of them, not only the first.

use std::sync::Arc;

use cudarc::driver::CudaStream;
use unweight_codegen::variant::{
    ASource, HuffOutput, HuffRefill, Operand, RegistryEntry, RmmVariant, Variant,
};

use crate::codec::{self, CompressedTensor, Encoding, HuffmanStream, Indices, Orientation};
use crate::gpu::device::GpuDevice;
use crate::gpu::error::{weights_error, GpuError};
use crate::gpu::harness::synth::{self, Rng, WeightSpec};
use crate::gpu::jit::registry;
use crate::gpu::layout::subs;
use crate::gpu::layout::tiles::{self, Packing};
use crate::gpu::layout::{BlockLayout, Residency};
use crate::gpu::linear::Linear;
use crate::gpu::plan::{self, ExecPipeline, Plan};
use crate::gpu::weights::{DeviceWeights, Resident};

/// The poison written into every output before a launch (a bf16 NaN; 0xFF bytes).
pub const POISON: u16 = 0xFFFF;

/// Relative Frobenius error allowed against cuBLAS.
pub const TOLERANCE: f64 = 1e-2;

/// A device and a stream for checks; prints the GPU's name once when opened.
pub struct Harness {
    pub dev: Arc<GpuDevice>,
    pub stream: Arc<CudaStream>,
}

impl Harness {
    /// Opens GPU 0, prints what it is, and compiles the default kernel set ahead.
    pub fn open() -> Result<Self, GpuError> {
        let dev = GpuDevice::new(0)?;
        println!(
            "GPU: {} (sm_{}{}, {} SMs, {:.0} GiB); JIT cache {}",
            dev.info.name,
            dev.info.major,
            dev.info.minor,
            dev.info.sm_count,
            dev.info.total_mem as f64 / (1u64 << 30) as f64,
            dev.kernels.cache_dir().display()
        );
        let stream = dev.ctx.new_stream().map_err(|source| GpuError::Driver {
            context: "creating the test stream".into(),
            source,
        })?;
        // Compile what the default plans use on all cores now; later loads hit the disk cache.
        let t0 = std::time::Instant::now();
        let set = crate::gpu::plan::default_set();
        dev.kernels.precompile(&set)?;
        println!(
            "{} kernels ready in {:.1}s",
            set.len(),
            t0.elapsed().as_secs_f64()
        );
        Ok(Harness { dev, stream })
    }

    fn drv<T>(&self, r: Result<T, cudarc::driver::DriverError>, what: &str) -> Result<T, GpuError> {
        r.map_err(|source| GpuError::Driver {
            context: what.to_string(),
            source,
        })
    }

    /// Runs `plan` on `x` (bf16 `[m][k]`) into a poisoned `y` and returns `y`.
    pub fn run(&self, lin: &Linear, plan: &Plan, x: &[u16]) -> Result<Vec<u16>, GpuError> {
        let xd = self.drv(self.stream.clone_htod(x), "uploading x")?;
        let mut y = self.drv(
            self.stream.clone_htod(&vec![POISON; plan.m * lin.n_out()]),
            "poisoning y",
        )?;
        lin.forward(&self.stream, &xd, &mut y, plan)?;
        self.drv(
            self.stream.synchronize(),
            &format!("running {} ({})", plan.pipeline, plan.variant_name()),
        )?;
        self.drv(self.stream.clone_dtoh(&y), "downloading y")
    }

    /// Runs `huff_<output>` (row-major or tiled) into a buffer poisoned with `poison` and returns
    /// its bytes.
    pub fn decode(
        &self,
        lin: &Linear,
        output: HuffOutput,
        tiled: bool,
        poison: u8,
    ) -> Result<Vec<u8>, GpuError> {
        self.decode_ctas(lin, output, tiled, 0, poison)
    }

    /// [`Harness::decode`] on `ctas` blocks (0: the natural grid).
    pub fn decode_ctas(
        &self,
        lin: &Linear,
        output: HuffOutput,
        tiled: bool,
        ctas: u32,
        poison: u8,
    ) -> Result<Vec<u8>, GpuError> {
        self.decode_refill(lin, output, HuffRefill::DEFAULT, tiled, ctas, poison)
    }

    /// [`Harness::decode_ctas`] with the decoder's refill variant chosen.
    pub fn decode_refill(
        &self,
        lin: &Linear,
        output: HuffOutput,
        refill: HuffRefill,
        tiled: bool,
        ctas: u32,
        poison: u8,
    ) -> Result<Vec<u8>, GpuError> {
        let mut out = self.drv(
            self.stream
                .clone_htod(&vec![poison; lin.decode_bytes(output)]),
            "poisoning decode output",
        )?;
        lin.decode_into_refill(&self.stream, output, refill, tiled, ctas, &mut out)?;
        self.drv(
            self.stream.synchronize(),
            &format!("running huff_{}_{}", output.as_str(), refill.as_str()),
        )?;
        lin.weights().take_decode_error(&self.stream)?;
        self.drv(self.stream.clone_dtoh(&out), "downloading decode output")
    }
}

/// First differing index of two slices, with both values, or a length mismatch.
pub fn first_diff<T: PartialEq + Copy + std::fmt::Debug>(a: &[T], b: &[T]) -> Option<String> {
    if a.len() != b.len() {
        return Some(format!("length {} vs {}", a.len(), b.len()));
    }
    let bad = a.iter().zip(b).filter(|(x, y)| x != y).count();
    a.iter().zip(b).position(|(x, y)| x != y).map(|i| {
        format!(
            "{bad} of {} differ; first at {i}: {:?} vs {:?}",
            a.len(),
            a[i],
            b[i]
        )
    })
}

/// The sub-chunk offsets the validating decode in `Linear::new` left on the device equal the
/// CPU's ([`subs::reference`]), and the default decode reads them.
fn check_sub_offsets(
    h: &Harness,
    name: &str,
    lin: &Linear,
    t: &CompressedTensor,
) -> Result<Vec<String>, GpuError> {
    let (Resident::Huffman(dev), Indices::Huffman(stream)) = (&lin.weights().resident, &t.indices)
    else {
        return Ok(vec![format!("{name}: not a Huffman-resident weight")]);
    };
    let want = subs::reference(stream, t.rows * t.padded_cols())?;
    let mut failures = Vec::new();
    match (&dev.sub_offsets, want) {
        (Some(buf), Some(want)) => {
            let got = h.drv(
                h.stream.clone_dtoh(buf.slice()),
                "downloading sub-chunk offsets",
            )?;
            if let Some(d) = first_diff(&got[..buf.len], &want) {
                failures.push(format!("{name}: recorded sub-chunk offsets: {d}"));
            }
            if lin.default_refill() != Some(HuffRefill::DEFAULT) {
                failures.push(format!("{name}: has sub-chunk offsets but decodes without"));
            }
        }
        (None, None) => {}
        (have, want) => failures.push(format!(
            "{name}: sub-chunk offsets uploaded: {}, expected: {}",
            have.is_some(),
            want.is_some()
        )),
    }
    Ok(failures)
}

/// GPU Huffman decode of `t` equals the CPU decoders for all three outputs and every refill
/// variant (twice, with two poisons, so an unwritten byte cannot match by luck; a third time on
/// one block, which then loops over every unit of chunks: the grid must not change the output).
pub fn check_decode(
    h: &Harness,
    name: &str,
    t: &CompressedTensor,
) -> Result<Vec<String>, GpuError> {
    let lin = Linear::new(DeviceWeights::huffman(&h.dev, name, t)?)?;
    let mut failures = check_sub_offsets(h, name, &lin, t)?;
    let want_bf16: Vec<u8> = codec::decode_bf16_encoded(t)?
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let wants = [
        (HuffOutput::Bf16, want_bf16),
        (HuffOutput::Exponent, codec::decode_exponents(t)?),
        (HuffOutput::Palette, codec::decode_palette_indices(t)?),
    ];
    let g = lin.weights().geometry;
    for (output, want) in wants {
        // Row-major always; the rmm's tiled layout too for exponent / palette of eligible shapes.
        let mut layouts = vec![(false, want.clone())];
        if g.rmm_ok() && output != HuffOutput::Bf16 {
            let packing = if output == HuffOutput::Palette {
                Packing::Nibble
            } else {
                Packing::Byte
            };
            let tiled = tiles::tile(&want, g.orientation, g.n_out, g.k, packing)
                .map_err(|p| weights_error(name, p))?;
            layouts.push((true, tiled));
        }
        for (tiled, want) in layouts {
            for (refill, poison, ctas) in HuffRefill::ALL
                .into_iter()
                .flat_map(|r| [(r, 0xFF, 0), (r, 0x00, 0), (r, 0xFF, 1)])
            {
                let got = h.decode_refill(&lin, output, refill, tiled, ctas, poison)?;
                if let Some(d) = first_diff(&got, &want) {
                    let layout = if tiled { "tiled" } else { "row-major" };
                    let grid = if ctas == 0 {
                        "natural grid".to_string()
                    } else {
                        format!("{ctas} CTA")
                    };
                    failures.push(format!(
                        "{name} {:?} {} huff_{}_{} {layout} (poison {poison:#04x}, {grid}): {d}",
                        t.shape,
                        t.orientation,
                        output.as_str(),
                        refill.as_str()
                    ));
                }
            }
        }
    }
    Ok(failures)
}

/// A change made to a Huffman stream.
pub type StreamChange = fn(&mut HuffmanStream);

/// Hostile changes of a Huffman stream that keep the CPU's structural checks happy but that the
/// CPU decoder refuses: issue 9's four, codes running past the stream's end, offsets past it.
pub fn hostile_streams() -> Vec<(&'static str, StreamChange)> {
    vec![
        ("every bit set", |h| h.bits.fill(0xFF)),
        ("every chunk offset at the last bit", |h| {
            h.chunk_offsets.fill(h.total_bits.saturating_sub(1) as u32)
        }),
        ("stream cut to a tenth", |h| {
            h.total_bits /= 10;
            h.bits.truncate(h.total_bits.div_ceil(8) as usize);
            let end = h.total_bits as u32;
            h.chunk_offsets.iter_mut().for_each(|o| *o = (*o).min(end));
        }),
        ("random bits", |h| {
            let mut s = 0x9E37_79B9_7F4A_7C15u64;
            for b in h.bits.iter_mut() {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                *b = s as u8;
            }
        }),
        ("last chunk cut by 5 bits", |h| {
            h.total_bits = h.total_bits.saturating_sub(5)
        }),
        ("a chunk offset far past the stream", |h| {
            let c = h.chunk_offsets.len() / 2;
            h.chunk_offsets[c] = u32::MAX;
        }),
    ]
}

/// Each of [`hostile_streams`] applied to `t`: the upload refuses it as it is (stale checksum,
/// [`GpuError::Checksum`]); with its checksum recomputed, the CPU decoder refuses it, and making it a
/// Huffman-resident layer (upload + [`Linear::new`]'s decode check) fails with
/// [`GpuError::CorruptStream`] naming the tensor (not a launch failure). Then `t` itself still
/// decodes bit for bit: the context survived.
pub fn check_hostile(
    h: &Harness,
    name: &str,
    t: &CompressedTensor,
) -> Result<Vec<String>, GpuError> {
    let mut failures = Vec::new();
    for (what, change) in hostile_streams() {
        let mut bad = t.clone();
        let Indices::Huffman(s) = &mut bad.indices else {
            failures.push(format!(
                "{name}: hostile streams need the huffman encoding, got {}",
                t.encoding()
            ));
            return Ok(failures);
        };
        change(s);
        let tensor = format!("{name} ({what})");
        // A change to the stored bytes makes the upload refuse it on the stored-components
        // checksum, launching nothing. Some changes touch only metadata the checksum does not
        // cover (a shorter `total_bits`): those go straight to the decoders below.
        if codec::components_checksum(&bad) != t.checksum {
            match DeviceWeights::huffman(&h.dev, &tensor, &bad) {
                Err(GpuError::Checksum { tensor: named, .. }) if named == tensor => {}
                Err(e) => failures.push(format!(
                    "{tensor}: expected the upload's checksum refusal naming it, got: {e}"
                )),
                Ok(_) => failures.push(format!("{tensor}: uploaded despite a stale checksum")),
            }
        }
        // With the checksum recomputed (a crafted file), the decoders themselves must refuse it.
        bad.checksum = codec::components_checksum(&bad);
        if codec::decode_palette_indices(&bad).is_ok() {
            failures.push(format!("{tensor}: the CPU decoder accepts it"));
            continue;
        }
        match DeviceWeights::huffman(&h.dev, &tensor, &bad).and_then(Linear::new) {
            Err(GpuError::CorruptStream {
                tensor: named,
                chunk,
                reason,
            }) if named == tensor => {
                println!("{tensor}: refused (chunk {chunk:?}: {reason})");
            }
            Err(e) => failures.push(format!(
                "{tensor}: expected the GPU decoder's refusal naming it, got: {e}"
            )),
            Ok(_) => failures.push(format!("{tensor}: uploaded without an error")),
        }
    }
    failures.extend(check_decode(h, name, t)?);
    Ok(failures)
}

/// One pipeline's outcome at one batch size.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub pipeline: ExecPipeline,
    pub m: usize,
    pub variant: String,
    /// The reference it must equal bit for bit.
    pub reference: String,
    pub rel_err: f64,
}

/// The raw variant with the same tile and ring as `e` (same accumulation order), else the
/// same tile with the deepest ring the registry kept.
pub fn raw_twin(e: &'static RegistryEntry) -> Option<&'static RegistryEntry> {
    let Variant::Rmm(v) = e.variant else {
        return None;
    };
    let same = Variant::Rmm(RmmVariant {
        operand: Operand::Raw,
        ..v
    });
    registry::entry(&same).or_else(|| {
        registry::VARIANTS
            .iter()
            .filter(|c| matches!(c.variant, Variant::Rmm(r) if r.operand == Operand::Raw && r.tile_n == v.tile_n && r.transpose == v.transpose && r.a_src == v.a_src))
            .max_by_key(|c| match c.variant {
                Variant::Rmm(r) => r.stages,
                _ => 0,
            })
    })
}

/// The plan of `raw` (raw-resident weights of the same matrix) whose result a compressed rmm
/// `plan` must equal bit for bit: its [`raw_twin`] with the same CTA count, so tile, ring
/// and stream-K ranges (the accumulation order) all match. `None` when `plan` runs no compressed rmm
/// or the registry has no raw variant of its tile.
pub fn twin_plan(raw: &Linear, plan: &Plan) -> Result<Option<Plan>, GpuError> {
    let Some(e) = plan.rmm.filter(|_| plan.pipeline != ExecPipeline::Raw) else {
        return Ok(None);
    };
    let Some(twin) = raw_twin(e) else {
        return Ok(None);
    };
    let mut tp = raw.plan_with(ExecPipeline::Raw, plan.m, twin)?;
    tp.ctas = plan.ctas;
    Ok(Some(tp))
}

/// The SS raw variant a raw RS plan must equal bit for bit (same tile, same CTAs: the same
/// accumulation order through the other A-operand form), or `None` when `tp` is not RS.
fn ss_twin_plan(raw: &Linear, tp: &Plan) -> Result<Option<Plan>, GpuError> {
    let Some(Variant::Rmm(v)) = tp.rmm.map(|e| e.variant) else {
        return Ok(None);
    };
    if v.a_src != ASource::Regs {
        return Ok(None);
    }
    let Some(e) = plan::default_variant_of(
        registry::VARIANTS,
        Operand::Raw,
        v.transpose,
        ASource::Smem,
        v.tile_n as usize,
    )
    .filter(|e| matches!(e.variant, Variant::Rmm(s) if s.tile_n == v.tile_n)) else {
        return Ok(None);
    };
    let mut sp = raw.plan_with(ExecPipeline::Raw, tp.m, e)?;
    sp.ctas = tp.ctas;
    Ok(Some(sp))
}

/// Every pipeline on an `n_out × k` weight stored in `orientation`, for each batch size in `ms`;
/// direct palette twice where the rmm takes the shape: tiled (SS rmm) and in fragment layout
/// (RS rmm, bit-identical to the raw RS twin, which in turn must equal the SS raw twin).
/// Returns the outcomes and the failures.
pub fn check_linear(
    h: &Harness,
    rng: &mut Rng,
    n_out: usize,
    k: usize,
    orientation: Orientation,
    ms: &[usize],
    escape_groups: f64,
) -> Result<(Vec<Outcome>, Vec<String>), GpuError> {
    check_linear_on(h, rng, n_out, k, orientation, ms, escape_groups, None)
}

/// [`check_linear`] with every rmm launched on `ctas` CTAs where that count is valid for it
/// (`None`: the planner's count), e.g. fewer CTAs than tiles, so ranges span several tiles.
#[allow(clippy::too_many_arguments)]
pub fn check_linear_on(
    h: &Harness,
    rng: &mut Rng,
    n_out: usize,
    k: usize,
    orientation: Orientation,
    ms: &[usize],
    escape_groups: f64,
    ctas: Option<u32>,
) -> Result<(Vec<Outcome>, Vec<String>), GpuError> {
    let label = format!("{n_out}x{k} {orientation}");
    let w = synth::weights(
        rng,
        n_out,
        k,
        WeightSpec {
            escape_groups,
            specials: false,
            bulk: synth::Bulk::Trained,
        },
    );
    let t = codec::compress(&w, &[n_out, k], orientation, Encoding::Huffman)?;
    let rmm_ok = crate::gpu::layout::Geometry::raw(n_out, k, orientation).rmm_ok();
    let raw = Linear::new(DeviceWeights::raw_twin(
        &h.dev,
        &label,
        &w,
        n_out,
        k,
        orientation,
    )?)?;
    let huff = Linear::new(DeviceWeights::huffman(&h.dev, &label, &t)?)?;
    let (pal, pal_rs) = if rmm_ok {
        (
            Some(Linear::new(DeviceWeights::palette_with(
                &h.dev,
                &label,
                &t,
                BlockLayout::Tiled,
            )?)?),
            Some(Linear::new(DeviceWeights::palette_with(
                &h.dev,
                &label,
                &t,
                BlockLayout::Fragments,
            )?)?),
        )
    } else {
        (None, None)
    };
    let mut outcomes = Vec::new();
    let mut failures = Vec::new();
    for &m in ms {
        let x = synth::activations(rng, m, k);
        let y_ref = h.run(&raw, &raw.plan(ExecPipeline::Cublas, m)?, &x)?;
        if n_out * k * m <= 1 << 24 {
            if let Some(f) = cpu_check(&w, &x, &y_ref, n_out, k, m) {
                failures.push(format!("{label} m={m} cublas vs CPU: {f}"));
            }
        }
        let runs = ExecPipeline::ALL
            .into_iter()
            .map(|p| (p, false))
            .chain(pal_rs.as_ref().map(|_| (ExecPipeline::DirectPalette, true)));
        for (p, rs) in runs {
            let lin = match (p.residency(), rs) {
                (Residency::Palette, true) => pal_rs.as_ref().expect("chained only when present"),
                (Residency::Huffman, _) => &huff,
                (Residency::Palette, false) => match &pal {
                    Some(l) => l,
                    None => continue, // palette residency is refused for this shape (documented)
                },
                (Residency::Raw, _) => &raw,
            };
            let mut plan = lin.plan(p, m)?;
            if let (Some(c), Some(e)) = (ctas, plan.rmm) {
                if plan::ctas_valid(e, n_out, k, m, c) {
                    plan.ctas = c;
                }
            }
            let y = h.run(lin, &plan, &x)?;
            let case = format!("{label} m={m} {p} ({})", plan.variant_name());
            // Bit-exact reference: cuBLAS for full decode, the raw rmm twin for rmm pipelines.
            let (reference, y_exact) = match plan.rmm {
                Some(e) if plan.pipeline != ExecPipeline::Raw => match twin_plan(&raw, &plan)? {
                    Some(tp) => (
                        format!("{} ×{} CTAs", tp.variant_name(), tp.ctas),
                        Some(h.run(&raw, &tp, &x)?),
                    ),
                    None => {
                        failures.push(format!("{case}: no raw variant with tile {e:?}"));
                        ("none".into(), None)
                    }
                },
                Some(_) => ("cuBLAS (tolerance only)".into(), None),
                // Full decode and cublas (incl. raw's fallback) run the reference's exact GEMM.
                None => ("cublas".into(), Some(y_ref.clone())),
            };
            if let Some(ye) = &y_exact {
                if let Some(d) = first_diff(&y, ye) {
                    failures.push(format!("{case} not bit-identical to {reference}: {d}"));
                }
            }
            // RS twin: its raw reference must also equal the SS raw twin (RS and SS wgmma agree).
            if let Some(tp) = twin_plan(&raw, &plan)? {
                if let (Some(sp), Some(ye)) = (ss_twin_plan(&raw, &tp)?, &y_exact) {
                    let ys = h.run(&raw, &sp, &x)?;
                    if let Some(d) = first_diff(ye, &ys) {
                        failures.push(format!(
                            "{case}: raw RS twin not bit-identical to {} ×{} CTAs: {d}",
                            sp.variant_name(),
                            sp.ctas
                        ));
                    }
                }
            }
            let (rel, nan) = synth::rel_frobenius(&y, &y_ref);
            if nan {
                failures.push(format!("{case}: non-finite output where cuBLAS is finite"));
            }
            if rel.is_nan() || rel > TOLERANCE {
                failures.push(format!(
                    "{case}: relative Frobenius error {rel:.3e} vs cuBLAS > {TOLERANCE:e}"
                ));
            }
            let variant = format!("{} ×{} CTAs", plan.variant_name(), plan.ctas);
            outcomes.push(Outcome {
                pipeline: p,
                m,
                variant,
                reference,
                rel_err: rel,
            });
        }
    }
    Ok((outcomes, failures))
}

/// Every RS variant of `orientation` in the registry (not only the default the planner picks), on
/// one weight: each palette RS variant bit-identical to its raw RS twin with the same CTA count,
/// each raw RS variant bit-identical to the SS raw variant of its tile with the same CTA count,
/// and every one within tolerance of cuBLAS. The ring depth decides the RS step (one or two k
/// blocks, `space::rs_kb_step`), so this runs every step schedule and its odd tails.
pub fn check_rs_variants(
    h: &Harness,
    rng: &mut Rng,
    n_out: usize,
    k: usize,
    orientation: Orientation,
    ms: &[usize],
    escape_groups: f64,
) -> Result<(Vec<Outcome>, Vec<String>), GpuError> {
    let label = format!("{n_out}x{k} {orientation}");
    let w = synth::weights(
        rng,
        n_out,
        k,
        WeightSpec {
            escape_groups,
            specials: false,
            bulk: synth::Bulk::Trained,
        },
    );
    let t = codec::compress(&w, &[n_out, k], orientation, Encoding::Huffman)?;
    let frag = BlockLayout::Fragments;
    let raw = Linear::new(DeviceWeights::raw_with(
        &h.dev,
        &label,
        &w,
        n_out,
        k,
        orientation,
        frag,
    )?)?;
    let pal = Linear::new(DeviceWeights::palette_with(&h.dev, &label, &t, frag)?)?;
    let transpose = orientation == Orientation::Transposed;
    let mut outcomes = Vec::new();
    let mut failures = Vec::new();
    for &m in ms {
        let x = synth::activations(rng, m, k);
        let y_ref = h.run(&raw, &raw.plan(ExecPipeline::Cublas, m)?, &x)?;
        for (fam, p, lin) in [
            (Operand::Palette, ExecPipeline::DirectPalette, &pal),
            (Operand::Raw, ExecPipeline::Raw, &raw),
        ] {
            for (e, _) in plan::rmm_candidates_of(registry::VARIANTS, fam, transpose, ASource::Regs)
            {
                let plan = lin.plan_with(p, m, e)?;
                let y = h.run(lin, &plan, &x)?;
                let case = format!("{label} m={m} {p} ({} ×{} CTAs)", e.name, plan.ctas);
                let reference = if fam == Operand::Palette {
                    twin_plan(&raw, &plan)?
                } else {
                    ss_twin_plan(&raw, &plan)?
                };
                let reference = match reference {
                    Some(rp) => {
                        let ye = h.run(&raw, &rp, &x)?;
                        if let Some(d) = first_diff(&y, &ye) {
                            failures.push(format!(
                                "{case} not bit-identical to {} ×{} CTAs: {d}",
                                rp.variant_name(),
                                rp.ctas
                            ));
                        }
                        format!("{} ×{} CTAs", rp.variant_name(), rp.ctas)
                    }
                    None => {
                        failures.push(format!("{case}: no bit-exact twin in the registry"));
                        "none".into()
                    }
                };
                let (rel, nan) = synth::rel_frobenius(&y, &y_ref);
                if nan || rel.is_nan() || rel > TOLERANCE {
                    failures.push(format!(
                        "{case}: relative Frobenius error {rel:.3e} vs cuBLAS (non-finite {nan})"
                    ));
                }
                outcomes.push(Outcome {
                    pipeline: p,
                    m,
                    variant: format!("{} ×{} CTAs", e.name, plan.ctas),
                    reference,
                    rel_err: rel,
                });
            }
        }
    }
    Ok((outcomes, failures))
}

/// cuBLAS's result against an f64 CPU product (catches a wrong GEMM orientation).
fn cpu_check(w: &[u16], x: &[u16], y: &[u16], n_out: usize, k: usize, m: usize) -> Option<String> {
    let f = |b: u16| half::bf16::from_bits(b).to_f64();
    let mut want = vec![0u16; m * n_out];
    for r in 0..m {
        for c in 0..n_out {
            let s: f64 = (0..k).map(|l| f(x[r * k + l]) * f(w[c * k + l])).sum();
            want[r * n_out + c] = half::bf16::from_f64(s).to_bits();
        }
    }
    let (rel, nan) = synth::rel_frobenius(y, &want);
    (nan || rel.is_nan() || rel > TOLERANCE)
        .then(|| format!("relative error {rel:.3e}, non-finite {nan}"))
}

/// Prints outcomes as a compact table (shown with `--nocapture` and in the committed log).
pub fn print_outcomes(outcomes: &[Outcome]) {
    for o in outcomes {
        println!(
            "  m={:<5} {:<18} {:<32} ref {:<28} rel_err {:.2e}",
            o.m,
            o.pipeline.as_str(),
            o.variant,
            o.reference,
            o.rel_err
        );
    }
}
