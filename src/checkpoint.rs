//! Mid-batch checkpoints: the whole state of a training batch, saved so that a later run (any
//! rank, any process, another node) continues it exactly where it stopped.
//!
//! Why: a job can be longer than the time limit of one allocation (the 80,001-step wave jobs
//! on a 2 h partition). Without checkpoints a preempted batch restarted from step 0 every time.
//!
//! Two layers:
//! - [`StateDict`]: named entries (tensors in their own precision, f64/i64 arrays, texts,
//!   random-stream states). Each piece of training state saves itself into one and restores
//!   itself from one (the trainer's `BatchState`, Adam, L-BFGS, every balancer). Values are
//!   kept bit for bit: f32 tensors as f32, f64 as f64, random streams as (seed, stream, word
//!   position), so a resumed batch computes exactly what it would have computed.
//! - The file: `DIR/checkpoints/<batch>.h5`, one HDF5 dataset per entry (`/` in a name is a
//!   group), root attributes saying which jobs, which step and who wrote it. It is written to
//!   a temporary name and renamed, so a kill during the write leaves the previous checkpoint.
//!   `<batch>` is [`batch_name`] of the batch's job ids. h5py reads it like a job file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hdf5::types::{TypeDescriptor, VarLenUnicode};
use ndarray::{ArrayViewD, IxDyn};
use rand::SeedableRng;
use sha2::{Digest, Sha256};
use tch::{Device, Kind, TchError, Tensor};

use crate::rng::JobRng;

