//! Building an [`MlpStack`] from compressed tensors or a bundle: one format, two uses.
//!
//! A bundle in the distribution encoding (Huffman) loads as is for hard layers; easy layers are
//! uploaded Huffman-resident and transcoded to palette residency on the GPU (`huff_palette` into
//! the rmm's tiled layout, checked by the decode's error word, then re-laid into the RS rmm's
//! fragment blocks by `relayout_*`, sm bytes included), then the Huffman stream and the tiled
//! copies are freed: the same buffers a palette bundle's easy layers upload.
//! A palette-encoded bundle loads too: easy layers upload directly, hard ones are re-encoded to
//! Huffman on the CPU first. The time of each step is reported.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use cudarc::driver::CudaSlice;
use unweight_codegen::variant::{ActOp, HuffOutput};

use crate::bundle::Bundle;
use crate::codec::{self, CompressedTensor, Encoding};
use crate::gpu::device::GpuDevice;
use crate::gpu::error::{weights_error, DriverContext, GpuError};
use crate::gpu::layout::{BlockLayout, LayoutError};
use crate::gpu::linear::Linear;
use crate::gpu::mlp::budget::{self, LayerBytes, LayerKind};
use crate::gpu::mlp::layer::{slot_layout, Mlp};
use crate::gpu::mlp::stack::MlpStack;
use crate::gpu::weights::DeviceWeights;

/// The names of one layer's matrices in a checkpoint; `{i}` stands for the layer index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Naming {
    /// The activation between the matrices (SwiGLU's `silu·mul` or GELU).
    pub act: ActOp,
    /// In the order they are consumed: SwiGLU gate, up, down; GELU fc1, fc2.
    pub matrices: Vec<String>,
}

impl Naming {
    /// Llama / Mistral / Qwen (Hugging Face names).
    pub fn llama() -> Self {
        Naming {
            act: ActOp::SiluMul,
            matrices: ["gate_proj", "up_proj", "down_proj"]
                .map(|m| format!("model.layers.{{i}}.mlp.{m}.weight"))
                .to_vec(),
        }
    }

    /// BERT / MiniLM (`encoder.layer.{i}.intermediate.dense`, `….output.dense`); the biases
    /// are not part of the stack.
    pub fn bert() -> Self {
        Naming {
            act: ActOp::Gelu,
            matrices: vec![
                "encoder.layer.{i}.intermediate.dense.weight".into(),
                "encoder.layer.{i}.output.dense.weight".into(),
            ],
        }
    }

    /// The names of layer `i`'s matrices.
    pub fn layer(&self, i: usize) -> Vec<String> {
        self.matrices
            .iter()
            .map(|m| m.replace("{i}", &i.to_string()))
            .collect()
    }
}

/// How the layers are made resident.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Residencies {
    /// One kind per layer.
    Explicit(Vec<LayerKind>),
    /// As many easy layers as fit this many device bytes (weights + preprocess slots).
    Budget(usize),
}

/// What a load did and how long it took.
#[derive(Clone, Debug)]
pub struct LoadReport {
    /// Easy or hard, per layer, as loaded (the budget's choice, or the caller's).
    pub kinds: Vec<LayerKind>,
    /// The planner's estimate of weights + slots (bytes).
    pub planned_bytes: usize,
    /// Uploading the Huffman / palette images (host work included), seconds.
    pub upload_s: f64,
    /// The GPU Huffman → palette transcodes of the easy layers (decode, check, re-layout into
    /// fragment blocks), seconds.
    pub transcode_s: f64,
    /// Matrices transcoded Huffman → palette on the GPU.
    pub transcoded: usize,
    /// CPU palette → Huffman re-encodes of hard layers from a palette bundle.
    pub reencoded: usize,
    /// The whole load, reading the bundle included, seconds.
    pub total_s: f64,
}

/// One layer's compressed matrices, in [`Naming`] order, with their names.
pub type LayerTensors = Vec<(String, CompressedTensor)>;

