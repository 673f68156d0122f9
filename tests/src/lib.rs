//! Shared helpers for the integration tests.

use unweight::gpu::harness::check::Harness;
use unweight::gpu::harness::synth::Rng;

/// GPU 0 and a generator with a fresh seed, printed so a failing run can be replayed.
pub fn gpu_session() -> (Harness, Rng) {
    let h = Harness::open().expect("opening GPU 0");
    let seed = Rng::fresh_seed();
    println!("seed {seed}");
    (h, Rng::new(seed))
}

/// Fails the test listing every failure a GPU check collected.
pub fn assert_no_failures(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
