//! What runs the runtime end to end rather than serving an engine: the GPU correctness checks
//! behind tests/tests/gpu_*.rs ([`check`]), synthetic weights and activations ([`synth`]), MLP
//! stacks and their checks ([`mlp`]; what they compare with, modelled on the CPU, in
//! [`stack_error`]), `unweight bench` ([`mod@bench`]; its byte
//! accounting in [`traffic`], its done-when checks in [`targets`]), `unweight bench-mlp`
//! ([`bench_mlp`], its plot in [`bench_mlp_plot`]) and the GPU half of
//! `unweight demo` ([`demo`]).

pub mod bench;
pub mod bench_mlp;
pub mod bench_mlp_plot;
pub mod check;
pub mod demo;
pub mod mlp;
pub mod probe;
pub mod stack_error;
pub mod synth;
pub mod targets;
pub mod traffic;
