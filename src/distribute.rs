//! Running a sweep on one or many MPI ranks with dynamic scheduling, alongside any other
//! processes that work on the same results folder.
//!
//! Rank 0 plans: it scans the results folder (finished job files, live claims of other
//! processes, checkpoints of interrupted batches), forms batches longest first, and hands
//! them out: idle ranks send a request (carrying the statuses of the jobs they just finished)
//! and receive the job indices of their next batch, or -1 to stop. Rank 0 trains too and
//! answers requests between its own training steps (non-blocking probes in the step
//! callback), so no MPI thread support is needed and no rank sits idle as a pure dispatcher.
//!
//! A rank claims a batch's jobs before training it ([`crate::claim`]) and writes only the files
//! of the jobs it trained; a batch that another process (another `ntksweep run`, a task of a
//! job array) holds is skipped. When the plan runs out after skips, rank 0 scans the folder
//! again, so work given up elsewhere meanwhile (a process stopped by a signal) is picked up.
//!
//! A batch saves its state to `DIR/checkpoints/` every `--checkpoint-every` minutes and when
//! a signal (SIGTERM/SIGUSR1/SIGINT) arrives ([`crate::run::FileCheckpoints`]); the rank then
//! stops and reports, rank 0 stops handing out work, and every rank exits after at most its
//! current batch. The next run (any rank, any process) resumes the batch from its checkpoint.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use mpi::point_to_point::MatchedReceiveVec;
use mpi::traits::*;
use tch::Device;

use crate::budget;
use crate::checkpoint;
use crate::claim::{self, Contested};
use crate::config::{JobSpec, Sweep};
use crate::output::{self, RunMeta};
use crate::record::Status;
use crate::run::{self, FileCheckpoints, Progress, RunError};
use crate::schedule::plan_batches_resuming;
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

/// Per-rank log file `DIR/logs/rank-<r>.log` (appended: a resumed run adds to it; processes
/// of a job array share `rank-0.log`, so every line names its host and pid).
pub struct RankLog {
    file: Option<std::fs::File>,
    rank: i32,
    who: String,
}

impl RankLog {
    pub fn open(out: &Path, rank: i32) -> Self {
        let dir = out.join("logs");
        let _ = std::fs::create_dir_all(&dir);
        let file = std::fs::OpenOptions::new().create(true).append(true).open(dir.join(format!("rank-{rank}.log"))).ok();
        RankLog { file, rank, who: format!("{} pid {}", claim::this_host(), std::process::id()) }
    }

