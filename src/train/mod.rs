//! Training a batch of jobs as one batched network.
//!
//! Jobs that share problem kind, architecture, step count and every other structural setting
//! (see [`crate::schedule::batch_key`]) train together: weights carry a leading member
//! dimension E, every member has its own points, losses, weights, Adam state and histories,
//! and each member's record is exactly what it would have been alone. One job is simply a
//! batch of one.
//!
//! A batch is its fixed set-up ([`setup::BatchSetup`], derived from the job specifications)
//! and its state ([`state::BatchState`], everything that changes), which moves through
//! explicit phases:
//! - set-up: the initial network, points, balancer and records ([`state::BatchState::fresh`]),
//!   or a checkpoint restored over them;
//! - Adam steps for `training.steps` (or the stages), with NTK snapshots at step 0, every
//!   `ntk.every` steps and at the end of training;
//! - L-BFGS for `training.lbfgs.steps` iterations ([`lbfgs`]), numbered after the Adam steps
//!   in every history, snapshots continuing;
//! - finish: the evaluation on the uniform grid and one [`JobRecord`] per member.
//!
//! Between two steps of either phase the whole state can be saved ([`Checkpoints`]): every
//! `--checkpoint-every` minutes, and when a signal asks the batch to stop. A batch restored
//! from that state continues bit for bit as if it had not been interrupted.

pub mod adam;
mod importance;
pub mod lbfgs;
mod losses;
mod setup;
mod state;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tch::{Device, Kind, TchError, Tensor};

use crate::balancer::{self, BalanceInputs};
use crate::checkpoint::{CheckpointError, StateDict};
use crate::collocation;
use crate::config::job::Sampling;
use crate::config::JobSpec;
use crate::problem::{Domain, Region, TensorOpts};
use crate::record::{EvalRecord, JobRecord, NetworkRecord, Status};
use crate::rng::JobRng;
use lbfgs::Lbfgs;
use losses::{term_losses, MemberObjective, TapedLosses};
use setup::BatchSetup;
use state::{optimised, BatchState, Phase};

/// What the caller of [`train_batch`] provides.
pub struct BatchContext<'a> {
    pub device: Device,
    /// Set by SIGTERM/SIGUSR1/SIGINT: save the state (when there are checkpoints) and stop.
    pub stop: &'a AtomicBool,
    /// Called after every optimisation step with the number of member-steps done.
    pub on_steps: &'a mut dyn FnMut(u64),
    /// Differentiate every step with autograd through the whole network instead of the
    /// hand-written reverse pass ([`crate::model::tape`]): the reference the tests compare with.
    pub autograd: bool,
    /// Where the batch's state is saved and found again; None: no checkpoints (a stop then
    /// abandons the batch).
    pub checkpoints: Option<&'a mut dyn Checkpoints>,
}

/// How far a saved batch was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Optimisation steps done (Adam steps, then Adam steps + L-BFGS iterations).
    pub step: u64,
    /// Steps of the whole training.
    pub total: u64,
    /// `adam`, `lbfgs` or `done`.
    pub phase: &'static str,
}

/// Storage of a batch's checkpoints (a file per batch in a run, memory in tests).
pub trait Checkpoints {
    /// The saved state to resume from, if any (asked once, before the first step).
    fn resume(&mut self) -> Option<StateDict>;
    /// Whether a periodic save is due (asked at every step boundary).
    fn due(&mut self) -> bool;
    /// Keep `state`; a failure to store it is the store's to report, training goes on.
    fn save(&mut self, state: &StateDict, progress: Progress);
}

