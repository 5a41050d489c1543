//! Adam with a learning rate per member.
//!
//! Written out (rather than tch's `nn::Adam`) because a batch trains several jobs as one
//! network and each job may have its own learning-rate schedule; Adam is elementwise, so a
//! batched update is exactly the per-job update.
//!
//! # Reference
//! Kingma & Ba (2014), Algorithm 1, in the form of `torch.optim.Adam` (bias-corrected step
//! lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)).

use tch::{TchError, Tensor};

use crate::checkpoint::{CheckpointError, StateDict};

/// Adam state for every parameter of a batch, flattened per member: `m`, `v`: [E, P].
///
/// Why flattened: a small PINN has a handful of parameter tensors, and written per tensor the
/// update is ~10 tiny libtorch calls each; on one flat [E, P] buffer it is a few calls in all
/// (the per-call overhead, not the arithmetic, is what costs at these sizes).
pub struct Adam {
    m: Tensor,
    v: Tensor,
    t: i32,
    beta1: f64,
    beta2: f64,
    eps: f64,
}

/// Flatten tensors [E, ...] into one [E, P].
fn flat(ts: &[Tensor]) -> Result<Tensor, TchError> {
    let views = ts.iter().map(|t| t.f_reshape([t.size()[0], -1])).collect::<Result<Vec<_>, _>>()?;
    Tensor::f_cat(&views, 1)
}

impl Adam {
    pub fn new(params: &[Tensor], beta1: f64, beta2: f64, eps: f64) -> Self {
        let zeros = tch::no_grad(|| flat(params).expect("parameters share a leading member dimension").zeros_like());
        Adam { m: zeros.zeros_like(), v: zeros, t: 0, beta1, beta2, eps }
    }

    /// Save the moments and the step count (the hyperparameters come from the config).
    pub fn save(&self, d: &mut StateDict) -> Result<(), CheckpointError> {
        let Adam { m, v, t, beta1: _, beta2: _, eps: _ } = self;
        d.put_tensor("m", m)?;
        d.put_tensor("v", v)?;
        d.put_u64("t", *t as u64);
        Ok(())
    }

    /// Restore what [`Adam::save`] saved (shapes must match this optimiser's parameters).
    pub fn restore(&mut self, d: &StateDict) -> Result<(), CheckpointError> {
        let Adam { m, v, t, beta1: _, beta2: _, eps: _ } = self;
        *m = d.tensor_like("m", m)?;
        *v = d.tensor_like("v", v)?;
        *t = d.u64("t")? as i32;
        Ok(())
    }

    /// One update. `lr`: [E], one learning rate per member (leading dimension of every param).
    pub fn step(&mut self, params: &[Tensor], grads: &[Tensor], lr: &Tensor) -> Result<(), TchError> {
        self.t += 1;
        let bc1 = 1.0 - self.beta1.powi(self.t);
        let bc2 = 1.0 - self.beta2.powi(self.t);
        tch::no_grad(|| -> Result<(), TchError> {
            // A parameter the loss does not reach comes back undefined: its gradient is zero.
            let grads = grads
                .iter()
                .zip(params)
                .map(|(g, p)| if g.defined() { Ok(g.shallow_clone()) } else { p.f_zeros_like() })
                .collect::<Result<Vec<_>, TchError>>()?;
            let g = flat(&grads)?;
            // m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
            let _ = self.m.f_mul_scalar_(self.beta1)?.f_add_(&g.f_mul_scalar(1.0 - self.beta1)?)?;
            let _ = self.v.f_mul_scalar_(self.beta2)?.f_addcmul_(&g.f_mul_scalar(1.0 - self.beta2)?, &g)?;
            let denom = self.v.f_sqrt()?.f_div_scalar(bc2.sqrt())?.f_add_scalar(self.eps)?;
            let lr_col = lr.f_view([-1, 1])?.f_to_kind(g.kind())?.f_div_scalar(bc1)?;
            let update = self.m.f_div(&denom)?.f_mul(&lr_col)?;
            let sizes: Vec<i64> = params.iter().map(|p| p.numel() as i64 / p.size()[0]).collect();
            for (p, u) in params.iter().zip(update.f_split_with_sizes(sizes.as_slice(), 1)?) {
                let mut p = p.shallow_clone();
                let _ = p.f_sub_(&u.f_reshape(p.size().as_slice())?)?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    /// Three Adam steps on f(p) = sum p^2 computed by hand (numpy-free: the recurrence is
    /// short enough to inline), for two members with different learning rates.
    #[test]
    fn matches_hand_computed_steps_per_member() {
        let p = Tensor::from_slice(&[1.0f64, -2.0]).view([2, 1]).set_requires_grad(true);
        let lr = Tensor::from_slice(&[0.1f64, 0.01]);
        let mut adam = Adam::new(&[p.shallow_clone()], 0.9, 0.999, 1e-8);
        let mut expect = [1.0f64, -2.0];
        let lrs = [0.1, 0.01];
        let (mut m, mut v) = ([0.0f64; 2], [0.0f64; 2]);
        for t in 1..=3 {
            let loss = p.square().sum(Kind::Double);
            let g = Tensor::run_backward(&[loss], &[&p], false, false);
            adam.step(&[p.shallow_clone()], &g, &lr).unwrap();
            for k in 0..2 {
                let gk = 2.0 * expect[k];
                m[k] = 0.9 * m[k] + 0.1 * gk;
                v[k] = 0.999 * v[k] + 0.001 * gk * gk;
                let bc1 = 1.0 - 0.9f64.powi(t);
                let bc2 = 1.0 - 0.999f64.powi(t);
                expect[k] -= lrs[k] / bc1 * m[k] / (v[k].sqrt() / bc2.sqrt() + 1e-8);
            }
        }
        let got = Vec::<f64>::try_from(p.detach().view([-1])).unwrap();
        for k in 0..2 {
            assert!((got[k] - expect[k]).abs() < 1e-14, "{got:?} vs {expect:?}");
        }
    }
}
