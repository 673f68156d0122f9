//! `compress`: a safetensors file → a bundle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use rayon::prelude::*;
use safetensors::Dtype;

use super::bytes::{bits_of, windowed_batch_pipelined};
use super::components::{to_components, Component};
use super::error::{BundleError, Problem};
use super::meta::{BundleMeta, TensorMeta, COMPONENT_SEP, FORMAT_VERSION, METADATA_KEY};
use super::reader::{is_component_name, Bundle, PlainTensor};
use super::select::Selection;
use super::writer::{header_json, HeaderEntry, OutputFile};
use super::{check_output, sort_for_alignment};
use crate::codec::{self, CompressedTensor, Encoding, Orientation};

/// What one compressed tensor became.
#[derive(Debug, Clone)]
pub struct TensorReport {
    pub name: String,
    pub shape: Vec<usize>,
    pub encoding: Encoding,
    pub orientation: Orientation,
    pub elements: usize,
    pub groups: usize,
    pub escapes: usize,
    /// BF16 bytes of the original tensor.
    pub bytes_before: usize,
    /// Bytes of its component tensors in the bundle.
    pub bytes_after: usize,
}

impl TensorReport {
    pub fn of(name: &str, t: &CompressedTensor) -> Self {
        let elements = t.rows * t.cols;
        Self {
            name: name.to_string(),
            shape: t.shape.clone(),
            encoding: t.encoding(),
            orientation: t.orientation,
            elements,
            groups: t.groups(),
            escapes: t.escape_count(),
            bytes_before: 2 * elements,
            bytes_after: to_components(t).iter().map(|(_, b)| b.len()).sum(),
        }
    }
}

/// The result of [`compress_file`].
#[derive(Debug, Clone, Default)]
pub struct CompressReport {
    pub tensors: Vec<TensorReport>,
    /// Tensors copied unchanged.
    pub passed_through: usize,
}

/// Options of [`compress_file`].
#[derive(Debug, Clone)]
pub struct CompressOptions {
    pub encoding: Encoding,
    pub selection: Selection,
}

struct Job<'a> {
    tensor: &'a PlainTensor,
    orientation: Orientation,
}

