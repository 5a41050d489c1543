//! Training a batch of jobs as one batched network.
//!
//! Jobs that share problem kind, architecture, step count and every other structural setting
//! (see [`crate::schedule::batch_key`]) train together: weights carry a leading member
//! dimension E, every member has its own points, losses, weights, Adam state and histories,
//! and each member's record is exactly what it would have been alone. One job is simply a
//! batch of one.
//!
//! Phases: Adam for `training.steps` (or the stages), then optionally L-BFGS for
//! `training.lbfgs.steps` iterations ([`lbfgs`]), numbered after the Adam steps in every
//! history. NTK snapshots are taken at step 0, every `ntk.every` steps of either phase, and at
//! the end of training.

pub mod adam;
pub mod lbfgs;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tch::{Device, Kind, TchError, Tensor};

use crate::balancer::{self, BalanceInputs, Weights};
use crate::collocation;
use crate::config::job::Sampling;
use crate::config::JobSpec;
use crate::model::mlp::Mlp;
use crate::model::normalize::Normalizer;
use crate::model::streams::{Segment, SegmentedStreams, StreamLayout};
use crate::model::tape::Tape;
use crate::ntk::{self, TermPoints};
use crate::problem::{Domain, Problem, ProblemConfig, Region, TensorOpts};
use crate::record::{EvalRecord, History, JobRecord, NetworkRecord, NtkRecord, NtkTermRecord, Status};
use crate::rng::{self, JobRng, Purpose};
use adam::Adam;
use lbfgs::Lbfgs;

/// What the caller of [`train_batch`] provides.
pub struct BatchContext<'a> {
    pub device: Device,
    /// Set by SIGTERM/SIGUSR1: abandon the batch (nothing is written for it).
    pub stop: &'a AtomicBool,
    /// Called after every optimisation step with the number of member-steps done.
    pub on_steps: &'a mut dyn FnMut(u64),
    /// Differentiate every step with autograd through the whole network instead of the
    /// hand-written reverse pass ([`crate::model::tape`]): the reference the tests compare with.
    pub autograd: bool,
}

pub enum BatchOutcome {
    Finished(Vec<JobRecord>),
    Interrupted,
}

/// Points of all members for one region: [E, n, d].
fn draw(domain: &Domain, region: Region, n: usize, sampling: Sampling, rngs: &mut [JobRng], opts: TensorOpts) -> Tensor {
    let d = domain.dim() as i64;
    let mut all = Vec::new();
    for r in rngs.iter_mut() {
        all.extend(collocation::sample(domain, region, n, sampling, r));
    }
    Tensor::from_slice(&all).view([rngs.len() as i64, -1, d]).to_kind(opts.kind).to_device(opts.device)
}

fn to_vec(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.detach().to_kind(Kind::Double).to_device(Device::Cpu).contiguous().view([-1])).unwrap_or_default()
}

struct TermState {
    name: &'static str,
    region: Region,
    points: usize,
    /// Uniform whenever `resample` is set (resampling means uniform random points).
    sampling: Sampling,
    resample: bool,
    rngs: Vec<JobRng>,
    x: Tensor,
}

/// Fault injection for tests and for checking a deployment's failure handling: when the
/// environment variable `NTKSWEEP_FAIL_JOB` holds a prefix of a job id in this batch, issue a
/// libtorch call with incompatible shapes, so the real libtorch error path is taken.
fn inject_failure(specs: &[&JobSpec]) -> Result<(), TchError> {
    match std::env::var("NTKSWEEP_FAIL_JOB") {
        Ok(prefix) if !prefix.is_empty() && specs.iter().any(|s| s.id.starts_with(&prefix)) => {
            Tensor::zeros([2, 3], (Kind::Float, Device::Cpu)).f_mm(&Tensor::zeros([2, 3], (Kind::Float, Device::Cpu))).map(|_| ())
        }
        _ => Ok(()),
    }
}

/// The points of all loss terms in the order they go through the network together: terms
/// with the most streams first, terms with equal needs next to each other, each term's points
/// carrying only the streams its residual reads ([`Problem::term_layout`]), so that terms
/// with equal needs form one [`Segment`].
struct TermBatch {
    /// Term indices (into the `points` the batch was built from) in network order.
    order: Vec<usize>,
    /// [E, N, d]: the points of all terms in `order`.
    x: Tensor,
    segments: Vec<Segment>,
}

