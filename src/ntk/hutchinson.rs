//! Stochastic NTK traces (`ntk.method: hutchinson`): tr K_ii estimated without J or K.
//!
//! For a Rademacher vector v over the N_T points of term i (entries +1 or -1 with probability
//! 1/2), E[v^T K_ii v] = tr K_ii, and v^T K_ii v = v^T J_i J_i^T v = ||J_i^T v||^2, where
//! J_i^T v is the parameter gradient of sum_n v_n r_n: one vector-Jacobian product, i.e. one
//! reverse pass. With p probes the estimate is the mean of the p values q_k = ||J_i^T v_k||^2
//! and its standard error std(q) / sqrt(p) (sample standard deviation, ddof 1). The variance
//! of one q is 2 (||K_ii||_F^2 - sum_n K_ii[n, n]^2), so a kernel dominated by a few large
//! eigenvalues (as PINN residual blocks are) needs more probes for the same relative error.
//!
//! Cost per snapshot and term: one graph-free forward per chunk of `ntk.chunk` points
//! ([`Mlp::forward_taped`]) and one hand-written reverse pass per probe and chunk
//! ([`crate::model::tape`]); memory: the tape of one chunk plus one parameter-sized
//! accumulator per probe while a term's chunks are summed (at most [`ACCUMULATOR_BYTES`];
//! further probes take further passes). Nothing grows like N^2, so point sets and widths whose
//! exact kernel does not fit can be measured. No Frobenius norms or spectra: those need K.
//!
//! The probe vectors come from their own random stream per job (seed, snapshot step), so a job
//! gets the same estimates alone or in a batch, on any rank.
//!
//! # Reference
//! M. F. Hutchinson, "A stochastic estimator of the trace of the influence matrix for
//! Laplacian smoothing splines", Comm. Statist. Simulation Comput. 19 (1990) 433-450; seed 000
//! (outlook: stochastic trace estimators instead of the explicit NTK).

use std::collections::BTreeMap;

use tch::{Device, Kind, TchError, Tensor};

use super::{Snapshot, TermPoints, TermStats};
use crate::model::mlp::Mlp;
use crate::model::normalize::Normalizer;
use crate::model::streams::Segment;
use crate::problem::Problem;
use crate::rng::{self, Purpose};

/// Most bytes of parameter-sized accumulators (one J^T v per probe) held while a term's chunks
/// are summed.
pub const ACCUMULATOR_BYTES: f64 = 512.0 * 1024.0 * 1024.0;

/// The probes of one snapshot: `count` per term, member k's drawn from the stream of its job
/// seed `seeds[k]` and the snapshot `step`.
pub struct Probes<'a> {
    pub count: usize,
    pub seeds: &'a [u64],
    pub step: u64,
}

impl Probes<'_> {
    /// The Rademacher vectors of every term, [E, p, N_T] for term sizes `sizes` (terms in
    /// order, probe-major within a term).
    pub fn draw(&self, sizes: &[i64], kind: Kind, device: Device) -> Vec<Tensor> {
        let e = self.seeds.len() as i64;
        let mut per_term: Vec<Vec<f64>> = sizes.iter().map(|&n| Vec::with_capacity(e as usize * self.count * n as usize)).collect();
        for &seed in self.seeds {
            let mut r = rng::stream(seed, Purpose::Probes, self.step);
            for (t, &n) in sizes.iter().enumerate() {
                per_term[t].extend(rng::signs(&mut r, self.count * n as usize));
            }
        }
        per_term
            .iter()
            .zip(sizes)
            .map(|(v, &n)| Tensor::from_slice(v).view([e, self.count as i64, n]).to_kind(kind).to_device(device))
            .collect()
    }
}

