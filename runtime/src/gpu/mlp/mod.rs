//! MLP blocks over [`Linear`](crate::gpu::linear::Linear)s: the activation kernels' CPU reference
//! ([`activation`]) and the easy/hard residency planner under a memory budget ([`budget`]).

pub mod activation;
pub mod budget;
