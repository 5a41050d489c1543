//! Sweep files: a base configuration plus `sweep:` axes whose cartesian product is the list
//! of jobs.
//!
//! ```yaml
//! name: quickstart
//! problem: {kind: darcy1d, eps: 0.25}
//! model: {width: 50, depth: 3}
//! sweep:
//!   eps: [0.5, 0.25, 0.125]        # shorthand for problem.eps
//!   seed: {range: [0, 3]}          # 0, 1, 2
//!   training.lr: [1.0e-3, 1.0e-4]  # any scalar by dotted path
//! ```
//!
//! Axis shorthands: `eps` = `problem.eps` (`problem.constants.eps` for an expression
//! problem), `width` = `model.width`, `depth` = `model.depth`,
//! `normalization` = `model.normalization`, `init` = `model.init`, `steps`, `lr` (under
//! `training`), `activation`, `adaptive_activation`, `fourier` (under `model`), `ntk_method` =
//! `ntk.method`, `probes` = `ntk.probes`, `seed`, `balancer`. The last axis varies fastest.
//! A job id is the first 16 hex digits of the SHA-256 of the job's resolved configuration in
//! canonical JSON (sorted keys, defaults filled in), so it does not depend on how the sweep was
//! written, on the order of axes, or on which other jobs the sweep contains.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;
use std::sync::Arc;

use serde_yaml_ng::{Mapping, Value};
use sha2::{Digest, Sha256};

use super::canonical::{self, CanonicalWriter};
use super::error::{ConfigError, Origin, SweepError};
use super::job::JobConfig;
use super::location::LocationIndex;
use crate::validation::path_segments;

/// Top-level keys that are not part of a job's configuration.
const SWEEP_KEYS: &[&str] = &["name", "description", "sweep"];

/// Axis shorthand -> dotted path.
const ALIASES: &[(&str, &str)] = &[
    ("eps", "problem.eps"),
    ("width", "model.width"),
    ("depth", "model.depth"),
    ("normalization", "model.normalization"),
    ("init", "model.init"),
    ("activation", "model.activation"),
    ("adaptive_activation", "model.adaptive_activation"),
    ("fourier", "model.fourier"),
    ("exact_bc", "model.exact_bc"),
    ("gradient_enhanced", "loss.gradient_enhanced"),
    ("residual_sampling", "collocation.residual"),
    ("ntk_method", "ntk.method"),
    ("probes", "ntk.probes"),
    ("steps", "training.steps"),
    ("lr", "training.lr"),
];

/// One axis of the sweep.
#[derive(Debug, Clone)]
pub struct Axis {
    /// The key as written (e.g. `eps` or `training.lr`).
    pub key: String,
    /// Resolved path into the job configuration.
    pub path: Vec<String>,
    pub values: Vec<Value>,
    /// Set on the command line (`--set sweep.key=...`) rather than in the file.
    pub from_cli: Option<String>,
}

/// A job of the sweep: its id, resolved configuration and the axis values that made it.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// Position in the expanded sweep (0-based; the mixed-radix number of its axis values).
    pub index: usize,
    pub id: String,
    pub config: JobConfig,
    /// The sweep's axes as text, shared by all its jobs (a million jobs should not each hold
    /// their own copy of the axis values' text).
    axes: Arc<AxisText>,
}

/// Keys, configuration paths and value texts of a sweep's axes.
#[derive(Debug, Default)]
struct AxisText {
    axes: Vec<(String, Vec<String>)>,
    paths: Vec<Vec<String>>,
}

impl JobSpec {
    /// (axis key, value as YAML text) of this job, for display.
    pub fn axis_values(&self) -> Vec<(String, String)> {
        self.axis_texts().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// [`JobSpec::axis_values`] borrowed from the sweep (a table of a million jobs should not
    /// copy two strings per cell).
    pub fn axis_texts(&self) -> impl Iterator<Item = (&str, &str)> {
        self.axes.axes.iter().zip(self.axis_picks()).map(|((key, values), p)| (key.as_str(), values[p].as_str()))
    }

    /// Which axes of this job's sweep `keep(path)` selects, by configuration path.
    pub fn axis_mask(&self, keep: impl Fn(&[String]) -> bool) -> Vec<bool> {
        self.axes.paths.iter().map(|p| keep(p)).collect()
    }

    /// This job's index with the digits of the axes not in `mask` ([`JobSpec::axis_mask`])
    /// set to 0: jobs of one sweep that differ only in those axes get the same number, a cheap
    /// key for what depends only on the other axes.
    pub fn index_keeping(&self, mask: &[bool]) -> usize {
        let (mut rem, mut key, mut stride) = (self.index, 0, 1);
        for ((_, values), &keep) in self.axes.axes.iter().zip(mask).rev() {
            let n = values.len();
            if keep {
                key += (rem % n) * stride;
            }
            rem /= n;
            stride *= n;
        }
        key
    }

    /// Which value of each axis this job takes (the mixed-radix digits of `index`, last axis
    /// fastest), in the order of [`JobSpec::axis_paths`].
    pub fn axis_picks(&self) -> Vec<usize> {
        picks_of(self.index, self.axes.axes.iter().map(|(_, v)| v.len()))
    }

    /// The configuration path of each axis of this job's sweep (`problem.eps` for `eps`).
    pub fn axis_paths(&self) -> &[Vec<String>] {
        &self.axes.paths
    }

    /// The resolved configuration as YAML (stored in the job file's `config` attribute),
    /// spelled so that YAML 1.1 readers (PyYAML) load the same numbers ([`crate::yaml_text`]).
    pub fn config_yaml(&self) -> String {
        crate::yaml_text::to_yaml(&self.config)
            .unwrap_or_else(|_| serde_yaml_ng::to_string(&self.config).unwrap_or_default())
    }

    /// Rough cost in GFLOP (forward + backward of every Adam step and L-BFGS iteration plus NTK
    /// snapshots),
    /// used to schedule the longest jobs first and shown by `ntksweep plan`.
    pub fn cost_gflop(&self) -> f64 {
        let c = &self.config;
        let d = c.problem.input_dim();
        let streams = (1 + 2 * d) as f64;
        let sizes = crate::model::mlp::layer_sizes(c.model.inputs(d), c.model.width, c.model.depth);
        let macs: f64 = sizes.windows(2).map(|w| (w[0] * w[1]) as f64).sum();
        let points: f64 = c.problem.term_names().iter().map(|t| c.term_points(t).points as f64).sum();
        let step = 3.0 * 2.0 * streams * points * macs;
        let ntk_points: f64 = c.problem.term_names().iter().map(|t| c.ntk_points(t) as f64).sum();
        let snapshots = if c.ntk.enabled {
            let steps = c.training.total_steps();
            (if c.ntk.every > 0 { steps / c.ntk.every + 1 } else { 2 }) as f64
        } else {
            0.0
        };
        let ntk = snapshots
            * match c.ntk.method {
                crate::ntk::NtkMethod::Exact => 2.0 * 2.0 * streams * ntk_points * macs + streams * streams * ntk_points * ntk_points * (c.model.width * (c.model.depth + 1)) as f64,
                // One forward per chunk, one reverse pass per probe.
                crate::ntk::NtkMethod::Hutchinson => (1.0 + c.ntk.probes as f64) * 2.0 * 2.0 * streams * ntk_points * macs,
            };
        // An L-BFGS iteration costs at least one loss and gradient evaluation, like a step.
        (c.training.all_steps() as f64 * step + ntk) / 1e9
    }
}

/// A parsed, validated and expanded sweep.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub name: String,
    pub path: String,
    pub axes: Vec<Axis>,
    pub jobs: Vec<JobSpec>,
}

