//! Reading one job file: exactly the attributes and datasets the reducer needs, in one open.
//!
//! A sweep can have ten thousand job files, so this reads each file once and never touches
//! what the reduction does not use (parameters, whole spectra: only the first
//! [`TOP_EIGENVALUES`] columns of each spectrum, and of the training history only the best
//! rel L2 and the last loss and weight, see [`super::history`]). Every
//! file, whatever its status, gives a [`JobFacts`] (one row of `jobs.csv`: identifying
//! attributes, settings from the `config` attribute, headline numbers, NTK norms at the first
//! and last snapshot), read leniently: what a failed job lacks is simply absent. A finished job
//! also gives a [`DoneJob`] with what the statistics need, read strictly: anything wrong (missing
//! dataset, shape mismatch, a `config` attribute that is not YAML) makes the job *unreadable*
//! with a reason; it never stops the reduction.
//!
//! String attributes are written by ntksweep as variable-length UTF-8 scalars, but files
//! touched by other tools (h5py with `np.bytes_`, older writers) may hold fixed-length or
//! ASCII strings, or one-element arrays; all of those are accepted.

use std::fmt;
use std::path::{Path, PathBuf};

use hdf5::types::{FixedAscii, FixedUnicode, TypeDescriptor, VarLenAscii, VarLenUnicode};
use hdf5::{Attribute, Location};
use ndarray::Array2;

use super::history::{read_train, TrainEnds};
use super::settings::{self, Setting, Settings};

/// Eigenvalues per snapshot kept for the scaling fits of the first eigenvalues.
pub const TOP_EIGENVALUES: usize = 3;

/// Why a job did not enter the reduction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ExclusionKind {
    /// The job file says `status = failed`.
    Failed,
    /// The job file says `status = diverged`.
    Diverged,
    /// The file could not be opened or misses something the contract promises.
    Unreadable,
}

impl ExclusionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failed => "failed",
            Self::Diverged => "diverged",
            Self::Unreadable => "unreadable",
        }
    }
}

impl fmt::Display for ExclusionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job file that is counted but not reduced.
#[derive(Debug, Clone, PartialEq)]
pub struct ExcludedJob {
    /// The `job_id` attribute, or the file stem when the file is unreadable.
    pub job_id: String,
    pub file: PathBuf,
    pub kind: ExclusionKind,
    /// The job's own `message` attribute (failed, diverged) or the read error (unreadable).
    pub message: String,
}

/// The NTK Frobenius norms of one finished job.
#[derive(Debug, Clone)]
pub(crate) struct NtkNorms {
    /// `ntk/step`, shape [S].
    pub steps: Vec<i64>,
    /// (term name, `ntk/<term>/frobenius` [S]), including `full`, sorted by name.
    pub frobenius: Vec<(String, Vec<f64>)>,
    /// (term name, the [`TOP_EIGENVALUES`] largest eigenvalues at each snapshot [S][k]) for
    /// the terms whose file has `eigenvalues`; sorted by name.
    pub top_eigenvalues: Vec<(String, Vec<Vec<f64>>)>,
}

/// The evaluation of one finished job.
#[derive(Debug, Clone)]
pub(crate) struct Evaluation {
    /// `eval/x`, shape [M, d] (a 1-D dataset is read as [M, 1]).
    pub x: Array2<f64>,
    /// `eval/error` = pred - exact, shape [M].
    pub error: Vec<f64>,
    /// `eval` attribute `rel_l2`.
    pub rel_l2: f64,
    /// `eval` attribute `max_abs_error` (NaN when a foreign file lacks it).
    pub max_abs_error: f64,
}

/// A job with `status = done` and everything the reduction reads.
#[derive(Debug, Clone)]
pub(crate) struct DoneJob {
    pub file: PathBuf,
    pub job_id: String,
    pub problem: String,
    /// `None` for problems without eps (the file stores NaN).
    pub eps: Option<f64>,
    pub width: i64,
    pub seed: i64,
    pub balancer: String,
    pub normalization: String,
    /// The flattened `config` attribute plus `sweep` (empty when a file has neither).
    pub settings: Settings,
    pub ntk: NtkNorms,
    pub eval: Evaluation,
    pub train: TrainEnds,
}

