//! The `ntksweep` binary: parses the command line, calls the library, maps errors to exit
//! codes. It owns the MPI universe (see `mpi_world`) and little else.
//!
//! Exit codes: 0 every job of the sweep is `done`; 1 some job failed or diverged; 2 invalid
//! input (nothing was trained or written); 3 interrupted by a signal (rerun to resume);
//! 4 other errors.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use ntksweep::config::{Sweep, SweepError};
use ntksweep::distribute::{run_distributed, Distributed};
use ntksweep::run::{self, DeviceChoice};
use ntksweep::world::World;

#[derive(Parser)]
#[command(name = "ntksweep", version, about = "Batch sweeps of PINN trainings that measure the Neural Tangent Kernel", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train every job of a sweep not yet done in the results folder (resume is the default).
    #[command(after_help = "Environment:\n  \
        NTKSWEEP_PROGRESS_SECONDS=S  seconds between progress lines (default 10)\n  \
        NTKSWEEP_REVERSE=autograd    differentiate through autograd end to end instead of the hand-written reverse pass (reference; slower)\n  \
        NTKSWEEP_FAIL_JOB=PREFIX     inject a libtorch error into the job whose id starts with PREFIX (tests a deployment's failure handling)\n  \
        NTKSWEEP_MEMORY_GB=G         memory budget per process in GB, instead of half of MemAvailable (or the cgroup limit) on a CPU, 80% of the free memory on a GPU\n  \
        OMP_WAIT_POLICY=PASSIVE      how idle OpenMP threads wait (default: chosen from the load average at start-up)")]
    Run {
        /// The sweep file (YAML).
        sweep: PathBuf,
        /// Results folder (default: results/<sweep name>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Where to train: auto picks CUDA when available.
        #[arg(long, value_enum, default_value = "auto")]
        device: DeviceChoice,
        /// Also rerun jobs recorded as failed or diverged.
        #[arg(long)]
        retry_failed: bool,
        /// Override a value or an axis: dotted.path=value (YAML), e.g. model.width=100 or
        /// sweep.seed=[0,1]. Repeatable.
        #[arg(long = "set", value_name = "PATH=VALUE")]
        sets: Vec<String>,
        /// Most jobs trained together as one batched network (default: 8 on CPU, 64 on CUDA; fewer when they would not fit in the device's memory).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        max_batch: Option<u64>,
        /// Threads per process for CPU tensor ops (default: cores / processes on this node).
        #[arg(long)]
        threads: Option<usize>,
        /// No progress output.
        #[arg(long, short)]
        quiet: bool,
        /// Save each batch's whole training state to DIR/checkpoints/ every MINUTES of wall
        /// time (fractions allowed; 0: only when a signal arrives). SIGTERM, SIGUSR1 and SIGINT
        /// always save the state and exit with code 3; a rerun, on any rank, process or node,
        /// continues the batch exactly where it stopped.
        #[arg(long, value_name = "MINUTES", default_value_t = 10.0, value_parser = minutes)]
        checkpoint_every: f64,
        /// Other processes may run on the same results folder (separate runs, job-array tasks):
        /// each claims the batches it trains (DIR/claims/). A claim whose heartbeat is older than
        /// MINUTES, or whose process on this host is gone, is taken over and its batch resumed
        /// from its checkpoint. Keep it well above the clock skew between nodes.
        #[arg(long, value_name = "MINUTES", default_value_t = ntksweep::claim::DEFAULT_TIMEOUT_MINUTES, value_parser = minutes)]
        claim_timeout: f64,
    },
    /// Validate a sweep and list its jobs (id, parameters, cost and peak-memory estimates)
    /// without training; jobs whose memory estimate exceeds the budget are marked.
    #[command(after_help = "A job marked `over` needs more memory than one process may use (half of MemAvailable or of the cgroup's limit on a CPU, 80% of the free GPU memory, or NTKSWEEP_MEMORY_GB): `run` records it as failed without starting it. Lower model.width, collocation or ntk.points.")]
    Plan {
        sweep: PathBuf,
        #[arg(long = "set", value_name = "PATH=VALUE")]
        sets: Vec<String>,
        /// Show each job's state in this results folder.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Device whose memory budget the estimates are compared with (auto: CUDA when
        /// available).
        #[arg(long, value_enum, default_value = "auto")]
        device: DeviceChoice,
    },
    /// Time the hot paths on this machine against the reference scripts (same run).
    Bench {
        /// Device to benchmark (auto: CUDA when available).
        #[arg(long, value_enum, default_value = "auto")]
        device: DeviceChoice,
        /// Skip the PyTorch/JAX reference scripts.
        #[arg(long)]
        no_references: bool,
        /// Smaller sizes and fewer repetitions.
        #[arg(long)]
        quick: bool,
        /// CPU threads for ntksweep and the PyTorch references (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Also write the table (markdown) to this file.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Reduce a results folder: DIR/summary.h5 (trial groups, NTK scaling fits, comparisons
    /// between the values of every swept setting), DIR/report.md (also printed) and
    /// DIR/jobs.csv (one row per job file, for pandas or polars).
    Reduce {
        dir: PathBuf,
        /// Do not print the report.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Count done / failed / diverged / pending jobs in a results folder; list checkpointed
    /// batches (with their step) and claimed jobs.
    Status {
        dir: PathBuf,
        /// Also list every job file: id, status, device, rank, host, wall time, message.
        #[arg(long)]
        jobs: bool,
    },
}

/// libtorch's OpenMP threads spin for a while when idle (libgomp's default). That is the
/// fastest choice on cores nobody else uses, and 3-10x slower for small PINN steps when other
/// processes share the cores. libgomp reads OMP_WAIT_POLICY when it is loaded, before `main`,
/// so when the node is already busy at start-up (1-minute load average at least half the
/// cores) set PASSIVE and re-execute once. A policy the user set is left alone.
fn choose_openmp_wait_policy() {
    use ntksweep::host::{load_average, wait_policy, WaitPolicy};
    use std::os::unix::process::CommandExt;
    if std::env::var_os("OMP_WAIT_POLICY").is_some() {
        return;
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if wait_policy(load_average().unwrap_or(0.0), cores) == WaitPolicy::Passive {
        std::env::set_var("OMP_WAIT_POLICY", "PASSIVE");
        if let Ok(exe) = std::env::current_exe() {
            let err = std::process::Command::new(exe).args(std::env::args_os().skip(1)).exec();
            eprintln!("warning: could not re-execute with OMP_WAIT_POLICY=PASSIVE: {err}");
        }
    }
}

/// The OpenMP wait policy in effect, for the start-up line.
fn wait_policy_note() -> String {
    match std::env::var("OMP_WAIT_POLICY") {
        Ok(p) if !p.is_empty() => p,
        _ => "default (spin, then sleep)".into(),
    }
}

fn main() -> ExitCode {
    choose_openmp_wait_policy();
    ntksweep::host::keep_freed_memory();
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            if let Some(SweepError::Invalid(_)) = e.downcast_ref::<SweepError>() {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
            if let Some(SweepError::Read { .. }) = e.downcast_ref::<SweepError>() {
                eprintln!("error: {e:#}");
                return ExitCode::from(2);
            }
            eprintln!("error: {e:#}");
            ExitCode::from(4)
        }
    }
}

/// A number of minutes >= 0.
fn minutes(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(m) if m.is_finite() && m >= 0.0 => Ok(m),
        _ => Err(format!("`{s}` is not a number of minutes >= 0")),
    }
}

fn default_out(sweep: &Sweep) -> PathBuf {
    PathBuf::from("results").join(&sweep.name)
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Plan { sweep, sets, out, device } => {
            let sweep = Sweep::load(&sweep, &sets)?;
            if let Err(e) = ntksweep::budget::env_budget() {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(2));
            }
            let device = match run::choose_device(device, 0) {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            let budget = ntksweep::budget::device_budget(device, 1);
            let states = out.as_ref().map(|o| run::scan(&sweep, o));
            print_plan(&sweep, states.as_deref(), budget, device)?;
            // The process ends here: freeing a million job configurations one allocation at a
            // time would only delay the exit.
            std::mem::forget(sweep);
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { dir, jobs } => status(&dir, jobs),
        Command::Reduce { dir, quiet } => {
            let t = std::time::Instant::now();
            // Expected ids from the plan written by `run`, so missing jobs are reported.
            let expected = run::read_plan_ids(&dir);
            let r = ntksweep::reduce::reduce(&dir, &ntksweep::reduce::ReduceOptions { expected_job_ids: expected })?;
            if !quiet {
                println!("{}", r.report_markdown());
            }
            eprintln!(
                "reduced {} done job(s) ({} failed, {} diverged, {} unreadable, {} missing) in {:.2}s -> {}, {} and {}",
                r.counts.done,
                r.counts.failed,
                r.counts.diverged,
                r.counts.unreadable,
                r.counts.missing.unwrap_or(0),
                t.elapsed().as_secs_f64(),
                r.summary_path().display(),
                r.report_path().display(),
                r.jobs_csv_path().display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { device, no_references, quick, threads, output } => {
            let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
            tch::set_num_threads(threads as i32);
            let device = run::choose_device(device, 0)?;
            let repo = std::env::current_dir()?;
            let name = match device {
                tch::Device::Cuda(_) => "cuda".to_string(),
                _ => format!("cpu, {threads} threads, OMP_WAIT_POLICY {}", wait_policy_note()),
            };
            eprintln!("ntksweep bench on {name} (references from {}/analysis/reference)", repo.display());
            if !no_references && std::env::var("OMP_WAIT_POLICY").is_ok_and(|p| p.eq_ignore_ascii_case("active")) {
                // Measured: with ACTIVE this process kept ~90% of a core busy while the
                // reference scripts ran beside it.
                eprintln!("warning: OMP_WAIT_POLICY=ACTIVE keeps ntksweep's idle threads spinning while the reference scripts run, which slows them down: the ratios favour ntksweep");
            }
            let rows = ntksweep::bench::run(&repo, &ntksweep::bench::BenchOptions { device, references: !no_references, quick, threads });
            let header = format!("ntksweep {} bench, device {name}, host {}", env!("CARGO_PKG_VERSION"), gethostname::gethostname().to_string_lossy());
            let t = ntksweep::bench::table(&rows, &header);
            println!("{t}");
            if let Some(p) = output {
                std::fs::write(&p, &t).with_context(|| format!("writing {}", p.display()))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { sweep, out, device, retry_failed, sets, max_batch, threads, quiet, checkpoint_every, claim_timeout } => {
            // First of all: a signal from now on asks for a clean stop (state saved, exit 3).
            let stop = Arc::new(AtomicBool::new(false));
            for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGUSR1, signal_hook::consts::SIGINT] {
                signal_hook::flag::register(sig, Arc::clone(&stop)).context("installing signal handlers")?;
            }
            // Validate everything before touching the disk, MPI or the device.
            let sweep = Sweep::load(&sweep, &sets)?;
            if let Err(e) = run::reverse_by_autograd().and(ntksweep::budget::env_budget()) {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(2));
            }
            let out = out.unwrap_or_else(|| default_out(&sweep));
            let world = World::init()?;
            let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
            let threads = threads.unwrap_or_else(|| (cores / world.local_size.max(1) as usize).max(1));
            tch::set_num_threads(threads as i32);
            let device = match run::choose_device(device, world.local_rank as usize) {
                Ok(d) => d,
                Err(e) => {
                    if world.rank == 0 {
                        eprintln!("error: {e}");
                    }
                    return Ok(ExitCode::from(2));
                }
            };
            let n_cuda = tch::Cuda::device_count();
            eprintln!(
                "ntksweep {}: host {} pid {} rank {}/{} local rank {}/{} CUDA_VISIBLE_DEVICES={} device {} threads {} OMP_WAIT_POLICY {}",
                env!("CARGO_PKG_VERSION"),
                world.host,
                std::process::id(),
                world.rank,
                world.size,
                world.local_rank,
                world.local_size,
                std::env::var("CUDA_VISIBLE_DEVICES").unwrap_or_else(|_| "<unset>".into()),
                run::device_name(device),
                threads,
                wait_policy_note()
            );
            if world.rank == 0 && run::reverse_by_autograd().unwrap_or(false) {
                eprintln!("NTKSWEEP_REVERSE=autograd: every training step runs autograd through the whole network (the reference path; slower)");
            }
            if matches!(device, tch::Device::Cuda(_)) && world.local_rank == 0 && world.local_size as i64 > n_cuda {
                eprintln!("warning: {} ranks on host {} share {} CUDA device(s)", world.local_size, world.host, n_cuda);
            }
            let d = Distributed {
                sweep: &sweep,
                out,
                device,
                retry_failed,
                max_batch: max_batch.map(|m| m as usize),
                quiet: quiet || world.rank != 0,
                checkpoint_every: (checkpoint_every > 0.0).then(|| Duration::from_secs_f64(checkpoint_every * 60.0)),
                claim_timeout: Duration::from_secs_f64(claim_timeout * 60.0),
            };
            let (code, _) = run_distributed(&world, &d, &stop)?;
            drop(world);
            Ok(ExitCode::from(code))
        }
    }
}

/// The table of `plan`: one line per job with its axis values, cost and memory estimates.
fn print_plan(sweep: &Sweep, states: Option<&[Option<ntksweep::record::Status>]>, budget: Option<f64>, device: tch::Device) -> std::io::Result<()> {
    use ntksweep::budget::gigabytes;
    use std::io::Write;
    // One buffered writer: a million lines through the line-buffered stdout take seconds.
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    writeln!(w, "sweep `{}`: {} jobs", sweep.name, sweep.jobs.len())?;
    write!(w, "{:>5}  {:<16}", "index", "job_id")?;
    for a in &sweep.axes {
        write!(w, "  {:>12}", a.key)?;
    }
    writeln!(w, "  {:>10}  {:>8}{}", "GFLOP", "mem_GB", if states.is_some() { "  state" } else { "" })?;
    let (mut total, mut over, mut peak) = (0.0, 0usize, 0.0f64);
    let mut estimates = ntksweep::schedule::Estimates::new(&sweep.jobs);
    for (i, j) in sweep.jobs.iter().enumerate() {
        write!(w, "{:>5}  {:<16}", j.index, j.id)?;
        for (_, v) in j.axis_texts() {
            write!(w, "  {v:>12}")?;
        }
        let ntksweep::schedule::Estimate { gflop: c, bytes: mem } = estimates.get(i);
        total += c;
        peak = peak.max(mem);
        write!(w, "  {c:>10.1}  {:>8}", gigabytes(mem))?;
        if let Some(s) = states {
            write!(w, "  {}", s[j.index].map(|s| s.name()).unwrap_or("pending"))?;
        }
        if budget.is_some_and(|b| mem > b) {
            over += 1;
            write!(w, "  over")?;
        }
        writeln!(w)?;
    }
    writeln!(w, "total cost estimate: {total:.1} GFLOP")?;
    let where_ = run::device_name(device);
    match budget {
        Some(b) => writeln!(w, "peak memory estimate: {} GB per job; budget {} GB per process on {where_}", gigabytes(peak), gigabytes(b))?,
        None => writeln!(w, "peak memory estimate: {} GB per job; budget unknown on {where_}", gigabytes(peak))?,
    }
    if over > 0 {
        writeln!(w, "{over} job(s) marked `over` need more memory than the budget: `run` records them as failed; lower model.width, collocation or ntk.points")?;
    }
    w.flush()
}

fn status(dir: &std::path::Path, jobs: bool) -> anyhow::Result<ExitCode> {
    let c = ntksweep::inspect::status_counts(dir)?;
    println!("{c}");
    print!("{}", ntksweep::inspect::work_in_progress(dir, Duration::from_secs_f64(ntksweep::claim::DEFAULT_TIMEOUT_MINUTES * 60.0)));
    if jobs {
        print!("{}", ntksweep::inspect::job_list(dir));
    }
    Ok(ExitCode::SUCCESS)
}
