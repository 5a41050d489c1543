//! Loss balancers: how the weights lambda_i of the mean-squared loss terms evolve.
//!
//! One closed enum of configurations ([`BalancerConfig`], the `balancer:` section, tagged by
//! `kind`) dispatching to one trait ([`Balancer`]); a new scheme is one file here, one variant
//! and one reference-number test. Weights are keyed by loss-term name and hold one value per
//! member of the batch; every piece of state (previous losses, EMA values, random lookback
//! draws, learned log-variances) is per member, so a job's weights do not depend on which
//! other jobs share its batch. Members of one batch share the balancer's parameters (the batch
//! key contains the `balancer:` section).
//!
//! | kind | weights | acts |
//! | --- | --- | --- |
//! | `none` | `loss.weights` (default 1) | never |
//! | `ntk` | sum_j tr K_jj / tr K_ii | every `every` (100) steps |
//! | `grad_stats` | max abs grad L_res / mean abs grad (lambda_i L_i), EMA | every 10 steps |
//! | `softadapt` | n softmax(beta L_i(t) / L_i(t-K)) | every step |
//! | `relobralo` | EMA of softmax ratios with random lookback | every step |
//! | `gradnorm` | gradient-norm matching on one layer | every step |
//! | `uncertainty` | 0.5 exp(-s_i), s_i learned | every step (Adam) |
//! | `eps_rescale` | as `none`, PDE residual multiplied by eps | never |
//!
//! Timing: at step s the trainer computes the losses, calls [`Balancer::update`], records
//! [`Balancer::weights`] (so `train/weight/T` at step s is the weight that multiplies L_T in
//! step s's optimiser update, and an update step's record already shows the new weights), then
//! minimises [`Balancer::total_loss`]. The interval and the EMA are shared code
//! ([`update::Interval`], [`update::ema`]).
//!
//! `loss.weights` enter as follows: `ntk`, `grad_stats` and `gradnorm` start from them (they are
//! the weights until the first update); `softadapt`, `relobralo` and `uncertainty` multiply the
//! loss terms by them as constants before balancing (as Modulus's aggregators do); `none` and
//! `eps_rescale` use them as they are.

pub mod fixed;
pub mod grad_stats;
pub mod gradnorm;
pub mod ntk;
pub mod relobralo;
pub mod softadapt;
pub mod uncertainty;
pub mod update;

use serde::{Deserialize, Serialize};
use tch::{TchError, Tensor};

use crate::checkpoint::{CheckpointError, StateDict};
use crate::validation::Invalid;
use crate::problem::TermSpec;
use crate::tensor::TensorOpts;

pub use grad_stats::GradStatsConfig;
pub use gradnorm::GradNormConfig;
pub use ntk::NtkTraceConfig;
pub use relobralo::ReLoBRaLoConfig;
pub use softadapt::SoftAdaptConfig;
pub use uncertainty::UncertaintyConfig;

/// The `balancer:` section. `balancer: ntk` is shorthand for `balancer: {kind: ntk}` (every
/// parameter at its default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BalancerConfig {
    /// Fixed weights from `loss.weights` (default 1 each).
    #[default]
    None,
    /// NTK trace ratios (Wang, Yu & Perdikaris 2022).
    Ntk(NtkTraceConfig),
    /// Learning-rate annealing from gradient statistics (Wang, Teng & Perdikaris 2021).
    GradStats(GradStatsConfig),
    /// SoftAdapt (Heydari et al. 2019), in Modulus's form.
    Softadapt(SoftAdaptConfig),
    /// Relative loss balancing with random lookback (Bischof & Kraus 2021).
    Relobralo(ReLoBRaLoConfig),
    /// GradNorm (Chen et al. 2018) on one layer's weight matrix.
    Gradnorm(GradNormConfig),
    /// Homoscedastic task uncertainty (Kendall, Gal & Cipolla 2018).
    Uncertainty(UncertaintyConfig),
    /// Fixed weights as `none`, with the PDE residual multiplied by eps (paper 003, section 4.4).
    /// The same as `balancer: none` with `loss.eps_rescale: true`, but recorded as its own
    /// balancer so that a `balancer` axis can compare it; to combine eps rescaling with an
    /// adaptive scheme use `loss.eps_rescale: true` with that scheme.
    EpsRescale,
}

