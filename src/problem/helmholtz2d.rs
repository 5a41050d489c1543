//! `helmholtz2d`: u_xx + u_yy + k^2 u = q on (x, y) in [-1, 1]^2, u = u_exact on the boundary.
//!
//! Exact solution u(x, y) = sin(a1 pi x) sin(a2 pi y); the source q is that solution put into
//! the left-hand side, q = (k^2 - (a1 pi)^2 - (a2 pi)^2) u. Defaults k = 1, a1 = 1, a2 = 4.
//! Loss terms: `residual` u_xx + u_yy + k^2 u - q; `boundary` u - u_exact on the perimeter
//! (= u for integer a1, a2). A stationary problem: both inputs are space, `Boundary` is the
//! whole perimeter of the square.
//!
//! # Reference
//! Wang, Teng & Perdikaris (2021), "Understanding and mitigating gradient flow pathologies in
//! physics-informed neural networks", SIAM J. Sci. Comput. 43(5), the two-dimensional
//! Helmholtz example (a1 = 1, a2 = 4, k = 1); DESIGN.md "Problems".

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::{coord, Domain, Equation, TensorOpts, TermSpec};
use crate::model::streams::{StreamLayout, Streams};
use crate::validation::Invalid;

pub const TERMS: &[TermSpec] = &[TermSpec::residual(400), TermSpec::boundary(200)];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Helmholtz2dConfig {
    /// Wave number.
    pub k: f64,
    /// Frequency of the exact solution along x (in units of pi).
    pub a1: f64,
    /// Frequency along y.
    pub a2: f64,
}

impl Default for Helmholtz2dConfig {
    fn default() -> Self {
        Helmholtz2dConfig { k: 1.0, a1: 1.0, a2: 4.0 }
    }
}

impl Helmholtz2dConfig {
    pub fn validate(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        if !self.k.is_finite() {
            out.push(Invalid::new("problem.k", format!("must be a finite number, got {}", self.k)));
        }
        for (name, v) in [("a1", self.a1), ("a2", self.a2)] {
            if !(v.is_finite() && v != 0.0) {
                out.push(Invalid::new(
                    format!("problem.{name}"),
                    format!("must be a finite non-zero number (a zero frequency makes the exact solution vanish), got {v}"),
                ));
            }
        }
        out
    }
}

/// # Shapes
/// `k`, `a1`, `a2`: [E, 1]; `x`, `y`: [E, N]; methods return [E, N].
pub struct Helmholtz2d {
    k: Tensor,
    a1: Tensor,
    a2: Tensor,
}

impl Helmholtz2d {
    pub fn new(members: &[Helmholtz2dConfig], opts: TensorOpts) -> Self {
        let col = |f: &dyn Fn(&Helmholtz2dConfig) -> f64| opts.column(&members.iter().map(f).collect::<Vec<_>>());
        Helmholtz2d { k: col(&|m| m.k), a1: col(&|m| m.a1), a2: col(&|m| m.a2) }
    }

    fn u(&self, x: &Tensor, y: &Tensor) -> Tensor {
        (x * &self.a1 * PI).sin() * (y * &self.a2 * PI).sin()
    }

    /// q = (k^2 - (a1 pi)^2 - (a2 pi)^2) u_exact.
    fn source(&self, x: &Tensor, y: &Tensor) -> Tensor {
        (self.k.square() - (self.a1.square() + self.a2.square()) * (PI * PI)) * self.u(x, y)
    }
}

impl Equation for Helmholtz2d {
    fn domain(&self) -> Domain {
        Domain { lo: vec![-1.0, -1.0], hi: vec![1.0, 1.0], time_dependent: false }
    }

    fn terms(&self) -> &[TermSpec] {
        TERMS
    }

    fn layout(&self) -> StreamLayout {
        StreamLayout::second_order(2)
    }

    fn solution(&self, x: &Tensor) -> Tensor {
        self.u(&coord(x, 0), &coord(x, 1))
    }

    /// u_xx + u_yy + k^2 u.
    fn operator(&self, _x: &Tensor, u: &Streams) -> Tensor {
        u.dd(0, 0) + u.dd(1, 1) + self.k.square() * u.u()
    }

    fn forcing(&self, x: &Tensor) -> Option<Tensor> {
        Some(self.source(&coord(x, 0), &coord(x, 1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::{Problem, Region};
    use crate::problem::testing::{assert_derivatives_match_differences, assert_small, opts64, points_2d, streams_2d};

    fn problem() -> Helmholtz2d {
        let cfgs = [Helmholtz2dConfig::default(), Helmholtz2dConfig { k: 3.0, a1: 2.0, a2: 1.0 }, Helmholtz2dConfig { k: 0.0, a1: 3.0, a2: 5.0 }];
        Helmholtz2d::new(&cfgs, opts64())
    }

    /// Streams of sin(a1 pi x) sin(a2 pi y), written out independently of `source`.
    fn exact_streams(p: &Helmholtz2d, x: &Tensor) -> Streams {
        let (xs, ys) = (coord(x, 0), coord(x, 1));
        let (w1, w2) = (&p.a1 * PI, &p.a2 * PI);
        let (sx, cx) = ((&xs * &w1).sin(), (&xs * &w1).cos());
        let (sy, cy) = ((&ys * &w2).sin(), (&ys * &w2).cos());
        streams_2d([
            &sx * &sy,
            &w1 * &cx * &sy,
            &w2 * &sx * &cy,
            -w1.square() * &sx * &sy,
            -w2.square() * &sx * &sy,
        ])
    }

    #[test]
    fn exact_solution_has_zero_residual_and_matches_boundary_data() {
        let p = problem();
        let dom = p.domain();
        let x = points_2d(&dom, Region::Interior, 3, 300);
        let s = exact_streams(&p, &x);
        let scale = s.dd(1, 1).abs().max().double_value(&[]);
        assert_small(&p.residual("residual", &x, &s), 1e-12 * scale, "residual");
        let xb = points_2d(&dom, Region::Boundary, 3, 300);
        assert_small(&p.residual("boundary", &xb, &exact_streams(&p, &xb)), 1e-12, "boundary");
        // Integer frequencies: homogeneous Dirichlet data on the whole perimeter.
        assert_small(&p.exact(&xb), 1e-12, "u_exact on the perimeter");
    }

    #[test]
    fn analytic_derivatives_match_finite_differences_of_the_exact_solution() {
        let p = problem();
        let x = points_2d(&p.domain(), Region::Interior, 3, 100);
        assert_derivatives_match_differences(&|x: &Tensor| p.exact(x), &exact_streams(&p, &x), &x);
    }
}
