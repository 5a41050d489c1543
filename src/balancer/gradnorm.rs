//! `gradnorm`: weights that make the weighted gradient norms follow the relative training rates.
//!
//! Every `every` steps (default 1), with W the weight matrix of layer `layer` (default -1: the
//! output layer), L_i(0) the losses at the first update and n terms:
//!
//!   g_i = || grad_W L_i ||_2,   G_i = w_i g_i,   G_bar = mean_j G_j
//!   r_i = (L_i / L_i(0)) / mean_j (L_j / L_j(0))
//!   L_gn = sum_i | G_i - G_bar r_i^alpha |            (target treated as a constant)
//!   w_i <- w_i - lr * dL_gn/dw_i = w_i - lr * sign(G_i - G_bar r_i^alpha) g_i
//!   w_i <- max(w_i, 1e-8);  w_i <- n w_i / sum_j w_j
//!
//! The weights start from `loss.weights` (default 1). The update is one step of plain
//! gradient descent on L_gn in closed form, not a step of the network's Adam (Chen et al. and
//! Modulus put w in the optimiser): the step of w_i is lr * g_i, so `lr` must be chosen
//! against the size of the gradient norms (the residual's grows like eps^-1 for darcy1d).
//! Weights are floored at 1e-8 before the renormalisation to keep them positive (Modulus
//! instead trains log-weights). A member whose update is not finite keeps its weights.
//!
//! Cost per update: one reverse pass per term (T passes), gradients of one layer kept.
//!
//! # Reference
//! Z. Chen, V. Badrinarayanan, C.-Y. Lee, A. Rabinovich, "GradNorm: gradient normalization for
//! adaptive loss balancing in deep multitask networks", ICML 2018, section 3 and Algorithm 1;
//! NVIDIA Modulus user guide, "GradNorm", eq. (80) (seed 002).

use serde::{Deserialize, Serialize};
use tch::{TchError, Tensor};

use super::update::{ema, Interval};
use super::{BalanceInputs, Balancer, BuildContext, Weights};
use crate::checkpoint::{CheckpointError, StateDict};
use crate::validation::Invalid;

/// Floor of a weight before renormalisation.
const MIN_WEIGHT: f64 = 1e-8;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GradNormConfig {
    /// Update every this many steps (Chen et al.: every step).
    pub every: u64,
    /// Strength of the training-rate balancing (Modulus: 1; alpha = 0 equalises the norms).
    pub alpha: f64,
    /// Layer whose weight matrix W the gradient norms are taken on: 0 is the input layer,
    /// negative counts from the output (-1: the output layer).
    pub layer: i64,
    /// Step size of the closed-form gradient step on the weights.
    pub lr: f64,
}

impl Default for GradNormConfig {
    fn default() -> Self {
        GradNormConfig { every: 1, alpha: 1.0, layer: -1, lr: 1e-3 }
    }
}

impl GradNormConfig {
    /// `layers`: linear layers of the network (hidden layers + 1).
    pub fn validate(&self, layers: usize) -> Vec<Invalid> {
        let mut out = Vec::new();
        if self.every == 0 {
            out.push(Invalid::new("balancer.every", "must be at least 1"));
        }
        if !(self.alpha >= 0.0 && self.alpha.is_finite()) {
            out.push(Invalid::new("balancer.alpha", "must be a finite number >= 0"));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            out.push(Invalid::new("balancer.lr", "must be a positive number"));
        }
        if self.layer_index(layers).is_none() {
            out.push(Invalid::new(
                "balancer.layer",
                format!("the network has {layers} layers: use 0..{} or -{layers}..-1", layers.saturating_sub(1)),
            ));
        }
        out
    }

    /// The layer as an index from the input (None when out of range).
    pub fn layer_index(&self, layers: usize) -> Option<usize> {
        let l = layers as i64;
        let i = if self.layer < 0 { l + self.layer } else { self.layer };
        (0..l).contains(&i).then_some(i as usize)
    }
}

pub struct GradNorm {
    interval: Interval,
    alpha: f64,
    layer: i64,
    lr: f64,
    initial: Option<Vec<Tensor>>,
    weights: Weights,
}

