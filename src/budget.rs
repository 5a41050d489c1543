//! How many jobs fit in one batch: a per-member memory estimate against the memory the device
//! has free, under the user's cap (`--max-batch`).
//!
//! The estimate is deliberately generous (it counts every activation autograd may keep, the
//! NTK factors and kernel with eigensolver workspace, and the evaluation grid): running out
//! of memory fails a whole batch, while a smaller batch only costs some speed.

use tch::Device;

use crate::model::config::Dtype;
use crate::config::JobSpec;
use crate::model::mlp::layer_sizes;
use crate::ntk::hutchinson::ACCUMULATOR_BYTES;
use crate::ntk::NtkMethod;

/// Bytes of one element.
fn bytes(d: Dtype) -> f64 {
    match d {
        Dtype::Float32 => 4.0,
        Dtype::Float64 => 8.0,
    }
}

/// Estimated peak bytes one member of a batch needs.
///
/// - training step: R = S P stream rows (S = 1 + 2d streams, P training points) through every
///   hidden layer, about 12 live [R, width] tensors per layer between forward and backward;
/// - evaluation: the value at every grid point (3 [M, width] tensors, no graph);
/// - NTK snapshot (when recorded or read by the balancer): the per-layer factors
///   S N sum_l (n_l + n_{l+1}), the [N, N] kernel with 4 more N^2 for its accumulation and
///   eigensolver, and the graph of one chunk of points; with `ntk.method: hutchinson` only the
///   chunk and the per-probe gradient accumulators (at most 512 MiB);
/// - parameters with gradient and Adam state: 4 P_params.
pub fn member_bytes(spec: &JobSpec) -> f64 {
    let c = &spec.config;
    let d = c.problem.input_dim();
    let s = (1 + 2 * d) as f64;
    let width = c.model.width as f64;
    let depth = c.model.depth as f64;
    let b = bytes(c.model.dtype);
    let terms = c.problem.term_names();
    let points: f64 = terms.iter().map(|t| c.term_points(t).points as f64).sum();
    let train = 12.0 * s * points * width * depth * b;
    let eval = 3.0 * (c.evaluation.points as f64).powi(d as i32) * width * b;
    let sizes = layer_sizes(c.model.inputs(d), c.model.width, c.model.depth);
    let params: f64 = sizes.windows(2).map(|w| (w[0] * w[1] + w[1]) as f64).sum();
    let ntk = if c.ntk.enabled || c.balancer.uses_ntk() {
        let bn = bytes(c.ntk.dtype);
        let n: f64 = terms.iter().map(|t| c.ntk_points(t) as f64).sum();
        let fan: f64 = sizes.windows(2).map(|w| (w[0] + w[1]) as f64).sum();
        let chunk = (c.ntk.chunk as f64).min(n);
        let graph = 12.0 * s * chunk * width * depth;
        match c.ntk.method {
            NtkMethod::Exact => bn * (s * n * fan + 5.0 * n * n + graph),
            // The tape of one chunk and the per-probe gradient accumulators; nothing ~ N^2.
            NtkMethod::Hutchinson => bn * graph + (bn * params * c.ntk.probes as f64).min(ACCUMULATOR_BYTES),
        }
    } else {
        0.0
    };
    train.max(eval).max(ntk) + 4.0 * params * b
}

/// Bytes as GB for messages: one decimal, or more digits where it matters (0.004 GB).
pub fn gigabytes(bytes: f64) -> String {
    let gb = bytes / 1e9;
    if gb >= 0.1 {
        format!("{gb:.1}")
    } else {
        format!("{gb:.3}")
    }
}

/// Most members that fit in `budget` bytes at `per_member` bytes each, within [1, cap].
pub fn fit(budget: Option<f64>, per_member: f64, cap: usize) -> usize {
    let cap = cap.max(1);
    match budget {
        Some(b) if per_member > 0.0 => ((b / per_member).floor() as usize).clamp(1, cap),
        _ => cap,
    }
}

