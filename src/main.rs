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

use anyhow::Context;
use clap::{Parser, Subcommand};

use ntksweep::config::{Sweep, SweepError};
use ntksweep::output::RunMeta;
use ntksweep::record::Status;
use ntksweep::run::{self, DeviceChoice, Progress, RunOptions};
use ntksweep::schedule::plan_batches;

#[derive(Parser)]
#[command(name = "ntksweep", version, about = "Batch sweeps of PINN trainings that measure the Neural Tangent Kernel", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train every job of a sweep not yet done in the results folder (resume is the default).
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
        /// Most jobs trained together as one batched network (default: 4 on CPU, 64 on CUDA).
        #[arg(long)]
        max_batch: Option<usize>,
        /// Threads per process for CPU tensor ops (default: cores / processes on this node).
        #[arg(long)]
        threads: Option<usize>,
        /// No progress output.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Validate a sweep and list its jobs (id, parameters, cost estimate) without training.
    Plan {
        sweep: PathBuf,
        #[arg(long = "set", value_name = "PATH=VALUE")]
        sets: Vec<String>,
        /// Show each job's state in this results folder.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Count done / failed / diverged / pending jobs in a results folder.
    Status {
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            if let Some(SweepError::Invalid(_)) = e.downcast_ref::<SweepError>() {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
            eprintln!("error: {e:#}");
            ExitCode::from(4)
        }
    }
}

fn default_out(sweep: &Sweep) -> PathBuf {
    PathBuf::from("results").join(&sweep.name)
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Plan { sweep, sets, out } => {
            let sweep = Sweep::load(&sweep, &sets)?;
            let states = out.as_ref().map(|o| run::scan(&sweep, o));
            println!("sweep `{}`: {} jobs", sweep.name, sweep.jobs.len());
            let axes: Vec<&str> = sweep.axes.iter().map(|a| a.key.as_str()).collect();
            print!("{:>5}  {:<16}", "index", "job_id");
            for a in &axes {
                print!("  {a:>12}");
            }
            println!("  {:>10}{}", "GFLOP", if states.is_some() { "  state" } else { "" });
            let mut total = 0.0;
            for j in &sweep.jobs {
                print!("{:>5}  {:<16}", j.index, j.id);
                for (_, v) in &j.axis_values {
                    print!("  {v:>12}");
                }
                let c = j.cost_gflop();
                total += c;
                print!("  {c:>10.1}");
                if let Some(s) = &states {
                    print!("  {}", s[j.index].map(|s| s.name()).unwrap_or("pending"));
                }
                println!();
            }
            println!("total cost estimate: {total:.1} GFLOP");
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { dir } => status(&dir),
        Command::Run { sweep, out, device, retry_failed, sets, max_batch, threads, quiet } => {
            // Validate everything before touching the disk or the device.
            let sweep = Sweep::load(&sweep, &sets)?;
            let out = out.unwrap_or_else(|| default_out(&sweep));
            let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
            tch::set_num_threads(threads as i32);
            let device = run::choose_device(device, 0)?;
            let host = gethostname::gethostname().to_string_lossy().to_string();
            eprintln!("ntksweep {}: host {host}, rank 0/1, device {}, {} threads", env!("CARGO_PKG_VERSION"), run::device_name(device), threads);
            if device == tch::Device::Cpu && tch::Cuda::is_available() {
                eprintln!("note: CUDA is available but --device cpu was given");
            }
            run::write_plan(&sweep, &out)?;
            let stale = ntksweep::output::remove_stale_temporaries(&out);
            if stale > 0 {
                eprintln!("removed {stale} temporary file(s) left by an interrupted run");
            }
            let states = run::scan(&sweep, &out);
            let pending = run::pending(&states, retry_failed);
            let skipped = sweep.jobs.len() - pending.len();
            eprintln!("sweep `{}`: {} jobs, {} already finished, {} to run -> {}", sweep.name, sweep.jobs.len(), skipped, pending.len(), out.display());
            let cap = max_batch.unwrap_or_else(|| run::default_max_batch(device));
            let batches = plan_batches(&sweep.jobs, &pending, cap);
            let stop = Arc::new(AtomicBool::new(false));
            for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGUSR1, signal_hook::consts::SIGINT] {
                signal_hook::flag::register(sig, Arc::clone(&stop)).context("installing signal handlers")?;
            }
            let total_steps: u64 = pending.iter().map(|&i| sweep.jobs[i].config.training.total_steps()).sum();
            let mut progress = Progress::new(total_steps, pending.len(), !quiet);
            let opts = RunOptions { out: out.clone(), device, retry_failed, max_batch, meta: RunMeta { device: run::device_name(device), rank: 0, host, sweep: sweep.name.clone() } };
            let report = run::run_local(&sweep, &batches, &opts, &stop, &mut progress)?;
            progress.close();
            finish(&sweep, &out, report.interrupted)
        }
    }
}

/// Print the per-job table and pick the exit code from the state of every job of the sweep.
fn finish(sweep: &Sweep, out: &std::path::Path, interrupted: bool) -> anyhow::Result<ExitCode> {
    let states = run::scan(sweep, out);
    let summary = ntksweep::inspect::job_table(sweep, out);
    println!("{summary}");
    let (mut done, mut bad, mut pend) = (0, 0, 0);
    for s in &states {
        match s {
            Some(Status::Done) => done += 1,
            Some(_) => bad += 1,
            None => pend += 1,
        }
    }
    println!("{done} done, {bad} failed or diverged, {pend} pending; results in {}", out.display());
    if interrupted {
        eprintln!("interrupted: rerun the same command to resume");
        return Ok(ExitCode::from(3));
    }
    Ok(if bad == 0 && pend == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn status(dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let c = ntksweep::inspect::status_counts(dir)?;
    println!("{c}");
    Ok(ExitCode::SUCCESS)
}
