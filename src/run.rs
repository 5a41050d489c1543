//! `ntksweep run`: find the jobs not yet done, train them in batches, write one file per job.
//!
//! Resume is the default: a job whose file exists with status `done` is skipped; `failed`
//! and `diverged` jobs are skipped too unless `--retry-failed`. A libtorch error or panic in a
//! batch marks its jobs `failed` (a batch of several is first retried one job at a time, so
//! only the culprit fails) and the sweep goes on. SIGTERM/SIGUSR1/SIGINT set a flag: the
//! current batch saves its state to `DIR/checkpoints/` ([`FileCheckpoints`]) and stops without
//! writing job files, and no further batch starts; a rerun resumes the batch from there.

use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use tch::Device;

use crate::budget;
use crate::checkpoint::{self, CheckpointInfo, StateDict};
use crate::config::{JobSpec, Sweep};
use crate::output;
use crate::record::{JobRecord, Status};
use crate::train::{train_batch, BatchContext, BatchOutcome, Checkpoints, Progress as SaveProgress, TrainError};

/// `--device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    Auto,
    Cpu,
    Cuda,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("--device cuda was requested but no CUDA device is available (tch::Cuda::is_available() is false; check the driver, CUDA_VISIBLE_DEVICES and that libtorch_cuda is linked)")]
    NoCuda,
    #[error("cannot create results folder {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error(transparent)]
    Output(#[from] output::OutputError),
}

/// Pick the device of this process: CUDA device `local_rank % count` when CUDA is wanted.
pub fn choose_device(choice: DeviceChoice, local_rank: usize) -> Result<Device, RunError> {
    let count = tch::Cuda::device_count() as usize;
    let cuda = tch::Cuda::is_available() && count > 0;
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda if !cuda => Err(RunError::NoCuda),
        DeviceChoice::Cuda | DeviceChoice::Auto if cuda => Ok(Device::Cuda(local_rank % count)),
        _ => Ok(Device::Cpu),
    }
}

pub fn device_name(d: Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// Existing state of every job of the sweep in `out`.
pub fn scan(sweep: &Sweep, out: &Path) -> Vec<Option<Status>> {
    // One listing of the folder instead of a file-system look-up per job: a million `stat`
    // calls take seconds, and most jobs of a big sweep have no file yet.
    let present: HashSet<String> = match std::fs::read_dir(output::jobs_dir(out)) {
        Ok(rd) => rd.flatten().filter_map(|e| e.file_name().into_string().ok()).collect(),
        Err(_) => return vec![None; sweep.jobs.len()],
    };
    sweep
        .jobs
        .iter()
        .map(|j| {
            if present.is_empty() || !present.contains(&format!("{}.h5", j.id)) {
                return None;
            }
            output::read_status(&output::job_path(out, &j.id)).ok()
        })
        .collect()
}

/// Indices of the jobs to run.
pub fn pending(states: &[Option<Status>], retry_failed: bool) -> Vec<usize> {
    states
        .iter()
        .enumerate()
        .filter(|(_, s)| match s {
            None => true,
            Some(Status::Done) => false,
            Some(_) => retry_failed,
        })
        .map(|(i, _)| i)
        .collect()
}

/// Default largest batch. On a CPU, larger batches still amortise per-call costs (80 darcy
/// jobs, width 100, 2 cores: 760 job-steps/s in batches of 4, 1100 in batches of 8, no better
/// beyond) and a rank should not hold most of a small sweep; a GPU amortises its per-kernel
/// cost over many more members.
pub fn default_max_batch(device: Device) -> usize {
    match device {
        Device::Cpu => 8,
        _ => 64,
    }
}

/// Whether `NTKSWEEP_REVERSE=autograd` asks every training step to differentiate with
/// autograd through the whole network instead of the hand-written reverse pass
/// ([`crate::model::tape`]), e.g. to check the hand-written pass on a new device against the
/// reference path (`scripts/gpu-check.sh` does). Unset, empty or `tape`: the hand-written pass.
pub fn reverse_by_autograd() -> Result<bool, String> {
    match std::env::var("NTKSWEEP_REVERSE").as_deref() {
        Err(_) | Ok("") | Ok("tape") => Ok(false),
        Ok("autograd") => Ok(true),
        Ok(other) => Err(format!("NTKSWEEP_REVERSE={other}: expected `tape` (the default) or `autograd`")),
    }
}

/// The checkpoints of one batch: the file `DIR/checkpoints/<batch>.h5` ([`crate::checkpoint`]),
/// read when the batch starts, written every `every` of wall time and when the batch is asked
/// to stop. What happens is written to `log` (the rank's log).
pub struct FileCheckpoints<'a> {
    pub path: PathBuf,
    jobs: Vec<String>,
    every: Option<Duration>,
    last: Instant,
    rank: i32,
    resume: Option<(CheckpointInfo, StateDict)>,
    log: &'a mut dyn FnMut(&str),
    /// Saves written so far.
    pub saves: usize,
}

