//! Quick looks at a results folder without reducing it: the per-job table printed after a run,
//! and the counts, checkpointed batches and claims of `ntksweep status`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use crate::reduce::load::read_str_attr;

use crate::config::Sweep;
use crate::output;

/// A few numbers of a finished job.
#[derive(Debug, Clone, Default)]
pub struct JobSummary {
    pub status: String,
    pub rel_l2: Option<f64>,
    /// Frobenius norm of each term's NTK block at the first and last snapshot.
    pub ntk: Vec<(String, f64, f64)>,
    pub message: String,
}

fn read_summary(path: &Path) -> hdf5::Result<JobSummary> {
    let f = hdf5::File::open(path)?;
    let s = |name: &str| read_str_attr(&f, name).map_err(hdf5::Error::from);
    let mut out = JobSummary { status: s("status")?, message: s("message").unwrap_or_default(), ..Default::default() };
    if let Ok(g) = f.group("eval") {
        out.rel_l2 = g.attr("rel_l2").and_then(|a| a.read_scalar::<f64>()).ok();
    }
    if let Ok(g) = f.group("ntk") {
        for name in g.member_names()? {
            if name == "step" {
                continue;
            }
            if let Ok(v) = g.dataset(&format!("{name}/frobenius")).and_then(|d| d.read_raw::<f64>()) {
                if let (Some(a), Some(b)) = (v.first(), v.last()) {
                    out.ntk.push((name, *a, *b));
                }
            }
        }
    }
    Ok(out)
}

/// Per-job table of a sweep's results (axes, status, relative L2 error, NTK norms).
pub fn job_table(sweep: &Sweep, out: &Path) -> String {
    let mut s = String::new();
    let axes: Vec<&str> = sweep.axes.iter().map(|a| a.key.as_str()).collect();
    let rows: Vec<(usize, Option<JobSummary>)> =
        sweep.jobs.iter().map(|j| (j.index, read_summary(&output::job_path(out, &j.id)).ok())).collect();
    let mut terms: Vec<String> = Vec::new();
    for (_, r) in &rows {
        for (t, _, _) in r.iter().flat_map(|r| r.ntk.iter()) {
            if !terms.contains(t) {
                terms.push(t.clone());
            }
        }
    }
    s.push_str(&format!("{:<16}", "job_id"));
    for a in &axes {
        s.push_str(&format!(" {a:>10}"));
    }
    s.push_str(&format!(" {:>9} {:>10}", "status", "rel_l2"));
    for t in &terms {
        s.push_str(&format!(" {:>22}", format!("|K_{t}|_F init->final")));
    }
    s.push('\n');
    for (i, r) in rows {
        let j = &sweep.jobs[i];
        s.push_str(&format!("{:<16}", j.id));
        for (_, v) in &j.axis_values() {
            s.push_str(&format!(" {v:>10}"));
        }
        match r {
            None => s.push_str(&format!(" {:>9}", "pending")),
            Some(r) => {
                s.push_str(&format!(" {:>9} {:>10}", r.status, r.rel_l2.map(|v| format!("{v:.3e}")).unwrap_or("-".into())));
                for t in &terms {
                    let cell = r.ntk.iter().find(|x| &x.0 == t).map(|(_, a, b)| format!("{a:.2e}->{b:.2e}")).unwrap_or("-".into());
                    s.push_str(&format!(" {cell:>22}"));
                }
                if !r.message.is_empty() {
                    s.push_str(&format!("  ({})", r.message));
                }
            }
        }
        s.push('\n');
    }
    s
}

/// Counts of `ntksweep status`.
#[derive(Debug, Default)]
pub struct StatusCounts {
    pub by_status: BTreeMap<String, usize>,
    pub pending: usize,
    pub unreadable: Vec<String>,
    pub planned: Option<usize>,
}

impl fmt::Display for StatusCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let get = |k: &str| self.by_status.get(k).copied().unwrap_or(0);
        write!(f, "done {}  failed {}  diverged {}  pending {}", get("done"), get("failed"), get("diverged"), self.pending)?;
        if let Some(p) = self.planned {
            write!(f, "  (of {p} planned)")?;
        } else {
            write!(f, "  (no plan.tsv: pending unknown)")?;
        }
        if !self.unreadable.is_empty() {
            write!(f, "\nunreadable job files: {}", self.unreadable.join(", "))?;
        }
        Ok(())
    }
}

