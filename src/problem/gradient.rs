//! Gradient-enhanced residuals (`loss.gradient_enhanced: {weight: w}`): a loss term
//! `residual_grad` whose residual is the derivative of the PDE residual along the spatial
//! input, d r / d x, at its own interior points. It has its own NTK block and balancer weight.
//!
//! The derivative is taken through the streams by the chain rule: with the PDE residual
//! r = F(x, u, u_j, u_jk) (F the problem's operator minus its forcing, written once),
//!   d r / d x_i = dF/dx_i (explicit, coefficients and forcing) + sum_s dF/du_s u_(s, i)
//! where u_(s, i) is stream s differentiated once more along x_i: the network carries one
//! derivative order more at these points ([`StreamLayout::grown`], third derivatives for a
//! second-order equation). The partials of F come from autograd on F alone (pointwise, so one
//! reverse pass gives all points) with `create_graph`, so the result stays differentiable with
//! respect to the parameters through u_s and u_(s, i); no problem needs to write its
//! residual's derivative by hand.
//!
//! Problems with one spatial input only (1-D, or (t, x)): with several the term would have a
//! residual per input and point, which the [E, N] residual contract does not hold.
//!
//! # Reference
//! J. Yu, L. Lu, X. Meng & G. E. Karniadakis, "Gradient-enhanced physics-informed neural
//! networks for forward and inverse PDE problems", CMAME 393 (2022) 114823, eq. (6);
//! H. Son et al., "Sobolev training for physics-informed neural networks" (2021); seed 002.

use tch::{Kind, Tensor};

use super::{Problem, Reads, Region, TermSpec};
use crate::model::streams::{StreamLayout, Streams};

/// The term's name.
pub const NAME: &str = "residual_grad";

/// The term beside the PDE term `residual` (same default number of points).
pub fn term(pde: &TermSpec) -> TermSpec {
    TermSpec { name: NAME, region: Region::Interior, default_points: pde.default_points, pde: true, reads: Reads::Layout }
}

/// The spatial input the residual is differentiated along (input 1 of a (t, x) problem, input
/// 0 of a 1-D one), or why there is none.
pub fn spatial_input(dim: usize, time_dependent: bool) -> Result<usize, String> {
    match (dim, time_dependent) {
        (1, false) => Ok(0),
        (2, true) => Ok(1),
        _ => Err(format!(
            "needs exactly one spatial input (a 1-D problem or a (t, x) one); this problem has {} spatial inputs, and a residual per input and point is not supported",
            dim - usize::from(time_dependent)
        )),
    }
}

/// d r / d x_i of the PDE residual of `problem` at `x`, from streams `u` that carry
/// `base` (the problem's layout) and each of its streams' derivative along x_i.
///
/// # Shapes
/// `x`: [E, N, d]; `u`: parts [E, N]; returns [E, N].
pub fn residual_derivative(problem: &dyn Problem, pde_term: &str, base: &StreamLayout, x: &Tensor, u: &Streams, i: usize) -> Tensor {
    tch::with_grad(|| {
        let xl = x.detach().set_requires_grad(true);
        let streams = base.streams();
        // The base streams as inputs of F; outside a graph (evaluation), as leaves.
        let inputs: Vec<Tensor> = streams.iter().map(|s| {
            let p = u.stream(*s);
            if p.requires_grad() { p } else { p.detach().set_requires_grad(true) }
        }).collect();
        let su = Streams { layout: base.clone(), parts: inputs.iter().map(|t| Some(t.shallow_clone())).collect() };
        let r = problem.residual(pde_term, &xl, &su);
        let mut wrt: Vec<&Tensor> = vec![&xl];
        wrt.extend(inputs.iter());
        let grads = Tensor::run_backward(&[r.sum(Kind::Double)], &wrt, true, true);
        let mut out = if grads[0].defined() { grads[0].select(-1, i as i64) } else { r.zeros_like() };
        for (s, g) in streams.iter().zip(&grads[1..]) {
            if g.defined() {
                out = out + g * u.stream(s.along(i));
            }
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::testing::opts64;
    use crate::problem::ProblemConfig;
    use std::f64::consts::PI;
    use tch::Device;

    /// Hand check on poisson1d, r = -u'' - f with f = -u_exact'': d r / dx = -u''' + u_exact'''
    /// with u_exact''' = -8 pi^3 cos(2 pi x) - (8 pi^3 / eps^2) cos(2 pi x / eps). Streams of
    /// u = x^4: u = x^4, u' = 4 x^3, u'' = 12 x^2, u''' = 24 x. At eps = 0.5, x = 0.1:
    /// d r / dx = -2.4 - 8 pi^3 (cos(0.2 pi) + 4 cos(0.4 pi)) (a few lines of arithmetic,
    /// beside the assertion). And darcy1d, where the coefficients depend on x too, against
    /// central differences of r at x +- h.
    #[test]
    fn residual_derivative_by_hand_on_poisson_and_by_differences_on_darcy() {
        let cfg: ProblemConfig = serde_yaml_ng::from_str("{kind: poisson1d, eps: 0.5}").unwrap();
        let p = ProblemConfig::build(&[&cfg], opts64());
        let base = p.layout();
        let grown = base.grown(0);
        let streams = |x: &Tensor| Streams { layout: grown.clone(), parts: vec![Some(x.pow_tensor_scalar(4)), Some(x.pow_tensor_scalar(3) * 4.0), Some(x.square() * 12.0), Some(x * 24.0)] };
        let xv = Tensor::from_slice(&[0.1f64]).view([1, 1]);
        let x = xv.view([1, 1, 1]);
        let got = residual_derivative(p.as_ref(), "residual", &base, &x, &streams(&xv), 0).double_value(&[0, 0]);
        let want = -2.4 - 8.0 * PI.powi(3) * ((0.2 * PI).cos() + 4.0 * (0.4 * PI).cos());
        assert!((got - want).abs() < 1e-10 * want.abs(), "{got} vs hand {want}");

        let cfg: ProblemConfig = serde_yaml_ng::from_str("{kind: darcy1d, eps: 0.25}").unwrap();
        let p = ProblemConfig::build(&[&cfg], opts64());
        let xs = Tensor::linspace(0.05, 0.95, 7, (Kind::Double, Device::Cpu)).view([1, 7]);
        let got = residual_derivative(p.as_ref(), "residual", &base, &xs.unsqueeze(-1), &streams(&xs), 0);
        let h = 1e-5;
        let r = |x: &Tensor| p.residual("residual", &x.unsqueeze(-1), &streams(x));
        let fd = (r(&(&xs + h)) - r(&(&xs - h))) / (2.0 * h);
        let err = (&got - &fd).abs().max().double_value(&[]) / fd.abs().max().double_value(&[]);
        assert!(err < 1e-7, "darcy d r / dx vs central differences: {err:e}");
    }
}
