//! Which jobs train together, and in which order.
//!
//! Jobs whose configurations differ only in per-member values (seed, eps, an expression
//! problem's constants, learning-rate schedule, fixed weights, eps rescaling, normalisation,
//! initialisation) share a batch key and
//! can train as one batched network. Batches are formed from the job list alone, never from the
//! number of ranks, so a job's batch (and therefore its numbers) is the same on 1, 2 or 3
//! ranks. Batches are handed out longest first so ranks finish together.

use std::collections::HashMap;

use serde_json::Value;

use crate::budget;
use crate::config::canonical;
use crate::config::JobSpec;

/// Configuration paths that may differ between members of one batch (per-member values).
const MEMBER_FIELDS: &[&[&str]] = &[
    &["seed"],
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
];

/// Remove the per-member values from top-level field `key` (false: drop the whole field).
fn drop_member_fields(key: &str, v: &mut Value) -> bool {
    // An expression problem's constants are per member ([E, 1] columns); its members must
    // only agree on which constants there are.
    if let Some(c) = v.pointer_mut("/constants").filter(|_| key == "problem") {
        if let Some(m) = c.as_object() {
            *c = m.keys().cloned().collect::<Vec<_>>().into();
        }
    }
    for path in MEMBER_FIELDS.iter().filter(|p| p[0] == key) {
        if path.len() == 1 {
            return false;
        }
        remove_path(v, &path[1..]);
    }
    true
}

fn remove_path(node: &mut Value, path: &[&str]) {
    match path {
        [] => {}
        [last] => {
            if let Some(m) = node.as_object_mut() {
                m.remove(*last);
            }
        }
        [first, rest @ ..] => {
            if let Some(n) = node.get_mut(*first) {
                remove_path(n, rest);
            }
        }
    }
}

/// The key's extra field: the step count, which members must share (the per-member step
/// values above may differ only when their sum agrees).
fn total_steps(spec: &JobSpec) -> [(&'static str, String); 1] {
    [("total_steps", spec.config.training.total_steps().to_string())]
}

/// Configuration with the per-member fields removed: jobs with equal keys can share a batch.
pub fn batch_key(spec: &JobSpec) -> String {
    canonical::slow(&spec.config, Some(drop_member_fields), &total_steps(spec))
}

/// Whether an axis at `path` sets only values that members of one batch may differ in (a
/// per-member field, not the step counts, whose total the key keeps).
fn is_member_axis(path: &[String]) -> bool {
    let steps = |p: &[&str]| p == ["training", "steps"] || p == ["training", "stages"];
    MEMBER_FIELDS.iter().any(|m| !steps(m) && path.len() >= m.len() && path.iter().zip(m.iter()).all(|(a, b)| a == b))
}

/// The pending jobs grouped by [`batch_key`], in order of first appearance. A job's
/// configuration is its sweep's base with its axis values, so its key depends only on the
/// values of the axes that are not per member: the key is computed once per combination of
/// those (20 times for a million jobs of 4 eps x 5 widths x 50,000 seeds, not a million times).
/// `jobs` are one sweep's jobs as parsed.
fn group_by_key(jobs: &[JobSpec], pending: &[usize]) -> Vec<Vec<usize>> {
    let mut by_key: HashMap<String, usize> = HashMap::new();
    let mut by_picks: HashMap<usize, usize> = HashMap::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mask = jobs.first().map(|j| j.axis_mask(|p| !is_member_axis(p))).unwrap_or_default();
    for &i in pending {
        let j = &jobs[i];
        let g = *by_picks.entry(j.index_keeping(&mask)).or_insert_with(|| {
            let n = by_key.len();
            *by_key.entry(batch_key(j)).or_insert(n)
        });
        if g == groups.len() {
            groups.push(Vec::new());
        }
        groups[g].push(i);
    }
    groups
}

/// Configuration paths that neither estimate ([`JobSpec::cost_gflop`],
/// [`budget::member_bytes`]) reads: an axis under one of them cannot change either.
const UNREAD_BY_ESTIMATES: &[&[&str]] = &[
    &["seed"],
    &["loss"],
    &["training", "lr"],
    &["training", "decay_rate"],
    &["training", "decay_every"],
    &["training", "staircase"],
    &["model", "init"],
    &["model", "normalization"],
];

/// Cost and peak-memory estimates of one job.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub gflop: f64,
    pub bytes: f64,
}

