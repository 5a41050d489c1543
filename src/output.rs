//! Job files: one HDF5 file per job, `DIR/jobs/<job_id>.h5`, laid out as the public contract
//! in README.md ("HDF5 results") says.
//!
//! A file is written under a temporary name (`.<job_id>.h5.tmp-<host>-<pid>`, hidden, never
//! matched by readers) and renamed when complete, so a killed run never leaves a half-written
//! file under a final name. Temporaries of dead writers on this host are removed when a run
//! starts.

use std::path::{Path, PathBuf};

use hdf5::types::VarLenUnicode;
use ndarray::ArrayView2;

use crate::config::JobSpec;
use crate::host::host_tag;
use crate::record::{JobRecord, Params, Status};

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("cannot write job file {path}: {source}")]
    Hdf5 { path: String, source: hdf5::Error },
    #[error("cannot create or rename {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("cannot read job file {path}: {message}")]
    Read { path: String, message: String },
}

/// Where and by whom a job ran (root attributes of its file).
#[derive(Debug, Clone)]
pub struct RunMeta {
    pub device: String,
    pub rank: i32,
    pub host: String,
    pub sweep: String,
}

pub fn jobs_dir(out: &Path) -> PathBuf {
    out.join("jobs")
}

pub fn job_path(out: &Path, id: &str) -> PathBuf {
    jobs_dir(out).join(format!("{id}.h5"))
}

fn vlu(s: &str) -> VarLenUnicode {
    s.replace('\0', " ").parse().expect("no interior NUL")
}

fn attr_str(loc: &hdf5::Location, name: &str, value: &str) -> hdf5::Result<()> {
    loc.new_attr::<VarLenUnicode>().create(name)?.write_scalar(&vlu(value))
}

fn attr_f64(loc: &hdf5::Location, name: &str, value: f64) -> hdf5::Result<()> {
    loc.new_attr::<f64>().create(name)?.write_scalar(&value)
}

fn attr_i64(loc: &hdf5::Location, name: &str, value: i64) -> hdf5::Result<()> {
    loc.new_attr::<i64>().create(name)?.write_scalar(&value)
}

fn ds_f64(g: &hdf5::Group, name: &str, data: &[f64]) -> hdf5::Result<()> {
    g.new_dataset_builder().with_data(data).create(name).map(|_| ())
}

fn ds_i64(g: &hdf5::Group, name: &str, data: &[i64]) -> hdf5::Result<()> {
    g.new_dataset_builder().with_data(data).create(name).map(|_| ())
}

fn ds_2d(g: &hdf5::Group, name: &str, data: &[f64], rows: usize, cols: usize) -> hdf5::Result<()> {
    let view = ArrayView2::from_shape((rows, cols), data).map_err(|e| hdf5::Error::from(e.to_string().as_str()))?;
    g.new_dataset_builder().with_data(view).create(name).map(|_| ())
}

/// `params/<phase>/<layer>/{weight, bias}` and, with adaptive activations, the scalar
/// `slope` (a) of every hidden layer.
fn write_params(g: &hdf5::Group, params: &Params, slopes: Option<&Vec<f64>>, sizes: &[usize]) -> hdf5::Result<()> {
    for (l, (w, b)) in params.iter().enumerate() {
        let lg = g.create_group(&l.to_string())?;
        ds_2d(&lg, "weight", w, sizes[l + 1], sizes[l])?;
        ds_f64(&lg, "bias", b)?;
        if let Some(a) = slopes.and_then(|s| s.get(l)) {
            lg.new_dataset::<f64>().create("slope")?.write_scalar(a)?;
        }
    }
    Ok(())
}

