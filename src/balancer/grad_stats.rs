//! `grad_stats`: learning-rate annealing from gradient statistics.
//!
//! Every `every` steps (default 10), for each term i other than the reference term r (the PDE
//! residual by default), over the network's weight matrices W_1..W_L (biases excluded):
//!
//!   lambda_hat_i = max_l max |grad_{W_l} L_r| / ( mean_l mean |grad_{W_l} (lambda_i L_i)| + 1e-10 )
//!   lambda_i    <- beta lambda_i + (1 - beta) lambda_hat_i          (beta = 0.9)
//!
//! with lambda_i the current weight (so the denominator is the gradient of the weighted term,
//! as in the paper and seed 001). The reference term keeps its `loss.weights` value (default 1);
//! the other weights start from `loss.weights` (default 1, as in seed 001). A member whose
//! statistic is not finite keeps its weight (shared EMA guard).
//!
//! Note the fixed point: with lambda_hat_i = c_i / lambda_i the EMA settles at
//! lambda_i = sqrt(c_i), c_i = max|grad L_r| / mean|grad L_i|, not at c_i.
//!
//! Cost per update: one reverse pass per term (T passes) through the step's forward graph.
//!
//! # Reference
//! S. Wang, Y. Teng, P. Perdikaris, "Understanding and mitigating gradient flow pathologies in
//! physics-informed neural networks", SIAM J. Sci. Comput. 43(5) (2021) A3055-A3081,
//! Algorithm 1; seed 001 (every 10 steps, beta 0.9, the 1e-10 guard); Modulus "learning rate
//! annealing", eq. (71)-(73) (seed 002).

use serde::{Deserialize, Serialize};
use tch::{TchError, Tensor};

use super::update::{ema, Interval};
use super::{weight_gradients, BalanceInputs, Balancer, BuildContext, Weights};
use crate::checkpoint::{CheckpointError, StateDict};
use crate::validation::Invalid;

