//! Bundle I/O: a `.safetensors` file in which each compressed tensor `NAME` is stored as U8
//! component tensors `NAME.uw.<component>` (see [`components`]) and `__metadata__` carries an
//! `unweight` entry describing them (see [`meta`]). Any safetensors reader can open a bundle;
//! tensors that were not compressed pass through byte-identical.

pub mod bytes;
pub mod components;
mod compress;
pub mod copy;
mod decompress;
pub mod error;
pub mod inspect;
pub mod meta;
pub mod reader;
pub mod reserve;
pub mod select;
mod verify;
pub mod writeback;
pub mod writer;

use std::path::Path;

use safetensors::Dtype;

pub(crate) use compress::compress_shard;
pub use compress::{compress_file, CompressOptions, CompressReport, TensorReport};
pub use decompress::{
    decode_bytes, decode_entries, decode_entries_contiguous, decode_entry, decompress_file,
    Decoded, DecompressReport,
};
pub use error::{BundleError, ParseError, Problem};
pub use reader::{parse, Bundle, CompressedEntry, Layout, PlainTensor};
pub use select::{Selection, DEFAULT_TENSORS};
pub use verify::{verify_file, VerifyReport};

/// Refuses an output that would overwrite the input or cannot be a file.
fn check_output(input: &Path, output: &Path) -> Result<(), BundleError> {
    use std::os::unix::fs::MetadataExt;
    if let (Ok(i), Ok(o)) = (std::fs::metadata(input), std::fs::metadata(output)) {
        if (i.dev(), i.ino()) == (o.dev(), o.ino()) {
            return Err(BundleError::file(output, Problem::OutputIsInput));
        }
        if o.is_dir() {
            return Err(BundleError::io(
                output,
                "cannot write the output",
                std::io::Error::new(std::io::ErrorKind::IsADirectory, "is a directory"),
            ));
        }
    }
    Ok(())
}

/// The order safetensors' own writer uses: larger alignment first, then by name, so every
/// tensor's data starts aligned to its element size.
fn sort_for_alignment<T>(items: &mut [T], key: impl Fn(&T) -> (Dtype, &str)) {
    items.sort_by(|a, b| {
        let (da, na) = key(a);
        let (db, nb) = key(b);
        db.cmp(&da).then_with(|| na.cmp(nb))
    });
}