/// Bytes a batch may use on `device` when `sharing` processes of this node use it at once:
/// half the available memory on the CPU (`MemAvailable`, or what the process's cgroup still
/// allows when that is less: a Slurm job's memory limit), 80% of the free memory on a CUDA
/// device; `NTKSWEEP_MEMORY_GB` replaces it (per process). None when it cannot be read (then
/// the cap alone decides).
pub fn device_budget(device: Device, sharing: usize) -> Option<f64> {
    if let Ok(Some(gb)) = env_budget() {
        return Some(gb * 1e9);
    }
    let sharing = sharing.max(1) as f64;
    match device {
        Device::Cpu => {
            let free = match (mem_available(), cgroup_free()) {
                (Some(m), Some(c)) => Some(m.min(c)),
                (m, c) => m.or(c),
            };
            free.map(|m| 0.5 * m / sharing)
        }
        Device::Cuda(i) => cuda_free(i).map(|m| 0.8 * m / sharing),
        _ => None,
    }
}

/// `NTKSWEEP_MEMORY_GB`: the memory budget per process in GB (for machines whose free memory
/// says little, and for tests). Unset or empty: None; not a positive number: an error.
pub fn env_budget() -> Result<Option<f64>, String> {
    match std::env::var("NTKSWEEP_MEMORY_GB").as_deref() {
        Err(_) | Ok("") => Ok(None),
        Ok(v) => match v.parse::<f64>() {
            Ok(gb) if gb > 0.0 && gb.is_finite() => Ok(Some(gb)),
            _ => Err(format!("NTKSWEEP_MEMORY_GB={v}: expected a positive number of GB")),
        },
    }
}

/// Memory the process's cgroup (and its parents) still allows: limit - usage, the smallest
/// over the hierarchy; cgroup v2 (`memory.max`, `memory.current`) or v1 (`memory.limit_in_bytes`,
/// `memory.usage_in_bytes`). None without a limit.
fn cgroup_free() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut best: Option<f64> = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let (roots, files): (&[&str], (&str, &str)) = if controllers.is_empty() {
            (&["/sys/fs/cgroup", "/sys/fs/cgroup/unified"], ("memory.max", "memory.current"))
        } else if controllers.split(',').any(|c| c == "memory") {
            (&["/sys/fs/cgroup/memory"], ("memory.limit_in_bytes", "memory.usage_in_bytes"))
        } else {
            continue;
        };
        for root in roots {
            let mut dir = std::path::PathBuf::from(format!("{root}{path}"));
            while dir.starts_with(root) {
                let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok().and_then(|v| v.trim().parse::<f64>().ok());
                // "max", or v1's "no limit" (about 2^63), means none.
                if let (Some(limit), Some(used)) = (read(files.0), read(files.1)) {
                    if limit < 1e18 {
                        let free = (limit - used).max(0.0);
                        best = Some(best.map_or(free, |b: f64| b.min(free)));
                    }
                }
                if !dir.pop() {
                    break;
                }
            }
        }
    }
    best
}

/// `MemAvailable` from /proc/meminfo, in bytes.
fn mem_available() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0)
}