impl<'a> FileCheckpoints<'a> {
    /// The checkpoints of `jobs` (a batch, in batch order) in results folder `out`; an existing
    /// checkpoint is read now. `every`: None for no periodic saves (signals still save).
    pub fn open(out: &Path, jobs: &[&JobSpec], every: Option<Duration>, rank: i32, log: &'a mut dyn FnMut(&str)) -> Self {
        let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
        let path = checkpoint::path(out, &checkpoint::batch_name(&ids));
        let mut resume = None;
        if path.exists() {
            match checkpoint::read(&path) {
                Ok((info, state)) if info.jobs == ids => resume = Some((info, state)),
                Ok((info, _)) => log(&format!("ignoring checkpoint {}: it holds jobs {:?}, not this batch", path.display(), info.jobs)),
                Err(e) => {
                    log(&format!("cannot read checkpoint {} ({e}); starting the batch afresh", path.display()));
                    checkpoint::remove(&path);
                }
            }
        }
        FileCheckpoints { path, jobs: ids.iter().map(|s| s.to_string()).collect(), every, last: Instant::now(), rank, resume, log, saves: 0 }
    }

    /// Remove the checkpoint (its batch's job files are written).
    pub fn remove(&self) {
        checkpoint::remove(&self.path);
    }
}

impl Checkpoints for FileCheckpoints<'_> {
    fn resume(&mut self) -> Option<StateDict> {
        let (info, state) = self.resume.take()?;
        (self.log)(&format!(
            "resuming from checkpoint {} at step {}/{} ({}), written by host {} pid {} rank {}",
            self.path.display(),
            info.step,
            info.total,
            info.phase,
            info.host,
            info.pid,
            info.rank
        ));
        Some(state)
    }

    fn due(&mut self) -> bool {
        self.every.is_some_and(|e| self.last.elapsed() >= e)
    }

    fn save(&mut self, state: &StateDict, p: SaveProgress) {
        let t = Instant::now();
        let info = CheckpointInfo {
            jobs: self.jobs.clone(),
            step: p.step,
            total: p.total,
            phase: p.phase.to_string(),
            host: gethostname::gethostname().to_string_lossy().to_string(),
            pid: std::process::id(),
            rank: self.rank,
            written: checkpoint::unix_now(),
        };
        self.last = Instant::now();
        match checkpoint::write(&self.path, &info, state) {
            Ok(()) => {
                self.saves += 1;
                (self.log)(&format!("checkpoint at step {}/{} ({}) -> {} in {:.2}s", p.step, p.total, p.phase, self.path.display(), t.elapsed().as_secs_f64()));
            }
            Err(e) => (self.log)(&format!("warning: checkpoint at step {} not written: {e}", p.step)),
        }
    }
}

/// Why a single job is not even started: its memory estimate exceeds the budget.
pub fn over_budget(spec: &JobSpec, budget: Option<f64>, device: Device) -> Option<String> {
    let need = budget::member_bytes(spec);
    let b = budget?;
    (need > b).then(|| {
        format!(
            "needs about {} GB, the budget is {} GB on {}; lower model.width, collocation or ntk.points",
            budget::gigabytes(need),
            budget::gigabytes(b),
            device_name(device)
        )
    })
}