/// Added to the denominator (seed 001).
const DENOMINATOR_GUARD: f64 = 1e-10;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GradStatsConfig {
    /// Update every this many steps (seed 001: 10).
    pub every: u64,
    /// EMA coefficient (seed 001: 0.9).
    pub beta: f64,
    /// The term whose gradient maximum is the numerator (default: the problem's PDE residual
    /// term, else its first term).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

impl Default for GradStatsConfig {
    fn default() -> Self {
        GradStatsConfig { every: 10, beta: 0.9, reference: None }
    }
}

impl GradStatsConfig {
    pub fn validate(&self, terms: &[&str]) -> Vec<Invalid> {
        let mut out = Vec::new();
        if self.every == 0 {
            out.push(Invalid::new("balancer.every", "must be at least 1"));
        }
        if !(0.0..1.0).contains(&self.beta) {
            out.push(Invalid::new("balancer.beta", "must be in [0, 1)"));
        }
        if let Some(r) = &self.reference {
            if !terms.contains(&r.as_str()) {
                out.push(Invalid::new("balancer.reference", format!("`{r}` is not a loss term; the terms are: {}", terms.join(", "))));
            }
        }
        out
    }
}

pub struct GradStats {
    interval: Interval,
    beta: f64,
    reference: usize,
    weights: Weights,
}

impl GradStats {
    pub fn new(c: &GradStatsConfig, ctx: &BuildContext<'_>) -> Self {
        let reference = match &c.reference {
            Some(r) => ctx.terms.iter().position(|t| t.name == r).expect("validated reference term"),
            None => ctx.terms.iter().position(|t| t.pde).unwrap_or(0),
        };
        GradStats { interval: Interval::new(c.every), beta: c.beta, reference, weights: Weights::from_fixed(ctx.terms, ctx.fixed, ctx.opts) }
    }
}

/// max over layers of max |g| per member, [E].
fn max_abs(grads: &[Tensor]) -> Result<Tensor, TchError> {
    let per_layer: Vec<Tensor> = grads.iter().map(|g| g.abs().f_amax(&[1i64, 2][..], false)).collect::<Result<_, _>>()?;
    per_layer[1..].iter().try_fold(per_layer[0].shallow_clone(), |acc, m| acc.f_maximum(m))
}

/// mean over layers of mean |g| per member, [E].
fn mean_abs(grads: &[Tensor]) -> Result<Tensor, TchError> {
    let per_layer: Vec<Tensor> = grads.iter().map(|g| g.abs().f_mean_dim(&[1i64, 2][..], false, g.kind())).collect::<Result<_, _>>()?;
    Tensor::f_stack(&per_layer, 0)?.f_mean_dim(&[0i64][..], false, per_layer[0].kind())
}

impl Balancer for GradStats {
    fn update(&mut self, inputs: &BalanceInputs<'_>) -> Result<(), TchError> {
        if !self.interval.due(inputs.step) {
            return Ok(());
        }
        let w = |loss: &Tensor| inputs.param_grads(loss).map(weight_gradients);
        let numerator = max_abs(&w(inputs.loss(&self.weights.terms[self.reference]))?)?;
        for i in (0..self.weights.terms.len()).filter(|&i| i != self.reference) {
            let lambda = &self.weights.values[i];
            let weighted = inputs.loss(&self.weights.terms[i]) * lambda;
            let denominator = mean_abs(&w(&weighted)?)? + DENOMINATOR_GUARD;
            let target = &numerator / denominator;
            self.weights.values[i] = ema(lambda, &target, self.beta)?;
        }
        Ok(())
    }

    fn weights(&self) -> &Weights {
        &self.weights
    }

    fn save_state(&self, d: &mut StateDict) -> Result<(), CheckpointError> {
        let GradStats { interval: _, beta: _, reference: _, weights } = self;
        weights.save(d, "weights")
    }

    fn restore_state(&mut self, d: &StateDict) -> Result<(), CheckpointError> {
        let GradStats { interval: _, beta: _, reference: _, weights } = self;
        weights.restore(d, "weights")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::testing::{close, opts64, table, Linear, TERMS};

    /// Independent f64 arithmetic: max_l max|C_r| / (mean_l mean|lambda C_i| + 1e-10), then
    /// lambda <- 0.9 lambda + 0.1 hat, every 2 steps, 5 steps.
    fn expected(coef: &[[Vec<f64>; 2]], fixed: &[Vec<f64>], steps: u64) -> Vec<Vec<Vec<f64>>> {
        let mut lam: Vec<Vec<f64>> = (0..3).map(|t| (0..2).map(|e| fixed[e][t]).collect()).collect();
        let mut out = Vec::new();
        for step in 0..steps {
            if step % 2 == 0 {
                for e in 0..2 {
                    let sl = |v: &Vec<f64>| v[2 * e..2 * e + 2].to_vec();
                    let maxr = coef[0].iter().flat_map(sl).fold(0.0f64, |a, x| a.max(x.abs()));
                    for t in 1..3 {
                        let means: Vec<f64> = coef[t].iter().map(|c| sl(c).iter().map(|x| (lam[t][e] * x).abs()).sum::<f64>() / 2.0).collect();
                        let mean = (means[0] + means[1]) / 2.0;
                        let hat = maxr / (mean + 1e-10);
                        lam[t][e] = 0.9 * lam[t][e] + 0.1 * hat;
                    }
                }
            }
            out.push(lam.clone());
        }
        out
    }

    #[test]
    fn annealing_weights_match_hand_arithmetic() {
        let net = Linear::new();
        let fixed = vec![vec![1.0, 1.0, 1.0], vec![1.0, 2.0, 0.5]];
        let ctx = BuildContext { terms: TERMS, fixed: &fixed, seeds: &[0, 1], opts: opts64() };
        let mut b = GradStats::new(&GradStatsConfig { every: 2, ..Default::default() }, &ctx);
        let want = expected(&net.coef, &fixed, 5);
        for step in 0..5u64 {
            let l = net.losses();
            b.update(&BalanceInputs { step, losses: &l, param_grads: Some(&net.grads()), ntk: None }).unwrap();
            close(&table(&b), &want[step as usize], 1e-13);
        }
        // Spot check of the first update of member 0's boundary weight, by hand:
        // max|C_res| = 3; means 0.15 and 0.15 -> 0.15; hat = 3 / (0.15 + 1e-10) = 20;
        // lambda = 0.9 + 0.1 * 20 = 2.9.
        assert!((want[0][1][0] - 2.9).abs() < 1e-8);
        // The residual weight never moves.
        assert_eq!(table(&b)[0], vec![1.0, 1.0]);
    }

    #[test]
    fn reference_term_can_be_chosen() {
        let net = Linear::new();
        let fixed = vec![vec![1.0; 3], vec![1.0; 3]];
        let ctx = BuildContext { terms: TERMS, fixed: &fixed, seeds: &[0, 1], opts: opts64() };
        let c = GradStatsConfig { every: 1, beta: 0.0, reference: Some("initial".into()) };
        let mut b = GradStats::new(&c, &ctx);
        let l = net.losses();
        b.update(&BalanceInputs { step: 0, losses: &l, param_grads: Some(&net.grads()), ntk: None }).unwrap();
        let w = table(&b);
        assert_eq!(w[2], vec![1.0, 1.0]);
        // Member 0: max|C_initial| = 3, residual means (2 + 1.25) / 2 = 1.625 -> 3 / 1.625.
        assert!((w[0][0] - 3.0 / (1.625 + 1e-10)).abs() < 1e-12);
        assert!(GradStatsConfig { reference: Some("nope".into()), ..Default::default() }.validate(&["residual"]).len() == 1);
    }
}
