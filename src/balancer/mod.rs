//! Loss balancers: how the weights lambda_i of the mean-squared loss terms evolve.
//!
//! One closed enum of configurations ([`BalancerConfig`], the `balancer:` section, tagged by
//! `kind`) dispatching to one trait ([`Balancer`]); a new scheme is one file here, one variant
//! and one reference-number test. Weights are keyed by loss-term name and hold one value per
//! member of the batch.

pub mod fixed;

use serde::{Deserialize, Serialize};
use tch::{TchError, Tensor};

use crate::config::job::Invalid;

/// The `balancer:` section. `balancer: none` is shorthand for `balancer: {kind: none}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BalancerConfig {
    /// Fixed weights from `loss.weights` (default 1 each).
    #[default]
    None,
}

impl BalancerConfig {
    pub fn name(&self) -> &'static str {
        match self {
            BalancerConfig::None => "none",
        }
    }

    pub fn validate(&self, _terms: &[&str]) -> Vec<Invalid> {
        match self {
            BalancerConfig::None => Vec::new(),
        }
    }
}

/// Precise path of a typing error inside `balancer:` (see `problem::refine_error`).
pub(crate) fn refine_error(_tree: &serde_yaml_ng::Value, _path: &[String]) -> Option<(Vec<String>, String)> {
    None
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
}

/// What a balancer sees when it updates (at the start of a step, before the optimiser).
pub struct BalanceInputs<'a> {
    pub step: u64,
    /// Unweighted mean-squared loss per term, [E] each, with their graphs.
    pub losses: &'a [(String, Tensor)],
    /// Network parameters (w0, b0, w1, b1, ...).
    pub params: &'a [Tensor],
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
}

/// Build the runtime balancer of a batch. `fixed[e][t]` is member e's configured weight of
/// term t.
pub fn build(
    configs: &[&BalancerConfig],
    terms: &[&str],
    fixed: &[Vec<f64>],
    opts: crate::problem::TensorOpts,
) -> Box<dyn Balancer> {
    match configs[0] {
        BalancerConfig::None => Box::new(fixed::Fixed::new(terms, fixed, opts)),
    }
}
