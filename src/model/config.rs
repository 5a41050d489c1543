//! The `model:` section: architecture, initialisation, input normalisation and training
//! precision. It lives with the network it configures; `config` gathers it into a job.

use serde::{Deserialize, Serialize};

use super::activation::Activation;
use super::adaptive::AdaptiveActivation;
use super::fourier::FourierConfig;
use crate::validation::Invalid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    /// Xavier/Glorot normal: N(0, 2 / (fan_in + fan_out)), biases 0.
    #[default]
    XavierNormal,
    /// Standard normal N(0, 1) for weights and biases (the paper's "normal" initialisation).
    Normal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Normalization {
    /// The network sees physical coordinates.
    #[default]
    None,
    /// (x - mean) / std per input, mean and std of the uniform distribution on the domain.
    Zscore,
    /// Affine map of the domain onto [-1, 1] per input.
    Minmax,
}

impl Normalization {
    pub fn name(self) -> &'static str {
        match self {
            Normalization::None => "none",
            Normalization::Zscore => "zscore",
            Normalization::Minmax => "minmax",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Dtype {
    #[default]
    Float32,
    Float64,
}

impl Dtype {
    pub fn kind(self) -> tch::Kind {
        match self {
            Dtype::Float32 => tch::Kind::Float,
            Dtype::Float64 => tch::Kind::Double,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Neurons per hidden layer.
    pub width: usize,
    /// Number of hidden layers.
    pub depth: usize,
    pub init: Init,
    pub normalization: Normalization,
    /// Training precision (NTK spectra use `ntk.dtype`).
    pub dtype: Dtype,
    /// Hidden-layer activation. This and the next two keys are left out of the resolved
    /// configuration at their defaults, so job ids of sweeps without them do not change.
    #[serde(skip_serializing_if = "Activation::is_default")]
    pub activation: Activation,
    /// Trainable activation slopes sigma(n a z) (`none` by default).
    #[serde(skip_serializing_if = "AdaptiveActivation::is_none")]
    pub adaptive_activation: AdaptiveActivation,
    /// Fourier feature embedding of the (normalised) inputs (absent by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fourier: Option<FourierConfig>,
    /// Exact Dirichlet conditions through the ansatz u = g + phi N
    /// ([`crate::model::ansatz`]); left out of the resolved configuration when false.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub exact_bc: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            width: 50,
            depth: 3,
            init: Init::XavierNormal,
            normalization: Normalization::None,
            dtype: Dtype::Float32,
            activation: Activation::Tanh,
            adaptive_activation: AdaptiveActivation::default(),
            fourier: None,
            exact_bc: false,
        }
    }
}

impl ModelConfig {
    /// Inputs of the first layer for a d-dimensional problem: d, or 2 m with Fourier features.
    pub fn inputs(&self, d: usize) -> usize {
        self.fourier.as_ref().map_or(d, |f| 2 * f.features)
    }

    /// Range checks of the `model:` section.
    pub fn validate(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        if self.width == 0 {
            out.push(Invalid::new("model.width", "must be at least 1"));
        }
        if self.depth == 0 {
            out.push(Invalid::new("model.depth", "must be at least 1 hidden layer"));
        }
        let scale = self.adaptive_activation.scale;
        if !(scale.is_finite() && scale > 0.0) {
            out.push(Invalid::new("model.adaptive_activation.scale", format!("must be a positive number, got {scale}")));
        }
        if let Some(f) = &self.fourier {
            out.extend(f.validate());
        }
        out
    }
}
