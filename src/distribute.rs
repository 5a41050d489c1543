//! Running a sweep on one or many MPI ranks with dynamic scheduling.
//!
//! Rank 0 plans (scans the results folder, forms batches longest-first) and broadcasts the
//! pending jobs; every rank then forms the same batches. Rank 0 also hands batches out: idle
//! ranks send a request (carrying the statuses of the jobs they just finished) and receive the
//! next batch index, or -1 to stop. Rank 0 trains too and answers requests between its own
//! training steps (non-blocking probes in the step callback), so no MPI thread support is
//! needed and no rank sits idle as a pure dispatcher.
//!
//! Every batch runs exactly once per invocation, on exactly one rank, and each rank writes
//! only the files of the jobs it trained. A signal (SIGTERM/SIGUSR1/SIGINT) on any rank makes
//! that rank abandon its current batch (nothing written) and report; rank 0 then stops handing
//! out work, so every rank stops after at most its current batch.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use mpi::point_to_point::MatchedReceiveVec;
use mpi::traits::*;
use tch::Device;

use crate::config::{JobSpec, Sweep};
use crate::output::{self, RunMeta};
use crate::record::Status;
use crate::run::{self, Progress, RunError};
use crate::budget;
use crate::schedule::{plan_batches, Batch};
use crate::world::World;

const TAG_REQUEST: i32 = 11;
const TAG_ASSIGN: i32 = 12;

/// How a run on this rank ended.
#[derive(Debug, Clone, Default)]
pub struct RankReport {
    pub trained: Vec<(usize, Status)>,
    pub interrupted: bool,
    pub busy_seconds: f64,
    pub batches: usize,
}

/// Per-rank log file `DIR/logs/rank-<r>.log` (appended: a resumed run adds to it).
pub struct RankLog {
    file: Option<std::fs::File>,
    rank: i32,
}

impl RankLog {
    pub fn open(out: &Path, rank: i32) -> Self {
        let dir = out.join("logs");
        let _ = std::fs::create_dir_all(&dir);
        let file = std::fs::OpenOptions::new().create(true).append(true).open(dir.join(format!("rank-{rank}.log"))).ok();
        RankLog { file, rank }
    }

    pub fn line(&mut self, text: &str) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        if let Some(f) = &mut self.file {
            let _ = writeln!(f, "[{now:.3}] rank {}: {text}", self.rank);
        }
    }
}

fn status_code(s: Status) -> i64 {
    match s {
        Status::Done => 0,
        Status::Failed => 1,
        Status::Diverged => 2,
    }
}

fn status_of(c: i64) -> Status {
    match c {
        0 => Status::Done,
        1 => Status::Failed,
        _ => Status::Diverged,
    }
}

/// Rank 0's bookkeeping of who gets which batch.
struct Dispatcher {
    next: usize,
    n_batches: usize,
    /// Workers that have not yet been told to stop.
    outstanding: usize,
    stopping: bool,
    busy: Vec<f64>,
    batches_per_rank: Vec<usize>,
    remote_finished: Vec<(usize, Status, i32)>,
}

impl Dispatcher {
    fn handle(&mut self, world: &World, msg: Vec<i64>, from: i32, progress: &mut Progress, steps_of: &dyn Fn(usize) -> u64) {
        // [kind, busy_ms, n, idx, status, idx, status, ...]
        let kind = msg[0];
        self.busy[from as usize] = msg[1] as f64 / 1000.0;
        let n = msg[2] as usize;
        for k in 0..n {
            let (idx, st) = (msg[3 + 2 * k] as usize, status_of(msg[4 + 2 * k]));
            progress.finished(st, steps_of(idx));
            self.remote_finished.push((idx, st, from));
        }
        if kind == 1 {
            self.stopping = true;
        }
        let answer: i64 = if self.stopping || self.next >= self.n_batches {
            self.outstanding -= 1;
            -1
        } else {
            self.next += 1;
            self.batches_per_rank[from as usize] += 1;
            (self.next - 1) as i64
        };
        world.comm.process_at_rank(from).send_with_tag(&[answer][..], TAG_ASSIGN);
    }

    /// Answer every request already waiting, without blocking.
    fn service(&mut self, world: &World, progress: &mut Progress, steps_of: &dyn Fn(usize) -> u64) {
        while let Some(probed) = world.comm.any_process().immediate_matched_probe_with_tag(TAG_REQUEST) {
            let (msg, s) = probed.matched_receive_vec::<i64>();
            self.handle(world, msg, s.source_rank(), progress, steps_of);
        }
    }

    fn take_local(&mut self) -> Option<usize> {
        if self.stopping || self.next >= self.n_batches {
            return None;
        }
        self.next += 1;
        self.batches_per_rank[0] += 1;
        Some(self.next - 1)
    }
}

