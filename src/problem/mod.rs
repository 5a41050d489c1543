//! Problems: a domain, named loss terms with their residuals, and an exact solution.
//!
//! A new PDE is one file here, one variant of [`ProblemConfig`] and one exact-solution test.
//! Runtime problems serve a whole batch of members (jobs trained together as one batched
//! network), so every per-job constant (eps, coefficients) is a tensor with a leading member
//! dimension `[E, 1]` that broadcasts against `[E, N]` point tensors.

pub mod darcy1d;
pub mod multiscale;
pub mod poisson1d;
pub mod regression1d;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::config::job::Invalid;
use crate::model::streams::{StreamLayout, Streams};

pub use darcy1d::{Darcy1d, Darcy1dConfig};
pub use poisson1d::{Poisson1d, Poisson1dConfig};
pub use regression1d::{Regression1d, Regression1dConfig};

/// Where a term's points live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    /// The open domain.
    Interior,
    /// The spatial boundary (1-D: both end points; 2-D: the faces of the box, for
    /// time-dependent problems the faces x = lo and x = hi for every t).
    Boundary,
    /// The initial face t = t0 (input 0 is time).
    Initial,
}

/// A named loss term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TermSpec {
    pub name: &'static str,
    pub region: Region,
    /// Default number of training points.
    pub default_points: usize,
    /// The PDE residual: the term `loss.eps_rescale` multiplies by eps.
    pub pde: bool,
}

/// An axis-aligned box domain.
#[derive(Debug, Clone, PartialEq)]
pub struct Domain {
    pub lo: Vec<f64>,
    pub hi: Vec<f64>,
    /// True when input 0 is time (then `Boundary` means the spatial faces only).
    pub time_dependent: bool,
}

impl Domain {
    pub fn dim(&self) -> usize {
        self.lo.len()
    }
}

/// Tensor options shared by a batch.
#[derive(Debug, Clone, Copy)]
pub struct TensorOpts {
    pub kind: Kind,
    pub device: Device,
}

impl TensorOpts {
    /// One value per member as a [E, 1] column.
    pub fn column(&self, values: &[f64]) -> Tensor {
        Tensor::from_slice(values).to_kind(self.kind).to_device(self.device).view([-1, 1])
    }
}

/// The runtime side of a problem for a batch of members.
pub trait Problem: Send {
    fn domain(&self) -> Domain;
    fn terms(&self) -> &'static [TermSpec];
    /// Streams the residuals read.
    fn layout(&self) -> StreamLayout;
    /// Residual of `term` at points `x` from the network streams at those points.
    ///
    /// # Shapes
    /// `x`: [E, N, d]; `u`: streams [E, S, N]; returns [E, N].
    fn residual(&self, term: &str, x: &Tensor, u: &Streams) -> Tensor;
    /// Exact solution at `x` [E, N, d]; returns [E, N].
    fn exact(&self, x: &Tensor) -> Tensor;
    /// Per-member eps (for `loss.eps_rescale`), [E, 1]; None for problems without a scale.
    fn eps(&self) -> Option<Tensor>;
}

/// Problem configuration: the `problem:` section, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProblemConfig {
    Darcy1d(Darcy1dConfig),
    Poisson1d(Poisson1dConfig),
    Regression1d(Regression1dConfig),
}

impl ProblemConfig {
    pub fn kind_name(&self) -> &'static str {
        match self {
            ProblemConfig::Darcy1d(_) => "darcy1d",
            ProblemConfig::Poisson1d(_) => "poisson1d",
            ProblemConfig::Regression1d(_) => "regression1d",
        }
    }

    pub fn terms(&self) -> &'static [TermSpec] {
        match self {
            ProblemConfig::Darcy1d(_) => darcy1d::TERMS,
            ProblemConfig::Poisson1d(_) => poisson1d::TERMS,
            ProblemConfig::Regression1d(_) => regression1d::TERMS,
        }
    }

    pub fn term_names(&self) -> Vec<&'static str> {
        self.terms().iter().map(|t| t.name).collect()
    }

    pub fn default_points(&self, term: &str) -> usize {
        self.terms().iter().find(|t| t.name == term).map(|t| t.default_points).unwrap_or(0)
    }

    /// The scale parameter, for problems that have one.
    pub fn eps(&self) -> Option<f64> {
        match self {
            ProblemConfig::Darcy1d(c) => Some(c.eps),
            ProblemConfig::Poisson1d(c) => Some(c.eps),
            ProblemConfig::Regression1d(c) => Some(c.eps),
        }
    }

    pub fn input_dim(&self) -> usize {
        match self {
            ProblemConfig::Darcy1d(_) | ProblemConfig::Poisson1d(_) | ProblemConfig::Regression1d(_) => 1,
        }
    }

    pub fn validate(&self) -> Vec<Invalid> {
        match self {
            ProblemConfig::Darcy1d(c) => c.validate(),
            ProblemConfig::Poisson1d(c) => c.validate(),
            ProblemConfig::Regression1d(c) => c.validate(),
        }
    }

    /// Build the runtime problem for a batch of members (all of this kind).
    pub fn build(members: &[&ProblemConfig], opts: TensorOpts) -> Box<dyn Problem> {
        macro_rules! collect {
            ($variant:ident) => {
                members
                    .iter()
                    .map(|m| match m {
                        ProblemConfig::$variant(c) => c.clone(),
                        other => panic!("batch mixes problem kinds: {}", other.kind_name()),
                    })
                    .collect::<Vec<_>>()
            };
        }
        match members[0] {
            ProblemConfig::Darcy1d(_) => Box::new(Darcy1d::new(&collect!(Darcy1d), opts)),
            ProblemConfig::Poisson1d(_) => Box::new(Poisson1d::new(&collect!(Poisson1d), opts)),
            ProblemConfig::Regression1d(_) => Box::new(Regression1d::new(&collect!(Regression1d), opts)),
        }
    }
}

/// First input coordinate of [E, N, d] points as [E, N].
pub(crate) fn coord(x: &Tensor, i: i64) -> Tensor {
    x.select(-1, i)
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers for the exact-solution tests: streams built from the analytic derivatives.
    use super::multiscale::TwoScale;
    use super::*;

    pub fn opts64() -> TensorOpts {
        TensorOpts { kind: Kind::Double, device: Device::Cpu }
    }

    /// Streams [E, 3, N] (u, u', u'') of the two-scale solution at x [E, N, 1].
    pub fn exact_streams_1d(sol: &TwoScale, x: &Tensor) -> Streams {
        let x = coord(x, 0);
        Streams {
            layout: StreamLayout::second_order(1),
            data: Tensor::stack(&[sol.u(&x), sol.du(&x), sol.ddu(&x)], 1),
        }
    }
}

/// Precise path of a typing error inside `problem:`. serde reports errors of internally
/// tagged enums at the section itself; re-typing the section as its variant's struct gives
/// the field.
pub(crate) fn refine_error(tree: &serde_yaml_ng::Value, path: &[String]) -> Option<(Vec<String>, String)> {
    if path.first().map(String::as_str) != Some("problem") || path.len() > 1 {
        return None;
    }
    let section = tree.get("problem")?;
    let kind = section.get("kind")?.as_str()?;
    match kind {
        "darcy1d" => crate::config::sweep_refine::<Darcy1dConfig>("problem", section),
        "poisson1d" => crate::config::sweep_refine::<Poisson1dConfig>("problem", section),
        "regression1d" => crate::config::sweep_refine::<Regression1dConfig>("problem", section),
        _ => None,
    }
}
