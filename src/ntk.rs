//! The empirical Neural Tangent Kernel of the loss terms.
//!
//! For loss terms i with residual vectors r_i (one entry per point), J_i = d r_i / d theta and
//! K_ij = J_i J_j^T. Every residual is a function of the network's derivative streams at its
//! own point only, and every layer applies the same weights to every stream, so the per-point
//! gradient of the residual with respect to a weight matrix W_l is a sum of outer products:
//!
//!   d r_n / d W_l = sum_s g_{s,n} h_{s,n}^T,   d r_n / d b_l = g_{0,n}
//!
//! where h_{s,n} is the layer's input stream s at point n and g_{s,n} = d r_n / d z_{s,n} the
//! gradient with respect to its pre-activation stream (one reverse pass of sum_n r_n gives all
//! of them at once, because points do not interact). Hence, without materialising J,
//!
//!   K[n, m] = sum_l [ sum_{s,s'} (g_{s,n} . g_{s',m}) (h_{s,n} . h_{s',m}) + g_{0,n} . g_{0,m} ]
//!
//! which costs S^2 small matrix products per layer instead of an [N, P] Jacobian (P = all
//! parameters). [`jacobian`] materialises J from the same factors for tests and for users who
//! want it; the tests compare both against one backward pass per point.
//!
//! Adaptive activation slopes ([`crate::model::adaptive`]) are folded into the weights,
//! W' = c_l W with c_l = n a_l, so the factors above are taken on the effective network and
//! converted: the weight and bias columns of hidden layer l are c_l times the effective ones
//! (g is scaled by c_l), and the slope a_g has the per-point column
//!
//!   d r_n / d a_g = n sum_{l in g} [ sum_s g'_{s,n} . (W_l h_{s,n}) + g'_{0,n} . b_l ]
//!
//! ([`Factors::slopes`], Q [E, N, G]), which adds Q Q^T to the kernel.
//!
//! Memory: the factors take 8 * E * S * N * sum_l (in_l + out_l) bytes in float64 and the
//! kernel 8 * E * N^2 (N = points of all terms together); the reverse passes run over chunks of
//! `ntk.chunk` points, so the autograd graph is bounded by the chunk. When the kernel is too
//! large, `ntk.method: hutchinson` ([`hutchinson`]) estimates the block traces from
//! vector-Jacobian products without J or K.
//!
//! # Reference
//! Jacot et al. (2018); Wang, Yu & Perdikaris (2022), eq. (3.4) for the PINN kernel blocks;
//! paper 003, Lemma 3.1.

pub mod hutchinson;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tch::{Kind, TchError, Tensor};

use crate::model::mlp::{Linear, Mlp};
use crate::model::normalize::Normalizer;
use crate::problem::Problem;

/// `ntk.method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NtkMethod {
    /// The kernel from exact per-point Jacobians: Frobenius norms, traces and spectra.
    #[default]
    Exact,
    /// Trace estimates E[v^T K_ii v] with Rademacher v and their standard errors only.
    Hutchinson,
}

impl NtkMethod {
    pub fn name(self) -> &'static str {
        match self {
            NtkMethod::Exact => "exact",
            NtkMethod::Hutchinson => "hutchinson",
        }
    }

    pub fn is_exact(&self) -> bool {
        *self == NtkMethod::Exact
    }
}

/// How a snapshot is measured.
pub enum Estimator<'a> {
    /// [`factors`] + [`snapshot`], with or without eigenvalue spectra.
    Exact { spectra: bool },
    /// [`hutchinson::snapshot`].
    Hutchinson(hutchinson::Probes<'a>),
}

/// What a snapshot is measured on: the network (in the kernel's precision), its input
/// normalisation, the problem, every term's NTK points, the residual scales (eps rescaling,
/// [E, 1] per term) and the points per reverse pass (`ntk.chunk`).
pub struct NtkInputs<'a> {
    pub mlp: &'a Mlp,
    pub norm: &'a Normalizer,
    pub problem: &'a dyn Problem,
    pub points: &'a [TermPoints],
    pub scale: &'a BTreeMap<String, Tensor>,
    pub chunk: usize,
}

