//! `poisson1d`: -u'' = f on (0, 1), u(0) = u(1) = 0, with the same two-scale exact solution as
//! `darcy1d`. The contrast case of paper 003: the multiscale character sits in f only, so the
//! residual NTK block has no explicit 1/eps factor.
//!
//! # Reference
//! Paper 003, eq. (26) and section 4.2 (Table 1).

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::multiscale::{self, validate_eps, TwoScale};
use super::{coord, Domain, Equation, TensorOpts, TermSpec};
use crate::model::streams::{StreamLayout, Streams};
use crate::validation::Invalid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Poisson1dConfig {
    /// Scale of the oscillation; 1/eps must be an integer (the exact solution vanishes at
    /// x = 0 and x = 1).
    pub eps: f64,
}

impl Poisson1dConfig {
    pub fn validate(&self) -> Vec<Invalid> {
        validate_eps(self.eps, "problem.eps")
    }
}

pub struct Poisson1d {
    sol: TwoScale,
}

impl Poisson1d {
    pub fn new(members: &[Poisson1dConfig], opts: TensorOpts) -> Self {
        let eps: Vec<f64> = members.iter().map(|c| c.eps).collect();
        let ones = vec![1.0; members.len()];
        let zeros = vec![0.0; members.len()];
        Poisson1d { sol: TwoScale { eps: opts.column(&eps), mean: opts.column(&ones), amp: opts.column(&zeros) } }
    }
}

impl Equation for Poisson1d {
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

    fn operator(&self, _x: &Tensor, u: &Streams) -> Tensor {
        -u.dd(0, 0)
    }

    /// f = -u_exact''.
    fn forcing(&self, x: &Tensor) -> Option<Tensor> {
        Some(-self.sol.ddu(&coord(x, 0)))
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
    fn exact_solution_has_zero_residual() {
        let cfgs: Vec<Poisson1dConfig> =
            [0.5, 1.0 / 32.0].iter().map(|&eps| Poisson1dConfig { eps }).collect();
        let p = Poisson1d::new(&cfgs, opts64());
        let x = Tensor::rand([2, 100, 1], (tch::Kind::Double, tch::Device::Cpu));
        let u = exact_streams_1d(&p.sol, &x);
        let r = p.residual("residual", &x, &u);
        assert!(r.abs().max().double_value(&[]) < 1e-9);
        let xb = Tensor::from_slice(&[0.0f64, 1.0, 0.0, 1.0]).view([2, 2, 1]);
        assert!(p.residual("boundary", &xb, &exact_streams_1d(&p.sol, &xb)).abs().max().double_value(&[]) < 1e-12);
    }
}
