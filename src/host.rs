//! Process-wide settings that must be made before libtorch does any work: how idle OpenMP
//! threads wait, and how the C allocator returns memory to the kernel.
//!
//! Both matter because a PINN training step is hundreds of small tensor operations: the
//! arithmetic is cheap, so the cost of waking threads and of page faults is not.
//!
//! Also this host's name as it appears in temporary, claim and checkpoint file names (a leaf
//! module, so that `output`, `checkpoint` and `claim` can all use it without an import circle).

/// How libgomp's idle threads should wait, decided at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitPolicy {
    /// libgomp's default: spin for a while, then sleep. Best on cores nobody else uses
    /// (measured on the wave step, 2 cores: 6.5 ms/step spinning vs 21 ms passive).
    Default,
    /// Sleep at once. Best when other processes share the cores: spinning threads then
    /// steal the time slices the working ones need (measured: 15 s spinning vs 6.3 s passive
    /// for the same 550 wave steps next to one busy process on 2 cores).
    Passive,
}

/// The policy for a node whose 1-minute load average is `load` on `cores` cores: passive once
/// other work already keeps half of the cores busy.
pub fn wait_policy(load: f64, cores: usize) -> WaitPolicy {
    if load >= 0.5 * cores as f64 {
        WaitPolicy::Passive
    } else {
        WaitPolicy::Default
    }
}

/// The 1-minute load average (Linux `/proc/loadavg`).
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

/// Keep freed memory in the process instead of returning it to the kernel after every
/// step: glibc otherwise serves each tensor of a few hundred kB with a fresh `mmap` and pays
/// page faults on every touch (about a third of a small wave step's time).
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; called before other threads exist.
    unsafe {
        // 32 MiB is glibc's largest mmap threshold; larger blocks are still mapped.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passive_only_when_other_work_keeps_half_the_cores_busy() {
        assert_eq!(wait_policy(0.2, 2), WaitPolicy::Default);
        assert_eq!(wait_policy(0.99, 2), WaitPolicy::Default);
        assert_eq!(wait_policy(1.0, 2), WaitPolicy::Passive);
        assert_eq!(wait_policy(3.0, 2), WaitPolicy::Passive);
        assert_eq!(wait_policy(7.9, 16), WaitPolicy::Default);
    }

    #[test]
    fn load_average_is_readable_here() {
        let l = load_average().expect("/proc/loadavg");
        assert!(l >= 0.0 && l.is_finite());
    }
}

/// This host's name, made safe for a file name.
pub fn host_tag() -> String {
    gethostname::gethostname().to_string_lossy().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
}