/// One snapshot of every term by `estimator`.
pub fn measure(estimator: &Estimator<'_>, i: &NtkInputs<'_>) -> Result<Snapshot, TchError> {
    match estimator {
        Estimator::Exact { spectra } => snapshot(&factors(i.mlp, i.norm, i.problem, i.points, i.scale, i.chunk)?, *spectra),
        Estimator::Hutchinson(probes) => hutchinson::snapshot(i, probes),
    }
}

/// Points of one term for the NTK, [E, N, d], in the kernel's precision.
pub struct TermPoints {
    pub name: String,
    pub x: Tensor,
}

/// Per-layer factors of the per-point residual gradients, all terms concatenated along N.
///
/// # Shapes
/// `g[l]`: [E, S, N, out_l]; `h[l]`: [E, S, N, in_l].
pub struct Factors {
    pub g: Vec<Tensor>,
    pub h: Vec<Tensor>,
    /// Per-point derivatives of the residuals with respect to the adaptive slopes a,
    /// [E, N, G] (None without adaptive activations).
    pub slopes: Option<Tensor>,
    /// (term, start, len) along N.
    pub blocks: Vec<(String, i64, i64)>,
}

/// Compute the gradient factors. `scale[term]` ([E, 1]) multiplies that term's residual
/// (eps rescaling).
pub fn factors(
    mlp: &Mlp,
    norm: &Normalizer,
    problem: &dyn Problem,
    points: &[TermPoints],
    scale: &BTreeMap<String, Tensor>,
    chunk: usize,
) -> Result<Factors, TchError> {
    let layout = problem.layout();
    let n_layers = mlp.layers.len();
    let mut g: Vec<Vec<Tensor>> = (0..n_layers).map(|_| Vec::new()).collect();
    let mut h: Vec<Vec<Tensor>> = (0..n_layers).map(|_| Vec::new()).collect();
    let mut q: Vec<Tensor> = Vec::new();
    let mut blocks = Vec::new();
    let mut start = 0;
    for tp in points {
        let n = tp.x.size()[1];
        blocks.push((tp.name.clone(), start, n));
        start += n;
        let mut c0 = 0;
        while c0 < n {
            let len = (chunk as i64).min(n - c0);
            let x = tp.x.f_narrow(1, c0, len)?;
            let (streams, rec) = mlp.forward_recording(&x, norm, &layout);
            let mut r = problem.residual(&tp.name, &x, &streams);
            if let Some(s) = scale.get(&tp.name) {
                r = r * s;
            }
            let pre: Vec<&Tensor> = rec.iter().map(|l| &l.pre).collect();
            let grads = Tensor::f_run_backward(&[r.f_sum(r.kind())?], &pre, false, false)?;
            let mut dc = Vec::new();
            for (l, (gr, lr)) in grads.into_iter().zip(rec).enumerate() {
                let input = lr.input.detach();
                let gr = match &mlp.slopes {
                    Some(s) if l + 1 < n_layers => {
                        dc.push(slope_column(&mlp.layers[l], &gr, &input)?);
                        gr.f_mul(&s.factor(l).detach().f_view([-1, 1, 1, 1])?)?
                    }
                    _ => gr,
                };
                g[l].push(gr);
                h[l].push(input);
            }
            if let Some(s) = &mlp.slopes {
                q.push(s.collect(&dc)?.detach());
            }
            c0 += len;
        }
    }
    let cat = |v: Vec<Vec<Tensor>>| -> Result<Vec<Tensor>, TchError> { v.iter().map(|parts| Tensor::f_cat(parts, 2)).collect() };
    let slopes = if q.is_empty() { None } else { Some(Tensor::f_cat(&q, 1)?) };
    Ok(Factors { g: cat(g)?, h: cat(h)?, slopes, blocks })
}

