//! `regression1d`: plain least-squares fit of the two-scale function (paper 003's baseline:
//! the network can represent the solution; the difficulty of the PINNs comes from the
//! differential operator, not from approximation).
//!
//! # Reference
//! Paper 003, eq. (30) and section 4.2.

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::multiscale::{validate_eps, TwoScale};
use super::{coord, Domain, Problem, Reads, Region, TensorOpts, TermSpec};
use crate::validation::Invalid;
use crate::model::streams::{StreamLayout, Streams};

pub const TERMS: &[TermSpec] =
    &[TermSpec { name: "data", region: Region::Interior, default_points: 100, pde: false, reads: Reads::Value }];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Regression1dConfig {
    /// Scale of the oscillation; 1/eps must be an integer (the exact solution vanishes at
    /// x = 0 and x = 1).
    pub eps: f64,
}

impl Regression1dConfig {
    pub fn validate(&self) -> Vec<Invalid> {
        validate_eps(self.eps, "problem.eps")
    }
}

pub struct Regression1d {
    sol: TwoScale,
}

impl Regression1d {
    pub fn new(members: &[Regression1dConfig], opts: TensorOpts) -> Self {
        let eps: Vec<f64> = members.iter().map(|c| c.eps).collect();
        let ones = vec![1.0; members.len()];
        let zeros = vec![0.0; members.len()];
        Regression1d { sol: TwoScale { eps: opts.column(&eps), mean: opts.column(&ones), amp: opts.column(&zeros) } }
    }
}

impl Problem for Regression1d {
    fn domain(&self) -> Domain {
        Domain { lo: vec![0.0], hi: vec![1.0], time_dependent: false }
    }

    fn terms(&self) -> &'static [TermSpec] {
        TERMS
    }

    fn layout(&self) -> StreamLayout {
        StreamLayout::value(1)
    }

    fn residual(&self, term: &str, x: &Tensor, u: &Streams) -> Tensor {
        match term {
            "data" => u.u() - self.sol.u(&coord(x, 0)),
            other => panic!("regression1d has no term {other}"),
        }
    }

    fn exact(&self, x: &Tensor) -> Tensor {
        self.sol.u(&coord(x, 0))
    }

    fn eps(&self) -> Option<Tensor> {
        Some(self.sol.eps.shallow_clone())
    }
}