impl BalancerConfig {
    /// The job file's `balancer` attribute.
    pub fn name(&self) -> &'static str {
        match self {
            BalancerConfig::None => "none",
            BalancerConfig::Ntk(_) => "ntk",
            BalancerConfig::GradStats(_) => "grad_stats",
            BalancerConfig::Softadapt(_) => "softadapt",
            BalancerConfig::Relobralo(_) => "relobralo",
            BalancerConfig::Gradnorm(_) => "gradnorm",
            BalancerConfig::Uncertainty(_) => "uncertainty",
            BalancerConfig::EpsRescale => "eps_rescale",
        }
    }

    /// Range checks. `terms`: the problem's loss terms; `layers`: linear layers of the network
    /// (hidden layers + 1).
    pub fn validate(&self, terms: &[&str], layers: usize) -> Vec<Invalid> {
        match self {
            BalancerConfig::None | BalancerConfig::EpsRescale => Vec::new(),
            BalancerConfig::Ntk(c) => c.validate(),
            BalancerConfig::GradStats(c) => c.validate(terms),
            BalancerConfig::Softadapt(c) => c.validate(),
            BalancerConfig::Relobralo(c) => c.validate(),
            BalancerConfig::Gradnorm(c) => c.validate(layers),
            BalancerConfig::Uncertainty(c) => c.validate(),
        }
    }

    /// Whether the scheme reads NTK snapshots (then the job's NTK points are drawn even with
    /// `ntk.enabled: false`).
    pub fn uses_ntk(&self) -> bool {
        matches!(self, BalancerConfig::Ntk(_))
    }

    /// Whether the scheme itself multiplies the PDE residual by eps.
    pub fn rescales_eps(&self) -> bool {
        matches!(self, BalancerConfig::EpsRescale)
    }
}

/// Precise path of a typing error inside `balancer:` (see `problem::refine_error`): serde
/// reports errors inside an internally tagged enum at the section; re-typing the section as
/// its variant's struct names the field.
pub(crate) fn refine_error(tree: &serde_yaml_ng::Value, path: &[String]) -> Option<(Vec<String>, String)> {
    if path.first().map(String::as_str) != Some("balancer") || path.len() > 1 {
        return None;
    }
    let section = tree.get("balancer")?;
    let kind = section.get("kind")?.as_str()?;
    use crate::validation::sweep_refine as refine;
    match kind {
        "ntk" => refine::<NtkTraceConfig>("balancer", section),
        "grad_stats" => refine::<GradStatsConfig>("balancer", section),
        "softadapt" => refine::<SoftAdaptConfig>("balancer", section),
        "relobralo" => refine::<ReLoBRaLoConfig>("balancer", section),
        "gradnorm" => refine::<GradNormConfig>("balancer", section),
        "uncertainty" => refine::<UncertaintyConfig>("balancer", section),
        _ => None,
    }
}

/// Per-term weights of a batch.
///
/// # Shapes
/// every value: [E].
pub struct Weights {
    pub terms: Vec<String>,
    pub values: Vec<Tensor>,
}

impl Weights {
    pub fn get(&self, term: &str) -> &Tensor {
        let i = self.terms.iter().position(|t| t == term).expect("weight of an unknown term");
        &self.values[i]
    }

    /// The configured weights: term t gets the column `fixed[.][t]`.
    pub fn from_fixed(terms: &[TermSpec], fixed: &[Vec<f64>], opts: TensorOpts) -> Self {
        let values = (0..terms.len()).map(|t| member_column(fixed, t, opts)).collect();
        Weights { terms: terms.iter().map(|s| s.name.to_string()).collect(), values }
    }

    /// Save the values as `name/<term index>`.
    pub fn save(&self, d: &mut StateDict, name: &str) -> Result<(), CheckpointError> {
        let Weights { terms: _, values } = self;
        d.put_tensors(name, values)
    }

