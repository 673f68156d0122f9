//! The all-MiniLM-L6-v2 checkpoint as BF16, the project's real-weights test data: the one loader
//! the codec and bundle tests, the GPU harness and `cargo xtask bench-codec` share. fp32 is
//! rounded to nearest even (as `torch.Tensor.to(torch.bfloat16)` does); a BF16 copy (what
//! scripts/gpu-pack.sh carries) loads as is.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

/// A named tensor: name, shape, bf16 bits.
pub type NamedBf16 = (String, Vec<usize>, Vec<u16>);

/// The environment variable scripts/setup-tools.sh sets to the checkpoint's path.
pub const ENV: &str = "UNWEIGHT_MINILM";

/// Why the checkpoint could not be read; names the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct MinilmError {
    pub path: String,
    pub reason: String,
}

fn error(path: &Path, reason: impl Into<String>) -> MinilmError {
    MinilmError {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// The checkpoint's path from [`ENV`].
pub fn path_from_env() -> Result<PathBuf, MinilmError> {
    std::env::var_os(ENV)
        .map(PathBuf::from)
        .ok_or_else(|| MinilmError {
            path: ENV.into(),
            reason: "not set: run `source $(scripts/setup-tools.sh)` first (it fetches \
                 all-MiniLM-L6-v2 and sets the variable)"
                .into(),
        })
}

/// Whether `name` is one of the 12 MLP weights (6 layers × intermediate and output dense).
pub fn is_mlp_weight(name: &str) -> bool {
    name.ends_with("intermediate.dense.weight")
        || (name.ends_with("output.dense.weight") && !name.contains("attention"))
}

fn to_bf16(v: &TensorView) -> Option<Vec<u16>> {
    match v.dtype() {
        Dtype::F32 => Some(
            v.data()
                .chunks_exact(4)
                .map(|c| {
                    half::bf16::from_f32(f32::from_le_bytes([c[0], c[1], c[2], c[3]])).to_bits()
                })
                .collect(),
        ),
        Dtype::BF16 => Some(
            v.data()
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect(),
        ),
        _ => None,
    }
}

fn read(path: &Path) -> Result<Vec<u8>, MinilmError> {
    std::fs::read(path).map_err(|e| error(path, format!("cannot read: {e}")))
}

/// Every floating-point tensor (fp32 or bf16) of the checkpoint at `path` as bf16, sorted by
/// name, 1-D ones included; integer tensors (`position_ids`) are not weights and are left out.
pub fn load_bf16(path: &Path) -> Result<Vec<NamedBf16>, MinilmError> {
    let bytes = read(path)?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| error(path, format!("not safetensors: {e}")))?;
    let mut out: Vec<NamedBf16> = st
        .tensors()
        .into_iter()
        .filter_map(|(name, v)| Some((name, v.shape().to_vec(), to_bf16(&v)?)))
        .filter(|(_, _, bits)| !bits.is_empty())
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    if out.is_empty() {
        return Err(error(path, "no fp32 or bf16 tensors"));
    }
    Ok(out)
}

/// The 12 MLP weights of [`load_bf16`], in name order.
pub fn load_mlp_bf16(path: &Path) -> Result<Vec<NamedBf16>, MinilmError> {
    let mlp: Vec<_> = load_bf16(path)?
        .into_iter()
        .filter(|(n, _, _)| is_mlp_weight(n))
        .collect();
    if mlp.len() != 12 {
        return Err(error(
            path,
            format!("found {} MLP weights, expected 12", mlp.len()),
        ));
    }
    Ok(mlp)
}

/// Writes the checkpoint at `src` to `dst` with every fp32 tensor as bf16 and everything else
/// (other dtypes, the header's metadata) unchanged: a BF16 model file to compress.
pub fn write_bf16_copy(src: &Path, dst: &Path) -> Result<(), MinilmError> {
    let bytes = read(src)?;
    let bad = |e: safetensors::SafeTensorError| error(src, format!("not safetensors: {e}"));
    let st = SafeTensors::deserialize(&bytes).map_err(bad)?;
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(bad)?;
    let owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(name, v)| match (v.dtype(), to_bf16(&v)) {
            (Dtype::F32, Some(bits)) => {
                let data = bits.iter().flat_map(|b| b.to_le_bytes()).collect();
                (name, Dtype::BF16, v.shape().to_vec(), data)
            }
            (d, _) => (name, d, v.shape().to_vec(), v.data().to_vec()),
        })
        .collect();
    let views = owned
        .iter()
        .map(|(n, d, s, b)| Ok((n.clone(), TensorView::new(*d, s.clone(), b)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(bad)?;
    let metadata: Option<HashMap<String, String>> = meta.metadata().clone();
    safetensors::serialize_to_file(views, metadata, dst)
        .map_err(|e| error(dst, format!("cannot write: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) {
        let views: Vec<_> = tensors
            .iter()
            .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        let meta = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
        safetensors::serialize_to_file(views, meta, path).unwrap();
    }

    fn f32s(v: &[u32]) -> Vec<u8> {
        v.iter().flat_map(|b| b.to_le_bytes()).collect()
    }

    #[test]
    fn fp32_rounds_to_nearest_even_and_integers_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        let rounding = [
            0x3F80_8000,
            0x3F81_8000,
            0x3F80_8001,
            0x7F7F_FFFF,
            0x7F80_0001,
        ];
        write(
            &p,
            &[
                ("b.weight", Dtype::F32, vec![5], f32s(&rounding)),
                ("a.ids", Dtype::I64, vec![1], vec![0; 8]),
                ("c.half", Dtype::BF16, vec![1], vec![0x80, 0x3F]),
            ],
        );
        let t = load_bf16(&p).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].0, "b.weight");
        assert_eq!(t[0].2[..4], [0x3F80, 0x3F82, 0x3F81, 0x7F80]);
        assert_eq!(t[0].2[4] & 0x7FC0, 0x7FC0, "NaN stays NaN");
        assert_eq!(t[1], ("c.half".into(), vec![1], vec![0x3F80]));

        let copy = dir.path().join("copy.safetensors");
        write_bf16_copy(&p, &copy).unwrap();
        let bytes = std::fs::read(&copy).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.tensor("b.weight").unwrap().dtype(), Dtype::BF16);
        assert_eq!(st.tensor("a.ids").unwrap().dtype(), Dtype::I64);
        assert_eq!(load_bf16(&copy).unwrap(), t);
        let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(meta.metadata().as_ref().unwrap()["format"], "pt");
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.safetensors");
        let e = load_bf16(&missing).unwrap_err().to_string();
        assert!(e.contains("missing.safetensors: cannot read"), "{e}");
        let junk = dir.path().join("junk.safetensors");
        std::fs::write(&junk, b"not a checkpoint").unwrap();
        let e = load_bf16(&junk).unwrap_err().to_string();
        assert!(e.contains("junk.safetensors: not safetensors"), "{e}");
        let e = load_mlp_bf16(&junk).unwrap_err().to_string();
        assert!(e.contains("junk.safetensors"), "{e}");
        assert!(is_mlp_weight("encoder.layer.0.output.dense.weight"));
        assert!(!is_mlp_weight(
            "encoder.layer.0.attention.output.dense.weight"
        ));
    }
}
