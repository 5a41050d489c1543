//! The network: a batched MLP with forward derivative streams, and input normalisation.

pub mod config;
pub mod mlp;
pub mod normalize;
pub mod streams;
pub mod tape;
