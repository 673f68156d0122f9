//! MLP blocks over [`Linear`](crate::gpu::linear::Linear)s: the activation kernels' CPU reference
//! ([`activation`]).

pub mod activation;
