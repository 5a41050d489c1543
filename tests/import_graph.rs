//! The crate's import graph is one-way: no top-level module reaches itself through `crate::`
//! paths (test code included), and the domain modules never import `config`, which gathers
//! their configuration types.
//!
//! Nodes are the top-level modules (`src/foo.rs` and `src/foo/**` are `foo`); an edge is any
//! `crate::bar` path (or `crate::{bar, ...}` group) in code, comments excluded. Running
//! `cargo test --release --test import_graph -- --nocapture` prints the layers (each module
//! imports only modules of lower layers).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Modules below `config`: they own their configuration types and must not import it.
const DOMAIN: &[&str] = &["balancer", "collocation", "domain", "model", "ntk", "problem", "rng", "tensor", "validation"];

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The line without its `//` comment (a `//` inside a string literal is kept).
fn code(line: &str) -> &str {
    let mut in_str = false;
    let b = line.as_bytes();
    for i in 0..b.len() {
        match b[i] {
            b'"' if i == 0 || b[i - 1] != b'\\' => in_str = !in_str,
            b'/' if !in_str && b.get(i + 1) == Some(&b'/') => return &line[..i],
            _ => {}
        }
    }
    line
}

/// Top-level modules named by `crate::` paths in `text`.
fn imports(text: &str) -> BTreeSet<String> {
    let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let line = code(line);
        for (i, _) in line.match_indices("crate::") {
            let rest = &line[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // Single-line groups; a multi-line group names its first modules on this line.
                let group = group.split('}').next().unwrap_or("");
                out.extend(group.split(',').map(|s| ident(s.trim())).filter(|s| !s.is_empty()));
            } else {
                out.insert(ident(rest));
            }
        }
    }
    out.retain(|m| !m.is_empty() && m != "self");
    out
}

fn graph(src: &Path) -> Graph {
    let mut g = Graph::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = p.strip_prefix(src).unwrap();
            let top = rel.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
            if top == "lib" || top == "main" {
                continue;
            }
            let mut deps = imports(&std::fs::read_to_string(&p).unwrap());
            deps.remove(&top);
            g.entry(top).or_default().extend(deps);
        }
    }
    g
}

/// Kahn's layering: layer k holds the modules whose imports all lie in layers < k. Modules
/// left over lie on a cycle (or depend on one).
fn layers(g: &Graph) -> (Vec<Vec<String>>, Vec<String>) {
    let mut placed: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    loop {
        let layer: Vec<String> = g
            .iter()
            .filter(|(m, deps)| !placed.contains(*m) && deps.iter().all(|d| placed.contains(d) || !g.contains_key(d)))
            .map(|(m, _)| m.clone())
            .collect();
        if layer.is_empty() {
            break;
        }
        placed.extend(layer.iter().cloned());
        out.push(layer);
    }
    let rest = g.keys().filter(|m| !placed.contains(*m)).cloned().collect();
    (out, rest)
}

/// One cycle through `start`, if any (depth-first search).
fn cycle_through(g: &Graph, start: &str) -> Option<Vec<String>> {
    fn dfs(g: &Graph, node: &str, start: &str, path: &mut Vec<String>, seen: &mut BTreeSet<String>) -> bool {
        for d in g.get(node).into_iter().flatten() {
            if d == start {
                return true;
            }
            if seen.insert(d.clone()) {
                path.push(d.clone());
                if dfs(g, d, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    dfs(g, start, start, &mut path, &mut BTreeSet::new()).then(|| {
        path.push(start.to_string());
        path
    })
}

#[test]
fn the_crate_has_no_import_circle() {
    let g = graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(g.len() > 10, "found only {} modules: {g:?}", g.len());
    let (layers, rest) = layers(&g);
    for (k, l) in layers.iter().enumerate() {
        println!("layer {k}: {}", l.join(" "));
    }
    let cycles: Vec<String> = rest.iter().filter_map(|m| cycle_through(&g, m)).map(|c| c.join(" -> ")).collect();
    assert!(rest.is_empty(), "modules on or above an import circle: {rest:?}\ncircles:\n{}", cycles.join("\n"));
}

#[test]
fn domain_modules_do_not_import_config() {
    let g = graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    for m in DOMAIN {
        let deps = g.get(*m).unwrap_or_else(|| panic!("no module {m}"));
        assert!(!deps.contains("config"), "{m} imports config: {deps:?}");
    }
}

#[test]
fn the_scanner_sees_grouped_and_inline_paths_and_skips_comments() {
    let text = "use crate::{model::mlp::Mlp, rng};\nlet x = crate::problem::coord(y); // crate::reduce\n/// [`crate::train`]\n";
    let got: Vec<String> = imports(text).into_iter().collect();
    assert_eq!(got, ["model", "problem", "rng"]);
    let mut g = Graph::new();
    g.insert("a".into(), ["b".to_string()].into());
    g.insert("b".into(), ["a".to_string()].into());
    g.insert("c".into(), ["a".to_string()].into());
    let (l, rest) = layers(&g);
    assert!(l.is_empty());
    assert_eq!(rest, ["a", "b", "c"]);
    assert_eq!(cycle_through(&g, "a"), Some(vec!["a".to_string(), "b".into(), "a".into()]));
}
