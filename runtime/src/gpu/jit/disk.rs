//! The on-disk CUBIN cache: a second process finds the CUBIN and never calls NVRTC.
//!
//! Key = xxh64 over the variant name, the source bytes (hashed again here, so an edited source
//! can never hit a stale entry), the compile options, the NVRTC version and the arch. The
//! directory is namespaced by crate version and arch; writes go to a temp file in the same
//! directory and are renamed into place, so a concurrent reader sees a whole file or none.
//! Each file is the CUBIN followed by its xxh64 and [`SEAL_MAGIC`] ([`seal`]); an entry whose
//! checksum does not match (a flipped byte, a truncated file, a foreign file) is recompiled and
//! rewritten, never handed to the driver.

use std::io::Write;
use std::path::{Path, PathBuf};

use unweight_codegen::variant::RegistryEntry;
use xxhash_rust::xxh64::xxh64;

use crate::gpu::error::GpuError;
use crate::gpu::jit::nvrtc;

/// Overrides the cache directory (used as is; no version/arch sub-directories are added).
pub const CACHE_DIR_ENV: &str = "UNWEIGHT_CACHE_DIR";

/// Whether a CUBIN came from NVRTC or from the disk cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    Compiled,
    DiskHit,
}

/// `$UNWEIGHT_CACHE_DIR`, else `~/.cache/unweight/<crate version>/sm_90a/`
/// (`$XDG_CACHE_HOME` replaces `~/.cache` when set; the system temp dir when there is no home).
pub fn default_cache_dir() -> PathBuf {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
    };
    cache_dir_from(var(CACHE_DIR_ENV), var("XDG_CACHE_HOME"), var("HOME"))
}