/// Device bytes of a layer in each residency, as the budget planner needs them (estimated from
/// the tensors: stream or nibbles, sm bytes, escapes).
pub fn layer_bytes(layer: &LayerTensors) -> LayerBytes {
    let mut easy = 0;
    let mut hard = 0;
    let mut pal = Vec::new();
    for (_, t) in layer {
        let elems = t.rows * t.padded_cols();
        let esc = t.escapes.exponents.len();
        let tables = t.escapes.bitmap.len() * 8 + t.escapes.prefix.len() * 4;
        easy += elems + elems / 2 + esc + 32 * (elems / 8192).max(1) + 16;
        let stream = match &t.indices {
            codec::Indices::Huffman(h) => h.bits.len() + 4 * h.chunk_offsets.len(),
            // A palette tensor re-encoded to Huffman: ~10.7 of 12.1 bits (DESIGN.md).
            _ => elems * 107 / 160,
        };
        hard += elems + stream + esc + tables + 8192 + 16;
        pal.push(elems / 2);
    }
    LayerBytes {
        easy,
        hard,
        slot: slot_layout(&pal).1,
    }
}

/// Builds the stack from in-memory tensors (`layers[l]` in [`Naming`] order for `act`).
pub fn build_stack(
    dev: &Arc<GpuDevice>,
    act: ActOp,
    layers: Vec<LayerTensors>,
    residencies: &Residencies,
    max_m: usize,
) -> Result<(MlpStack, LoadReport), GpuError> {
    let t0 = Instant::now();
    let (mlps, mut report) = build_layers(dev, act, layers, residencies)?;
    let stack = MlpStack::new(dev, mlps, max_m)?;
    report.total_s = t0.elapsed().as_secs_f64();
    Ok((stack, report))
}

/// The layers of [`build_stack`], without the stack (to share them among several stacks).
pub fn build_layers(
    dev: &Arc<GpuDevice>,
    act: ActOp,
    layers: Vec<LayerTensors>,
    residencies: &Residencies,
) -> Result<(Vec<Mlp>, LoadReport), GpuError> {
    let t0 = Instant::now();
    let (kinds, planned_bytes) = match residencies {
        Residencies::Explicit(k) => {
            if k.len() != layers.len() {
                return Err(GpuError::Mlp {
                    layer: "stack".into(),
                    reason: format!("{} residencies for {} layers", k.len(), layers.len()),
                });
            }
            let bytes: Vec<LayerBytes> = layers.iter().map(layer_bytes).collect();
            (k.clone(), budget::cost(&bytes, k).total())
        }
        Residencies::Budget(b) => {
            let bytes: Vec<LayerBytes> = layers.iter().map(layer_bytes).collect();
            let p = budget::plan(&bytes, *b).map_err(|e| GpuError::Mlp {
                layer: "stack".into(),
                reason: e.to_string(),
            })?;
            let total = p.total();
            (p.kinds, total)
        }
    };
    let check_bytes = layers
        .iter()
        .flatten()
        .map(|(_, t)| t.rows * t.padded_cols() / 2)
        .max()
        .unwrap_or(0);
    let mut check = dev
        .stream
        .alloc_zeros::<u8>(check_bytes.max(16))
        .ctx(|| "allocating the load's decode check buffer".into())?;
    let mut report = LoadReport {
        kinds: kinds.clone(),
        planned_bytes,
        upload_s: 0.0,
        transcode_s: 0.0,
        transcoded: 0,
        reencoded: 0,
        total_s: 0.0,
    };
    let mut mlps = Vec::with_capacity(layers.len());
    for (tensors, kind) in layers.into_iter().zip(&kinds) {
        let mut mats = Vec::with_capacity(tensors.len());
        for (name, t) in tensors {
            mats.push(matrix(dev, &name, t, *kind, &mut check, &mut report)?);
        }
        mlps.push(match act {
            ActOp::SiluMul => {
                let mut it = mats.into_iter();
                match (it.next(), it.next(), it.next(), it.next()) {
                    (Some(g), Some(u), Some(d), None) => Mlp::swiglu(g, u, d)?,
                    _ => return Err(count_error("SwiGLU", 3)),
                }
            }
            ActOp::Gelu => {
                let mut it = mats.into_iter();
                match (it.next(), it.next(), it.next()) {
                    (Some(a), Some(b), None) => Mlp::gelu(a, b)?,
                    _ => return Err(count_error("GELU", 2)),
                }
            }
        });
    }
    drop(check);
    report.total_s = t0.elapsed().as_secs_f64();
    Ok((mlps, report))
}

