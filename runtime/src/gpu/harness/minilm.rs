//! The all-MiniLM-L6-v2 checkpoint as BF16 tensors, for the GPU tests on real weights.

use crate::gpu::error::GpuError;

/// A named tensor: name, shape, bf16 bits.
pub type NamedBf16 = (String, Vec<usize>, Vec<u16>);

/// MiniLM weights (fp32 or bf16 safetensors at `path`) as bf16 (fp32 rounded to nearest even),
/// with names and shapes; 1-D tensors included.
pub fn load_minilm_bf16(path: &std::path::Path) -> Result<Vec<NamedBf16>, GpuError> {
    let werr = |reason: String| GpuError::Checkpoint {
        path: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| werr(format!("cannot read: {e}")))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| werr(format!("not safetensors: {e}")))?;
    let mut out = Vec::new();
    let mut names: Vec<String> = st.names().into_iter().map(|s| s.to_string()).collect();
    names.sort();
    for name in names {
        let v = st.tensor(&name).map_err(|e| werr(format!("{name}: {e}")))?;
        let bits: Vec<u16> = match v.dtype() {
            safetensors::Dtype::F32 => v
                .data()
                .chunks_exact(4)
                .map(|c| {
                    half::bf16::from_f32(f32::from_le_bytes([c[0], c[1], c[2], c[3]])).to_bits()
                })
                .collect(),
            // scripts/gpu-pack.sh carries a bf16 copy (half the bytes).
            safetensors::Dtype::BF16 => v
                .data()
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect(),
            _ => continue,
        };
        if bits.is_empty() {
            continue;
        }
        out.push((name, v.shape().to_vec(), bits));
    }
    Ok(out)
}