fn split_path(dotted: &str) -> Vec<String> {
    dotted.split('.').map(str::to_string).collect()
}

fn resolve_alias(key: &str) -> Vec<String> {
    ALIASES.iter().find(|(a, _)| *a == key).map(|(_, p)| split_path(p)).unwrap_or_else(|| split_path(key))
}

fn yaml_text(v: &Value) -> String {
    // A tagged section given by name only (`balancer: ntk`) shows as its name.
    if let Value::Mapping(m) = v {
        if m.len() == 1 {
            if let Some(Value::String(k)) = m.get("kind") {
                return k.clone();
            }
        }
    }
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => serde_yaml_ng::to_string(other).unwrap_or_default().trim().replace('\n', " "),
    }
}

/// Set `path` in a mapping tree, creating intermediate mappings.
fn set_path(tree: &mut Value, path: &[String], value: Value) -> Result<(), String> {
    let mut node = tree;
    for (i, seg) in path.iter().enumerate() {
        let last = i + 1 == path.len();
        if let Value::Sequence(seq) = node {
            let idx: usize = seg.parse().map_err(|_| format!("`{}` is a list; index it with a number", path[..i].join(".")))?;
            let len = seq.len();
            let slot = seq.get_mut(idx).ok_or_else(|| format!("index {idx} is past the end of `{}` ({len} items)", path[..i].join(".")))?;
            if last {
                *slot = value;
                return Ok(());
            }
            node = slot;
            continue;
        }
        if node.is_null() {
            *node = Value::Mapping(Mapping::new());
        }
        let Value::Mapping(map) = node else {
            return Err(format!("`{}` is a {}, not a section with keys", path[..i].join("."), kind_of(node)));
        };
        let key = Value::String(seg.clone());
        if last {
            map.insert(key, value);
            return Ok(());
        }
        node = map.entry(key).or_insert(Value::Null);
    }
    Ok(())
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Sequence(_) => "list",
        Value::Mapping(_) => "mapping",
        Value::Tagged(_) => "tagged value",
    }
}

/// `balancer: ntk` is shorthand for `balancer: {kind: ntk}`; same for `problem`.
fn expand_shorthand(tree: &mut Value) {
    if let Value::Mapping(map) = tree {
        for key in ["balancer", "problem"] {
            if let Some(v) = map.get_mut(key) {
                if let Value::String(s) = v {
                    let mut m = Mapping::new();
                    m.insert(Value::String("kind".into()), Value::String(s.clone()));
                    *v = Value::Mapping(m);
                }
            }
        }
    }
}

struct Ctx<'a> {
    path: &'a str,
    text: &'a str,
    index: &'a LocationIndex,
    /// Base paths set on the command line, with the `--set` argument.
    cli_paths: Vec<(Vec<String>, String)>,
}

