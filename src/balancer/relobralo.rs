//! `relobralo`: relative loss balancing with random lookback.
//!
//! Every `every` steps (default 1), with n terms, L_i(0) the losses at the first update,
//! L_i(t') those at the previous update, T the temperature and f_i = `loss.weights` (constant
//! multipliers, default 1):
//!
//!   lambda_hat_i(t; t'') = n exp(L_i(t) / (T L_i(t'') + eps)) / sum_j exp(L_j(t) / (T L_j(t'') + eps))
//!   rho ~ Bernoulli(E[rho])                                  (one draw per member and update)
//!   lambda_i(t) = alpha (rho lambda_i(t') + (1 - rho) lambda_hat_i(t; 0)) + (1 - alpha) lambda_hat_i(t; t')
//!   weight_i = f_i lambda_i
//!
//! lambda starts at 1 (the first update only records L(0)). The softmaxes are max-shifted;
//! both EMA steps go through the shared helper, so a member whose ratios are not finite keeps
//! its weights. The Bernoulli draws come from the job's own stream
//! (`rng::stream(seed, Purpose::Balancer, 0)`, one uniform per update after the first), so a
//! job draws the same lookbacks alone or in any batch.
//!
//! Defaults alpha = 0.999, T = 0.1, E[rho] = 0.99 are those of Bischof & Kraus's reference
//! implementation, used for the PINN benchmarks of their paper; Modulus ships
//! 0.95 / 1.0 / 0.99, a shorter memory and flatter softmax tuned for its own examples. Chosen
//! here because this crate is about PINNs and the paper's values are the ones its results were
//! reported with; set `alpha: 0.95, temperature: 1.0` to get Modulus's behaviour.
//!
//! Cost per update: none beyond the losses, plus one random draw per member.
//!
//! # Reference
//! R. Bischof, M. Kraus, "Multi-objective loss balancing for physics-informed deep learning",
//! arXiv:2110.09813 (2021), section on ReLoBRaLo; NVIDIA Modulus user guide, "ReLoBRaLo",
//! eq. (77)-(79) (seed 002).

use serde::{Deserialize, Serialize};
use tch::{TchError, Tensor};

use super::softadapt::scaled_softmax;
use super::update::{ema, ema_per_member, Interval};
use super::{member_column, BalanceInputs, Balancer, BuildContext, Weights};
use crate::checkpoint::{CheckpointError, StateDict};
use crate::validation::Invalid;
use crate::rng::{self, JobRng, Purpose};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReLoBRaLoConfig {
    /// Update every this many steps (paper and Modulus: every step).
    pub every: u64,
    /// Weight of the history (lookback) against the ratio to the previous update.
    pub alpha: f64,
    /// Softmax temperature T: large values flatten the weights, 0 tends to argmax.
    pub temperature: f64,
    /// Expected value of the Bernoulli lookback variable rho: with probability 1 - rho the
    /// history is replaced by the ratios to the initial losses.
    pub rho: f64,
    /// Added to T L(t'') against division by zero (Modulus: 1e-8).
    pub eps: f64,
}

impl Default for ReLoBRaLoConfig {
    fn default() -> Self {
        ReLoBRaLoConfig { every: 1, alpha: 0.999, temperature: 0.1, rho: 0.99, eps: 1e-8 }
    }
}

impl ReLoBRaLoConfig {
    pub fn validate(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        if self.every == 0 {
            out.push(Invalid::new("balancer.every", "must be at least 1"));
        }
        if !(0.0..=1.0).contains(&self.alpha) {
            out.push(Invalid::new("balancer.alpha", "must be in [0, 1]"));
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            out.push(Invalid::new("balancer.temperature", "must be a positive number"));
        }
        if !(0.0..=1.0).contains(&self.rho) {
            out.push(Invalid::new("balancer.rho", "must be in [0, 1]"));
        }
        if !(self.eps >= 0.0 && self.eps.is_finite()) {
            out.push(Invalid::new("balancer.eps", "must be a finite number >= 0"));
        }
        out
    }
}