/// A failed job's message: the error without libtorch's C++ stack trace.
fn failure_message(e: &TrainError) -> String {
    let text = e.to_string();
    let end = ["\nException raised from", "\nframe #"].iter().filter_map(|m| text.find(m)).min().unwrap_or(text.len());
    text[..end].trim_end().to_string()
}

/// One training attempt; a panic becomes an error.
fn attempt_batch(
    jobs: &[&JobSpec],
    device: Device,
    stop: &AtomicBool,
    autograd: bool,
    on_steps: &mut dyn FnMut(u64),
    store: Option<&mut dyn Checkpoints>,
) -> Result<Option<Vec<JobRecord>>, TrainError> {
    let mut ctx = BatchContext { device, stop, on_steps, autograd, checkpoints: store.map(|s| s as &mut dyn Checkpoints) };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| train_batch(jobs, &mut ctx))) {
        Ok(Ok(BatchOutcome::Finished(r))) => Ok(Some(r)),
        Ok(Ok(BatchOutcome::Interrupted)) => Ok(None),
        Ok(Err(e)) => Err(e),
        Err(p) => Err(TrainError::Panic(p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default())),
    }
}

/// Train one batch; never panics, never returns a libtorch error: failures become records.
/// A single job whose memory estimate exceeds `budget` is not started: it fails with the
/// reason ([`over_budget`]). With `store`, the batch resumes from its checkpoint and saves its
/// state there (a checkpoint that does not fit is dropped and the batch starts afresh). None:
/// interrupted (its state is in the store).
pub fn run_batch(
    jobs: &[&JobSpec],
    device: Device,
    budget: Option<f64>,
    stop: &AtomicBool,
    on_steps: &mut dyn FnMut(u64),
    mut store: Option<&mut FileCheckpoints<'_>>,
) -> Option<Vec<JobRecord>> {
    if let [job] = jobs {
        if let Some(reason) = over_budget(job, budget, device) {
            return Some(vec![JobRecord::failed(reason)]);
        }
    }
    let autograd = reverse_by_autograd().unwrap_or(false);
    let attempt = |jobs: &[&JobSpec], on_steps: &mut dyn FnMut(u64), store: Option<&mut dyn Checkpoints>| attempt_batch(jobs, device, stop, autograd, on_steps, store);
    let mut result = attempt(jobs, on_steps, store.as_deref_mut().map(|s| s as &mut dyn Checkpoints));
    if let (Err(TrainError::Resume(e)), Some(s)) = (&result, store.as_deref_mut()) {
        (s.log)(&format!("cannot resume from {} ({e}); starting the batch afresh", s.path.display()));
        s.remove();
        result = attempt(jobs, on_steps, Some(s));
    }
    match result {
        Ok(r) => r,
        Err(e) if jobs.len() == 1 => Some(vec![JobRecord::failed(failure_message(&e))]),
        Err(_) => {
            // Retry one by one so only the job that fails is marked failed (without
            // checkpoints: the batch's checkpoint is not theirs).
            let mut out = Vec::new();
            for j in jobs {
                match attempt(std::slice::from_ref(j), on_steps, None) {
                    Ok(Some(mut r)) => out.push(r.remove(0)),
                    Ok(None) => return None,
                    Err(e) => out.push(JobRecord::failed(failure_message(&e))),
                }
            }
            Some(out)
        }
    }
}

/// Progress of the whole sweep: a bar on a terminal, plain periodic lines otherwise.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total_steps: u64,
    done_steps: u64,
    jobs_total: usize,
    jobs_finished: usize,
    counts: [usize; 3],
    start: Instant,
    last_line: Instant,
    every: Duration,
    enabled: bool,
}