/// Layout version of the saved state; a checkpoint of another version is not resumed.
pub const FORMAT: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    // --- the saved state does not fit the batch ---------------------------------------------
    #[error("entry `{0}` is missing")]
    Missing(String),
    #[error("entry `{name}`: expected {expected}, found {found}")]
    Mismatch { name: String, expected: String, found: String },
    // --- underlying libraries ---------------------------------------------------------------
    #[error("libtorch: {0}")]
    Torch(#[from] TchError),
    #[error("{path}: {source}")]
    Hdf5 { path: String, source: hdf5::Error },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// One saved value.
#[derive(Debug, Clone, PartialEq)]
enum Entry {
    F32 { shape: Vec<usize>, data: Vec<f32> },
    F64 { shape: Vec<usize>, data: Vec<f64> },
    I64 { shape: Vec<usize>, data: Vec<i64> },
    Text(String),
}

impl Entry {
    fn describe(&self) -> String {
        match self {
            Entry::F32 { shape, .. } => format!("float32 {shape:?}"),
            Entry::F64 { shape, .. } => format!("float64 {shape:?}"),
            Entry::I64 { shape, .. } => format!("int64 {shape:?}"),
            Entry::Text(_) => "text".into(),
        }
    }

    /// Bitwise equality (NaN equals NaN of the same bits), for round-trip tests.
    fn same_bits(&self, other: &Entry) -> bool {
        match (self, other) {
            (Entry::F32 { shape: a, data: x }, Entry::F32 { shape: b, data: y }) => a == b && x.iter().map(|v| v.to_bits()).eq(y.iter().map(|v| v.to_bits())),
            (Entry::F64 { shape: a, data: x }, Entry::F64 { shape: b, data: y }) => a == b && x.iter().map(|v| v.to_bits()).eq(y.iter().map(|v| v.to_bits())),
            (a, b) => a == b,
        }
    }
}

/// Named pieces of state; names are `/`-separated paths.
#[derive(Debug, Clone, Default)]
pub struct StateDict {
    entries: BTreeMap<String, Entry>,
}

impl StateDict {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Names of all entries, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.entries.keys().map(String::as_str).collect()
    }

    /// Whether every entry of both holds the same bits.
    pub fn same_bits(&self, other: &StateDict) -> bool {
        self.entries.len() == other.entries.len() && self.entries.iter().zip(&other.entries).all(|((a, x), (b, y))| a == b && x.same_bits(y))
    }

    /// Names whose entries differ between the two (for test messages).
    pub fn differences(&self, other: &StateDict) -> Vec<String> {
        let mut names: Vec<&String> = self.entries.keys().chain(other.entries.keys()).collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .filter(|n| match (self.entries.get(*n), other.entries.get(*n)) {
                (Some(a), Some(b)) => !a.same_bits(b),
                _ => true,
            })
            .cloned()
            .collect()
    }

    // --- writing ------------------------------------------------------------------------------

    /// A float tensor in its own precision (on any device; detached).
    pub fn put_tensor(&mut self, name: &str, t: &Tensor) -> Result<(), CheckpointError> {
        let host = t.f_detach()?.f_to_device(Device::Cpu)?.f_contiguous()?;
        let shape: Vec<usize> = host.size().iter().map(|&s| s as usize).collect();
        let flat = host.f_reshape([-1])?;
        let entry = match host.kind() {
            Kind::Float => Entry::F32 { shape, data: Vec::<f32>::try_from(&flat)? },
            Kind::Double => Entry::F64 { shape, data: Vec::<f64>::try_from(&flat)? },
            k => return Err(CheckpointError::Mismatch { name: name.into(), expected: "a float32 or float64 tensor".into(), found: format!("{k:?}") }),
        };
        self.entries.insert(name.to_string(), entry);
        Ok(())
    }

    /// `name/0`, `name/1`, ...
    pub fn put_tensors(&mut self, name: &str, ts: &[Tensor]) -> Result<(), CheckpointError> {
        for (i, t) in ts.iter().enumerate() {
            self.put_tensor(&format!("{name}/{i}"), t)?;
        }
        Ok(())
    }

    pub fn put_f64s(&mut self, name: &str, v: &[f64]) {
        self.entries.insert(name.to_string(), Entry::F64 { shape: vec![v.len()], data: v.to_vec() });
    }

    /// Rows of equal length as a [rows, cols] array (`cols` given so that zero rows keep it).
    pub fn put_f64_rows(&mut self, name: &str, rows: &[Vec<f64>], cols: usize) {
        let data: Vec<f64> = rows.iter().flatten().copied().collect();
        debug_assert_eq!(data.len(), rows.len() * cols);
        self.entries.insert(name.to_string(), Entry::F64 { shape: vec![rows.len(), cols], data });
    }

    pub fn put_f64(&mut self, name: &str, v: f64) {
        self.entries.insert(name.to_string(), Entry::F64 { shape: Vec::new(), data: vec![v] });
    }

    pub fn put_i64s(&mut self, name: &str, v: &[i64]) {
        self.entries.insert(name.to_string(), Entry::I64 { shape: vec![v.len()], data: v.to_vec() });
    }

    /// A u64 (stored as the int64 of the same bits).
    pub fn put_u64(&mut self, name: &str, v: u64) {
        self.entries.insert(name.to_string(), Entry::I64 { shape: Vec::new(), data: vec![v as i64] });
    }

    pub fn put_text(&mut self, name: &str, v: &str) {
        self.entries.insert(name.to_string(), Entry::Text(v.to_string()));
    }

    /// A random stream as [seed (4 words), stream, word position (low, high)].
    pub fn put_rng(&mut self, name: &str, r: &JobRng) {
        let seed = r.get_seed();
        let mut words: Vec<i64> = seed.chunks(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
        let pos = r.get_word_pos();
        words.extend([r.get_stream() as i64, pos as u64 as i64, (pos >> 64) as u64 as i64]);
        self.put_i64s(name, &words);
    }

    pub fn put_rngs(&mut self, name: &str, rs: &[JobRng]) {
        for (i, r) in rs.iter().enumerate() {
            self.put_rng(&format!("{name}/{i}"), r);
        }
    }

    /// Every entry of `sub` under `prefix/`.
    pub fn put_sub(&mut self, prefix: &str, sub: StateDict) {
        for (k, v) in sub.entries {
            self.entries.insert(format!("{prefix}/{k}"), v);
        }
    }

    // --- reading ------------------------------------------------------------------------------

    fn get(&self, name: &str) -> Result<&Entry, CheckpointError> {
        self.entries.get(name).ok_or_else(|| CheckpointError::Missing(name.to_string()))
    }

    fn mismatch(name: &str, expected: impl Into<String>, found: &Entry) -> CheckpointError {
        CheckpointError::Mismatch { name: name.to_string(), expected: expected.into(), found: found.describe() }
    }

    pub fn has(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// The entries under `prefix/`, with the prefix removed.
    pub fn sub(&self, prefix: &str) -> StateDict {
        let p = format!("{prefix}/");
        StateDict { entries: self.entries.range(p.clone()..).take_while(|(k, _)| k.starts_with(&p)).map(|(k, v)| (k[p.len()..].to_string(), v.clone())).collect() }
    }

    /// The distinct next path segments under `prefix/` (e.g. the term names of a history).
    pub fn children(&self, prefix: &str) -> Vec<String> {
        let p = format!("{prefix}/");
        let mut out: Vec<String> = Vec::new();
        for k in self.entries.range(p.clone()..).map(|(k, _)| k).take_while(|k| k.starts_with(&p)) {
            let seg = k[p.len()..].split('/').next().unwrap_or_default().to_string();
            if out.last() != Some(&seg) {
                out.push(seg);
            }
        }
        out
    }

    /// A saved tensor (CPU, its saved precision and shape).
    pub fn tensor(&self, name: &str) -> Result<Tensor, CheckpointError> {
        let (t, shape) = match self.get(name)? {
            Entry::F32 { shape, data } => (Tensor::f_from_slice(data)?, shape),
            Entry::F64 { shape, data } => (Tensor::f_from_slice(data)?, shape),
            other => return Err(Self::mismatch(name, "a tensor", other)),
        };
        let shape: Vec<i64> = shape.iter().map(|&s| s as i64).collect();
        Ok(t.f_reshape(shape.as_slice())?)
    }

    /// A saved tensor with the shape, precision and device of `like` (a mismatch is an error).
    pub fn tensor_like(&self, name: &str, like: &Tensor) -> Result<Tensor, CheckpointError> {
        let t = self.tensor(name)?;
        if t.size() != like.size() || t.kind() != like.kind() {
            return Err(CheckpointError::Mismatch {
                name: name.into(),
                expected: format!("{:?} {:?}", like.kind(), like.size()),
                found: format!("{:?} {:?}", t.kind(), t.size()),
            });
        }
        Ok(t.f_to_device(like.device())?)
    }

    /// `name/0`, `name/1`, ... shaped like `like`.
    pub fn tensors_like(&self, name: &str, n: usize, like: &Tensor) -> Result<Vec<Tensor>, CheckpointError> {
        (0..n).map(|i| self.tensor_like(&format!("{name}/{i}"), like)).collect()
    }

    /// Copy a saved tensor into `dst` in place (for tensors shared with an optimiser or
    /// requiring grad, whose identity must not change).
    pub fn copy_into(&self, name: &str, dst: &Tensor) -> Result<(), CheckpointError> {
        let src = self.tensor_like(name, dst)?;
        tch::no_grad(|| dst.shallow_clone().f_copy_(&src))?;
        Ok(())
    }

    pub fn f64s(&self, name: &str) -> Result<Vec<f64>, CheckpointError> {
        match self.get(name)? {
            Entry::F64 { data, .. } => Ok(data.clone()),
            other => Err(Self::mismatch(name, "float64 values", other)),
        }
    }

    /// A [rows, cols] array as rows.
    pub fn f64_rows(&self, name: &str) -> Result<Vec<Vec<f64>>, CheckpointError> {
        match self.get(name)? {
            Entry::F64 { shape, data } if shape.len() == 2 => Ok(data.chunks(shape[1].max(1)).take(shape[0]).map(<[f64]>::to_vec).collect()),
            other => Err(Self::mismatch(name, "a float64 [rows, cols] array", other)),
        }
    }

    pub fn f64(&self, name: &str) -> Result<f64, CheckpointError> {
        match self.get(name)? {
            Entry::F64 { shape, data } if shape.is_empty() => Ok(data[0]),
            other => Err(Self::mismatch(name, "a float64 scalar", other)),
        }
    }

    pub fn i64s(&self, name: &str) -> Result<Vec<i64>, CheckpointError> {
        match self.get(name)? {
            Entry::I64 { data, .. } => Ok(data.clone()),
            other => Err(Self::mismatch(name, "int64 values", other)),
        }
    }

    pub fn u64(&self, name: &str) -> Result<u64, CheckpointError> {
        match self.get(name)? {
            Entry::I64 { shape, data } if shape.is_empty() => Ok(data[0] as u64),
            other => Err(Self::mismatch(name, "an integer scalar", other)),
        }
    }

    pub fn text(&self, name: &str) -> Result<String, CheckpointError> {
        match self.get(name)? {
            Entry::Text(s) => Ok(s.clone()),
            other => Err(Self::mismatch(name, "text", other)),
        }
    }

    pub fn rng(&self, name: &str) -> Result<JobRng, CheckpointError> {
        let w = self.i64s(name)?;
        if w.len() != 7 {
            return Err(CheckpointError::Mismatch { name: name.into(), expected: "7 words".into(), found: format!("{} words", w.len()) });
        }
        let mut seed = [0u8; 32];
        for (i, word) in w[..4].iter().enumerate() {
            seed[8 * i..8 * i + 8].copy_from_slice(&word.to_le_bytes());
        }
        let mut r = JobRng::from_seed(seed);
        r.set_stream(w[4] as u64);
        r.set_word_pos((w[5] as u64 as u128) | ((w[6] as u64 as u128) << 64));
        Ok(r)
    }

    pub fn rngs(&self, name: &str, n: usize) -> Result<Vec<JobRng>, CheckpointError> {
        (0..n).map(|i| self.rng(&format!("{name}/{i}"))).collect()
    }
}

// --- files ------------------------------------------------------------------------------------

/// Who wrote a checkpoint and how far the batch was (root attributes of its file).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointInfo {
    /// Job ids of the batch, in batch order.
    pub jobs: Vec<String>,
    /// Optimisation steps done (Adam steps, then Adam steps + L-BFGS iterations).
    pub step: u64,
    /// Steps of the whole training (Adam + L-BFGS).
    pub total: u64,
    /// `adam`, `lbfgs` or `done`.
    pub phase: String,
    pub host: String,
    pub pid: u32,
    pub rank: i32,
    /// Unix time of the write.
    pub written: f64,
}

/// The checkpoint folder of a results folder.
pub fn dir(out: &Path) -> PathBuf {
    out.join("checkpoints")
}

/// Name of a batch: the first 16 hex digits of the SHA-256 of its job ids joined by `,`, so
/// the same jobs in the same order find their checkpoint from any process.
pub fn batch_name(job_ids: &[&str]) -> String {
    let digest = Sha256::digest(job_ids.join(",").as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

pub fn path(out: &Path, batch: &str) -> PathBuf {
    dir(out).join(format!("{batch}.h5"))
}

fn h5err(path: &Path) -> impl Fn(hdf5::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Hdf5 { path: path.display().to_string(), source }
}

fn write_entry(file: &hdf5::File, name: &str, e: &Entry) -> hdf5::Result<()> {
    let mut group: hdf5::Group = file.group("/")?;
    let mut parts: Vec<&str> = name.split('/').collect();
    let leaf = parts.pop().expect("a name");
    for p in parts {
        group = if group.link_exists(p) { group.group(p)? } else { group.create_group(p)? };
    }
    let view_err = |e: ndarray::ShapeError| hdf5::Error::from(e.to_string().as_str());
    match e {
        Entry::F32 { shape, data } => group.new_dataset_builder().with_data(ArrayViewD::from_shape(IxDyn(shape), data).map_err(view_err)?).create(leaf).map(drop),
        Entry::F64 { shape, data } => group.new_dataset_builder().with_data(ArrayViewD::from_shape(IxDyn(shape), data).map_err(view_err)?).create(leaf).map(drop),
        Entry::I64 { shape, data } => group.new_dataset_builder().with_data(ArrayViewD::from_shape(IxDyn(shape), data).map_err(view_err)?).create(leaf).map(drop),
        Entry::Text(s) => {
            let v: VarLenUnicode = s.replace('\0', " ").parse().expect("no interior NUL");
            group.new_dataset::<VarLenUnicode>().shape(()).create(leaf)?.write_scalar(&v)
        }
    }
}

fn read_group(g: &hdf5::Group, prefix: &str, out: &mut StateDict) -> hdf5::Result<()> {
    for sub in g.groups()? {
        let name = sub.name().rsplit('/').next().unwrap_or_default().to_string();
        read_group(&sub, &format!("{prefix}{name}/"), out)?;
    }
    for ds in g.datasets()? {
        let name = format!("{prefix}{}", ds.name().rsplit('/').next().unwrap_or_default());
        let shape = ds.shape();
        let entry = match ds.dtype()?.to_descriptor()? {
            TypeDescriptor::Float(hdf5::types::FloatSize::U4) => Entry::F32 { shape, data: ds.read_raw()? },
            TypeDescriptor::Float(hdf5::types::FloatSize::U8) => Entry::F64 { shape, data: ds.read_raw()? },
            TypeDescriptor::Integer(_) => Entry::I64 { shape, data: ds.read_raw()? },
            TypeDescriptor::VarLenUnicode => Entry::Text(ds.read_scalar::<VarLenUnicode>()?.as_str().to_string()),
            other => return Err(hdf5::Error::from(format!("{name}: unexpected type {other:?}").as_str())),
        };
        out.entries.insert(name, entry);
    }
    Ok(())
}

fn write_info(file: &hdf5::File, info: &CheckpointInfo) -> hdf5::Result<()> {
    let text = |name: &str, v: &str| -> hdf5::Result<()> {
        file.new_attr::<VarLenUnicode>().create(name)?.write_scalar(&v.parse::<VarLenUnicode>().expect("no NUL"))
    };
    text("jobs", &info.jobs.join(" "))?;
    text("phase", &info.phase)?;
    text("host", &info.host)?;
    text("version", env!("CARGO_PKG_VERSION"))?;
    file.new_attr::<u64>().create("step")?.write_scalar(&info.step)?;
    file.new_attr::<u64>().create("total")?.write_scalar(&info.total)?;
    file.new_attr::<u64>().create("format")?.write_scalar(&FORMAT)?;
    file.new_attr::<u32>().create("pid")?.write_scalar(&info.pid)?;
    file.new_attr::<i32>().create("rank")?.write_scalar(&info.rank)?;
    file.new_attr::<f64>().create("written")?.write_scalar(&info.written)
}

/// Read the root attributes of a checkpoint (cheap: no state is read).
pub fn read_info(path: &Path) -> Result<CheckpointInfo, CheckpointError> {
    let e = h5err(path);
    let file = hdf5::File::open(path).map_err(&e)?;
    let text = |n: &str| crate::reduce::load::read_str_attr(&file, n).map_err(|m| CheckpointError::Mismatch { name: n.into(), expected: "a text attribute".into(), found: m });
    let format: u64 = file.attr("format").and_then(|a| a.read_scalar()).map_err(&e)?;
    if format != FORMAT {
        return Err(CheckpointError::Mismatch { name: "format".into(), expected: FORMAT.to_string(), found: format.to_string() });
    }
    Ok(CheckpointInfo {
        jobs: text("jobs")?.split_whitespace().map(str::to_string).collect(),
        step: file.attr("step").and_then(|a| a.read_scalar()).map_err(&e)?,
        total: file.attr("total").and_then(|a| a.read_scalar()).map_err(&e)?,
        phase: text("phase")?,
        host: text("host")?,
        pid: file.attr("pid").and_then(|a| a.read_scalar()).map_err(&e)?,
        rank: file.attr("rank").and_then(|a| a.read_scalar()).map_err(&e)?,
        written: file.attr("written").and_then(|a| a.read_scalar()).map_err(&e)?,
    })
}

/// Read a whole checkpoint.
pub fn read(path: &Path) -> Result<(CheckpointInfo, StateDict), CheckpointError> {
    let info = read_info(path)?;
    let file = hdf5::File::open(path).map_err(h5err(path))?;
    let mut state = StateDict::default();
    read_group(&file, "", &mut state).map_err(h5err(path))?;
    Ok((info, state))
}

/// Write a checkpoint atomically: to `.<name>.tmp-<host>-<pid>` in the same folder, then
/// renamed over the previous one.
pub fn write(path: &Path, info: &CheckpointInfo, state: &StateDict) -> Result<(), CheckpointError> {
    let folder = path.parent().expect("a checkpoint path has a folder");
    std::fs::create_dir_all(folder).map_err(|source| CheckpointError::Io { path: folder.display().to_string(), source })?;
    let name = path.file_name().expect("a file name").to_string_lossy();
    let tmp = folder.join(format!(".{name}.tmp-{}-{}", crate::host::host_tag(), std::process::id()));
    let result = (|| -> hdf5::Result<()> {
        let file = hdf5::File::create(&tmp)?;
        write_info(&file, info)?;
        for (k, v) in &state.entries {
            write_entry(&file, k, v)?;
        }
        file.flush()?;
        file.close()
    })();
    if let Err(source) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(CheckpointError::Hdf5 { path: tmp.display().to_string(), source });
    }
    std::fs::rename(&tmp, path).map_err(|source| CheckpointError::Io { path: path.display().to_string(), source })
}

/// Remove a batch's checkpoint (once its job files are written). Missing is fine.
pub fn remove(path: &Path) {
    let _ = std::fs::remove_file(path);
}

/// Every readable checkpoint of a results folder: (batch name, info). Files that cannot be
/// read (another version, a broken disk) are skipped with their error.
pub fn list(out: &Path) -> (Vec<(String, CheckpointInfo)>, Vec<(PathBuf, CheckpointError)>) {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir(out)) else { return (good, bad) };
    let mut paths: Vec<PathBuf> = rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "h5") && !p.file_name().unwrap_or_default().to_string_lossy().starts_with('.')).collect();
    paths.sort();
    for p in paths {
        let name = p.file_stem().unwrap_or_default().to_string_lossy().to_string();
        match read_info(&p) {
            Ok(info) => good.push((name, info)),
            Err(e) => bad.push((p, e)),
        }
    }
    (good, bad)
}

