//! Hidden-layer activations and the derivatives the derivative streams need.
//!
//! A hidden layer maps its pre-activation y to sigma(y). The forward streams need sigma' and
//! sigma'' (a_i = sigma'(y) y_i, a_ij = sigma'(y) y_ij + sigma''(y) y_i y_j), and the
//! hand-written reverse pass of a loss that reads second derivatives also needs sigma'''
//! (see [`crate::model::tape`]). Each activation is one [`Smooth`] implementation that
//! returns all of them from y in one place, so adding an activation is one struct, one enum
//! variant and one row of the derivative test.
//!
//! tanh keeps its own fused path in the MLP and the tape (libtorch's `tanh_backward`, and the
//! identities sigma' = 1 - t^2, sigma'' = -2 t sigma'), which is bit-identical to the code that
//! trained every job before activations became selectable; its [`Smooth`] implementation
//! serves the tests and anything that wants the generic path.
//!
//! # Reference
//! sin: SIREN-style sine activations (Sitzmann et al. 2020); SiLU: Elfwing, Uchibe & Doya
//! (2018), PhysicsNeMo's default; GELU, exact erf form x Phi(x): Hendrycks & Gimpel (2016).

use serde::{Deserialize, Serialize};
use tch::Tensor;

/// `model.activation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    #[default]
    Tanh,
    Sin,
    Silu,
    Gelu,
}

impl Activation {
    pub fn name(self) -> &'static str {
        match self {
            Activation::Tanh => "tanh",
            Activation::Sin => "sin",
            Activation::Silu => "silu",
            Activation::Gelu => "gelu",
        }
    }

    pub fn is_default(&self) -> bool {
        *self == Activation::Tanh
    }

    /// The function and its derivatives.
    pub fn smooth(self) -> &'static dyn Smooth {
        match self {
            Activation::Tanh => &Tanh,
            Activation::Sin => &Sin,
            Activation::Silu => &Silu,
            Activation::Gelu => &Gelu,
        }
    }
}

/// An activation with three continuous derivatives.
pub trait Smooth: Sync {
    /// sigma(y), elementwise.
    fn value(&self, y: &Tensor) -> Tensor;
    /// [sigma'(y), sigma''(y), sigma'''(y)][..order] (order 1 to 3), elementwise, sharing the
    /// intermediate tensors.
    fn derivatives(&self, y: &Tensor, order: usize) -> Vec<Tensor>;
}

pub struct Tanh;
pub struct Sin;
pub struct Silu;
pub struct Gelu;

impl Smooth for Tanh {
    fn value(&self, y: &Tensor) -> Tensor {
        y.tanh()
    }

    /// s1 = 1 - t^2, s2 = -2 t s1, s3 = s1 (6 t^2 - 2).
    fn derivatives(&self, y: &Tensor, order: usize) -> Vec<Tensor> {
        let t = y.tanh();
        let t2 = t.square();
        let s1 = 1.0 - &t2;
        let mut out = vec![];
        if order >= 2 {
            out.push(&t * &s1 * -2.0);
        }
        if order >= 3 {
            out.push(&s1 * (&t2 * 6.0 - 2.0));
        }
        out.insert(0, s1);
        out
    }
}

impl Smooth for Sin {
    fn value(&self, y: &Tensor) -> Tensor {
        y.sin()
    }

    /// cos, -sin, -cos.
    fn derivatives(&self, y: &Tensor, order: usize) -> Vec<Tensor> {
        let c = y.cos();
        let mut out = vec![];
        if order >= 2 {
            out.push(-y.sin());
        }
        if order >= 3 {
            out.push(-&c);
        }
        out.insert(0, c);
        out
    }
}

impl Smooth for Silu {
    fn value(&self, y: &Tensor) -> Tensor {
        y.silu()
    }

    /// With s = sigmoid(y) and u = s (1 - s) = s':
    ///   s1 = s (1 + y (1 - s)),  s2 = u (2 + y (1 - 2 s)),
    ///   s3 = u ((1 - 2 s)(3 + y (1 - 2 s)) - 2 y u).
    fn derivatives(&self, y: &Tensor, order: usize) -> Vec<Tensor> {
        let s = y.sigmoid();
        let one_minus = 1.0 - &s;
        let mut out = vec![&s * (1.0 + y * &one_minus)];
        if order >= 2 {
            let u = &s * &one_minus;
            let c = 1.0 - &s * 2.0; // 1 - 2 s
            let yc = y * &c;
            out.push(&u * (&yc + 2.0));
            if order >= 3 {
                out.push(&u * (&c * (&yc + 3.0) - y * &u * 2.0));
            }
        }
        out
    }
}

impl Smooth for Gelu {
    /// Exact form y Phi(y) (libtorch's `gelu(approximate = "none")`).
    fn value(&self, y: &Tensor) -> Tensor {
        y.gelu("none")
    }

    /// With Phi the standard normal cdf and phi its density:
    ///   s1 = Phi + y phi,  s2 = phi (2 - y^2),  s3 = y phi (y^2 - 4).
    fn derivatives(&self, y: &Tensor, order: usize) -> Vec<Tensor> {
        let phi = (y.square() * -0.5).exp() * (1.0 / (2.0 * std::f64::consts::PI).sqrt());
        let cdf = ((y * std::f64::consts::FRAC_1_SQRT_2).erf() + 1.0) * 0.5;
        let mut out = vec![cdf + y * &phi];
        if order >= 2 {
            let y2 = y.square();
            out.push(&phi * (2.0 - &y2));
            if order >= 3 {
                out.push(y * &phi * (&y2 - 4.0));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// sigma', sigma'', sigma''' of every activation equal nested autograd of libtorch's own
    /// sigma (float64, 1e-12 of the largest value) on [-6, 6].
    #[test]
    fn derivatives_equal_nested_autograd() {
        for act in [Activation::Tanh, Activation::Sin, Activation::Silu, Activation::Gelu] {
            let y = Tensor::linspace(-6.0, 6.0, 241, (Kind::Double, Device::Cpu)).set_requires_grad(true);
            let f = act.smooth();
            let mut want = Vec::new();
            let mut g = f.value(&y);
            for _ in 0..3 {
                g = Tensor::run_backward(&[g.sum(Kind::Double)], &[&y], true, true).remove(0);
                want.push(g.detach());
            }
            let got = f.derivatives(&y.detach(), 3);
            assert_eq!(got.len(), 3);
            for (k, (a, b)) in got.iter().zip(&want).enumerate() {
                let err = (a - b).abs().max().double_value(&[]) / b.abs().max().double_value(&[]);
                assert!(err < 1e-12, "{} derivative {}: rel err {err}", act.name(), k + 1);
            }
            for order in 1..=3 {
                assert_eq!(f.derivatives(&y.detach(), order).len(), order, "{} order {order}", act.name());
            }
        }
    }
}
