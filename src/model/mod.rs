//! The network: a batched MLP with forward derivative streams, its activations (plain or
//! adaptive), an optional Fourier feature embedding, and input normalisation.

pub mod activation;
pub mod ansatz;
pub mod adaptive;
pub mod config;
pub mod fourier;
pub mod mlp;
pub mod normalize;
pub mod streams;
pub mod tape;

#[cfg(test)]
pub mod testing;