fn count_error(kind: &str, n: usize) -> GpuError {
    GpuError::Mlp {
        layer: "stack".into(),
        reason: format!("a {kind} layer takes {n} matrices"),
    }
}

/// One matrix made resident as `kind` asks.
fn matrix(
    dev: &Arc<GpuDevice>,
    name: &str,
    t: CompressedTensor,
    kind: LayerKind,
    check: &mut CudaSlice<u8>,
    report: &mut LoadReport,
) -> Result<Linear, GpuError> {
    let t_up = Instant::now();
    match (kind, t.encoding()) {
        (LayerKind::Easy, Encoding::Palette) => {
            let w = DeviceWeights::palette(dev, name, &t)?;
            report.upload_s += t_up.elapsed().as_secs_f64();
            Linear::with_own_scratch(w, check)
        }
        (LayerKind::Easy, Encoding::Huffman) => {
            let w = DeviceWeights::huffman(dev, name, &t)?;
            report.upload_s += t_up.elapsed().as_secs_f64();
            let t_tc = Instant::now();
            let w = transcode_to_palette(w, &t.palette)?;
            report.transcode_s += t_tc.elapsed().as_secs_f64();
            report.transcoded += 1;
            Linear::with_own_scratch(w, check)
        }
        (LayerKind::Hard, Encoding::Huffman) => {
            let w = DeviceWeights::huffman(dev, name, &t)?;
            report.upload_s += t_up.elapsed().as_secs_f64();
            Linear::with_own_scratch(w, check)
        }
        (LayerKind::Hard, Encoding::Palette) => {
            let h = codec::transcode(&t, Encoding::Huffman)?;
            report.reencoded += 1;
            let w = DeviceWeights::huffman(dev, name, &h)?;
            report.upload_s += t_up.elapsed().as_secs_f64();
            Linear::with_own_scratch(w, check)
        }
        (_, e) => Err(GpuError::Mlp {
            layer: name.to_string(),
            reason: format!(
                "{e}-encoded tensors are not resident formats (use huffman or palette)"
            ),
        }),
    }
}

/// Huffman-resident → palette-resident on the GPU, in the layout [`DeviceWeights::palette`] gives
/// a palette tensor ([`BlockLayout::palette_default`]: fragments, so the default plans take the RS
/// rmm): `huff_palette` writes the rmm's tiled nibbles, the error word is checked, the nibbles and
/// the tiled sm bytes are re-laid into fragment blocks on the GPU, and the Huffman stream and the
/// tiled copies are freed. The device buffers then equal `DeviceWeights::palette`'s byte for byte.
/// A shape the rmm does not take has no palette residency (the error names the tensor).
pub fn transcode_to_palette(
    w: DeviceWeights,
    palette: &[u8; 16],
) -> Result<DeviceWeights, GpuError> {
    let layout = BlockLayout::palette_default(&w.geometry).ok_or_else(|| {
        weights_error(
            &w.name,
            LayoutError::PaletteShape {
                shape: w.geometry.shape_text(),
            },
        )
    })?;
    transcode_to_palette_with(w, palette, layout)
}