impl GradNorm {
    pub fn new(c: &GradNormConfig, ctx: &BuildContext<'_>) -> Self {
        GradNorm {
            interval: Interval::new(c.every),
            alpha: c.alpha,
            layer: c.layer,
            lr: c.lr,
            initial: None,
            weights: Weights::from_fixed(ctx.terms, ctx.fixed, ctx.opts),
        }
    }
}

/// Mean over terms, per member. `xs`: T tensors [E].
fn mean(xs: &[Tensor]) -> Tensor {
    xs[1..].iter().fold(xs[0].shallow_clone(), |a, x| a + x) / xs.len() as f64
}

impl Balancer for GradNorm {
    fn update(&mut self, inputs: &BalanceInputs<'_>) -> Result<(), TchError> {
        if !self.interval.due(inputs.step) {
            return Ok(());
        }
        let now: Vec<Tensor> = self.weights.terms.iter().map(|t| inputs.loss(t).detach()).collect();
        let initial = self.initial.get_or_insert_with(|| now.iter().map(|l| l.shallow_clone()).collect());
        let g: Vec<Tensor> = self
            .weights
            .terms
            .iter()
            .map(|t| -> Result<Tensor, TchError> {
                let mut all = inputs.param_grads(inputs.loss(t))?;
                let li = GradNormConfig { layer: self.layer, ..Default::default() }.layer_index(all.len() / 2).expect("validated layer");
                let grad = all.swap_remove(2 * li);
                grad.square().f_sum_dim_intlist(&[1i64, 2][..], false, grad.kind())?.f_sqrt()
            })
            .collect::<Result<_, _>>()?;
        let big_g: Vec<Tensor> = self.weights.values.iter().zip(&g).map(|(w, g)| w * g).collect();
        let g_bar = mean(&big_g);
        let rate: Vec<Tensor> = now.iter().zip(initial.iter()).map(|(l, l0)| l / l0).collect();
        let rate_bar = mean(&rate);
        let stepped: Vec<Tensor> = (0..g.len())
            .map(|i| -> Result<Tensor, TchError> {
                let target = &g_bar * (&rate[i] / &rate_bar).f_pow_tensor_scalar(self.alpha)?;
                let slope = (&big_g[i] - target).f_sign()? * &g[i];
                (&self.weights.values[i] - slope * self.lr).f_clamp_min(MIN_WEIGHT)
            })
            .collect::<Result<_, _>>()?;
        let sum = stepped[1..].iter().fold(stepped[0].shallow_clone(), |a, x| a + x);
        let n = stepped.len() as f64;
        for (w, s) in self.weights.values.iter_mut().zip(&stepped) {
            *w = ema(w, &(s * n / &sum), 0.0)?;
        }
        Ok(())
    }

    fn weights(&self) -> &Weights {
        &self.weights
    }

    fn save_state(&self, d: &mut StateDict) -> Result<(), CheckpointError> {
        let GradNorm { interval: _, alpha: _, layer: _, lr: _, initial, weights } = self;
        super::save_optional(d, "initial", initial.as_deref())?;
        weights.save(d, "weights")
    }

