//! Everything about a batch that changes while it trains, in one place, with its phase.
//!
//! [`BatchState`] is what a checkpoint holds: parameters, Adam moments and step, the balancer's
//! state, every term's training points and their random streams, histories and NTK snapshots
//! so far, divergence, the initial parameters, the phase (with each member's L-BFGS state in
//! that phase) and the wall time spent. [`BatchState::save`] and [`BatchState::restore`]
//! destructure the struct exhaustively, so a field added to it does not compile until it is
//! saved and restored (or explicitly skipped), and the tests compare a resumed batch with an
//! uninterrupted one bit for bit.
//!
//! The network is saved as all of [`Mlp::named_parameters`]: weights, biases and adaptive
//! slopes. Its Fourier matrix B is not trained: [`BatchSetup::init_network`] draws it again from
//! the job seeds for the fresh state a checkpoint is restored over, so it is not saved.
//!
//! Layout of the saved entries (the checkpoint file's datasets): `net/<layer>/w|b`, `net/slopes`,
//! `adam/m|v|t`, `balancer/...` (per scheme, [`crate::balancer::Balancer::save_state`]),
//! `terms/<term>/x`, `terms/<term>/rng/<member>` and (importance sampling) `terms/<term>/weights`, `history/<member>/step|loss/<term>|
//! weight/<term>|rel_l2|lr`, `ntk/<member>/step|full_frobenius|terms/<i>/name|x|frobenius|
//! trace|trace_stderr|eigenvalues`, `diverged/<member>/step|message`,
//! `params_init/<member>/<layer>/weight|bias`, `params_init/<member>/slopes`, `phase/kind|next`, `phase/members/<member>/...` (L-BFGS), `elapsed`, `jobs`.

use tch::{TchError, Tensor};

use super::adam::Adam;
use super::importance::Importance;
use super::lbfgs::Lbfgs;
use super::setup::BatchSetup;
use super::{draw, to_vec};
use crate::balancer::{Balancer, Weights};
use crate::checkpoint::{CheckpointError, StateDict};
use crate::config::job::Sampling;
use crate::model::mlp::Mlp;
use crate::ntk;
use crate::problem::Region;
use crate::record::{History, NtkRecord, NtkTermRecord, Params};
use crate::rng::{self, JobRng, Purpose};

/// The training points of one loss term, for every member.
pub(crate) struct TermState {
    pub name: &'static str,
    pub region: Region,
    pub points: usize,
    /// Uniform whenever `resample` is set (resampling means uniform random points).
    pub sampling: Sampling,
    pub resample: bool,
    /// Each member's collocation stream (advanced by every resampling).
    pub rngs: Vec<JobRng>,
    /// [E, N, d].
    pub x: Tensor,
    /// `sampling: importance`: the pool size, the redraw interval and the points' f/q weights.
    pub importance: Option<Importance>,
}

/// Where the batch is.
pub(crate) enum Phase {
    /// Adam; `next` is the next step to take (0..=total).
    Adam { next: u64 },
    /// L-BFGS after Adam; `next` is the next iteration (1..=steps), `members` each member's
    /// optimiser (None for a member that diverged during Adam).
    Lbfgs { next: u64, members: Vec<Option<Lbfgs>> },
    /// Training is over; the evaluation is left.
    Done,
}

impl Phase {
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Adam { .. } => "adam",
            Phase::Lbfgs { .. } => "lbfgs",
            Phase::Done => "done",
        }
    }
}

/// What the batch has recorded so far, per member.
pub(crate) struct Records {
    pub history: Vec<History>,
    pub ntk: Vec<NtkRecord>,
    /// (step, message) of each member that diverged.
    pub diverged: Vec<Option<(i64, String)>>,
}

pub(crate) struct BatchState {
    /// Parameters of every member.
    pub mlp: Mlp,
    /// Adam's moments and step (over the network and the balancer's learned parameters).
    pub adam: Adam,
    pub balancer: Box<dyn Balancer>,
    pub terms: Vec<TermState>,
    pub records: Records,
    pub params_init: Vec<Params>,
    /// Each member's initial adaptive slopes ([`Mlp::export_slopes`]), for its record.
    pub slopes_init: Vec<Option<Vec<f64>>>,
    pub phase: Phase,
    /// Wall seconds of earlier runs of this batch (before it was last resumed).
    pub elapsed: f64,
}