/// First and last snapshot of one NTK term (`full` has no trace).
#[derive(Debug, Clone, PartialEq)]
pub struct NtkEnds {
    pub term: String,
    pub frobenius: (f64, f64),
    pub trace: Option<(f64, f64)>,
}

/// What `jobs.csv` shows of one job file; every field is read leniently (absent: `None`).
#[derive(Debug, Clone)]
pub struct JobFacts {
    pub file: PathBuf,
    /// The `job_id` attribute, else the file stem.
    pub job_id: String,
    /// `done`, `failed`, `diverged`, or `unreadable` for a file that is not a job file.
    pub status: String,
    /// The job's `message`, or why the file is unreadable.
    pub message: String,
    /// The flattened `config` attribute plus `sweep`.
    pub settings: Settings,
    pub problem: Option<String>,
    /// `None` for a missing attribute or NaN (problems without eps).
    pub eps: Option<f64>,
    pub width: Option<i64>,
    pub depth: Option<i64>,
    pub seed: Option<i64>,
    pub balancer: Option<String>,
    pub normalization: Option<String>,
    pub sweep: Option<String>,
    pub rel_l2: Option<f64>,
    pub max_abs_error: Option<f64>,
    pub boundary_error: Option<f64>,
    pub wall_seconds: Option<f64>,
    pub diverged_step: Option<i64>,
    /// `ntk/step` first and last value.
    pub ntk_steps: Option<(i64, i64)>,
    /// Per term, sorted by name (`full` included).
    pub ntk: Vec<NtkEnds>,
    /// Best rel L2 over the run, last loss and weight per term (`train/`).
    pub train: TrainEnds,
}

impl JobFacts {
    fn unreadable(path: &Path, stem: &str, message: String) -> Self {
        JobFacts {
            file: path.to_path_buf(),
            job_id: stem.to_owned(),
            status: ExclusionKind::Unreadable.as_str().to_owned(),
            message,
            settings: Settings::new(),
            problem: None,
            eps: None,
            width: None,
            depth: None,
            seed: None,
            balancer: None,
            normalization: None,
            sweep: None,
            rel_l2: None,
            max_abs_error: None,
            boundary_error: None,
            wall_seconds: None,
            diverged_step: None,
            ntk_steps: None,
            ntk: Vec::new(),
            train: TrainEnds::default(),
        }
    }
}

/// What became of a job file in the reduction.
#[derive(Debug)]
pub(crate) enum Outcome {
    Done(Box<DoneJob>),
    Excluded(ExcludedJob),
}

/// One job file as read: its `jobs.csv` row and its part in the statistics.
#[derive(Debug)]
pub(crate) struct LoadedJob {
    pub facts: JobFacts,
    pub outcome: Outcome,
}

/// Opens `path` once and reads what the reducer needs.
pub(crate) fn load_job(path: &Path) -> LoadedJob {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let unreadable = |message: String| LoadedJob {
        facts: JobFacts::unreadable(path, &stem, message.clone()),
        outcome: Outcome::Excluded(ExcludedJob {
            job_id: stem.clone(),
            file: path.to_path_buf(),
            kind: ExclusionKind::Unreadable,
            message,
        }),
    };
    let file = match hdf5::File::open(path) {
        Ok(f) => f,
        Err(e) => return unreadable(format!("cannot open as HDF5: {e}")),
    };
    let status = match read_str_attr(&file, "status") {
        Ok(s) => s,
        Err(e) => return unreadable(e),
    };
    let kind = match status.as_str() {
        "done" => None,
        "failed" => Some(ExclusionKind::Failed),
        "diverged" => Some(ExclusionKind::Diverged),
        other => return unreadable(format!("unknown status '{other}'")),
    };
    let settings = match read_settings(&file) {
        Ok(s) => s,
        Err(e) => return unreadable(e),
    };
    let ntk = read_ntk(&file);
    let facts = read_facts(&file, path, &stem, status, settings, ntk.as_ref().ok());
    if let Some(kind) = kind {
        // Failed and diverged files may lack almost everything; be content with what is there.
        let excluded = ExcludedJob {
            job_id: facts.job_id.clone(),
            file: path.to_path_buf(),
            kind,
            message: facts.message.clone(),
        };
        return LoadedJob { facts, outcome: Outcome::Excluded(excluded) };
    }
    match ntk.and_then(|ntk| read_done(&file, path, &facts, ntk)) {
        Ok(job) => LoadedJob { facts, outcome: Outcome::Done(Box::new(job)) },
        Err(e) => {
            // Keep what could be read for jobs.csv, but say why the job is left out.
            let bad = unreadable(e);
            LoadedJob { facts: JobFacts { status: bad.facts.status, message: bad.facts.message, ..facts }, ..bad }
        }
    }
}