/// Compresses the selected tensors of `input` into a bundle at `output`. `progress` receives
/// the input bytes as they are done (they sum to the input file's size).
pub fn compress_file(
    input: &Path,
    output: &Path,
    opts: &CompressOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<CompressReport, BundleError> {
    match compress_shard(input, output, opts, true, progress)? {
        Some(r) => Ok(r),
        None => Err(BundleError::file(
            input,
            Problem::NothingSelected(opts.selection.tensors.as_str().to_string()),
        )),
    }
}

/// [`compress_file`] for one shard of a directory (`whole_file` false): a shard none of whose
/// tensors is selected gives `Ok(None)` and writes nothing, and `--transpose` matching nothing
/// here is left for the caller to judge over all shards.
pub(crate) fn compress_shard(
    input: &Path,
    output: &Path,
    opts: &CompressOptions,
    whole_file: bool,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Option<CompressReport>, BundleError> {
    let src = Bundle::open(input)?;
    check_output(input, output)?;
    if src.layout.is_bundle() {
        return Err(BundleError::file(input, Problem::AlreadyBundle));
    }

    let (mut jobs, mut plain) = (Vec::new(), Vec::new());
    for t in &src.layout.plain {
        if !opts.selection.selects(&t.name) {
            plain.push(t);
            continue;
        }
        if t.dtype != Dtype::BF16 {
            return Err(BundleError::tensor(
                input,
                &t.name,
                Problem::NotBf16(t.dtype),
            ));
        }
        if t.shape.len() < 2 {
            return Err(BundleError::tensor(
                input,
                &t.name,
                Problem::NotMatrix(t.shape.clone()),
            ));
        }
        let orientation = if opts.selection.transposes(&t.name) {
            Orientation::Transposed
        } else {
            Orientation::Standard
        };
        jobs.push(Job {
            tensor: t,
            orientation,
        });
    }
    if jobs.is_empty() {
        return Ok(None);
    }
    if let (true, Some(re)) = (whole_file, &opts.selection.transpose) {
        if !jobs
            .iter()
            .any(|j| j.orientation == Orientation::Transposed)
        {
            return Err(BundleError::file(
                input,
                Problem::NothingTransposed(re.as_str().to_string()),
            ));
        }
    }
    // A pass-through tensor named like a component would be taken for one when reading.
    if let Some(t) = plain.iter().find(|t| is_component_name(&t.name)) {
        return Err(BundleError::tensor(
            input,
            &t.name,
            Problem::NameClash(t.name.clone()),
        ));
    }
    sort_for_alignment(&mut plain, |t| (t.dtype, t.name.as_str()));

    let had_metadata = src.layout.metadata.is_some();
    let original_header = original_header(src.bytes());
    let mut metadata = src.layout.metadata.clone().unwrap_or_default();
    if metadata.contains_key(METADATA_KEY) {
        return Err(BundleError::file(input, Problem::AlreadyBundle));
    }

    // Bound the header before encoding anything: every unknown number at its widest.
    let widest = |d: Dtype, name: &str, rank: usize| HeaderEntry {
        name: name.to_string(),
        dtype: d,
        shape: vec![usize::MAX; rank],
        offsets: (usize::MAX, usize::MAX),
    };
    let mut bound_entries: Vec<HeaderEntry> = plain
        .iter()
        .map(|t| widest(t.dtype, &t.name, t.shape.len()))
        .collect();
    let mut bound_meta = BundleMeta {
        format_version: FORMAT_VERSION.into(),
        input_had_metadata: had_metadata,
        tensors: BTreeMap::new(),
        original_header: original_header.clone(),
    };
    let mut names: BTreeSet<String> = plain.iter().map(|t| t.name.clone()).collect();
    for j in &jobs {
        for c in Component::expected(opts.encoding) {
            let full = format!("{}{COMPONENT_SEP}{}", j.tensor.name, c.name());
            if !names.insert(full.clone()) {
                return Err(BundleError::tensor(
                    input,
                    &j.tensor.name,
                    Problem::NameClash(full),
                ));
            }
            bound_entries.push(widest(Dtype::U8, &full, 1));
        }
        bound_meta.tensors.insert(
            j.tensor.name.clone(),
            TensorMeta::widest(&j.tensor.shape, j.orientation, opts.encoding),
        );
    }
    let mut bound_md = metadata.clone();
    bound_md.insert(METADATA_KEY.into(), bound_meta.to_json());
    let bound = header_json(Some(&bound_md), &bound_entries).len();

    let mut out = OutputFile::create(output, bound)?;
    // The header counts as done: progress then sums to the input file's size.
    progress(src.data_start() as u64);
    for t in &plain {
        out.append_copy(
            &t.name,
            t.dtype,
            &t.shape,
            src.file(),
            t.range.start as u64,
            src.slice(&t.range),
        )?;
        progress(t.range.len() as u64);
    }

    let mut report = CompressReport {
        passed_through: plain.len(),
        ..Default::default()
    };
    let mut meta = BundleMeta {
        format_version: FORMAT_VERSION.into(),
        input_had_metadata: had_metadata,
        tensors: BTreeMap::new(),
        original_header,
    };
    // Windows of 64 MB: the output of one is written (on a thread of its own, and then on its
    // way to disk) while the next is encoded.
    windowed_batch_pipelined(
        &jobs,
        64 << 20,
        |j| j.tensor.range.len(),
        |window| {
            let bits: Vec<_> = window
                .par_iter()
                .map(|j| bits_of(src.slice(&j.tensor.range)))
                .collect();
            let inputs: Vec<codec::CompressInput> = window
                .iter()
                .zip(&bits)
                .map(|(j, b)| (&b[..], &j.tensor.shape[..], j.orientation))
                .collect();
            codec::compress_batch(&inputs, opts.encoding)
                .into_iter()
                .zip(window)
                .map(|(r, j)| r.map_err(|e| BundleError::tensor(input, &j.tensor.name, e)))
                .collect()
        },
        |j, ct| {
            for (c, bytes) in to_components(&ct) {
                let full = format!("{}{COMPONENT_SEP}{}", j.tensor.name, c.name());
                out.append(&full, Dtype::U8, &[bytes.len()], &bytes)?;
            }
            meta.tensors
                .insert(j.tensor.name.clone(), TensorMeta::of(&ct));
            report.tensors.push(TensorReport::of(&j.tensor.name, &ct));
            progress(j.tensor.range.len() as u64);
            Ok(())
        },
    )?;
    metadata.insert(METADATA_KEY.into(), meta.to_json());
    out.finish(Some(&metadata))?;
    Ok(Some(report))
}

/// The header of a safetensors file as stored: the JSON between the length prefix and the data,
/// padding included (already checked to be UTF-8 JSON by the reader).
fn original_header(bytes: &[u8]) -> Option<String> {
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let end = 8usize.checked_add(usize::try_from(n).ok()?)?;
    String::from_utf8(bytes.get(8..end)?.to_vec()).ok()
}