impl BatchState {
    /// The state before the first step.
    pub fn fresh(setup: &BatchSetup<'_>) -> Result<BatchState, TchError> {
        let c0 = &setup.specs[0].config;
        let mlp = setup.init_network()?;
        let params_init = (0..setup.e as i64).map(|k| mlp.export_member(k)).collect();
        let slopes_init = (0..setup.e as i64).map(|k| mlp.export_slopes(k)).collect();
        let terms = setup
            .terms
            .iter()
            .enumerate()
            .map(|(ti, t)| {
                let ts = c0.term_points(t.name);
                let mut rngs: Vec<JobRng> = setup.specs.iter().map(|s| rng::stream(s.config.seed, Purpose::Collocation, ti as u64)).collect();
                let sampling = if ts.resample { Sampling::Uniform } else { ts.sampling };
                let x = draw(&setup.domain, t.region, ts.points, sampling, &mut rngs, setup.opts);
                let importance = ts.importance().map(|(pool, every)| Importance { pool, every, weights: Tensor::ones([setup.e as i64, ts.points as i64], (setup.opts.kind, setup.opts.device)) });
                TermState { name: t.name, region: t.region, points: ts.points, sampling, resample: ts.resample, rngs, x, importance }
            })
            .collect();
        let balancer = setup.build_balancer();
        let tc = &c0.training;
        let adam = Adam::new(&optimised(&mlp, balancer.as_ref()), tc.beta1, tc.beta2, tc.adam_eps);
        let ntk = (0..setup.e)
            .map(|k| NtkRecord {
                terms: setup
                    .ntk_points
                    .iter()
                    .map(|tp| (tp.name.clone(), NtkTermRecord { x: to_vec(&tp.x.select(0, k as i64)), ..Default::default() }))
                    .collect(),
                ..Default::default()
            })
            .collect();
        Ok(BatchState {
            mlp,
            adam,
            balancer,
            terms,
            records: Records { history: vec![History::default(); setup.e], ntk, diverged: vec![None; setup.e] },
            params_init,
            slopes_init,
            phase: Phase::Adam { next: 0 },
            elapsed: 0.0,
        })
    }

    /// What multiplies each term's residual in the training loss: the eps rescaling, and for
    /// importance-sampled terms sqrt(f/q) per point (so the squared residual is weighted by
    /// f/q). [E, 1] or [E, N_T] per term.
    pub fn loss_scale(&self, setup: &BatchSetup<'_>) -> std::collections::BTreeMap<String, Tensor> {
        let mut scale: std::collections::BTreeMap<String, Tensor> = setup.scale.iter().map(|(k, v)| (k.clone(), v.shallow_clone())).collect();
        for t in &self.terms {
            if let Some(imp) = &t.importance {
                let root = imp.weights.sqrt();
                let s = match scale.get(t.name) {
                    Some(eps) => root * eps,
                    None => root,
                };
                scale.insert(t.name.to_string(), s);
            }
        }
        scale
    }

    /// Optimisation steps done so far (Adam steps, then Adam steps + L-BFGS iterations).
    pub fn steps_done(&self, setup: &BatchSetup<'_>) -> u64 {
        match &self.phase {
            Phase::Adam { next } => *next,
            Phase::Lbfgs { next, .. } => setup.total + next - 1,
            Phase::Done => setup.all_steps(),
        }
    }