    fn restore_state(&mut self, d: &StateDict) -> Result<(), CheckpointError> {
        let GradNorm { interval: _, alpha: _, layer: _, lr: _, initial, weights } = self;
        *initial = super::restore_optional(d, "initial", weights.values.len(), &weights.values[0])?;
        weights.restore(d, "weights")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::testing::{close, opts64, table, Linear, TERMS};

    /// Plain f64 GradNorm step for one member: `g` gradient norms, `l`/`l0` losses, `w` weights.
    fn by_hand(w: &[f64], g: &[f64], l: &[f64], l0: &[f64], alpha: f64, lr: f64) -> Vec<f64> {
        let n = w.len() as f64;
        let big: Vec<f64> = w.iter().zip(g).map(|(w, g)| w * g).collect();
        let gbar = big.iter().sum::<f64>() / n;
        let r: Vec<f64> = l.iter().zip(l0).map(|(a, b)| a / b).collect();
        let rbar = r.iter().sum::<f64>() / n;
        let s: Vec<f64> = (0..w.len())
            .map(|i| {
                let target = gbar * (r[i] / rbar).powf(alpha);
                let sign = (big[i] - target).signum() * if big[i] == target { 0.0 } else { 1.0 };
                (w[i] - lr * sign * g[i]).max(1e-8)
            })
            .collect();
        let sum: f64 = s.iter().sum();
        s.iter().map(|v| n * v / sum).collect()
    }

    /// Losses = the linear fixture (gradients C on each layer) plus constants that set their
    /// values, so g_i = ||C_i1|| on the output layer W1 and the rates are chosen freely.
    #[test]
    fn closed_form_step_by_hand() {
        let net = Linear::new();
        let values: Vec<[[f64; 2]; 3]> = vec![
            [[10.0, 4.0], [1.0, 1.0], [0.5, 2.0]],
            [[8.0, 4.0], [1.2, 0.5], [0.5, 1.0]],
            [[2.0, 2.0], [1.1, 0.6], [0.25, 0.5]],
            [[1.0, 1.0], [1.0, 0.7], [0.2, 0.4]],
        ];
        let fixed = vec![vec![1.0, 1.0, 1.0], vec![0.5, 2.0, 0.5]];
        let ctx = BuildContext { terms: TERMS, fixed: &fixed, seeds: &[0, 1], opts: opts64() };
        let c = GradNormConfig { every: 2, alpha: 1.5, layer: -1, lr: 0.05 };
        let mut b = GradNorm::new(&c, &ctx);
        // g[e][t] = || C_t1[e] ||.
        let g: Vec<Vec<f64>> = (0..2)
            .map(|e| net.coef.iter().map(|c| c[1][2 * e..2 * e + 2].iter().map(|x| x * x).sum::<f64>().sqrt()).collect())
            .collect();
        let mut w: Vec<Vec<f64>> = fixed.clone(); // [e][t]
        for (step, v) in values.iter().enumerate() {
            // At zero parameters each linear loss is 1: shift it to the wanted value.
            let l: Vec<(String, Tensor)> = net
                .losses()
                .into_iter()
                .enumerate()
                .map(|(t, (name, x))| (name, x + Tensor::from_slice(&v[t]) - 1.0))
                .collect();
            b.update(&BalanceInputs { step: step as u64, losses: &l, param_grads: Some(&net.grads()), ntk: None }).unwrap();
            if step % 2 == 0 {
                for e in 0..2 {
                    let col = |s: usize| -> Vec<f64> { (0..3).map(|t| values[s][t][e]).collect() };
                    w[e] = by_hand(&w[e], &g[e], &col(step), &col(0), c.alpha, c.lr);
                }
            }
            let want: Vec<Vec<f64>> = (0..3).map(|t| (0..2).map(|e| w[e][t]).collect()).collect();
            close(&table(&b), &want, 1e-12);
            for e in 0..2 {
                let sum: f64 = want.iter().map(|r| r[e]).sum();
                assert!((sum - 3.0).abs() < 1e-12, "weights sum to the number of terms");
            }
        }
        // Step 0 by hand for member 0: r = 1, g = (sqrt(4.25), 0.3, sqrt(10)), w = 1:
        // G_bar = (2.0616 + 0.3 + 3.1623) / 3 = 1.8413; residual and initial are above the
        // target (step down by lr g), boundary below (step up): w = 1 - 0.05 * 2.0616,
        // 1 + 0.05 * 0.3, 1 - 0.05 * 3.1623, then scaled to sum 3.
        let raw = [1.0 - 0.05 * 4.25f64.sqrt(), 1.0 + 0.05 * 0.3, 1.0 - 0.05 * 10f64.sqrt()];
        let s: f64 = raw.iter().sum();
        let w0 = by_hand(&[1.0; 3], &g[0], &[10.0, 1.0, 0.5], &[10.0, 1.0, 0.5], 1.5, 0.05);
        for t in 0..3 {
            assert!((w0[t] - 3.0 * raw[t] / s).abs() < 1e-15);
        }
    }

    #[test]
    fn layer_index_counts_from_either_end() {
        let c = |layer| GradNormConfig { layer, ..Default::default() };
        assert_eq!(c(-1).layer_index(4), Some(3));
        assert_eq!(c(0).layer_index(4), Some(0));
        assert_eq!(c(-4).layer_index(4), Some(0));
        assert_eq!(c(4).layer_index(4), None);
        assert_eq!(c(-5).layer_index(4), None);
        assert_eq!(c(7).validate(4).len(), 1);
    }
}