/// d r_n / d c_l of hidden layer l (c_l = n a_l) from the effective layer's factors: with
/// W' = c_l W, b' = c_l b, it is <d r_n / d W', W> + <d r_n / d b', b>
/// = sum_s g'_{s,n} . (W h_{s,n}) + g'_{0,n} . b.
///
/// # Shapes
/// `g`: [E, S, N, out]; `h`: [E, S, N, in]; returns [E, N].
fn slope_column(layer: &Linear, g: &Tensor, h: &Tensor) -> Result<Tensor, TchError> {
    let (w, b) = (layer.w.detach(), layer.b.detach());
    let wh = h.f_matmul(&w.f_unsqueeze(1)?.f_transpose(-1, -2)?)?; // [E, S, N, out]
    let streams = g.f_mul(&wh)?.f_sum_dim_intlist(&[1i64, 3][..], false, g.kind())?;
    let bias = g.f_select(1, 0)?.f_mul(&b.f_unsqueeze(1)?)?.f_sum_dim_intlist(&[-1i64][..], false, g.kind())?;
    streams.f_add(&bias)
}

/// The full kernel K = J J^T over all terms' points, [E, N, N].
pub fn kernel(f: &Factors) -> Result<Tensor, TchError> {
    let mut k: Option<Tensor> = None;
    let mut add = |t: Tensor| {
        k = Some(match k.take() {
            None => t,
            Some(acc) => acc + t,
        })
    };
    for (g, h) in f.g.iter().zip(&f.h) {
        let s = g.size()[1];
        for a in 0..s {
            let (ga, ha) = (g.select(1, a), h.select(1, a));
            for b in a..s {
                let (gb, hb) = (g.select(1, b), h.select(1, b));
                let p = ga.f_bmm(&gb.transpose(1, 2))? * ha.f_bmm(&hb.transpose(1, 2))?;
                if a == b {
                    add(p);
                } else {
                    let pt = p.transpose(1, 2);
                    add(p + pt);
                }
            }
        }
        // Bias: enters the value stream only.
        let g0 = g.select(1, 0);
        add(g0.f_bmm(&g0.transpose(1, 2))?);
    }
    if let Some(q) = &f.slopes {
        add(q.f_bmm(&q.transpose(1, 2))?);
    }
    Ok(k.expect("at least one layer"))
}

/// Materialised per-point Jacobian J [E, N, P], parameters in the order w0, b0, w1, b1, ...
/// (weights flattened row-major as [out, in]), then the slopes ([`Mlp::parameters`] order).
pub fn jacobian(f: &Factors) -> Result<Tensor, TchError> {
    let mut parts = Vec::new();
    for (g, h) in f.g.iter().zip(&f.h) {
        let (e, _, n, o) = g.size4()?;
        let i = h.size()[3];
        let jw = Tensor::f_einsum("esno,esni->enoi", &[g, h], None::<&[i64]>)?.reshape([e, n, o * i]);
        parts.push(jw);
        parts.push(g.select(1, 0));
    }
    parts.extend(f.slopes.as_ref().map(|q| q.shallow_clone()));
    Tensor::f_cat(&parts, 2)
}

/// One snapshot's statistics, per member. The exact method fills every field but
/// `trace_stderr`; the Hutchinson method only `trace` (an estimate) and `trace_stderr`.
///
/// # Shapes
/// `frobenius`, `trace`, `trace_stderr`: [E]; `eigenvalues`: [E, N_T] descending;
/// `full_frobenius`: [E].
pub struct Snapshot {
    pub terms: Vec<TermStats>,
    pub full_frobenius: Option<Tensor>,
}

pub struct TermStats {
    pub name: String,
    pub frobenius: Option<Tensor>,
    pub trace: Tensor,
    pub trace_stderr: Option<Tensor>,
    pub eigenvalues: Option<Tensor>,
}

