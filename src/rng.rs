//! Per-job random streams.
//!
//! libtorch's generator is global, so two jobs trained together as one batched network would
//! share and interleave it, and a job's numbers would depend on which other jobs happened to
//! be in its batch (and so on the MPI rank count). Every random choice of a job is instead
//! drawn in Rust from its own ChaCha stream, keyed by the job seed and a purpose tag, and
//! copied to the device. The same job therefore gets the same numbers on any rank, in any
//! batch and on any device.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use rand_distr::StandardNormal;

/// What a random stream is used for; each purpose has an independent stream per job. New
/// purposes go at the end: the discriminant keys the stream, so the draws of the existing ones
/// stay as they were.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Init,
    Collocation,
    NtkPoints,
    Balancer,
    /// The fixed Fourier feature matrix B (`model.fourier`).
    Fourier,
    /// Rademacher probe vectors of the Hutchinson trace estimate (`ntk.method: hutchinson`).
    Probes,
    /// The points at which the terms `model.exact_bc` satisfies are checked (their reported
    /// loss; they are not trained).
    ExactTerms,
}

/// A job's random stream for one purpose (and an optional sub-key, e.g. a term index).
pub fn stream(seed: u64, purpose: Purpose, sub: u64) -> ChaCha12Rng {
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    rng.set_stream((purpose as u64) << 32 | (sub & 0xffff_ffff));
    rng
}

/// `n` standard normal samples.
pub fn normals(rng: &mut ChaCha12Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| rng.sample::<f64, _>(StandardNormal)).collect()
}

/// `n` uniform samples on [0, 1).
pub fn uniforms(rng: &mut ChaCha12Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| rng.random::<f64>()).collect()
}

/// `n` Rademacher signs, +1 or -1 with probability 1/2 each.
pub fn signs(rng: &mut ChaCha12Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 }).collect()
}

pub type JobRng = ChaCha12Rng;
