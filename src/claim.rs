//! Claims: how any number of processes on one results folder divide the work.
//!
//! Separate `ntksweep run` commands, the tasks of a Slurm job array and several `mpirun`
//! groups may all run on the same results folder (on a filesystem every node mounts). Before
//! a process trains a batch it claims each of the batch's jobs by creating
//! `DIR/claims/<job_id>` with `O_EXCL` (exactly one creator succeeds, also on NFS v3+); a
//! process that cannot claim every job of a batch gives the batch up and moves on. A claim
//! file holds the owner's host, pid, rank, start time, batch and a heartbeat that a thread
//! refreshes while the batch trains ([`Heartbeat`]).
//!
//! A claim is *stale*, and is taken over, when its process is gone (same host, pid not alive)
//! or its heartbeat is older than the claim timeout (`--claim-timeout`; another host's process
//! cannot be asked, so silence is the sign). The batch then resumes from its checkpoint. A
//! takeover is serialised by a second `O_EXCL` file (`<claim>.takeover`), so two processes
//! that find the same stale claim do not both take it. Heartbeats compare clocks of different
//! nodes: they must agree to well within the timeout (NTP does that).
//!
//! A process releases its claims when the batch's job files are written, and also when it is
//! stopped by a signal (the checkpoint then lets the next process continue at once).

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use crate::checkpoint::unix_now;

/// Default of `--claim-timeout`, in minutes.
pub const DEFAULT_TIMEOUT_MINUTES: f64 = 10.0;

/// A takeover lock older than this belongs to a process that died mid-takeover.
const TAKEOVER_LOCK_STALE_SECONDS: f64 = 60.0;

/// Who holds a claim.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimInfo {
    pub host: String,
    pub pid: u32,
    pub rank: i32,
    /// Unix time the claim was made.
    pub started: f64,
    /// Unix time of the last heartbeat.
    pub heartbeat: f64,
    /// Checkpoint name of the batch ([`crate::checkpoint::batch_name`]).
    pub batch: String,
}

impl ClaimInfo {
    fn text(&self) -> String {
        format!(
            "host={}\npid={}\nrank={}\nstarted={:.3}\nheartbeat={:.3}\nbatch={}\n",
            self.host, self.pid, self.rank, self.started, self.heartbeat, self.batch
        )
    }

    fn parse(text: &str) -> Option<ClaimInfo> {
        let get = |k: &str| text.lines().find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')));
        Some(ClaimInfo {
            host: get("host")?.to_string(),
            pid: get("pid")?.parse().ok()?,
            rank: get("rank")?.parse().ok()?,
            started: get("started")?.parse().ok()?,
            heartbeat: get("heartbeat")?.parse().ok()?,
            batch: get("batch")?.to_string(),
        })
    }

    /// The same claim (owner and start), whatever its heartbeat.
    fn same_owner(&self, other: &ClaimInfo) -> bool {
        // `started` goes through the file with millisecond precision.
        self.host == other.host && self.pid == other.pid && (self.started - other.started).abs() < 1e-3
    }

    /// Whether the owner is gone: same host and pid not alive, or a heartbeat older than
    /// `timeout`.
    pub fn is_stale(&self, timeout: Duration) -> bool {
        (self.host == this_host() && !pid_alive(self.pid)) || unix_now() - self.heartbeat > timeout.as_secs_f64()
    }
}

/// Why a batch could not be claimed.
#[derive(Debug, Clone, PartialEq)]
pub enum Contested {
    /// A live process holds this job.
    HeldBy { job: String, owner: ClaimInfo },
    /// The claim folder or file could not be created or read.
    Io(String),
}

pub fn dir(out: &Path) -> PathBuf {
    out.join("claims")
}

fn claim_path(out: &Path, job: &str) -> PathBuf {
    dir(out).join(job)
}

pub fn this_host() -> String {
    gethostname::gethostname().to_string_lossy().to_string()
}