/// What every rank needs to run.
pub struct Distributed<'a> {
    pub sweep: &'a Sweep,
    pub out: PathBuf,
    pub device: Device,
    pub retry_failed: bool,
    pub max_batch: Option<usize>,
    pub quiet: bool,
}

/// Run the sweep on this rank. Returns the exit code every rank agrees on (broadcast from 0).
pub fn run_distributed(world: &World, d: &Distributed<'_>, stop: &AtomicBool) -> Result<(u8, RankReport), RunError> {
    let sweep = d.sweep;
    let root = world.comm.process_at_rank(0);
    let mut log = RankLog::open(&d.out, world.rank);
    log.line(&format!(
        "host {} rank {}/{} local rank {}/{} CUDA_VISIBLE_DEVICES={} device {}",
        world.host,
        world.rank,
        world.size,
        world.local_rank,
        world.local_size,
        std::env::var("CUDA_VISIBLE_DEVICES").unwrap_or_else(|_| "<unset>".into()),
        run::device_name(d.device)
    ));

    // --- plan on rank 0, broadcast pending jobs, batch cap and memory budget ----------------
    // n_pending, cap, n_total_skipped, budget bytes per rank (-1: unknown). Rank 0's node
    // stands for all (nodes of one run are assumed alike), so every rank plans the same batches.
    let mut header = [0i64; 4];
    let mut pending: Vec<i64> = Vec::new();
    if world.rank == 0 {
        run::write_plan(sweep, &d.out)?;
        let stale = output::remove_stale_temporaries(&d.out);
        if stale > 0 {
            eprintln!("removed {stale} temporary file(s) left by an interrupted run");
        }
        let states = run::scan(sweep, &d.out);
        pending = run::pending(&states, d.retry_failed).into_iter().map(|i| i as i64).collect();
        let cap = d.max_batch.unwrap_or_else(|| run::default_max_batch(d.device));
        let sharing = match d.device {
            tch::Device::Cuda(_) => (world.local_size as usize).div_ceil(tch::Cuda::device_count().max(1) as usize),
            _ => world.local_size as usize,
        };
        let budget = budget::device_budget(d.device, sharing).map_or(-1, |b| b as i64);
        header = [pending.len() as i64, cap as i64, (sweep.jobs.len() - pending.len()) as i64, budget];
    }
    root.broadcast_into(&mut header[..]);
    pending.resize(header[0] as usize, 0);
    if header[0] > 0 {
        root.broadcast_into(&mut pending[..]);
    }
    let pending: Vec<usize> = pending.into_iter().map(|i| i as usize).collect();
    let budget = (header[3] >= 0).then_some(header[3] as f64);
    let batches = plan_batches(&sweep.jobs, &pending, header[1] as usize, budget);
    if world.rank == 0 {
        eprintln!(
            "sweep `{}`: {} jobs, {} already finished, {} to run in {} batch(es) on {} rank(s) -> {}",
            sweep.name,
            sweep.jobs.len(),
            header[2],
            pending.len(),
            batches.len(),
            world.size,
            d.out.display()
        );
        let largest = batches.iter().map(|b| b.jobs.len()).max().unwrap_or(0);
        let budget_note = budget.map_or("unknown".to_string(), |b| format!("{:.1} GB", b / 1e9));
        eprintln!("batches of up to {largest} job(s): cap {} (--max-batch), memory budget {budget_note} per rank", header[1]);
    }
    let steps_of = |i: usize| sweep.jobs[i].config.training.all_steps();
    let meta = RunMeta { device: run::device_name(d.device), rank: world.rank, host: world.host.clone(), sweep: sweep.name.clone() };
    let mut report = RankReport::default();

    if world.rank == 0 {
        let total_steps: u64 = pending.iter().map(|&i| steps_of(i)).sum();
        let mut progress = Progress::new(total_steps, pending.len(), !d.quiet);
        let mut disp = Dispatcher {
            next: 0,
            n_batches: batches.len(),
            outstanding: (world.size - 1) as usize,
            stopping: false,
            busy: vec![0.0; world.size as usize],
            batches_per_rank: vec![0; world.size as usize],
            remote_finished: Vec::new(),
        };
        loop {
            disp.service(world, &mut progress, &steps_of);
            if stop.load(Ordering::Relaxed) {
                disp.stopping = true;
            }
            let Some(bi) = disp.take_local() else { break };
            let interrupted = run_one(world, &batches[bi], d, &meta, stop, &mut log, &mut report, Some((&mut disp, &mut progress)), &steps_of)?;
            if interrupted {
                disp.stopping = true;
                break;
            }
        }
        // Wait for every worker to ask once more and be told to stop.
        while disp.outstanding > 0 {
            let (msg, s) = world.comm.any_process().matched_probe_with_tag(TAG_REQUEST).matched_receive_vec::<i64>();
            disp.handle(world, msg, s.source_rank(), &mut progress, &steps_of);
        }
        progress.close();
        disp.busy[0] = report.busy_seconds;
        // A signal on any rank (or on this one) stopped the hand-out.
        let any_interrupted = disp.stopping;
        if world.size > 1 || std::env::var("NTKSWEEP_SHOW_RANKS").is_ok() {
            eprintln!("rank  batches  busy_s");
            for r in 0..world.size as usize {
                eprintln!("{r:>4}  {:>7}  {:>6.1}", disp.batches_per_rank[r], disp.busy[r]);
            }
        }
        log.line(&format!("finished: {} batches, busy {:.1}s", report.batches, report.busy_seconds));
        let code = finish_code(sweep, &d.out, any_interrupted);
        let mut c = [code as i64];
        root.broadcast_into(&mut c[..]);
        report.interrupted = any_interrupted;
        Ok((code, report))
    } else {
        let mut finished: Vec<(usize, Status)> = Vec::new();
        loop {
            let kind = if stop.load(Ordering::Relaxed) || report.interrupted { 1 } else { 0 };
            let mut msg = vec![kind, (report.busy_seconds * 1000.0) as i64, finished.len() as i64];
            for (i, s) in finished.drain(..) {
                msg.push(i as i64);
                msg.push(status_code(s));
            }
            root.send_with_tag(&msg[..], TAG_REQUEST);
            let (answer, _) = root.receive_vec_with_tag::<i64>(TAG_ASSIGN);
            if answer[0] < 0 {
                break;
            }
            let before = report.trained.len();
            let interrupted = run_one(world, &batches[answer[0] as usize], d, &meta, stop, &mut log, &mut report, None, &steps_of)?;
            finished.extend(report.trained[before..].iter().copied());
            if interrupted {
                report.interrupted = true;
            }
        }
        log.line(&format!("finished: {} batches, busy {:.1}s", report.batches, report.busy_seconds));
        let mut c = [0i64];
        root.broadcast_into(&mut c[..]);
        Ok((c[0] as u8, report))
    }
}

