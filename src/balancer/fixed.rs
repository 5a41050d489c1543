//! `none` (and `eps_rescale`): fixed weights from `loss.weights` (default 1), never updated.
//! `eps_rescale` differs only in the residual, which the trainer multiplies by eps.

use tch::TchError;

use super::{BalanceInputs, Balancer, BuildContext, Weights};
use crate::checkpoint::{CheckpointError, StateDict};

pub struct Fixed {
    weights: Weights,
}

impl Fixed {
    pub fn new(ctx: &BuildContext<'_>) -> Self {
        Fixed { weights: Weights::from_fixed(ctx.terms, ctx.fixed, ctx.opts) }
    }
}

impl Balancer for Fixed {
    fn update(&mut self, _inputs: &BalanceInputs<'_>) -> Result<(), TchError> {
        Ok(())
    }

    fn weights(&self) -> &Weights {
        &self.weights
    }

    fn save_state(&self, d: &mut StateDict) -> Result<(), CheckpointError> {
        let Fixed { weights } = self;
        weights.save(d, "weights")
    }

    fn restore_state(&mut self, d: &StateDict) -> Result<(), CheckpointError> {
        let Fixed { weights } = self;
        weights.restore(d, "weights")
    }
}