/// Free memory of CUDA device `index`, from the CUDA runtime libtorch already loaded
/// (`cudaMemGetInfo`, looked up at run time so that nothing links against CUDA directly).
fn cuda_free(index: usize) -> Option<f64> {
    type MemGetInfo = unsafe extern "C" fn(*mut usize, *mut usize) -> i32;
    type SetDevice = unsafe extern "C" fn(i32) -> i32;
    // SAFETY: the symbols, when present, are the CUDA runtime's functions with these
    // signatures; they are only called with valid pointers.
    unsafe {
        let get = libc::dlsym(libc::RTLD_DEFAULT, c"cudaMemGetInfo".as_ptr());
        let set = libc::dlsym(libc::RTLD_DEFAULT, c"cudaSetDevice".as_ptr());
        if get.is_null() || set.is_null() {
            return None;
        }
        let set: SetDevice = std::mem::transmute(set);
        let get: MemGetInfo = std::mem::transmute(get);
        if set(index as i32) != 0 {
            return None;
        }
        let (mut free, mut total) = (0usize, 0usize);
        (get(&mut free, &mut total) == 0).then_some(free as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Sweep;

    fn spec(yaml: &str) -> JobSpec {
        Sweep::parse(yaml, "t.yaml", "t", &[]).unwrap().jobs.remove(0)
    }

    /// The wave network of the NTK benchmark: the estimate is dominated by the training step
    /// (1200 points x 5 streams x 3 layers of width 500, float32) and by the kernel when
    /// NTK points grow: checked against the formula by hand.
    #[test]
    fn estimate_follows_the_formula() {
        let s = spec("problem: {kind: wave1d}\nmodel: {width: 500, depth: 3}\ntraining: {steps: 1}\nevaluation: {points: 10}\n\
                      collocation: {residual: {points: 300}, initial: {points: 300}, initial_velocity: {points: 300}, boundary: {points: 300}}\n\
                      ntk: {enabled: false}\n");
        let params = (2 * 500 + 500) as f64 + 2.0 * (500 * 500 + 500) as f64 + (500 + 1) as f64;
        let want = 12.0 * 5.0 * 1200.0 * 500.0 * 3.0 * 4.0 + 4.0 * params * 4.0;
        assert!((member_bytes(&s) - want).abs() < 1.0, "{} vs {want}", member_bytes(&s));
        let with_ntk = spec("problem: {kind: wave1d}\nmodel: {width: 500, depth: 3}\ntraining: {steps: 1}\nevaluation: {points: 10}\n\
                             ntk: {enabled: true, dtype: float64, points: {residual: 3000, initial: 3000, initial_velocity: 3000, boundary: 3000}}\n");
        assert!(member_bytes(&with_ntk) > 8.0 * 5.0 * 12000.0 * 12000.0, "the kernel dominates at 12,000 NTK points");
    }

    /// Hutchinson snapshots hold no kernel: at 12,000 NTK points the estimate stays far below
    /// one [N, N] matrix, and probes beyond the accumulator cap cost no more memory.
    #[test]
    fn hutchinson_estimate_has_no_kernel() {
        let yaml = |ntk: &str| format!("problem: {{kind: wave1d}}\nmodel: {{width: 500, depth: 3}}\ntraining: {{steps: 1}}\nevaluation: {{points: 10}}\n\
                                        ntk: {{dtype: float64, points: {{residual: 3000, initial: 3000, initial_velocity: 3000, boundary: 3000}}{ntk}}}\n");
        let exact = member_bytes(&spec(&yaml("")));
        let h = member_bytes(&spec(&yaml(", method: hutchinson, probes: 16")));
        assert!(h < 8.0 * 12000.0 * 12000.0 && h < exact / 10.0, "hutchinson {h:e} vs exact {exact:e}");
        let many = member_bytes(&spec(&yaml(", method: hutchinson, probes: 100000")));
        assert!(many <= h + ACCUMULATOR_BYTES, "accumulators are capped: {many:e}");
    }

    #[test]
    fn fit_respects_budget_and_cap() {
        assert_eq!(fit(Some(10e9), 1e9, 64), 10);
        assert_eq!(fit(Some(10e9), 1e6, 64), 64);
        assert_eq!(fit(Some(1e3), 1e9, 64), 1, "at least one member");
        assert_eq!(fit(None, 1e9, 4), 4);
    }

    /// Without a GPU the CUDA query must fail softly (the cap alone then decides); with one,
    /// it must report some free memory.
    #[test]
    fn cuda_budget_is_none_without_a_gpu_and_positive_with_one() {
        match (tch::Cuda::is_available(), device_budget(Device::Cuda(0), 1)) {
            (false, b) => assert_eq!(b, None),
            (true, b) => assert!(b.is_some_and(|b| b > 1e6), "{b:?}"),
        }
    }

    #[test]
    fn cpu_budget_is_readable() {
        let b = device_budget(Device::Cpu, 2).expect("MemAvailable");
        assert!(b > 1e6);
    }
}
