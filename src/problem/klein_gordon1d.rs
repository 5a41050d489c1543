//! `klein_gordon1d`: u_tt + alpha u_xx + beta u + gamma u^k = f on (t, x) in [0, 1]^2
//! (input 0 is t, input 1 is x), a nonlinear equation for k >= 2.
//!
//! Exact solution u(t, x) = x cos(5 pi t) + (x t)^3; the forcing f is that solution put into
//! the left-hand side, with
//!
//!   u_t  = -5 pi x sin(5 pi t) + 3 x^3 t^2,    u_tt = -25 pi^2 x cos(5 pi t) + 6 x^3 t,
//!   u_x  = cos(5 pi t) + 3 x^2 t^3,             u_xx = 6 x t^3.
//!
//! Defaults alpha = -1, beta = 0, gamma = 1, k = 3. Loss terms: `residual` (the PDE);
//! `initial` u(0, x) - u_exact(0, x) (= u - x); `initial_velocity` u_t(0, x) - u_exact_t(0, x)
//! (= u_t: the exact velocity vanishes at t = 0); `boundary` u - u_exact on x = 0 and x = 1.
//!
//! # Reference
//! Seed 001 ("Experimental setup"); Wang, Teng & Perdikaris (2021), "Understanding and
//! mitigating gradient flow pathologies in physics-informed neural networks", SIAM J. Sci.
//! Comput. 43(5), the nonlinear Klein-Gordon example (alpha = -1, beta = 0, gamma = 1, k = 3).

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::{coord, Domain, Equation, TensorOpts, TermSpec, SECOND_ORDER_IN_TIME_TERMS};
use crate::model::streams::{StreamLayout, Streams};
use crate::validation::Invalid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KleinGordon1dConfig {
    pub alpha: f64,
    pub beta: f64,
    pub gamma: f64,
    /// Exponent of the nonlinear term (an integer, so u^k is defined for negative u).
    pub k: u32,
}

impl Default for KleinGordon1dConfig {
    fn default() -> Self {
        KleinGordon1dConfig { alpha: -1.0, beta: 0.0, gamma: 1.0, k: 3 }
    }
}

impl KleinGordon1dConfig {
    pub fn validate(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        for (name, v) in [("alpha", self.alpha), ("beta", self.beta), ("gamma", self.gamma)] {
            if !v.is_finite() {
                out.push(Invalid::new(format!("problem.{name}"), format!("must be a finite number, got {v}")));
            }
        }
        if self.k > 16 {
            out.push(Invalid::new("problem.k", format!("the exponent must be at most 16 (u^k overflows float32 quickly), got {}", self.k)));
        }
        out
    }
}

/// The exact solution and its derivatives (no per-member constants).
///
/// # Shapes
/// `t`, `x`: [E, N]; every function returns [E, N].
pub mod exact {
    use super::*;

    pub fn u(t: &Tensor, x: &Tensor) -> Tensor {
        x * (t * (5.0 * PI)).cos() + (x * t).pow_tensor_scalar(3)
    }

    pub fn u_t(t: &Tensor, x: &Tensor) -> Tensor {
        x * (t * (5.0 * PI)).sin() * (-5.0 * PI) + x.pow_tensor_scalar(3) * t.square() * 3.0
    }

    pub fn u_tt(t: &Tensor, x: &Tensor) -> Tensor {
        x * (t * (5.0 * PI)).cos() * (-25.0 * PI * PI) + x.pow_tensor_scalar(3) * t * 6.0
    }

    pub fn u_x(t: &Tensor, x: &Tensor) -> Tensor {
        (t * (5.0 * PI)).cos() + x.square() * t.pow_tensor_scalar(3) * 3.0
    }

    pub fn u_xx(t: &Tensor, x: &Tensor) -> Tensor {
        x * t.pow_tensor_scalar(3) * 6.0
    }
}

/// # Shapes
/// `alpha`, `beta`, `gamma`, `k`: [E, 1].
pub struct KleinGordon1d {
    alpha: Tensor,
    beta: Tensor,
    gamma: Tensor,
    k: Tensor,
    /// The exponent when every member has the same one (the common case): u^k then uses the
    /// scalar power, which libtorch computes by repeated multiplication.
    k_common: Option<u32>,
}

impl KleinGordon1d {
    pub fn new(members: &[KleinGordon1dConfig], opts: TensorOpts) -> Self {
        let col = |f: &dyn Fn(&KleinGordon1dConfig) -> f64| opts.column(&members.iter().map(f).collect::<Vec<_>>());
        let k0 = members[0].k;
        KleinGordon1d {
            alpha: col(&|m| m.alpha),
            beta: col(&|m| m.beta),
            gamma: col(&|m| m.gamma),
            k: col(&|m| m.k as f64),
            k_common: members.iter().all(|m| m.k == k0).then_some(k0),
        }
    }

