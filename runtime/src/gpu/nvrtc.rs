//! NVRTC: one variant's CUDA source → sm_90a CUBIN plus the program log as text.
//!
//! Runs without a GPU (only libnvrtc.so.13 is needed), which is how CI proves every variant
//! compiles. cudarc's safe `compile_ptx` fetches PTX and returns the log only on failure,
//! rendered through `Debug`; here the result API gives the CUBIN and the log on every compile.

use std::ffi::{c_char, c_int, CString};
use std::sync::atomic::{AtomicUsize, Ordering};

use cudarc::nvrtc::{result, sys};

use super::error::GpuError;

/// The architecture every variant is built for (WGMMA and setmaxnreg need the `a` suffix).
pub const ARCH: &str = "sm_90a";

/// Options of every compile. Part of the disk cache key, so a change here recompiles.
/// `--ptxas-options=-v` puts registers/spills into the log; `-lineinfo` lets compute-sanitizer
/// name source lines and does not change the generated SASS.
pub fn compile_options() -> Vec<String> {
    vec![
        format!("--gpu-architecture={ARCH}"),
        "-std=c++17".to_string(),
        "-lineinfo".to_string(),
        "--ptxas-options=-v".to_string(),
    ]
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

fn ensure_nvrtc() -> Result<(), GpuError> {
    // SAFETY: only probes whether the shared library can be opened.
    if unsafe { sys::is_culib_present() } {
        Ok(())
    } else {
        Err(GpuError::LibraryMissing { library: "libnvrtc (NVRTC 13)", detail: "needed to compile kernels" })
    }
}

/// NVRTC's (major, minor) version.
pub fn version() -> Result<(i32, i32), GpuError> {
    ensure_nvrtc()?;
    let (mut major, mut minor): (c_int, c_int) = (0, 0);
    // SAFETY: both pointers are valid for one write each.
    unsafe { sys::nvrtcVersion(&mut major, &mut minor) }
        .result()
        .map_err(|source| GpuError::Nvrtc { variant: String::new(), call: "nvrtcVersion", source })?;
    Ok((major, minor))
}

/// Renders NVRTC's NUL-terminated log as trimmed text lines (never `Debug`).
pub fn render_log(raw: &[c_char]) -> String {
    let bytes: Vec<u8> = raw.iter().map(|&c| c as u8).take_while(|&b| b != 0).collect();
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().map(str::trim_end).filter(|l| !l.is_empty()).collect();
    lines.join("\n")
}

/// Compiles `source` (whose kernel is `name`) to a CUBIN for [`ARCH`].
pub fn compile(name: &str, source: &str, options: &[String]) -> Result<Cubin, GpuError> {
    ensure_nvrtc()?;
    let nv = |call: &'static str| move |source| GpuError::Nvrtc { variant: name.to_string(), call, source };
    let src = CString::new(source).map_err(|_| GpuError::Compile {
        variant: name.to_string(),
        log: "source contains a NUL byte".to_string(),
        options: options.join(" "),
    })?;
    let file = CString::new(format!("{name}.cu")).expect("variant names have no NUL");
    let prog = result::create_program(&src, Some(&file)).map_err(nv("nvrtcCreateProgram"))?;
    COMPILES.fetch_add(1, Ordering::SeqCst);
    // SAFETY: `prog` was created above and is destroyed exactly once below.
    let compiled = unsafe { result::compile_program(prog, options) };
    // SAFETY: as above; the log exists whether or not compilation succeeded.
    let log = unsafe { result::get_program_log(prog) }.map(|l| render_log(&l)).unwrap_or_default();
    let image = compiled.map_err(|_| GpuError::Compile {
        variant: name.to_string(),
        log: log.clone(),
        options: options.join(" "),
    });
    let image = image.and_then(|()| {
        let mut size = 0usize;
        // SAFETY: `prog` compiled successfully; `size` is valid for one write.
        unsafe { sys::nvrtcGetCUBINSize(prog, &mut size) }.result().map_err(nv("nvrtcGetCUBINSize"))?;
        let mut buf = vec![0u8; size];
        // SAFETY: `buf` holds exactly the `size` bytes NVRTC reported.
        unsafe { sys::nvrtcGetCUBIN(prog, buf.as_mut_ptr() as *mut c_char) }.result().map_err(nv("nvrtcGetCUBIN"))?;
        Ok(buf)
    });
    // SAFETY: created above, not destroyed before.
    let destroyed = unsafe { result::destroy_program(prog) };
    let image = image?;
    destroyed.map_err(nv("nvrtcDestroyProgram"))?;
    if image.len() < 4 || &image[..4] != b"\x7fELF" {
        return Err(GpuError::Compile {
            variant: name.to_string(),
            log: format!("NVRTC returned {} bytes that are not an ELF CUBIN (is the target sm_90a?)\n{log}", image.len()),
            options: options.join(" "),
        });
    }
    Ok(Cubin { image, log })
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
        assert_eq!(render_log(&raw), "a.cu(3): error: x\n  ptxas info : Used 40 registers");
    }

    #[test]
    fn options_target_sm90a_cpp17() {
        let o = compile_options();
        assert!(o.contains(&"--gpu-architecture=sm_90a".to_string()));
        assert!(o.contains(&"-std=c++17".to_string()));
    }
}