/// The `config` attribute flattened into dotted paths, plus the `sweep` attribute. Files
/// without them (other writers) have none; a `config` that is not YAML is an error.
fn read_settings(file: &hdf5::File) -> Result<Settings, String> {
    let mut out = match read_str_attr(file, "config") {
        Ok(text) => settings::flatten(&text).map_err(|e| format!("attribute 'config': {e}"))?,
        Err(_) => Settings::new(),
    };
    if let Ok(sweep) = read_str_attr(file, "sweep") {
        out.insert("sweep".to_owned(), Setting::Str(sweep));
    }
    Ok(out)
}

/// Every `jobs.csv` field that the file has.
fn read_facts(
    file: &hdf5::File, path: &Path, stem: &str, status: String, settings: Settings, ntk: Option<&NtkRead>,
) -> JobFacts {
    let s = |name: &str| read_str_attr(file, name).ok();
    let i = |name: &str| read_i64_attr(file, name).ok();
    let eval = file.group("eval").ok();
    let eval_attr = |name: &str| eval.as_ref().and_then(|g| read_f64_attr(g, name).ok());
    let ends = |v: &[f64]| v.first().zip(v.last()).map(|(a, b)| (*a, *b));
    let ntk_steps = ntk.and_then(|n| n.steps.first().zip(n.steps.last()).map(|(a, b)| (*a, *b)));
    let ntk_ends = ntk.map_or_else(Vec::new, |n| {
        n.terms
            .iter()
            .filter_map(|t| {
                let frobenius = ends(&t.frobenius)?;
                Some(NtkEnds { term: t.term.clone(), frobenius, trace: t.trace.as_deref().and_then(ends) })
            })
            .collect()
    });
    JobFacts {
        file: path.to_path_buf(),
        job_id: s("job_id").unwrap_or_else(|| stem.to_owned()),
        status,
        message: s("message").unwrap_or_default(),
        settings,
        problem: s("problem"),
        eps: read_f64_attr(file, "eps").ok().filter(|e| !e.is_nan()),
        width: i("width"),
        depth: i("depth"),
        seed: i("seed"),
        balancer: s("balancer"),
        normalization: s("normalization"),
        sweep: s("sweep"),
        rel_l2: eval_attr("rel_l2"),
        max_abs_error: eval_attr("max_abs_error"),
        boundary_error: eval_attr("boundary_error"),
        wall_seconds: read_f64_attr(file, "wall_seconds").ok(),
        diverged_step: i("diverged_step"),
        ntk_steps,
        ntk: ntk_ends,
        train: read_train(file),
    }
}

/// The `ntk` group, read once for the statistics and for `jobs.csv`.
pub(crate) struct NtkRead {
    /// `ntk/step`, shape [S].
    steps: Vec<i64>,
    /// Every term, sorted by name, `full` included.
    terms: Vec<TermRead>,
}

/// One term of the `ntk` group as read.
pub(crate) struct TermRead {
    term: String,
    /// `frobenius` [S].
    frobenius: Vec<f64>,
    /// `trace` [S], if present.
    trace: Option<Vec<f64>>,
    /// The largest [`TOP_EIGENVALUES`] entries of each row of `eigenvalues` [S, N], if present.
    top: Option<Vec<Vec<f64>>>,
}

