//! The JIT's disk cache, without a GPU: a second process compiling the same variant finds the
//! CUBIN on disk and never runs NVRTC. Needs libnvrtc.so.13 on the loader path
//! (`source $(scripts/setup-tools.sh)`).

use std::path::Path;
use std::process::Command;

use unweight::gpu::jit::disk::{cache_key, compile_cached, cubin_path, unseal, CacheOutcome};
use unweight::gpu::jit::nvrtc;
use unweight_codegen::variant::{
    GridRule, HuffOutput, HuffRefill, HuffVariant, RegistryEntry, Variant,
};

/// Set in the re-executed child; names the cache directory the parent filled.
const CHILD_ENV: &str = "UNWEIGHT_JIT_TEST_CHILD_DIR";
const CHILD_OK: &str = "child: disk hit, 0 NVRTC compiles";

/// A tiny but real sm_90a kernel with a registry entry of its own, so the test does not depend
/// on which variants the generator emits.
fn tiny_entry(tag: &str) -> &'static RegistryEntry {
    let source: &'static str = Box::leak(
        format!(
            "// {tag}\nextern \"C\" __global__ void huff_bf16(unsigned short* out) {{ out[threadIdx.x] = (unsigned short)threadIdx.x; }}\n"
        )
        .into_boxed_str(),
    );
    Box::leak(Box::new(RegistryEntry {
        variant: Variant::Huff(HuffVariant {
            output: HuffOutput::Bf16,
            refill: HuffRefill::Vec4,
        }),
        name: "huff_bf16",
        block: [32, 1, 1],
        grid: GridRule::HuffChunks {
            chunks_per_block: 1,
        },
        dynamic_smem: 0,
        max_kb: None,
        source_hash: 0,
        source,
    }))
}

fn child(dir: &Path) {
    let before = nvrtc::compile_count();
    let (cubin, outcome) = compile_cached(tiny_entry("shared"), dir).expect("child compile_cached");
    assert_eq!(
        outcome,
        CacheOutcome::DiskHit,
        "the second process recompiled"
    );
    assert_eq!(
        nvrtc::compile_count(),
        before,
        "the second process called nvrtcCompileProgram"
    );
    assert_eq!(&cubin[..4], b"\x7fELF");
    println!("{CHILD_OK}");
}

#[test]
fn second_process_hits_disk_cache() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        return child(Path::new(&dir));
    }
    let dir = tempfile::tempdir().unwrap();
    let (cubin, outcome) = compile_cached(tiny_entry("shared"), dir.path()).expect("first compile");
    assert_eq!(outcome, CacheOutcome::Compiled);
    assert_eq!(&cubin[..4], b"\x7fELF", "NVRTC did not return a CUBIN");
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "second_process_hits_disk_cache",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .output()
        .expect("re-executing the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(CHILD_OK),
        "child failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn same_process_second_call_is_a_disk_hit_and_edits_recompile() {
    let dir = tempfile::tempdir().unwrap();
    let a = tiny_entry("edit-a");
    let n0 = nvrtc::compile_count();
    assert_eq!(
        compile_cached(a, dir.path()).unwrap().1,
        CacheOutcome::Compiled
    );
    assert_eq!(
        compile_cached(a, dir.path()).unwrap().1,
        CacheOutcome::DiskHit
    );
    // A changed source under the same name is a different key: compiled, not served stale.
    assert_eq!(
        compile_cached(tiny_entry("edit-b"), dir.path()).unwrap().1,
        CacheOutcome::Compiled
    );
    assert!(nvrtc::compile_count() >= n0 + 2);
    // The log sits beside the CUBIN, and no temp files are left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        names.iter().filter(|n| n.ends_with(".cubin")).count(),
        2,
        "{names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| n.ends_with(".log")).count(),
        2,
        "{names:?}"
    );
    assert_eq!(names.len(), 4, "{names:?}");
}

#[test]
fn corrupt_cache_file_is_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let e = tiny_entry("corrupt");
    let key = cache_key(
        e.name,
        e.source,
        &nvrtc::compile_options(),
        nvrtc::version().unwrap(),
    );
    let path = cubin_path(dir.path(), e.name, key);
    std::fs::write(&path, b"half-writ").unwrap();
    assert_eq!(
        compile_cached(e, dir.path()).unwrap().1,
        CacheOutcome::Compiled
    );
    assert_eq!(&std::fs::read(&path).unwrap()[..4], b"\x7fELF");
}

