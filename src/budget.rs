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
///   eigensolver, and the graph of one chunk of points;
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
    let sizes = layer_sizes(d, c.model.width, c.model.depth);
    let ntk = if c.ntk.enabled || c.balancer.uses_ntk() {
        let bn = bytes(c.ntk.dtype);
        let n: f64 = terms.iter().map(|t| c.ntk_points(t) as f64).sum();
        let fan: f64 = sizes.windows(2).map(|w| (w[0] + w[1]) as f64).sum();
        let chunk = (c.ntk.chunk as f64).min(n);
        bn * (s * n * fan + 5.0 * n * n + 12.0 * s * chunk * width * depth)
    } else {
        0.0
    };
    let params: f64 = sizes.windows(2).map(|w| (w[0] * w[1] + w[1]) as f64).sum();
    train.max(eval).max(ntk) + 4.0 * params * b
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
/// half the available memory on the CPU (`MemAvailable`), 80% of the free memory on a CUDA
/// device. None when it cannot be read (then the cap alone decides).
pub fn device_budget(device: Device, sharing: usize) -> Option<f64> {
    let sharing = sharing.max(1) as f64;
    match device {
        Device::Cpu => mem_available().map(|m| 0.5 * m / sharing),
        Device::Cuda(i) => cuda_free(i).map(|m| 0.8 * m / sharing),
        _ => None,
    }
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
