//! The resolved configuration of one job: every value a training run depends on, with the
//! defaults filled in. Its canonical JSON form is hashed into the job id, so two jobs with the
//! same resolved configuration are the same job (that is what makes resume work).
//!
//! Shape checks (unknown keys, types) come from serde with `deny_unknown_fields`; range and
//! cross-field checks are in [`JobConfig::validate`], which reports the dotted path of every
//! offending value so the caller can point at the file position.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::balancer::BalancerConfig;
use crate::ntk::NtkMethod;
use crate::problem::ProblemConfig;
pub use crate::collocation::{Sampling, TermSampling};
pub use crate::model::config::{Dtype, Init, ModelConfig, Normalization};
pub use crate::validation::Invalid;
pub use super::training::{LbfgsConfig, Stage, TrainingConfig};

/// One job, fully resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// Seed of every random choice of the job (initial weights, collocation, NTK points).
    #[serde(default)]
    pub seed: u64,
    pub problem: ProblemConfig,
    #[serde(default)]
    pub model: ModelConfig,
    #[serde(default)]
    pub training: TrainingConfig,
    /// Training points per loss term, keyed by term name. Terms not listed use the problem's
    /// defaults.
    #[serde(default)]
    pub collocation: BTreeMap<String, TermSampling>,
    #[serde(default)]
    pub loss: LossConfig,
    #[serde(default)]
    pub balancer: BalancerConfig,
    #[serde(default)]
    pub ntk: NtkConfig,
    #[serde(default)]
    pub evaluation: EvalConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LossConfig {
    /// Fixed weight per term name (default 1); adaptive balancers start from these.
    pub weights: BTreeMap<String, f64>,
    /// Multiply the PDE residual by eps (paper 003, section 4.4); combines with any balancer.
    pub eps_rescale: bool,
    /// Add the term `residual_grad` (the PDE residual's derivative along the spatial input,
    /// [`crate::problem::gradient`]) with this fixed weight; absent by default and then left
    /// out of the resolved configuration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gradient_enhanced: Option<GradientEnhanced>,
}

/// `loss.gradient_enhanced: {weight: w}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GradientEnhanced {
    /// Fixed weight of `residual_grad` (adaptive balancers start from it).
    pub weight: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NtkConfig {
    /// Measure the NTK at all. A sweep with 0 training steps measures it at initialisation.
    pub enabled: bool,
    /// NTK points per term (term name -> count); terms not listed use the training counts.
    pub points: BTreeMap<String, usize>,
    /// Placement of NTK points (sampled separately from the training batch).
    pub sampling: Sampling,
    /// Snapshot every this many steps (0: only at initialisation and at the end).
    pub every: u64,
    /// Keep the full eigenvalue spectra (they are [S, N] per term).
    pub spectra: bool,
    /// Precision of the kernel computation.
    pub dtype: Dtype,
    /// Points per chunk in the Jacobian passes (bounds memory).
    pub chunk: usize,
    /// How the block statistics are computed: `exact` (the kernel from per-point Jacobians)
    /// or `hutchinson` (trace estimates only). Left out of the resolved configuration at the
    /// default, as is `probes`.
    #[serde(skip_serializing_if = "NtkMethod::is_exact")]
    pub method: NtkMethod,
    /// Rademacher probes per term and snapshot for `method: hutchinson`.
    #[serde(skip_serializing_if = "is_default_probes")]
    pub probes: usize,
}

/// Default `ntk.probes`.
pub const DEFAULT_PROBES: usize = 64;

fn is_default_probes(p: &usize) -> bool {
    *p == DEFAULT_PROBES
}

impl Default for NtkConfig {
    fn default() -> Self {
        NtkConfig {
            enabled: true,
            points: BTreeMap::new(),
            sampling: Sampling::Grid,
            every: 0,
            spectra: true,
            dtype: Dtype::Float64,
            chunk: 512,
            method: NtkMethod::Exact,
            probes: DEFAULT_PROBES,
        }
    }
}

