//! Pieces shared by the 1-D multiscale problems of paper 003: the scale eps, the oscillatory
//! coefficient a(y) and the two-scale exact solution u(x) = sin(2 pi x) + eps sin(2 pi x / eps).
//!
//! # Reference
//! Paper 003 (PINNs for elliptic equations with oscillatory coefficients), eq. (3) and the
//! numerical examples of section 4; DESIGN.md "Problems".

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::{Domain, TermSpec};
use crate::validation::Invalid;

/// The terms of the 1-D PINNs of paper 003 (`darcy1d`, `poisson1d`): the PDE at 100 interior
/// points and u(0) = u(1) = 0.
pub const TERMS: &[TermSpec] = &[TermSpec::residual(100), TermSpec::boundary(2)];

/// (0, 1).
pub fn domain() -> Domain {
    Domain { lo: vec![0.0], hi: vec![1.0], time_dependent: false }
}

/// a(y) = mean + amplitude * sin(2 pi y): 1-periodic, coercive when mean > |amplitude|.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Coefficient {
    pub mean: f64,
    pub amplitude: f64,
}

impl Default for Coefficient {
    fn default() -> Self {
        Coefficient { mean: 2.0, amplitude: 1.0 }
    }
}

impl Coefficient {
    pub fn validate(&self, path: &str) -> Vec<Invalid> {
        let mut out = Vec::new();
        if !(self.mean.is_finite() && self.amplitude.is_finite()) || self.mean <= self.amplitude.abs() {
            out.push(Invalid::new(
                format!("{path}.mean"),
                format!(
                    "a(y) = mean + amplitude sin(2 pi y) must stay positive (coercive): need mean > |amplitude|, got mean {} and amplitude {}",
                    self.mean, self.amplitude
                ),
            ));
        }
        out
    }
}

/// Checks that eps > 0 and 1/eps is an integer.
pub fn validate_eps(eps: f64, path: &str) -> Vec<Invalid> {
    if !(eps.is_finite() && eps > 0.0) {
        return vec![Invalid::new(path, format!("eps must be a positive number, got {eps}"))];
    }
    if eps > 1.0 {
        return vec![Invalid::new(path, format!("eps must be at most 1, got {eps}"))];
    }
    let inv = 1.0 / eps;
    if (inv - inv.round()).abs() > 1e-9 * inv {
        return vec![Invalid::new(
            path,
            format!("1/eps must be an integer so the two-scale solution vanishes at x = 0 and 1; got eps = {eps} (1/eps = {inv})"),
        )];
    }
    Vec::new()
}

/// Per-member tensors of the two-scale solution and the coefficient.
///
/// # Shapes
/// `eps`, `mean`, `amp`: [E, 1]; point tensors x: [E, N].
pub struct TwoScale {
    pub eps: Tensor,
    pub mean: Tensor,
    pub amp: Tensor,
}

impl TwoScale {
    /// u(x) = sin(2 pi x) + eps sin(2 pi x / eps).
    pub fn u(&self, x: &Tensor) -> Tensor {
        (x * (2.0 * PI)).sin() + &self.eps * (x * (2.0 * PI) / &self.eps).sin()
    }

    /// u'(x) = 2 pi cos(2 pi x) + 2 pi cos(2 pi x / eps).
    pub fn du(&self, x: &Tensor) -> Tensor {
        ((x * (2.0 * PI)).cos() + (x * (2.0 * PI) / &self.eps).cos()) * (2.0 * PI)
    }

    /// u''(x) = -4 pi^2 sin(2 pi x) - (4 pi^2 / eps) sin(2 pi x / eps).
    pub fn ddu(&self, x: &Tensor) -> Tensor {
        ((x * (2.0 * PI)).sin() + (x * (2.0 * PI) / &self.eps).sin() / &self.eps) * (-4.0 * PI * PI)
    }

    /// a(x / eps).
    pub fn a(&self, x: &Tensor) -> Tensor {
        &self.mean + &self.amp * (x * (2.0 * PI) / &self.eps).sin()
    }

    /// a'(y) evaluated at y = x / eps (derivative with respect to y, not x).
    pub fn da(&self, x: &Tensor) -> Tensor {
        &self.amp * (2.0 * PI) * (x * (2.0 * PI) / &self.eps).cos()
    }
}
