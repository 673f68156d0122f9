//! unweight-codegen: the kernel variant space, template rendering and registry emission.
pub mod variant;