    /// Restore what [`Weights::save`] saved.
    pub fn restore(&mut self, d: &StateDict, name: &str) -> Result<(), CheckpointError> {
        let Weights { terms: _, values } = self;
        for (i, v) in values.iter_mut().enumerate() {
            *v = d.tensor_like(&format!("{name}/{i}"), v)?;
        }
        Ok(())
    }

    /// The same value for every term and member.
    pub fn constant(terms: &[TermSpec], e: usize, value: f64, opts: TensorOpts) -> Self {
        let values = terms.iter().map(|_| Tensor::full([e as i64], value, (opts.kind, opts.device))).collect();
        Weights { terms: terms.iter().map(|s| s.name.to_string()).collect(), values }
    }
}

/// Column t of a per-member table as an [E] tensor.
pub(crate) fn member_column(table: &[Vec<f64>], t: usize, opts: TensorOpts) -> Tensor {
    let col: Vec<f64> = table.iter().map(|m| m[t]).collect();
    Tensor::from_slice(&col).to_kind(opts.kind).to_device(opts.device)
}

/// What a balancer sees when it updates (every step, after the losses and before the
/// weights are recorded and the optimiser steps).
pub struct BalanceInputs<'a> {
    pub step: u64,
    /// Unweighted mean-squared loss per term, [E] each, with their graphs.
    pub losses: &'a [(String, Tensor)],
    /// Gradients of a per-member loss [E] built from `losses` with respect to the network
    /// parameters (w0, b0, w1, b1, ...: weights [E, out, in], biases [E, out]); member e's slice
    /// is the gradient of member e's loss (members share nothing). The losses' graphs stop at
    /// the network's output streams, so this is the way to parameter gradients: the trainer
    /// completes the reverse pass by hand ([`crate::model::tape`]). None where there is no
    /// network (unit tests of balancers that only read losses).
    pub param_grads: Option<&'a ParamGrads<'a>>,
    /// The NTK snapshot of this step (the very one recorded when the step is also an NTK
    /// snapshot step), present exactly when [`Balancer::needs_ntk`] asked for it.
    pub ntk: Option<&'a crate::ntk::Snapshot>,
}

/// See [`BalanceInputs::param_grads`]. The graphs of the losses are kept for the optimiser.
pub type ParamGrads<'a> = dyn Fn(&Tensor) -> Result<Vec<Tensor>, TchError> + 'a;

impl BalanceInputs<'_> {
    pub fn loss(&self, term: &str) -> &Tensor {
        &self.losses.iter().find(|(n, _)| n == term).expect("loss of an unknown term").1
    }

    /// [`BalanceInputs::param_grads`] of `loss`, for balancers that need them.
    pub fn param_grads(&self, loss: &Tensor) -> Result<Vec<Tensor>, TchError> {
        (self.param_grads.expect("this balancer needs parameter gradients; the trainer provides them"))(loss)
    }
}

