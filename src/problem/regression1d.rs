//! `regression1d`: plain least-squares fit of the two-scale function (paper 003's baseline:
//! the network can represent the solution; the difficulty of the PINNs comes from the
//! differential operator, not from approximation).
//!
//! # Reference
//! Paper 003, eq. (30) and section 4.2.

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::multiscale::{self, validate_eps, TwoScale};
use super::{coord, Domain, Equation, TensorOpts, TermSpec};
use crate::model::streams::StreamLayout;
use crate::validation::Invalid;

pub const TERMS: &[TermSpec] = &[TermSpec::data(100)];

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

/// No operator: the one term compares u with the two-scale function.
impl Equation for Regression1d {
    fn domain(&self) -> Domain {
        multiscale::domain()
    }

    fn terms(&self) -> &[TermSpec] {
        TERMS
    }

    fn layout(&self) -> StreamLayout {
        StreamLayout::value(1)
    }

    fn solution(&self, x: &Tensor) -> Tensor {
        self.sol.u(&coord(x, 0))
    }

    fn forcing(&self, _x: &Tensor) -> Option<Tensor> {
        None
    }

    fn eps(&self) -> Option<Tensor> {
        Some(self.sol.eps.shallow_clone())
    }
}
