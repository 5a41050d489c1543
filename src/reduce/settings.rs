//! A job's settings as dotted paths, and which of them tell groups apart.
//!
//! Groups must come from the job files themselves, not from a fixed list of attributes: a sweep
//! over `training.lr`, `model.depth`, `problem.kind` or any `--set` path must give one group per
//! value, and two sweeps reduced from one folder must never pool. Every job file carries its
//! resolved configuration (the `config` attribute); [`flatten`] turns it into leaves keyed by
//! dotted path (`training.lr`, `collocation.residual.points`, `training.stages.0.lr`; an empty
//! list or map is a leaf `[]` / `{}`), so two configurations are equal exactly when their
//! flattened forms are.
//!
//! Many paths vary together: a `balancer: [none, grad_stats]` axis also changes
//! `balancer.every`, `balancer.beta`, ... (present for one value only). [`distinguishing`]
//! picks, in a fixed order of preference, the few paths that separate the groups: a path is
//! kept only if two groups agree on every path kept before it and differ on it. Those paths
//! name the groups and are the axes of the comparisons; every varying path is still written
//! beside each group.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde_yaml_ng::Value;

/// One leaf of a configuration.
#[derive(Debug, Clone)]
pub enum Setting {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Strings, and `[]` / `{}` for empty lists and maps.
    Str(String),
}

impl Setting {
    fn rank(&self) -> u8 {
        match self {
            Setting::Null => 0,
            Setting::Bool(_) => 1,
            Setting::Int(_) | Setting::Float(_) => 2,
            Setting::Str(_) => 3,
        }
    }

    /// The value as a number, for ordering ints and floats together.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Setting::Int(i) => Some(*i as f64),
            Setting::Float(f) => Some(*f),
            _ => None,
        }
    }
}

impl Ord for Setting {
    /// Null < booleans < numbers (by value; an int before an equal float) < strings.
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Setting::Bool(a), Setting::Bool(b)) => a.cmp(b),
            (Setting::Int(a), Setting::Int(b)) => a.cmp(b),
            (Setting::Str(a), Setting::Str(b)) => a.cmp(b),
            (a, b) if a.rank() == 2 && b.rank() == 2 => {
                let (x, y) = (a.as_f64().unwrap_or(f64::NAN), b.as_f64().unwrap_or(f64::NAN));
                x.total_cmp(&y).then_with(|| matches!(a, Setting::Float(_)).cmp(&matches!(b, Setting::Float(_))))
            }
            (a, b) => a.rank().cmp(&b.rank()),
        }
    }
}

impl PartialOrd for Setting {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Setting {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Setting {}

impl std::hash::Hash for Setting {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match self {
            Setting::Null => 0u8.hash(state),
            Setting::Bool(b) => b.hash(state),
            Setting::Int(i) => i.hash(state),
            Setting::Float(f) => f.to_bits().hash(state),
            Setting::Str(s) => s.hash(state),
        }
    }
}

impl fmt::Display for Setting {
    /// `true`, `50`, `0.001`, `1e-8` (Rust's shortest round-trip form), strings as they are.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Setting::Null => f.write_str("null"),
            Setting::Bool(b) => write!(f, "{b}"),
            Setting::Int(i) => write!(f, "{i}"),
            Setting::Float(x) => write!(f, "{x:?}"),
            Setting::Str(s) => f.write_str(s),
        }
    }
}

/// Leaves of a configuration by dotted path.
pub type Settings = BTreeMap<String, Setting>;

/// Flattens the `config` attribute (YAML) into [`Settings`] (module documentation).
pub fn flatten(yaml: &str) -> Result<Settings, String> {
    let value: Value = serde_yaml_ng::from_str(yaml).map_err(|e| format!("not YAML: {e}"))?;
    let mut out = Settings::new();
    match value {
        Value::Mapping(_) => walk(&value, "", &mut out),
        Value::Null => {}
        _ => return Err("not a mapping of settings".to_owned()),
    }
    Ok(out)
}

