//! The one NVRTC wrapper: one variant's CUDA source → sm_90a CUBIN plus the program log as text.
//! Both the compile check (`compile.rs`, tests and `cargo xtask check-kernels`) and the runtime's
//! JIT (runtime/src/gpu/jit/) compile through it, with the same option list.
//!
//! Runs without a GPU (only libnvrtc.so.13 is needed). cudarc's safe `compile_ptx` fetches PTX
//! and returns the log only on failure, rendered through `Debug`; the result API used here gives
//! the CUBIN and the log on every compile.

use std::ffi::{c_char, c_int, CString};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

pub use cudarc::nvrtc::result::NvrtcError;
use cudarc::nvrtc::{result, sys};

/// The architecture every variant is built for (WGMMA and setmaxnreg need the `a` suffix).
pub const ARCH: &str = "sm_90a";

/// Options of every compile. Part of the runtime's disk cache key, so a change here recompiles.
/// `--ptxas-options=-v` puts registers/spills into the log (the compile check parses them);
/// `-lineinfo` lets compute-sanitizer name source lines and does not change the generated SASS.
/// With [`PROBE_ENV`] = `1` the rmm kernels are built with their timeline probe (`-DUNWEIGHT_PROBE`).
pub fn options() -> Vec<String> {
    let mut o = vec![
        format!("--gpu-architecture={ARCH}"),
        "-std=c++17".to_string(),
        "-lineinfo".to_string(),
        "--ptxas-options=-v".to_string(),
    ];
    if probing() {
        o.push("-DUNWEIGHT_PROBE=1".to_string());
    }
    o
}

/// Set to `1` for a diagnostic build whose rmm kernels record a per-CTA timeline
/// (templates/rmm.cu.tera, `ProbePoint`), read back by `unweight bench`.
pub const PROBE_ENV: &str = "UNWEIGHT_PROBE";

/// Whether this process builds the probed kernels ([`PROBE_ENV`]).
pub fn probing() -> bool {
    std::env::var_os(PROBE_ENV).is_some_and(|v| v == "1")
}

/// Why a compile produced no CUBIN.
#[derive(Debug)]
pub enum NvrtcFailure {
    /// libnvrtc.so.13 cannot be loaded.
    Missing,
    /// An NVRTC API call failed outside compilation proper.
    Call {
        call: &'static str,
        source: NvrtcError,
    },
    /// The program did not compile (or gave something that is not a CUBIN); `log` says why.
    Compile { log: String },
}

impl fmt::Display for NvrtcFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NvrtcFailure::Missing => {
                f.write_str("libnvrtc.so.13 (NVRTC 13) is not on the loader path")
            }
            NvrtcFailure::Call { call, source } => {
                write!(f, "{call} failed: {}", nvrtc_text(source))
            }
            NvrtcFailure::Compile { log } => write!(f, "compilation failed:\n{log}"),
        }
    }
}

impl std::error::Error for NvrtcFailure {}

/// NVRTC's own name for a result code (`NvrtcError`'s `Display` is its `Debug`).
pub fn nvrtc_text(e: &NvrtcError) -> String {
    format!("{:?}", e.0)
}

/// A compiled variant: the CUBIN image and NVRTC's log (ptxas resource lines), as text.
#[derive(Debug, Clone)]
pub struct Cubin {
    pub image: Vec<u8>,
    pub log: String,
}

static COMPILES: AtomicUsize = AtomicUsize::new(0);

/// How many times this process has run `nvrtcCompileProgram` (tests use it to prove a cache hit).
pub fn compile_count() -> usize {
    COMPILES.load(Ordering::SeqCst)
}

/// Whether libnvrtc can be loaded.
pub fn present() -> bool {
    // SAFETY: only probes whether the shared library can be opened; no NVRTC call is made.
    unsafe { sys::is_culib_present() }
}

fn ensure() -> Result<(), NvrtcFailure> {
    if present() {
        Ok(())
    } else {
        Err(NvrtcFailure::Missing)
    }
}

