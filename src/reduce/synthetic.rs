//! Synthetic job files for the reducer's tests and benchmark.
//!
//! They follow the job-file contract (the same names, shapes and string types a real job
//! writes), so the reducer can be tested and timed without training anything. Real job files
//! are written by the job writer; this module exists only so that fixtures and the benchmark
//! do not each grow their own copy of the layout.

use std::path::{Path, PathBuf};
use std::time::Instant;

use hdf5::types::{FixedAscii, VarLenUnicode};
use hdf5::Location;
use ndarray::Array2;

use super::summary::ds_2d;
use super::{reduce, ReduceError, ReduceOptions, Reduction};

/// The evaluation part of a synthetic job.
#[derive(Debug, Clone)]
pub struct SyntheticEval {
    /// `eval/x`, shape [M, d].
    pub x: Array2<f64>,
    /// `eval/error`, shape [M].
    pub error: Vec<f64>,
    /// `eval` attribute `rel_l2`.
    pub rel_l2: f64,
}

/// One job file's content as far as the reducer is concerned (plus a little realistic bulk).
#[derive(Debug, Clone)]
pub struct SyntheticJob {
    pub job_id: String,
    pub problem: String,
    pub eps: f64,
    pub width: i64,
    pub seed: i64,
    pub balancer: String,
    pub normalization: String,
    /// `done`, `failed` or `diverged` (anything else is written as given).
    pub status: String,
    pub message: String,
    /// `ntk/step`, shape [S]; empty means no `ntk` group is written.
    pub steps: Vec<i64>,
    /// (term, Frobenius norms [S]); the term `full` becomes `ntk/full/frobenius`.
    pub frobenius: Vec<(String, Vec<f64>)>,
    /// `None` writes no `eval` group (as a failed job may).
    pub eval: Option<SyntheticEval>,
    /// Write string attributes as fixed-length ASCII (as h5py does for `np.bytes_`) instead of
    /// variable-length UTF-8, to exercise the reader's leniency.
    pub fixed_length_strings: bool,
    /// YAML appended to the generated `config` attribute (which holds seed, problem kind and
    /// eps, and width), e.g. `"training:\n  lr: 0.01\n"`.
    pub config_extra: String,
    /// The `sweep` attribute.
    pub sweep: String,
    /// `train/rel_l2` history; empty writes no `train` group.
    pub rel_l2_history: Vec<f64>,
    /// (term, last loss, last weight): `train/loss/<term>` = [1, loss] and
    /// `train/weight/<term>` = [1, weight] (written only with a `rel_l2_history`).
    pub last_terms: Vec<(String, f64, f64)>,
}

impl SyntheticJob {
    /// A finished job with no NTK snapshots and no evaluation; fill in the rest.
    pub fn done(job_id: &str, problem: &str, eps: f64, width: i64, seed: i64) -> Self {
        Self {
            job_id: job_id.to_owned(),
            problem: problem.to_owned(),
            eps,
            width,
            seed,
            balancer: "none".to_owned(),
            normalization: "none".to_owned(),
            status: "done".to_owned(),
            message: String::new(),
            steps: Vec::new(),
            frobenius: Vec::new(),
            eval: None,
            fixed_length_strings: false,
            config_extra: String::new(),
            sweep: "synthetic".to_owned(),
            rel_l2_history: Vec::new(),
            last_terms: Vec::new(),
        }
    }

    /// The `config` attribute: seed, problem (kind, eps unless NaN), model width, then
    /// [`SyntheticJob::config_extra`].
    pub fn config(&self) -> String {
        let eps = if self.eps.is_nan() { String::new() } else { format!("  eps: {}\n", crate::yaml_text::float(self.eps)) };
        format!(
            "seed: {}\nproblem:\n  kind: {}\n{eps}model:\n  width: {}\n{}",
            self.seed, self.problem, self.width, self.config_extra
        )
    }
}