fn walk(value: &Value, path: &str, out: &mut Settings) {
    let join = |seg: String| if path.is_empty() { seg } else { format!("{path}.{seg}") };
    match value {
        Value::Mapping(m) if !m.is_empty() => {
            for (k, v) in m {
                walk(v, &join(key_text(k)), out);
            }
        }
        Value::Sequence(s) if !s.is_empty() => {
            for (i, v) in s.iter().enumerate() {
                walk(v, &join(i.to_string()), out);
            }
        }
        Value::Tagged(t) => walk(&t.value, &join(format!("!{}", t.tag)), out),
        leaf => {
            out.insert(path.to_owned(), leaf_setting(leaf));
        }
    }
}

fn key_text(k: &Value) -> String {
    match leaf_setting(k) {
        Setting::Str(s) => s,
        other => other.to_string(),
    }
}

fn leaf_setting(v: &Value) -> Setting {
    match v {
        Value::Null => Setting::Null,
        Value::Bool(b) => Setting::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Setting::Int(i),
            None if n.is_f64() => Setting::Float(n.as_f64().unwrap_or(f64::NAN)),
            None => Setting::Str(n.to_string()),
        },
        Value::String(s) => Setting::Str(s.clone()),
        Value::Sequence(_) => Setting::Str("[]".to_owned()),
        Value::Mapping(_) => Setting::Str("{}".to_owned()),
        Value::Tagged(t) => Setting::Str(format!("!{}", t.tag)),
    }
}

/// Root attributes that name groups in the original summary keys, in key order. A group's
/// settings carry them under these names (besides the dotted paths of the configuration) so
/// that files without a `config` attribute still group as before.
pub const KEY_ATTRS: [&str; 5] = ["problem", "eps", "width", "balancer", "normalization"];

/// Order of preference among varying paths: the key attributes (in key order), then
/// `*.kind` tags, then configuration paths (shallow first, then by name), `sweep` last.
fn preference(path: &str) -> (usize, usize, String) {
    if let Some(i) = KEY_ATTRS.iter().position(|a| *a == path) {
        return (0, i, String::new());
    }
    let depth = path.split('.').count();
    let rank = if path == "sweep" {
        3
    } else if path.ends_with(".kind") {
        1
    } else {
        2
    };
    (rank, depth, path.to_owned())
}

/// Paths whose value differs between `groups` (absence counts as a value), minus `exclude`,
/// in order of preference.
pub fn varying<'a>(groups: impl IntoIterator<Item = &'a Settings> + Clone, exclude: &[&str]) -> Vec<String> {
    let mut paths: BTreeSet<&str> = BTreeSet::new();
    for g in groups.clone() {
        paths.extend(g.keys().map(String::as_str));
    }
    let mut out: Vec<String> = paths
        .into_iter()
        .filter(|p| !exclude.contains(p))
        .filter(|p| {
            let mut values = groups.clone().into_iter().map(|g| g.get(*p));
            let first = values.next();
            values.any(|v| Some(v) != first)
        })
        .map(str::to_owned)
        .collect();
    out.sort_by_key(|p| preference(p));
    out
}

/// The varying paths that separate `groups`, in order of preference: a path is kept when two
/// groups agree on every path kept before it but differ on it. Any two different groups
/// differ on a kept path (they first differ on some varying path, which is then kept).
pub fn distinguishing<'a>(groups: impl IntoIterator<Item = &'a Settings> + Clone, exclude: &[&str]) -> Vec<String> {
    let candidates = varying(groups.clone(), exclude);
    let groups: Vec<&Settings> = groups.into_iter().collect();
    let mut kept: Vec<String> = Vec::new();
    for path in candidates {
        let mut seen: HashMap<Vec<Option<&Setting>>, Option<&Setting>> = HashMap::new();
        let separates = groups.iter().any(|g| {
            let key: Vec<Option<&Setting>> = kept.iter().map(|k| g.get(k)).collect();
            let value = g.get(&path);
            *seen.entry(key).or_insert(value) != value
        });
        if separates {
            kept.push(path);
        }
    }
    kept
}

