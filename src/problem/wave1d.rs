//! `wave1d`: u_tt = c^2 u_xx on (t, x) in [0, 1]^2 (input 0 is t, input 1 is x).
//!
//! Exact solution, two standing waves whose high-frequency mode is `a` times faster in both
//! space and time:
//!
//!   u(t, x) = sin(pi x) cos(c pi t) + amplitude sin(a pi x) cos(a c pi t).
//!
//! With the defaults c = 2, a = 4, amplitude = 0.5 this is the benchmark
//! u = sin(pi x) cos(2 pi t) + 0.5 sin(4 pi x) cos(8 pi t). The time frequencies follow from c,
//! so the exact solution solves the PDE for every c (each mode sin(k pi x) cos(k c pi t) does).
//! Loss terms: `residual` u_tt - c^2 u_xx; `initial` u(0, x) - u_exact(0, x);
//! `initial_velocity` u_t(0, x) - u_exact_t(0, x) (= u_t(0, x): the exact velocity vanishes at
//! t = 0); `boundary` u - u_exact on x = 0 and x = 1 (= u for integer a, as in the benchmark).
//!
//! # Warning
//! The residual reads u_tt and u_xx in physical coordinates. Under `normalization: zscore`
//! the network's own derivatives are with respect to (t_n, x_n) and differ by sigma_t^-2 and
//! sigma_x^-2; the stream seeding of [`crate::model::normalize`] applies those factors, so
//! nothing here has to (seed 000, section 2.5 and FAQ Q3, is about forgetting them).
//!
//! # Reference
//! Seed 000, sections 2.1, 4.1 and 4.2; Wang, Yu & Perdikaris (2022), "When and why PINNs
//! fail to train: a neural tangent kernel perspective", J. Comput. Phys. 449, 110768, the
//! one-dimensional wave equation example (c = 2, a = 4).

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::{coord, Domain, Equation, TensorOpts, TermSpec, SECOND_ORDER_IN_TIME_TERMS};
use crate::model::streams::{StreamLayout, Streams};
use crate::validation::Invalid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Wave1dConfig {
    /// Wave speed.
    pub c: f64,
    /// Frequency multiple of the second mode (space and time).
    pub a: f64,
    /// Amplitude of the second mode.
    pub amplitude: f64,
}

impl Default for Wave1dConfig {
    fn default() -> Self {
        Wave1dConfig { c: 2.0, a: 4.0, amplitude: 0.5 }
    }
}

impl Wave1dConfig {
    pub fn validate(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        if !(self.c.is_finite() && self.c > 0.0) {
            out.push(Invalid::new("problem.c", format!("the wave speed must be a positive number, got {}", self.c)));
        }
        if !(self.a.is_finite() && self.a > 0.0) {
            out.push(Invalid::new("problem.a", format!("the frequency multiple must be a positive number, got {}", self.a)));
        }
        if !self.amplitude.is_finite() {
            out.push(Invalid::new("problem.amplitude", "must be a finite number"));
        }
        out
    }
}

/// Per-member constants and the exact solution with its derivatives.
///
/// # Shapes
/// `c`, `a`, `amp`: [E, 1]; `t`, `x`: [E, N]; every method returns [E, N].
pub struct WaveExact {
    pub c: Tensor,
    pub a: Tensor,
    pub amp: Tensor,
}

impl WaveExact {
    /// (sin(pi x), cos(c pi t), sin(a pi x), cos(a c pi t)) and the same with sin/cos swapped.
    fn parts(&self, t: &Tensor, x: &Tensor) -> [Tensor; 8] {
        let [px, ct, apx, act] = self.args(t, x);
        [px.sin(), ct.cos(), apx.sin(), act.cos(), px.cos(), ct.sin(), apx.cos(), act.sin()]
    }

    /// The arguments (pi x, c pi t, a pi x, a c pi t).
    fn args(&self, t: &Tensor, x: &Tensor) -> [Tensor; 4] {
        let px = x * PI;
        let ct = t * PI * &self.c;
        let apx = &px * &self.a;
        let act = &ct * &self.a;
        [px, ct, apx, act]
    }

    /// Evaluated every training step on the initial and boundary points, so only the four
    /// factors it needs are computed (not all eight of `parts`).
    pub fn u(&self, t: &Tensor, x: &Tensor) -> Tensor {
        let [px, ct, apx, act] = self.args(t, x);
        px.sin() * ct.cos() + &self.amp * apx.sin() * act.cos()
    }

    /// u_t = -c pi sin(pi x) sin(c pi t) - amplitude a c pi sin(a pi x) sin(a c pi t).
    pub fn u_t(&self, t: &Tensor, x: &Tensor) -> Tensor {
        let [px, ct, apx, act] = self.args(t, x);
        -(px.sin() * ct.sin() + &self.amp * &self.a * apx.sin() * act.sin()) * &self.c * PI
    }