/// NVRTC's (major, minor) version.
pub fn version() -> Result<(i32, i32), NvrtcFailure> {
    ensure()?;
    let (mut major, mut minor): (c_int, c_int) = (0, 0);
    // SAFETY: both pointers are valid for one write each.
    unsafe { sys::nvrtcVersion(&mut major, &mut minor) }
        .result()
        .map_err(|source| NvrtcFailure::Call {
            call: "nvrtcVersion",
            source,
        })?;
    Ok((major, minor))
}

/// Renders NVRTC's NUL-terminated log as trimmed text lines (never `Debug`).
pub fn render_log(raw: &[c_char]) -> String {
    let bytes: Vec<u8> = raw
        .iter()
        .map(|&c| c as u8)
        .take_while(|&b| b != 0)
        .collect();
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect();
    lines.join("\n")
}

/// Compiles `source` (whose kernel is `name`) to a CUBIN for [`ARCH`] with `options`
/// (normally [`options()`]).
pub fn compile(name: &str, source: &str, options: &[String]) -> Result<Cubin, NvrtcFailure> {
    ensure()?;
    let call = |call: &'static str| move |source| NvrtcFailure::Call { call, source };
    let src = CString::new(source).map_err(|_| NvrtcFailure::Compile {
        log: "source contains a NUL byte".to_string(),
    })?;
    let file = CString::new(format!("{name}.cu")).map_err(|_| NvrtcFailure::Compile {
        log: "kernel name contains a NUL byte".to_string(),
    })?;
    let prog = result::create_program(&src, Some(&file)).map_err(call("nvrtcCreateProgram"))?;
    COMPILES.fetch_add(1, Ordering::SeqCst);
    // SAFETY: `prog` was created above and is destroyed exactly once below; `src`/`file` outlive it.
    let compiled = unsafe { result::compile_program(prog, options) };
    // SAFETY: as above; the log exists whether or not compilation succeeded.
    let log = unsafe { result::get_program_log(prog) }
        .map(|l| render_log(&l))
        .unwrap_or_default();
    let image = compiled
        .map_err(|_| NvrtcFailure::Compile { log: log.clone() })
        .and_then(|()| {
            // SAFETY: `prog` compiled successfully and is still live.
            unsafe { cubin(prog) }
        });
    // SAFETY: created above, not destroyed before.
    let destroyed = unsafe { result::destroy_program(prog) };
    let image = image?;
    destroyed.map_err(call("nvrtcDestroyProgram"))?;
    if image.len() < 4 || &image[..4] != b"\x7fELF" {
        return Err(NvrtcFailure::Compile {
            log: format!(
                "NVRTC returned {} bytes that are not an ELF CUBIN (is the target {ARCH}?)\n{log}",
                image.len()
            ),
        });
    }
    Ok(Cubin { image, log })
}

/// # Safety
/// `prog` must be a successfully compiled, live program.
unsafe fn cubin(prog: sys::nvrtcProgram) -> Result<Vec<u8>, NvrtcFailure> {
    let mut size = 0usize;
    // SAFETY: the caller guarantees `prog`; `size` is valid for one write.
    unsafe { sys::nvrtcGetCUBINSize(prog, &mut size) }
        .result()
        .map_err(|source| NvrtcFailure::Call {
            call: "nvrtcGetCUBINSize",
            source,
        })?;
    let mut buf = vec![0u8; size];
    // SAFETY: `buf` holds exactly the `size` bytes NVRTC reported.
    unsafe { sys::nvrtcGetCUBIN(prog, buf.as_mut_ptr().cast()) }
        .result()
        .map_err(|source| NvrtcFailure::Call {
            call: "nvrtcGetCUBIN",
            source,
        })?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_is_rendered_as_lines() {
        let raw: Vec<c_char> = b"a.cu(3): error: x\r\n\n  ptxas info : Used 40 registers  \n\0junk"
            .iter()
            .map(|&b| b as c_char)
            .collect();
        assert_eq!(
            render_log(&raw),
            "a.cu(3): error: x\n  ptxas info : Used 40 registers"
        );
    }

    #[test]
    fn options_target_sm90a_cpp17_with_the_ptxas_report() {
        let o = options();
        for want in [
            "--gpu-architecture=sm_90a",
            "-std=c++17",
            "--ptxas-options=-v",
        ] {
            assert!(o.contains(&want.to_string()), "{want} missing from {o:?}");
        }
    }
}