    pub fn line(&mut self, text: &str) {
        let now = checkpoint::unix_now();
        if let Some(f) = &mut self.file {
            // One write per line: lines of processes sharing the file do not interleave.
            let _ = f.write_all(format!("[{now:.3}] {} rank {}: {text}\n", self.who, self.rank).as_bytes());
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

/// What every rank needs to run.
pub struct Distributed<'a> {
    pub sweep: &'a Sweep,
    pub out: PathBuf,
    pub device: Device,
    pub retry_failed: bool,
    pub max_batch: Option<usize>,
    pub quiet: bool,
    /// Wall time between two checkpoints of a batch (None: only when a signal arrives).
    pub checkpoint_every: Option<Duration>,
    /// A claim whose heartbeat is older than this is taken over.
    pub claim_timeout: Duration,
}

/// What rank 0 found in the results folder.
#[derive(Debug, Default)]
struct Scan {
    batches: Vec<Vec<usize>>,
    /// Jobs with a file that need no training.
    finished: usize,
    /// Pending jobs held by live claims of other processes.
    claimed_elsewhere: usize,
    /// Batches left out because another process holds some of their jobs.
    held: usize,
    /// Batches that resume from a checkpoint.
    resuming: usize,
    /// Member-steps of the planned batches.
    steps: u64,
}

/// Rank 0's view of the folder: plans the batches of the pending jobs nobody else holds.
struct Planner<'a> {
    d: &'a Distributed<'a>,
    cap: usize,
    budget: Option<f64>,
}

impl Planner<'_> {
    /// Scan the folder and plan; `busy`: jobs in the hands of this run's ranks.
    ///
    /// Every unfinished job is planned, claimed by another process or not, so that processes
    /// that start at different times on one folder plan the same batches (and so train each
    /// job in the same batch as a single process would); batches with a job claimed elsewhere
    /// are then left out (`held`: a later scan looks at them again).
    fn scan(&self, busy: &HashSet<usize>) -> Scan {
        let sweep = self.d.sweep;
        let states = run::scan(sweep, &self.d.out);
        let (claimed, _) = claim::live(&self.d.out, self.d.claim_timeout);
        let unfinished: Vec<usize> = run::pending(&states, self.d.retry_failed);
        let finished = sweep.jobs.len() - unfinished.len();
        let open: Vec<usize> = unfinished.into_iter().filter(|i| !busy.contains(i)).collect();
        let saved = saved_batches(sweep, &self.d.out);
        let mut scan = Scan { finished, ..Default::default() };
        for b in plan_batches_resuming(&sweep.jobs, &open, self.cap, self.budget, &saved) {
            let elsewhere = b.jobs.iter().filter(|&&i| claimed.contains(&sweep.jobs[i].id)).count();
            if elsewhere > 0 {
                scan.claimed_elsewhere += elsewhere;
                scan.held += 1;
                continue;
            }
            scan.resuming += usize::from(saved.contains(&b.jobs));
            scan.steps += b.jobs.iter().map(|&i| sweep.jobs[i].config.training.all_steps()).sum::<u64>();
            scan.batches.push(b.jobs);
        }
        scan
    }
}

/// The batches of the checkpoints in the folder, as job indices (checkpoints of jobs not in
/// this sweep are ignored).
fn saved_batches(sweep: &Sweep, out: &Path) -> Vec<Vec<usize>> {
    let (saved, _) = checkpoint::list(out);
    if saved.is_empty() {
        return Vec::new();
    }
    let index: HashMap<&str, usize> = sweep.jobs.iter().map(|j| (j.id.as_str(), j.index)).collect();
    saved.iter().filter_map(|(_, info)| info.jobs.iter().map(|id| index.get(id.as_str()).copied()).collect::<Option<Vec<usize>>>()).collect()
}

/// Rank 0's bookkeeping of who gets which batch.
struct Dispatcher {
    queue: VecDeque<Vec<usize>>,
    /// Each rank's batch in hand (handed out and not reported back yet).
    in_hand: Vec<Vec<usize>>,
    /// Batches given up since the last scan because another process held them.
    skipped: usize,
    /// Workers that have not yet been told to stop.
    outstanding: usize,
    stopping: bool,
    busy: Vec<f64>,
    batches_per_rank: Vec<usize>,
}

/// What rank 0 carries while it trains, to answer the other ranks between its steps.
struct Rank0<'a> {
    disp: Dispatcher,
    progress: Progress,
    planner: Planner<'a>,
}

