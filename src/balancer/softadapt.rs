//! `softadapt`: weights from a softmax of each term's recent rate of change.
//!
//! Every `every` steps (default 1), with L_i(t') the loss at the previous update, n terms and
//! f_i = `loss.weights` (constant multipliers, default 1):
//!
//!   s_i = L_i(t) / (L_i(t') + eps)
//!   lambda_i = f_i * n * exp(beta s_i) / sum_j exp(beta s_j)
//!
//! computed as a max-shifted softmax (no overflow). At the first update there is no previous
//! loss and lambda_i = f_i. A member whose rates are not finite keeps its weights.
//!
//! This is Modulus's form with its defaults (eps 1e-8, updated every step, beta = 1 implicit,
//! weights scaled to sum to n): Heydari et al.'s original uses the loss difference
//! L_i(t) - L_i(t') as the rate, which depends on each term's scale; the ratio does not, which
//! matters here where the residual loss can be eps^-2 times the boundary loss. A term whose
//! loss is going up (ratio > 1) gets more weight; `beta` sharpens (large) or flattens (small)
//! the contrast. The weights sum to n (times f).
//!
//! Cost per update: none beyond the losses already computed.
//!
//! # Reference
//! A. A. Heydari, C. A. Thompson, A. Mehmood, "SoftAdapt: techniques for adaptive loss weighting
//! of neural networks with multi-part loss functions", arXiv:1912.12355 (2019), section 3;
//! NVIDIA Modulus user guide, "SoftAdapt", eq. (75)-(76) (seed 002).

use serde::{Deserialize, Serialize};
use tch::{TchError, Tensor};

use super::update::{ema, Interval};
use super::{member_column, BalanceInputs, Balancer, BuildContext, Weights};
use crate::checkpoint::{CheckpointError, StateDict};
use crate::validation::Invalid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SoftAdaptConfig {
    /// Update every this many steps (Modulus: every step).
    pub every: u64,
    /// Softmax inverse temperature (Modulus: 1).
    pub beta: f64,
    /// Added to the previous loss against division by zero (Modulus: 1e-8).
    pub eps: f64,
}

impl Default for SoftAdaptConfig {
    fn default() -> Self {
        SoftAdaptConfig { every: 1, beta: 1.0, eps: 1e-8 }
    }
}

impl SoftAdaptConfig {
    pub fn validate(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        if self.every == 0 {
            out.push(Invalid::new("balancer.every", "must be at least 1"));
        }
        if !self.beta.is_finite() {
            out.push(Invalid::new("balancer.beta", "must be a finite number"));
        }
        if !(self.eps >= 0.0 && self.eps.is_finite()) {
            out.push(Invalid::new("balancer.eps", "must be a finite number >= 0"));
        }
        out
    }
}

/// n * softmax over terms of `logits`, per member.
///
/// # Shapes
/// `logits`: T tensors [E]; returns T tensors [E].
pub(crate) fn scaled_softmax(logits: &[Tensor]) -> Result<Vec<Tensor>, TchError> {
    let z = Tensor::f_stack(logits, 0)?; // [T, E]
    let p = z.f_softmax(0, z.kind())? * logits.len() as f64;
    Ok(p.unbind(0))
}

pub struct SoftAdapt {
    interval: Interval,
    beta: f64,
    eps: f64,
    fixed: Vec<Tensor>,
    previous: Option<Vec<Tensor>>,
    weights: Weights,
}

impl SoftAdapt {
    pub fn new(c: &SoftAdaptConfig, ctx: &BuildContext<'_>) -> Self {
        SoftAdapt {
            interval: Interval::new(c.every),
            beta: c.beta,
            eps: c.eps,
            fixed: (0..ctx.terms.len()).map(|t| member_column(ctx.fixed, t, ctx.opts)).collect(),
            previous: None,
            weights: Weights::from_fixed(ctx.terms, ctx.fixed, ctx.opts),
        }
    }
}

impl Balancer for SoftAdapt {
    fn update(&mut self, inputs: &BalanceInputs<'_>) -> Result<(), TchError> {
        if !self.interval.due(inputs.step) {
            return Ok(());
        }
        let now: Vec<Tensor> = self.weights.terms.iter().map(|t| inputs.loss(t).detach()).collect();
        if let Some(prev) = &self.previous {
            let logits: Vec<Tensor> = now.iter().zip(prev).map(|(l, p)| l / (p + self.eps) * self.beta).collect();
            let p = scaled_softmax(&logits)?;
            for ((w, f), p) in self.weights.values.iter_mut().zip(&self.fixed).zip(p) {
                *w = ema(w, &(p * f), 0.0)?;
            }
        }
        self.previous = Some(now);
        Ok(())
    }