impl Ctx<'_> {
    fn at_file(&self, loc_path: &[String], key: &str, message: impl Into<String>) -> ConfigError {
        let pos = self.index.nearest(loc_path);
        ConfigError {
            origin: Origin::File { path: self.path.to_string(), line: pos.map(|p| p.line), col: pos.map(|p| p.col) },
            key: key.to_string(),
            message: message.into(),
        }
    }

    fn at_value(&self, loc_path: &[String], key: &str, message: impl Into<String>) -> ConfigError {
        let pos = self.index.value(loc_path).or_else(|| self.index.nearest(loc_path));
        ConfigError {
            origin: Origin::File { path: self.path.to_string(), line: pos.map(|p| p.line), col: pos.map(|p| p.col) },
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// `e` moved to column `column` (1-based) inside the value it points at, when that value
    /// is a plain or quoted scalar on one line (block scalars keep the value's position).
    fn inside(&self, mut e: ConfigError, column: Option<usize>) -> ConfigError {
        let (Some(k), Origin::File { line: Some(l), col: Some(c), .. }) = (column, &mut e.origin) else { return e };
        let Some(line) = self.text.lines().nth(*l - 1) else { return e };
        let rest: Vec<char> = line.chars().skip(*c - 1).collect();
        let skip = match rest.first() {
            Some('"' | '\'') => 1,
            Some('|' | '>') | None => return e,
            Some(_) => 0,
        };
        if rest.len() >= skip + k {
            *c += skip + k - 1;
        }
        e
    }

    fn at_cli(arg: &str, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError { origin: Origin::CommandLine { arg: arg.to_string() }, key: key.to_string(), message: message.into() }
    }
}

fn parse_axis_values(key: &str, v: &Value) -> Result<Vec<Value>, String> {
    match v {
        Value::Sequence(items) => {
            if items.is_empty() {
                return Err(format!("axis `{key}` is empty: give at least one value"));
            }
            Ok(items.clone())
        }
        Value::Mapping(m) => {
            let range = m.get(Value::String("range".into()));
            if m.len() != 1 || range.is_none() {
                return Err(format!("axis `{key}` must be a list of values or {{range: [start, end]}}"));
            }
            let (start, end) = match range.unwrap() {
                Value::Number(n) => (0, n.as_i64().ok_or("range must use integers")?),
                Value::Sequence(s) if s.len() == 2 => (
                    s[0].as_i64().ok_or("range start must be an integer")?,
                    s[1].as_i64().ok_or("range end must be an integer")?,
                ),
                _ => return Err(format!("axis `{key}`: range takes an integer count or [start, end] (end excluded)")),
            };
            if end <= start {
                return Err(format!("axis `{key}` is empty: range [{start}, {end}) has no values"));
            }
            Ok((start..end).map(|i| Value::Number(i.into())).collect())
        }
        other => Err(format!("axis `{key}` must be a list of values or {{range: [start, end]}}, got a {}", kind_of(other))),
    }
}

/// Mixed-radix digits of `index` for axes of the given lengths, last axis fastest.
fn picks_of(index: usize, lens: impl DoubleEndedIterator<Item = usize> + ExactSizeIterator) -> Vec<usize> {
    let mut picks = vec![0; lens.len()];
    let mut rem = index;
    for (k, n) in lens.enumerate().rev() {
        picks[k] = rem % n;
        rem /= n;
    }
    picks
}

/// `prev` with the top-level sections named in `fresh` typed anew from `tree` (a section
/// missing from the tree takes its default, as in [`JobConfig`]'s derive). None, for the full
/// typing of [`type_job`] to handle (and report), when a section does not type or is not one
/// listed here: a field added to [`JobConfig`] and swept is then typed the slow way, never
/// taken stale from `prev`.
fn retype(prev: &JobConfig, tree: &Value, fresh: &[&str]) -> Option<JobConfig> {
    fn section<T: serde::de::DeserializeOwned + Default>(tree: &Value, key: &str) -> Option<T> {
        match tree.get(key) {
            None => Some(T::default()),
            Some(v) => T::deserialize(v).ok(),
        }
    }
    let mut c = prev.clone();
    for &key in fresh {
        match key {
            "seed" => c.seed = section(tree, key)?,
            "problem" => c.problem = serde::Deserialize::deserialize(tree.get(key)?).ok()?,
            "model" => c.model = section(tree, key)?,
            "training" => c.training = section(tree, key)?,
            "collocation" => c.collocation = section(tree, key)?,
            "loss" => c.loss = section(tree, key)?,
            "balancer" => c.balancer = section(tree, key)?,
            "ntk" => c.ntk = section(tree, key)?,
            "evaluation" => c.evaluation = section(tree, key)?,
            _ => return None,
        }
    }
    Some(c)
}

/// Type one job's tree; on error the path and message, refined for unknown keys (serde
/// reports the parent) and for the tagged sections whose inner errors serde reports at the
/// section.
fn type_job(tree: &Value) -> Result<JobConfig, (Vec<String>, String)> {
    let err = match serde_path_to_error::deserialize::<_, JobConfig>(tree) {
        Ok(c) => return Ok(c),
        Err(e) => e,
    };
    let mut path = path_segments(err.path());
    let mut msg = err.inner().to_string();
    if let Some((sub, m)) = crate::problem::refine_error(tree, &path).or_else(|| crate::balancer::refine_error(tree, &path)) {
        path = sub;
        msg = m;
    }
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        if let Some(name) = rest.split('`').next() {
            if path.last().map(String::as_str) != Some(name) {
                path.push(name.to_string());
            }
        }
    }
    // Drop serde_yaml_ng's own location suffix: it refers to a re-serialised tree.
    if let Some(i) = msg.find(" at line ") {
        msg.truncate(i);
    }
    Err((path, msg))
}