    /// The whole state as named entries; `run_seconds`: wall time of this run so far.
    pub fn save(&self, setup: &BatchSetup<'_>, run_seconds: f64) -> Result<StateDict, CheckpointError> {
        let BatchState { mlp, adam, balancer, terms, records, params_init, slopes_init, phase, elapsed } = self;
        let Records { history, ntk, diverged } = records;
        let mut d = StateDict::default();
        d.put_text("jobs", &job_ids(setup));
        for (name, p) in mlp.named_parameters() {
            d.put_tensor(&format!("net/{name}"), &p)?;
        }
        let mut a = StateDict::default();
        adam.save(&mut a)?;
        d.put_sub("adam", a);
        let mut b = StateDict::default();
        balancer.save_state(&mut b)?;
        d.put_sub("balancer", b);
        for t in terms {
            let TermState { name, region: _, points: _, sampling: _, resample: _, rngs, x, importance } = t;
            d.put_tensor(&format!("terms/{name}/x"), x)?;
            d.put_rngs(&format!("terms/{name}/rng"), rngs);
            if let Some(Importance { pool: _, every: _, weights }) = importance {
                d.put_tensor(&format!("terms/{name}/weights"), weights)?;
            }
        }
        for (k, h) in history.iter().enumerate() {
            save_history(&mut d, &format!("history/{k}"), h);
        }
        for (k, r) in ntk.iter().enumerate() {
            save_ntk(&mut d, &format!("ntk/{k}"), r);
        }
        for (k, dv) in diverged.iter().enumerate() {
            if let Some((step, message)) = dv {
                d.put_i64s(&format!("diverged/{k}/step"), &[*step]);
                d.put_text(&format!("diverged/{k}/message"), message);
            }
        }
        for (k, p) in params_init.iter().enumerate() {
            for (l, (w, b)) in p.iter().enumerate() {
                d.put_f64s(&format!("params_init/{k}/{l}/weight"), w);
                d.put_f64s(&format!("params_init/{k}/{l}/bias"), b);
            }
        }
        for (k, s) in slopes_init.iter().enumerate() {
            if let Some(s) = s {
                d.put_f64s(&format!("params_init/{k}/slopes"), s);
            }
        }
        d.put_text("phase/kind", phase.name());
        match phase {
            Phase::Adam { next } => d.put_u64("phase/next", *next),
            Phase::Lbfgs { next, members } => {
                d.put_u64("phase/next", *next);
                for (k, m) in members.iter().enumerate() {
                    if let Some(opt) = m {
                        let mut s = StateDict::default();
                        opt.save(&mut s)?;
                        d.put_sub(&format!("phase/members/{k}"), s);
                    }
                }
            }
            Phase::Done => {}
        }
        d.put_f64("elapsed", elapsed + run_seconds);
        Ok(d)
    }

    /// Overwrite a [`BatchState::fresh`] state of the same batch with a saved one.
    pub fn restore(&mut self, setup: &BatchSetup<'_>, d: &StateDict) -> Result<(), CheckpointError> {
        let BatchState { mlp, adam, balancer, terms, records, params_init, slopes_init, phase, elapsed } = self;
        let Records { history, ntk, diverged } = records;
        let jobs = d.text("jobs")?;
        if jobs != job_ids(setup) {
            return Err(CheckpointError::Mismatch { name: "jobs".into(), expected: job_ids(setup), found: jobs });
        }
        // In place: Adam and the autograd graph hold these very tensors.
        for (name, p) in mlp.named_parameters() {
            d.copy_into(&format!("net/{name}"), &p)?;
        }
        adam.restore(&d.sub("adam"))?;
        balancer.restore_state(&d.sub("balancer"))?;
        for t in terms.iter_mut() {
            let TermState { name, region: _, points: _, sampling: _, resample: _, rngs, x, importance } = t;
            *x = d.tensor_like(&format!("terms/{name}/x"), x)?;
            *rngs = d.rngs(&format!("terms/{name}/rng"), rngs.len())?;
            if let Some(Importance { pool: _, every: _, weights }) = importance {
                *weights = d.tensor_like(&format!("terms/{name}/weights"), weights)?;
            }
        }
        for (k, h) in history.iter_mut().enumerate() {
            *h = restore_history(d, &format!("history/{k}"))?;
        }
        for (k, r) in ntk.iter_mut().enumerate() {
            restore_ntk(d, &format!("ntk/{k}"), r)?;
        }
        for (k, dv) in diverged.iter_mut().enumerate() {
            *dv = match d.has(&format!("diverged/{k}/step")) {
                true => Some((d.i64s(&format!("diverged/{k}/step"))?[0], d.text(&format!("diverged/{k}/message"))?)),
                false => None,
            };
        }
        for (k, p) in params_init.iter_mut().enumerate() {
            for (l, (w, b)) in p.iter_mut().enumerate() {
                *w = d.f64s(&format!("params_init/{k}/{l}/weight"))?;
                *b = d.f64s(&format!("params_init/{k}/{l}/bias"))?;
            }
        }
        for (k, s) in slopes_init.iter_mut().enumerate() {
            if let Some(s) = s {
                *s = d.f64s(&format!("params_init/{k}/slopes"))?;
            }
        }
        *phase = match d.text("phase/kind")?.as_str() {
            "adam" => Phase::Adam { next: d.u64("phase/next")? },
            "lbfgs" => {
                let cfg = setup.lbfgs.as_ref().ok_or_else(|| CheckpointError::Mismatch { name: "phase/kind".into(), expected: "no L-BFGS phase".into(), found: "lbfgs".into() })?;
                let members = (0..setup.e)
                    .map(|k| {
                        let prefix = format!("phase/members/{k}");
                        let like = super::lbfgs::flatten_member(mlp, k as i64)?;
                        Ok(if d.children(&prefix).is_empty() { None } else { Some(Lbfgs::restore(cfg, &d.sub(&prefix), &like)?) })
                    })
                    .collect::<Result<Vec<_>, CheckpointError>>()?;
                Phase::Lbfgs { next: d.u64("phase/next")?, members }
            }
            "done" => Phase::Done,
            other => return Err(CheckpointError::Mismatch { name: "phase/kind".into(), expected: "adam, lbfgs or done".into(), found: other.into() }),
        };
        *elapsed = d.f64("elapsed")?;
        Ok(())
    }
}

