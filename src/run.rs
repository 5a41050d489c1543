//! `ntksweep run`: find the jobs not yet done, train them in batches, write one file per job.
//!
//! Resume is the default: a job whose file exists with status `done` is skipped; `failed`
//! and `diverged` jobs are skipped too unless `--retry-failed`. A libtorch error or panic in a
//! batch marks its jobs `failed` (a batch of several is first retried one job at a time, so
//! only the culprit fails) and the sweep goes on. SIGTERM/SIGUSR1 set a flag: the current
//! batch is abandoned without writing anything and no further batch starts.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use tch::Device;

use crate::config::{JobSpec, Sweep};
use crate::output;
use crate::record::{JobRecord, Status};
use crate::train::{train_batch, BatchContext, BatchOutcome};

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
    sweep
        .jobs
        .iter()
        .map(|j| {
            let p = output::job_path(out, &j.id);
            if p.exists() {
                output::read_status(&p).ok()
            } else {
                None
            }
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

/// Train one batch; never panics, never returns a libtorch error: failures become records.
pub fn run_batch(jobs: &[&JobSpec], device: Device, stop: &AtomicBool, on_steps: &mut dyn FnMut(u64)) -> Option<Vec<JobRecord>> {
    let attempt = |jobs: &[&JobSpec], on_steps: &mut dyn FnMut(u64)| -> Result<Option<Vec<JobRecord>>, String> {
        let mut ctx = BatchContext { device, stop, on_steps, autograd: reverse_by_autograd().unwrap_or(false) };
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| train_batch(jobs, &mut ctx))) {
            Ok(Ok(BatchOutcome::Finished(r))) => Ok(Some(r)),
            Ok(Ok(BatchOutcome::Interrupted)) => Ok(None),
            Ok(Err(e)) => Err(format!("libtorch error: {e}")),
            Err(p) => Err(format!(
                "panic: {}",
                p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
            )),
        }
    };
    match attempt(jobs, on_steps) {
        Ok(r) => r,
        Err(msg) if jobs.len() == 1 => Some(vec![JobRecord::failed(msg)]),
        Err(_) => {
            // Retry one by one so only the job that fails is marked failed.
            let mut out = Vec::new();
            for j in jobs {
                match attempt(std::slice::from_ref(j), on_steps) {
                    Ok(Some(mut r)) => out.push(r.remove(0)),
                    Ok(None) => return None,
                    Err(msg) => out.push(JobRecord::failed(msg)),
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
    let mut text = String::from("# index\tjob_id\taxes\n");
    for j in &sweep.jobs {
        let axes: Vec<String> = j.axis_values.iter().map(|(k, v)| format!("{k}={v}")).collect();
        text.push_str(&format!("{}\t{}\t{}\n", j.index, j.id, axes.join(" ")));
    }
    let tmp = out.join(".plan.tsv.tmp");
    std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, out.join("plan.tsv"))).map_err(|source| RunError::Io { path: out.join("plan.tsv").display().to_string(), source })
}

