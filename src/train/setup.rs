//! What a batch trains on: everything derived from the job specifications alone (problem,
//! normaliser, eps rescaling, NTK points, evaluation grid, schedules). None of it changes
//! during training, so none of it is saved in a checkpoint: a resumed batch rebuilds it from
//! the same specifications and gets the same values. What does change lives in
//! [`super::state::BatchState`].

use std::collections::BTreeMap;

use tch::{Device, Kind, TchError, Tensor};

use super::draw;
use super::losses::{term_losses, MemberObjective};
use super::lbfgs::{self, LbfgsConfig};
use crate::balancer::{self, Balancer};
use crate::collocation::{self, Sampling};
use crate::config::JobSpec;
use crate::model::mlp::{layer_sizes, Mlp};
use crate::model::normalize::Normalizer;
use crate::model::streams::StreamLayout;
use crate::ntk::{self, TermPoints};
use crate::problem::{exact_bc, schemes, Domain, Problem, ProblemConfig, TensorOpts, TermSpec};
use crate::rng::{self, JobRng, Purpose};

pub(crate) struct BatchSetup<'a> {
    pub specs: &'a [&'a JobSpec],
    /// Members E.
    pub e: usize,
    /// Training precision and device.
    pub opts: TensorOpts,
    pub problem: Box<dyn Problem>,
    pub domain: Domain,
    pub terms: Vec<TermSpec>,
    pub term_names: Vec<&'static str>,
    pub norm: Normalizer,
    /// Layer sizes [inputs, width, ..., 1] (inputs: d, or 2 m with Fourier features).
    pub sizes: Vec<usize>,
    /// eps rescaling of the PDE residual per member ([E, 1]; absent where nobody rescales).
    pub scale: BTreeMap<String, Tensor>,
    /// Adam steps.
    pub total: u64,
    /// Whether NTK snapshots are recorded.
    pub ntk_on: bool,
    pub spectra: bool,
    /// NTK points per term, drawn from their own stream (separate from the training batch);
    /// also needed, without recording, by a balancer that reads the NTK.
    pub ntk_points: Vec<TermPoints>,
    /// Points of the terms `model.exact_bc` satisfies, [E, N_T, d] each: they are not trained,
    /// but their loss is measured there at every logged step ([`BatchSetup::exact_losses`]).
    exact_points: Vec<(&'static str, Tensor)>,
    ntk_opts: TensorOpts,
    problem_ntk: Option<Box<dyn Problem>>,
    norm_ntk: Option<Normalizer>,
    scale_ntk: BTreeMap<String, Tensor>,
    ntk_every: u64,
    ntk_chunk: usize,
    ntk_method: ntk::NtkMethod,
    ntk_probes: usize,
    /// Every member's job seed (Hutchinson probes are drawn from it and the step).
    seeds: Vec<u64>,
    /// The L-BFGS phase after Adam (all members of a batch share it: batch key).
    pub lbfgs: Option<LbfgsConfig>,
    pub log_every: u64,
    /// Whether every member has the same learning-rate schedule (one lr for all).
    pub lr_uniform: bool,
    /// Evaluation grid (the same for every member) [M * d] and which points are on the
    /// boundary.
    pub xe: Vec<f64>,
    pub on_boundary: Vec<bool>,
    /// The grid as [E, M, d] and the exact solution there [E, M].
    pub x_eval: Tensor,
    pub u_exact: Tensor,
    exact_norm: Tensor,
    pub value_layout: StreamLayout,
    /// The layout has third derivatives (gradient-enhanced residuals), which the taped pass
    /// does not carry: every step differentiates by autograd.
    pub autograd_only: bool,
}