impl Progress {
    pub fn new(total_steps: u64, jobs_total: usize, enabled: bool) -> Self {
        let every = Duration::from_secs_f64(std::env::var("NTKSWEEP_PROGRESS_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10.0));
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new(total_steps.max(1));
            b.set_style(
                indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {percent:>3}% eta {eta} {msg}")
                    .unwrap()
                    .progress_chars("=> "),
            );
            b
        });
        Progress { bar, total_steps, done_steps: 0, jobs_total, jobs_finished: 0, counts: [0; 3], start: Instant::now(), last_line: Instant::now(), every, enabled }
    }

    fn message(&self) -> String {
        format!("jobs {}/{} (done {}, failed {}, diverged {})", self.jobs_finished, self.jobs_total, self.counts[0], self.counts[1], self.counts[2])
    }

    /// Change the totals: jobs found by a later scan (positive), or a batch another process
    /// holds (negative).
    pub fn adjust(&mut self, steps: i64, jobs: i64) {
        self.total_steps = self.total_steps.saturating_add_signed(steps);
        self.jobs_total = self.jobs_total.saturating_add_signed(jobs as isize);
        if let Some(b) = &self.bar {
            b.set_length(self.total_steps.max(1));
        }
    }

    pub fn steps(&mut self, n: u64) {
        self.done_steps += n;
        if let Some(b) = &self.bar {
            b.set_position(self.done_steps);
        } else if self.enabled && self.last_line.elapsed() >= self.every {
            self.line();
        }
    }

    fn line(&mut self) {
        self.last_line = Instant::now();
        let frac = self.done_steps as f64 / self.total_steps.max(1) as f64;
        let el = self.start.elapsed().as_secs_f64();
        let eta = if frac > 0.0 { el / frac - el } else { f64::NAN };
        eprintln!("progress: {:5.1}% steps, {}, elapsed {:.0}s, eta {:.0}s", 100.0 * frac, self.message(), el, eta);
    }

    pub fn finished(&mut self, status: Status, steps_left: u64) {
        self.jobs_finished += 1;
        self.counts[match status {
            Status::Done => 0,
            Status::Failed => 1,
            Status::Diverged => 2,
        }] += 1;
        self.done_steps += steps_left;
        if let Some(b) = &self.bar {
            b.set_position(self.done_steps);
            b.set_message(self.message());
        } else if self.enabled && (self.last_line.elapsed() >= self.every || self.jobs_finished == self.jobs_total) {
            self.line();
        }
    }

    pub fn close(&self) {
        if let Some(b) = &self.bar {
            b.finish_with_message(self.message());
        }
    }
}

/// Job ids listed in `DIR/plan.tsv` (written by [`write_plan`]); None without a plan.
pub fn read_plan_ids(dir: &Path) -> Option<Vec<String>> {
    let plan = std::fs::read_to_string(dir.join("plan.tsv")).ok()?;
    Some(plan.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split('\t').nth(1).map(str::to_string)).collect())
}

/// Write the sweep's plan next to the results (expected job ids, for status and reduce).
pub fn write_plan(sweep: &Sweep, out: &Path) -> Result<(), RunError> {
    std::fs::create_dir_all(output::jobs_dir(out)).map_err(|source| RunError::Io { path: out.display().to_string(), source })?;
    // A temporary name per process: array tasks write the same plan at the same time.
    let tmp = out.join(format!(".plan.tsv.tmp-{}-{}", crate::host::host_tag(), std::process::id()));
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
        w.write_all(b"# index\tjob_id\taxes\n")?;
        for j in &sweep.jobs {
            write!(w, "{}\t{}\t", j.index, j.id)?;
            for (n, (k, v)) in j.axis_texts().enumerate() {
                write!(w, "{}{k}={v}", if n > 0 { " " } else { "" })?;
            }
            w.write_all(b"\n")?;
        }
        w.flush()
    };
    write().and_then(|_| std::fs::rename(&tmp, out.join("plan.tsv"))).map_err(|source| RunError::Io { path: out.join("plan.tsv").display().to_string(), source })
}

