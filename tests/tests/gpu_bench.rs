//! The benchmark as an ignored test, for machines where only test executables are carried:
//! the same `unweight::gpu::harness::bench::run` that `unweight bench` calls, on the 8B shapes
//! (the `bench` step of scripts/gpu-run.sh). Output directory from `UNWEIGHT_BENCH_OUT` (default
//! bench/results).

use unweight::gpu::harness::bench::{run, BenchOptions, LLAMA_8B_SHAPES};

#[test]
#[ignore = "needs an sm_90 GPU"]
fn gpu_bench_llama_mlp() {
    let mut opts = BenchOptions {
        command: "gpu_bench --ignored gpu_bench_llama_mlp".into(),
        shapes: LLAMA_8B_SHAPES.to_vec(),
        tag: Some("8b".into()),
        ..BenchOptions::default()
    };
    if let Some(dir) = std::env::var_os("UNWEIGHT_BENCH_OUT") {
        opts.out_dir = dir.into();
    }
    run(opts).expect("benchmark");
}
