//! Importance sampling of a term's training points (`collocation.<term>.sampling:
//! importance`, with `pool` and `every`).
//!
//! Every `every` steps (the first at step 0) each member draws a pool of P uniform points of
//! the term's region from the term's own collocation stream, evaluates the term's residual r
//! there with the current network, and draws its N training points from the pool with
//! replacement, point j with probability q_j = r_j^2 / sum_k r_k^2. Its loss is then
//!   L = (1/N) sum_n w_n r(x_n)^2,   w_n = f / q_(j_n) = sum_k r_k^2 / (P r_(j_n)^2)
//! (f = 1/P, the uniform density on the pool), an unbiased estimate of the mean squared
//! residual over the pool whatever q is, with a smaller variance where the residual is
//! concentrated. The weights multiply the squared residual (the trainer folds sqrt(w) into the
//! term's residual scale). A pool whose residuals are all zero (or not finite) gives uniform
//! probabilities and w = 1. Points and weights stay fixed between redraws, and with the
//! stream they are part of the batch state (saved in checkpoints).
//!
//! # Reference
//! M. A. Nabian, R. J. Gladstone & H. Meidani, "Efficient training of physics-informed neural
//! networks via importance sampling", Computer-Aided Civil and Infrastructure Engineering 36
//! (2021) 962-977, eqs. (9)-(12); seed 002, eqs. 54-55.

use tch::{Kind, TchError, Tensor};

use super::setup::BatchSetup;
use super::state::TermState;
use super::{draw, to_vec};
use crate::collocation::Sampling;
use crate::model::mlp::Mlp;
use crate::model::streams::Segment;
use crate::rng;

/// A term's importance-sampling state.
///
/// # Shapes
/// `weights`: [E, N], the f/q of each training point.
pub(crate) struct Importance {
    pub pool: usize,
    pub every: u64,
    pub weights: Tensor,
}

/// Member-wise draw of `n` indices into a pool with squared residuals `r2` ([P]), from the
/// uniforms `u` ([n]); returns the indices and their weights f/q.
pub(crate) fn choose(r2: &[f64], u: &[f64]) -> (Vec<i64>, Vec<f64>) {
    let p = r2.len();
    let total: f64 = r2.iter().sum();
    if !(total.is_finite() && total > 0.0) {
        // Uniform probabilities: index floor(u P), weight 1.
        return (u.iter().map(|&v| ((v * p as f64) as usize).min(p - 1) as i64).collect(), vec![1.0; u.len()]);
    }
    let mut cdf = Vec::with_capacity(p);
    let mut acc = 0.0;
    for &v in r2 {
        acc += v / total;
        cdf.push(acc);
    }
    u.iter()
        .map(|&v| {
            // First j with cdf_j > v (zero-probability points are never chosen).
            let j = cdf.partition_point(|&c| c <= v).min(p - 1);
            let j = (0..=j).rev().find(|&k| r2[k] > 0.0).unwrap_or(j);
            (j as i64, total / (p as f64 * r2[j]))
        })
        .unzip()
}

/// Redraw `term`'s points and weights from a fresh pool (see the module text).
pub(crate) fn redraw(setup: &BatchSetup<'_>, mlp: &Mlp, term: &mut TermState) -> Result<(), TchError> {
    let imp = term.importance.as_mut().expect("an importance-sampled term");
    let pool = draw(&setup.domain, term.region, imp.pool, Sampling::Uniform, &mut term.rngs, setup.opts); // [E, P, d]
    let problem = setup.problem.as_ref();
    let needs = problem.term_layout(term.name);
    let n_pool = pool.size()[1];
    let r = tch::no_grad(|| {
        let s = mlp.forward_segments(&pool, &setup.norm, &problem.layout(), &[Segment { points: n_pool, layout: needs }]);
        problem.residual(term.name, &pool, &s.points(0, n_pool)).detach()
    });
    let r2 = r.f_to_kind(Kind::Double)?.f_square()?;
    let (mut idx, mut w) = (Vec::new(), Vec::new());
    for (k, rng) in term.rngs.iter_mut().enumerate() {
        let (i, wk) = choose(&to_vec(&r2.select(0, k as i64)), &rng::uniforms(rng, term.points));
        idx.extend(i);
        w.extend(wk);
    }
    let (e, n, d) = (term.rngs.len() as i64, term.points as i64, pool.size()[2]);
    let idx = Tensor::from_slice(&idx).view([e, n, 1]).to_device(setup.opts.device);
    term.x = pool.f_gather(1, &idx.expand([e, n, d], false), false)?;
    imp.weights = Tensor::from_slice(&w).view([e, n]).to_kind(setup.opts.kind).to_device(setup.opts.device);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-computed: r^2 = [1, 3, 0, 4] (sum 8, P = 4): q = [1/8, 3/8, 0, 1/2], cdf =
    /// [0.125, 0.5, 0.5, 1]. u = 0.1 -> index 0, w = 8 / (4 * 1) = 2; u = 0.3 -> 1,
    /// w = 8 / 12 = 0.6667; u = 0.5 -> 3 (index 2 has probability 0), w = 8 / 16 = 0.5;
    /// u = 0.99 -> 3, w = 0.5. The weighted mean of r^2 over the draws estimates
    /// mean r^2 = 2 exactly in expectation: sum_j q_j (f/q_j) r_j^2 = (1/P) sum r^2.
    #[test]
    fn indices_and_weights_by_hand() {
        let (i, w) = choose(&[1.0, 3.0, 0.0, 4.0], &[0.1, 0.3, 0.5, 0.99]);
        assert_eq!(i, vec![0, 1, 3, 3]);
        let want = [2.0, 8.0 / 12.0, 0.5, 0.5];
        for (a, b) in w.iter().zip(want) {
            assert!((a - b).abs() < 1e-15, "{w:?}");
        }
        // Unbiased: the expectation of w r^2 under q is the pool mean of r^2.
        let r2 = [1.0, 3.0, 0.0, 4.0];
        let q: Vec<f64> = r2.iter().map(|v| v / 8.0).collect();
        let expectation: f64 = (0..4).filter(|&j| q[j] > 0.0).map(|j| q[j] * (8.0 / (4.0 * r2[j])) * r2[j]).sum();
        assert!((expectation - 2.0).abs() < 1e-15);
        // All-zero residuals: uniform, weight 1.
        let (i, w) = choose(&[0.0; 4], &[0.1, 0.6]);
        assert_eq!((i, w), (vec![0, 2], vec![1.0, 1.0]));
    }
}
