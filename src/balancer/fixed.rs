//! `none`: fixed weights from `loss.weights` (default 1), never updated.

use tch::{TchError, Tensor};

use super::{BalanceInputs, Balancer, Weights};
use crate::problem::TensorOpts;

pub struct Fixed {
    weights: Weights,
}

impl Fixed {
    /// `fixed[e][t]`: member e's weight of term t.
    pub fn new(terms: &[&str], fixed: &[Vec<f64>], opts: TensorOpts) -> Self {
        let values = (0..terms.len())
            .map(|t| {
                let col: Vec<f64> = fixed.iter().map(|m| m[t]).collect();
                Tensor::from_slice(&col).to_kind(opts.kind).to_device(opts.device)
            })
            .collect();
        Fixed { weights: Weights { terms: terms.iter().map(|s| s.to_string()).collect(), values } }
    }
}

impl Balancer for Fixed {
    fn update(&mut self, _inputs: &BalanceInputs<'_>) -> Result<(), TchError> {
        Ok(())
    }

    fn weights(&self) -> &Weights {
        &self.weights
    }
}