    fn weights(&self) -> &Weights {
        &self.weights
    }

    fn save_state(&self, d: &mut StateDict) -> Result<(), CheckpointError> {
        let SoftAdapt { interval: _, beta: _, eps: _, fixed: _, previous, weights } = self;
        super::save_optional(d, "previous", previous.as_deref())?;
        weights.save(d, "weights")
    }

    fn restore_state(&mut self, d: &StateDict) -> Result<(), CheckpointError> {
        let SoftAdapt { interval: _, beta: _, eps: _, fixed: _, previous, weights } = self;
        *previous = super::restore_optional(d, "previous", weights.values.len(), &weights.values[0])?;
        weights.restore(d, "weights")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::testing::{close, losses, opts64, table, TERMS};

    /// Independent f64 arithmetic of n f_i softmax(beta L_i(t) / (L_i(t-K) + eps)).
    fn by_hand(now: &[f64], prev: &[f64], f: &[f64], beta: f64, eps: f64) -> Vec<f64> {
        let z: Vec<f64> = now.iter().zip(prev).map(|(l, p)| beta * l / (p + eps)).collect();
        let m = z.iter().cloned().fold(f64::MIN, f64::max);
        let s: f64 = z.iter().map(|v| (v - m).exp()).sum();
        z.iter().zip(f).map(|(v, f)| f * 3.0 * (v - m).exp() / s).collect()
    }

    #[test]
    fn softmax_of_loss_ratios_by_hand() {
        // seq[step][t][e]: three terms, two members; member 1 has a loss that starts at 0 and
        // a weight 2 on the boundary.
        let seq: Vec<[[f64; 2]; 3]> = vec![
            [[10.0, 4.0], [1.0, 1.0], [0.5, 0.0]],
            [[8.0, 4.0], [1.2, 0.5], [0.5, 0.0]],
            [[7.0, 2.0], [1.1, 0.6], [0.25, 1e-3]],
            [[6.0, 1.0], [1.0, 0.7], [0.2, 2e-3]],
            [[5.0, 1.0], [0.2, 0.1], [0.1, 1e-3]],
        ];
        let fixed = vec![vec![1.0, 1.0, 1.0], vec![1.0, 2.0, 1.0]];
        let ctx = BuildContext { terms: TERMS, fixed: &fixed, seeds: &[0, 1], opts: opts64() };
        let (beta, eps) = (0.7, 1e-8);
        let mut b = SoftAdapt::new(&SoftAdaptConfig { every: 2, beta, eps }, &ctx);
        let mut want: Vec<Vec<f64>> = (0..3).map(|t| (0..2).map(|e| fixed[e][t]).collect()).collect();
        let mut prev: Option<usize> = None;
        let mut at_step_2 = Vec::new();
        for (step, v) in seq.iter().enumerate() {
            let l = losses(&[&v[0], &v[1], &v[2]]);
            b.update(&BalanceInputs { step: step as u64, losses: &l, param_grads: None, ntk: None }).unwrap();
            if step % 2 == 0 {
                if let Some(p) = prev {
                    for e in 0..2 {
                        let now: Vec<f64> = (0..3).map(|t| v[t][e]).collect();
                        let before: Vec<f64> = (0..3).map(|t| seq[p][t][e]).collect();
                        let w = by_hand(&now, &before, &fixed[e], beta, eps);
                        for t in 0..3 {
                            want[t][e] = w[t];
                        }
                    }
                }
                prev = Some(step);
            }
            close(&table(&b), &want, 1e-12);
            if step == 2 {
                at_step_2 = table(&b);
            }
        }
        // Step 2, member 0, by hand (python: z = [0.49, 0.77, 0.35];
        // [3 * exp(v) / sum(exp(z)) for v in z]):
        let w = by_hand(&[7.0, 1.1, 0.25], &[10.0, 1.0, 0.5], &[1.0; 3], 0.7, 0.0);
        close(&[w], &[vec![0.9397059456893712, 1.2433529515723514, 0.8169411027382777]], 1e-14);
        assert!((at_step_2[0][0] - 0.9397059456893712).abs() < 1e-7, "eps = 1e-8 hardly matters");
        // Member 1 at step 2: the third loss went from 0 to 1e-3 (ratio 1e5): it takes all.
        assert!((at_step_2[2][1] - 3.0).abs() < 1e-12 && at_step_2[0][1] < 1e-300);
    }
}