/// A loss-balancing scheme for a batch of members.
pub trait Balancer {
    /// Update the weights for this step (most schemes act every K steps only).
    fn update(&mut self, inputs: &BalanceInputs<'_>) -> Result<(), TchError>;
    /// Current weights.
    fn weights(&self) -> &Weights;
    /// The total loss to minimise, [E]. Default: sum_i lambda_i L_i.
    fn total_loss(&self, losses: &[(String, Tensor)]) -> Tensor {
        let w = self.weights();
        let mut total: Option<Tensor> = None;
        for (name, l) in losses {
            let term = w.get(name) * l;
            total = Some(match total {
                None => term,
                Some(t) => t + term,
            });
        }
        total.expect("at least one loss term")
    }
    /// Extra trainable tensors (e.g. learned log-variances), optimised with the network.
    fn extra_params(&self) -> Vec<Tensor> {
        Vec::new()
    }
    /// Whether [`Balancer::update`] at `step` needs the NTK snapshot of that step.
    fn needs_ntk(&self, _step: u64) -> bool {
        false
    }
    /// Save everything that evolves during training (weights, previous and initial losses,
    /// EMA values, random lookback streams, learned parameters), so that a batch resumed from a
    /// checkpoint ([`crate::checkpoint`]) continues exactly. Implementations destructure `self`
    /// exhaustively (`let Scheme { a, b, config: _ } = self;`): a field added later cannot be
    /// forgotten, and the trainer's resume tests compare every weight bit for bit.
    fn save_state(&self, d: &mut StateDict) -> Result<(), CheckpointError>;
    /// Restore what [`Balancer::save_state`] saved, in place (tensors the optimiser holds, such
    /// as learned log-variances, keep their identity).
    fn restore_state(&mut self, d: &StateDict) -> Result<(), CheckpointError>;
}

/// Save optional per-term tensors (e.g. the losses of a first update) as `name/<i>`.
pub(crate) fn save_optional(d: &mut StateDict, name: &str, v: Option<&[Tensor]>) -> Result<(), CheckpointError> {
    match v {
        Some(v) => d.put_tensors(name, v),
        None => Ok(()),
    }
}

/// Restore what [`save_optional`] saved: `n` tensors shaped like `like`, or None when absent.
pub(crate) fn restore_optional(d: &StateDict, name: &str, n: usize, like: &Tensor) -> Result<Option<Vec<Tensor>>, CheckpointError> {
    if d.has(&format!("{name}/0")) {
        Ok(Some(d.tensors_like(name, n, like)?))
    } else {
        Ok(None)
    }
}

/// The gradients of the weight matrices (not the biases): w0, w1, ... of (w0, b0, w1, b1, ...).
pub(crate) fn weight_gradients(grads: Vec<Tensor>) -> Vec<Tensor> {
    grads.into_iter().step_by(2).collect()
}

/// Gradients of a loss with respect to `wrt`: one reverse pass of sum_e L[e] (members do not
/// interact, so member e's slice is the gradient of member e's loss). The graph is kept for
/// the optimiser's pass.
///
/// # Shapes
/// `loss`: [E]; returns one tensor shaped like each of `wrt` ([E, ...]).
pub(crate) fn gradients(loss: &Tensor, wrt: &[&Tensor]) -> Result<Vec<Tensor>, TchError> {
    let grads = Tensor::f_run_backward(&[loss.f_sum(loss.kind())?], wrt, true, false)?;
    // A tensor the loss does not reach comes back undefined: its gradient is zero.
    Ok(grads.into_iter().zip(wrt).map(|(g, w)| if g.defined() { g } else { w.zeros_like() }).collect())
}

/// What [`build`] needs to know about the batch.
pub struct BuildContext<'a> {
    /// The problem's loss terms, in order.
    pub terms: &'a [TermSpec],
    /// `fixed[e][t]`: member e's configured weight (`loss.weights`) of term t.
    pub fixed: &'a [Vec<f64>],
    /// Every member's job seed (random draws of `relobralo`).
    pub seeds: &'a [u64],
    pub opts: TensorOpts,
}