impl Estimate {
    pub fn of(spec: &JobSpec) -> Self {
        Estimate { gflop: spec.cost_gflop(), bytes: budget::member_bytes(spec) }
    }
}

/// The estimates of a sweep's jobs, computed once per combination of the values of the axes
/// they can depend on: `plan` prints both for every job and the batches sum costs and take
/// the largest memory, and a million jobs of 20 shapes need 20 evaluations of the formulas.
/// `jobs`: one sweep's jobs as parsed.
pub struct Estimates<'a> {
    jobs: &'a [JobSpec],
    mask: Vec<bool>,
    memo: HashMap<usize, Estimate>,
}

impl<'a> Estimates<'a> {
    pub fn new(jobs: &'a [JobSpec]) -> Self {
        let unread = |p: &[String]| UNREAD_BY_ESTIMATES.iter().any(|u| p.len() >= u.len() && p.iter().zip(u.iter()).all(|(a, b)| a == b));
        let mask = jobs.first().map(|j| j.axis_mask(|p| !unread(p))).unwrap_or_default();
        Estimates { jobs, mask, memo: HashMap::new() }
    }

    /// The estimates of `jobs[i]`.
    pub fn get(&mut self, i: usize) -> Estimate {
        let j = &self.jobs[i];
        *self.memo.entry(j.index_keeping(&self.mask)).or_insert_with(|| Estimate::of(j))
    }
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
    let mut batches = Vec::new();
    let mut estimates = Estimates::new(jobs);
    for members in group_by_key(jobs, pending) {
        let per_member = members.iter().map(|&i| estimates.get(i).bytes).fold(0.0, f64::max);
        let cap = budget::fit(budget, per_member, cap);
        let k = members.len().div_ceil(cap.max(1));
        let mut rest = members.as_slice();
        for b in 0..k {
            let size = members.len() / k + usize::from(b < members.len() % k);
            let (chunk, tail) = rest.split_at(size);
            rest = tail;
            let cost = chunk.iter().map(|&i| estimates.get(i).gflop).sum();
            batches.push(Batch { jobs: chunk.to_vec(), cost });
        }
    }
    // Longest first; ties by first job index for determinism.
    batches.sort_by(|a, b| b.cost.partial_cmp(&a.cost).unwrap_or(std::cmp::Ordering::Equal).then(a.jobs[0].cmp(&b.jobs[0])));
    batches
}

