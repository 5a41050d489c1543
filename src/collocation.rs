//! Where the loss terms are evaluated: points of a region of the domain, per member.
//!
//! Each job draws from its own random stream ([`crate::rng`]), so its points do not depend on
//! the batch it is trained in. Points are returned row-major [n, d] in physical coordinates.

use serde::{Deserialize, Serialize};

use crate::domain::{Domain, Region};
use crate::rng::{self, JobRng};
use crate::validation::Invalid;

/// How a term's points are placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// Equispaced grid (including the end points), fixed for the whole run.
    #[default]
    Grid,
    /// Uniform random points, drawn once.
    Uniform,
    /// Quasi-random Halton points (bases 2, 3), fixed.
    Halton,
    /// Importance sampling (training points only): every `every` steps the term's points are
    /// redrawn from a uniform pool with probability proportional to the squared residual, and
    /// the loss is weighted by f/q so it stays an unbiased estimate ([`crate::train`]).
    /// Before the first redraw, and for the pool itself, points are uniform.
    Importance,
}

/// Default `collocation.<term>.pool` per training point.
pub const DEFAULT_POOL_FACTOR: usize = 10;
/// Default `collocation.<term>.every`.
pub const DEFAULT_IMPORTANCE_EVERY: u64 = 100;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TermSampling {
    pub points: usize,
    #[serde(default)]
    pub sampling: Sampling,
    /// Draw new uniform random points at every step, the first included (seeds 000/001 do
    /// this). Resampling always means uniform: `sampling` is then ignored (and `halton`, whose
    /// points are deterministic, is rejected). An L-BFGS phase keeps the last Adam step's
    /// points fixed (it needs a deterministic loss).
    #[serde(default)]
    pub resample: bool,
    /// `sampling: importance`: uniform points the training points are drawn from (default
    /// 10 x points). Left out of the resolved configuration when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<usize>,
    /// `sampling: importance`: steps between redraws (default 100; the first at step 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<u64>,
}

impl TermSampling {
    /// Range checks of one term's `collocation.<term>` entry (`path`).
    pub fn validate(&self, path: &str) -> Vec<Invalid> {
        if self.sampling == Sampling::Importance {
            return self.validate_importance(path);
        }
        if self.pool.is_some() || self.every.is_some() {
            let key = if self.pool.is_some() { "pool" } else { "every" };
            return vec![Invalid::new(format!("{path}.{key}"), "applies to `sampling: importance` only")];
        }
        if self.points == 0 {
            vec![Invalid::new(format!("{path}.points"), "must be at least 1")]
        } else if self.resample && self.sampling == Sampling::Halton {
            vec![Invalid::new(
                format!("{path}.sampling"),
                "`resample: true` draws new uniform random points every step; use `sampling: uniform` (or drop `resample` to keep fixed Halton points)",
            )]
        } else {
            Vec::new()
        }
    }
}

impl TermSampling {
    /// A term's points without importance sampling's keys.
    pub fn plain(points: usize, sampling: Sampling, resample: bool) -> TermSampling {
        TermSampling { points, sampling, resample, pool: None, every: None }
    }

    /// The pool size and redraw interval of `sampling: importance`.
    pub fn importance(&self) -> Option<(usize, u64)> {
        (self.sampling == Sampling::Importance)
            .then(|| (self.pool.unwrap_or(DEFAULT_POOL_FACTOR * self.points), self.every.unwrap_or(DEFAULT_IMPORTANCE_EVERY)))
    }

    fn validate_importance(&self, path: &str) -> Vec<Invalid> {
        let mut out = Vec::new();
        if self.points == 0 {
            out.push(Invalid::new(format!("{path}.points"), "must be at least 1"));
        }
        if self.resample {
            out.push(Invalid::new(format!("{path}.resample"), "`sampling: importance` redraws its points every `every` steps; drop `resample`"));
        }
        if let Some(pool) = self.pool {
            if pool < self.points.max(1) {
                out.push(Invalid::new(format!("{path}.pool"), format!("must be at least the number of points ({}), got {pool}", self.points)));
            }
        }
        if self.every == Some(0) {
            out.push(Invalid::new(format!("{path}.every"), "must be at least 1 (steps between redraws)"));
        }
        out
    }
}