impl Sweep {
    /// Read, validate and expand a sweep file with `--set` overrides.
    pub fn load(path: &Path, sets: &[String]) -> Result<Sweep, SweepError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| SweepError::Read { path: path.display().to_string(), source })?;
        let default_name = path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
        Self::parse(&text, &path.display().to_string(), &default_name, sets)
    }

    /// Validate and expand a sweep given as text (`path` is used in messages).
    pub fn parse(text: &str, path: &str, default_name: &str, sets: &[String]) -> Result<Sweep, SweepError> {
        let index = LocationIndex::build(text);
        let mut ctx = Ctx { path, text, index: &index, cli_paths: Vec::new() };
        let mut errors = Vec::new();
        let root: Value = serde_yaml_ng::from_str(text).map_err(|e| {
            let loc = e.location();
            let mut msg = e.to_string();
            if let Some(i) = msg.find(" at line ") {
                msg.truncate(i);
            }
            SweepError::Invalid(vec![ConfigError {
                origin: Origin::File { path: path.to_string(), line: loc.as_ref().map(|l| l.line()), col: loc.as_ref().map(|l| l.column()) },
                key: String::new(),
                message: format!("not valid YAML: {msg}"),
            }])
        })?;
        let Value::Mapping(mut top) = root else {
            return Err(SweepError::Invalid(vec![ctx.at_file(&[], "", "a sweep file must be a mapping of sections (problem:, model:, sweep:, ...)")]));
        };
        let name = match top.remove("name") {
            Some(Value::String(s)) if is_plain_name(&s) => s,
            Some(Value::String(s)) => {
                errors.push(ctx.at_value(&["name".into()], "name", format!("must be a plain folder name (letters, digits, `-`, `_`, `.`; not `.` or `..`): it names the results folder results/<name>; got `{s}`")));
                String::new()
            }
            Some(_) => {
                errors.push(ctx.at_value(&["name".into()], "name", "must be a string"));
                String::new()
            }
            None => plain_name_from(default_name),
        };
        if let Some(d) = top.remove("description") {
            if !d.is_string() {
                errors.push(ctx.at_value(&["description".into()], "description", "must be a string"));
            }
        }
        // --- axes from the file --------------------------------------------------------
        let mut axes: Vec<Axis> = Vec::new();
        match top.remove("sweep") {
            None | Some(Value::Null) => {}
            Some(Value::Mapping(m)) => {
                for (k, v) in m {
                    let Value::String(key) = k else {
                        errors.push(ctx.at_file(&["sweep".into()], "sweep", "axis names must be strings"));
                        continue;
                    };
                    let loc = vec!["sweep".to_string(), key.clone()];
                    let resolved = resolve_alias(&key);
                    if let Some(prev) = axes.iter().find(|a| a.path == resolved) {
                        errors.push(ctx.at_file(&loc, &format!("sweep.{key}"), format!("duplicate axis: `{key}` and `{}` both sweep `{}`", prev.key, resolved.join("."))));
                        continue;
                    }
                    if SWEEP_KEYS.contains(&resolved[0].as_str()) {
                        errors.push(ctx.at_file(&loc, &format!("sweep.{key}"), format!("`{}` cannot be swept", resolved[0])));
                        continue;
                    }
                    match parse_axis_values(&key, &v) {
                        Ok(values) => axes.push(Axis { key, path: resolved, values, from_cli: None }),
                        Err(m) => errors.push(ctx.at_file(&loc, &format!("sweep.{key}"), m)),
                    }
                }
            }
            Some(_) => errors.push(ctx.at_value(&["sweep".into()], "sweep", "must be a mapping of axis name -> list of values")),
        }
        let mut base = Value::Mapping(top);
        // --- --set overrides -----------------------------------------------------------
        for arg in sets {
            let Some((lhs, rhs)) = arg.split_once('=') else {
                errors.push(Ctx::at_cli(arg, "", "expected dotted.path=value"));
                continue;
            };
            let value: Value = match serde_yaml_ng::from_str(rhs) {
                Ok(v) => v,
                Err(e) => {
                    errors.push(Ctx::at_cli(arg, lhs, format!("value is not valid YAML: {e}")));
                    continue;
                }
            };
            if let Some(axis_key) = lhs.strip_prefix("sweep.") {
                let resolved = resolve_alias(axis_key);
                match parse_axis_values(axis_key, &value) {
                    Ok(values) => {
                        axes.retain(|a| a.path != resolved);
                        axes.push(Axis { key: axis_key.to_string(), path: resolved, values, from_cli: Some(arg.clone()) });
                    }
                    Err(m) => errors.push(Ctx::at_cli(arg, lhs, m)),
                }
            } else {
                let resolved = resolve_alias(lhs);
                if SWEEP_KEYS.contains(&resolved[0].as_str()) {
                    errors.push(Ctx::at_cli(arg, lhs, "use --set sweep.<axis>=[...] to change an axis"));
                    continue;
                }
                // A fixed value replaces an axis over the same path.
                axes.retain(|a| a.path != resolved);
                match set_path(&mut base, &resolved, value) {
                    Ok(()) => ctx.cli_paths.push((resolved, arg.clone())),
                    Err(m) => errors.push(Ctx::at_cli(arg, lhs, m)),
                }
            }
        }
        for a in &mut axes {
            if a.path == ["balancer"] || a.path == ["problem"] {
                for v in &mut a.values {
                    let mut wrapper = Value::Mapping(Mapping::new());
                    set_path(&mut wrapper, &a.path, v.clone()).ok();
                    expand_shorthand(&mut wrapper);
                    *v = wrapper.get(&a.path[0]).cloned().unwrap_or(Value::Null);
                }
            }
            // A set, not a search of the values before each: an axis of 50,000 seeds would
            // take 1.25e9 comparisons (most of `plan`'s time at a million jobs).
            let mut seen: HashSet<&Value> = HashSet::with_capacity(a.values.len());
            for (i, v) in a.values.iter().enumerate() {
                if !seen.insert(v) {
                    let e = match &a.from_cli {
                        Some(arg) => Ctx::at_cli(arg, &format!("sweep.{}", a.key), format!("duplicate value {} in axis", yaml_text(v))),
                        None => ctx.at_value(&["sweep".into(), a.key.clone(), i.to_string()], &format!("sweep.{}", a.key), format!("duplicate value {} in axis (the two jobs would be the same job)", yaml_text(v))),
                    };
                    errors.push(e);
                }
            }
        }
        expand_shorthand(&mut base);
        redirect_eps(&mut base, &mut axes, &mut ctx.cli_paths);
        if !errors.is_empty() {
            return Err(SweepError::Invalid(errors));
        }
        // --- expand and type every job ---------------------------------------------------
        // One working tree for all jobs: every job sets every axis path, in axis order, so the
        // tree holds exactly the base with this job's values (a clone per job costs more than
        // the typing itself at a million jobs).
        let n_jobs: usize = axes.iter().map(|a| a.values.len()).product();
        let text = Arc::new(AxisText {
            axes: axes.iter().map(|a| (a.key.clone(), a.values.iter().map(yaml_text).collect())).collect(),
            paths: axes.iter().map(|a| a.path.clone()).collect(),
        });
        let mut jobs = Vec::with_capacity(n_jobs.min(10_000_000));
        let mut seen_errors: Vec<ConfigError> = Vec::new();
        let mut ids: HashMap<u64, usize, BuildHasherDefault<Prehashed>> = HashMap::with_capacity_and_hasher(n_jobs.min(10_000_000), Default::default());
        let mut canon = CanonicalWriter::default();
        let mut written: Option<Vec<usize>> = None;
        let mut tree = base;
        // Which value of each axis the tree holds now. An axis whose path lies inside or
        // around another axis's path is set for every job, in axis order (the later one
        // overwrites); the others only when their value changes.
        let mut in_tree: Vec<Option<usize>> = vec![None; axes.len()];
        let nested: Vec<bool> = axes.iter().map(|a| axes.iter().filter(|b| a.path.starts_with(&b.path) || b.path.starts_with(&a.path)).count() > 1).collect();
        for index in 0..n_jobs {
            let picks = picks_of(index, axes.iter().map(|a| a.values.len()));
            for (k, (a, &p)) in axes.iter().zip(&picks).enumerate() {
                if in_tree[k] == Some(p) && !nested[k] {
                    continue;
                }
                in_tree[k] = None;
                match set_path(&mut tree, &a.path, a.values[p].clone()) {
                    Ok(()) => in_tree[k] = Some(p),
                    Err(m) => push_unique(&mut seen_errors, ctx.at_file(&["sweep".into(), a.key.clone()], &format!("sweep.{}", a.key), m)),
                }
            }
            // `column`: a position inside the value (an expression), see [`Ctx::inside`].
            let locate = |path: &[String], message: String, column: Option<usize>| -> ConfigError {
                let key = path.join(".");
                for (a, &p) in axes.iter().zip(&picks) {
                    if path.starts_with(&a.path) || a.path.starts_with(path) && !path.is_empty() {
                        return match &a.from_cli {
                            Some(arg) => Ctx::at_cli(arg, &key, message),
                            None => {
                                let e = ctx.at_value(&["sweep".into(), a.key.clone(), p.to_string()], &key, format!("{message} (value {} of axis `{}`)", yaml_text(&a.values[p]), a.key));
                                ctx.inside(e, column.filter(|_| a.path == path))
                            }
                        };
                    }
                }
                for (cp, arg) in &ctx.cli_paths {
                    if path.starts_with(cp) {
                        return Ctx::at_cli(arg, &key, message);
                    }
                }
                match column {
                    Some(_) => ctx.inside(ctx.at_value(path, &key, message), column),
                    None => ctx.at_file(path, &key, message),
                }
            };
            // A top-level section is typed from its own subtree only, so its typed value and its
            // canonical text can change only where an axis under it took another value since
            // the last job accepted (the one before in the usual case: the last axis changed).
            let fresh: Vec<&str> = axes.iter().enumerate().filter(|(k, _)| written.as_ref().is_none_or(|w: &Vec<usize>| w[*k] != picks[*k])).map(|(_, a)| a.path[0].as_str()).collect();
            let reused = jobs.last().filter(|_| written.is_some()).and_then(|prev: &JobSpec| retype(&prev.config, &tree, &fresh));
            let config = match reused.map_or_else(|| type_job(&tree), Ok) {
                Ok(c) => c,
                Err((path, msg)) => {
                    push_unique(&mut seen_errors, locate(&path, msg, None));
                    continue;
                }
            };
            let invalid = config.validate();
            if !invalid.is_empty() {
                for inv in invalid {
                    push_unique(&mut seen_errors, locate(&split_path(&inv.path), inv.message, inv.column));
                }
                continue;
            }
            let digest = canon.digest(&config, &|key| written.is_none() || fresh.contains(&key));
            written = Some(picks.clone());
            let id = hex16(&digest);
            let key = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
            if let Some(prev) = ids.insert(key, index) {
                push_unique(&mut seen_errors, ctx.at_file(&["sweep".into()], "sweep", format!("jobs {prev} and {index} resolve to the same configuration (id {id}); remove the repeated axis value")));
            }
            jobs.push(JobSpec { index, id, config, axes: Arc::clone(&text) });
            if seen_errors.len() >= 50 {
                break;
            }
        }
        if !seen_errors.is_empty() {
            return Err(SweepError::Invalid(seen_errors));
        }
        Ok(Sweep { name, path: path.to_string(), axes, jobs })
    }
}