/// Reads `ntk/step` and every term's Frobenius norms (and traces, when present). Errors on
/// anything the statistics cannot use (no group, a norm list whose length is not the step
/// list's).
fn read_ntk(file: &hdf5::File) -> Result<NtkRead, String> {
    let ntk = file.group("ntk").map_err(|e| format!("group 'ntk': {e}"))?;
    let steps: Vec<i64> = read_vec(&ntk, "step", "ntk/step")?;
    let mut names = ntk.member_names().map_err(|e| format!("listing group 'ntk': {e}"))?;
    names.retain(|n| n != "step");
    names.sort();
    let mut terms = Vec::with_capacity(names.len());
    for name in names {
        let rel = format!("{name}/frobenius");
        let values: Vec<f64> = match read_vec(&ntk, &rel, &format!("ntk/{rel}")) {
            Ok(v) => v,
            // Not a term group (no frobenius dataset under it): nothing for the reducer.
            Err(_) if name != "full" && !ntk.link_exists(&rel) => continue,
            Err(e) => return Err(e),
        };
        if values.len() != steps.len() {
            return Err(format!("ntk/{rel} has {} entries but ntk/step has {}", values.len(), steps.len()));
        }
        let trace = read_vec::<f64>(&ntk, &format!("{name}/trace"), "").ok();
        let top = read_top_eigenvalues(&ntk, &name, steps.len());
        terms.push(TermRead { term: name, frobenius: values, trace, top });
    }
    Ok(NtkRead { steps, terms })
}

/// The first [`TOP_EIGENVALUES`] columns of `ntk/<term>/eigenvalues` [S, N] (stored in
/// descending order), one row per snapshot; `None` when absent or not [S, N].
fn read_top_eigenvalues(ntk: &hdf5::Group, term: &str, snapshots: usize) -> Option<Vec<Vec<f64>>> {
    let ds = ntk.dataset(&format!("{term}/eigenvalues")).ok()?;
    let [s, n] = ds.shape()[..] else { return None };
    if s != snapshots || n == 0 {
        return None;
    }
    let k = n.min(TOP_EIGENVALUES);
    let rows = ds.read_slice_2d::<f64, _>(ndarray::s![.., 0..k]).ok()?;
    Some(rows.outer_iter().map(|r| r.to_vec()).collect())
}

/// The statistics' part of a finished job: the identifying attributes (read into `facts`
/// already, but required here), the NTK norms and the evaluation.
fn read_done(file: &hdf5::File, path: &Path, facts: &JobFacts, ntk: NtkRead) -> Result<DoneJob, String> {
    let text = |v: &Option<String>, name: &str| {
        v.clone().ok_or_else(|| format!("attribute '{name}' is missing or not a string"))
    };
    let int = |v: Option<i64>, name: &str| v.ok_or_else(|| format!("attribute '{name}' is missing or not an integer"));
    let problem = text(&facts.problem, "problem")?;
    let balancer = text(&facts.balancer, "balancer")?;
    let normalization = text(&facts.normalization, "normalization")?;
    let width = int(facts.width, "width")?;
    let seed = int(facts.seed, "seed")?;
    let eps = read_f64_attr(file, "eps")?;
    // NaN is how a problem without eps (wave1d, klein_gordon1d, helmholtz2d) writes it.
    let eps = if eps.is_nan() {
        None
    } else if eps.is_finite() && eps > 0.0 {
        Some(eps)
    } else {
        return Err(format!("attribute 'eps' = {eps} is neither a positive number nor NaN (no eps)"));
    };
    let top_eigenvalues =
        ntk.terms.iter().filter_map(|t| Some((t.term.clone(), t.top.clone()?))).collect();
    let frobenius = ntk.terms.into_iter().map(|t| (t.term, t.frobenius)).collect();

    let eval = file.group("eval").map_err(|e| format!("group 'eval': {e}"))?;
    let x_ds = eval.dataset("x").map_err(|e| format!("dataset 'eval/x': {e}"))?;
    let shape = x_ds.shape();
    let x_flat: Vec<f64> = x_ds.read_raw().map_err(|e| format!("reading 'eval/x': {e}"))?;
    let (m, d) = match shape.as_slice() {
        [m] => (*m, 1),
        [m, d] => (*m, *d),
        other => return Err(format!("eval/x has shape {other:?}, expected [M, d]")),
    };
    let x = Array2::from_shape_vec((m, d), x_flat).map_err(|e| format!("eval/x: {e}"))?;
    let error: Vec<f64> = read_vec(&eval, "error", "eval/error")?;
    if error.len() != m {
        return Err(format!("eval/error has {} entries but eval/x has {m} points", error.len()));
    }
    let rel_l2 = read_f64_attr(&eval, "rel_l2").map_err(|e| format!("eval: {e}"))?;
    let max_abs_error = read_f64_attr(&eval, "max_abs_error").unwrap_or(f64::NAN);

    Ok(DoneJob {
        file: path.to_path_buf(),
        job_id: facts.job_id.clone(),
        problem,
        eps,
        width,
        seed,
        balancer,
        normalization,
        settings: facts.settings.clone(),
        ntk: NtkNorms { steps: ntk.steps, frobenius, top_eigenvalues },
        train: facts.train.clone(),
        eval: Evaluation { x, error, rel_l2, max_abs_error },
    })
}