impl Rank0<'_> {
    /// The next batch for `rank`: from the plan, or from a new scan when the plan is used up
    /// and batches were skipped since the last scan.
    fn next(&mut self, rank: usize) -> Option<Vec<usize>> {
        let disp = &mut self.disp;
        if disp.stopping {
            return None;
        }
        if disp.queue.is_empty() && disp.skipped > 0 {
            disp.skipped = 0;
            let busy: HashSet<usize> = disp.in_hand.iter().flatten().copied().collect();
            let scan = self.planner.scan(&busy);
            // Batches held elsewhere now may be free at the next scan.
            disp.skipped = scan.held;
            if !scan.batches.is_empty() {
                eprintln!("scanned again: {} more batch(es) to run ({} resuming from checkpoints)", scan.batches.len(), scan.resuming);
            }
            self.progress.adjust(scan.steps as i64, scan.batches.iter().map(Vec::len).sum::<usize>() as i64);
            disp.queue = scan.batches.into();
        }
        let b = disp.queue.pop_front()?;
        disp.in_hand[rank] = b.clone();
        Some(b)
    }

    /// Rank `rank` is done with its batch in hand.
    fn returned(&mut self, rank: usize, ran: Ran, steps_of: &dyn Fn(usize) -> u64) {
        let b = std::mem::take(&mut self.disp.in_hand[rank]);
        match ran {
            Ran::Trained => self.disp.batches_per_rank[rank] += 1,
            Ran::Interrupted => self.disp.stopping = true,
            Ran::Skipped => {
                // Its steps are not done here (a later scan plans them again if needed).
                self.disp.skipped += 1;
                self.progress.adjust(-(b.iter().map(|&i| steps_of(i)).sum::<u64>() as i64), -(b.len() as i64));
            }
        }
    }

    fn handle(&mut self, world: &World, msg: Vec<i64>, from: i32, steps_of: &dyn Fn(usize) -> u64) {
        // [kind, busy_ms, ran, n, idx, status, idx, status, ...]
        let from_u = from as usize;
        self.disp.busy[from_u] = msg[1] as f64 / 1000.0;
        let n = msg[3] as usize;
        for k in 0..n {
            let (idx, st) = (msg[4 + 2 * k] as usize, status_of(msg[5 + 2 * k]));
            self.progress.finished(st, steps_of(idx));
        }
        if !self.disp.in_hand[from_u].is_empty() {
            self.returned(from_u, Ran::from_code(msg[2]), steps_of);
        }
        if msg[0] == 1 {
            self.disp.stopping = true;
        }
        let answer: Vec<i64> = match self.next(from_u) {
            Some(b) => std::iter::once(b.len() as i64).chain(b.iter().map(|&i| i as i64)).collect(),
            None => {
                self.disp.outstanding -= 1;
                vec![-1]
            }
        };
        world.comm.process_at_rank(from).send_with_tag(&answer[..], TAG_ASSIGN);
    }

    /// Answer every request already waiting, without blocking.
    fn service(&mut self, world: &World, steps_of: &dyn Fn(usize) -> u64) {
        while let Some(probed) = world.comm.any_process().immediate_matched_probe_with_tag(TAG_REQUEST) {
            let (msg, s) = probed.matched_receive_vec::<i64>();
            self.handle(world, msg, s.source_rank(), steps_of);
        }
    }
}

/// How one batch went on this rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ran {
    Trained,
    /// Another process holds (some of) its jobs, or they were finished elsewhere meanwhile.
    Skipped,
    /// A signal stopped it (its state is in its checkpoint).
    Interrupted,
}

impl Ran {
    fn code(self) -> i64 {
        match self {
            Ran::Trained => 0,
            Ran::Skipped => 1,
            Ran::Interrupted => 2,
        }
    }

    fn from_code(c: i64) -> Ran {
        match c {
            0 => Ran::Trained,
            1 => Ran::Skipped,
            _ => Ran::Interrupted,
        }
    }
}