/// Whether `name` can be a folder under `results/` and nothing else: letters, digits, `-`,
/// `_` and `.`, not empty, not `.` or `..` (so `name: ../../x` cannot put results elsewhere).
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The default name, from the sweep file's stem: characters a plain name cannot hold become
/// `_` (a file may be called `my sweep.yaml`; that is no reason to refuse it).
fn plain_name_from(stem: &str) -> String {
    let name: String = stem.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect();
    if is_plain_name(&name) {
        name
    } else {
        "sweep".to_string()
    }
}

/// For an expression problem, `eps` (the axis shorthand, `--set eps=...`, and `problem.eps`)
/// means its constant `problem.constants.eps`.
fn redirect_eps(base: &mut Value, axes: &mut [Axis], cli_paths: &mut [(Vec<String>, String)]) {
    let Some(Value::Mapping(problem)) = base.get_mut("problem") else { return };
    if problem.get("kind").and_then(Value::as_str) != Some("expression") {
        return;
    }
    let (from, to) = (split_path("problem.eps"), split_path("problem.constants.eps"));
    if let Some(v) = problem.remove("eps") {
        let _ = set_path(base, &to, v);
    }
    for a in axes.iter_mut().filter(|a| a.path == from) {
        a.path = to.clone();
    }
    for (p, _) in cli_paths.iter_mut().filter(|(p, _)| *p == from) {
        *p = to.clone();
    }
}