/// Largest `evaluation.points` for 2-D problems (a 500 x 500 grid: 250,000 points, about
/// 10 MB of evaluation data per job file).
pub const MAX_EVAL_POINTS_2D: usize = 500;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Uniform evaluation points per input dimension (1-D: M points on the interval,
    /// 2-D: a points x points grid, at most [`MAX_EVAL_POINTS_2D`]; 2-D sweeps must set it).
    pub points: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig { points: 1000 }
    }
}

impl JobConfig {
    /// Range and cross-field checks. Every returned item names the dotted path it is about.
    pub fn validate(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        out.extend(self.problem.validate());
        out.extend(self.model.validate());
        let t = &self.training;
        if t.stages.is_empty() {
            if !(t.lr > 0.0 && t.lr.is_finite()) {
                out.push(Invalid::new("training.lr", "must be a positive number"));
            }
        } else {
            for (i, s) in t.stages.iter().enumerate() {
                if !(s.lr > 0.0 && s.lr.is_finite()) {
                    out.push(Invalid::new(format!("training.stages.{i}.lr"), "must be a positive number"));
                }
            }
        }
        if t.decay_every == 0 {
            out.push(Invalid::new("training.decay_every", "must be at least 1"));
        }
        if !(t.decay_rate > 0.0 && t.decay_rate <= 1.0) {
            out.push(Invalid::new("training.decay_rate", "must be in (0, 1]"));
        }
        if t.log_every == 0 {
            out.push(Invalid::new("training.log_every", "must be at least 1"));
        }
        if !(0.0..1.0).contains(&t.beta1) {
            out.push(Invalid::new("training.beta1", "must be in [0, 1)"));
        }
        if !(0.0..1.0).contains(&t.beta2) {
            out.push(Invalid::new("training.beta2", "must be in [0, 1)"));
        }
        if let Some(l) = &t.lbfgs {
            out.extend(l.validate());
        }
        // Terms a key may name: the problem's (those exact_bc satisfies included, so that one
        // base serves a sweep over it) and residual_grad when it is on.
        let mut terms = self.problem.term_names();
        if self.loss.gradient_enhanced.is_some() {
            terms.push(crate::problem::gradient::NAME);
        }
        let known = |name: &str| terms.iter().any(|t| *t == name);
        if let Err((path, message)) = self.terms() {
            out.push(Invalid::new(path, message));
        }
        if let Some(g) = &self.loss.gradient_enhanced {
            if !(g.weight.is_finite() && g.weight >= 0.0) {
                out.push(Invalid::new("loss.gradient_enhanced.weight", format!("must be a finite number >= 0, got {}", g.weight)));
            }
            if !self.ntk.method.is_exact() {
                out.push(Invalid::new(
                    "loss.gradient_enhanced",
                    "needs ntk.method: exact (Hutchinson traces run the graph-free forward, which carries derivatives up to second order; residual_grad reads third ones)",
                ));
            }
        }
        let list = terms.join(", ");
        for (name, s) in &self.collocation {
            if !known(name) {
                out.push(Invalid::new(
                    format!("collocation.{name}"),
                    format!("`{name}` is not a loss term of {}; its terms are: {list}", self.problem.kind_name()),
                ));
            } else {
                out.extend(s.validate(&format!("collocation.{name}")));
            }
        }
        for (name, w) in &self.loss.weights {
            if name == crate::problem::gradient::NAME {
                out.push(Invalid::new(format!("loss.weights.{name}"), "the weight of residual_grad is loss.gradient_enhanced.weight"));
            } else if !known(name) {
                out.push(Invalid::new(
                    format!("loss.weights.{name}"),
                    format!("`{name}` is not a loss term of {}; its terms are: {list}", self.problem.kind_name()),
                ));
            } else if !(w.is_finite() && *w >= 0.0) {
                out.push(Invalid::new(format!("loss.weights.{name}"), "must be a finite number >= 0"));
            }
        }
        if self.eps_rescale() && self.problem.eps().is_none() {
            let path = if self.loss.eps_rescale { "loss.eps_rescale" } else { "balancer" };
            out.push(Invalid::new(path, "this problem has no eps to rescale by"));
        }
        for (name, n) in &self.ntk.points {
            if !known(name) {
                out.push(Invalid::new(
                    format!("ntk.points.{name}"),
                    format!("`{name}` is not a loss term of {}; its terms are: {list}", self.problem.kind_name()),
                ));
            } else if *n == 0 {
                out.push(Invalid::new(format!("ntk.points.{name}"), "must be at least 1"));
            }
        }
        if self.ntk.sampling == Sampling::Importance {
            out.push(Invalid::new("ntk.sampling", "importance sampling is for training points (collocation.<term>.sampling); NTK points use grid, uniform or halton"));
        }
        if self.ntk.chunk == 0 {
            out.push(Invalid::new("ntk.chunk", "must be at least 1"));
        }
        if self.ntk.probes == 0 {
            out.push(Invalid::new("ntk.probes", "must be at least 1 (2 or more give a standard error)"));
        }
        if self.evaluation.points < 2 {
            out.push(Invalid::new("evaluation.points", "must be at least 2"));
        } else if self.problem.input_dim() == 2 && self.evaluation.points > MAX_EVAL_POINTS_2D {
            let m = self.evaluation.points;
            out.push(Invalid::new(
                "evaluation.points",
                format!(
                    "is the number of points per dimension: for the 2-D problem {} it gives a {m} x {m} grid ({} points); use at most {MAX_EVAL_POINTS_2D} (the shipped 2-D sweeps use 200; the default 1000 is meant for 1-D)",
                    self.problem.kind_name(),
                    m * m
                ),
            ));
        }
        out.extend(self.balancer.validate(&terms, self.model.depth + 1));
        out
    }