/// Unix time now, in seconds.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{self, Purpose};

    /// Everything a state can hold survives the file bit for bit: f32 and f64 tensors
    /// (including NaN, -0.0 and subnormals), scalars, empty and 2-D arrays, texts, random
    /// streams mid-block (the next draws after the round trip are the draws that were due).
    #[test]
    fn a_state_survives_the_file_bit_for_bit() {
        let mut d = StateDict::default();
        let odd = [1.0f64 / 3.0, f64::NAN, -0.0, 5e-324, f64::INFINITY, -1e300];
        d.put_tensor("net/w", &Tensor::from_slice(&odd).view([2, 3])).unwrap();
        d.put_tensor("net/b", &Tensor::from_slice(&odd).to_kind(Kind::Float)).unwrap();
        d.put_f64s("history/0/loss/residual", &[0.5, 0.25]);
        d.put_f64s("history/0/loss/empty", &[]);
        d.put_f64_rows("ntk/eigenvalues", &[vec![3.0, 2.0], vec![1.0, 0.5]], 2);
        d.put_f64_rows("ntk/none", &[], 7);
        d.put_f64("elapsed", 12.5);
        d.put_u64("phase/next", u64::MAX - 3);
        d.put_i64s("steps", &[0, -1, i64::MAX]);
        d.put_text("diverged/1/message", "loss of term `residual` became NaN at step 7");
        let mut r = rng::stream(42, Purpose::Collocation, 3);
        rng::uniforms(&mut r, 5); // mid-block
        d.put_rng("rng", &r);
        let tmp = tempfile::tempdir().unwrap();
        let p = path(tmp.path(), "abc");
        let info = CheckpointInfo { jobs: vec!["a1".into(), "b2".into()], step: 7, total: 20, phase: "adam".into(), host: "h".into(), pid: 9, rank: 1, written: 1.5 };
        write(&p, &info, &d).unwrap();
        let (info2, back) = read(&p).unwrap();
        assert_eq!(info2, info);
        assert!(back.same_bits(&d), "differences: {:?}", back.differences(&d));
        let mut r2 = back.rng("rng").unwrap();
        assert_eq!(rng::uniforms(&mut r2, 9), rng::uniforms(&mut r, 9));
        assert_eq!(back.children("history/0/loss"), vec!["empty", "residual"]);
        assert_eq!(back.sub("net").names(), vec!["b", "w"]);
        assert_eq!(back.f64_rows("ntk/none").unwrap().len(), 0);
        // Listing reads the attributes; no temporary is left behind.
        let (good, bad) = list(tmp.path());
        assert!(bad.is_empty());
        assert_eq!(good, vec![("abc".to_string(), info)]);
        assert_eq!(std::fs::read_dir(dir(tmp.path())).unwrap().count(), 1);
    }

    #[test]
    fn restoring_checks_shape_and_precision() {
        let mut d = StateDict::default();
        d.put_tensor("w", &Tensor::zeros([2, 3], (Kind::Double, Device::Cpu))).unwrap();
        let like = Tensor::zeros([3, 2], (Kind::Double, Device::Cpu));
        assert!(matches!(d.tensor_like("w", &like), Err(CheckpointError::Mismatch { .. })));
        let like = Tensor::zeros([2, 3], (Kind::Float, Device::Cpu));
        assert!(matches!(d.tensor_like("w", &like), Err(CheckpointError::Mismatch { .. })));
        assert!(matches!(d.tensor("nothing"), Err(CheckpointError::Missing(_))));
        let dst = Tensor::ones([2, 3], (Kind::Double, Device::Cpu)).set_requires_grad(true);
        d.copy_into("w", &dst).unwrap();
        assert_eq!(dst.sum(Kind::Double).double_value(&[]), 0.0);
        assert!(dst.requires_grad(), "still the same leaf");
    }

    #[test]
    fn batch_names_depend_on_the_jobs_and_their_order() {
        assert_eq!(batch_name(&["a", "b"]), batch_name(&["a", "b"]));
        assert_ne!(batch_name(&["a", "b"]), batch_name(&["b", "a"]));
        assert_eq!(batch_name(&["a"]).len(), 16);
    }
}