fn read_vec<T: hdf5::H5Type>(group: &hdf5::Group, name: &str, full: &str) -> Result<Vec<T>, String> {
    group
        .dataset(name)
        .and_then(|ds| ds.read_raw::<T>())
        .map_err(|e| format!("dataset '{full}': {e}"))
}

fn open_attr(loc: &Location, name: &str) -> Result<Attribute, String> {
    loc.attr(name).map_err(|e| format!("attribute '{name}': {e}"))
}

/// First element of a scalar or one-element attribute.
fn first<T>(values: Vec<T>, name: &str) -> Result<T, String> {
    values.into_iter().next().ok_or_else(|| format!("attribute '{name}' is empty"))
}

/// Reads a numeric attribute as f64 (any integer or float type; HDF5 converts).
pub(crate) fn read_f64_attr(loc: &Location, name: &str) -> Result<f64, String> {
    let attr = open_attr(loc, name)?;
    let v = attr.read_raw::<f64>().map_err(|e| format!("attribute '{name}': {e}"))?;
    first(v, name)
}

/// Reads an integer attribute as i64 (any integer type; an integral float is accepted too).
pub(crate) fn read_i64_attr(loc: &Location, name: &str) -> Result<i64, String> {
    let attr = open_attr(loc, name)?;
    let descriptor = attr.dtype().and_then(|t| t.to_descriptor());
    if let Ok(TypeDescriptor::Float(_)) = descriptor {
        let v = first(attr.read_raw::<f64>().map_err(|e| format!("attribute '{name}': {e}"))?, name)?;
        if v.fract() != 0.0 || !v.is_finite() {
            return Err(format!("attribute '{name}' = {v} is not an integer"));
        }
        return Ok(v as i64);
    }
    let v = attr.read_raw::<i64>().map_err(|e| format!("attribute '{name}': {e}"))?;
    first(v, name)
}

/// Reads a string attribute stored as variable- or fixed-length, UTF-8 or ASCII, scalar or
/// one-element array. Fixed-length strings longer than 4096 bytes are truncated there (the
/// reducer reads only short identifiers and messages). Trailing NUL and space padding is
/// removed; invalid UTF-8 is replaced, not rejected.
pub(crate) fn read_str_attr(loc: &Location, name: &str) -> Result<String, String> {
    let attr = open_attr(loc, name)?;
    // Fast path: the type ntksweep itself writes. Other types fail here (HDF5 has no
    // conversion between fixed- and variable-length strings) and are read by their type below.
    if let Ok(v) = attr.read_raw::<VarLenUnicode>() {
        return Ok(first(v, name)?.as_str().trim_end_matches(['\0', ' ']).to_owned());
    }
    let err = |e: hdf5::Error| format!("attribute '{name}': {e}");
    let descriptor = attr.dtype().and_then(|t| t.to_descriptor()).map_err(err)?;
    let text = match descriptor {
        TypeDescriptor::VarLenUnicode => {
            first(attr.read_raw::<VarLenUnicode>().map_err(err)?, name)?.as_str().to_owned()
        }
        TypeDescriptor::VarLenAscii => {
            first(attr.read_raw::<VarLenAscii>().map_err(err)?, name)?.as_str().to_owned()
        }
        TypeDescriptor::FixedAscii(_) => {
            let s = first(attr.read_raw::<FixedAscii<4096>>().map_err(err)?, name)?;
            String::from_utf8_lossy(s.as_bytes()).into_owned()
        }
        TypeDescriptor::FixedUnicode(_) => {
            let s = first(attr.read_raw::<FixedUnicode<4096>>().map_err(err)?, name)?;
            String::from_utf8_lossy(s.as_bytes()).into_owned()
        }
        other => return Err(format!("attribute '{name}' has type {other}, expected a string")),
    };
    Ok(text.trim_end_matches(['\0', ' ']).to_owned())
}