impl<'a> BatchSetup<'a> {
    pub fn new(specs: &'a [&'a JobSpec], device: Device) -> BatchSetup<'a> {
        let e = specs.len();
        let c0 = &specs[0].config;
        let opts = TensorOpts { kind: c0.model.dtype.kind(), device };
        let ntk_opts = TensorOpts { kind: c0.ntk.dtype.kind(), device };
        let pcfgs: Vec<&ProblemConfig> = specs.iter().map(|s| &s.config.problem).collect();
        let schemes = c0.schemes();
        let problem = schemes::build(&pcfgs, schemes, opts);
        let domain = problem.domain();
        let d = domain.dim();
        let terms = problem.terms().to_vec();
        let norm_kinds: Vec<_> = specs.iter().map(|s| s.config.model.normalization).collect();
        let norm = Normalizer::new(&norm_kinds, &domain, opts);

        // eps rescaling of the PDE residual, per member (1 where a member does not rescale).
        let mut scale: BTreeMap<String, Tensor> = BTreeMap::new();
        let mut scale_ntk: BTreeMap<String, Tensor> = BTreeMap::new();
        if specs.iter().any(|s| s.config.eps_rescale()) {
            let col: Vec<f64> = specs.iter().map(|s| if s.config.eps_rescale() { s.config.problem.eps().unwrap_or(1.0) } else { 1.0 }).collect();
            for t in terms.iter().filter(|t| t.pde) {
                scale.insert(t.name.to_string(), opts.column(&col));
                scale_ntk.insert(t.name.to_string(), ntk_opts.column(&col));
            }
        }

        let ntk_used = c0.ntk.enabled || c0.balancer.uses_ntk();
        let problem_ntk = (ntk_used && ntk_opts.kind != opts.kind).then(|| schemes::build(&pcfgs, schemes, ntk_opts));
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

        let exact_points = if schemes.exact_bc { exact_term_points(specs, &domain, opts) } else { Vec::new() };

        let (xe, on_boundary) = collocation::eval_grid(&domain, c0.evaluation.points);
        let m = on_boundary.len() as i64;
        let x_eval = Tensor::from_slice(&xe).view([1, m, d as i64]).repeat([e as i64, 1, 1]).to_kind(opts.kind).to_device(opts.device);
        let u_exact = problem.exact(&x_eval); // [E, M]
        let autograd_only = !problem.layout().tapeable();
        let exact_norm = u_exact.square().sum_dim_intlist(&[-1i64][..], false, opts.kind).sqrt();

        BatchSetup {
            specs,
            e,
            opts,
            term_names: terms.iter().map(|t| t.name).collect(),
            terms,
            norm,
            sizes: layer_sizes(c0.model.inputs(d), c0.model.width, c0.model.depth),
            scale,
            total: c0.training.total_steps(),
            ntk_on: c0.ntk.enabled,
            spectra: c0.ntk.spectra,
            ntk_points,
            exact_points,
            ntk_opts,
            problem_ntk,
            norm_ntk,
            scale_ntk,
            ntk_every: c0.ntk.every,
            ntk_chunk: c0.ntk.chunk,
            ntk_method: c0.ntk.method,
            ntk_probes: c0.ntk.probes,
            seeds: specs.iter().map(|s| s.config.seed).collect(),
            lbfgs: c0.training.lbfgs.clone().filter(|l| l.steps > 0),
            log_every: c0.training.log_every,
            lr_uniform: specs.iter().all(|s| s.config.training == c0.training),
            xe,
            on_boundary,
            x_eval,
            u_exact,
            exact_norm,
            value_layout: StreamLayout::value(d),
            autograd_only,
            problem,
            domain,
        }
    }

    /// Input dimension d.
    pub fn dim(&self) -> usize {
        self.domain.dim()
    }

    /// Steps of the whole training: Adam steps plus L-BFGS iterations.
    pub fn all_steps(&self) -> u64 {
        self.total + self.lbfgs.as_ref().map_or(0, |l| l.steps)
    }

    /// Snapshots at 0 and every `ntk.every` steps; the one at the end of training is taken
    /// where training ends (after L-BFGS when there is an L-BFGS phase).
    pub fn is_snapshot(&self, step: u64) -> bool {
        self.ntk_on && (step == 0 || (self.ntk_every > 0 && step % self.ntk_every == 0))
    }

    /// Every member's learning rate at `step`.
    pub fn lr_at(&self, step: u64) -> Vec<f64> {
        self.specs.iter().map(|s| s.config.training.lr_at(step)).collect()
    }

    /// The initial network of every member, each from its own random streams: weights,
    /// adaptive slopes, and the Fourier matrix B, which is not trained and so is rebuilt here
    /// rather than saved in a checkpoint ([`Mlp::build`]). A network too large for memory is
    /// a libtorch error, not an abort.
    pub fn init_network(&self) -> Result<Mlp, TchError> {
        let models: Vec<_> = self.specs.iter().map(|s| (&s.config.model, s.config.seed)).collect();
        let mlp = Mlp::try_build(&models, self.dim(), self.opts)?;
        debug_assert_eq!(mlp.sizes, self.sizes);
        Ok(mlp)
    }

    /// The batch's balancer at its initial state.
    pub fn build_balancer(&self) -> Box<dyn Balancer> {
        let fixed: Vec<Vec<f64>> = self.specs.iter().map(|s| self.term_names.iter().map(|t| s.config.weight(t)).collect()).collect();
        let bcfgs: Vec<_> = self.specs.iter().map(|s| &s.config.balancer).collect();
        balancer::build(&bcfgs, &balancer::BuildContext { terms: &self.terms, fixed: &fixed, seeds: &self.seeds, opts: self.opts })
    }

    /// The solution every member represents on the evaluation grid, [E, M] (the network's
    /// value, or the exact-boundary ansatz around it).
    pub fn predict(&self, mlp: &Mlp) -> Tensor {
        tch::no_grad(|| self.problem.predict(&self.x_eval, &mlp.forward(&self.x_eval, &self.norm, &self.value_layout))).detach()
    }

    /// The loss of every term `model.exact_bc` satisfies, [E] each, measured at its own points
    /// (drawn as its `collocation` entry says) through the ansatz u = g + phi N: zero up to
    /// rounding, since phi vanishes there and g holds the data. It is reported, not trained:
    /// the check that the ansatz really makes the term exact. Empty without exact terms.
    pub fn exact_losses(&self, mlp: &Mlp) -> Result<Vec<(String, Tensor)>, TchError> {
        if self.exact_points.is_empty() {
            return Ok(Vec::new());
        }
        tch::no_grad(|| term_losses(mlp, &self.norm, self.problem.as_ref(), &self.exact_points, &BTreeMap::new(), self.opts.kind))
    }

    /// Relative L2 error of every member on the evaluation grid, [E].
    pub fn rel_l2(&self, mlp: &Mlp) -> Tensor {
        let u = self.predict(mlp);
        (u - &self.u_exact).square().sum_dim_intlist(&[-1i64][..], false, self.opts.kind).sqrt() / &self.exact_norm
    }

    /// An NTK snapshot of every member. A member whose parameters are no longer finite (it
    /// diverged; the trainer notices at its next logged step) would make the batched
    /// eigensolver fail for the whole batch, and the batch would be retried job by job: such
    /// members are measured with zeroed parameters and their statistics reported as NaN.
    /// `step`: the step measured at (Hutchinson probes are drawn from it).
    pub fn measure(&self, mlp: &Mlp, spectra: bool, step: u64) -> Result<ntk::Snapshot, TchError> {
        let finite = finite_members(mlp)?;
        let est = match self.ntk_method {
            ntk::NtkMethod::Exact => ntk::Estimator::Exact { spectra },
            ntk::NtkMethod::Hutchinson => ntk::Estimator::Hutchinson(ntk::hutchinson::Probes { count: self.ntk_probes, seeds: &self.seeds, step }),
        };
        let inputs = |mlp, norm, problem, scale| ntk::NtkInputs { mlp, norm, problem, points: &self.ntk_points, scale, chunk: self.ntk_chunk };
        let snap = match (&self.problem_ntk, &self.norm_ntk, &finite) {
            (Some(p), Some(nm), _) => {
                let mk = zero_members(mlp, finite.as_ref(), self.ntk_opts.kind)?;
                ntk::measure(&est, &inputs(&mk, nm, p.as_ref(), &self.scale_ntk))?
            }
            (_, _, Some(ok)) => {
                let mk = zero_members(mlp, Some(ok), self.opts.kind)?;
                ntk::measure(&est, &inputs(&mk, &self.norm, self.problem.as_ref(), &self.scale))?
            }
            _ => ntk::measure(&est, &inputs(mlp, &self.norm, self.problem.as_ref(), &self.scale))?,
        };
        match &finite {
            Some(ok) => nan_members(snap, ok),
            None => Ok(snap),
        }
    }

    /// Member `k`'s L-BFGS objective: its frozen-weight loss on `points` (the last Adam
    /// points of every term, [E, N_T, d]) with weights `frozen[term][member]`, on a
    /// one-member network of member `k` of `mlp`'s architecture (activation, slopes, Fourier
    /// features).
    pub fn member_objective(
        &self,
        mlp: &Mlp,
        k: usize,
        points: &[(&'static str, Tensor)],
        scale: &BTreeMap<String, Tensor>,
        frozen: &[Vec<f64>],
    ) -> Result<MemberObjective, TchError> {
        let ki = k as i64;
        let norm_kinds: Vec<_> = self.specs[k..=k].iter().map(|s| s.config.model.normalization).collect();
        Ok(MemberObjective {
            problem: schemes::build(&[&self.specs[k].config.problem], self.specs[k].config.schemes(), self.opts),
            norm: Normalizer::new(&norm_kinds, &self.domain, self.opts),
            points: points.iter().map(|(n, x)| (*n, x.narrow(0, ki, 1))).collect(),
            scale: scale.iter().map(|(n, s)| (n.clone(), s.narrow(0, ki, 1))).collect(),
            weights: frozen.iter().map(|w| w[k]).collect(),
            template: lbfgs::member_network(mlp, ki, &lbfgs::flatten_member(mlp, ki)?)?,
            kind: self.opts.kind,
            autograd: self.autograd_only,
        })
    }
}

/// The points of the terms `model.exact_bc` satisfies, each member from its own stream (term
/// index among the problem's terms), drawn once for the run: as many as the term's
/// `collocation` entry asks, by its `sampling` (importance sampling, which needs a trained
/// residual, falls back to uniform; `resample` is not followed: a check needs no fresh points).
fn exact_term_points(specs: &[&JobSpec], domain: &Domain, opts: TensorOpts) -> Vec<(&'static str, Tensor)> {
    let c0 = &specs[0].config;
    let all = c0.problem.terms();
    let exact = exact_bc::exact_terms(&all);
    all.iter()
        .enumerate()
        .filter(|(_, t)| exact.contains(&t.name))
        .map(|(ti, t)| {
            let s = c0.term_points(t.name);
            let sampling = if s.sampling == Sampling::Importance { Sampling::Uniform } else { s.sampling };
            let mut rngs: Vec<JobRng> = specs.iter().map(|s| rng::stream(s.config.seed, Purpose::ExactTerms, ti as u64)).collect();
            (t.name, draw(domain, t.region, s.points, sampling, &mut rngs, opts))
        })
        .collect()
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