/// Root attributes of the network schemes and the NTK method (written for every job, with
/// their defaults when unused, so a reader can group jobs without parsing `config`).
fn write_scheme_attrs(file: &hdf5::File, c: &crate::config::JobConfig) -> hdf5::Result<()> {
    let m = &c.model;
    attr_str(file, "activation", m.activation.name())?;
    attr_str(file, "adaptive_activation", m.adaptive_activation.mode.name())?;
    attr_f64(file, "activation_scale", if m.adaptive_activation.is_none() { f64::NAN } else { m.adaptive_activation.scale })?;
    attr_i64(file, "fourier_features", m.fourier.as_ref().map_or(0, |f| f.features as i64))?;
    attr_f64(file, "fourier_sigma", m.fourier.as_ref().map_or(f64::NAN, |f| f.sigma))?;
    attr_str(file, "ntk_method", c.ntk.method.name())?;
    attr_i64(file, "ntk_probes", if c.ntk.method.is_exact() { 0 } else { c.ntk.probes as i64 })?;
    // Loss-term schemes: exact Dirichlet conditions (and the terms they satisfy, which have no
    // loss, weight or NTK block), gradient-enhanced residuals, importance-sampled terms.
    attr_i64(file, "exact_bc", i64::from(m.exact_bc))?;
    let exact = if m.exact_bc { crate::problem::exact_bc::exact_terms(&c.problem.terms()).join(" ") } else { String::new() };
    attr_str(file, "exact_terms", &exact)?;
    attr_f64(file, "gradient_enhanced_weight", c.loss.gradient_enhanced.as_ref().map_or(f64::NAN, |g| g.weight))?;
    let importance: Vec<&str> = c.collocation.iter().filter(|(_, s)| s.sampling == crate::collocation::Sampling::Importance).map(|(t, _)| t.as_str()).collect();
    attr_str(file, "importance_terms", &importance.join(" "))
}

fn write_contents(file: &hdf5::File, spec: &JobSpec, rec: &JobRecord, meta: &RunMeta) -> hdf5::Result<()> {
    let c = &spec.config;
    attr_str(file, "job_id", &spec.id)?;
    attr_str(file, "problem", c.problem.label())?;
    attr_f64(file, "eps", c.problem.eps().unwrap_or(f64::NAN))?;
    attr_i64(file, "width", c.model.width as i64)?;
    attr_i64(file, "depth", c.model.depth as i64)?;
    attr_i64(file, "seed", c.seed as i64)?;
    attr_str(file, "balancer", &balancer_label(c))?;
    attr_str(file, "normalization", c.model.normalization.name())?;
    attr_str(file, "status", rec.status.name())?;
    attr_str(file, "message", &rec.message)?;
    attr_str(file, "config", &spec.config_yaml())?;
    attr_f64(file, "wall_seconds", rec.wall_seconds)?;
    attr_str(file, "device", &meta.device)?;
    attr_i64(file, "rank", meta.rank as i64)?;
    attr_str(file, "host", &meta.host)?;
    attr_i64(file, "pid", std::process::id() as i64)?;
    attr_str(file, "version", env!("CARGO_PKG_VERSION"))?;
    attr_str(file, "sweep", &meta.sweep)?;
    attr_i64(file, "batch_size", rec.batch_size as i64)?;
    attr_i64(file, "diverged_step", rec.diverged_step.unwrap_or(-1))?;
    attr_str(file, "axes", &spec.axis_values().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "))?;
    write_scheme_attrs(file, c)?;

    if let Some(ntk) = &rec.ntk {
        let g = file.create_group("ntk")?;
        ds_i64(&g, "step", &ntk.step)?;
        for (name, t) in &ntk.terms {
            let tg = g.create_group(name)?;
            let n = t.x.len() / rec.dim.max(1);
            ds_2d(&tg, "x", &t.x, n, rec.dim)?;
            if !t.frobenius.is_empty() {
                ds_f64(&tg, "frobenius", &t.frobenius)?;
            }
            ds_f64(&tg, "trace", &t.trace)?;
            if !t.trace_stderr.is_empty() {
                ds_f64(&tg, "trace_stderr", &t.trace_stderr)?;
            }
            if !t.eigenvalues.is_empty() {
                let flat: Vec<f64> = t.eigenvalues.iter().flatten().copied().collect();
                ds_2d(&tg, "eigenvalues", &flat, t.eigenvalues.len(), n)?;
            }
        }
        if !ntk.full_frobenius.is_empty() {
            let fg = g.create_group("full")?;
            ds_f64(&fg, "frobenius", &ntk.full_frobenius)?;
        }
    }

    let h = &rec.history;
    if rec.status != Status::Failed || !h.step.is_empty() {
        let g = file.create_group("train")?;
        ds_i64(&g, "step", &h.step)?;
        let lg = g.create_group("loss")?;
        for (t, v) in &h.loss {
            ds_f64(&lg, t, v)?;
        }
        let wg = g.create_group("weight")?;
        for (t, v) in &h.weight {
            ds_f64(&wg, t, v)?;
        }
        ds_f64(&g, "rel_l2", &h.rel_l2)?;
        ds_f64(&g, "lr", &h.lr)?;
    }

    if let Some(ev) = &rec.eval {
        let g = file.create_group("eval")?;
        let m = ev.error.len();
        ds_2d(&g, "x", &ev.x, m, rec.dim)?;
        ds_f64(&g, "u_pred", &ev.u_pred)?;
        ds_f64(&g, "u_exact", &ev.u_exact)?;
        ds_f64(&g, "error", &ev.error)?;
        if let Some(s) = &ev.error_spectrum {
            ds_f64(&g, "error_spectrum", s)?;
        }
        attr_f64(&g, "rel_l2", ev.rel_l2)?;
        attr_f64(&g, "max_abs_error", ev.max_abs_error)?;
        attr_f64(&g, "boundary_error", ev.boundary_error)?;
    }

    if rec.params_init.is_some() || rec.params_final.is_some() {
        let g = file.create_group("params")?;
        let net = &rec.network;
        if let Some(p) = &rec.params_init {
            write_params(&g.create_group("init")?, p, net.slopes_init.as_ref(), &rec.sizes)?;
        }
        if let Some(p) = &rec.params_final {
            write_params(&g.create_group("final")?, p, net.slopes_final.as_ref(), &rec.sizes)?;
        }
        if let Some(b) = &net.fourier_b {
            let m = rec.sizes[0] / 2;
            ds_2d(&g.create_group("fourier")?, "B", b, m, rec.dim)?;
        }
    }
    Ok(())
}

/// The `balancer` attribute: the scheme's name, with `+eps_rescale` when the residual is also
/// rescaled by eps (so the reducer keeps rescaled and plain runs of a scheme apart).
pub fn balancer_label(c: &crate::config::JobConfig) -> String {
    let name = c.balancer.name();
    if c.loss.eps_rescale && name != "eps_rescale" {
        if name == "none" {
            "eps_rescale".to_string()
        } else {
            format!("{name}+eps_rescale")
        }
    } else {
        name.to_string()
    }
}

/// Write a job's file atomically; returns its final path.
pub fn write_job(out: &Path, spec: &JobSpec, rec: &JobRecord, meta: &RunMeta) -> Result<PathBuf, OutputError> {
    let dir = jobs_dir(out);
    std::fs::create_dir_all(&dir).map_err(|source| OutputError::Io { path: dir.display().to_string(), source })?;
    let tmp = dir.join(format!(".{}.h5.tmp-{}-{}", spec.id, host_tag(), std::process::id()));
    let fin = job_path(out, &spec.id);
    let result = (|| -> hdf5::Result<()> {
        let file = hdf5::File::create(&tmp)?;
        write_contents(&file, spec, rec, meta)?;
        file.flush()?;
        file.close()
    })();
    if let Err(source) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(OutputError::Hdf5 { path: tmp.display().to_string(), source });
    }
    std::fs::rename(&tmp, &fin).map_err(|source| OutputError::Io { path: fin.display().to_string(), source })?;
    Ok(fin)
}

