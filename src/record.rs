//! What one job produced, independent of how it is stored. The trainer fills a
//! [`JobRecord`] per member; [`crate::output`] writes it to HDF5.

use std::collections::BTreeMap;

/// Outcome of a job (the `status` attribute of its file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Done,
    Failed,
    Diverged,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Done => "done",
            Status::Failed => "failed",
            Status::Diverged => "diverged",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "done" => Some(Status::Done),
            "failed" => Some(Status::Failed),
            "diverged" => Some(Status::Diverged),
            _ => None,
        }
    }
}

/// Training histories, one entry per logged step.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub step: Vec<i64>,
    pub loss: BTreeMap<String, Vec<f64>>,
    pub weight: BTreeMap<String, Vec<f64>>,
    pub rel_l2: Vec<f64>,
    pub lr: Vec<f64>,
}

/// NTK snapshots of one term.
#[derive(Debug, Clone, Default)]
pub struct NtkTermRecord {
    /// Points [N, d] row-major, physical coordinates.
    pub x: Vec<f64>,
    pub frobenius: Vec<f64>,
    pub trace: Vec<f64>,
    /// Standard error of each trace estimate (`ntk.method: hutchinson`; empty for `exact`,
    /// which also leaves `frobenius` empty under hutchinson).
    pub trace_stderr: Vec<f64>,
    /// One descending spectrum per snapshot (empty when spectra are off).
    pub eigenvalues: Vec<Vec<f64>>,
}

#[derive(Debug, Clone, Default)]
pub struct NtkRecord {
    pub step: Vec<i64>,
    pub terms: Vec<(String, NtkTermRecord)>,
    /// Empty under `ntk.method: hutchinson`.
    pub full_frobenius: Vec<f64>,
}

#[derive(Debug, Clone, Default)]
pub struct EvalRecord {
    /// [M, d] row-major.
    pub x: Vec<f64>,
    pub u_pred: Vec<f64>,
    pub u_exact: Vec<f64>,
    pub error: Vec<f64>,
    pub rel_l2: f64,
    pub max_abs_error: f64,
    pub boundary_error: f64,
    /// |DFT| of the error on the uniform grid (1-D problems).
    pub error_spectrum: Option<Vec<f64>>,
}

/// Per-layer (weight [out, in] row-major, bias [out]).
pub type Params = Vec<(Vec<f64>, Vec<f64>)>;

/// What a network has besides its layers' weights and biases (all None for a plain MLP).
#[derive(Debug, Clone, Default)]
pub struct NetworkRecord {
    /// Adaptive-activation slope a of every hidden layer (one value repeated for `global`), at
    /// initialisation and at the end of training.
    pub slopes_init: Option<Vec<f64>>,
    pub slopes_final: Option<Vec<f64>>,
    /// Fourier feature matrix B [m, d] row-major.
    pub fourier_b: Option<Vec<f64>>,
}

#[derive(Debug, Clone)]
pub struct JobRecord {
    pub status: Status,
    pub message: String,
    /// Input dimension d.
    pub dim: usize,
    /// Layer sizes [d, width, ..., 1].
    pub sizes: Vec<usize>,
    pub history: History,
    pub ntk: Option<NtkRecord>,
    pub eval: Option<EvalRecord>,
    pub params_init: Option<Params>,
    pub params_final: Option<Params>,
    pub network: NetworkRecord,
    /// Wall time of the batch the job trained in.
    pub wall_seconds: f64,
    /// Jobs trained together in that batch.
    pub batch_size: usize,
    pub diverged_step: Option<i64>,
}

impl JobRecord {
    /// A job that failed before producing anything.
    pub fn failed(message: impl Into<String>) -> Self {
        JobRecord {
            status: Status::Failed,
            message: message.into(),
            dim: 0,
            sizes: Vec::new(),
            history: History::default(),
            ntk: None,
            eval: None,
            params_init: None,
            params_final: None,
            network: NetworkRecord::default(),
            wall_seconds: 0.0,
            batch_size: 1,
            diverged_step: None,
        }
    }
}