fn wrap(path: &Path, what: &str) -> impl FnOnce(hdf5::Error) -> ReduceError {
    let (path, what) = (path.to_path_buf(), what.to_owned());
    move |source| ReduceError::WriteHdf5 { path, what, source }
}

/// Writes `job` to `path` following the job-file contract.
pub fn write_synthetic_job(path: &Path, job: &SyntheticJob) -> Result<(), ReduceError> {
    write_inner(path, job).map_err(wrap(path, "synthetic job file"))
}

fn write_inner(path: &Path, job: &SyntheticJob) -> hdf5::Result<()> {
    let file = hdf5::File::create(path)?;
    let s = |loc: &Location, name: &str, value: &str| -> hdf5::Result<()> {
        if job.fixed_length_strings {
            let v = FixedAscii::<256>::from_ascii(value.as_bytes())
                .map_err(|e| hdf5::Error::from(e.to_string()))?;
            loc.new_attr::<FixedAscii<256>>().shape(()).create(name)?.write_scalar(&v)
        } else {
            let v: VarLenUnicode = value
                .parse()
                .map_err(|e: hdf5::types::StringError| hdf5::Error::from(e.to_string()))?;
            loc.new_attr::<VarLenUnicode>().shape(()).create(name)?.write_scalar(&v)
        }
    };
    let f = |loc: &Location, name: &str, v: f64| -> hdf5::Result<()> {
        loc.new_attr::<f64>().shape(()).create(name)?.write_scalar(&v)
    };
    let i = |loc: &Location, name: &str, v: i64| -> hdf5::Result<()> {
        loc.new_attr::<i64>().shape(()).create(name)?.write_scalar(&v)
    };
    s(&file, "job_id", &job.job_id)?;
    s(&file, "problem", &job.problem)?;
    f(&file, "eps", job.eps)?;
    i(&file, "width", job.width)?;
    i(&file, "depth", 4)?;
    i(&file, "seed", job.seed)?;
    s(&file, "balancer", &job.balancer)?;
    s(&file, "normalization", &job.normalization)?;
    s(&file, "status", &job.status)?;
    s(&file, "message", &job.message)?;
    s(&file, "config", &job.config())?;
    s(&file, "sweep", &job.sweep)?;
    i(&file, "diverged_step", -1)?;
    f(&file, "wall_seconds", 0.0)?;
    s(&file, "device", "cpu")?;
    i(&file, "rank", 0)?;
    s(&file, "host", "synthetic")?;
    s(&file, "version", env!("CARGO_PKG_VERSION"))?;

    if !job.steps.is_empty() {
        let ntk = file.create_group("ntk")?;
        ntk.new_dataset_builder().with_data(job.steps.as_slice()).create("step")?;
        for (term, values) in &job.frobenius {
            let g = ntk.create_group(term)?;
            g.new_dataset_builder().with_data(values.as_slice()).create("frobenius")?;
            if term != "full" {
                // Trace, and a spectrum lambda_k = ||K||_F^(1/k) (k = 1..8; descending for norms
                // above 1), so the k-th eigenvalue's fitted exponent is the norm's over k.
                g.new_dataset_builder().with_data(values.as_slice()).create("trace")?;
                let eig = Array2::<f64>::from_shape_fn((values.len(), 8), |(s, k)| values[s].powf(1.0 / (k + 1) as f64));
                ds_2d(&g, "eigenvalues", &eig)?;
            }
        }
    }
    if let Some(eval) = &job.eval {
        let g = file.create_group("eval")?;
        ds_2d(&g, "x", &eval.x)?;
        g.new_dataset_builder().with_data(eval.error.as_slice()).create("error")?;
        let zeros = vec![0.0; eval.error.len()];
        g.new_dataset_builder().with_data(zeros.as_slice()).create("u_exact")?;
        g.new_dataset_builder().with_data(eval.error.as_slice()).create("u_pred")?;
        f(&g, "rel_l2", eval.rel_l2)?;
        f(&g, "max_abs_error", eval.error.iter().fold(0.0, |m: f64, e| m.max(e.abs())))?;
        f(&g, "boundary_error", 0.0)?;
    }
    if !job.rel_l2_history.is_empty() {
        let train = file.create_group("train")?;
        train.new_dataset_builder().with_data(job.rel_l2_history.as_slice()).create("rel_l2")?;
        let (loss, weight) = (train.create_group("loss")?, train.create_group("weight")?);
        for (term, l, w) in &job.last_terms {
            loss.new_dataset_builder().with_data(&[1.0, *l]).create(term.as_str())?;
            weight.new_dataset_builder().with_data(&[1.0, *w]).create(term.as_str())?;
        }
    }
    file.close()
}