/// Radical inverse of `i` in `base` (van der Corput); the Halton sequence uses bases 2, 3.
fn radical_inverse(mut i: u64, base: u64) -> f64 {
    let (mut f, mut r) = (1.0, 0.0);
    while i > 0 {
        f /= base as f64;
        r += f * (i % base) as f64;
        i /= base;
    }
    r
}

/// `n` numbers in [0, 1] for one coordinate: grid (end points included), uniform or Halton.
fn unit(n: usize, sampling: Sampling, rng: &mut JobRng, base: u64) -> Vec<f64> {
    match sampling {
        Sampling::Grid => {
            if n == 1 {
                vec![0.5]
            } else {
                (0..n).map(|k| k as f64 / (n - 1) as f64).collect()
            }
        }
        Sampling::Uniform | Sampling::Importance => rng::uniforms(rng, n),
        Sampling::Halton => (1..=n as u64).map(|i| radical_inverse(i, base)).collect(),
    }
}

fn lerp(lo: f64, hi: f64, t: f64) -> f64 {
    lo + (hi - lo) * t
}

/// Number of points a request of `n` gives (2-D interior grids are m x m with m = round(sqrt n)).
pub fn count(domain: &Domain, region: Region, n: usize, sampling: Sampling) -> usize {
    if domain.dim() == 2 && region == Region::Interior && sampling == Sampling::Grid {
        let m = ((n as f64).sqrt().round() as usize).max(1);
        m * m
    } else {
        n
    }
}

/// Sample a region; returns [count, d] row-major.
pub fn sample(domain: &Domain, region: Region, n: usize, sampling: Sampling, rng: &mut JobRng) -> Vec<f64> {
    let d = domain.dim();
    let (lo, hi) = (&domain.lo, &domain.hi);
    match (d, region) {
        (1, Region::Interior) => unit(n, sampling, rng, 2).into_iter().map(|t| lerp(lo[0], hi[0], t)).collect(),
        (1, Region::Boundary) => (0..n).map(|k| if k % 2 == 0 { lo[0] } else { hi[0] }).collect(),
        (2, Region::Interior) => {
            if sampling == Sampling::Grid {
                let m = ((n as f64).sqrt().round() as usize).max(1);
                let g = unit(m, Sampling::Grid, rng, 2);
                let mut out = Vec::with_capacity(2 * m * m);
                for a in &g {
                    for b in &g {
                        out.push(lerp(lo[0], hi[0], *a));
                        out.push(lerp(lo[1], hi[1], *b));
                    }
                }
                out
            } else {
                let (u0, u1) = match sampling {
                    Sampling::Halton => (unit(n, sampling, rng, 2), unit(n, sampling, rng, 3)),
                    _ => {
                        let u = rng::uniforms(rng, 2 * n);
                        (u.iter().step_by(2).copied().collect(), u.iter().skip(1).step_by(2).copied().collect())
                    }
                };
                u0.iter().zip(&u1).flat_map(|(a, b)| [lerp(lo[0], hi[0], *a), lerp(lo[1], hi[1], *b)]).collect()
            }
        }
        (2, Region::Initial) => {
            unit(n, sampling, rng, 2).into_iter().flat_map(|t| [lo[0], lerp(lo[1], hi[1], t)]).collect()
        }
        (2, Region::Boundary) if domain.time_dependent => {
            // Spatial faces x = lo and x = hi, alternating, for t along the time interval.
            let half = n.div_ceil(2);
            let ts = unit(half, sampling, rng, 2);
            (0..n).flat_map(|k| [lerp(lo[0], hi[0], ts[k / 2]), if k % 2 == 0 { lo[1] } else { hi[1] }]).collect()
        }
        (2, Region::Boundary) => {
            // The perimeter of the box, parametrised by s in [0, 4): one unit per edge.
            let s: Vec<f64> = match sampling {
                Sampling::Grid => (0..n).map(|k| 4.0 * k as f64 / n as f64).collect(),
                _ => unit(n, sampling, rng, 2).into_iter().map(|t| 4.0 * t).collect(),
            };
            s.into_iter()
                .flat_map(|s| {
                    let (edge, t) = ((s.floor() as usize).min(3), s - s.floor());
                    match edge {
                        0 => [lerp(lo[0], hi[0], t), lo[1]],
                        1 => [hi[0], lerp(lo[1], hi[1], t)],
                        2 => [lerp(hi[0], lo[0], t), hi[1]],
                        _ => [lo[0], lerp(hi[1], lo[1], t)],
                    }
                })
                .collect()
        }
        _ => panic!("region {region:?} is not defined for a {d}-D domain"),
    }
}