/// Trace estimates and their standard errors of every term block (see the module docs).
/// `scale[term]` ([E, 1]) multiplies that term's residual (eps rescaling).
pub fn snapshot(
    mlp: &Mlp,
    norm: &Normalizer,
    problem: &dyn Problem,
    points: &[TermPoints],
    scale: &BTreeMap<String, Tensor>,
    chunk: usize,
    probes: &Probes<'_>,
) -> Result<Snapshot, TchError> {
    let sizes: Vec<i64> = points.iter().map(|t| t.x.size()[1]).collect();
    let like = &points[0].x;
    let vs = probes.draw(&sizes, like.kind(), like.device());
    let mut terms = Vec::with_capacity(points.len());
    for (tp, v) in points.iter().zip(&vs) {
        let q = quadratic_forms(mlp, norm, problem, tp, scale.get(&tp.name), chunk, v)?; // [E, p]
        let trace = q.f_mean_dim(&[-1i64][..], false, Kind::Double)?;
        let stderr = if probes.count > 1 {
            q.f_to_kind(Kind::Double)?.f_std_dim(&[-1i64][..], true, false)?.f_div_scalar((probes.count as f64).sqrt())?
        } else {
            trace.f_full_like(f64::NAN)?
        };
        terms.push(TermStats { name: tp.name.clone(), frobenius: None, trace, trace_stderr: Some(stderr), eigenvalues: None });
    }
    Ok(Snapshot { terms, full_frobenius: None })
}

/// ||J^T v||^2 = v^T K v for every probe vector v of one term, by vector-Jacobian products.
///
/// # Shapes
/// `term.x`: [E, N, d]; `v`: [E, p, N]; `scale`: [E, 1]; returns [E, p].
pub fn quadratic_forms(
    mlp: &Mlp,
    norm: &Normalizer,
    problem: &dyn Problem,
    term: &TermPoints,
    scale: Option<&Tensor>,
    chunk: usize,
    v: &Tensor,
) -> Result<Tensor, TchError> {
    let (e, p, n) = v.size3()?;
    let layout = problem.layout();
    let segment = Segment { points: 0, layout: problem.term_layout(&term.name) };
    let chunks: Vec<(i64, i64)> = (0..n).step_by(chunk.max(1)).map(|c0| (c0, (chunk as i64).min(n - c0))).collect();
    // One chunk needs no accumulator: each probe's gradient is complete when it is computed.
    let per_probe = (e as usize * mlp.n_params() * v.kind().elt_size_in_bytes()) as f64;
    let group = if chunks.len() == 1 { p } else { ((ACCUMULATOR_BYTES / per_probe).floor() as i64).clamp(1, p) };
    let mut out = Vec::with_capacity(p as usize);
    for g0 in (0..p).step_by(group as usize) {
        let gl = group.min(p - g0);
        let mut acc: Vec<Option<Vec<Tensor>>> = (0..gl).map(|_| None).collect();
        for &(c0, len) in &chunks {
            let x = term.x.f_narrow(1, c0, len)?;
            let seg = [Segment { points: len, ..segment.clone() }];
            let (mut streams, tape) = mlp.forward_taped(&x, norm, &layout, &seg);
            streams.make_leaves();
            let mut r = problem.residual(&term.name, &x, &streams.points(0, len)); // [E, len]
            if let Some(s) = scale {
                r = r.f_mul(s)?;
            }
            for (j, a) in acc.iter_mut().enumerate() {
                let vj = v.f_select(1, g0 + j as i64)?.f_narrow(1, c0, len)?;
                let vjp = r.f_mul(&vj)?.f_sum(r.kind())?;
                let g = tape.parameter_gradients(mlp, &streams, &vjp, &[], (j as i64) + 1 < gl)?;
                *a = Some(match a.take() {
                    None => g,
                    Some(prev) => prev.iter().zip(&g).map(|(x, y)| x.f_add(y)).collect::<Result<_, _>>()?,
                });
            }
        }
        for a in acc {
            let mut sq: Option<Tensor> = None;
            for t in a.expect("at least one chunk") {
                let s = t.f_square()?.f_flatten(1, -1)?.f_sum_dim_intlist(&[1i64][..], false, Kind::Double)?;
                sq = Some(match sq {
                    None => s,
                    Some(prev) => prev.f_add(&s)?,
                });
            }
            out.push(sq.expect("a network has parameters"));
        }
    }
    Tensor::f_stack(&out, 1)
}
