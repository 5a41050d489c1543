//! Fourier feature embedding: the first layer sees gamma(x) = [cos(2 pi B x), sin(2 pi B x)]
//! instead of x, with a fixed random B [m, d], B_kj ~ N(0, sigma^2), drawn from the job seed.
//!
//! Why: a tanh MLP learns low frequencies first (spectral bias); the embedding hands it
//! sinusoids of frequencies ~ sigma, which is the remedy for multiscale solutions such as the
//! eps-periodic part of darcy1d. It is applied after input normalisation, so x here is the
//! normalised input x_n.
//!
//! Streams pass through the embedding exactly. With phi = 2 pi B x_n ([m]) and
//! dphi/dx_i = 2 pi B[:, i] s_i (s_i = dx_n/dx_i, the normalisation's scale; x_n is affine in
//! x, so phi has no second derivative):
//!   value   gamma    = [cos phi, sin phi]
//!   first   gamma_i  = [-sin phi dphi_i, cos phi dphi_i]
//!   second  gamma_ij = [-cos phi dphi_i dphi_j, -sin phi dphi_i dphi_j]
//!   third   gamma_ijk = [sin phi dphi_i dphi_j dphi_k, -cos phi dphi_i dphi_j dphi_k]
//! B is not trained, so no reverse pass goes through the embedding.
//!
//! # Reference
//! M. Tancik et al., "Fourier features let networks learn high frequency functions in low
//! dimensional domains", NeurIPS 2020 (gamma and B ~ N(0, sigma^2)); S. Wang, H. Wang,
//! P. Perdikaris, "On the eigenvector bias of Fourier feature networks", CMAME 384 (2021)
//! 113938 (Fourier features for multiscale PINNs).

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::validation::Invalid;
use crate::tensor::TensorOpts;
use crate::rng::{self, Purpose};

/// `model.fourier: {features: m, sigma: s}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FourierConfig {
    /// m: rows of B; the first layer gets 2 m inputs.
    pub features: usize,
    /// Standard deviation of the entries of B.
    pub sigma: f64,
}

impl FourierConfig {
    pub fn validate(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        if self.features == 0 {
            out.push(Invalid::new("model.fourier.features", "must be at least 1"));
        }
        if !(self.sigma.is_finite() && self.sigma > 0.0) {
            out.push(Invalid::new("model.fourier.sigma", format!("must be a positive number, got {}", self.sigma)));
        }
        out
    }
}

/// The fixed embedding of a batch.
///
/// # Shapes
/// `b`: [E, m, d].
pub struct FourierFeatures {
    pub b: Tensor,
}

impl FourierFeatures {
    /// Member k's B from its own stream (job seed, [`Purpose::Fourier`]), so that adding the
    /// embedding leaves every other random draw of the job unchanged.
    pub fn draw(members: &[(u64, &FourierConfig)], d: usize, opts: TensorOpts) -> FourierFeatures {
        let m = members[0].1.features;
        let mut all = Vec::with_capacity(members.len() * m * d);
        for (seed, cfg) in members {
            assert_eq!(cfg.features, m, "members of a batch share the number of features");
            let mut r = rng::stream(*seed, Purpose::Fourier, 0);
            all.extend(rng::normals(&mut r, m * d).into_iter().map(|z| z * cfg.sigma));
        }
        let b = Tensor::from_slice(&all).view([members.len() as i64, m as i64, d as i64]);
        FourierFeatures { b: b.to_kind(opts.kind).to_device(opts.device) }
    }

    /// phi = 2 pi x_n B^T: [E, N, m] from x_n [E, N, d].
    pub fn phase(&self, xn: &Tensor) -> Tensor {
        xn.matmul(&self.b.transpose(1, 2)) * (2.0 * std::f64::consts::PI)
    }

    /// dphi/dx_i = 2 pi B[:, i] s_i for every input i: [E, d, m] from the scale s [E, 1, d].
    pub fn phase_derivatives(&self, scale: &Tensor) -> Tensor {
        (&self.b * scale).transpose(1, 2) * (2.0 * std::f64::consts::PI)
    }

    /// gamma: [E, N, 2 m] from phi [E, N, m].
    pub fn value(phi: &Tensor) -> Tensor {
        Tensor::cat(&[phi.cos(), phi.sin()], -1)
    }

    /// gamma_i at points with phase phi [E, N, m], for dphi_i [E, 1, m]: [E, N, 2 m].
    pub fn first(phi: &Tensor, dphi_i: &Tensor) -> Tensor {
        Tensor::cat(&[-phi.sin() * dphi_i, phi.cos() * dphi_i], -1)
    }

    /// gamma_ij: [E, N, 2 m].
    pub fn second(phi: &Tensor, dphi_i: &Tensor, dphi_j: &Tensor) -> Tensor {
        let dd = dphi_i * dphi_j;
        Tensor::cat(&[-phi.cos() * &dd, -phi.sin() * dd], -1)
    }

    /// gamma_ijk = [sin phi dphi_i dphi_j dphi_k, -cos phi dphi_i dphi_j dphi_k]: [E, N, 2 m].
    pub fn third(phi: &Tensor, dphi_i: &Tensor, dphi_j: &Tensor, dphi_k: &Tensor) -> Tensor {
        let ddd = dphi_i * dphi_j * dphi_k;
        Tensor::cat(&[phi.sin() * &ddd, -phi.cos() * ddd], -1)
    }

    pub fn to_kind(&self, kind: tch::Kind) -> FourierFeatures {
        FourierFeatures { b: self.b.to_kind(kind) }
    }

    /// Member `e`'s B, [1, m, d].
    pub fn member(&self, e: i64) -> FourierFeatures {
        FourierFeatures { b: self.b.narrow(0, e, 1) }
    }
}