pub struct ReLoBRaLo {
    config: ReLoBRaLoConfig,
    interval: Interval,
    fixed: Vec<Tensor>,
    /// L(0) and L(t'), set at the first update.
    initial: Option<Vec<Tensor>>,
    previous: Vec<Tensor>,
    /// lambda per term, [E] each (the weights are f * lambda).
    lambda: Vec<Tensor>,
    rngs: Vec<JobRng>,
    weights: Weights,
}

impl ReLoBRaLo {
    pub fn new(c: &ReLoBRaLoConfig, ctx: &BuildContext<'_>) -> Self {
        let e = ctx.fixed.len();
        ReLoBRaLo {
            config: c.clone(),
            interval: Interval::new(c.every),
            fixed: (0..ctx.terms.len()).map(|t| member_column(ctx.fixed, t, ctx.opts)).collect(),
            initial: None,
            previous: Vec::new(),
            lambda: Weights::constant(ctx.terms, e, 1.0, ctx.opts).values,
            rngs: ctx.seeds.iter().map(|&s| rng::stream(s, Purpose::Balancer, 0)).collect(),
            weights: Weights::from_fixed(ctx.terms, ctx.fixed, ctx.opts),
        }
    }

    /// n softmax(L(t) / (T L(t'') + eps)) per member.
    fn ratios(&self, now: &[Tensor], then: &[Tensor]) -> Result<Vec<Tensor>, TchError> {
        let c = &self.config;
        let logits: Vec<Tensor> = now.iter().zip(then).map(|(l, p)| l / (p * c.temperature + c.eps)).collect();
        scaled_softmax(&logits)
    }
}

impl Balancer for ReLoBRaLo {
    fn update(&mut self, inputs: &BalanceInputs<'_>) -> Result<(), TchError> {
        if !self.interval.due(inputs.step) {
            return Ok(());
        }
        let now: Vec<Tensor> = self.weights.terms.iter().map(|t| inputs.loss(t).detach()).collect();
        let Some(initial) = &self.initial else {
            self.initial = Some(now.iter().map(|l| l.shallow_clone()).collect());
            self.previous = now;
            return Ok(());
        };
        let to_initial = self.ratios(&now, initial)?;
        let to_previous = self.ratios(&now, &self.previous)?;
        let rho = self.config.rho;
        let draws: Vec<f64> = self.rngs.iter_mut().map(|r| if rng::uniforms(r, 1)[0] < rho { 1.0 } else { 0.0 }).collect();
        let lam0 = &self.lambda[0];
        let rho = Tensor::from_slice(&draws).f_to_kind(lam0.kind())?.f_to_device(lam0.device())?;
        for t in 0..self.lambda.len() {
            let lookback = ema_per_member(&self.lambda[t], &to_initial[t], &rho)?;
            self.lambda[t] = ema(&lookback, &to_previous[t], self.config.alpha)?;
            self.weights.values[t] = &self.lambda[t] * &self.fixed[t];
        }
        self.previous = now;
        Ok(())
    }

    fn weights(&self) -> &Weights {
        &self.weights
    }

    fn save_state(&self, d: &mut StateDict) -> Result<(), CheckpointError> {
        let ReLoBRaLo { config: _, interval: _, fixed: _, initial, previous, lambda, rngs, weights } = self;
        super::save_optional(d, "initial", initial.as_deref())?;
        d.put_tensors("previous", previous)?;
        d.put_tensors("lambda", lambda)?;
        d.put_rngs("lookback", rngs);
        weights.save(d, "weights")
    }