/// Run the sweep on this rank. Returns the exit code every rank agrees on (broadcast from 0).
pub fn run_distributed(world: &World, d: &Distributed<'_>, stop: &AtomicBool) -> Result<(u8, RankReport), RunError> {
    let sweep = d.sweep;
    let started = SystemTime::now();
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
    // Memory per rank of this node (or of this GPU): the plan uses rank 0's, the guard of a
    // single job each rank's own.
    let sharing = match d.device {
        Device::Cuda(_) => (world.local_size as usize).div_ceil(tch::Cuda::device_count().max(1) as usize),
        _ => world.local_size as usize,
    };
    let my_budget = budget::device_budget(d.device, sharing);
    let steps_of = |i: usize| sweep.jobs[i].config.training.all_steps();
    let meta = RunMeta { device: run::device_name(d.device), rank: world.rank, host: world.host.clone(), sweep: sweep.name.clone() };
    let mut report = RankReport::default();

    if world.rank != 0 {
        let mut header = [0i64; 1];
        root.broadcast_into(&mut header[..]);
        return worker(world, d, &meta, stop, my_budget, started, &mut log, report, &steps_of);
    }

    // --- rank 0: plan, announce, hand out and train -------------------------------------------
    run::write_plan(sweep, &d.out)?;
    let stale = output::remove_stale_temporaries(&d.out);
    if stale > 0 {
        eprintln!("removed {stale} temporary file(s) left by an interrupted run");
    }
    let cap = d.max_batch.unwrap_or_else(|| run::default_max_batch(d.device));
    let planner = Planner { d, cap, budget: my_budget };
    let scan = planner.scan(&HashSet::new());
    let mut header = [scan.batches.len() as i64];
    root.broadcast_into(&mut header[..]);
    let to_run: usize = scan.batches.iter().map(Vec::len).sum();
    eprintln!(
        "sweep `{}`: {} jobs, {} already finished, {} to run in {} batch(es) on {} rank(s) -> {}",
        sweep.name,
        sweep.jobs.len(),
        scan.finished,
        to_run,
        scan.batches.len(),
        world.size,
        d.out.display()
    );
    if scan.claimed_elsewhere > 0 {
        eprintln!("{} pending job(s) are being trained by other processes (claims in {})", scan.claimed_elsewhere, claim::dir(&d.out).display());
    }
    if scan.resuming > 0 {
        eprintln!("{} batch(es) resume from checkpoints in {}", scan.resuming, checkpoint::dir(&d.out).display());
    }
    let largest = scan.batches.iter().map(Vec::len).max().unwrap_or(0);
    let budget_note = my_budget.map_or("unknown".to_string(), |b| format!("{} GB", budget::gigabytes(b)));
    eprintln!("batches of up to {largest} job(s): cap {cap} (--max-batch), memory budget {budget_note} per rank");
    let mut r0 = Rank0 {
        progress: Progress::new(scan.steps, to_run, !d.quiet),
        disp: Dispatcher {
            queue: scan.batches.into(),
            in_hand: vec![Vec::new(); world.size as usize],
            skipped: scan.held,
            outstanding: (world.size - 1) as usize,
            stopping: false,
            busy: vec![0.0; world.size as usize],
            batches_per_rank: vec![0; world.size as usize],
        },
        planner,
    };
    loop {
        r0.service(world, &steps_of);
        if stop.load(Ordering::Relaxed) {
            r0.disp.stopping = true;
        }
        let Some(batch) = r0.next(0) else { break };
        let ran = run_one(world, &batch, d, &meta, stop, my_budget, started, &mut log, &mut report, Some(&mut r0), &steps_of)?;
        r0.returned(0, ran, &steps_of);
        if ran == Ran::Interrupted {
            break;
        }
    }
    // Wait for every worker to ask once more and be told to stop.
    while r0.disp.outstanding > 0 {
        let (msg, s) = world.comm.any_process().matched_probe_with_tag(TAG_REQUEST).matched_receive_vec::<i64>();
        r0.handle(world, msg, s.source_rank(), &steps_of);
    }
    r0.progress.close();
    r0.disp.busy[0] = report.busy_seconds;
    // A signal on any rank (or on this one) stopped the hand-out.
    let any_interrupted = r0.disp.stopping;
    if world.size > 1 || std::env::var("NTKSWEEP_SHOW_RANKS").is_ok() {
        eprintln!("rank  batches  busy_s");
        for r in 0..world.size as usize {
            eprintln!("{r:>4}  {:>7}  {:>6.1}", r0.disp.batches_per_rank[r], r0.disp.busy[r]);
        }
    }
    log.line(&format!("finished: {} batches, busy {:.1}s", report.batches, report.busy_seconds));
    let code = finish_code(sweep, &d.out, d.claim_timeout, any_interrupted);
    let mut c = [code as i64];
    root.broadcast_into(&mut c[..]);
    report.interrupted = any_interrupted;
    Ok((code, report))
}

