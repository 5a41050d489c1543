//! Input normalisation: the network sees x_n = (x - shift) * scale per input.
//!
//! The chain rule is applied by seeding the first-derivative streams with dx_n/dx_i =
//! scale_i, so every derivative the problems read is already with respect to the physical
//! coordinates (d/dx = scale * d/dx_n, d2/dx2 = scale^2 d2/dx_n2). No problem code has to
//! know about normalisation.
//!
//! # Warning
//! Scripts that normalise inputs and then differentiate the network with respect to the
//! normalised input must multiply by 1/sigma (first) and 1/sigma^2 (second derivatives);
//! forgetting it silently changes the PDE. Seed 000 discusses exactly this trap.
//!
//! # Reference
//! Seed 000 (z-score normalisation with chain-rule correction); DESIGN.md "Training".

use tch::Tensor;

use crate::model::config::Normalization;
use crate::domain::Domain;
use crate::tensor::TensorOpts;

/// Per-member affine input map.
///
/// # Shapes
/// `shift`, `scale`: [E, 1, d].
pub struct Normalizer {
    pub shift: Tensor,
    pub scale: Tensor,
}

impl Normalizer {
    /// shift and scale for one member on `domain`.
    ///
    /// zscore uses the mean (lo + hi) / 2 and standard deviation (hi - lo) / sqrt(12) of the
    /// uniform distribution on each side of the box (the distribution the collocation points
    /// are drawn from), so it does not depend on a particular batch.
    pub fn coefficients(kind: Normalization, domain: &Domain) -> (Vec<f64>, Vec<f64>) {
        let d = domain.dim();
        let mut shift = vec![0.0; d];
        let mut scale = vec![1.0; d];
        for i in 0..d {
            let (lo, hi) = (domain.lo[i], domain.hi[i]);
            match kind {
                Normalization::None => {}
                Normalization::Zscore => {
                    shift[i] = 0.5 * (lo + hi);
                    scale[i] = 12f64.sqrt() / (hi - lo);
                }
                Normalization::Minmax => {
                    shift[i] = 0.5 * (lo + hi);
                    scale[i] = 2.0 / (hi - lo);
                }
            }
        }
        (shift, scale)
    }

    /// Normaliser for a batch: one (kind) per member.
    pub fn new(kinds: &[Normalization], domain: &Domain, opts: TensorOpts) -> Self {
        let d = domain.dim() as i64;
        let (mut sh, mut sc) = (Vec::new(), Vec::new());
        for &k in kinds {
            let (a, b) = Self::coefficients(k, domain);
            sh.extend(a);
            sc.extend(b);
        }
        Normalizer { shift: opts.column(&sh).view([-1, 1, d]), scale: opts.column(&sc).view([-1, 1, d]) }
    }

    /// x_n = (x - shift) * scale. x: [E, N, d].
    pub fn apply(&self, x: &Tensor) -> Tensor {
        (x - &self.shift) * &self.scale
    }

    pub fn to_kind(&self, kind: tch::Kind) -> Normalizer {
        Normalizer { shift: self.shift.to_kind(kind), scale: self.scale.to_kind(kind) }
    }
}
