//! `darcy1d`: -(a(x/eps) u')' = f on (0, 1), u(0) = u(1) = 0.
//!
//! Expanded, the residual is -a(x/eps) u'' - (1/eps) a'(x/eps) u' - f. The 1/eps factor in
//! front of u' is what makes the residual block of the NTK grow like eps^-2 (paper 003,
//! Theorem 3.2): the per-point gradient of the residual with respect to the parameters
//! carries it.
//!
//! # Reference
//! Paper 003, eqs. (3) and (15); the residual expansion of section 3.1.

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::multiscale::{self, validate_eps, Coefficient, TwoScale};
use super::{coord, Domain, Equation, TensorOpts, TermSpec};
use crate::model::streams::{StreamLayout, Streams};
use crate::validation::Invalid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Darcy1dConfig {
    /// Scale of the oscillation; 1/eps must be an integer (the exact solution vanishes at
    /// x = 0 and x = 1).
    pub eps: f64,
    #[serde(default)]
    pub coefficient: Coefficient,
}

impl Darcy1dConfig {
    pub fn validate(&self) -> Vec<Invalid> {
        let mut out = validate_eps(self.eps, "problem.eps");
        out.extend(self.coefficient.validate("problem.coefficient"));
        out
    }
}

pub struct Darcy1d {
    sol: TwoScale,
}

impl Darcy1d {
    pub fn new(members: &[Darcy1dConfig], opts: TensorOpts) -> Self {
        let col = |f: &dyn Fn(&Darcy1dConfig) -> f64| opts.column(&members.iter().map(f).collect::<Vec<_>>());
        Darcy1d {
            sol: TwoScale {
                eps: col(&|c| c.eps),
                mean: col(&|c| c.coefficient.mean),
                amp: col(&|c| c.coefficient.amplitude),
            },
        }
    }
}

impl Equation for Darcy1d {
    fn domain(&self) -> Domain {
        multiscale::domain()
    }

    fn terms(&self) -> &[TermSpec] {
        multiscale::TERMS
    }

    fn layout(&self) -> StreamLayout {
        StreamLayout::second_order(1)
    }

    fn solution(&self, x: &Tensor) -> Tensor {
        self.sol.u(&coord(x, 0))
    }

    /// -(a(x/eps) u')' = -a(x/eps) u'' - (1/eps) a'(x/eps) u'.
    fn operator(&self, x: &Tensor, u: &Streams) -> Tensor {
        let (s, x) = (&self.sol, coord(x, 0));
        -(s.a(&x) * u.dd(0, 0)) - s.da(&x) * u.d(0) / &s.eps
    }

    /// f = -a(x/eps) u_exact'' - (1/eps) a'(x/eps) u_exact', so the exact solution has zero
    /// residual.
    fn forcing(&self, x: &Tensor) -> Option<Tensor> {
        let (s, x) = (&self.sol, coord(x, 0));
        Some(-(s.a(&x) * s.ddu(&x)) - s.da(&x) * s.du(&x) / &s.eps)
    }

    fn eps(&self) -> Option<Tensor> {
        Some(self.sol.eps.shallow_clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::testing::{exact_streams_1d, opts64};
    use crate::problem::Problem;

    #[test]
    fn exact_solution_has_zero_residual_and_boundary_values() {
        let cfgs: Vec<Darcy1dConfig> = [0.5, 0.125, 1.0 / 64.0]
            .iter()
            .map(|&eps| Darcy1dConfig { eps, coefficient: Coefficient::default() })
            .collect();
        let p = Darcy1d::new(&cfgs, opts64());
        let x = Tensor::rand([3, 200, 1], (tch::Kind::Double, tch::Device::Cpu));
        let u = exact_streams_1d(&p.sol, &x);
        let r = p.residual("residual", &x, &u);
        // Residual terms are O(1/eps^2) in size; compare relative to that scale.
        let scale = p.forcing(&x).unwrap().abs().max().double_value(&[]);
        assert!(r.abs().max().double_value(&[]) < 1e-12 * scale, "residual of exact solution not ~0");
        let xb = Tensor::from_slice(&[0.0f64, 1.0, 0.0, 1.0, 0.0, 1.0]).view([3, 2, 1]);
        let ub = exact_streams_1d(&p.sol, &xb);
        let rb = p.residual("boundary", &xb, &ub);
        assert!(rb.abs().max().double_value(&[]) < 1e-12);
        // And the exact solution itself vanishes on the boundary.
        assert!(p.exact(&xb).abs().max().double_value(&[]) < 1e-12);
    }
}