fn pid_alive(pid: u32) -> bool {
    // kill(pid, 0) fails with ESRCH when no such process exists.
    let r = unsafe { libc::kill(pid as i32, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

fn read(path: &Path) -> Option<ClaimInfo> {
    ClaimInfo::parse(&std::fs::read_to_string(path).ok()?)
}

/// Whether the file was last modified longer than `timeout` ago. A claim file being written
/// (created empty, then filled) reads as unparsable: young ones are treated as live, old ones
/// as stale; a takeover lock this old belongs to a process that died mid-takeover.
fn older_than(path: &Path, timeout: Duration) -> bool {
    let age = path.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
    age.is_some_and(|a| a > timeout)
}

/// Write `info` over `path` atomically (temporary name, rename).
fn replace(path: &Path, info: &ClaimInfo) -> std::io::Result<()> {
    let tmp = path.with_file_name(format!(".{}.tmp-{}-{}", path.file_name().unwrap_or_default().to_string_lossy(), crate::host::host_tag(), std::process::id()));
    std::fs::write(&tmp, info.text())?;
    std::fs::rename(&tmp, path)
}

/// Create the claim with O_EXCL; false when it exists.
fn create(path: &Path, info: &ClaimInfo) -> std::io::Result<bool> {
    match std::fs::OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(mut f) => {
            f.write_all(info.text().as_bytes())?;
            f.sync_all()?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Take over the stale claim at `path` (last seen as `seen`, None when unparsable) under the
/// takeover lock. True when it is ours now.
fn take_over(path: &Path, seen: Option<&ClaimInfo>, mine: &ClaimInfo, timeout: Duration) -> std::io::Result<bool> {
    let lock = path.with_file_name(format!("{}.takeover", path.file_name().unwrap_or_default().to_string_lossy()));
    let lock_info = ClaimInfo { batch: "takeover".into(), ..mine.clone() };
    if !create(&lock, &lock_info)? {
        if older_than(&lock, Duration::from_secs_f64(TAKEOVER_LOCK_STALE_SECONDS)) {
            let _ = std::fs::remove_file(&lock);
        }
        return Ok(false);
    }
    // Holding the lock: is it still the stale claim we saw?
    let now = read(path);
    let still_stale = match (now.as_ref(), seen) {
        (Some(n), Some(s)) => n.same_owner(s) && n.is_stale(timeout),
        (None, None) => path.exists() && older_than(path, timeout),
        (None, Some(_)) => !path.exists(),
        (Some(_), None) => false,
    };
    let taken = if still_stale { replace(path, mine).map(|_| true) } else { Ok(false) };
    let _ = std::fs::remove_file(&lock);
    taken
}

/// The claims a process holds for one batch.
pub struct Claim {
    out: PathBuf,
    pub jobs: Vec<String>,
    pub info: ClaimInfo,
    /// Jobs whose previous owner was gone (the claim was taken over), with that owner.
    pub taken_over: Vec<(String, ClaimInfo)>,
}

/// Claim every job of a batch, in order. On the first job held by a live process, the jobs
/// claimed so far are released again and the owner is returned.
pub fn claim(out: &Path, jobs: &[&str], batch: &str, rank: i32, timeout: Duration) -> Result<Claim, Contested> {
    let io = |e: std::io::Error| Contested::Io(format!("{}: {e}", dir(out).display()));
    std::fs::create_dir_all(dir(out)).map_err(io)?;
    let now = unix_now();
    let info = ClaimInfo { host: this_host(), pid: std::process::id(), rank, started: now, heartbeat: now, batch: batch.to_string() };
    let mut held = Claim { out: out.to_path_buf(), jobs: Vec::new(), info, taken_over: Vec::new() };
    for &job in jobs {
        let path = claim_path(out, job);
        let got = match create(&path, &held.info) {
            Ok(true) => Ok(()),
            Ok(false) => {
                let seen = read(&path);
                let stale = match &seen {
                    Some(s) => s.is_stale(timeout),
                    None => older_than(&path, timeout),
                };
                if !stale {
                    Err(Contested::HeldBy { job: job.to_string(), owner: seen.unwrap_or_else(|| ClaimInfo { host: "?".into(), pid: 0, rank: -1, started: 0.0, heartbeat: 0.0, batch: "?".into() }) })
                } else {
                    match take_over(&path, seen.as_ref(), &held.info, timeout) {
                        Ok(true) => {
                            if let Some(s) = seen {
                                held.taken_over.push((job.to_string(), s));
                            }
                            Ok(())
                        }
                        Ok(false) => Err(Contested::HeldBy { job: job.to_string(), owner: read(&path).unwrap_or_else(|| held.info.clone()) }),
                        Err(e) => Err(io(e)),
                    }
                }
            }
            Err(e) => Err(io(e)),
        };
        match got {
            Ok(()) => held.jobs.push(job.to_string()),
            Err(c) => {
                held.release();
                return Err(c);
            }
        }
    }
    Ok(held)
}

impl Claim {
    /// Whether each job's claim is still this process's (a claim can be taken over when the
    /// heartbeat stalls).
    pub fn still_ours(&self) -> Vec<bool> {
        self.jobs.iter().map(|j| read(&claim_path(&self.out, j)).is_some_and(|c| c.same_owner(&self.info))).collect()
    }

    /// Refresh the heartbeat of every job still ours.
    pub fn beat(&self) {
        let info = ClaimInfo { heartbeat: unix_now(), ..self.info.clone() };
        for (j, ours) in self.jobs.iter().zip(self.still_ours()) {
            if ours {
                let _ = replace(&claim_path(&self.out, j), &info);
            }
        }
    }

    /// Remove the claims still ours.
    pub fn release(&self) {
        for (j, ours) in self.jobs.iter().zip(self.still_ours()) {
            if ours {
                let _ = std::fs::remove_file(claim_path(&self.out, j));
            }
        }
    }

    /// Keep the heartbeat of these claims fresh from a thread (a step may take longer than
    /// the timeout: a large NTK snapshot, an L-BFGS line search) until the returned guard is
    /// dropped.
    pub fn heartbeat(&self, timeout: Duration) -> Heartbeat {
        let interval = (timeout / 4).clamp(Duration::from_millis(200), Duration::from_secs(60));
        let (tx, rx) = mpsc::channel::<()>();
        let me = Claim { out: self.out.clone(), jobs: self.jobs.clone(), info: self.info.clone(), taken_over: Vec::new() };
        let thread = std::thread::spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(interval) {
                me.beat();
            }
        });
        Heartbeat { tx: Some(tx), thread: Some(thread) }
    }
}

/// Stops the heartbeat thread when dropped.
pub struct Heartbeat {
    tx: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Job ids with a live claim (not stale), and every claim with its owner (for `status`).
pub fn live(out: &Path, timeout: Duration) -> (HashSet<String>, Vec<(String, Option<ClaimInfo>, bool)>) {
    let mut live = HashSet::new();
    let mut all = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir(out)) else { return (live, all) };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with('.') || name.ends_with(".takeover") {
            continue;
        }
        let info = read(&e.path());
        let stale = match &info {
            Some(c) => c.is_stale(timeout),
            None => older_than(&e.path(), timeout),
        };
        if !stale {
            live.insert(name.clone());
        }
        all.push((name, info, stale));
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    (live, all)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(600);

    fn write_claim(out: &Path, job: &str, info: &ClaimInfo) {
        std::fs::create_dir_all(dir(out)).unwrap();
        std::fs::write(claim_path(out, job), info.text()).unwrap();
    }

    fn other(pid: u32, host: &str, heartbeat: f64) -> ClaimInfo {
        ClaimInfo { host: host.into(), pid, rank: 0, started: 1.0, heartbeat, batch: "b".into() }
    }

    /// A dead pid on this host that no process can have: beyond the kernel's pid_max.
    const DEAD_PID: u32 = 4_194_304 + 17;

    #[test]
    fn one_claimant_wins_and_a_second_backs_off_releasing_what_it_took() {
        let tmp = tempfile::tempdir().unwrap();
        let a = claim(tmp.path(), &["j1", "j2"], "b1", 0, T).unwrap();
        assert_eq!(a.jobs, ["j1", "j2"]);
        assert!(a.taken_over.is_empty());
        // Another claimant (this process, a later start) wants j0, j2: j0 is taken, j2 is held,
        // so j0 is given back.
        match claim(tmp.path(), &["j0", "j2"], "b2", 1, T) {
            Err(Contested::HeldBy { job, owner }) => {
                assert_eq!(job, "j2");
                assert_eq!(owner.batch, "b1");
            }
            other => panic!("{:?}", other.map(|c| c.jobs)),
        }
        assert!(!claim_path(tmp.path(), "j0").exists(), "j0 released");
        assert_eq!(a.still_ours(), vec![true, true]);
        let (live_ids, _) = live(tmp.path(), T);
        assert_eq!(live_ids, HashSet::from(["j1".to_string(), "j2".to_string()]));
        a.release();
        assert!(live(tmp.path(), T).0.is_empty());
    }

    /// Stale: a dead process on this host (at once), or a silent heartbeat on another host
    /// (after the timeout); a live one elsewhere with a fresh heartbeat is respected.
    #[test]
    fn stale_claims_are_taken_over_and_live_ones_respected() {
        let tmp = tempfile::tempdir().unwrap();
        let now = unix_now();
        write_claim(tmp.path(), "dead", &other(DEAD_PID, &this_host(), now));
        write_claim(tmp.path(), "silent", &other(1, "elsewhere", now - 700.0));
        write_claim(tmp.path(), "busy", &other(1, "elsewhere", now - 5.0));
        let c = claim(tmp.path(), &["dead", "silent"], "b", 0, T).unwrap();
        assert_eq!(c.taken_over.iter().map(|(j, _)| j.as_str()).collect::<Vec<_>>(), ["dead", "silent"]);
        assert_eq!(c.still_ours(), vec![true, true]);
        assert!(matches!(claim(tmp.path(), &["busy"], "b", 0, T), Err(Contested::HeldBy { .. })));
        // With a shorter timeout the busy one is stale too.
        assert!(claim(tmp.path(), &["busy"], "b", 0, Duration::from_secs(1)).is_ok());
        // No takeover locks are left behind.
        assert!(std::fs::read_dir(dir(tmp.path())).unwrap().flatten().all(|e| !e.file_name().to_string_lossy().ends_with(".takeover")));
    }

    /// The heartbeat thread keeps a claim fresh; a claim taken over while we slept is not ours
    /// any more and is neither refreshed nor removed by us.
    #[test]
    fn heartbeat_refreshes_and_a_lost_claim_is_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let c = claim(tmp.path(), &["j"], "b", 0, T).unwrap();
        let t0 = read(&claim_path(tmp.path(), "j")).unwrap().heartbeat;
        {
            let _hb = c.heartbeat(Duration::from_millis(400));
            std::thread::sleep(Duration::from_millis(700));
        }
        let t1 = read(&claim_path(tmp.path(), "j")).unwrap().heartbeat;
        assert!(t1 > t0, "heartbeat {t0} -> {t1}");
        write_claim(tmp.path(), "j", &other(1, "elsewhere", unix_now()));
        assert_eq!(c.still_ours(), vec![false]);
        c.beat();
        c.release();
        assert_eq!(read(&claim_path(tmp.path(), "j")).unwrap().host, "elsewhere");
    }
}