/// A rank other than 0: ask for batches until told to stop.
#[allow(clippy::too_many_arguments)]
fn worker(
    world: &World,
    d: &Distributed<'_>,
    meta: &RunMeta,
    stop: &AtomicBool,
    budget: Option<f64>,
    started: SystemTime,
    log: &mut RankLog,
    mut report: RankReport,
    steps_of: &dyn Fn(usize) -> u64,
) -> Result<(u8, RankReport), RunError> {
    let root = world.comm.process_at_rank(0);
    let mut finished: Vec<(usize, Status)> = Vec::new();
    let mut last = Ran::Trained;
    loop {
        let kind = if stop.load(Ordering::Relaxed) || report.interrupted { 1 } else { 0 };
        let mut msg = vec![kind, (report.busy_seconds * 1000.0) as i64, last.code(), finished.len() as i64];
        for (i, s) in finished.drain(..) {
            msg.push(i as i64);
            msg.push(status_code(s));
        }
        root.send_with_tag(&msg[..], TAG_REQUEST);
        let (answer, _) = root.receive_vec_with_tag::<i64>(TAG_ASSIGN);
        if answer[0] < 0 {
            break;
        }
        let batch: Vec<usize> = answer[1..].iter().map(|&i| i as usize).collect();
        let before = report.trained.len();
        last = run_one(world, &batch, d, meta, stop, budget, started, log, &mut report, None, steps_of)?;
        finished.extend(report.trained[before..].iter().copied());
        if last == Ran::Interrupted {
            report.interrupted = true;
        }
    }
    log.line(&format!("finished: {} batches, busy {:.1}s", report.batches, report.busy_seconds));
    let mut c = [0i64];
    world.comm.process_at_rank(0).broadcast_into(&mut c[..]);
    Ok((c[0] as u8, report))
}

/// Whether a job of a just-claimed batch still needs training: no file, or (with
/// `--retry-failed`) a failed or diverged file older than this run.
fn still_pending(d: &Distributed<'_>, spec: &JobSpec, started: SystemTime) -> bool {
    let p = output::job_path(&d.out, &spec.id);
    match output::read_status(&p) {
        Err(_) => !p.exists(),
        Ok(Status::Done) => false,
        Ok(_) => d.retry_failed && p.metadata().and_then(|m| m.modified()).is_ok_and(|t| t < started),
    }
}

