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

pub struct Adam {
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    t: i32,
    beta1: f64,
    beta2: f64,
    eps: f64,
}

impl Adam {
    pub fn new(params: &[Tensor], beta1: f64, beta2: f64, eps: f64) -> Self {
        Adam {
            m: params.iter().map(|p| p.zeros_like()).collect(),
            v: params.iter().map(|p| p.zeros_like()).collect(),
            t: 0,
            beta1,
            beta2,
            eps,
        }
    }

    /// One update. `lr`: [E], one learning rate per member (leading dimension of every param).
    pub fn step(&mut self, params: &[Tensor], grads: &[Tensor], lr: &Tensor) -> Result<(), TchError> {
        self.t += 1;
        let bc1 = 1.0 - self.beta1.powi(self.t);
        let bc2 = 1.0 - self.beta2.powi(self.t);
        tch::no_grad(|| -> Result<(), TchError> {
            for ((p, g), (m, v)) in params.iter().zip(grads).zip(self.m.iter_mut().zip(self.v.iter_mut())) {
                let mut shape = vec![-1i64];
                shape.extend(std::iter::repeat_n(1, p.dim() - 1));
                let lr_p = lr.f_view(shape.as_slice())?.f_to_kind(p.kind())?;
                let _ = m.f_mul_(&Tensor::from(self.beta1).to_kind(p.kind()))?;
                let _ = m.f_add_(&(g * (1.0 - self.beta1)))?;
                let _ = v.f_mul_(&Tensor::from(self.beta2).to_kind(p.kind()))?;
                let _ = v.f_add_(&(g * g * (1.0 - self.beta2)))?;
                let denom = v.sqrt() / bc2.sqrt() + self.eps;
                let update = &*m / denom * (lr_p / bc1);
                let mut p = p.shallow_clone();
                let _ = p.f_sub_(&update)?;
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