/// Frobenius norm, trace and (optionally) the symmetric eigenvalue spectrum of every diagonal
/// block K_ii, and the Frobenius norm of the full K.
pub fn snapshot(f: &Factors, spectra: bool) -> Result<Snapshot, TchError> {
    let k = kernel(f)?;
    let mut terms = Vec::new();
    for (name, start, len) in &f.blocks {
        let block = k.f_narrow(1, *start, *len)?.f_narrow(2, *start, *len)?;
        let frobenius = block.square().f_sum_dim_intlist(&[1i64, 2][..], false, Kind::Double)?.sqrt();
        let trace = block.diagonal(0, 1, 2).f_sum_dim_intlist(&[-1i64][..], false, Kind::Double)?;
        let eigenvalues = if spectra {
            // Symmetrise against round-off before the symmetric solver.
            let sym = (&block + block.transpose(1, 2)) * 0.5;
            Some(sym.f_linalg_eigvalsh("L")?.flip([-1]))
        } else {
            None
        };
        terms.push(TermStats { name: name.clone(), frobenius: Some(frobenius), trace, trace_stderr: None, eigenvalues });
    }
    let full_frobenius = k.square().f_sum_dim_intlist(&[1i64, 2][..], false, Kind::Double)?.sqrt();
    Ok(Snapshot { terms, full_frobenius: Some(full_frobenius) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::{Init, Normalization};
    use crate::model::mlp::layer_sizes;
    use crate::problem::darcy1d::Darcy1dConfig;
    use crate::problem::multiscale::Coefficient;
    use crate::problem::{ProblemConfig, TensorOpts};
    use crate::rng;
    use tch::Device;

    fn opts() -> TensorOpts {
        TensorOpts { kind: Kind::Double, device: Device::Cpu }
    }

    fn darcy(eps: &[f64]) -> Box<dyn Problem> {
        let cfgs: Vec<ProblemConfig> = eps
            .iter()
            .map(|&eps| ProblemConfig::Darcy1d(Darcy1dConfig { eps, coefficient: Coefficient::default() }))
            .collect();
        let refs: Vec<&ProblemConfig> = cfgs.iter().collect();
        ProblemConfig::build(&refs, opts())
    }

    fn net(sizes: &[usize], e: usize, seed: u64, init: Init) -> Mlp {
        let mut m: Vec<_> = (0..e).map(|_| (init, rng::stream(seed, rng::Purpose::Init, 0))).collect();
        Mlp::init(sizes, &mut m, opts())
    }

    fn points(e: i64, n: i64) -> Vec<TermPoints> {
        let xr = Tensor::linspace(0.01, 0.99, n, (Kind::Double, Device::Cpu)).view([1, n, 1]).repeat([e, 1, 1]);
        let xb = Tensor::from_slice(&[0.0f64, 1.0]).view([1, 2, 1]).repeat([e, 1, 1]);
        vec![TermPoints { name: "residual".into(), x: xr }, TermPoints { name: "boundary".into(), x: xb }]
    }

    fn norm(e: usize, p: &dyn Problem) -> Normalizer {
        Normalizer::new(&vec![Normalization::None; e], &p.domain(), opts())
    }

    /// One backward pass per point: the slow, obviously-correct Jacobian.
    fn naive_jacobian(mlp: &Mlp, p: &dyn Problem, pts: &[TermPoints]) -> Tensor {
        let nm = norm(1, p);
        let params = mlp.parameters();
        let mut rows = Vec::new();
        for tp in pts {
            let s = mlp.forward(&tp.x, &nm, &p.layout());
            let r = p.residual(&tp.name, &tp.x, &s);
            for n in 0..tp.x.size()[1] {
                let g = Tensor::run_backward(&[r.select(0, 0).select(0, n)], &params, true, false);
                // A parameter the residual does not reach (the last bias, for u'') has gradient zero.
                rows.push(Tensor::cat(&g.iter().zip(&params).map(|(t, p)| if t.defined() { t.reshape([-1]) } else { p.zeros_like().reshape([-1]) }).collect::<Vec<_>>(), 0));
            }
        }
        Tensor::stack(&rows, 0)
    }

    #[test]
    fn jacobian_matches_one_backward_pass_per_point() {
        let p = darcy(&[0.125]);
        let mlp = net(&layer_sizes(1, 12, 3), 1, 3, Init::Normal);
        let pts = points(1, 9);
        let f = factors(&mlp, &norm(1, p.as_ref()), p.as_ref(), &pts, &BTreeMap::new(), 4).unwrap();
        let j = jacobian(&f).unwrap().select(0, 0);
        let jn = naive_jacobian(&mlp, p.as_ref(), &pts);
        assert_eq!(j.size(), jn.size());
        let rel = (&j - &jn).abs().max().double_value(&[]) / jn.abs().max().double_value(&[]);
        assert!(rel < 1e-12, "relative error {rel}");
        // The Gram-trick kernel equals J J^T.
        let k = kernel(&f).unwrap().select(0, 0);
        let kj = jn.matmul(&jn.transpose(0, 1));
        let rel = (&k - &kj).abs().max().double_value(&[]) / kj.abs().max().double_value(&[]);
        assert!(rel < 1e-12, "kernel relative error {rel}");
    }

    #[test]
    fn kernel_is_symmetric_psd_and_trace_is_sum_of_eigenvalues() {
        let p = darcy(&[0.25, 0.0625]);
        let mlp = net(&layer_sizes(1, 10, 2), 2, 5, Init::XavierNormal);
        let pts = points(2, 15);
        let f = factors(&mlp, &norm(2, p.as_ref()), p.as_ref(), &pts, &BTreeMap::new(), 512).unwrap();
        let k = kernel(&f).unwrap();
        let asym = (&k - k.transpose(1, 2)).abs().max().double_value(&[]) / k.abs().max().double_value(&[]);
        assert!(asym < 1e-13);
        let ev = k.linalg_eigvalsh("L");
        let min = ev.min().double_value(&[]);
        let max = ev.max().double_value(&[]);
        assert!(min > -1e-10 * max, "not PSD: min eigenvalue {min}, max {max}");
        let s = snapshot(&f, true).unwrap();
        for t in &s.terms {
            let ev = t.eigenvalues.as_ref().unwrap();
            let sum = ev.sum_dim_intlist(&[-1i64][..], false, Kind::Double);
            let rel = ((&sum - &t.trace).abs() / t.trace.abs()).max().double_value(&[]);
            assert!(rel < 1e-10, "{}: trace vs eigenvalue sum {rel}", t.name);
            // Descending.
            let d = ev.narrow(1, 0, ev.size()[1] - 1) - ev.narrow(1, 1, ev.size()[1] - 1);
            assert!(d.min().double_value(&[]) >= 0.0);
            // Frobenius of a symmetric matrix = 2-norm of its eigenvalues.
            let fe = ev.square().sum_dim_intlist(&[-1i64][..], false, Kind::Double).sqrt();
            let fr = t.frobenius.as_ref().unwrap();
            assert!(((&fe - fr).abs() / fr).max().double_value(&[]) < 1e-10);
        }
    }

    /// K_res of a one-hidden-layer network u(x) = sum_k c_k tanh(w_k x + b_k) + d, with every
    /// derivative of the darcy residual r = -A u'' - B u' - f (A = a(x/eps), B = a'(x/eps)/eps)
    /// written out by hand (paper 003, proof of Theorem 3.2):
    ///   dr/dc_k = -A w_k^2 s2 - B w_k s1
    ///   dr/dw_k = -A c_k (2 w_k s2 + w_k^2 x s3) - B c_k (s1 + w_k x s2)
    ///   dr/db_k = -A c_k w_k^2 s3 - B c_k w_k s2,     dr/dd = 0
    /// with s1 = 1 - t^2, s2 = -2 t s1, s3 = -2 s1^2 + 4 t^2 s1 at t = tanh(w_k x + b_k).
    #[test]
    fn one_hidden_layer_kernel_matches_closed_form() {
        let eps = 0.125;
        let p = darcy(&[eps]);
        let m = 7;
        let mlp = net(&[1, m, 1], 1, 11, Init::Normal);
        let params = mlp.export_member(0);
        let (w, b) = (&params[0].0, &params[0].1);
        let c = &params[1].0;
        let xs: Vec<f64> = (0..6).map(|k| 0.05 + 0.17 * k as f64).collect();
        let pi2 = 2.0 * std::f64::consts::PI;
        let grad = |x: f64| -> Vec<f64> {
            let a = 2.0 + (pi2 * x / eps).sin();
            let bb = pi2 * (pi2 * x / eps).cos() / eps;
            let mut g = vec![0.0; 3 * m + 1];
            for k in 0..m {
                let t = (w[k] * x + b[k]).tanh();
                let s1 = 1.0 - t * t;
                let s2 = -2.0 * t * s1;
                let s3 = -2.0 * s1 * s1 + 4.0 * t * t * s1;
                g[k] = -a * c[k] * (2.0 * w[k] * s2 + w[k] * w[k] * x * s3) - bb * c[k] * (s1 + w[k] * x * s2); // w_k
                g[m + k] = -a * c[k] * w[k] * w[k] * s3 - bb * c[k] * w[k] * s2; // b_k
                g[2 * m + k] = -a * w[k] * w[k] * s2 - bb * w[k] * s1; // c_k
            }
            g
        };
        let gs: Vec<Vec<f64>> = xs.iter().map(|&x| grad(x)).collect();
        let x = Tensor::from_slice(&xs).view([1, -1, 1]);
        let pts = vec![TermPoints { name: "residual".into(), x }];
        let f = factors(&mlp, &norm(1, p.as_ref()), p.as_ref(), &pts, &BTreeMap::new(), 512).unwrap();
        let k = kernel(&f).unwrap().select(0, 0);
        for i in 0..xs.len() {
            for j in 0..xs.len() {
                let expected: f64 = gs[i].iter().zip(&gs[j]).map(|(a, b)| a * b).sum();
                let got = k.double_value(&[i as i64, j as i64]);
                assert!((got - expected).abs() <= 1e-10 * expected.abs().max(1.0), "K[{i},{j}] = {got}, closed form {expected}");
            }
        }
    }

    /// Paper 003, section 4.1: at initialisation ||K_res||_F grows like eps^-2 while ||K_bc||_F
    /// does not depend on eps.
    #[test]
    fn residual_block_grows_like_eps_to_the_minus_two() {
        let eps: Vec<f64> = (1..=6).map(|k| 2f64.powi(-k)).collect();
        let e = eps.len();
        let p = darcy(&eps);
        let mlp = net(&layer_sizes(1, 64, 3), e, 0, Init::XavierNormal); // same weights for every eps
        let n = 100;
        let xr = Tensor::linspace(0.0, 1.0, n, (Kind::Double, Device::Cpu)).view([1, n, 1]).repeat([e as i64, 1, 1]);
        let xb = Tensor::from_slice(&[0.0f64, 1.0]).view([1, 2, 1]).repeat([e as i64, 1, 1]);
        let pts = vec![TermPoints { name: "residual".into(), x: xr }, TermPoints { name: "boundary".into(), x: xb }];
        let f = factors(&mlp, &norm(e, p.as_ref()), p.as_ref(), &pts, &BTreeMap::new(), 512).unwrap();
        let s = snapshot(&f, false).unwrap();
        let fr = Vec::<f64>::try_from(s.terms[0].frobenius.as_ref().unwrap()).unwrap();
        let fb = Vec::<f64>::try_from(s.terms[1].frobenius.as_ref().unwrap()).unwrap();
        let lx: Vec<f64> = eps.iter().map(|v| v.ln()).collect();
        let ly: Vec<f64> = fr.iter().map(|v| v.ln()).collect();
        let (mx, my) = (lx.iter().sum::<f64>() / e as f64, ly.iter().sum::<f64>() / e as f64);
        let slope = lx.iter().zip(&ly).map(|(x, y)| (x - mx) * (y - my)).sum::<f64>() / lx.iter().map(|x| (x - mx).powi(2)).sum::<f64>();
        assert!((-2.1..=-1.9).contains(&slope), "fitted exponent {slope}");
        for v in &fb {
            assert!((v - fb[0]).abs() < 1e-12 * fb[0], "boundary block depends on eps: {fb:?}");
        }
    }

    /// Every activation, adaptive slopes (global and layer-wise: their Jacobian columns
    /// included) and Fourier features: the factored Jacobian equals one backward pass per
    /// point, and the kernel equals J J^T, for darcy1d (1-D, u' and u'') and helmholtz2d (2-D).
    #[test]
    fn jacobian_and_kernel_of_every_scheme_match_per_point_autograd() {
        let helmholtz: ProblemConfig = serde_yaml_ng::from_str("{kind: helmholtz2d}").unwrap();
        let problems: Vec<(Box<dyn Problem>, Vec<TermPoints>)> = vec![
            (darcy(&[0.25]), points(1, 7)),
            (ProblemConfig::build(&[&helmholtz], opts()), {
                let x = |lo: f64| Tensor::rand([1, 5, 2], (Kind::Double, Device::Cpu)) * 2.0 + lo;
                vec![TermPoints { name: "residual".into(), x: x(-1.0) }, TermPoints { name: "boundary".into(), x: x(-1.0).clamp(-1.0, 1.0) }]
            }),
        ];
        for (label, cfg) in crate::model::testing::schemes(6, 2) {
            for (p, pts) in &problems {
                let d = p.domain().dim();
                let mlp = crate::model::testing::network(&cfg, d, 1);
                let f = factors(&mlp, &norm(1, p.as_ref()), p.as_ref(), pts, &BTreeMap::new(), 4).unwrap();
                assert_eq!(f.slopes.is_some(), mlp.slopes.is_some(), "{label}");
                let j = jacobian(&f).unwrap().select(0, 0);
                let jn = naive_jacobian(&mlp, p.as_ref(), pts);
                assert_eq!(j.size(), jn.size(), "{label}: every parameter has its column");
                assert_eq!(j.size()[1], mlp.n_params() as i64);
                let rel = (&j - &jn).abs().max().double_value(&[]) / jn.abs().max().double_value(&[]);
                assert!(rel < 1e-10, "{label}, {d}-D: Jacobian relative error {rel}");
                let k = kernel(&f).unwrap().select(0, 0);
                let kj = jn.matmul(&jn.transpose(0, 1));
                let rel = (&k - &kj).abs().max().double_value(&[]) / kj.abs().max().double_value(&[]);
                assert!(rel < 1e-10, "{label}, {d}-D: kernel relative error {rel}");
            }
        }
    }
    /// Exact Dirichlet conditions and gradient-enhanced residuals: the factored Jacobian of
    /// every remaining term (residual_grad included, through third-derivative streams) equals
    /// one backward pass per point and the kernel equals J J^T; the terms the ansatz satisfies
    /// have no block.
    #[test]
    fn jacobian_and_kernel_under_exact_conditions_and_gradient_enhanced_residuals() {
        use crate::problem::schemes::{self, Schemes};
        for (yaml, exact_bc, gradient_enhanced) in [("{kind: darcy1d, eps: 0.25}", true, true), ("{kind: darcy1d, eps: 0.25}", false, true), ("{kind: wave1d}", true, true), ("{kind: helmholtz2d}", true, false)] {
            let cfg: ProblemConfig = serde_yaml_ng::from_str(yaml).unwrap();
            let p = schemes::build(&[&cfg], Schemes { exact_bc, gradient_enhanced }, opts());
            let d = p.domain().dim();
            let lo = Tensor::from_slice(&p.domain().lo);
            let hi = Tensor::from_slice(&p.domain().hi);
            let pts: Vec<TermPoints> = p.terms().iter().map(|t| TermPoints { name: t.name.to_string(), x: Tensor::rand([1, 5, d as i64], (Kind::Double, Device::Cpu)) * (&hi - &lo) + &lo }).collect();
            assert!(!pts.iter().any(|t| t.name == "boundary") || !exact_bc, "{yaml}");
            let mlp = crate::model::testing::network(&crate::model::config::ModelConfig { width: 6, depth: 2, ..Default::default() }, d, 1);
            let f = factors(&mlp, &norm(1, p.as_ref()), p.as_ref(), &pts, &BTreeMap::new(), 3).unwrap();
            let j = jacobian(&f).unwrap().select(0, 0);
            let jn = naive_jacobian(&mlp, p.as_ref(), &pts);
            let rel = (&j - &jn).abs().max().double_value(&[]) / jn.abs().max().double_value(&[]);
            assert!(rel < 1e-10, "{yaml}: Jacobian relative error {rel}");
            let k = kernel(&f).unwrap().select(0, 0);
            let kj = jn.matmul(&jn.transpose(0, 1));
            let rel = (&k - &kj).abs().max().double_value(&[]) / kj.abs().max().double_value(&[]);
            assert!(rel < 1e-10, "{yaml}: kernel relative error {rel}");
            let s = snapshot(&f, false).unwrap();
            let names: Vec<&str> = s.terms.iter().map(|t| t.name.as_str()).collect();
            assert_eq!(names.contains(&"residual_grad"), gradient_enhanced, "{yaml}: {names:?}");
            assert!(!(exact_bc && (names.contains(&"boundary") || names.contains(&"initial"))), "{yaml}: {names:?}");
        }
    }
}

