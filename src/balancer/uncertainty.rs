//! `uncertainty`: homoscedastic task uncertainty with learned log-variances.
//!
//! One learned log-variance s_i = log sigma_i^2 per term and member, trained by the network's
//! Adam (same learning rate and schedule) through [`Balancer::extra_params`]; the loss is
//!
//!   L = sum_i 0.5 (exp(-s_i) f_i L_i + s_i)
//!
//! with f_i = `loss.weights` (constant multipliers, default 1), and the recorded weight of term
//! i is f_i 0.5 exp(-s_i). s_i starts at `init` (default 0, so weights start at 0.5 f_i: the
//! first steps are half as large as with `none`). At the optimum of s_i for a fixed L_i,
//! exp(s_i) = f_i L_i: each weighted term is driven towards 1/2, whatever its scale.
//!
//! Cost per update: none (T extra scalars per member in the optimiser).
//!
//! # Reference
//! A. Kendall, Y. Gal, R. Cipolla, "Multi-task learning using uncertainty to weigh losses for
//! scene geometry and semantics", CVPR 2018, section 3 (regression likelihood, trained as
//! log-variances s = log sigma^2);
//! NVIDIA Modulus user guide, "Homoscedastic task uncertainty", eq. (74) (seed 002).

use serde::{Deserialize, Serialize};
use tch::{TchError, Tensor};

use super::{member_column, BalanceInputs, Balancer, BuildContext, Weights};
use crate::checkpoint::{CheckpointError, StateDict};
use crate::validation::Invalid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UncertaintyConfig {
    /// Initial log-variance s_i(0) of every term (Kendall et al., Modulus: 0).
    pub init: f64,
}

impl Default for UncertaintyConfig {
    fn default() -> Self {
        UncertaintyConfig { init: 0.0 }
    }
}

impl UncertaintyConfig {
    pub fn validate(&self) -> Vec<Invalid> {
        if self.init.is_finite() {
            Vec::new()
        } else {
            vec![Invalid::new("balancer.init", "must be a finite number")]
        }
    }
}

pub struct Uncertainty {
    /// s_i, [E] each, leaves trained by the optimiser.
    log_var: Vec<Tensor>,
    fixed: Vec<Tensor>,
    weights: Weights,
}

impl Uncertainty {
    pub fn new(c: &UncertaintyConfig, ctx: &BuildContext<'_>) -> Self {
        let e = ctx.fixed.len();
        let log_var: Vec<Tensor> =
            Weights::constant(ctx.terms, e, c.init, ctx.opts).values.into_iter().map(|s| s.set_requires_grad(true)).collect();
        let fixed: Vec<Tensor> = (0..ctx.terms.len()).map(|t| member_column(ctx.fixed, t, ctx.opts)).collect();
        let mut weights = Weights::from_fixed(ctx.terms, ctx.fixed, ctx.opts);
        weights.values = Self::recorded(&log_var, &fixed);
        Uncertainty { log_var, fixed, weights }
    }

    /// f_i 0.5 exp(-s_i), detached.
    fn recorded(log_var: &[Tensor], fixed: &[Tensor]) -> Vec<Tensor> {
        log_var.iter().zip(fixed).map(|(s, f)| (s.detach().neg().exp() * 0.5) * f).collect()
    }
}

impl Balancer for Uncertainty {
    /// The log-variances move with the optimiser; refresh the recorded weights from them.
    fn update(&mut self, _inputs: &BalanceInputs<'_>) -> Result<(), TchError> {
        self.weights.values = Self::recorded(&self.log_var, &self.fixed);
        Ok(())
    }

    fn weights(&self) -> &Weights {
        &self.weights
    }

    fn total_loss(&self, losses: &[(String, Tensor)]) -> Tensor {
        losses
            .iter()
            .map(|(name, l)| {
                let i = self.weights.terms.iter().position(|t| t == name).expect("loss of a known term");
                let s = &self.log_var[i];
                (s.neg().exp() * &self.fixed[i] * l + s) * 0.5
            })
            .reduce(|a, b| a + b)
            .expect("at least one loss term")
    }

    fn extra_params(&self) -> Vec<Tensor> {
        self.log_var.iter().map(Tensor::shallow_clone).collect()
    }

    fn save_state(&self, d: &mut StateDict) -> Result<(), CheckpointError> {
        let Uncertainty { log_var, fixed: _, weights } = self;
        d.put_tensors("log_var", log_var)?;
        weights.save(d, "weights")
    }

    /// The log-variances are the optimiser's own tensors: copied into, not replaced.
    fn restore_state(&mut self, d: &StateDict) -> Result<(), CheckpointError> {
        let Uncertainty { log_var, fixed: _, weights } = self;
        for (i, s) in log_var.iter().enumerate() {
            d.copy_into(&format!("log_var/{i}"), s)?;
        }
        weights.restore(d, "weights")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::testing::{close, losses, opts64, table, TERMS};
    use crate::balancer::update::host;

    /// By hand, s = 0 for every term, f = (1, 1, 1) and (1, 2, 1), L = (4, 1, 0.5) and
    /// (2, 3, 0.25): weights 0.5 f; total 0.5 sum f_i L_i = 2.75 and 4.125; dL/ds_i =
    /// 0.5 (1 - exp(-s_i) f_i L_i) = -1.5, 0, 0.25 and -0.5, -2.5, 0.375.
    /// After s <- s + (ln 2, 0, -1): weights 0.25, 0.5, 0.5 e and 0.25, 1, 0.5 e.
    #[test]
    fn loss_gradient_and_recorded_weights_by_hand() {
        let fixed = vec![vec![1.0, 1.0, 1.0], vec![1.0, 2.0, 1.0]];
        let ctx = BuildContext { terms: TERMS, fixed: &fixed, seeds: &[0, 1], opts: opts64() };
        let mut b = Uncertainty::new(&UncertaintyConfig::default(), &ctx);
        close(&table(&b), &[vec![0.5, 0.5], vec![0.5, 1.0], vec![0.5, 0.5]], 0.0);
        let l = losses(&[&[4.0, 2.0], &[1.0, 3.0], &[0.5, 0.25]]);
        let total = b.total_loss(&l);
        close(&[host(&total)], &[vec![2.75, 4.125]], 1e-15);
        let s = b.extra_params();
        let g = Tensor::run_backward(&[total.sum(tch::Kind::Double)], &s.iter().collect::<Vec<_>>(), false, false);
        let g: Vec<Vec<f64>> = g.iter().map(host).collect();
        close(&g, &[vec![-1.5, -0.5], vec![0.0, -2.5], vec![0.25, 0.375]], 1e-15);
        // What the optimiser does: move s in place.
        tch::no_grad(|| {
            for (p, d) in s.iter().zip([2f64.ln(), 0.0, -1.0]) {
                let _ = p.shallow_clone().f_add_scalar_(d).unwrap();
            }
        });
        b.update(&BalanceInputs { step: 1, losses: &l, param_grads: None, ntk: None }).unwrap();
        let e = std::f64::consts::E;
        close(&table(&b), &[vec![0.25, 0.25], vec![0.5, 1.0], vec![0.5 * e, 0.5 * e]], 1e-15);
    }
}