#[test]
fn damaged_cache_entries_are_recompiled_never_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let e = tiny_entry("damaged");
    let (good, outcome) = compile_cached(e, dir.path()).unwrap();
    assert_eq!(outcome, CacheOutcome::Compiled);
    let key = cache_key(
        e.name,
        e.source,
        &nvrtc::compile_options(),
        nvrtc::version().unwrap(),
    );
    let path = cubin_path(dir.path(), e.name, key);
    let sealed = std::fs::read(&path).unwrap();
    assert_eq!(unseal(&sealed), Some(&good[..]));
    let mut flipped_image = sealed.clone();
    flipped_image[sealed.len() / 3] ^= 1;
    let mut flipped_sum = sealed.clone();
    flipped_sum[good.len()] ^= 1;
    let damages: [(&str, Vec<u8>); 4] = [
        ("flipped byte in the CUBIN", flipped_image),
        ("bad checksum", flipped_sum),
        ("truncated", sealed[..sealed.len() - 5].to_vec()),
        ("bare CUBIN without its checksum", good.clone()),
    ];
    for (what, bytes) in damages {
        std::fs::write(&path, &bytes).unwrap();
        let before = nvrtc::compile_count();
        let (cubin, outcome) = compile_cached(e, dir.path()).unwrap();
        assert_eq!(outcome, CacheOutcome::Compiled, "{what} was loaded");
        assert!(nvrtc::compile_count() > before, "{what}: no recompile");
        assert_eq!(cubin, good, "{what}");
        // Rewritten whole: the next call is a clean hit.
        assert_eq!(
            std::fs::read(&path).unwrap(),
            sealed,
            "{what} not rewritten"
        );
        assert_eq!(
            compile_cached(e, dir.path()).unwrap().1,
            CacheOutcome::DiskHit,
            "{what}"
        );
    }
}

#[test]
fn compile_error_carries_variant_options_and_text_log() {
    let dir = tempfile::tempdir().unwrap();
    let bad: &'static RegistryEntry = Box::leak(Box::new(RegistryEntry {
        source: "extern \"C\" __global__ void rmm_raw_n8_s2_nt( { this is not C++ }\n",
        name: "rmm_raw_n8_s2_nt",
        ..*tiny_entry("bad")
    }));
    let err = compile_cached(bad, dir.path()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("rmm_raw_n8_s2_nt"), "{text}");
    assert!(text.contains("--gpu-architecture=sm_90a"), "{text}");
    assert!(text.contains("error"), "{text}");
    assert!(!text.contains("\\n"), "log rendered via Debug: {text}");
}

#[test]
fn registry_kernels_compile_with_the_runtime_options() {
    // One rmm and one Huffman kernel from the generated registry, through the runtime's own
    // compile path (options, CUBIN extraction, log beside it).
    use unweight::gpu::plan::{default_variant, huff_entry, ExecPipeline};
    let dir = tempfile::tempdir().unwrap();
    let rmm = default_variant(ExecPipeline::DirectPalette, true, 7)
        .unwrap()
        .expect("an rmm_palette_*_t variant");
    for e in [rmm, huff_entry(HuffOutput::Bf16).unwrap()] {
        let t0 = std::time::Instant::now();
        let (cubin, outcome) = compile_cached(e, dir.path()).unwrap_or_else(|err| panic!("{err}"));
        println!(
            "{} compiled in {:.1}s ({} bytes)",
            e.name,
            t0.elapsed().as_secs_f64(),
            cubin.len()
        );
        assert_eq!(outcome, CacheOutcome::Compiled);
        assert_eq!(&cubin[..4], b"\x7fELF");
        let key = cache_key(
            e.name,
            e.source,
            &nvrtc::compile_options(),
            nvrtc::version().unwrap(),
        );
        let log =
            std::fs::read_to_string(cubin_path(dir.path(), e.name, key).with_extension("log"))
                .unwrap();
        assert!(
            log.contains("registers"),
            "ptxas resource report missing from the log:\n{log}"
        );
    }
}
