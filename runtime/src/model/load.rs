//! Every tensor of one file, decoded: what the Python package's `load_file` returns.

use std::path::Path;

use crate::bundle::{self, bytes::bytes_of, Bundle, CompressedEntry, Decoded};

use super::ModelError;

/// Every tensor of ONE safetensors file (a bundle or a plain file) with its original name,
/// dtype, shape and little-endian bytes, the compressed ones decoded (hashes checked), and the
/// original `__metadata__` (without the `unweight` entry).
pub fn load_file(path: &Path) -> Result<Decoded, ModelError> {
    let b = Bundle::open(path)?;
    let mut tensors = std::collections::BTreeMap::new();
    for t in &b.layout.plain {
        tensors.insert(
            t.name.clone(),
            (t.dtype, t.shape.clone(), b.slice(&t.range).to_vec()),
        );
    }
    let entries: Vec<&CompressedEntry> = b.layout.compressed.iter().collect();
    // A few tensors at a time: the decoded values of one group plus their copies as bytes.
    for group in entries.chunks(2 * rayon::current_num_threads()) {
        for (e, bits) in group.iter().zip(bundle::decode_entries(&b, group)) {
            tensors.insert(
                e.name.clone(),
                (
                    safetensors::Dtype::BF16,
                    e.parts.shape.clone(),
                    bytes_of(&bits?).into_owned(),
                ),
            );
        }
    }
    Ok(Decoded {
        metadata: b.layout.metadata.clone(),
        tensors,
    })
}