impl Records {
    /// Whether every member has diverged (training then ends early).
    pub fn all_diverged(&self) -> bool {
        self.diverged.iter().all(Option::is_some)
    }

    /// Append one history entry for every member not yet diverged; a member with a non-finite
    /// loss is marked diverged instead. `losses`, `weights`: [E] per term; `rel_l2`: [E];
    /// `exact`: [E] per term `model.exact_bc` satisfies, recorded as a loss without a weight.
    pub fn history(&mut self, step: u64, term_names: &[&str], losses: &[(String, Tensor)], weights: &Weights, rel_l2: &Tensor, lr: &[f64], exact: &[(String, Tensor)]) {
        let host_losses: Vec<Vec<f64>> = losses.iter().map(|(_, l)| to_vec(l)).collect();
        let host_exact: Vec<Vec<f64>> = exact.iter().map(|(_, l)| to_vec(l)).collect();
        let host_weights: Vec<Vec<f64>> = term_names.iter().map(|t| to_vec(weights.get(t))).collect();
        let rl2 = to_vec(rel_l2);
        for k in 0..self.history.len() {
            if self.diverged[k].is_some() {
                continue;
            }
            if let Some(ti) = (0..term_names.len()).find(|&ti| !host_losses[ti][k].is_finite()) {
                self.diverged[k] = Some((step as i64, format!("loss of term `{}` became {} at step {step}", term_names[ti], host_losses[ti][k])));
                continue;
            }
            let h = &mut self.history[k];
            h.step.push(step as i64);
            for (ti, t) in term_names.iter().enumerate() {
                h.loss.entry(t.to_string()).or_default().push(host_losses[ti][k]);
                h.weight.entry(t.to_string()).or_default().push(host_weights[ti][k]);
            }
            for ((t, _), v) in exact.iter().zip(&host_exact) {
                h.loss.entry(t.clone()).or_default().push(v[k]);
            }
            h.rel_l2.push(rl2[k]);
            h.lr.push(lr[k]);
        }
    }