pub enum BatchOutcome {
    Finished(Vec<JobRecord>),
    /// Stopped by a signal; its state was handed to [`Checkpoints::save`] when there are
    /// checkpoints.
    Interrupted,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("libtorch error: {0}")]
    Torch(#[from] TchError),
    /// The saved state does not fit this batch (another version, a damaged file): the caller
    /// may start the batch afresh.
    #[error("cannot resume from the checkpoint: {0}")]
    Resume(CheckpointError),
    #[error("cannot save the batch's state: {0}")]
    Save(CheckpointError),
    #[error("panic: {0}")]
    Panic(String),
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

/// Train a batch: set-up (fresh, or restored from [`Checkpoints::resume`]), then the phases
/// from wherever the state is, then the evaluation. Errors from libtorch are returned (the
/// caller marks the jobs failed).
pub fn train_batch(specs: &[&JobSpec], ctx: &mut BatchContext<'_>) -> Result<BatchOutcome, TrainError> {
    let t0 = Instant::now();
    let setup = BatchSetup::new(specs, ctx.device);
    let mut state = BatchState::fresh(&setup)?;
    if let Some(saved) = ctx.checkpoints.as_mut().and_then(|c| c.resume()) {
        state.restore(&setup, &saved).map_err(TrainError::Resume)?;
        (ctx.on_steps)(state.steps_done(&setup) * setup.e as u64);
    }
    inject_failure(specs)?;
    loop {
        let go_on = match state.phase {
            Phase::Adam { .. } => adam_phase(&setup, &mut state, ctx, t0)?,
            Phase::Lbfgs { .. } => lbfgs_phase(&setup, &mut state, ctx, t0)?,
            Phase::Done => break,
        };
        if !go_on {
            return Ok(BatchOutcome::Interrupted);
        }
    }
    Ok(BatchOutcome::Finished(finish(&setup, state, t0)))
}

/// At a boundary between two steps: save the state when a periodic save is due, and when
/// asked to stop (then return false: the batch ends here).
fn boundary(setup: &BatchSetup<'_>, state: &BatchState, ctx: &mut BatchContext<'_>, t0: Instant) -> Result<bool, TrainError> {
    let stop = ctx.stop.load(Ordering::Relaxed);
    if let Some(c) = ctx.checkpoints.as_mut() {
        if stop || c.due() {
            let saved = state.save(setup, t0.elapsed().as_secs_f64()).map_err(TrainError::Save)?;
            c.save(&saved, Progress { step: state.steps_done(setup), total: setup.all_steps(), phase: state.phase.name() });
        }
    }
    Ok(!stop)
}

/// Adam steps from where the state is to the end of the phase (or until every member has
/// diverged). Returns false when stopped.
fn adam_phase(setup: &BatchSetup<'_>, state: &mut BatchState, ctx: &mut BatchContext<'_>, t0: Instant) -> Result<bool, TrainError> {
    let Phase::Adam { next } = state.phase else { unreachable!("adam_phase in another phase") };
    let e = setup.e;
    let params = state.mlp.parameters();
    // Balancers read the gradients of the layers' weights and biases (w0, b0, w1, b1, ...):
    // the adaptive slopes, listed after them, are left out.
    let n_layer_params = 2 * state.mlp.layers.len();
    let param_refs: Vec<&Tensor> = params[..n_layer_params].iter().collect();
    let opt_params = optimised(&state.mlp, state.balancer.as_ref());
    for step in next..=setup.total {
        state.phase = Phase::Adam { next: step };
        if !boundary(setup, state, ctx, t0)? {
            return Ok(false);
        }
        // One snapshot serves both the record and the balancer when both want this step.
        let record_ntk = setup.is_snapshot(step) || (setup.ntk_on && step == setup.total && setup.lbfgs.is_none());
        let snap = if record_ntk || state.balancer.needs_ntk(step) { Some(setup.measure(&state.mlp, record_ntk && setup.spectra, step)?) } else { None };
        if let Some(snap) = snap.as_ref().filter(|_| record_ntk) {
            state.records.snapshot(step, snap);
        }
        for t in state.terms.iter_mut() {
            if t.importance.as_ref().is_some_and(|i| step % i.every == 0) {
                importance::redraw(setup, &state.mlp, t)?;
            }
        }
        let points: Vec<(&'static str, Tensor)> = state.terms.iter().map(|s| (s.name, s.x.shallow_clone())).collect();
        let scale = state.loss_scale(setup);
        // The hand-written reverse pass unless the autograd reference was asked for.
        let (losses, taped) = if ctx.autograd || setup.autograd_only {
            (term_losses(&state.mlp, &setup.norm, setup.problem.as_ref(), &points, &scale, setup.opts.kind)?, None)
        } else {
            let t = TapedLosses::new(&state.mlp, &setup.norm, setup.problem.as_ref(), &points, &scale, setup.opts.kind)?;
            (t.losses.iter().map(|(n, l)| (n.clone(), l.shallow_clone())).collect(), Some(t))
        };
        // Per-term parameter gradients for balancers that read them, by the same path.
        let mlp = &state.mlp;
        let param_grads = |loss: &Tensor| -> Result<Vec<Tensor>, TchError> {
            let loss = loss.f_sum(loss.kind())?;
            match &taped {
                None => balancer::gradients(&loss, &param_refs),
                Some(t) => t.parameter_gradients(mlp, &loss, &[], true).map(|mut g| {
                    g.truncate(n_layer_params);
                    g
                }),
            }
        };
        let lr_now = setup.lr_at(step);
        // Update before logging: the weight recorded at a step is the one used at that step.
        state.balancer.update(&BalanceInputs { step, losses: &losses, param_grads: Some(&param_grads), ntk: snap.as_ref() })?;
        if step % setup.log_every == 0 || step == setup.total {
            state.records.history(step, &setup.term_names, &losses, state.balancer.weights(), &setup.rel_l2(&state.mlp), &lr_now, &setup.exact_losses(&state.mlp)?);
        }
        if step == setup.total || state.records.all_diverged() {
            break;
        }
        let loss = state.balancer.total_loss(&losses).f_sum(setup.opts.kind)?;
        let grads = match &taped {
            None => Tensor::f_run_backward(&[loss], &opt_params, false, false)?,
            Some(t) => t.parameter_gradients(&state.mlp, &loss, &opt_params[params.len()..], false)?,
        };
        let lr = if setup.lr_uniform { Tensor::full([e as i64], lr_now[0], (setup.opts.kind, setup.opts.device)) } else { setup.opts.column(&lr_now).view([-1]) };
        state.adam.step(&opt_params, &grads, &lr)?;
        for s in state.terms.iter_mut().filter(|s| s.resample) {
            s.x = draw(&setup.domain, s.region, s.points, s.sampling, &mut s.rngs, setup.opts);
        }
        (ctx.on_steps)(e as u64);
    }
    state.phase = match &setup.lbfgs {
        Some(cfg) if !state.records.all_diverged() => start_lbfgs(setup, state, cfg)?,
        _ => Phase::Done,
    };
    Ok(true)
}

/// The L-BFGS objective of every member that has an optimiser (see lbfgs.rs, "Members"): on
/// the points of the last Adam step with the balancer's weights of that step frozen.
fn member_objectives(setup: &BatchSetup<'_>, state: &BatchState, active: &[bool]) -> Result<Vec<Option<MemberObjective>>, TchError> {
    let points: Vec<(&'static str, Tensor)> = state.terms.iter().map(|s| (s.name, s.x.shallow_clone())).collect();
    let frozen: Vec<Vec<f64>> = setup.term_names.iter().map(|t| to_vec(state.balancer.weights().get(t))).collect();
    let scale = state.loss_scale(setup);
    active.iter().enumerate().map(|(k, &a)| a.then(|| setup.member_objective(&state.mlp, k, &points, &scale, &frozen)).transpose()).collect()
}

/// The L-BFGS phase's start: one optimiser per member that has not diverged (each evaluates
/// its objective once).
fn start_lbfgs(setup: &BatchSetup<'_>, state: &BatchState, cfg: &lbfgs::LbfgsConfig) -> Result<Phase, TchError> {
    let active: Vec<bool> = state.records.diverged.iter().map(Option::is_none).collect();
    let objectives = member_objectives(setup, state, &active)?;
    let members = objectives
        .iter()
        .enumerate()
        .map(|(k, o)| o.as_ref().map(|o| Lbfgs::new(cfg, &lbfgs::flatten_member(&state.mlp, k as i64)?, &mut |x: &Tensor| o.eval(x))).transpose())
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Phase::Lbfgs { next: 1, members })
}

/// L-BFGS iterations, member by member, from where the state is. Steps continue Adam's
/// numbering; `train/lr` records the accepted line-search step length. Returns false when
/// stopped.
fn lbfgs_phase(setup: &BatchSetup<'_>, state: &mut BatchState, ctx: &mut BatchContext<'_>, t0: Instant) -> Result<bool, TrainError> {
    let cfg = setup.lbfgs.as_ref().expect("an L-BFGS phase has its configuration");
    let Phase::Lbfgs { next, members } = &state.phase else { unreachable!("lbfgs_phase in another phase") };
    let next = *next;
    let active: Vec<bool> = members.iter().map(Option::is_some).collect();
    let objectives = member_objectives(setup, state, &active)?;
    let points: Vec<(&'static str, Tensor)> = state.terms.iter().map(|s| (s.name, s.x.shallow_clone())).collect();
    let mut step_length = vec![0.0; setup.e];
    for i in next..=cfg.steps {
        if let Phase::Lbfgs { next, .. } = &mut state.phase {
            *next = i;
        }
        if !boundary(setup, state, ctx, t0)? {
            return Ok(false);
        }
        let step = setup.total + i;
        let Phase::Lbfgs { members, .. } = &mut state.phase else { unreachable!() };
        for (k, m) in members.iter_mut().enumerate() {
            let (Some(opt), Some(objective)) = (m.as_mut(), objectives[k].as_ref()) else { continue };
            let it = opt.iterate(&mut |x: &Tensor| objective.eval(x))?;
            step_length[k] = it.t;
            lbfgs::write_member(&state.mlp, k as i64, opt.x())?;
        }
        // Progress counts an L-BFGS iteration of a member like an Adam step.
        (ctx.on_steps)(members.iter().flatten().count() as u64);
        // Stop early once every member has converged (the end of training is then here).
        let finished = i == cfg.steps || members.iter().flatten().all(|opt| opt.converged().is_some());
        if setup.ntk_on && (setup.is_snapshot(step) || finished) {
            let snap = setup.measure(&state.mlp, setup.spectra, step)?;
            state.records.snapshot(step, &snap);
        }
        if step % setup.log_every == 0 || finished {
            let scale = state.loss_scale(setup);
            let losses = tch::no_grad(|| term_losses(&state.mlp, &setup.norm, setup.problem.as_ref(), &points, &scale, setup.opts.kind))?;
            state.records.history(step, &setup.term_names, &losses, state.balancer.weights(), &setup.rel_l2(&state.mlp), &step_length, &setup.exact_losses(&state.mlp)?);
        }
        if finished {
            break;
        }
    }
    state.phase = Phase::Done;
    Ok(true)
}

/// The evaluation on the uniform grid and one record per member.
fn finish(setup: &BatchSetup<'_>, state: BatchState, t0: Instant) -> Vec<JobRecord> {
    let BatchState { mlp, mut records, params_init, slopes_init, elapsed, .. } = state;
    let u_pred = setup.predict(&mlp);
    let err = &u_pred - &setup.u_exact;
    let wall = elapsed + t0.elapsed().as_secs_f64();
    let d = setup.dim();
    (0..setup.e)
        .map(|k| {
            let ki = k as i64;
            let base = JobRecord {
                status: Status::Done,
                message: String::new(),
                dim: d,
                sizes: setup.sizes.clone(),
                history: std::mem::take(&mut records.history[k]),
                ntk: setup.ntk_on.then(|| std::mem::take(&mut records.ntk[k])),
                eval: None,
                params_init: Some(params_init[k].clone()),
                params_final: Some(mlp.export_member(ki)),
                network: NetworkRecord { slopes_init: slopes_init[k].clone(), slopes_final: mlp.export_slopes(ki), fourier_b: mlp.export_fourier(ki) },
                wall_seconds: wall,
                batch_size: setup.e,
                diverged_step: None,
            };
            if let Some((s, msg)) = records.diverged[k].take() {
                return JobRecord { status: Status::Diverged, message: msg, diverged_step: Some(s), ..base };
            }
            let error = to_vec(&err.select(0, ki));
            let up = to_vec(&u_pred.select(0, ki));
            let ue = to_vec(&setup.u_exact.select(0, ki));
            let norm_e = ue.iter().map(|v| v * v).sum::<f64>().sqrt();
            let rel = error.iter().map(|v| v * v).sum::<f64>().sqrt() / norm_e.max(f64::MIN_POSITIVE);
            let max_abs = error.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            let boundary = error.iter().zip(&setup.on_boundary).filter(|(_, b)| **b).fold(0.0f64, |a, (v, _)| a.max(v.abs()));
            let spectrum = (d == 1).then(|| {
                let t = Tensor::from_slice(&error).fft_rfft(None, -1, "backward").abs();
                to_vec(&t)
            });
            JobRecord {
                eval: Some(EvalRecord {
                    x: setup.xe.clone(),
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
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use std::collections::BTreeMap;

    use super::*;
    use crate::config::Sweep;
    use crate::model::mlp::Mlp;
    use crate::model::normalize::Normalizer;
    use crate::problem::ProblemConfig;
    use crate::rng::{self, Purpose};

    fn train(specs: &[&JobSpec], autograd: bool) -> Vec<JobRecord> {
        let stop = AtomicBool::new(false);
        let mut on = |_| {};
        let mut ctx = BatchContext { device: Device::Cpu, stop: &stop, on_steps: &mut on, autograd, checkpoints: None };
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
            // Exact Dirichlet conditions: the ansatz sits between the taped network and the
            // losses (1-D, (t, x) with the initial face, faces with different data).
            ("{kind: darcy1d, eps: 0.25}", "[0.25, 0.5]", "zscore", "{kind: grad_stats, every: 4}", ", exact_bc: true"),
            ("{kind: klein_gordon1d}", "", "minmax", "none", ", exact_bc: true, activation: sin"),
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
                assert_eq!(f.history.loss.keys().collect::<Vec<_>>(), r.history.loss.keys().collect::<Vec<_>>(), "{what}");
                for (term, lr) in &r.history.loss {
                    for (i, (a, b)) in f.history.loss[term].iter().zip(lr).enumerate() {
                        assert!(close(*a, *b), "{what}, {term} loss at log {i}: {a} vs autograd {b}");
                    }
                }
                // Terms the exact-boundary ansatz satisfies report a loss but have no weight.
                assert_eq!(f.history.weight.keys().collect::<Vec<_>>(), r.history.weight.keys().collect::<Vec<_>>(), "{what}");
                for (term, wr) in &r.history.weight {
                    for (a, b) in f.history.weight[term].iter().zip(wr) {
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
                autograd: false,
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

    /// Checkpoints kept in memory; `due` at every boundary when `every_step`.
    #[derive(Default)]
    struct Memory {
        resume: Option<StateDict>,
        saved: Option<StateDict>,
        saves: usize,
        every_step: bool,
    }

    impl Checkpoints for Memory {
        fn resume(&mut self) -> Option<StateDict> {
            self.resume.take()
        }
        fn due(&mut self) -> bool {
            self.every_step
        }
        fn save(&mut self, state: &StateDict, _: Progress) {
            self.saves += 1;
            self.saved = Some(state.clone());
        }
    }

    /// Train with a stop after each of `stops` (member-steps counted by the progress
    /// callback, which a resumed batch starts at the steps already done) and a resume from the
    /// saved state each time, like a job preempted and requeued. Returns the records and the
    /// number of resumes.
    fn train_interrupted(specs: &[&JobSpec], stops: &[u64], every_step: bool) -> (Vec<JobRecord>, usize) {
        let mut saved: Option<StateDict> = None;
        let mut resumes = 0;
        for attempt in 0..=stops.len() {
            let stop = AtomicBool::new(false);
            let threshold = stops.get(attempt).copied().unwrap_or(u64::MAX);
            let mut count = 0u64;
            let mut on = |n: u64| {
                count += n;
                if count >= threshold {
                    stop.store(true, Ordering::Relaxed);
                }
            };
            resumes += usize::from(saved.is_some());
            let mut mem = Memory { resume: saved.take(), every_step, ..Default::default() };
            let mut ctx = BatchContext { device: Device::Cpu, stop: &stop, on_steps: &mut on, autograd: false, checkpoints: Some(&mut mem) };
            match train_batch(specs, &mut ctx).unwrap() {
                BatchOutcome::Finished(r) => return (r, resumes),
                BatchOutcome::Interrupted => saved = Some(mem.saved.take().expect("a stop saves the state")),
            }
        }
        panic!("still interrupted after the last resume")
    }

    /// Everything a job file is made of, except the wall time (f64 Debug text round-trips, so
    /// equal text is equal bits).
    fn fingerprint(r: &JobRecord) -> String {
        format!("{:?}", JobRecord { wall_seconds: 0.0, ..r.clone() })
    }

    const RESUME: &str = "problem: {kind: darcy1d, eps: 0.5}\nmodel: {width: 8, depth: 2, dtype: float64}\n\
        training: {steps: 20, log_every: 3, lr: 1.0e-2, lbfgs: {steps: 6}}\ncollocation: {residual: {points: 12, resample: true}}\n\
        ntk: {every: 5}\nevaluation: {points: 30}\nsweep:\n  seed: [3, 8]\n";

    /// A batch stopped three times (twice in Adam, once in L-BFGS) and resumed from its saved
    /// state each time ends bit for bit where an uninterrupted batch ends: histories, weights,
    /// NTK snapshots, parameters, evaluation. For every balancer (their evolving state: EMA
    /// weights, previous and initial losses, relobralo's lookback streams, uncertainty's learned
    /// log-variances), resampled collocation points (their random streams), and a member that
    /// diverges. A piece of state that is not saved, or not restored, makes a case differ.
    #[test]
    fn a_batch_resumed_three_times_equals_an_uninterrupted_one() {
        // relobralo with rho 0.5: both lookback branches occur, so its random stream matters.
        let balancers = ["none", "{kind: ntk, every: 4}", "{kind: grad_stats, every: 4}", "softadapt", "{kind: relobralo, rho: 0.5}", "{kind: gradnorm, every: 3}", "uncertainty", "eps_rescale"];
        let mut cases: Vec<(String, Vec<String>)> = balancers.iter().map(|b| (b.to_string(), vec![format!("balancer={b}")])).collect();
        // Member 1 diverges (NaN loss) during Adam; member 0 goes on into L-BFGS.
        cases.push(("diverging member".into(), vec!["sweep.training.lr=[1.0e-2, 1.0e+200]".into(), "seed=3".into()]));
        // Network schemes: trained slopes (in Adam's state and the L-BFGS vectors), Fourier
        // features (rebuilt from the seeds), Hutchinson traces (probes from seed and step).
        cases.push(("schemes".into(), SCHEMES.iter().map(|s| s.to_string()).chain(["ntk.method=hutchinson".to_string(), "balancer={kind: gradnorm, every: 3}".to_string()]).collect()));
        // Loss-term schemes: importance sampling's points, weights and stream; exact conditions
        // and gradient-enhanced residuals (autograd steps, third-order streams, in L-BFGS too).
        cases.push(("loss schemes".into(), LOSS_SCHEMES.iter().map(|s| s.to_string()).chain(["balancer=softadapt".to_string()]).collect()));
        for (what, sets) in cases {
            let s = Sweep::parse(RESUME, "t.yaml", "t", &sets).unwrap_or_else(|e| panic!("{what}: {e}"));
            let specs: Vec<&JobSpec> = s.jobs.iter().collect();
            let e = specs.len() as u64;
            let whole = train(&specs, false);
            let (resumed, resumes) = train_interrupted(&specs, &[7 * e, 13 * e, 20 * e + 3], false);
            assert_eq!(resumes, 3, "{what}");
            for (k, (a, b)) in whole.iter().zip(&resumed).enumerate() {
                assert_eq!(fingerprint(a), fingerprint(b), "{what}, member {k}");
            }
            assert!(whole[0].history.step.iter().any(|&st| st > 20), "{what}: the L-BFGS phase ran");
            if what == "diverging member" {
                assert_eq!(whole[1].status, Status::Diverged, "{what}");
            }
        }
    }

    /// Exact Dirichlet conditions, gradient-enhanced residuals and importance sampling of the
    /// residual points (redrawn every 3 steps from a pool of 40).
    const LOSS_SCHEMES: [&str; 3] = ["model.exact_bc=true", "loss.gradient_enhanced={weight: 0.1}", "collocation.residual={points: 12, sampling: importance, pool: 40, every: 3}"];

    /// A network with another activation, layerwise adaptive slopes and Fourier features.
    const SCHEMES: [&str; 3] = ["model.activation=sin", "model.adaptive_activation=layerwise", "model.fourier={features: 3, sigma: 1}"];

    /// Saving at every step boundary (a very short --checkpoint-every) changes nothing.
    #[test]
    fn periodic_saves_do_not_change_the_numbers() {
        let s = Sweep::parse(RESUME, "t.yaml", "t", &["balancer=relobralo".to_string()]).unwrap();
        let specs: Vec<&JobSpec> = s.jobs.iter().collect();
        let whole = train(&specs, false);
        let (saved_often, _) = train_interrupted(&specs, &[11 * 2], true);
        assert_eq!(fingerprint(&whole[0]), fingerprint(&saved_often[0]));
        assert_eq!(fingerprint(&whole[1]), fingerprint(&saved_often[1]));
    }

    /// Restoring a saved state into a fresh batch and saving again gives the same entries, bit
    /// for bit, in both phases and for every balancer: every saved piece is restored.
    #[test]
    fn saved_state_round_trips_through_restore() {
        let mut cases: Vec<Vec<String>> =
            ["none", "{kind: ntk, every: 4}", "softadapt", "{kind: relobralo, rho: 0.5}", "{kind: gradnorm, every: 3}", "uncertainty"].iter().map(|b| vec![format!("balancer={b}")]).collect();
        cases.push(SCHEMES.iter().map(|s| s.to_string()).chain(["balancer=softadapt".to_string()]).collect());
        cases.push(LOSS_SCHEMES.iter().map(|s| s.to_string()).collect());
        for sets in cases {
            let b = sets.join(" ");
            let s = Sweep::parse(RESUME, "t.yaml", "t", &sets).unwrap();
            let specs: Vec<&JobSpec> = s.jobs.iter().collect();
            for stop_at in [9 * 2, 22 * 2] {
                let stop = AtomicBool::new(false);
                let mut count = 0u64;
                let mut on = |n: u64| {
                    count += n;
                    if count >= stop_at {
                        stop.store(true, Ordering::Relaxed);
                    }
                };
                let mut mem = Memory::default();
                let mut ctx = BatchContext { device: Device::Cpu, stop: &stop, on_steps: &mut on, autograd: false, checkpoints: Some(&mut mem) };
                assert!(matches!(train_batch(&specs, &mut ctx).unwrap(), BatchOutcome::Interrupted));
                let saved = mem.saved.expect("saved");
                let setup = BatchSetup::new(&specs, Device::Cpu);
                let mut state = BatchState::fresh(&setup).unwrap();
                state.restore(&setup, &saved).unwrap();
                let again = state.save(&setup, 0.0).unwrap();
                assert!(again.same_bits(&saved), "{b}, stop at {stop_at}: {:?}", again.differences(&saved));
                let phase = saved.text("phase/kind").unwrap();
                assert_eq!(phase, if stop_at < 40 { "adam" } else { "lbfgs" }, "{b}");
                assert!(saved.names().iter().any(|n| n.starts_with("balancer/weights/")), "{b}: {:?}", saved.names());
                // Every parameter is saved, the adaptive slopes included.
                for (name, _) in state.mlp.named_parameters() {
                    assert!(saved.has(&format!("net/{name}")), "{b}: net/{name} not saved");
                }
                assert_eq!(saved.has("net/slopes"), b.contains("adaptive"), "{b}");
                assert_eq!(saved.has("terms/residual/weights"), b.contains("importance"), "{b}: importance weights saved");
            }
        }
    }

    /// A checkpoint of another batch is refused rather than silently used.
    #[test]
    fn a_state_of_other_jobs_is_refused() {
        let s = Sweep::parse(RESUME, "t.yaml", "t", &[]).unwrap();
        let both: Vec<&JobSpec> = s.jobs.iter().collect();
        let one: Vec<&JobSpec> = s.jobs.iter().take(1).collect();
        let setup = BatchSetup::new(&both, Device::Cpu);
        let saved = BatchState::fresh(&setup).unwrap().save(&setup, 0.0).unwrap();
        let setup1 = BatchSetup::new(&one, Device::Cpu);
        let mut state = BatchState::fresh(&setup1).unwrap();
        assert!(matches!(state.restore(&setup1, &saved), Err(CheckpointError::Mismatch { .. })));
    }
}