fn push_unique(errors: &mut Vec<ConfigError>, e: ConfigError) {
    if !errors.contains(&e) {
        errors.push(e);
    }
}

/// Stable id of a resolved job configuration: SHA-256 of its canonical JSON (serde_json's
/// default map is ordered, so keys are sorted), first 16 hex digits. A sweep computes the same
/// text faster with [`CanonicalWriter`].
pub fn job_id(config: &JobConfig) -> String {
    hex16(&Sha256::digest(canonical::slow(config, None, &[]).as_bytes()))
}

/// Hasher of keys that are already hashes (the first 8 bytes of a job's SHA-256): SipHash
/// over them again would cost more than the look-up itself at a million jobs.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The first 8 bytes of a digest as 16 hex digits.
fn hex16(digest: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(16);
    for b in &digest[..8] {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every job of a sweep whose axes change sections back and forth (the parse re-types only
    /// the sections whose axes changed) has the configuration of the same job typed on its
    /// own (a one-job sweep with the axis values as `--set`).
    #[test]
    fn reused_sections_equal_a_job_typed_alone() {
        let base = "problem: {kind: darcy1d, eps: 0.5}\nmodel: {width: 8}\ntraining: {steps: 10}\n";
        let text = format!("{base}sweep:\n  balancer: [none, relobralo]\n  training.decay_rate: [0.9, 0.5]\n  width: [8, 16]\n  lr: [0.1, 0.01]\n  eps: [0.5, 0.25]\n  seed: [0, 1]\n");
        let s = Sweep::parse(&text, "s.yaml", "s", &[]).unwrap();
        assert_eq!(s.jobs.len(), 64);
        for j in &s.jobs {
            let sets: Vec<String> = j.axis_values().iter().map(|(k, v)| format!("{k}={v}")).collect();
            let alone = Sweep::parse(base, "s.yaml", "s", &sets).unwrap();
            assert_eq!(alone.jobs[0].config, j.config, "job {}: {sets:?}", j.index);
            assert_eq!(alone.jobs[0].id, j.id);
        }
    }

    /// An axis over a whole section and an axis inside it: the later one in axis order wins
    /// for every job, though only the fastest axis changes from one job to the next (the
    /// expansion sets an unchanged axis again only when another axis's path is inside or
    /// around its own).
    #[test]
    fn nested_axes_are_set_in_axis_order() {
        let models = "[{width: 8, depth: 2}, {width: 16, depth: 3}]";
        let shapes = |text: &str| -> Vec<(usize, usize)> {
            Sweep::parse(text, "s.yaml", "s", &[]).unwrap().jobs.iter().map(|j| (j.config.model.width, j.config.model.depth)).collect()
        };
        let outer_first = format!("problem: {{kind: darcy1d, eps: 0.5}}\nsweep:\n  model: {models}\n  width: [4, 5]\n");
        assert_eq!(shapes(&outer_first), [(4, 2), (5, 2), (4, 3), (5, 3)]);
        // The width's value stays while the model changes: it must still be set again.
        let one_width = format!("problem: {{kind: darcy1d, eps: 0.5}}\nsweep:\n  model: {models}\n  width: [4]\n  seed: [0, 1]\n");
        assert_eq!(shapes(&one_width), [(4, 2), (4, 2), (4, 3), (4, 3)]);
        let inner_first = format!("problem: {{kind: darcy1d, eps: 0.5}}\nsweep:\n  width: [4, 5]\n  model: {models}\n");
        assert!(Sweep::parse(&inner_first, "s.yaml", "s", &[]).is_err(), "the model axis overwrites the width: jobs repeat");
    }

    /// A duplicate value is reported at each repetition (a set finds them, not a search of
    /// the values before each).
    #[test]
    fn every_repeated_axis_value_is_reported() {
        let text = "problem: {kind: darcy1d, eps: 0.5}\nsweep:\n  seed: [0, 1, 0, 2, 0, 1]\n";
        let e = errs(text, &[]);
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e.iter().all(|e| e.key == "sweep.seed" && e.message.contains("duplicate value")), "{e:?}");
        let cols: Vec<_> = e.iter().map(|e| match e.origin { Origin::File { col, .. } => col, _ => None }).collect();
        assert_eq!(cols, [Some(16), Some(22), Some(25)], "{e:?}");
    }

    const GOOD: &str = "\
name: t
problem:
  kind: darcy1d
  eps: 0.5
model:
  width: 8
training:
  steps: 10
sweep:
  eps: [0.5, 0.25]
  seed: {range: [0, 3]}
";

    fn errs(text: &str, sets: &[&str]) -> Vec<ConfigError> {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        match Sweep::parse(text, "s.yaml", "s", &sets) {
            Ok(_) => panic!("expected an error"),
            Err(SweepError::Invalid(v)) => v,
            Err(e) => panic!("{e}"),
        }
    }

    fn line_of(e: &ConfigError) -> Option<usize> {
        match e.origin {
            Origin::File { line, .. } => line,
            _ => None,
        }
    }

    #[test]
    fn expands_cartesian_product_last_axis_fastest_with_stable_ids() {
        let s = Sweep::parse(GOOD, "s.yaml", "s", &[]).unwrap();
        assert_eq!(s.jobs.len(), 6);
        assert_eq!(s.jobs[1].config.seed, 1);
        assert_eq!(s.jobs[3].config.problem.eps(), Some(0.25));
        // Same job written differently (axis order swapped, value in base) has the same id.
        let other = "problem: {kind: darcy1d, eps: 0.25}\nmodel: {width: 8}\ntraining: {steps: 10}\nseed: 0\n";
        let t = Sweep::parse(other, "o.yaml", "o", &[]).unwrap();
        assert_eq!(t.jobs[0].id, s.jobs[3].id);
        let ids: std::collections::BTreeSet<_> = s.jobs.iter().map(|j| j.id.clone()).collect();
        assert_eq!(ids.len(), 6);
    }

    #[test]
    fn unknown_key_is_reported_at_its_line() {
        let e = errs(&GOOD.replace("  width: 8", "  widht: 8"), &[]);
        assert_eq!(e[0].key, "model.widht");
        assert_eq!(line_of(&e[0]), Some(6));
        assert!(e[0].message.contains("unknown field"), "{}", e[0].message);
    }

    #[test]
    fn unknown_key_inside_problem_is_reported_at_its_line() {
        let e = errs(&GOOD.replace("  eps: 0.5\n", "  eps: 0.5\n  epsilon: 2\n"), &[]);
        assert_eq!(e[0].key, "problem.epsilon");
        assert_eq!(line_of(&e[0]), Some(5));
    }

    #[test]
    fn wrong_type_is_reported_at_its_line() {
        let e = errs(&GOOD.replace("steps: 10", "steps: many"), &[]);
        assert_eq!(e[0].key, "training.steps");
        assert_eq!(line_of(&e[0]), Some(8));
    }

    #[test]
    fn bad_axis_value_is_reported_at_the_item() {
        let e = errs(&GOOD.replace("[0.5, 0.25]", "[0.5, 0.3]"), &[]);
        assert_eq!(e.len(), 1, "deduplicated over seeds: {e:?}");
        assert_eq!(e[0].key, "problem.eps");
        assert!(e[0].message.contains("1/eps must be an integer"));
        assert_eq!(line_of(&e[0]), Some(10));
        let e = errs(&GOOD.replace("[0.5, 0.25]", "[0.5, -0.25]"), &[]);
        assert!(e[0].message.contains("positive"));
    }

    #[test]
    fn zero_width_empty_and_duplicate_axes_are_errors() {
        assert_eq!(errs(&GOOD.replace("width: 8", "width: 0"), &[])[0].key, "model.width");
        let e = errs(&GOOD.replace("[0.5, 0.25]", "[]"), &[]);
        assert!(e[0].message.contains("empty"));
        let e = errs(&format!("{GOOD}  problem.eps: [0.5]\n"), &[]);
        assert!(e[0].message.contains("duplicate axis"), "{e:?}");
        assert_eq!(line_of(&e[0]), Some(12));
    }

    #[test]
    fn set_overrides_base_values_and_axes() {
        let sets = vec!["model.width=16".to_string(), "sweep.seed=[4, 5]".to_string()];
        let s = Sweep::parse(GOOD, "s.yaml", "s", &sets).unwrap();
        assert_eq!(s.jobs.len(), 4);
        assert!(s.jobs.iter().all(|j| j.config.model.width == 16));
        assert_eq!(s.jobs[0].config.seed, 4);
        // A fixed value replaces an axis.
        let s = Sweep::parse(GOOD, "s.yaml", "s", &["eps=0.125".to_string()]).unwrap();
        assert_eq!(s.jobs.len(), 3);
        let e = errs(GOOD, &["model.width=-1"]);
        assert!(matches!(e[0].origin, Origin::CommandLine { .. }));
    }

    /// `name: ../../x` would put the results outside results/: every name that is not a plain
    /// folder name is an error at the value's position; plain names and default names pass.
    #[test]
    fn name_must_be_a_plain_folder_name() {
        for bad in ["../../x", "a/b", "..", ".", "\"\"", "x y", "/abs"] {
            let e = errs(&GOOD.replace("name: t", &format!("name: {bad}")), &[]);
            assert_eq!(e[0].key, "name", "{bad}: {e:?}");
            assert_eq!(line_of(&e[0]), Some(1), "{bad}");
            assert!(matches!(e[0].origin, Origin::File { col: Some(7), .. }), "{bad}: {e:?}");
            assert!(e[0].message.contains("plain folder name"), "{bad}: {}", e[0].message);
        }
        for good in ["t", "my-sweep_2.v1", "..x"] {
            assert_eq!(Sweep::parse(&GOOD.replace("name: t", &format!("name: {good}")), "s.yaml", "s", &[]).unwrap().name, good);
        }
        let no_name = GOOD.replace("name: t\n", "");
        assert_eq!(Sweep::parse(&no_name, "s.yaml", "my sweep", &[]).unwrap().name, "my_sweep");
        assert_eq!(Sweep::parse(&no_name, "s.yaml", "..", &[]).unwrap().name, "sweep");
    }

    #[test]
    fn yaml_syntax_error_has_a_position() {
        let e = errs("problem: {kind: darcy1d\n", &[]);
        assert!(line_of(&e[0]).is_some());
    }

    /// The keys of the network schemes and of the NTK method, written at their defaults, leave
    /// the resolved configuration (and so every existing job id) unchanged; other values
    /// change it.
    #[test]
    fn scheme_keys_at_their_defaults_leave_job_ids_unchanged() {
        let plain = Sweep::parse(GOOD, "s.yaml", "s", &[]).unwrap();
        let json = serde_json::to_string(&plain.jobs[0].config).unwrap();
        for key in ["activation", "adaptive_activation", "fourier", "method", "probes"] {
            assert!(!json.contains(&format!("\"{key}\"")), "`{key}` in the resolved configuration: {json}");
        }
        let explicit = GOOD.replace(
            "  width: 8\n",
            "  width: 8\n  activation: tanh\n  adaptive_activation: none\n  fourier: null\nntk: {method: exact, probes: 64}\n",
        );
        let s = Sweep::parse(&explicit, "s.yaml", "s", &[]).unwrap();
        assert_eq!(s.jobs.iter().map(|j| &j.id).collect::<Vec<_>>(), plain.jobs.iter().map(|j| &j.id).collect::<Vec<_>>());
        for set in ["model.activation=sin", "model.adaptive_activation=global", "model.fourier={features: 4, sigma: 1}", "ntk.method=hutchinson", "ntk.probes=8"] {
            let other = Sweep::parse(GOOD, "s.yaml", "s", &[set.to_string()]).unwrap();
            assert_ne!(other.jobs[0].id, plain.jobs[0].id, "{set} must change the job id");
        }
    }

    /// Shorthand axes over the schemes: activation, adaptive_activation (by name or with a
    /// scale), fourier (off or on), ntk_method and probes.
    #[test]
    fn scheme_axes_expand_with_their_shorthands() {
        use crate::model::activation::Activation;
        use crate::model::adaptive::AdaptiveMode;
        use crate::ntk::NtkMethod;
        let text = "problem: {kind: darcy1d, eps: 0.5}\nsweep:\n  activation: [tanh, gelu]\n  adaptive_activation: [none, {kind: layerwise, scale: 4}]\n  fourier: [null, {features: 8, sigma: 2.5}]\n  ntk_method: [exact, hutchinson]\n  probes: [16]\n";
        let s = Sweep::parse(text, "s.yaml", "s", &[]).unwrap();
        assert_eq!(s.jobs.len(), 16);
        let last = &s.jobs[15].config;
        assert_eq!(last.model.activation, Activation::Gelu);
        assert_eq!((last.model.adaptive_activation.mode, last.model.adaptive_activation.scale), (AdaptiveMode::Layerwise, 4.0));
        assert_eq!(last.model.fourier.as_ref().map(|f| (f.features, f.sigma)), Some((8, 2.5)));
        assert_eq!((last.ntk.method, last.ntk.probes), (NtkMethod::Hutchinson, 16));
        assert!(s.jobs[0].config.model.fourier.is_none());
        assert_eq!(s.jobs[15].axis_values()[1].1, "kind: layerwise scale: 4");
    }

    /// Unknown activation or slope mode, sigma <= 0, no features, scale <= 0 and zero probes
    /// are reported with the key and its line and column.
    #[test]
    fn bad_scheme_values_are_reported_at_their_position() {
        let base = "problem: {kind: darcy1d, eps: 0.5}\nmodel:\n  width: 8\n  KEY\nntk: {probes: 4}\n";
        for (line, key, want) in [
            ("activation: relu", "model.activation", "unknown variant `relu`"),
            ("adaptive_activation: neuronwise", "model.adaptive_activation", "unknown variant `neuronwise`"),
            ("adaptive_activation: {kind: global, scale: -1}", "model.adaptive_activation.scale", "positive"),
            ("adaptive_activation: {kind: global, slope: 2}", "model.adaptive_activation.slope", "unknown field `slope`"),
            ("fourier: {features: 16, sigma: 0}", "model.fourier.sigma", "positive"),
            ("fourier: {features: 0, sigma: 1}", "model.fourier.features", "at least 1"),
            ("fourier: {features: 16}", "model.fourier", "missing field `sigma`"),
        ] {
            let e = errs(&base.replace("KEY", line), &[]);
            assert_eq!(e[0].key, key, "{line}: {e:?}");
            assert!(e[0].message.contains(want), "{line}: {}", e[0].message);
            assert_eq!(line_of(&e[0]), Some(4), "{line}");
            assert!(matches!(e[0].origin, Origin::File { col: Some(_), .. }), "{line}: a column");
        }
        let e = errs(&base.replace("KEY", "depth: 2").replace("probes: 4", "probes: 0"), &[]);
        assert_eq!((e[0].key.as_str(), line_of(&e[0])), ("ntk.probes", Some(5)));
        let e = errs(&base.replace("KEY", "depth: 2").replace("probes: 4", "method: sampled"), &[]);
        assert_eq!(e[0].key, "ntk.method");
        assert!(e[0].message.contains("unknown variant `sampled`"), "{}", e[0].message);
    }

    /// The `config` attribute of every job of every shipped sweep (plus an L-BFGS phase and
    /// staged rates, and plus every network scheme with Hutchinson traces) reads back as the
    /// resolved configuration, and has no YAML 1.1 trap left (`1e-8`-style floats). The Python
    /// side checks the same with PyYAML on real job files.
    #[test]
    fn every_shipped_job_config_round_trips() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sweeps");
        let sets = [
            vec![],
            vec!["training.lbfgs.steps=5".to_owned(), "training.stages=[{steps: 10, lr: 1e-5}]".to_owned()],
            ["model.activation=gelu", "model.adaptive_activation={kind: layerwise, scale: 5}", "model.fourier={features: 4, sigma: 1e-1}", "ntk.method=hutchinson", "ntk.probes=8"]
                .map(str::to_owned)
                .to_vec(),
        ];
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "yaml") {
                continue;
            }
            for set in &sets {
                // Gradient-enhanced residuals refuse Hutchinson traces (schemes_darcy.yaml has them).
                let sweep = match Sweep::load(&path, set) {
                    Ok(s) => s,
                    Err(e) if path.ends_with("schemes_darcy.yaml") && set.iter().any(|s| s == "ntk.method=hutchinson") && e.to_string().contains("loss.gradient_enhanced") => continue,
                    Err(e) => panic!("{}: {e}", path.display()),
                };
                for job in &sweep.jobs {
                    let text = job.config_yaml();
                    let back: crate::config::JobConfig = serde_yaml_ng::from_str(&text)
                        .unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()));
                    assert_eq!(back, job.config, "{}", path.display());
                    assert_eq!(crate::yaml_text::to_yaml(&job.config).unwrap(), text, "no fallback");
                    assert!(!text.contains("1e-"), "{text}");
                    checked += 1;
                }
            }
        }
        assert!(checked >= 10, "{checked}");
    }
}