/// [`default_cache_dir`]'s rule, from the three environment values.
pub fn cache_dir_from(
    over: Option<PathBuf>,
    xdg: Option<PathBuf>,
    home: Option<PathBuf>,
) -> PathBuf {
    if let Some(dir) = over {
        return dir;
    }
    let base = xdg
        .or_else(|| home.map(|h| h.join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("unweight")
        .join(env!("CARGO_PKG_VERSION"))
        .join(nvrtc::ARCH)
}

/// The cache key of one variant under the given options and NVRTC version.
pub fn cache_key(name: &str, source: &str, options: &[String], nvrtc_version: (i32, i32)) -> u64 {
    let mut material = Vec::with_capacity(source.len() + 256);
    for part in [
        name,
        nvrtc::ARCH,
        &format!("nvrtc {}.{}", nvrtc_version.0, nvrtc_version.1),
    ] {
        material.extend_from_slice(part.as_bytes());
        material.push(0);
    }
    for o in options {
        material.extend_from_slice(o.as_bytes());
        material.push(0);
    }
    material.extend_from_slice(&xxh64(source.as_bytes(), 0).to_le_bytes());
    xxh64(&material, 0)
}

/// Ends every cache file, after the CUBIN's xxh64 (little-endian).
pub const SEAL_MAGIC: &[u8; 8] = b"UWXXH64\0";

/// The cache file of `image`: the image, its xxh64, [`SEAL_MAGIC`].
pub fn seal(image: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(image.len() + 16);
    out.extend_from_slice(image);
    out.extend_from_slice(&xxh64(image, 0).to_le_bytes());
    out.extend_from_slice(SEAL_MAGIC);
    out
}

/// The CUBIN in a cache file, or `None` unless its seal, checksum and ELF magic all check out.
pub fn unseal(file: &[u8]) -> Option<&[u8]> {
    let body_len = file.len().checked_sub(16)?;
    let (image, trailer) = file.split_at(body_len);
    let (sum, magic) = trailer.split_at(8);
    let sum = u64::from_le_bytes(sum.try_into().ok()?);
    (magic == SEAL_MAGIC && xxh64(image, 0) == sum && image.starts_with(b"\x7fELF"))
        .then_some(image)
}

/// Path of the CUBIN for `name` under `key`.
pub fn cubin_path(dir: &Path, name: &str, key: u64) -> PathBuf {
    dir.join(format!("{name}-{key:016x}.cubin"))
}

/// Returns the CUBIN of `entry`, from `dir` if a matching one is there, else compiled by NVRTC
/// and stored (with its log beside it as `.log`). A cache that cannot be written only costs the
/// next process a compile, so write failures are reported on stderr, not returned.
pub fn compile_cached(
    entry: &RegistryEntry,
    dir: &Path,
) -> Result<(Vec<u8>, CacheOutcome), GpuError> {
    let options = nvrtc::compile_options();
    let key = cache_key(entry.name, entry.source, &options, nvrtc::version()?);
    let path = cubin_path(dir, entry.name, key);
    if let Ok(bytes) = std::fs::read(&path) {
        // A damaged, truncated or foreign file is ignored and rewritten, never loaded.
        if let Some(image) = unseal(&bytes) {
            return Ok((image.to_vec(), CacheOutcome::DiskHit));
        }
    }
    let cubin = nvrtc::compile(entry.name, entry.source, &options)?;
    if let Err(e) = store(dir, &path, &cubin) {
        eprintln!(
            "unweight: could not write the JIT cache entry {}: {e}",
            path.display()
        );
    }
    Ok((cubin.image, CacheOutcome::Compiled))
}

fn store(dir: &Path, path: &Path, cubin: &nvrtc::Cubin) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let write_atomic = |target: &Path, bytes: &[u8]| -> std::io::Result<()> {
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.write_all(bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(target).map_err(|e| e.error)?;
        Ok(())
    };
    write_atomic(&path.with_extension("log"), cubin.log.as_bytes())?;
    // The CUBIN goes last: its presence is what marks the entry complete.
    write_atomic(path, &seal(&cubin.image))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_changes_with_every_input() {
        let o = nvrtc::compile_options();
        let base = cache_key("rmm_raw_n8_s4_nt", "src", &o, (13, 0));
        assert_ne!(base, cache_key("rmm_raw_n8_s4_t", "src", &o, (13, 0)));
        assert_ne!(base, cache_key("rmm_raw_n8_s4_nt", "src2", &o, (13, 0)));
        assert_ne!(base, cache_key("rmm_raw_n8_s4_nt", "src", &o[1..], (13, 0)));
        assert_ne!(base, cache_key("rmm_raw_n8_s4_nt", "src", &o, (13, 1)));
        assert_eq!(base, cache_key("rmm_raw_n8_s4_nt", "src", &o, (13, 0)));
    }

    #[test]
    fn seal_detects_every_damage() {
        let image = b"\x7fELF and the rest of a cubin".to_vec();
        let file = seal(&image);
        assert_eq!(unseal(&file), Some(&image[..]));
        for i in 0..file.len() {
            let mut f = file.clone();
            f[i] ^= 0x10;
            assert_eq!(unseal(&f), None, "flipped byte {i}");
        }
        for n in 0..file.len() {
            assert_eq!(unseal(&file[..n]), None, "truncated to {n}");
        }
        // A bare CUBIN (the old layout) or any other file is not a hit.
        assert_eq!(unseal(&image), None);
        assert_eq!(unseal(&seal(b"not an elf")), None);
    }

    #[test]
    fn cache_dir_rule() {
        let v = env!("CARGO_PKG_VERSION");
        let home = Some(PathBuf::from("/h"));
        assert_eq!(
            cache_dir_from(None, None, home.clone()),
            Path::new("/h/.cache/unweight").join(v).join("sm_90a")
        );
        assert_eq!(
            cache_dir_from(None, Some("/x".into()), home.clone()),
            Path::new("/x/unweight").join(v).join("sm_90a")
        );
        assert_eq!(
            cache_dir_from(Some("/o".into()), Some("/x".into()), home),
            PathBuf::from("/o")
        );
    }
}