/// Timing of [`bench_reduce`].
#[derive(Debug, Clone)]
pub struct ReduceBench {
    pub n_files: usize,
    /// Seconds to write the synthetic job files (not part of the reduction).
    pub write_seconds: f64,
    /// Seconds for [`reduce`] over them, outputs included.
    pub reduce_seconds: f64,
    pub reduction: Reduction,
}

impl std::fmt::Display for ReduceBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "reduce {} job files: {:.3} s ({:.1} us per file; {} scaling + {} trial groups); \
             writing them took {:.3} s",
            self.n_files,
            self.reduce_seconds,
            1e6 * self.reduce_seconds / self.n_files.max(1) as f64,
            self.reduction.groups.scaling.len(),
            self.reduction.groups.trials.len(),
            self.write_seconds
        )
    }
}

/// Writes `n_files` small synthetic job files into `dir/jobs` (`dir` should be empty) and
/// times [`reduce`] over them.
///
/// The files look like a Darcy sweep: eps = 2^-1 ... 2^-8, ten seeds, a new width every 80
/// jobs, NTK snapshots at steps 0 and 1000 for terms `residual`, `boundary` and `full` (norms
/// C eps^-2 with noise), 200 evaluation points; every 97th job is `failed`.
pub fn bench_reduce(n_files: usize, dir: &Path) -> Result<ReduceBench, ReduceError> {
    let jobs = dir.join("jobs");
    std::fs::create_dir_all(&jobs)
        .map_err(|source| ReduceError::Io { path: jobs.clone(), what: "cannot create", source })?;
    let m = 200;
    let x = Array2::from_shape_fn((m, 1), |(i, _)| i as f64 / (m - 1) as f64);
    let started = Instant::now();
    for k in 0..n_files {
        let eps = 0.5f64.powi(1 + (k % 8) as i32);
        let seed = ((k / 8) % 10) as i64;
        let width = 50 * (1 + (k / 80) as i64);
        let id = format!("{k:08x}");
        let mut job = SyntheticJob::done(&id, "darcy1d", eps, width, seed);
        let noise = 1.0 + 0.01 * (((k * 7919) % 101) as f64 / 100.0 - 0.5);
        if k % 97 == 96 {
            job.status = "failed".to_owned();
            job.message = "synthetic failure".to_owned();
        } else {
            job.steps = vec![0, 1000];
            let res = 3.0 * eps.powi(-2) * noise;
            job.frobenius = vec![
                ("boundary".to_owned(), vec![2.0 * noise, 2.5 * noise]),
                ("full".to_owned(), vec![res + 2.0, 1.2 * res]),
                ("residual".to_owned(), vec![res, 1.1 * res]),
            ];
            let error: Vec<f64> =
                (0..m).map(|i| 1e-3 * ((i + k) as f64).sin() * noise).collect();
            job.eval = Some(SyntheticEval { x: x.clone(), error, rel_l2: 0.01 * noise });
        }
        let path: PathBuf = jobs.join(format!("{id}.h5"));
        write_synthetic_job(&path, &job)?;
    }
    let write_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let reduction = reduce(dir, &ReduceOptions::default())?;
    let reduce_seconds = started.elapsed().as_secs_f64();
    Ok(ReduceBench { n_files, write_seconds, reduce_seconds, reduction })
}