/// Build the runtime balancer of a batch. Members share the scheme and its parameters
/// (`configs[0]`); everything that evolves is per member.
pub fn build(configs: &[&BalancerConfig], ctx: &BuildContext<'_>) -> Box<dyn Balancer> {
    debug_assert!(configs.iter().all(|c| *c == configs[0]), "a batch mixes balancer configurations");
    match configs[0] {
        BalancerConfig::None | BalancerConfig::EpsRescale => Box::new(fixed::Fixed::new(ctx)),
        BalancerConfig::Ntk(c) => Box::new(ntk::NtkTrace::new(c, ctx)),
        BalancerConfig::GradStats(c) => Box::new(grad_stats::GradStats::new(c, ctx)),
        BalancerConfig::Softadapt(c) => Box::new(softadapt::SoftAdapt::new(c, ctx)),
        BalancerConfig::Relobralo(c) => Box::new(relobralo::ReLoBRaLo::new(c, ctx)),
        BalancerConfig::Gradnorm(c) => Box::new(gradnorm::GradNorm::new(c, ctx)),
        BalancerConfig::Uncertainty(c) => Box::new(uncertainty::Uncertainty::new(c, ctx)),
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Small fixtures for the reference-number tests of the schemes.
    use super::*;
    use crate::problem::{Reads, Region};
    use tch::{Device, Kind};

    pub fn opts64() -> TensorOpts {
        TensorOpts { kind: Kind::Double, device: Device::Cpu }
    }

    pub const TERMS: &[TermSpec] = &[
        TermSpec { name: "residual", region: Region::Interior, default_points: 1, pde: true, reads: Reads::Layout },
        TermSpec { name: "boundary", region: Region::Boundary, default_points: 1, pde: false, reads: Reads::Value },
        TermSpec { name: "initial", region: Region::Initial, default_points: 1, pde: false, reads: Reads::Value },
    ];

    /// A two-layer "network" of two members whose losses are linear in the weight matrices,
    /// L_t[e] = sum(C_t0[e] * W0[e]) + sum(C_t1[e] * W1[e]) + b1[e], so grad_{W_l} L_t = C_tl
    /// whatever the parameters.
    pub struct Linear {
        pub params: Vec<Tensor>,
        pub coef: Vec<[Vec<f64>; 2]>,
    }

    impl Linear {
        pub fn new() -> Self {
            let w0 = Tensor::zeros([2, 2, 1], (tch::Kind::Double, tch::Device::Cpu)).set_requires_grad(true);
            let b0 = Tensor::zeros([2, 2], (tch::Kind::Double, tch::Device::Cpu)).set_requires_grad(true);
            let w1 = Tensor::zeros([2, 1, 2], (tch::Kind::Double, tch::Device::Cpu)).set_requires_grad(true);
            let b1 = Tensor::zeros([2, 1], (tch::Kind::Double, tch::Device::Cpu)).set_requires_grad(true);
            // coef[t] = [C_t0 as [e0 (2 values), e1 (2 values)], C_t1 likewise].
            let coef = vec![
                [vec![1.0, -3.0, 0.5, 0.25], vec![2.0, 0.5, -8.0, 1.0]],   // residual: max 3 / 8
                [vec![0.1, -0.2, 0.01, 0.03], vec![0.3, 0.0, 0.02, -0.04]], // boundary
                [vec![1.0, 1.0, 2.0, 2.0], vec![-1.0, 3.0, 0.5, 0.5]],     // initial
            ];
            Linear { params: vec![w0, b0, w1, b1], coef }
        }

        /// The trainer's [`crate::balancer::BalanceInputs::param_grads`] for this network.
        pub fn grads(&self) -> impl Fn(&Tensor) -> Result<Vec<Tensor>, tch::TchError> + '_ {
            |loss| crate::balancer::gradients(loss, &self.params.iter().collect::<Vec<_>>())
        }

        /// Losses at the current parameters (with graphs), [E] each.
        pub fn losses(&self) -> Vec<(String, Tensor)> {
            self.coef
                .iter()
                .zip(TERMS)
                .map(|(c, t)| {
                    let c0 = Tensor::from_slice(&c[0]).view([2, 2, 1]);
                    let c1 = Tensor::from_slice(&c[1]).view([2, 1, 2]);
                    let l = (&self.params[0] * c0).sum_dim_intlist(&[1i64, 2][..], false, tch::Kind::Double)
                        + (&self.params[2] * c1).sum_dim_intlist(&[1i64, 2][..], false, tch::Kind::Double)
                        + self.params[3].sum_dim_intlist(&[1i64][..], false, tch::Kind::Double)
                        + 1.0;
                    (t.name.to_string(), l)
                })
                .collect()
        }
    }

    /// Losses from a table `values[t][e]` (no graph).
    pub fn losses(values: &[&[f64]]) -> Vec<(String, Tensor)> {
        values.iter().zip(TERMS).map(|(v, t)| (t.name.to_string(), Tensor::from_slice(v))).collect()
    }

    /// `weights()` as a table [t][e].
    pub fn table(b: &dyn Balancer) -> Vec<Vec<f64>> {
        b.weights().values.iter().map(update::host).collect()
    }

    pub fn close(got: &[Vec<f64>], want: &[Vec<f64>], tol: f64) {
        for (g, w) in got.iter().zip(want) {
            for (a, b) in g.iter().zip(w) {
                assert!((a - b).abs() <= tol * b.abs().max(1.0), "got {got:?}\nwant {want:?}");
            }
        }
    }
}
