//! The commands of README's "Reproductions" table stay valid: each one plans as written, and
//! runs end to end when shortened (one seed, a few steps, small networks), after which
//! `ntksweep reduce` writes the tables its row quotes. The full runs take hours on 2 cores;
//! this guards the sweep files and the commands, not the numbers.

mod common;

use common::*;

/// The `ntksweep run ...` commands in the Reproductions section, split into arguments (single
/// quotes group, as in a shell).
fn reproduction_commands() -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme.find("\n## Reproductions").expect("README has a Reproductions section");
    let section = &readme[start + 1..];
    let section = &section[..section[1..].find("\n## ").map_or(section.len(), |i| i + 1)];
    let mut out = Vec::new();
    for span in section.split('`').skip(1).step_by(2) {
        if let Some(rest) = span.strip_prefix("ntksweep run ") {
            out.push(shell_words(rest));
        }
    }
    out
}

fn shell_words(s: &str) -> Vec<String> {
    let (mut words, mut word, mut quoted, mut any) = (Vec::new(), String::new(), false, false);
    for c in s.chars() {
        match c {
            '\'' => (quoted, any) = (!quoted, true),
            ' ' if !quoted => {
                if any {
                    words.push(std::mem::take(&mut word));
                }
                any = false;
            }
            c => (word, any) = (word + &c.to_string(), true),
        }
    }
    if any {
        words.push(word);
    }
    words
}

#[test]
fn the_splitter_keeps_quoted_spaces() {
    assert_eq!(shell_words("a.yaml --set 'x=[0, 1]'"), ["a.yaml", "--set", "x=[0, 1]"]);
}

/// Every sweep the table names, with the arguments the table gives: `plan` accepts it.
#[test]
fn every_reproduction_command_plans_as_written() {
    let commands = reproduction_commands();
    assert!(commands.len() >= 9, "{commands:?}");
    for args in &commands {
        let mut plan = vec!["plan".to_owned(), repo().join(&args[0]).to_str().unwrap().to_owned()];
        plan.extend(args[1..].iter().cloned());
        let plan: Vec<&str> = plan.iter().map(String::as_str).collect();
        let o = ntksweep(&plan);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
    }
}

/// Shortening: one seed (the first of the sweep's list), 4 Adam steps in one stage, 2 L-BFGS
/// iterations (added where the sweep has none), width 8, NTK at steps 0, 4 and the end, 20
/// evaluation points per dimension.
const SHORT: &[&str] = &[
    "training.stages=[{steps: 4, lr: 0.001}]",
    "training.lbfgs.steps=2",
    "ntk.every=4",
    "model.width=8",
    "evaluation.points=20",
    "training.log_every=2",
];

#[test]
fn every_reproduction_runs_shortened_and_reduces() {
    let tmp = tempfile::tempdir().unwrap();
    for args in reproduction_commands() {
        let sweep = repo().join(&args[0]);
        // The results folder: the table's `--out` (a variant of a shipped sweep, e.g. another
        // depth) or the sweep's name, inside the temporary folder.
        let own: Vec<&String> = args[1..].iter().collect();
        let named = own.chunks(2).find(|p| p[0] == "--out").map(|p| p[1].rsplit('/').next().unwrap().to_owned());
        let name = named.unwrap_or_else(|| sweep.file_stem().unwrap().to_str().unwrap().to_owned());
        let out = tmp.path().join(&name);
        let mut run: Vec<String> =
            vec!["run".into(), sweep.to_str().unwrap().into(), "--out".into(), out.to_str().unwrap().into()];
        // The table's own `--set`s, except seed lists and step counts, which shortening replaces.
        for pair in own.chunks(2).filter(|p| p[0] != "--out") {
            let keep = !pair[1].starts_with("sweep.seed=") && !pair[1].starts_with("training.steps=");
            if keep && pair[1] != "ntk.every=1000" && !pair[1].starts_with("training.log_every") {
                run.extend(pair.iter().map(|s| s.to_string()));
            }
        }
        let seeds = first_seed(&sweep);
        for s in SHORT.iter().map(|s| s.to_string()).chain([format!("sweep.seed=[{seeds}]")]) {
            run.extend(["--set".to_owned(), s]);
        }
        let run: Vec<&str> = run.iter().map(String::as_str).collect();
        let started = std::time::Instant::now();
        let o = ntksweep(&run);
        assert!(o.status.success(), "{name}: {}", text(&o));
        eprintln!("{name}: {:.1} s", started.elapsed().as_secs_f64());
        let o = ntksweep(&["reduce", out.to_str().unwrap()]);
        assert!(o.status.success(), "{name}: {}", text(&o));
        let report = std::fs::read_to_string(out.join("report.md")).unwrap();
        assert!(report.contains("## Trial averages over seeds"), "{name}: {report}");
        assert!(!report.contains("0 done"), "{name}: {report}");
        let csv = std::fs::read_to_string(out.join("jobs.csv")).unwrap();
        assert!(csv.lines().next().unwrap().contains("rel_l2_best"), "{name}");
        assert!(csv.lines().skip(1).all(|l| l.split(',').nth(1) == Some("done")), "{name}: {csv}");
    }
}

/// The first seed a sweep runs: its `sweep.seed` list's first entry, else its `seed` key, else 0.
fn first_seed(sweep: &std::path::Path) -> String {
    let o = ntksweep(&["plan", sweep.to_str().unwrap()]);
    let plan = text(&o);
    plan.split_whitespace()
        .find_map(|w| w.strip_prefix("seed=").map(str::to_owned))
        .unwrap_or_else(|| "0".to_owned())
}