/// [`transcode_to_palette`] into `layout` ([`BlockLayout::Tiled`]: the SS rmm's blocks, as
/// `huff_palette` writes them, with no re-layout).
pub fn transcode_to_palette_with(
    w: DeviceWeights,
    palette: &[u8; 16],
    layout: BlockLayout,
) -> Result<DeviceWeights, GpuError> {
    let dev = w.device().clone();
    let bytes = w.geometry.scratch_bytes().2;
    let mut nibbles = dev
        .stream
        .alloc_zeros::<u8>(bytes.max(16))
        .ctx(|| format!("allocating palette nibbles of {}", w.name))?;
    // The stream is checked (row-major decode into the same buffer) before the tiled decode.
    let lin = Linear::with_own_scratch(w, &mut nibbles)?;
    lin.decode_into(&dev.stream, HuffOutput::Palette, true, &mut nibbles)?;
    lin.weights().take_decode_error(&dev.stream)?;
    lin.into_weights()
        .into_palette(nibbles, bytes, palette, layout)
}

/// Reads layers `0..layers` named by `naming` from the bundle at `path` and builds the stack.
pub fn load_stack(
    dev: &Arc<GpuDevice>,
    path: &Path,
    naming: &Naming,
    layers: usize,
    residencies: &Residencies,
    max_m: usize,
) -> Result<(MlpStack, LoadReport), GpuError> {
    let b = Bundle::open(path).map_err(|e| GpuError::Checkpoint {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let mut all = Vec::with_capacity(layers);
    for i in 0..layers {
        let mut tensors = Vec::new();
        for name in naming.layer(i) {
            let e = b
                .layout
                .compressed
                .iter()
                .find(|e| e.name == name)
                .ok_or_else(|| GpuError::Checkpoint {
                    path: path.display().to_string(),
                    reason: if b.layout.plain.iter().any(|p| p.name == name) {
                        format!(
                            "{name} is not compressed (compress the file with `unweight compress`)"
                        )
                    } else {
                        format!("no tensor {name}")
                    },
                })?;
            let t =
                e.parts
                    .load(&e.name, b.bytes(), &e.meta)
                    .map_err(|err| GpuError::Checkpoint {
                        path: path.display().to_string(),
                        reason: err.to_string(),
                    })?;
            tensors.push((name, t));
        }
        all.push(tensors);
    }
    build_stack(dev, naming.act, all, residencies, max_m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Orientation;
    use crate::gpu::layout::Geometry;
    use crate::gpu::plan::{plan_for, ExecPipeline};
    use unweight_codegen::variant::{ASource, Variant};

    /// An easy layer transcoded from Huffman takes the block layout a palette tensor uploads
    /// with, and its default plan (`Linear::plan` asks for the layout's form) is an RS variant at
    /// decode batches, for the Llama-3.1-8B and MiniLM shapes in the orientations the stacks use.
    #[test]
    fn transcoded_easy_layers_plan_the_rs_rmm() {
        for (n_out, k, o) in [
            (14336, 4096, Orientation::Standard),
            (4096, 14336, Orientation::Transposed),
            (4096, 14336, Orientation::Standard),
            (1536, 384, Orientation::Standard),
            (384, 1536, Orientation::Standard),
        ] {
            let g = Geometry::raw(n_out, k, o);
            let layout = BlockLayout::palette_default(&g).unwrap();
            assert_eq!(layout, BlockLayout::Fragments, "{n_out}x{k} {o}");
            for m in [1, 16, 64] {
                let p = plan_for(
                    &g,
                    ExecPipeline::DirectPalette,
                    m,
                    None,
                    layout.a_src(),
                    132,
                )
                .unwrap();
                let rmm = p.rmm.expect("an rmm plan");
                assert!(
                    matches!(rmm.variant, Variant::Rmm(v) if v.a_src == ASource::Regs),
                    "{n_out}x{k} {o} m={m}: {}",
                    rmm.name
                );
            }
        }
        // No palette residency where the rmm does not take the shape (it stays Huffman).
        assert_eq!(
            BlockLayout::palette_default(&Geometry::raw(100, 64, Orientation::Standard)),
            None
        );
    }
}
