//! Compile check without a GPU: NVRTC (dynamically loaded) compiles a kernel for sm_90a with
//! `--ptxas-options=-v`; the ptxas report and the SASS (cuobjdump) are checked for spills, stack
//! frames, local-memory traffic, SMEM over the limit, C75xx performance warnings and, for rmm,
//! the presence of HGMMA.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::abi::SMEM_LIMIT;
use crate::nvrtc;
use crate::render::Generated;
use crate::variant::Variant;

const SETUP: &str =
    "run `source $(scripts/setup-tools.sh)` first (it installs NVRTC 13.0, cuobjdump and nvdisasm)";

/// Fails with a hint when NVRTC or the SASS tools cannot be found.
pub fn tools_available() -> Result<(), String> {
    if !nvrtc::present() {
        return Err(format!("libnvrtc.so.13 is not on the loader path: {SETUP}"));
    }
    for tool in ["cuobjdump", "nvdisasm"] {
        let ok = Command::new(tool)
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !ok {
            return Err(format!("`{tool}` is not on PATH: {SETUP}"));
        }
    }
    Ok(())
}

/// NVRTC's version, e.g. (13, 0).
pub fn nvrtc_version() -> Result<(i32, i32), String> {
    nvrtc::version().map_err(|e| format!("{e}: {SETUP}"))
}

/// What ptxas reported about the kernel (maximum over all functions in the module).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PtxasInfo {
    pub registers: u32,
    pub stack_frame: u32,
    pub spill_stores: u32,
    pub spill_loads: u32,
    /// Static shared memory.
    pub smem: u32,
    /// `ptxas info (C75xx) Potential Performance Loss` lines.
    pub perf_warnings: Vec<String>,
}

/// Parses the `--ptxas-options=-v` lines of an NVRTC log.
pub fn parse_ptxas(log: &str) -> PtxasInfo {
    let mut info = PtxasInfo::default();
    for line in log.lines() {
        let l = line.trim();
        if l.contains("bytes stack frame") {
            info.stack_frame = info.stack_frame.max(number_before(l, "bytes stack frame"));
            info.spill_stores = info
                .spill_stores
                .max(number_before(l, "bytes spill stores"));
            info.spill_loads = info.spill_loads.max(number_before(l, "bytes spill loads"));
        }
        if l.contains("Used") && l.contains("registers") {
            info.registers = info.registers.max(number_before(l, "registers"));
            info.smem = info.smem.max(number_before(l, "bytes smem"));
        }
        if l.contains("(C75") {
            info.perf_warnings.push(l.to_string());
        }
    }
    info
}

/// The integer right before `marker` ("168 registers" → 168); 0 when absent.
fn number_before(line: &str, marker: &str) -> u32 {
    let Some(pos) = line.find(marker) else {
        return 0;
    };
    let head = line[..pos].trim_end();
    let digits: String = head
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits
        .chars()
        .rev()
        .collect::<String>()
        .parse()
        .unwrap_or(0)
}

/// A compiled kernel.
pub struct Compiled {
    pub log: String,
    pub cubin: Vec<u8>,
    pub ptxas: PtxasInfo,
}

/// Compiles `source` for sm_90a with the runtime's options ([`nvrtc::options`]). The error is
/// the NVRTC log, as text.
pub fn compile(name: &str, source: &str) -> Result<Compiled, String> {
    let cubin = nvrtc::compile(name, source, &nvrtc::options()).map_err(|e| match e {
        nvrtc::NvrtcFailure::Missing => format!("{name}: {e}: {SETUP}"),
        e => format!("{name}: NVRTC {e}"),
    })?;
    Ok(Compiled {
        ptxas: parse_ptxas(&cubin.log),
        log: cubin.log,
        cubin: cubin.image,
    })
}

/// SASS instruction counts that matter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SassStats {
    pub hgmma: usize,
    pub local_loads: usize,
    pub local_stores: usize,
    pub instructions: usize,
}