/// Uniform evaluation points: 1-D M points on the interval, 2-D an M x M grid; and a mask of
/// which points lie on the boundary of the box.
pub fn eval_grid(domain: &Domain, m: usize) -> (Vec<f64>, Vec<bool>) {
    let d = domain.dim();
    let g: Vec<f64> = (0..m).map(|k| k as f64 / (m - 1) as f64).collect();
    let on_edge = |k: usize| k == 0 || k + 1 == m;
    match d {
        1 => (g.iter().map(|t| lerp(domain.lo[0], domain.hi[0], *t)).collect(), (0..m).map(on_edge).collect()),
        2 => {
            let mut x = Vec::with_capacity(2 * m * m);
            let mut b = Vec::with_capacity(m * m);
            for i in 0..m {
                for j in 0..m {
                    x.push(lerp(domain.lo[0], domain.hi[0], g[i]));
                    x.push(lerp(domain.lo[1], domain.hi[1], g[j]));
                    b.push(on_edge(i) || on_edge(j));
                }
            }
            (x, b)
        }
        _ => panic!("{d}-D evaluation is not supported"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halton_and_grid_points() {
        assert_eq!(radical_inverse(1, 2), 0.5);
        assert_eq!(radical_inverse(3, 2), 0.75);
        assert!((radical_inverse(1, 3) - 1.0 / 3.0).abs() < 1e-15);
        let dom = Domain { lo: vec![0.0], hi: vec![1.0], time_dependent: false };
        let mut r = rng::stream(0, rng::Purpose::Collocation, 0);
        assert_eq!(sample(&dom, Region::Interior, 5, Sampling::Grid, &mut r), vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        assert_eq!(sample(&dom, Region::Boundary, 2, Sampling::Grid, &mut r), vec![0.0, 1.0]);
        let u = sample(&dom, Region::Interior, 100, Sampling::Uniform, &mut r);
        assert!(u.iter().all(|v| (0.0..1.0).contains(v)));
    }

    #[test]
    fn two_d_regions_lie_where_they_should() {
        let dom = Domain { lo: vec![0.0, -1.0], hi: vec![1.0, 1.0], time_dependent: true };
        let mut r = rng::stream(0, rng::Purpose::Collocation, 0);
        let ic = sample(&dom, Region::Initial, 10, Sampling::Uniform, &mut r);
        assert!(ic.chunks(2).all(|p| p[0] == 0.0 && (-1.0..=1.0).contains(&p[1])));
        let bc = sample(&dom, Region::Boundary, 10, Sampling::Halton, &mut r);
        assert!(bc.chunks(2).all(|p| p[1].abs() == 1.0));
        let sq = Domain { lo: vec![-1.0, -1.0], hi: vec![1.0, 1.0], time_dependent: false };
        let b = sample(&sq, Region::Boundary, 40, Sampling::Grid, &mut r);
        assert!(b.chunks(2).all(|p| p[0].abs() == 1.0 || p[1].abs() == 1.0));
        assert_eq!(count(&sq, Region::Interior, 50, Sampling::Grid), 49);
    }
}
