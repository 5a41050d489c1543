//! The `training:` section: Adam's schedule and the optional L-BFGS phase. It lives in
//! `config` because `train`, which it configures, sits above `config` in the pipeline
//! (config -> schedule -> train) and reads whole jobs.

use serde::{Deserialize, Serialize};

use crate::validation::Invalid;

/// One stage of a staged learning-rate schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    pub steps: u64,
    pub lr: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingConfig {
    /// Adam steps (ignored when `stages` is given: then it is their sum).
    pub steps: u64,
    /// Initial Adam learning rate.
    pub lr: f64,
    /// Exponential decay: lr * decay_rate^(step / decay_every) (continuous, as optax's
    /// `exponential_decay` with `staircase: false` unless `staircase: true`).
    pub decay_rate: f64,
    pub decay_every: u64,
    pub staircase: bool,
    /// Staged schedule: a list of (steps, lr) run one after another, replacing steps/lr/decay.
    pub stages: Vec<Stage>,
    pub beta1: f64,
    pub beta2: f64,
    pub adam_eps: f64,
    /// Record histories every this many steps (and at the last step).
    pub log_every: u64,
    /// Optional L-BFGS phase after the Adam steps (absent: none). Left out of the resolved
    /// configuration when absent, so job ids of sweeps without it do not change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lbfgs: Option<LbfgsConfig>,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        TrainingConfig {
            steps: 1000,
            lr: 1e-3,
            decay_rate: 0.9,
            decay_every: 1000,
            staircase: false,
            stages: Vec::new(),
            beta1: 0.9,
            beta2: 0.999,
            adam_eps: 1e-8,
            log_every: 10,
            lbfgs: None,
        }
    }
}

impl TrainingConfig {
    /// Total number of Adam steps (the L-BFGS phase, if any, comes after them).
    pub fn total_steps(&self) -> u64 {
        if self.stages.is_empty() {
            self.steps
        } else {
            self.stages.iter().map(|s| s.steps).sum()
        }
    }

    /// Adam steps plus L-BFGS iterations (at most; the phase may stop early): the unit of
    /// the progress bar and of `plan`'s cost.
    pub fn all_steps(&self) -> u64 {
        self.total_steps() + self.lbfgs.as_ref().map_or(0, |l| l.steps)
    }

    /// Learning rate used at `step` (0-based).
    pub fn lr_at(&self, step: u64) -> f64 {
        if !self.stages.is_empty() {
            let mut start = 0;
            for s in &self.stages {
                if step < start + s.steps {
                    return s.lr;
                }
                start += s.steps;
            }
            return self.stages.last().map(|s| s.lr).unwrap_or(self.lr);
        }
        let t = step as f64 / self.decay_every as f64;
        let t = if self.staircase { t.floor() } else { t };
        self.lr * self.decay_rate.powf(t)
    }
}

/// The line search of each iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LineSearch {
    /// Bracketing + zoom until the strong Wolfe conditions hold (Nocedal & Wright 3.5/3.6).
    #[default]
    StrongWolfe,
}

/// `training.lbfgs`: an L-BFGS phase after the Adam steps. Absent: no L-BFGS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LbfgsConfig {
    /// L-BFGS iterations (each one line search of up to 25 loss evaluations); they are
    /// numbered after the Adam steps in the histories.
    pub steps: u64,
    /// Number of (s, y) pairs kept.
    #[serde(default = "default_history")]
    pub history: usize,
    /// Stop when max |gradient| falls to this.
    #[serde(default = "default_tolerance_grad")]
    pub tolerance_grad: f64,
    /// Stop when the loss or the step (max |t d|) changes by less than this; also the
    /// smallest bracket the line search refines.
    #[serde(default = "default_tolerance_change")]
    pub tolerance_change: f64,
    #[serde(default)]
    pub line_search: LineSearch,
}

fn default_history() -> usize {
    50
}
fn default_tolerance_grad() -> f64 {
    1e-9
}
fn default_tolerance_change() -> f64 {
    1e-12
}

impl LbfgsConfig {
    /// A configuration with the default settings.
    pub fn with_steps(steps: u64) -> Self {
        LbfgsConfig {
            steps,
            history: default_history(),
            tolerance_grad: default_tolerance_grad(),
            tolerance_change: default_tolerance_change(),
            line_search: LineSearch::StrongWolfe,
        }
    }

    pub fn validate(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        if self.history == 0 {
            out.push(Invalid::new("training.lbfgs.history", "must be at least 1"));
        }
        for (name, v) in [("tolerance_grad", self.tolerance_grad), ("tolerance_change", self.tolerance_change)] {
            if !(v.is_finite() && v >= 0.0) {
                out.push(Invalid::new(format!("training.lbfgs.{name}"), format!("must be a finite number >= 0, got {v}")));
            }
        }
        out
    }
}