    /// Training points of a term (configured, else the problem's default).
    pub fn term_points(&self, term: &str) -> TermSampling {
        self.collocation.get(term).cloned().unwrap_or_else(|| {
            let points = self.terms().ok().and_then(|ts| ts.iter().find(|t| t.name == term).map(|t| t.default_points)).unwrap_or_else(|| self.problem.default_points(term));
            TermSampling::plain(points, Sampling::Grid, false)
        })
    }

    /// Whether the PDE residual is multiplied by eps: `loss.eps_rescale: true` (with any
    /// balancer) or `balancer: eps_rescale`.
    pub fn eps_rescale(&self) -> bool {
        self.loss.eps_rescale || self.balancer.rescales_eps()
    }

    /// Fixed weight of a term (default 1; `residual_grad`'s from `loss.gradient_enhanced`).
    pub fn weight(&self, term: &str) -> f64 {
        match &self.loss.gradient_enhanced {
            Some(g) if term == crate::problem::gradient::NAME => g.weight,
            _ => self.loss.weights.get(term).copied().unwrap_or(1.0),
        }
    }

    /// The schemes that change the loss terms.
    pub fn schemes(&self) -> crate::problem::schemes::Schemes {
        crate::problem::schemes::Schemes { exact_bc: self.model.exact_bc, gradient_enhanced: self.loss.gradient_enhanced.is_some() }
    }

    /// The loss terms the job trains: the problem's, less those `model.exact_bc` satisfies,
    /// plus `residual_grad`; or the path and message of why the schemes do not apply.
    pub fn terms(&self) -> Result<Vec<crate::problem::TermSpec>, (&'static str, String)> {
        crate::problem::schemes::terms(&self.problem, self.schemes())
    }

    /// NTK points of a term (configured, else the number of training points).
    pub fn ntk_points(&self, term: &str) -> usize {
        self.ntk.points.get(term).copied().unwrap_or_else(|| self.term_points(term).points)
    }
}
