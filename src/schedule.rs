//! Which jobs train together, and in which order.
//!
//! Jobs whose configurations differ only in per-member values (seed, eps, an expression
//! problem's constants, learning-rate schedule, fixed weights, eps rescaling, normalisation,
//! initialisation) share a batch key and
//! can train as one batched network. Batches are formed from the job list alone, never from the
//! number of ranks, so a job's batch (and therefore its numbers) is the same on 1, 2 or 3
//! ranks. Batches are handed out longest first so ranks finish together.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::budget;
use crate::config::JobSpec;

/// Configuration with the per-member fields removed: jobs with equal keys can share a batch.
pub fn batch_key(spec: &JobSpec) -> String {
    let mut v = serde_json::to_value(&spec.config).expect("config serialises");
    let remove = |v: &mut Value, path: &[&str]| {
        let mut node = v;
        for p in &path[..path.len() - 1] {
            match node.get_mut(*p) {
                Some(n) => node = n,
                None => return,
            }
        }
        if let Some(m) = node.as_object_mut() {
            m.remove(path[path.len() - 1]);
        }
    };
    // An expression problem's constants are per member ([E, 1] columns); its members must
    // only agree on which constants there are.
    if let Some(c) = v.pointer_mut("/problem/constants") {
        if let Some(m) = c.as_object() {
            *c = m.keys().cloned().collect::<Vec<_>>().into();
        }
    }
    for path in [
        &["seed"][..],
        &["problem", "eps"],
        &["loss", "weights"],
        &["loss", "eps_rescale"],
        &["model", "normalization"],
        &["model", "init"],
        &["training", "lr"],
        &["training", "decay_rate"],
        &["training", "decay_every"],
        &["training", "staircase"],
        &["training", "stages"],
        &["training", "steps"],
    ] {
        remove(&mut v, path);
    }
    if let Some(m) = v.as_object_mut() {
        m.insert("total_steps".into(), spec.config.training.total_steps().into());
    }
    serde_json::to_string(&v).expect("json")
}

/// A group of jobs trained together (indices into the sweep's job list).
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub jobs: Vec<usize>,
    pub cost: f64,
}

/// Group `pending` jobs (indices into `jobs`) into batches of at most `cap` members, and
/// no more than fit in `budget` bytes ([`crate::budget`]), longest first. A group of n
/// batchable jobs becomes ceil(n / cap) batches whose sizes differ by at most one (9 jobs
/// under cap 8: 5 + 4, not 8 + 1, so that two ranks share the work). Deterministic: depends
/// only on the jobs, `cap` and `budget`.
pub fn plan_batches(jobs: &[JobSpec], pending: &[usize], cap: usize, budget: Option<f64>) -> Vec<Batch> {
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for &i in pending {
        groups.entry(batch_key(&jobs[i])).or_default().push(i);
    }
    let mut batches = Vec::new();
    for (_, members) in groups {
        let per_member = members.iter().map(|&i| budget::member_bytes(&jobs[i])).fold(0.0, f64::max);
        let cap = budget::fit(budget, per_member, cap);
        let k = members.len().div_ceil(cap.max(1));
        let mut rest = members.as_slice();
        for b in 0..k {
            let size = members.len() / k + usize::from(b < members.len() % k);
            let (chunk, tail) = rest.split_at(size);
            rest = tail;
            let cost = chunk.iter().map(|&i| jobs[i].cost_gflop()).sum();
            batches.push(Batch { jobs: chunk.to_vec(), cost });
        }
    }
    // Longest first; ties by first job index for determinism.
    batches.sort_by(|a, b| b.cost.partial_cmp(&a.cost).unwrap_or(std::cmp::Ordering::Equal).then(a.jobs[0].cmp(&b.jobs[0])));
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Sweep;

    #[test]
    fn seeds_and_eps_batch_together_widths_do_not() {
        let text = "problem: {kind: darcy1d, eps: 0.5}\ntraining: {steps: 5}\nsweep:\n  width: [8, 16]\n  eps: [0.5, 0.25]\n  seed: [0, 1, 2]\n";
        let s = Sweep::parse(text, "s.yaml", "s", &[]).unwrap();
        let pending: Vec<usize> = (0..s.jobs.len()).collect();
        let b = plan_batches(&s.jobs, &pending, 4, None);
        // 2 widths x 6 jobs each, cap 4 -> 2 + 2 batches; width 16 (costlier) first.
        assert_eq!(b.len(), 4);
        assert!(b[0].jobs.iter().all(|&i| s.jobs[i].config.model.width == 16));
        let all: Vec<usize> = { let mut v: Vec<usize> = b.iter().flat_map(|x| x.jobs.clone()).collect(); v.sort(); v };
        assert_eq!(all, pending);
        assert_eq!(plan_batches(&s.jobs, &pending, 4, None), b, "deterministic");
    }

    #[test]
    fn a_group_splits_into_batches_of_nearly_equal_size() {
        for (n, cap, want) in [(9usize, 8usize, vec![5usize, 4]), (80, 8, vec![8; 10]), (20, 8, vec![7, 7, 6]), (4, 8, vec![4]), (3, 1, vec![1, 1, 1])] {
            let seeds: Vec<String> = (0..n).map(|s| s.to_string()).collect();
            let text = format!("problem: {{kind: darcy1d, eps: 0.5}}\ntraining: {{steps: 5}}\nsweep:\n  seed: [{}]\n", seeds.join(", "));
            let s = Sweep::parse(&text, "s.yaml", "s", &[]).unwrap();
            let pending: Vec<usize> = (0..n).collect();
            let b = plan_batches(&s.jobs, &pending, cap, None);
            let mut sizes: Vec<usize> = b.iter().map(|x| x.jobs.len()).collect();
            sizes.sort_by(|a, b| b.cmp(a));
            assert_eq!(sizes, want, "{n} jobs, cap {cap}");
            let mut all: Vec<usize> = b.iter().flat_map(|x| x.jobs.clone()).collect();
            all.sort();
            assert_eq!(all, pending);
        }
    }

    #[test]
    fn a_small_memory_budget_makes_smaller_batches() {
        let text = "problem: {kind: darcy1d, eps: 0.5}\ntraining: {steps: 5}\nsweep:\n  seed: [0, 1, 2, 3, 4, 5]\n";
        let s = Sweep::parse(text, "s.yaml", "s", &[]).unwrap();
        let pending: Vec<usize> = (0..s.jobs.len()).collect();
        let per = budget::member_bytes(&s.jobs[0]);
        assert_eq!(plan_batches(&s.jobs, &pending, 64, Some(1e15)).len(), 1, "memory does not bind");
        let b = plan_batches(&s.jobs, &pending, 64, Some(2.5 * per));
        assert_eq!(b.iter().map(|x| x.jobs.len()).collect::<Vec<_>>(), vec![2, 2, 2]);
        assert_eq!(plan_batches(&s.jobs, &pending, 64, Some(0.1 * per)).len(), 6, "one member when nothing fits");
    }
}