/// `path=value` for each of `paths` (`path=unset` where the group has no such setting).
pub fn describe(settings: &Settings, paths: &[String]) -> Vec<String> {
    paths
        .iter()
        .map(|p| match settings.get(p) {
            Some(v) => format!("{p}={v}"),
            None => format!("{p}=unset"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(pairs: &[(&str, Setting)]) -> Settings {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    #[test]
    fn flatten_keeps_lists_and_maps_apart() {
        let yaml = "\
seed: 3
problem: {kind: darcy1d, eps: 0.25}
training:
  lr: 1.0e-3
  stages:
    - {steps: 10, lr: 0.5}
  adam_eps: 1e-8
loss: {weights: {}, eps_rescale: false}
ntk: {points: []}
collocation: {residual: {points: 100}}
";
        let got = flatten(yaml).unwrap();
        let want = s(&[
            ("seed", Setting::Int(3)),
            ("problem.kind", Setting::Str("darcy1d".into())),
            ("problem.eps", Setting::Float(0.25)),
            ("training.lr", Setting::Float(1e-3)),
            ("training.stages.0.steps", Setting::Int(10)),
            ("training.stages.0.lr", Setting::Float(0.5)),
            ("training.adam_eps", Setting::Float(1e-8)),
            ("loss.weights", Setting::Str("{}".into())),
            ("loss.eps_rescale", Setting::Bool(false)),
            ("ntk.points", Setting::Str("[]".into())),
            ("collocation.residual.points", Setting::Int(100)),
        ]);
        assert_eq!(got, want);
        assert!(flatten("- 1\n- 2\n").is_err());
        assert!(flatten("a: [").is_err());
        assert_eq!(Setting::Float(1e-8).to_string(), "1e-8");
        assert_eq!(Setting::Float(0.001).to_string(), "0.001");
    }

    #[test]
    fn tag_paths_win_over_what_they_imply_and_cartesian_axes_are_all_kept() {
        let none = |lr: f64| {
            s(&[("balancer", Setting::Str("none".into())), ("balancer.kind", Setting::Str("none".into())), ("training.lr", Setting::Float(lr))])
        };
        let gs = |lr: f64| {
            s(&[
                ("balancer", Setting::Str("grad_stats".into())),
                ("balancer.kind", Setting::Str("grad_stats".into())),
                ("balancer.every", Setting::Int(10)),
                ("training.lr", Setting::Float(lr)),
            ])
        };
        let groups = [none(1e-3), none(1e-2), gs(1e-3), gs(1e-2)];
        assert_eq!(varying(&groups, &[]), ["balancer", "balancer.kind", "balancer.every", "training.lr"]);
        assert_eq!(distinguishing(&groups, &[]), ["balancer", "training.lr"]);
        assert_eq!(distinguishing(&groups, &["balancer"]), ["balancer.kind", "training.lr"]);
        // Nothing varies: nothing distinguishes.
        assert!(distinguishing(&groups[..1], &[]).is_empty());
        assert_eq!(describe(&groups[0], &["balancer.every".into()]), ["balancer.every=unset"]);
    }

    #[test]
    fn numbers_order_by_value_across_int_and_float() {
        let mut v = vec![
            Setting::Float(2.5),
            Setting::Float(2.0),
            Setting::Int(2),
            Setting::Str("a".into()),
            Setting::Int(10),
            Setting::Bool(true),
        ];
        v.sort();
        let sorted = [
            Setting::Bool(true),
            Setting::Int(2),
            Setting::Float(2.0),
            Setting::Float(2.5),
            Setting::Int(10),
            Setting::Str("a".into()),
        ];
        // Compare by variant too: Int(2) and Float(2.0) are different settings.
        assert_eq!(format!("{v:?}"), format!("{sorted:?}"));
        assert_ne!(Setting::Int(2), Setting::Float(2.0));
    }
}