/// Train one batch on this rank and write its files. Returns true when interrupted.
#[allow(clippy::too_many_arguments)]
fn run_one(
    world: &World,
    batch: &Batch,
    d: &Distributed<'_>,
    meta: &RunMeta,
    stop: &AtomicBool,
    log: &mut RankLog,
    report: &mut RankReport,
    mut rank0: Option<(&mut Dispatcher, &mut Progress)>,
    steps_of: &dyn Fn(usize) -> u64,
) -> Result<bool, RunError> {
    let t = Instant::now();
    let specs: Vec<&JobSpec> = batch.jobs.iter().map(|&i| &d.sweep.jobs[i]).collect();
    let ids: Vec<&str> = specs.iter().map(|s| s.id.as_str()).collect();
    log.line(&format!("batch of {} start: {}", specs.len(), ids.join(" ")));
    let mut steps_done = 0u64;
    let recs = run::run_batch(&specs, d.device, stop, &mut |n| {
        steps_done += n;
        if let Some((disp, progress)) = rank0.as_mut() {
            progress.steps(n);
            disp.service(world, progress, steps_of);
        }
    });
    let secs = t.elapsed().as_secs_f64();
    report.busy_seconds += secs;
    report.batches += 1;
    let Some(recs) = recs else {
        log.line(&format!("batch interrupted after {secs:.1}s; nothing written"));
        return Ok(true);
    };
    let total: u64 = batch.jobs.iter().map(|&i| steps_of(i)).sum();
    let mut left = total.saturating_sub(steps_done);
    for (spec, rec) in specs.iter().zip(recs) {
        output::write_job(&d.out, spec, &rec, meta)?;
        log.line(&format!("job {} {} {}", spec.id, rec.status.name(), rec.message));
        report.trained.push((spec.index, rec.status));
        if let Some((_, progress)) = rank0.as_mut() {
            progress.finished(rec.status, std::mem::take(&mut left));
        }
    }
    log.line(&format!("batch done in {secs:.1}s"));
    Ok(false)
}

/// Exit code from the state of every job of the sweep (rank 0 only): 0 all done, 1 some
/// failed/diverged/pending, 3 interrupted.
fn finish_code(sweep: &Sweep, out: &Path, interrupted: bool) -> u8 {
    let states = run::scan(sweep, out);
    println!("{}", crate::inspect::job_table(sweep, out));
    let done = states.iter().filter(|s| **s == Some(Status::Done)).count();
    let bad = states.iter().filter(|s| matches!(s, Some(Status::Failed) | Some(Status::Diverged))).count();
    let pend = states.iter().filter(|s| s.is_none()).count();
    println!("{done} done, {bad} failed or diverged, {pend} pending; results in {}", out.display());
    if interrupted {
        eprintln!("interrupted: rerun the same command to resume");
        3
    } else if bad == 0 && pend == 0 {
        0
    } else {
        1
    }
}
