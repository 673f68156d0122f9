//! Writing a safetensors file atomically and without holding its data in memory.
//!
//! The data section is streamed to a temporary file in the destination's directory, after a
//! header area whose size is reserved up front from an upper bound; the real header is written
//! last, padded with spaces (the safetensors format allows trailing whitespace in the header),
//! and the file is renamed onto the destination. On any error, or a drop before `finish`, the
//! temporary file is removed, so no partial output is ever left behind.

use std::collections::BTreeMap;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use safetensors::Dtype;
use serde_json::{Map, Value};
use tempfile::NamedTempFile;

use super::error::{BundleError, Problem};

/// One tensor of the header.
#[derive(Debug, Clone, PartialEq)]
pub struct HeaderEntry {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub offsets: (usize, usize),
}

/// Serializes a safetensors header (JSON, keys sorted, so output is deterministic).
pub fn header_json(
    metadata: Option<&BTreeMap<String, String>>,
    entries: &[HeaderEntry],
) -> Vec<u8> {
    let mut root = Map::new();
    if let Some(m) = metadata {
        let m: Map<String, Value> = m
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        root.insert("__metadata__".into(), Value::Object(m));
    }
    for e in entries {
        let mut t = Map::new();
        t.insert(
            "dtype".into(),
            serde_json::to_value(e.dtype).expect("dtype serializes"),
        );
        t.insert(
            "shape".into(),
            e.shape.iter().map(|&d| Value::from(d as u64)).collect(),
        );
        t.insert(
            "data_offsets".into(),
            Value::from(vec![e.offsets.0 as u64, e.offsets.1 as u64]),
        );
        root.insert(e.name.clone(), Value::Object(t));
    }
    serde_json::to_vec(&Value::Object(root)).expect("plain JSON serializes")
}

/// Bytes of one element, for the dtypes that can be passed through (whole bytes).
pub fn byte_len(dtype: Dtype, shape: &[usize]) -> Option<usize> {
    let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
    let bits = n.checked_mul(dtype.bitsize())?;
    (bits % 8 == 0).then_some(bits / 8)
}

/// A safetensors file being written; becomes `dest` only through [`OutputFile::finish`].
pub struct OutputFile {
    dest: PathBuf,
    out: BufWriter<NamedTempFile>,
    reserved: usize,
    entries: Vec<HeaderEntry>,
    pos: usize,
}

impl OutputFile {
    /// Creates the temporary file next to `dest`, reserving `header_bound` bytes for the header.
    pub fn create(dest: &Path, header_bound: usize) -> Result<Self, BundleError> {
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        // Temporary files are created 0600; ask for 0666 so the kernel applies the umask and
        // the output gets the same permissions as any other new file.
        let tmp = tempfile::Builder::new()
            .prefix(".unweight-")
            .suffix(".tmp")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .tempfile_in(dir)
            .map_err(|e| BundleError::io(dest, "cannot create the output file", e))?;
        let reserved = header_bound.next_multiple_of(8);
        let mut out = BufWriter::with_capacity(8 << 20, tmp);
        out.seek(SeekFrom::Start(8 + reserved as u64))
            .map_err(|e| BundleError::io(dest, "cannot write the output file", e))?;
        Ok(Self {
            dest: dest.to_path_buf(),
            out,
            reserved,
            entries: Vec::new(),
            pos: 0,
        })
    }

    /// Appends a tensor's bytes to the data section.
    pub fn append(
        &mut self,
        name: &str,
        dtype: Dtype,
        shape: &[usize],
        data: &[u8],
    ) -> Result<(), BundleError> {
        debug_assert_eq!(byte_len(dtype, shape), Some(data.len()), "{name}");
        self.out
            .write_all(data)
            .map_err(|e| BundleError::io(&self.dest, "cannot write the output file", e))?;
        let start = self.pos;
        self.pos += data.len();
        self.entries.push(HeaderEntry {
            name: name.to_string(),
            dtype,
            shape: shape.to_vec(),
            offsets: (start, self.pos),
        });
        Ok(())
    }

    /// Writes the header and renames the file onto the destination.
    pub fn finish(self, metadata: Option<&BTreeMap<String, String>>) -> Result<(), BundleError> {
        let Self {
            dest,
            out,
            reserved,
            entries,
            ..
        } = self;
        let io = |e| BundleError::io(&dest, "cannot write the output file", e);
        let mut header = header_json(metadata, &entries);
        if header.len() > reserved {
            return Err(BundleError::file(
                &dest,
                Problem::HeaderOverflow {
                    need: header.len(),
                    reserved,
                },
            ));
        }
        header.resize(reserved, b' ');
        let mut tmp = out.into_inner().map_err(|e| io(e.into_error()))?;
        tmp.seek(SeekFrom::Start(0)).map_err(io)?;
        tmp.write_all(&(reserved as u64).to_le_bytes())
            .map_err(io)?;
        tmp.write_all(&header).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(&dest)
            .map_err(|e| BundleError::io(&dest, "cannot rename the output into place", e.error))?;
        Ok(())
    }
}