/// Disassembles a CUBIN with `cuobjdump --dump-sass` (the CUBIN goes through a file in `dir`).
pub fn sass(name: &str, cubin: &[u8], dir: &Path) -> Result<String, String> {
    let path = dir.join(format!("{name}.cubin"));
    std::fs::write(&path, cubin).map_err(|e| format!("{}: {e}", path.display()))?;
    let out = Command::new("cuobjdump")
        .arg("--dump-sass")
        .arg(&path)
        .output()
        .map_err(|e| format!("cuobjdump: {e}: {SETUP}"))?;
    if !out.status.success() {
        return Err(format!(
            "cuobjdump --dump-sass {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn sass_stats(sass: &str) -> SassStats {
    let mut s = SassStats::default();
    for line in sass.lines() {
        // `/*0230*/   @P0 HGMMA.64x64x16.F32.BF16 R24, gdesc[UR4], R24 ;`
        let Some(rest) = line
            .trim()
            .strip_prefix("/*")
            .and_then(|r| r.split_once("*/"))
            .map(|(_, r)| r)
        else {
            continue;
        };
        let mut tokens = rest.split_whitespace();
        let Some(mut op) = tokens.next() else {
            continue;
        };
        if op.starts_with('@') {
            let Some(next) = tokens.next() else { continue };
            op = next;
        }
        let base = op.split('.').next().unwrap_or(op);
        s.instructions += 1;
        match base {
            "HGMMA" => s.hgmma += 1,
            "LDL" => s.local_loads += 1,
            "STL" => s.local_stores += 1,
            _ => {}
        }
    }
    s
}

/// One variant's compile-check result.
#[derive(Clone, Debug)]
pub struct Checked {
    pub variant: Variant,
    pub ptxas: PtxasInfo,
    pub sass: SassStats,
    /// Shared memory the launch uses (static + dynamic).
    pub smem_total: u32,
    /// Everything wrong with it; empty means it passes.
    pub problems: Vec<String>,
    /// ptxas lines of the log (for reports).
    pub ptxas_lines: Vec<String>,
}

/// Compiles one generated kernel and checks it against the rules above.
pub fn check_kernel(k: &Generated, dir: &Path) -> Checked {
    let name = k.variant.to_string();
    let mut checked = Checked {
        variant: k.variant,
        ptxas: PtxasInfo::default(),
        sass: SassStats::default(),
        smem_total: 0,
        problems: Vec::new(),
        ptxas_lines: Vec::new(),
    };
    let compiled = match compile(&name, &k.source) {
        Ok(c) => c,
        Err(e) => {
            checked.problems.push(e);
            return checked;
        }
    };
    checked.ptxas_lines = compiled
        .log
        .lines()
        .filter(|l| l.contains("ptxas") || l.contains("bytes stack"))
        .map(|l| l.trim().to_string())
        .collect();
    let p = &compiled.ptxas;
    if p.registers == 0 {
        checked.problems.push(format!(
            "{name}: no ptxas resource report in the NVRTC log:\n{}",
            compiled.log
        ));
    }
    if p.spill_stores > 0 || p.spill_loads > 0 {
        checked.problems.push(format!(
            "{name}: {} bytes spill stores, {} bytes spill loads",
            p.spill_stores, p.spill_loads
        ));
    }
    if p.stack_frame > 0 {
        checked
            .problems
            .push(format!("{name}: {} bytes stack frame", p.stack_frame));
    }
    for w in &p.perf_warnings {
        checked.problems.push(format!("{name}: {w}"));
    }
    checked.smem_total = p.smem + k.budget.dynamic_smem();
    if checked.smem_total > SMEM_LIMIT {
        checked.problems.push(format!(
            "{name}: smem {} B (static {} + dynamic {}) > {SMEM_LIMIT} B",
            checked.smem_total,
            p.smem,
            k.budget.dynamic_smem()
        ));
    }
    checked.ptxas = compiled.ptxas.clone();
    match sass(&name, &compiled.cubin, dir) {
        Err(e) => checked.problems.push(e),
        Ok(text) => {
            let s = sass_stats(&text);
            if s.instructions == 0 {
                checked
                    .problems
                    .push(format!("{name}: cuobjdump printed no SASS instructions"));
            }
            if matches!(k.variant, Variant::Rmm(_)) && s.hgmma == 0 {
                checked.problems.push(format!(
                    "{name}: no HGMMA in the SASS (wgmma was serialized or removed)"
                ));
            }
            if s.local_loads > 0 || s.local_stores > 0 {
                checked.problems.push(format!(
                    "{name}: {} LDL and {} STL in the SASS (local memory)",
                    s.local_loads, s.local_stores
                ));
            }
            checked.sass = s;
        }
    }
    checked
}

/// Checks `kernels` on `threads` threads; results in input order.
pub fn check_all(kernels: &[Generated], threads: usize, dir: &Path) -> Vec<Checked> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Checked>>> = Mutex::new(vec![None; kernels.len()]);
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(k) = kernels.get(i) else { break };
                let c = check_kernel(k, dir);
                results
                    .lock()
                    .expect("no thread panics while holding the lock")[i] = Some(c);
            });
        }
    });
    results
        .into_inner()
        .expect("threads joined")
        .into_iter()
        .map(|c| c.expect("every index checked"))
        .collect()
}