/// Claim one batch, train it (from its checkpoint if there is one) and write its files.
#[allow(clippy::too_many_arguments)]
fn run_one(
    world: &World,
    batch: &[usize],
    d: &Distributed<'_>,
    meta: &RunMeta,
    stop: &AtomicBool,
    budget: Option<f64>,
    started: SystemTime,
    log: &mut RankLog,
    report: &mut RankReport,
    mut rank0: Option<&mut Rank0<'_>>,
    steps_of: &dyn Fn(usize) -> u64,
) -> Result<Ran, RunError> {
    if stop.load(Ordering::Relaxed) {
        return Ok(Ran::Interrupted);
    }
    let specs: Vec<&JobSpec> = batch.iter().map(|&i| &d.sweep.jobs[i]).collect();
    let ids: Vec<&str> = specs.iter().map(|s| s.id.as_str()).collect();
    let name = checkpoint::batch_name(&ids);
    let held = match claim::claim(&d.out, &ids, &name, world.rank, d.claim_timeout) {
        Ok(c) => c,
        Err(Contested::HeldBy { job, owner }) => {
            log.line(&format!(
                "batch {name} skipped (job {job} is claimed by host {} pid {} rank {}, heartbeat {:.0}s ago)",
                owner.host,
                owner.pid,
                owner.rank,
                checkpoint::unix_now() - owner.heartbeat
            ));
            return Ok(Ran::Skipped);
        }
        Err(Contested::Io(m)) => return Err(RunError::Io { path: claim::dir(&d.out).display().to_string(), source: std::io::Error::other(m) }),
    };
    for (job, owner) in &held.taken_over {
        log.line(&format!("took over the stale claim of job {job} from host {} pid {} rank {}", owner.host, owner.pid, owner.rank));
    }
    // Jobs another process finished since the scan are left alone.
    let todo: Vec<&JobSpec> = specs.iter().copied().filter(|s| still_pending(d, s, started)).collect();
    if todo.is_empty() {
        log.line(&format!("batch {name} skipped (finished elsewhere)"));
        held.release();
        return Ok(Ran::Skipped);
    }
    let t = Instant::now();
    let todo_ids: Vec<&str> = todo.iter().map(|s| s.id.as_str()).collect();
    log.line(&format!("batch of {} start: {}", todo.len(), todo_ids.join(" ")));
    let heartbeat = held.heartbeat(d.claim_timeout);
    let mut steps_done = 0u64;
    let (recs, checkpoint_path) = {
        let mut log_line = |m: &str| log.line(m);
        let mut store = FileCheckpoints::open(&d.out, &todo, d.checkpoint_every, world.rank, &mut log_line);
        let recs = run::run_batch(
            &todo,
            d.device,
            budget,
            stop,
            &mut |n| {
                steps_done += n;
                if let Some(r0) = rank0.as_mut() {
                    r0.progress.steps(n);
                    r0.service(world, steps_of);
                }
            },
            Some(&mut store),
        );
        (recs, store.path.clone())
    };
    let secs = t.elapsed().as_secs_f64();
    report.busy_seconds += secs;
    let Some(recs) = recs else {
        drop(heartbeat);
        held.release();
        let saved = if checkpoint_path.exists() { format!("state saved in {}", checkpoint_path.display()) } else { "no checkpoint".to_string() };
        log.line(&format!("batch interrupted after {secs:.1}s; {saved}; no job file written"));
        return Ok(Ran::Interrupted);
    };
    drop(heartbeat);
    report.batches += 1;
    let ours: HashMap<String, bool> = held.jobs.iter().cloned().zip(held.still_ours()).collect();
    let total: u64 = todo.iter().map(|s| steps_of(s.index)).sum();
    let mut left = total.saturating_sub(steps_done);
    for (spec, rec) in todo.iter().zip(recs) {
        if !ours.get(&spec.id).copied().unwrap_or(false) {
            log.line(&format!("job {} not written: its claim was taken over by another process", spec.id));
            continue;
        }
        output::write_job(&d.out, spec, &rec, meta)?;
        log.line(&format!("job {} {} {}", spec.id, rec.status.name(), rec.message));
        report.trained.push((spec.index, rec.status));
        if let Some(r0) = rank0.as_mut() {
            r0.progress.finished(rec.status, std::mem::take(&mut left));
        }
    }
    checkpoint::remove(&checkpoint_path);
    held.release();
    log.line(&format!("batch done in {secs:.1}s"));
    Ok(Ran::Trained)
}

/// Exit code from the state of every job of the sweep (rank 0 only): 0 all done (or being
/// trained by another live process), 1 some failed/diverged/pending, 3 interrupted.
fn finish_code(sweep: &Sweep, out: &Path, claim_timeout: Duration, interrupted: bool) -> u8 {
    let states = run::scan(sweep, out);
    println!("{}", crate::inspect::job_table(sweep, out));
    let (claimed, _) = claim::live(out, claim_timeout);
    let done = states.iter().filter(|s| **s == Some(Status::Done)).count();
    let bad = states.iter().filter(|s| matches!(s, Some(Status::Failed) | Some(Status::Diverged))).count();
    let pending: Vec<&JobSpec> = sweep.jobs.iter().zip(&states).filter(|(_, s)| s.is_none()).map(|(j, _)| j).collect();
    let elsewhere = pending.iter().filter(|j| claimed.contains(&j.id)).count();
    let pend = pending.len() - elsewhere;
    let elsewhere_note = if elsewhere > 0 { format!(", {elsewhere} being trained by other processes") } else { String::new() };
    println!("{done} done, {bad} failed or diverged, {pend} pending{elsewhere_note}; results in {}", out.display());
    if interrupted {
        eprintln!("interrupted: rerun the same command to resume (interrupted batches continue from {})", checkpoint::dir(out).display());
        3
    } else if bad == 0 && pend == 0 {
        0
    } else {
        1
    }
}