    /// Append a snapshot's statistics to the record of every member not yet diverged.
    pub fn snapshot(&mut self, step: u64, snap: &ntk::Snapshot) {
        let opt_vec = |t: &Option<Tensor>| t.as_ref().map(to_vec);
        let full = opt_vec(&snap.full_frobenius);
        type Stats = (Option<Vec<f64>>, Vec<f64>, Option<Vec<f64>>, Option<Tensor>);
        let stats: Vec<Stats> = snap
            .terms
            .iter()
            .map(|t| (opt_vec(&t.frobenius), to_vec(&t.trace), opt_vec(&t.trace_stderr), t.eigenvalues.as_ref().map(|v| v.to_device(tch::Device::Cpu))))
            .collect();
        for (k, r) in self.ntk.iter_mut().enumerate() {
            if self.diverged[k].is_some() {
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
}

/// The tensors Adam updates: the network's parameters, then the balancer's learned ones.
pub(crate) fn optimised(mlp: &Mlp, balancer: &dyn Balancer) -> Vec<Tensor> {
    let mut p = mlp.parameters();
    p.extend(balancer.extra_params());
    p
}

fn job_ids(setup: &BatchSetup<'_>) -> String {
    setup.specs.iter().map(|s| s.id.as_str()).collect::<Vec<_>>().join(" ")
}

fn save_history(d: &mut StateDict, prefix: &str, h: &History) {
    let History { step, loss, weight, rel_l2, lr } = h;
    d.put_i64s(&format!("{prefix}/step"), step);
    for (t, v) in loss {
        d.put_f64s(&format!("{prefix}/loss/{t}"), v);
    }
    for (t, v) in weight {
        d.put_f64s(&format!("{prefix}/weight/{t}"), v);
    }
    d.put_f64s(&format!("{prefix}/rel_l2"), rel_l2);
    d.put_f64s(&format!("{prefix}/lr"), lr);
}

fn restore_history(d: &StateDict, prefix: &str) -> Result<History, CheckpointError> {
    let per_term = |what: &str| -> Result<_, CheckpointError> {
        d.children(&format!("{prefix}/{what}")).into_iter().map(|t| Ok((t.clone(), d.f64s(&format!("{prefix}/{what}/{t}"))?))).collect()
    };
    Ok(History {
        step: d.i64s(&format!("{prefix}/step"))?,
        loss: per_term("loss")?,
        weight: per_term("weight")?,
        rel_l2: d.f64s(&format!("{prefix}/rel_l2"))?,
        lr: d.f64s(&format!("{prefix}/lr"))?,
    })
}

fn save_ntk(d: &mut StateDict, prefix: &str, r: &NtkRecord) {
    let NtkRecord { step, terms, full_frobenius } = r;
    d.put_i64s(&format!("{prefix}/step"), step);
    d.put_f64s(&format!("{prefix}/full_frobenius"), full_frobenius);
    for (i, (name, t)) in terms.iter().enumerate() {
        let NtkTermRecord { x, frobenius, trace, trace_stderr, eigenvalues } = t;
        let p = format!("{prefix}/terms/{i}");
        d.put_text(&format!("{p}/name"), name);
        d.put_f64s(&format!("{p}/x"), x);
        d.put_f64s(&format!("{p}/frobenius"), frobenius);
        d.put_f64s(&format!("{p}/trace"), trace);
        d.put_f64s(&format!("{p}/trace_stderr"), trace_stderr);
        let cols = eigenvalues.first().map_or(0, Vec::len);
        d.put_f64_rows(&format!("{p}/eigenvalues"), eigenvalues, cols);
    }
}

/// Restore into a fresh record (whose terms, names and points are those of the batch).
fn restore_ntk(d: &StateDict, prefix: &str, r: &mut NtkRecord) -> Result<(), CheckpointError> {
    let NtkRecord { step, terms, full_frobenius } = r;
    *step = d.i64s(&format!("{prefix}/step"))?;
    *full_frobenius = d.f64s(&format!("{prefix}/full_frobenius"))?;
    for (i, (name, t)) in terms.iter_mut().enumerate() {
        let p = format!("{prefix}/terms/{i}");
        let saved = d.text(&format!("{p}/name"))?;
        if saved != *name {
            return Err(CheckpointError::Mismatch { name: format!("{p}/name"), expected: name.clone(), found: saved });
        }
        let NtkTermRecord { x, frobenius, trace, trace_stderr, eigenvalues } = t;
        *x = d.f64s(&format!("{p}/x"))?;
        *frobenius = d.f64s(&format!("{p}/frobenius"))?;
        *trace = d.f64s(&format!("{p}/trace"))?;
        *trace_stderr = d.f64s(&format!("{p}/trace_stderr"))?;
        *eigenvalues = d.f64_rows(&format!("{p}/eigenvalues"))?;
    }
    Ok(())
}
