//! Writing a safetensors file atomically and without holding its data in memory.
//!
//! [`OutputFile`] (compress, sizes known only once encoded): the data section is written to a
//! temporary file in the destination's directory, after a header area whose size is reserved
//! up front from an upper bound; the real header is written last, padded with spaces (the
//! safetensors format allows trailing whitespace in the header). [`MappedOutput`] (decompress,
//! every size known up front): the file is sized, mapped and filled in place. Either way the
//! file is synced and renamed onto the destination at the end; on any error, or a drop before
//! `finish`, the temporary file is removed, so no partial output is ever left behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safetensors::Dtype;
use serde_json::{Map, Value};
use tempfile::NamedTempFile;

use super::error::{BundleError, Problem};
use super::reserve;
use super::writeback::Writeback;

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

/// A temporary file next to `dest`, removed on drop unless persisted.
fn temp_beside(dest: &Path) -> Result<NamedTempFile, BundleError> {
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // Temporary files are created 0600; ask for 0666 so the kernel applies the umask and
    // the output gets the same permissions as any other new file.
    tempfile::Builder::new()
        .prefix(".unweight-")
        .suffix(".tmp")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(|e| BundleError::io(dest, "cannot create the output file", e))
}

/// Syncs the temporary file to disk and renames it onto `dest`.
fn persist(tmp: NamedTempFile, dest: &Path) -> Result<(), BundleError> {
    tmp.as_file()
        .sync_all()
        .map_err(|e| BundleError::io(dest, "cannot write the output file", e))?;
    tmp.persist(dest)
        .map_err(|e| BundleError::io(dest, "cannot rename the output into place", e.error))?;
    Ok(())
}

/// A safetensors file being written; becomes `dest` only through [`OutputFile::finish`].
///
/// Data goes out with positioned writes (`pwrite`) of whole tensors or components, which are
/// large, so there is no user-space buffer to copy through; pass-through tensors can be copied
/// from their source file inside the kernel ([`OutputFile::append_copy`]).
pub struct OutputFile {
    dest: PathBuf,
    tmp: NamedTempFile,
    reserved: usize,
    entries: Vec<HeaderEntry>,
    pos: usize,
    /// Data bytes whose writeback has been started.
    kicked: usize,
    writeback: Writeback,
}

/// How many bytes [`OutputFile`] appends before it starts writing them back.
const WRITEBACK_STEP: usize = 16 << 20;

impl OutputFile {
    /// Creates the temporary file next to `dest`, reserving `header_bound` bytes for the header.
    pub fn create(dest: &Path, header_bound: usize) -> Result<Self, BundleError> {
        let tmp = temp_beside(dest)?;
        let writeback = Writeback::new(tmp.as_file());
        Ok(Self {
            dest: dest.to_path_buf(),
            tmp,
            reserved: header_bound.next_multiple_of(8),
            entries: Vec::new(),
            pos: 0,
            kicked: 0,
            writeback,
        })
    }

    fn data_offset(&self) -> u64 {
        (8 + self.reserved + self.pos) as u64
    }

    /// Every [`WRITEBACK_STEP`] bytes appended, starts writing them back to disk (see
    /// [`Writeback`]), so that `finish`'s sync has little left to wait for.
    fn writeback_step(&mut self) {
        if self.pos - self.kicked >= WRITEBACK_STEP {
            let from = (8 + self.reserved + self.kicked) as u64;
            self.writeback.start(from, self.data_offset() - from);
            self.kicked = self.pos;
        }
    }

    fn push(&mut self, name: &str, dtype: Dtype, shape: &[usize], len: usize) {
        let start = self.pos;
        self.pos += len;
        self.entries.push(HeaderEntry {
            name: name.to_string(),
            dtype,
            shape: shape.to_vec(),
            offsets: (start, self.pos),
        });
        self.writeback_step();
    }

    /// Appends a tensor's bytes to the data section.
    pub fn append(
        &mut self,
        name: &str,
        dtype: Dtype,
        shape: &[usize],
        data: &[u8],
    ) -> Result<(), BundleError> {
        use std::os::unix::fs::FileExt;
        debug_assert_eq!(byte_len(dtype, shape), Some(data.len()), "{name}");
        self.tmp
            .as_file()
            .write_all_at(data, self.data_offset())
            .map_err(|e| BundleError::io(&self.dest, "cannot write the output file", e))?;
        self.push(name, dtype, shape, data.len());
        Ok(())
    }