    fn restore_state(&mut self, d: &StateDict) -> Result<(), CheckpointError> {
        let ReLoBRaLo { config: _, interval: _, fixed: _, initial, previous, lambda, rngs, weights } = self;
        let n = lambda.len();
        *initial = super::restore_optional(d, "initial", n, &lambda[0])?;
        *previous = super::restore_optional(d, "previous", n, &lambda[0])?.unwrap_or_default();
        *lambda = d.tensors_like("lambda", n, &lambda[0])?;
        *rngs = d.rngs("lookback", rngs.len())?;
        weights.restore(d, "weights")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::testing::{close, losses, opts64, table, TERMS};

    /// n softmax(L / (T L'' + eps)) in plain f64.
    fn hat(now: &[f64], then: &[f64], t: f64, eps: f64) -> Vec<f64> {
        let z: Vec<f64> = now.iter().zip(then).map(|(l, p)| l / (t * p + eps)).collect();
        let m = z.iter().cloned().fold(f64::MIN, f64::max);
        let s: f64 = z.iter().map(|v| (v - m).exp()).sum();
        z.iter().map(|v| 3.0 * (v - m).exp() / s).collect()
    }

    /// Independent arithmetic of eq. (77), with the Bernoulli draws taken from a fresh copy of
    /// each job's stream; rho = 0.5 so that both branches occur in a few steps.
    #[test]
    fn lookback_ema_by_hand_with_per_job_draws() {
        let seq: Vec<[[f64; 2]; 3]> = vec![
            [[10.0, 4.0], [1.0, 1.0], [0.5, 2.0]],
            [[8.0, 4.0], [1.2, 0.5], [0.5, 1.0]],
            [[7.0, 2.0], [1.1, 0.6], [0.25, 0.5]],
            [[6.0, 1.0], [1.0, 0.7], [0.2, 0.4]],
            [[5.0, 1.0], [0.2, 0.1], [0.1, 0.5]],
            [[4.0, 0.5], [0.3, 0.1], [0.1, 0.5]],
            [[3.0, 0.5], [0.3, 0.2], [0.05, 0.4]],
        ];
        let seeds = [11u64, 12];
        let fixed = vec![vec![1.0, 1.0, 1.0], vec![1.0, 2.0, 1.0]];
        let ctx = BuildContext { terms: TERMS, fixed: &fixed, seeds: &seeds, opts: opts64() };
        let c = ReLoBRaLoConfig { every: 1, alpha: 0.9, temperature: 0.5, rho: 0.5, eps: 1e-8 };
        let mut b = ReLoBRaLo::new(&c, &ctx);
        let mut rngs: Vec<JobRng> = seeds.iter().map(|&s| rng::stream(s, Purpose::Balancer, 0)).collect();
        let mut lam = vec![vec![1.0f64; 3]; 2]; // [e][t]
        let mut seen_rho = [false, false];
        for (step, v) in seq.iter().enumerate() {
            let l = losses(&[&v[0], &v[1], &v[2]]);
            b.update(&BalanceInputs { step: step as u64, losses: &l, param_grads: None, ntk: None }).unwrap();
            if step > 0 {
                for e in 0..2 {
                    let col = |s: usize| -> Vec<f64> { (0..3).map(|t| seq[s][t][e]).collect() };
                    let h0 = hat(&col(step), &col(0), c.temperature, c.eps);
                    let hp = hat(&col(step), &col(step - 1), c.temperature, c.eps);
                    let rho = if rng::uniforms(&mut rngs[e], 1)[0] < c.rho { 1.0 } else { 0.0 };
                    seen_rho[rho as usize] = true;
                    for t in 0..3 {
                        lam[e][t] = c.alpha * (rho * lam[e][t] + (1.0 - rho) * h0[t]) + (1.0 - c.alpha) * hp[t];
                    }
                }
            }
            let want: Vec<Vec<f64>> = (0..3).map(|t| (0..2).map(|e| fixed[e][t] * lam[e][t]).collect()).collect();
            close(&table(&b), &want, 1e-12);
        }
        assert!(seen_rho[0] && seen_rho[1], "both lookback branches exercised");
    }

    /// The paper's defaults (and a one-step check): L = (2, 1, 1) after (1, 1, 1) with
    /// T = 0.1: logits 20, 10, 10; the residual takes almost all of n = 3.
    #[test]
    fn defaults_and_a_hand_step() {
        let c = ReLoBRaLoConfig::default();
        assert_eq!((c.alpha, c.temperature, c.rho), (0.999, 0.1, 0.99));
        let h = hat(&[2.0, 1.0, 1.0], &[1.0, 1.0, 1.0], 0.1, 0.0);
        let e10 = (-10.0f64).exp();
        assert!((h[0] - 3.0 / (1.0 + 2.0 * e10)).abs() < 1e-15);
        assert!((h[1] - 3.0 * e10 / (1.0 + 2.0 * e10)).abs() < 1e-18);
    }
}
