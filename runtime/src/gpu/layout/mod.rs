//! Host-side layout of device-resident weights: the shapes ([`geometry`]), the rmm's tiled blocks
//! ([`tiles`]), the RS rmm's fragment blocks ([`fragments`]) and per-tile escape records
//! ([`escapes`]), and the images each residency uploads ([`image`]). Exactly the bytes the kernels read, built on the CPU from a codec tensor, with no
//! cudarc here, so every rule is unit-tested without a GPU. The numbers come from
//! `unweight_codegen::abi`.

pub mod error;
pub mod escapes;
pub mod fragments;
pub mod geometry;
pub mod image;
pub mod multi;
pub mod subs;
pub mod tiles;

pub use error::LayoutError;
pub use geometry::Geometry;
pub use image::{
    raw_fragments, BlockLayout, HuffmanImage, PaletteImage, Residency, RmmTables, BITS_TAIL,
};
