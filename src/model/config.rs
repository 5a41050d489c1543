//! The `model:` section: architecture, initialisation, input normalisation and training
//! precision. It lives with the network it configures; `config` gathers it into a job.

use serde::{Deserialize, Serialize};

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
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            width: 50,
            depth: 3,
            init: Init::XavierNormal,
            normalization: Normalization::None,
            dtype: Dtype::Float32,
        }
    }
}

impl ModelConfig {
    /// Range checks of the `model:` section.
    pub fn validate(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        if self.width == 0 {
            out.push(Invalid::new("model.width", "must be at least 1"));
        }
        if self.depth == 0 {
            out.push(Invalid::new("model.depth", "must be at least 1 hidden layer"));
        }
        out
    }
}