    /// u_x = pi cos(pi x) cos(c pi t) + amplitude a pi cos(a pi x) cos(a c pi t).
    pub fn u_x(&self, t: &Tensor, x: &Tensor) -> Tensor {
        let [_, ct, _, cat, cx, _, cax, _] = self.parts(t, x);
        (cx * ct + &self.amp * &self.a * cax * cat) * PI
    }

    /// u_xx = -pi^2 sin(pi x) cos(c pi t) - amplitude (a pi)^2 sin(a pi x) cos(a c pi t).
    pub fn u_xx(&self, t: &Tensor, x: &Tensor) -> Tensor {
        let [sx, ct, sax, cat, ..] = self.parts(t, x);
        -(sx * ct + &self.amp * self.a.square() * sax * cat) * (PI * PI)
    }

    /// u_tt = c^2 u_xx (each mode solves the wave equation).
    pub fn u_tt(&self, t: &Tensor, x: &Tensor) -> Tensor {
        let [sx, ct, sax, cat, ..] = self.parts(t, x);
        -(sx * ct + &self.amp * self.a.square() * sax * cat) * self.c.square() * (PI * PI)
    }
}

pub struct Wave1d {
    exact: WaveExact,
}

impl Wave1d {
    pub fn new(members: &[Wave1dConfig], opts: TensorOpts) -> Self {
        let col = |f: &dyn Fn(&Wave1dConfig) -> f64| opts.column(&members.iter().map(f).collect::<Vec<_>>());
        Wave1d { exact: WaveExact { c: col(&|m| m.c), a: col(&|m| m.a), amp: col(&|m| m.amplitude) } }
    }
}

impl Equation for Wave1d {
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
        self.exact.u(&coord(x, 0), &coord(x, 1))
    }

    fn solution_t(&self, x: &Tensor) -> Tensor {
        self.exact.u_t(&coord(x, 0), &coord(x, 1))
    }

    /// u_tt - c^2 u_xx.
    fn operator(&self, _x: &Tensor, u: &Streams) -> Tensor {
        u.dd(0, 0) - self.exact.c.square() * u.dd(1, 1)
    }

    /// Homogeneous: every mode of the exact solution solves the wave equation.
    fn forcing(&self, _x: &Tensor) -> Option<Tensor> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::{Problem, Region};
    use crate::problem::testing::{assert_derivatives_match_differences, assert_small, opts64, points_2d, streams_2d};

    fn members() -> (Vec<Wave1dConfig>, Wave1d) {
        let cfgs = vec![
            Wave1dConfig::default(),
            Wave1dConfig { c: 1.0, a: 2.0, amplitude: -0.3 },
            Wave1dConfig { c: 3.5, a: 3.0, amplitude: 2.0 },
        ];
        let p = Wave1d::new(&cfgs, opts64());
        (cfgs, p)
    }

    fn exact_streams(p: &Wave1d, x: &Tensor) -> Streams {
        let (t, xs) = (coord(x, 0), coord(x, 1));
        let e = &p.exact;
        streams_2d([e.u(&t, &xs), e.u_t(&t, &xs), e.u_x(&t, &xs), e.u_tt(&t, &xs), e.u_xx(&t, &xs)])
    }

    #[test]
    fn exact_solution_has_zero_residual_and_matches_initial_and_boundary_data() {
        let (_, p) = members();
        let dom = p.domain();
        for (term, region) in SECOND_ORDER_IN_TIME_TERMS.iter().map(|t| (t.name, t.region)) {
            let x = points_2d(&dom, region, 3, 300);
            let r = p.residual(term, &x, &exact_streams(&p, &x));
            // The residual's two parts are O((a c pi)^2); compare with that scale.
            let scale = if term == "residual" { exact_streams(&p, &x).dd(0, 0).abs().max().double_value(&[]) } else { 1.0 };
            assert_small(&r, 1e-12 * scale, term);
        }
        // Boundary data is homogeneous for integer a, as in the benchmark.
        let xb = points_2d(&dom, Region::Boundary, 3, 50);
        assert_small(&p.exact(&xb), 1e-12, "u_exact on x = 0, 1");
    }

    #[test]
    fn analytic_derivatives_match_finite_differences_of_the_exact_solution() {
        let (_, p) = members();
        let x = points_2d(&p.domain(), Region::Interior, 3, 100);
        assert_derivatives_match_differences(&|x: &Tensor| p.exact(x), &exact_streams(&p, &x), &x);
    }

    #[test]
    fn default_is_the_seed_000_benchmark() {
        let p = Wave1d::new(&[Wave1dConfig::default()], opts64());
        let x = points_2d(&p.domain(), Region::Interior, 1, 50);
        let (t, xs) = (coord(&x, 0), coord(&x, 1));
        let expect = (&xs * PI).sin() * (&t * (2.0 * PI)).cos() + (&xs * (4.0 * PI)).sin() * (&t * (8.0 * PI)).cos() * 0.5;
        assert_small(&(p.exact(&x) - expect), 1e-14, "default exact solution");
    }
}