/// [`plan_batches`], except that every batch of `saved` (a checkpointed batch: job indices in
/// batch order) whose jobs are all pending is kept exactly as it was, so that it resumes from
/// its checkpoint with the same members in the same order (a member's numbers depend on its
/// batch at the level of round-off). The other pending jobs are planned as usual; all batches
/// are then ordered longest first.
pub fn plan_batches_resuming(jobs: &[JobSpec], pending: &[usize], cap: usize, budget: Option<f64>, saved: &[Vec<usize>]) -> Vec<Batch> {
    let mut is_pending = vec![false; jobs.len()];
    for &i in pending {
        is_pending[i] = true;
    }
    let mut batches = Vec::new();
    for b in saved {
        if !b.is_empty() && b.iter().all(|&i| is_pending[i]) {
            for &i in b {
                is_pending[i] = false;
            }
            batches.push(Batch { jobs: b.clone(), cost: b.iter().map(|&i| jobs[i].cost_gflop()).sum() });
        }
    }
    let rest: Vec<usize> = pending.iter().copied().filter(|&i| is_pending[i]).collect();
    batches.extend(plan_batches(jobs, &rest, cap, budget));
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

    /// The grouping of `plan_batches` (keys looked up by the values of the axes that are not
    /// per member) is the grouping of `batch_key`, on a sweep where per-member and structural
    /// axes alternate and the step counts differ.
    #[test]
    fn memoised_keys_group_as_batch_key_does() {
        let text = "problem: {kind: darcy1d, eps: 0.5}\ntraining: {steps: 5}\nsweep:\n  width: [8, 16]\n  lr: [0.01, 0.001]\n  eps: [0.5, 0.25]\n  steps: [5, 6]\n  seed: [0, 1]\n";
        let s = Sweep::parse(text, "s.yaml", "s", &[]).unwrap();
        let pending: Vec<usize> = (0..s.jobs.len()).collect();
        let b = plan_batches(&s.jobs, &pending, 64, None);
        for x in &b {
            let k = batch_key(&s.jobs[x.jobs[0]]);
            assert!(x.jobs.iter().all(|&i| batch_key(&s.jobs[i]) == k));
        }
        // 2 widths x 2 step counts: 4 groups of 8 (lr, eps and seed are per member).
        assert_eq!(b.len(), 4);
        assert!(is_member_axis(&["training".into(), "lr".into()]) && !is_member_axis(&["training".into(), "steps".into()]) && !is_member_axis(&["model".into(), "width".into()]));
    }

    /// The memoised estimates equal each job's own on a sweep whose axes include every path
    /// they skip (seed, lr and its decay, init, normalization, loss weights) beside ones they
    /// read (width, steps, eps, the NTK points, fourier features), in an order where skipped
    /// and read axes alternate.
    #[test]
    fn memoised_estimates_equal_each_jobs_own() {
        let text = "problem: {kind: darcy1d, eps: 0.5}\ntraining: {steps: 5}\nsweep:\n  seed: [0, 1]\n  width: [8, 16]\n  lr: [0.01, 0.001]\n  steps: [5, 7]\n  \
                    training.decay_rate: [0.9, 0.5]\n  ntk.points: [{residual: 10}, {residual: 20}]\n  init: [xavier_normal, normal]\n  eps: [0.5, 0.25]\n  \
                    loss.weights: [{boundary: 1.0}, {boundary: 10.0}]\n  normalization: [none, zscore]\n  fourier: [null, {features: 4, sigma: 1}]\n";
        let s = Sweep::parse(text, "s.yaml", "s", &[]).unwrap();
        let mut e = Estimates::new(&s.jobs);
        let mut distinct = std::collections::HashSet::new();
        for (i, j) in s.jobs.iter().enumerate() {
            let want = Estimate::of(j);
            assert_eq!(e.get(i), want, "job {i}: {:?}", j.axis_values());
            distinct.insert(format!("{want:?}"));
        }
        assert!(distinct.len() >= 16, "the read axes change the estimates: {}", distinct.len());
        assert!(e.memo.len() < s.jobs.len() / 16, "memoised: {} evaluations for {} jobs", e.memo.len(), s.jobs.len());
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

    /// A checkpointed batch keeps its members and order whatever the cap and the other
    /// pending jobs; one with a job no longer pending is planned afresh.
    #[test]
    fn checkpointed_batches_are_kept_as_they_were() {
        let text = "problem: {kind: darcy1d, eps: 0.5}\ntraining: {steps: 5}\nsweep:\n  seed: [0, 1, 2, 3, 4, 5, 6]\n";
        let s = Sweep::parse(text, "s.yaml", "s", &[]).unwrap();
        let pending: Vec<usize> = (0..7).collect();
        let saved = vec![vec![5, 1, 3], vec![0, 6]];
        let b = plan_batches_resuming(&s.jobs, &pending, 2, None, &saved);
        assert!(b.iter().any(|x| x.jobs == vec![5, 1, 3]), "{b:?}");
        assert!(b.iter().any(|x| x.jobs == vec![0, 6]), "{b:?}");
        let mut all: Vec<usize> = b.iter().flat_map(|x| x.jobs.clone()).collect();
        all.sort();
        assert_eq!(all, pending, "every pending job exactly once");
        // Job 6 is done: the second checkpoint is not a batch any more.
        let b = plan_batches_resuming(&s.jobs, &[0, 1, 2, 3, 4, 5], 8, None, &saved);
        assert!(b.iter().any(|x| x.jobs == vec![5, 1, 3]) && !b.iter().any(|x| x.jobs.contains(&6)), "{b:?}");
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