/// Count job states in a results folder; pending = planned ids (plan.tsv) without a file.
pub fn status_counts(dir: &Path) -> Result<StatusCounts, output::OutputError> {
    let jobs = output::jobs_dir(dir);
    let mut c = StatusCounts::default();
    let mut present = std::collections::BTreeSet::new();
    if let Ok(rd) = std::fs::read_dir(&jobs) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with('.') || !name.ends_with(".h5") {
                continue;
            }
            present.insert(name.trim_end_matches(".h5").to_string());
            match output::read_status(&e.path()) {
                Ok(s) => *c.by_status.entry(s.name().to_string()).or_default() += 1,
                Err(_) => c.unreadable.push(name),
            }
        }
    } else if !dir.exists() {
        return Err(output::OutputError::Read { path: dir.display().to_string(), message: "no such results folder".into() });
    }
    if let Some(ids) = crate::run::read_plan_ids(dir) {
        c.planned = Some(ids.len());
        c.pending = ids.iter().filter(|id| !present.contains(*id)).count();
    }
    Ok(c)
}

/// One line per job file: id, status, device, rank, host, wall seconds, message.
pub fn job_list(dir: &Path) -> String {
    let mut files: Vec<_> = std::fs::read_dir(output::jobs_dir(dir))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p: &std::path::PathBuf| p.extension().is_some_and(|e| e == "h5") && !p.file_name().unwrap().to_string_lossy().starts_with('.'));
    files.sort();
    let mut s = format!("{:<16} {:<8} {:<8} {:>4} {:<12} {:>8}  message\n", "job_id", "status", "device", "rank", "host", "wall_s");
    for p in files {
        let row = (|| -> hdf5::Result<String> {
            let f = hdf5::File::open(&p)?;
            let a = |n: &str| read_str_attr(&f, n).map_err(hdf5::Error::from);
            let rank: i64 = f.attr("rank")?.read_scalar()?;
            let wall: f64 = f.attr("wall_seconds")?.read_scalar()?;
            Ok(format!("{:<16} {:<8} {:<8} {:>4} {:<12} {:>8.2}  {}\n", a("job_id")?, a("status")?, a("device")?, rank, a("host")?, wall, a("message")?))
        })();
        match row {
            Ok(r) => s.push_str(&r),
            Err(e) => s.push_str(&format!("{}: unreadable ({e})\n", p.display())),
        }
    }
    s
}

/// The checkpointed batches (with their step) and the claims of a results folder, for
/// `ntksweep status`; empty when there are none. `claim_timeout`: when a claim counts as stale.
pub fn work_in_progress(dir: &Path, claim_timeout: std::time::Duration) -> String {
    use crate::checkpoint::{self, unix_now};
    let mut s = String::new();
    let (saved, unreadable) = checkpoint::list(dir);
    let (_, claims) = crate::claim::live(dir, claim_timeout);
    if !saved.is_empty() || !unreadable.is_empty() {
        s.push_str(&format!("checkpointed batches: {} (in {})\n", saved.len(), checkpoint::dir(dir).display()));
        for (name, info) in &saved {
            let holder = claims.iter().find(|(job, _, _)| info.jobs.contains(job));
            let claimed = match holder {
                Some((_, Some(c), false)) => format!("training now on host {} pid {} rank {}", c.host, c.pid, c.rank),
                Some((_, _, true)) => "claim stale: the next run takes it over".to_string(),
                _ => "waiting for a run".to_string(),
            };
            s.push_str(&format!(
                "  {name}  {} job(s)  step {}/{} ({})  saved {:.0}s ago by host {} pid {} rank {}; {claimed}\n",
                info.jobs.len(),
                info.step,
                info.total,
                info.phase,
                unix_now() - info.written,
                info.host,
                info.pid,
                info.rank
            ));
        }
        for (p, e) in &unreadable {
            s.push_str(&format!("  {}: unreadable ({e})\n", p.display()));
        }
    }
    if !claims.is_empty() {
        let live = claims.iter().filter(|c| !c.2).count();
        s.push_str(&format!("claimed jobs: {live} live, {} stale (in {})\n", claims.len() - live, crate::claim::dir(dir).display()));
    }
    s
}