    /// u^k per member. u: [E, N].
    fn power(&self, u: &Tensor) -> Tensor {
        match self.k_common {
            Some(k) => u.pow_tensor_scalar(k as i64),
            None => u.pow(&self.k),
        }
    }

    /// Left-hand side u_tt + alpha u_xx + beta u + gamma u^k from its ingredients.
    fn lhs(&self, u: &Tensor, u_tt: &Tensor, u_xx: &Tensor) -> Tensor {
        u_tt + &self.alpha * u_xx + &self.beta * u + &self.gamma * self.power(u)
    }

}

impl Equation for KleinGordon1d {
    fn domain(&self) -> Domain {
        Domain { lo: vec![0.0, 0.0], hi: vec![1.0, 1.0], time_dependent: true }
    }

    fn terms(&self) -> &[TermSpec] {
        SECOND_ORDER_IN_TIME_TERMS
    }

    fn layout(&self) -> StreamLayout {
        StreamLayout::second_order(2)
    }

    fn solution(&self, x: &Tensor) -> Tensor {
        exact::u(&coord(x, 0), &coord(x, 1))
    }

    fn solution_t(&self, x: &Tensor) -> Tensor {
        exact::u_t(&coord(x, 0), &coord(x, 1))
    }

    fn operator(&self, _x: &Tensor, u: &Streams) -> Tensor {
        self.lhs(&u.u(), &u.dd(0, 0), &u.dd(1, 1))
    }

    /// f: the left-hand side of the exact solution.
    fn forcing(&self, x: &Tensor) -> Option<Tensor> {
        let (t, x) = (coord(x, 0), coord(x, 1));
        Some(self.lhs(&exact::u(&t, &x), &exact::u_tt(&t, &x), &exact::u_xx(&t, &x)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::{Problem, Region};
    use crate::problem::testing::{assert_derivatives_match_differences, assert_small, opts64, points_2d, streams_2d};

    fn exact_streams(x: &Tensor) -> Streams {
        let (t, xs) = (coord(x, 0), coord(x, 1));
        streams_2d([exact::u(&t, &xs), exact::u_t(&t, &xs), exact::u_x(&t, &xs), exact::u_tt(&t, &xs), exact::u_xx(&t, &xs)])
    }

    fn configs() -> Vec<KleinGordon1dConfig> {
        vec![
            KleinGordon1dConfig::default(),
            KleinGordon1dConfig { alpha: -2.0, beta: 0.5, gamma: 0.0, k: 2 },
            KleinGordon1dConfig { alpha: 1.0, beta: -1.0, gamma: 3.0, k: 3 },
        ]
    }

    #[test]
    fn exact_solution_has_zero_residual_and_matches_initial_and_boundary_data() {
        // Mixed exponents (tensor power) and a common exponent (scalar power).
        for cfgs in [configs(), vec![KleinGordon1dConfig::default(); 3]] {
            let p = KleinGordon1d::new(&cfgs, opts64());
            let dom = p.domain();
            for (term, region) in SECOND_ORDER_IN_TIME_TERMS.iter().map(|t| (t.name, t.region)) {
                let x = points_2d(&dom, region, 3, 300);
                let r = p.residual(term, &x, &exact_streams(&x));
                let scale = if term == "residual" { exact_streams(&x).dd(0, 0).abs().max().double_value(&[]) } else { 1.0 };
                assert_small(&r, 1e-12 * scale, term);
            }
        }
    }

    #[test]
    fn forcing_of_the_default_equation_by_hand() {
        // f = u_tt - u_xx + u^3 at (t, x) = (0.3, 0.7), written out from the formulas above.
        let (t, x) = (0.3f64, 0.7f64);
        let u = x * (5.0 * PI * t).cos() + (x * t).powi(3);
        let u_tt = -25.0 * PI * PI * x * (5.0 * PI * t).cos() + 6.0 * x.powi(3) * t;
        let u_xx = 6.0 * x * t.powi(3);
        let expect = u_tt - u_xx + u.powi(3);
        let p = KleinGordon1d::new(&[KleinGordon1dConfig::default()], opts64());
        let f = p.forcing(&Tensor::from_slice(&[t, x]).view([1, 1, 2])).unwrap();
        assert!((f.double_value(&[0, 0]) - expect).abs() < 1e-12 * expect.abs());
    }

    #[test]
    fn analytic_derivatives_match_finite_differences_of_the_exact_solution() {
        let p = KleinGordon1d::new(&configs(), opts64());
        let x = points_2d(&p.domain(), Region::Interior, 3, 100);
        assert_derivatives_match_differences(&|x: &Tensor| p.exact(x), &exact_streams(&x), &x);
    }
}