impl TermBatch {
    /// `points`: (term, [E, N_T, d]).
    fn new(problem: &dyn Problem, points: &[(&'static str, Tensor)]) -> Result<TermBatch, TchError> {
        let needs: Vec<StreamLayout> = points.iter().map(|(name, _)| problem.term_layout(name)).collect();
        let mut order: Vec<usize> = (0..points.len()).collect();
        order.sort_by_key(|&t| (std::cmp::Reverse(needs[t].len()), needs.iter().position(|l| *l == needs[t])));
        let x = Tensor::f_cat(&order.iter().map(|&t| points[t].1.shallow_clone()).collect::<Vec<_>>(), 1)?;
        let blocks: Vec<(i64, &StreamLayout)> = order.iter().map(|&t| (points[t].1.size()[1], &needs[t])).collect();
        Ok(TermBatch { order, x, segments: Segment::merge(&blocks) })
    }

    /// Unweighted mean-squared loss of every term, [E] each, in the order of `points`, from
    /// the network's streams at `self.x`. `scale[term]` ([E, 1]) multiplies that term's
    /// residual (eps rescaling).
    fn losses(
        &self,
        problem: &dyn Problem,
        points: &[(&'static str, Tensor)],
        streams: &SegmentedStreams,
        scale: &BTreeMap<String, Tensor>,
        kind: Kind,
    ) -> Result<Vec<(String, Tensor)>, TchError> {
        let mut losses: Vec<Option<(String, Tensor)>> = (0..points.len()).map(|_| None).collect();
        let mut offset = 0;
        for &t in &self.order {
            let (name, x) = &points[t];
            let n = x.size()[1];
            let mut r = problem.residual(name, x, &streams.points(offset, n));
            if let Some(sc) = scale.get(*name) {
                r = r * sc;
            }
            losses[t] = Some((name.to_string(), r.square().f_mean_dim(&[-1i64][..], false, kind)?));
            offset += n;
        }
        Ok(losses.into_iter().map(|l| l.expect("every term has a loss")).collect())
    }
}

/// Unweighted mean-squared loss of every term, [E] each, with autograd graphs reaching the
/// parameters: one forward pass over the points of all terms ([`TermBatch`]). Losses come back
/// in the order of `points`.
fn term_losses(
    mlp: &Mlp,
    norm: &Normalizer,
    problem: &dyn Problem,
    points: &[(&'static str, Tensor)],
    scale: &BTreeMap<String, Tensor>,
    kind: Kind,
) -> Result<Vec<(String, Tensor)>, TchError> {
    let batch = TermBatch::new(problem, points)?;
    let streams = mlp.forward_segments(&batch.x, norm, &problem.layout(), &batch.segments);
    batch.losses(problem, points, &streams, scale, kind)
}

/// The same losses by the fast path: the network runs graph-free ([`Mlp::forward_taped`]) and
/// the losses' graphs stop at its output streams, which are leaves.
/// [`TapedLosses::parameter_gradients`] completes the reverse pass by hand.
struct TapedLosses {
    losses: Vec<(String, Tensor)>,
    /// The output streams as autograd leaves.
    streams: SegmentedStreams,
    tape: Tape,
}

impl TapedLosses {
    fn new(
        mlp: &Mlp,
        norm: &Normalizer,
        problem: &dyn Problem,
        points: &[(&'static str, Tensor)],
        scale: &BTreeMap<String, Tensor>,
        kind: Kind,
    ) -> Result<TapedLosses, TchError> {
        let batch = TermBatch::new(problem, points)?;
        let (mut streams, tape) = mlp.forward_taped(&batch.x, norm, &problem.layout(), &batch.segments);
        streams.make_leaves();
        let losses = batch.losses(problem, points, &streams, scale, kind)?;
        Ok(TapedLosses { losses, streams, tape })
    }

    /// Gradients of `loss` (a scalar built from `self.losses`) with respect to the network
    /// parameters ([`Mlp::parameters`] order) followed by `extra` (tensors the loss reaches
    /// directly, e.g. a balancer's learned weights).
    /// `keep_graph`: keep the losses' graphs for another pass (a balancer's per-term gradients
    /// before the optimiser's).
    fn parameter_gradients(&self, mlp: &Mlp, loss: &Tensor, extra: &[Tensor], keep_graph: bool) -> Result<Vec<Tensor>, TchError> {
        self.tape.parameter_gradients(mlp, &self.streams, loss, extra, keep_graph)
    }
}

/// Append one history entry for every member not yet diverged; a member with a non-finite
/// loss is marked diverged instead. `losses`, `weights`: [E] per term; `rel_l2`: [E].
#[allow(clippy::too_many_arguments)]
fn record_history(
    step: u64,
    term_names: &[&str],
    losses: &[(String, Tensor)],
    weights: &Weights,
    rel_l2: &Tensor,
    lr: &[f64],
    history: &mut [History],
    diverged: &mut [Option<(i64, String)>],
) {
    let host_losses: Vec<Vec<f64>> = losses.iter().map(|(_, l)| to_vec(l)).collect();
    let host_weights: Vec<Vec<f64>> = term_names.iter().map(|t| to_vec(weights.get(t))).collect();
    let rl2 = to_vec(rel_l2);
    for k in 0..history.len() {
        if diverged[k].is_some() {
            continue;
        }
        if let Some(ti) = (0..term_names.len()).find(|&ti| !host_losses[ti][k].is_finite()) {
            diverged[k] =
                Some((step as i64, format!("loss of term `{}` became {} at step {step}", term_names[ti], host_losses[ti][k])));
            continue;
        }
        let h = &mut history[k];
        h.step.push(step as i64);
        for (ti, t) in term_names.iter().enumerate() {
            h.loss.entry(t.to_string()).or_default().push(host_losses[ti][k]);
            h.weight.entry(t.to_string()).or_default().push(host_weights[ti][k]);
        }
        h.rel_l2.push(rl2[k]);
        h.lr.push(lr[k]);
    }
}

/// Append a snapshot's statistics to the record of every member not yet diverged.
fn record_snapshot(step: u64, snap: &ntk::Snapshot, diverged: &[Option<(i64, String)>], ntk_rec: &mut [NtkRecord]) {
    let opt_vec = |t: &Option<Tensor>| t.as_ref().map(to_vec);
    let full = opt_vec(&snap.full_frobenius);
    type Stats = (Option<Vec<f64>>, Vec<f64>, Option<Vec<f64>>, Option<Tensor>);
    let stats: Vec<Stats> = snap
        .terms
        .iter()
        .map(|t| (opt_vec(&t.frobenius), to_vec(&t.trace), opt_vec(&t.trace_stderr), t.eigenvalues.as_ref().map(|v| v.to_device(Device::Cpu))))
        .collect();
    for (k, r) in ntk_rec.iter_mut().enumerate() {
        if diverged[k].is_some() {
            continue;
        }
        r.step.push(step as i64);
        r.full_frobenius.extend(full.as_ref().map(|f| f[k]));
        for (ti, (fr, tr, se, ev)) in stats.iter().enumerate() {
            let t = &mut r.terms[ti].1;
            t.frobenius.extend(fr.as_ref().map(|f| f[k]));
            t.trace.push(tr[k]);
            t.trace_stderr.extend(se.as_ref().map(|f| f[k]));
            if let Some(ev) = ev {
                t.eigenvalues.push(to_vec(&ev.select(0, k as i64)));
            }
        }
    }
}

/// `None` when every member's parameters are finite, else a [E] mask of the finite members.
fn finite_members(mlp: &Mlp) -> Result<Option<Tensor>, TchError> {
    let mut ok: Option<Tensor> = None;
    for p in mlp.parameters() {
        let f = p.detach().f_isfinite()?.f_flatten(1, -1)?.f_all_dim(1, false)?;
        ok = Some(match ok {
            None => f,
            Some(o) => o.f_logical_and(&f)?,
        });
    }
    let ok = ok.expect("an MLP has at least one layer");
    Ok(if ok.f_all()?.f_int64_value(&[])? == 1 { None } else { Some(ok) })
}

/// Detached copy of `mlp` in `kind` (parameters requiring grad, for the NTK pass) with the
/// parameters of members outside `keep` ([E] bool) set to zero.
fn zero_members(mlp: &Mlp, keep: Option<&Tensor>, kind: Kind) -> Result<Mlp, TchError> {
    let Some(keep) = keep else { return Ok(mlp.to_kind_detached(kind)) };
    mlp.map_parameters(kind, &|p| {
        let p = p.detach().f_to_kind(kind)?;
        let mut shape = vec![-1i64];
        shape.extend(std::iter::repeat_n(1, p.dim() - 1));
        Ok(p.f_where_self(&keep.f_view(shape.as_slice())?, &p.f_zeros_like()?)?.set_requires_grad(true))
    })
}

/// Replace the statistics of members outside `keep` ([E] bool) by NaN.
fn nan_members(mut snap: ntk::Snapshot, keep: &Tensor) -> Result<ntk::Snapshot, TchError> {
    let mask = |t: &Tensor| -> Result<Tensor, TchError> {
        let mut shape = vec![-1i64];
        shape.extend(std::iter::repeat_n(1, t.dim() - 1));
        let k = keep.f_to_device(t.device())?.f_view(shape.as_slice())?;
        t.f_where_self(&k, &t.f_full_like(f64::NAN)?)
    };
    let mask_opt = |t: &Option<Tensor>| t.as_ref().map(&mask).transpose();
    snap.full_frobenius = mask_opt(&snap.full_frobenius)?;
    for t in &mut snap.terms {
        t.frobenius = mask_opt(&t.frobenius)?;
        t.trace = mask(&t.trace)?;
        t.trace_stderr = mask_opt(&t.trace_stderr)?;
        t.eigenvalues = mask_opt(&t.eigenvalues)?;
    }
    Ok(snap)
}

/// The L-BFGS objective of one member: its frozen-weight total loss sum_i lambda_i L_i on its
/// own fixed points, as a function of its flattened parameters.
struct MemberObjective {
    problem: Box<dyn Problem>,
    norm: Normalizer,
    points: Vec<(&'static str, Tensor)>,
    scale: BTreeMap<String, Tensor>,
    weights: Vec<f64>,
    /// A one-member network of the member's architecture ([`lbfgs::member_network`]).
    template: Mlp,
    kind: Kind,
}

impl MemberObjective {
    /// Loss and gradient [P] at the flattened parameters `flat` [P]: one forward and one
    /// reverse pass (the training step's fast path, [`TapedLosses`]) of the full-batch loss of
    /// a one-member network.
    fn eval(&self, flat: &Tensor) -> Result<(f64, Tensor), TchError> {
        let net = lbfgs::member_network(&self.template, 0, &flat.detach())?;
        let taped = TapedLosses::new(&net, &self.norm, self.problem.as_ref(), &self.points, &self.scale, self.kind)?;
        let mut total: Option<Tensor> = None;
        for ((_, l), w) in taped.losses.iter().zip(&self.weights) {
            let term = l.f_mul_scalar(*w)?;
            total = Some(match total {
                None => term,
                Some(t) => t.f_add(&term)?,
            });
        }
        let total = total.expect("at least one loss term").f_sum(self.kind)?;
        // Parameter gradients come in flattening order (w0, b0, w1, b1, ..., slopes).
        let grads = taped.parameter_gradients(&net, &total, &[], false)?;
        let g = Tensor::f_cat(&grads.iter().map(|g| g.reshape([-1])).collect::<Vec<_>>(), 0)?;
        Ok((total.f_double_value(&[])?, g))
    }
}

/// Train a batch. Errors from libtorch are returned (the caller marks the jobs failed).
pub fn train_batch(specs: &[&JobSpec], ctx: &mut BatchContext<'_>) -> Result<BatchOutcome, TchError> {
    let t0 = Instant::now();
    let e = specs.len();
    let c0 = &specs[0].config;
    let opts = TensorOpts { kind: c0.model.dtype.kind(), device: ctx.device };
    let ntk_opts = TensorOpts { kind: c0.ntk.dtype.kind(), device: ctx.device };
    let pcfgs: Vec<&ProblemConfig> = specs.iter().map(|s| &s.config.problem).collect();
    let problem = ProblemConfig::build(&pcfgs, opts);
    let domain = problem.domain();
    let d = domain.dim();
    let terms = problem.terms();
    let term_names: Vec<&str> = terms.iter().map(|t| t.name).collect();
    let norm_kinds: Vec<_> = specs.iter().map(|s| s.config.model.normalization).collect();
    let norm = Normalizer::new(&norm_kinds, &domain, opts);
    let models: Vec<_> = specs.iter().map(|s| (&s.config.model, s.config.seed)).collect();
    let mlp = Mlp::build(&models, d, opts);
    let sizes = mlp.sizes.clone();
    let params = mlp.parameters();
    let params_init: Vec<_> = (0..e as i64).map(|k| mlp.export_member(k)).collect();
    let slopes_init: Vec<_> = (0..e as i64).map(|k| mlp.export_slopes(k)).collect();

    // Training points per term.
    let mut state: Vec<TermState> = terms
        .iter()
        .enumerate()
        .map(|(ti, t)| {
            let ts = c0.term_points(t.name);
            let mut rngs: Vec<JobRng> = specs.iter().map(|s| rng::stream(s.config.seed, Purpose::Collocation, ti as u64)).collect();
            let sampling = if ts.resample { Sampling::Uniform } else { ts.sampling };
            let x = draw(&domain, t.region, ts.points, sampling, &mut rngs, opts);
            TermState { name: t.name, region: t.region, points: ts.points, sampling, resample: ts.resample, rngs, x }
        })
        .collect();

    // eps rescaling of the PDE residual, per member (1 where a member does not rescale).
    let mut scale: BTreeMap<String, Tensor> = BTreeMap::new();
    let mut scale_ntk: BTreeMap<String, Tensor> = BTreeMap::new();
    if specs.iter().any(|s| s.config.eps_rescale()) {
        let col: Vec<f64> = specs
            .iter()
            .map(|s| if s.config.eps_rescale() { s.config.problem.eps().unwrap_or(1.0) } else { 1.0 })
            .collect();
        for t in terms.iter().filter(|t| t.pde) {
            scale.insert(t.name.to_string(), opts.column(&col));
            scale_ntk.insert(t.name.to_string(), ntk_opts.column(&col));
        }
    }

    // NTK points, drawn from their own stream (separate from the training batch); also
    // needed, without recording, by a balancer that reads the NTK.
    let total = c0.training.total_steps();
    let ntk_on = c0.ntk.enabled;
    let ntk_used = ntk_on || c0.balancer.uses_ntk();
    let problem_ntk: Option<Box<dyn Problem>> =
        (ntk_used && ntk_opts.kind != opts.kind).then(|| ProblemConfig::build(&pcfgs, ntk_opts));
    let norm_ntk = (ntk_opts.kind != opts.kind).then(|| norm.to_kind(ntk_opts.kind));
    let ntk_points: Vec<TermPoints> = if ntk_used {
        terms
            .iter()
            .enumerate()
            .map(|(ti, t)| {
                let mut rngs: Vec<JobRng> = specs.iter().map(|s| rng::stream(s.config.seed, Purpose::NtkPoints, ti as u64)).collect();
                let x = draw(&domain, t.region, c0.ntk_points(t.name), c0.ntk.sampling, &mut rngs, ntk_opts);
                TermPoints { name: t.name.to_string(), x }
            })
            .collect()
    } else {
        Vec::new()
    };
    // L-BFGS iterations after Adam (all members of a batch share the setting: batch key).
    let lbfgs_cfg = c0.training.lbfgs.as_ref().filter(|l| l.steps > 0);
    // Snapshots at 0 and every `ntk.every` steps; the one at the end of training is taken
    // where training ends (after L-BFGS when there is an L-BFGS phase).
    let is_snapshot = |step: u64| ntk_on && (step == 0 || (c0.ntk.every > 0 && step % c0.ntk.every == 0));
    // A member whose parameters are no longer finite (it diverged; the trainer notices at its
    // next logged step) would make the batched eigensolver fail for the whole batch, and the
    // batch would be retried job by job: such members are measured with zeroed parameters and
    // their statistics reported as NaN.
    let seeds: Vec<u64> = specs.iter().map(|s| s.config.seed).collect();
    let measure = |mlp: &Mlp, spectra: bool, step: u64| -> Result<ntk::Snapshot, TchError> {
        let finite = finite_members(mlp)?;
        let est = match c0.ntk.method {
            ntk::NtkMethod::Exact => ntk::Estimator::Exact { spectra },
            ntk::NtkMethod::Hutchinson => ntk::Estimator::Hutchinson(ntk::hutchinson::Probes { count: c0.ntk.probes, seeds: &seeds, step }),
        };
        let inputs = |mlp, norm, problem, scale| ntk::NtkInputs { mlp, norm, problem, points: &ntk_points, scale, chunk: c0.ntk.chunk };
        let snap = match (&problem_ntk, &norm_ntk, &finite) {
            (Some(p), Some(nm), _) => {
                let mk = zero_members(mlp, finite.as_ref(), ntk_opts.kind)?;
                ntk::measure(&est, &inputs(&mk, nm, p.as_ref(), &scale_ntk))?
            }
            (_, _, Some(ok)) => {
                let mk = zero_members(mlp, Some(ok), opts.kind)?;
                ntk::measure(&est, &inputs(&mk, &norm, problem.as_ref(), &scale))?
            }
            _ => ntk::measure(&est, &inputs(mlp, &norm, problem.as_ref(), &scale))?,
        };
        match &finite {
            Some(ok) => nan_members(snap, ok),
            None => Ok(snap),
        }
    };

    let fixed: Vec<Vec<f64>> = specs.iter().map(|s| term_names.iter().map(|t| s.config.weight(t)).collect()).collect();
    let bcfgs: Vec<_> = specs.iter().map(|s| &s.config.balancer).collect();
    let mut balancer = balancer::build(&bcfgs, &balancer::BuildContext { terms, fixed: &fixed, seeds: &seeds, opts });
    let mut opt_params: Vec<Tensor> = params.iter().map(|p| p.shallow_clone()).collect();
    opt_params.extend(balancer.extra_params());
    let tc = &c0.training;
    let mut adam = Adam::new(&opt_params, tc.beta1, tc.beta2, tc.adam_eps);

    // Evaluation grid (the same for every member).
    let (xe, on_boundary) = collocation::eval_grid(&domain, c0.evaluation.points);
    let m = on_boundary.len() as i64;
    let x_eval = Tensor::from_slice(&xe).view([1, m, d as i64]).repeat([e as i64, 1, 1]).to_kind(opts.kind).to_device(opts.device);
    let u_exact = problem.exact(&x_eval); // [E, M]
    let exact_norm = u_exact.square().sum_dim_intlist(&[-1i64][..], false, opts.kind).sqrt();
    let value_layout = StreamLayout::value(d);
    let rel_l2 = |mlp: &Mlp| -> Tensor {
        let u = tch::no_grad(|| mlp.forward(&x_eval, &norm, &value_layout).u());
        (u - &u_exact).square().sum_dim_intlist(&[-1i64][..], false, opts.kind).sqrt() / &exact_norm
    };

    let mut history: Vec<History> = vec![History::default(); e];
    let mut ntk_rec: Vec<NtkRecord> = (0..e)
        .map(|k| NtkRecord {
            terms: ntk_points
                .iter()
                .map(|tp| (tp.name.clone(), NtkTermRecord { x: to_vec(&tp.x.select(0, k as i64)), ..Default::default() }))
                .collect(),
            ..Default::default()
        })
        .collect();
    let mut diverged: Vec<Option<(i64, String)>> = vec![None; e];
    // Balancers read the gradients of the layers' weights and biases (w0, b0, w1, b1, ...):
    // the adaptive slopes, listed after them, are left out.
    let n_layer_params = 2 * mlp.layers.len();
    let param_refs: Vec<&Tensor> = params[..n_layer_params].iter().collect();
    let lr_uniform = specs.iter().all(|s| s.config.training == *tc);

    inject_failure(specs)?;
    for step in 0..=total {
        if ctx.stop.load(Ordering::Relaxed) {
            return Ok(BatchOutcome::Interrupted);
        }
        // One snapshot serves both the record and the balancer when both want this step.
        let record_ntk = is_snapshot(step) || (ntk_on && step == total && lbfgs_cfg.is_none());
        let snap = if record_ntk || balancer.needs_ntk(step) { Some(measure(&mlp, record_ntk && c0.ntk.spectra, step)?) } else { None };
        if let Some(snap) = snap.as_ref().filter(|_| record_ntk) {
            record_snapshot(step, snap, &diverged, &mut ntk_rec);
        }
        let points: Vec<(&'static str, Tensor)> = state.iter().map(|s| (s.name, s.x.shallow_clone())).collect();
        // The hand-written reverse pass unless the autograd reference was asked for.
        let (losses, taped) = if ctx.autograd {
            (term_losses(&mlp, &norm, problem.as_ref(), &points, &scale, opts.kind)?, None)
        } else {
            let t = TapedLosses::new(&mlp, &norm, problem.as_ref(), &points, &scale, opts.kind)?;
            (t.losses.iter().map(|(n, l)| (n.clone(), l.shallow_clone())).collect(), Some(t))
        };
        // Per-term parameter gradients for balancers that read them, by the same path.
        let param_grads = |loss: &Tensor| -> Result<Vec<Tensor>, TchError> {
            let loss = loss.f_sum(loss.kind())?;
            match &taped {
                None => balancer::gradients(&loss, &param_refs),
                Some(t) => t.parameter_gradients(&mlp, &loss, &[], true).map(|mut g| {
                    g.truncate(n_layer_params);
                    g
                }),
            }
        };
        let lr_now: Vec<f64> = specs.iter().map(|s| s.config.training.lr_at(step)).collect();
        // Update before logging: the weight recorded at a step is the one used at that step.
        balancer.update(&BalanceInputs { step, losses: &losses, param_grads: Some(&param_grads), ntk: snap.as_ref() })?;
        if step % tc.log_every == 0 || step == total {
            record_history(step, &term_names, &losses, balancer.weights(), &rel_l2(&mlp), &lr_now, &mut history, &mut diverged);
        }
        if step == total || diverged.iter().all(Option::is_some) {
            break;
        }
        let loss = balancer.total_loss(&losses).f_sum(opts.kind)?;
        let grads = match &taped {
            None => Tensor::f_run_backward(&[loss], &opt_params, false, false)?,
            Some(t) => t.parameter_gradients(&mlp, &loss, &opt_params[params.len()..], false)?,
        };
        let lr = if lr_uniform { Tensor::full([e as i64], lr_now[0], (opts.kind, opts.device)) } else { opts.column(&lr_now).view([-1]) };
        adam.step(&opt_params, &grads, &lr)?;
        for s in state.iter_mut().filter(|s| s.resample) {
            s.x = draw(&domain, s.region, s.points, s.sampling, &mut s.rngs, opts);
        }
        (ctx.on_steps)(e as u64);
    }

    // L-BFGS phase, member by member (see lbfgs.rs, "Members"), on the points of the last
    // Adam step with the balancer's weights of that step frozen. Steps continue Adam's
    // numbering; `train/lr` records the accepted line-search step length.
    if let Some(lcfg) = lbfgs_cfg.filter(|_| diverged.iter().any(Option::is_none)) {
        let points: Vec<(&'static str, Tensor)> = state.iter().map(|s| (s.name, s.x.shallow_clone())).collect();
        let frozen: Vec<Vec<f64>> = term_names.iter().map(|t| to_vec(balancer.weights().get(t))).collect();
        let mut members: Vec<Option<(Lbfgs, MemberObjective)>> = Vec::with_capacity(e);
        for k in 0..e {
            if diverged[k].is_some() {
                members.push(None);
                continue;
            }
            let ki = k as i64;
            let objective = MemberObjective {
                problem: ProblemConfig::build(&pcfgs[k..=k], opts),
                norm: Normalizer::new(&norm_kinds[k..=k], &domain, opts),
                points: points.iter().map(|(n, x)| (*n, x.narrow(0, ki, 1))).collect(),
                scale: scale.iter().map(|(n, s)| (n.clone(), s.narrow(0, ki, 1))).collect(),
                weights: frozen.iter().map(|w| w[k]).collect(),
                template: lbfgs::member_network(&mlp, ki, &lbfgs::flatten_member(&mlp, ki)?)?,
                kind: opts.kind,
            };
            let opt = Lbfgs::new(lcfg, &lbfgs::flatten_member(&mlp, ki)?, &mut |x: &Tensor| objective.eval(x))?;
            members.push(Some((opt, objective)));
        }
        let mut step_length = vec![0.0; e];
        for i in 1..=lcfg.steps {
            if ctx.stop.load(Ordering::Relaxed) {
                return Ok(BatchOutcome::Interrupted);
            }
            let step = total + i;
            for (k, m) in members.iter_mut().enumerate() {
                let Some((opt, objective)) = m else { continue };
                let it = opt.iterate(&mut |x: &Tensor| objective.eval(x))?;
                step_length[k] = it.t;
                lbfgs::write_member(&mlp, k as i64, opt.x())?;
            }
            // Progress counts an L-BFGS iteration of a member like an Adam step.
            (ctx.on_steps)(members.iter().flatten().count() as u64);
            // Stop early once every member has converged (the end of training is then here).
            let finished = i == lcfg.steps || members.iter().flatten().all(|(opt, _)| opt.converged().is_some());
            if ntk_on && (is_snapshot(step) || finished) {
                record_snapshot(step, &measure(&mlp, c0.ntk.spectra, step)?, &diverged, &mut ntk_rec);
            }
            if step % tc.log_every == 0 || finished {
                let losses = tch::no_grad(|| term_losses(&mlp, &norm, problem.as_ref(), &points, &scale, opts.kind))?;
                record_history(step, &term_names, &losses, balancer.weights(), &rel_l2(&mlp), &step_length, &mut history, &mut diverged);
            }
            if finished {
                break;
            }
        }
    }

    // Final evaluation.
    let u_pred = tch::no_grad(|| mlp.forward(&x_eval, &norm, &value_layout).u());
    let err = &u_pred - &u_exact;
    let wall = t0.elapsed().as_secs_f64();
    let records = (0..e)
        .map(|k| {
            let ki = k as i64;
            let base = JobRecord {
                status: Status::Done,
                message: String::new(),
                dim: d,
                sizes: sizes.clone(),
                history: std::mem::take(&mut history[k]),
                ntk: ntk_on.then(|| std::mem::take(&mut ntk_rec[k])),
                eval: None,
                params_init: Some(params_init[k].clone()),
                params_final: Some(mlp.export_member(ki)),
                network: NetworkRecord { slopes_init: slopes_init[k].clone(), slopes_final: mlp.export_slopes(ki), fourier_b: mlp.export_fourier(ki) },
                wall_seconds: wall,
                batch_size: e,
                diverged_step: None,
            };
            if let Some((s, msg)) = diverged[k].take() {
                return JobRecord { status: Status::Diverged, message: msg, diverged_step: Some(s), ..base };
            }
            let error = to_vec(&err.select(0, ki));
            let up = to_vec(&u_pred.select(0, ki));
            let ue = to_vec(&u_exact.select(0, ki));
            let norm_e = ue.iter().map(|v| v * v).sum::<f64>().sqrt();
            let rel = error.iter().map(|v| v * v).sum::<f64>().sqrt() / norm_e.max(f64::MIN_POSITIVE);
            let max_abs = error.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            let boundary = error.iter().zip(&on_boundary).filter(|(_, b)| **b).fold(0.0f64, |a, (v, _)| a.max(v.abs()));
            let spectrum = (d == 1).then(|| {
                let t = Tensor::from_slice(&error).fft_rfft(None, -1, "backward").abs();
                to_vec(&t)
            });
            JobRecord {
                eval: Some(EvalRecord {
                    x: xe.clone(),
                    u_pred: up,
                    u_exact: ue,
                    error,
                    rel_l2: rel,
                    max_abs_error: max_abs,
                    boundary_error: boundary,
                    error_spectrum: spectrum,
                }),
                ..base
            }
        })
        .collect();
    Ok(BatchOutcome::Finished(records))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::config::Sweep;

    fn train(specs: &[&JobSpec], autograd: bool) -> Vec<JobRecord> {
        let stop = AtomicBool::new(false);
        let mut on = |_| {};
        let mut ctx = BatchContext { device: Device::Cpu, stop: &stop, on_steps: &mut on, autograd };
        match train_batch(specs, &mut ctx).unwrap() {
            BatchOutcome::Finished(r) => r,
            BatchOutcome::Interrupted => panic!("interrupted"),
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-10 * b.abs().max(1e-3)
    }

    /// The training step's hand-written reverse pass gives the losses, weights and final
    /// parameters of autograd through the whole network, for every problem (1-D, 2-D,
    /// time-dependent, nonlinear, mixed stream layouts) and every balancer (including one with
    /// learned weights and two that take per-term parameter gradients through `param_grads`),
    /// for a batch of two members with different seeds and eps.
    #[test]
    fn hand_written_reverse_pass_trains_like_autograd() {
        // Poisson and regression without normalisation: under zscore a zero-bias tanh network is
        // odd about the domain's centre, Poisson's boundary residuals at 0 and 1 cancel, the
        // output bias's gradient is rounding noise, and Adam's first step turns noise into a
        // full-size step: both passes are right and still differ at 1e-6.
        let problems = [
            ("{kind: darcy1d, eps: 0.25}", "[0.25, 0.5]", "zscore"),
            ("{kind: poisson1d, eps: 0.5}", "[0.5, 0.25]", "none"),
            ("{kind: wave1d}", "", "zscore"),
            ("{kind: klein_gordon1d}", "", "minmax"),
            ("{kind: helmholtz2d}", "", "zscore"),
            ("{kind: regression1d, eps: 0.2}", "[0.2, 0.1]", "none"),
        ];
        let mut cases: Vec<(&str, &str, &str, &str, &str)> = problems.iter().map(|(p, e, n)| (*p, *e, *n, "none", "")).collect();
        for b in ["{kind: ntk, every: 4}", "{kind: grad_stats, every: 4}", "softadapt", "relobralo", "{kind: gradnorm, every: 3}", "uncertainty", "eps_rescale"] {
            cases.push(("{kind: darcy1d, eps: 0.25}", "[0.25, 0.5]", "zscore", b, ""));
        }
        // Network schemes (activations, adaptive slopes, Fourier features), also with balancers
        // that read parameter gradients or Hutchinson NTK traces.
        cases.extend([
            ("{kind: darcy1d, eps: 0.25}", "[0.25, 0.5]", "zscore", "none", ", activation: sin, adaptive_activation: layerwise"),
            ("{kind: wave1d}", "", "zscore", "none", ", activation: gelu, adaptive_activation: {kind: global, scale: 2}, fourier: {features: 3, sigma: 1}"),
            ("{kind: helmholtz2d}", "", "minmax", "none", ", activation: silu, fourier: {features: 4, sigma: 0.5}"),
            ("{kind: darcy1d, eps: 0.25}", "[0.25, 0.5]", "zscore", "{kind: gradnorm, every: 3}", ", activation: silu, adaptive_activation: global"),
            ("{kind: darcy1d, eps: 0.25}", "[0.25, 0.5]", "zscore", "{kind: grad_stats, every: 4}", ", adaptive_activation: layerwise, fourier: {features: 4, sigma: 2}"),
            ("{kind: darcy1d, eps: 0.25}", "[0.25, 0.5]", "zscore", "{kind: ntk, every: 4}", ", adaptive_activation: global, method: hutchinson"),
        ]);
        for (problem, eps, normalization, balancer, scheme) in cases {
            let (model_extra, ntk_extra) = match scheme.split_once(", method: ") {
                Some((m, method)) => (m.to_string(), format!(", method: {method}, probes: 4")),
                None => (scheme.to_string(), String::new()),
            };
            let mut text = format!(
                "problem: {problem}\nmodel: {{width: 8, depth: 2, dtype: float64, normalization: {normalization}{model_extra}}}\n\
                 training: {{steps: 10, log_every: 2, lr: 1.0e-2}}\nntk: {{enabled: false{ntk_extra}}}\nevaluation: {{points: 30}}\n\
                 balancer: {balancer}\nsweep:\n  seed: [3, 8]\n"
            );
            if !eps.is_empty() {
                text.push_str(&format!("  problem.eps: {eps}\n"));
            }
            let s = Sweep::parse(&text, "t.yaml", "t", &[]).unwrap_or_else(|e| panic!("{problem}: {e}"));
            let pair: Vec<&JobSpec> = [0, s.jobs.len() - 1].iter().map(|&k| &s.jobs[k]).collect();
            let (fast, reference) = (train(&pair, false), train(&pair, true));
            for (k, (f, r)) in fast.iter().zip(&reference).enumerate() {
                let what = format!("{problem}, {balancer}{scheme}, member {k}");
                assert_eq!(f.history.step, r.history.step, "{what}");
                for (term, lr) in &r.history.loss {
                    for (i, (a, b)) in f.history.loss[term].iter().zip(lr).enumerate() {
                        assert!(close(*a, *b), "{what}, {term} loss at log {i}: {a} vs autograd {b}");
                    }
                    for (a, b) in f.history.weight[term].iter().zip(&r.history.weight[term]) {
                        assert!(close(*a, *b), "{what}, {term} weight: {a} vs autograd {b}");
                    }
                }
                let (pf, pr) = (f.params_final.as_ref().unwrap(), r.params_final.as_ref().unwrap());
                for ((wf, bf), (wr, br)) in pf.iter().zip(pr) {
                    for (a, b) in wf.iter().chain(bf).zip(wr.iter().chain(br)) {
                        assert!(close(*a, *b), "{what}: final parameter {a} vs autograd {b}");
                    }
                }
                // The parameters moved (the comparison is not between two untrained nets).
                let p0 = f.params_init.as_ref().unwrap();
                assert!(p0[0].0.iter().zip(&pf[0].0).any(|(a, b)| (a - b).abs() > 1e-6), "{what}: parameters did not move");
                let (sf, sr) = (&f.network.slopes_final, &r.network.slopes_final);
                assert_eq!(sf.is_some(), scheme.contains("adaptive"), "{what}: slopes recorded");
                if let (Some(sf), Some(sr), Some(s0)) = (sf, sr, &f.network.slopes_init) {
                    for (a, b) in sf.iter().zip(sr) {
                        assert!(close(*a, *b), "{what}: final slope {a} vs autograd {b}");
                    }
                    assert!(s0.iter().zip(sf).any(|(a, b)| (a - b).abs() > 1e-6), "{what}: slopes did not move");
                }
                assert_eq!(f.network.fourier_b, r.network.fourier_b, "{what}: Fourier features");
            }
        }
    }

    /// One step's parameter gradients, and the L-BFGS objective's flattened gradient: hand-written
    /// pass vs autograd, every problem.
    #[test]
    fn taped_gradients_equal_autograd_gradients() {
        let problems = ["{kind: darcy1d, eps: 0.25}", "{kind: poisson1d, eps: 0.5}", "{kind: wave1d}", "{kind: klein_gordon1d}", "{kind: helmholtz2d}", "{kind: regression1d, eps: 0.2}"];
        // Plain tanh networks, and networks with another activation, adaptive slopes and
        // Fourier features (whose one-member L-BFGS networks must carry all three).
        let schemes = ["", ", activation: gelu, adaptive_activation: {kind: layerwise, scale: 2}, fourier: {features: 3, sigma: 1}"];
        for (problem, scheme) in problems.iter().flat_map(|p| schemes.iter().map(move |s| (p, s))) {
            let text = format!("problem: {problem}\nmodel: {{width: 8, depth: 2, dtype: float64, normalization: zscore{scheme}}}\ntraining: {{steps: 1}}\nevaluation: {{points: 20}}\n");
            let s = Sweep::parse(&text, "t.yaml", "t", &[]).unwrap();
            let opts = TensorOpts { kind: Kind::Double, device: Device::Cpu };
            let c = &s.jobs[0].config;
            let p = ProblemConfig::build(&[&c.problem], opts);
            let domain = p.domain();
            let norm = Normalizer::new(&[c.model.normalization], &domain, opts);
            let mlp = Mlp::build(&[(&c.model, 1)], domain.dim(), opts);
            let points: Vec<(&'static str, Tensor)> = p
                .terms()
                .iter()
                .enumerate()
                .map(|(ti, t)| {
                    let mut r = vec![rng::stream(1, Purpose::Collocation, ti as u64)];
                    (t.name, draw(&domain, t.region, 7, Sampling::Uniform, &mut r, opts))
                })
                .collect();
            let scale = BTreeMap::new();
            let total = |l: &[(String, Tensor)]| l.iter().fold(Tensor::zeros([1], (Kind::Double, Device::Cpu)), |a, (_, x)| a + x).sum(Kind::Double);
            let want = Tensor::run_backward(&[total(&term_losses(&mlp, &norm, p.as_ref(), &points, &scale, Kind::Double).unwrap())], &mlp.parameters(), false, false);
            let t = TapedLosses::new(&mlp, &norm, p.as_ref(), &points, &scale, Kind::Double).unwrap();
            let got = t.parameter_gradients(&mlp, &total(&t.losses), &[], false).unwrap();
            for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                let err = (g - w).abs().max().double_value(&[]) / w.abs().max().double_value(&[]);
                assert!(err < 1e-12, "{problem}{scheme} parameter {k}: rel err {err}");
            }
            // The L-BFGS objective (same pass, flattened) against autograd on the flat vector.
            let weights: Vec<f64> = (0..points.len()).map(|t| 1.0 + t as f64).collect();
            let objective = MemberObjective {
                problem: ProblemConfig::build(&[&c.problem], opts),
                norm: Normalizer::new(&[c.model.normalization], &domain, opts),
                points: points.iter().map(|(n, x)| (*n, x.shallow_clone())).collect(),
                scale: BTreeMap::new(),
                weights: weights.clone(),
                template: lbfgs::member_network(&mlp, 0, &lbfgs::flatten_member(&mlp, 0).unwrap()).unwrap(),
                kind: Kind::Double,
            };
            let flat = lbfgs::flatten_member(&mlp, 0).unwrap();
            let (value, grad) = objective.eval(&flat).unwrap();
            let leaf = flat.detach().set_requires_grad(true);
            let net = lbfgs::member_network(&mlp, 0, &leaf).unwrap();
            let losses = term_losses(&net, &norm, p.as_ref(), &points, &scale, Kind::Double).unwrap();
            let total = losses.iter().zip(&weights).fold(Tensor::zeros([1], (Kind::Double, Device::Cpu)), |a, ((_, l), w)| a + l * *w).sum(Kind::Double);
            assert!((value - total.double_value(&[])).abs() <= 1e-12 * value.abs());
            let want = Tensor::run_backward(&[total], &[&leaf], false, false).remove(0);
            let err = (&grad - &want).abs().max().double_value(&[]) / want.abs().max().double_value(&[]);
            assert!(err < 1e-12, "{problem}{scheme} L-BFGS gradient: rel err {err}");
        }
    }
}