/// A fresh directory for CUBINs under the system temp dir (removed by the caller).
pub fn scratch_dir(tag: &str) -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("unweight-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// The summary table: name, registers, static smem, launch smem, HGMMA count, verdict.
pub fn summary_table(results: &[Checked]) -> String {
    let mut s = format!(
        "{:<24} {:>5} {:>7} {:>8} {:>6} {:>6} {:>6}  {}\n",
        "variant", "regs", "stack", "spills", "smem", "hgmma", "ldl/stl", "status"
    );
    for c in results {
        s.push_str(&format!(
            "{:<24} {:>5} {:>7} {:>8} {:>6} {:>6} {:>7}  {}\n",
            c.variant.to_string(),
            c.ptxas.registers,
            c.ptxas.stack_frame,
            c.ptxas.spill_stores + c.ptxas.spill_loads,
            c.smem_total,
            c.sass.hgmma,
            c.sass.local_loads + c.sass.local_stores,
            if c.problems.is_empty() { "ok" } else { "FAIL" }
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ptxas_report() {
        let log = "ptxas info    : 0 bytes gmem\n\
                   ptxas info    : Compiling entry function 'k' for 'sm_90a'\n\
                   ptxas info    : Function properties for k\n\
                   \x20   8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads\n\
                   ptxas info    : Used 168 registers, used 1 barriers, 13824 bytes smem, 400 bytes cmem[0]\n\
                   ptxas info (C7508) Potential Performance Loss: setmaxnreg ignored\n";
        let p = parse_ptxas(log);
        assert_eq!(
            (
                p.registers,
                p.stack_frame,
                p.spill_stores,
                p.spill_loads,
                p.smem
            ),
            (168, 8, 4, 12, 13824)
        );
        assert_eq!(p.perf_warnings.len(), 1);
    }

    #[test]
    fn counts_sass_opcodes() {
        let sass =
            "        /*0230*/                   HGMMA.64x64x16.F32.BF16 R24, gdesc[UR4], R24 ;\n\
                    \x20       /*0240*/               @P0 LDL.64 R2, [R1+0x8] ;\n\
                    \x20       /*0250*/                   STL [R1], R3 ;\n\
                    \x20       /*0260*/                   STS [R1], R3 ;\n";
        let s = sass_stats(sass);
        assert_eq!(
            (s.hgmma, s.local_loads, s.local_stores, s.instructions),
            (1, 1, 1, 4)
        );
    }
}