    /// Appends a tensor whose bytes are `data`, held in `src` at byte `src_offset`: copied
    /// file to file inside the kernel where it can, else written from `data`.
    pub fn append_copy(
        &mut self,
        name: &str,
        dtype: Dtype,
        shape: &[usize],
        src: &std::fs::File,
        src_offset: u64,
        data: &[u8],
    ) -> Result<(), BundleError> {
        debug_assert_eq!(byte_len(dtype, shape), Some(data.len()), "{name}");
        let at = self.data_offset();
        let copied = super::copy::copy_range(src, src_offset, self.tmp.as_file(), at, data.len())
            .map_err(|e| BundleError::io(&self.dest, "cannot write the output file", e))?;
        if !copied {
            return self.append(name, dtype, shape, data);
        }
        self.push(name, dtype, shape, data.len());
        Ok(())
    }

    /// Writes the header, syncs the file and renames it onto the destination.
    pub fn finish(self, metadata: Option<&BTreeMap<String, String>>) -> Result<(), BundleError> {
        use std::os::unix::fs::FileExt;
        let Self {
            dest,
            tmp,
            reserved,
            entries,
            pos,
            writeback,
            ..
        } = self;
        writeback.finish();
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
        let mut head = (reserved as u64).to_le_bytes().to_vec();
        head.extend_from_slice(&header);
        tmp.as_file().write_all_at(&head, 0).map_err(io)?;
        // A file whose data section ends in a hole (an empty last tensor) still has its length.
        tmp.as_file()
            .set_len((8 + reserved + pos) as u64)
            .map_err(io)?;
        persist(tmp, &dest)
    }
}

/// A safetensors file of known size written through a shared memory map: the decoder writes
/// each tensor's values straight into the file's pages (no buffer filled and then copied out
/// with `write`). Becomes `dest` only through [`MappedOutput::finish`]; dropped before that,
/// the temporary file is removed.
pub struct MappedOutput {
    dest: PathBuf,
    tmp: NamedTempFile,
    map: Option<memmap2::MmapMut>,
    data_start: usize,
}

impl MappedOutput {
    /// Creates the temporary file next to `dest` with `header` (the exact header JSON, padded
    /// as it is to be stored) and room for `data_len` bytes of data.
    pub fn create(dest: &Path, header: &[u8], data_len: usize) -> Result<Self, BundleError> {
        let io = |e| BundleError::io(dest, "cannot write the output file", e);
        let tmp = temp_beside(dest)?;
        let data_start = 8 + header.len();
        let total = data_start
            .checked_add(data_len)
            .ok_or_else(|| BundleError::file(dest, Problem::Overflow("output size".into())))?;
        // Space reserved up front, so a full file system is an error here, not SIGBUS while
        // decoding; and neither the page faults nor the writeback have to allocate blocks one
        // page at a time (measured: writeback of 117 MB took ~10 ms instead of ~50 ms on the
        // development VM).
        let map = reserve::reserve(tmp.as_file(), total as u64).map_err(io)?;
        let mut out = Self {
            dest: dest.to_path_buf(),
            tmp,
            map: Some(map),
            data_start,
        };
        let m = out.map.as_mut().expect("mapped above");
        m[..8].copy_from_slice(&(header.len() as u64).to_le_bytes());
        m[8..data_start].copy_from_slice(header);
        Ok(out)
    }

    /// The data section, to be filled (it starts zeroed).
    pub fn data_mut(&mut self) -> &mut [u8] {
        let start = self.data_start;
        match &mut self.map {
            Some(m) => &mut m[start..],
            None => &mut [],
        }
    }

    /// The file, for copies into it at `data_start() + offset`.
    pub fn file(&self) -> &std::fs::File {
        self.tmp.as_file()
    }

    /// Byte position of the data section in the file.
    pub fn data_start(&self) -> usize {
        self.data_start
    }

    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Writes the mapped pages back, syncs the file and renames it onto the destination.
    pub fn finish(mut self) -> Result<(), BundleError> {
        let io = |e| BundleError::io(&self.dest, "cannot write the output file", e);
        if let Some(m) = self.map.take() {
            // On Linux `fsync` writes back the pages written through the mapping too, so the
            // unmapping (tens of ms for a few hundred MB of pages) runs beside it instead of
            // after an `msync`.
            #[cfg(target_os = "linux")]
            {
                let file = self.tmp.as_file();
                let synced = std::thread::scope(|s| {
                    let sync = s.spawn(|| file.sync_all());
                    drop(m);
                    sync.join()
                });
                synced
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                    .map_err(io)?;
            }
            #[cfg(not(target_os = "linux"))]
            m.flush().map_err(io)?;
        }
        persist(self.tmp, &self.dest)
    }
}