/// Remove temporary files left by killed runs on this host: `.<id>.h5.tmp-<host>-<pid>`
/// whose writer process no longer exists. Temporaries of live processes (another run in the
/// same folder) and of other hosts are left alone; readers ignore them in any case.
pub fn remove_stale_temporaries(out: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(jobs_dir(out)) else { return 0 };
    let prefix = format!("{}-", host_tag());
    let mut n = 0;
    for entry in rd.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(rest) = name.strip_prefix('.').and_then(|r| r.split(".h5.tmp-").nth(1)) else { continue };
        let Some(pid) = rest.strip_prefix(&prefix).and_then(|p| p.parse::<i32>().ok()) else { continue };
        // kill(pid, 0) fails with ESRCH when no such process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH);
        if !alive && std::fs::remove_file(entry.path()).is_ok() {
            n += 1;
        }
    }
    n
}

/// Status of an existing job file.
pub fn read_status(path: &Path) -> Result<Status, OutputError> {
    let err = |m: String| OutputError::Read { path: path.display().to_string(), message: m };
    let file = hdf5::File::open(path).map_err(|e| err(e.to_string()))?;
    let s = crate::reduce::load::read_str_attr(&file, "status").map_err(err)?;
    Status::parse(&s).ok_or_else(|| err(format!("unknown status `{s}`")))
}
