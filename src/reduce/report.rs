//! Rendering a [`Reduction`] as Markdown that reads well both in a terminal and on a forge.
//!
//! Tables are padded so their columns line up in plain text. The trial tables follow the
//! paper's Tables 1 and 2 (seed 003, section 4.3): one row per eps with the L2 norm of the
//! mean error, the maximum boundary error, and the L2 norm of the variance. The comparison
//! tables set the values of one sweep axis side by side (see [`super::compare`]).

use std::fmt::Write as _;

use super::aggregate::{ScalingGroup, TrialGroup};
use super::compare::{value_text, Comparison};
use super::settings::KEY_ATTRS;
use super::stats::CONFIDENCE;
use super::Reduction;

/// At most this many missing ids and warnings are listed (the counts are always complete;
/// `summary.h5` holds the full lists).
const LIST_LIMIT: usize = 50;

pub(crate) fn render(r: &Reduction) -> String {
    let mut out = String::new();
    let c = &r.counts;
    let _ = writeln!(out, "# ntksweep reduction of `{}`\n", r.dir.display());
    let missing = match c.missing {
        Some(m) => format!(", {m} missing"),
        None => String::new(),
    };
    let _ = writeln!(
        out,
        "Jobs: {} done, {} failed, {} diverged, {} unreadable{missing}. Only done jobs enter the \
         tables; `jobs.csv` has one row per job file.\n",
        c.done, c.failed, c.diverged, c.unreadable
    );
    let _ = writeln!(out, "{}\n", groups_sentence(r));

    out.push_str("## NTK scaling: ||K_T||_F ~ eps^p\n\n");
    out.push_str(
        "p is the least-squares slope of log ||K_T||_F against log eps over all trials, with its \
         95% Student t interval (n-2 degrees of freedom); n/a with fewer than 3 trials or fewer \
         than 2 distinct eps. Theory: -2 for the Darcy residual block (paper, section 4.1).\n\n",
    );
    if r.groups.scaling.is_empty() && r.groups.problems_without_eps.is_empty() {
        out.push_str("(no NTK snapshots)\n\n");
    } else if !r.groups.scaling.is_empty() {
        out.push_str(&scaling_table(&r.groups.scaling, &extra_axes(&r.groups.scaling_axes)));
        out.push('\n');
    }
    if !r.groups.problems_without_eps.is_empty() {
        let _ = writeln!(
            out,
            "No scaling table for {}: the problem has no eps (the job files store eps = NaN), so \
             there is nothing to fit ||K_T||_F against. Their NTK norms at the first and last \
             snapshot are in `jobs.csv` (`ntk_<term>_frobenius_first`, `..._last`).\n",
            r.groups.problems_without_eps.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ")
        );
    }

    out.push_str("## Trial averages over seeds\n\n");
    out.push_str(
        "Per eps: L2 = root mean square over the evaluation points (approximates the L2 norm \
         over the unit domain) of the seed-mean error and of the pointwise variance (ddof 1); \
         max boundary error = largest absolute seed-mean error on the boundary (points where a \
         coordinate takes its extreme value), max boundary variance likewise; rel L2 = mean of \
         the per-trial relative L2 errors with its 95% Student t interval.\n\n",
    );
    if r.groups.trials.is_empty() {
        out.push_str("(no finished jobs)\n\n");
    }
    let extras = extra_axes(&r.groups.trial_axes);
    let mut start = 0;
    while start < r.groups.trials.len() {
        let first = &r.groups.trials[start];
        let end = start + r.groups.trials[start..].iter().take_while(|t| same_series(t, first)).count();
        let _ = writeln!(out, "### {}\n", series_heading(first, &extras));
        out.push_str(&trial_table(&r.groups.trials[start..end]));
        out.push('\n');
        start = end;
    }

    out.push_str("## Comparisons\n\n");
    comparisons(&mut out, &r.comparisons);

    if !r.excluded.is_empty() {
        out.push_str("## Excluded jobs\n\n");
        let rows = r
            .excluded
            .iter()
            .map(|j| vec![j.job_id.clone(), j.kind.to_string(), one_line(&j.message, 120)])
            .collect();
        out.push_str(&table(&["job id", "status", "message"], &[false, false, false], rows));
        out.push('\n');
    }
    if !r.missing.is_empty() {
        let _ = writeln!(out, "## Missing jobs ({} planned, no file)\n", r.missing.len());
        list(&mut out, &r.missing);
    }
    if !r.warnings.is_empty() {
        let _ = writeln!(out, "## Warnings ({})\n", r.warnings.len());
        list(&mut out, &r.warnings);
    }
    out
}

/// Which settings tell the groups apart, in one sentence.
fn groups_sentence(r: &Reduction) -> String {
    let shown = |axes: &[String]| {
        if axes.is_empty() {
            "nothing but the seed".to_owned()
        } else {
            axes.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", ")
        }
    };
    format!(
        "Groups: {} trial groups (all settings equal but the seed), told apart by {}; {} NTK \
         scaling series (all equal but seed and eps){}.",
        r.groups.trials.len(),
        shown(&r.groups.trial_axes),
        r.groups.scaling.iter().map(|s| &s.settings).collect::<std::collections::BTreeSet<_>>().len(),
        if r.groups.scaling_axes.is_empty() { String::new() } else { format!(", told apart by {}", shown(&r.groups.scaling_axes)) }
    )
}

/// Distinguishing settings that the identifying attributes do not already show.
fn extra_axes(axes: &[String]) -> Vec<String> {
    axes.iter().filter(|a| !KEY_ATTRS.contains(&a.as_str())).cloned().collect()
}

/// Whether `a` and `b` differ at most in eps.
fn same_series(a: &TrialGroup, b: &TrialGroup) -> bool {
    let strip = |t: &TrialGroup| {
        let mut s = t.settings.clone();
        s.remove("eps");
        s
    };
    strip(a) == strip(b)
}

/// `darcy1d, width 50, balancer none, normalization none` and any extra settings.
fn series_heading(t: &TrialGroup, extras: &[String]) -> String {
    let mut text =
        format!("{}, width {}, balancer {}, normalization {}", t.problem, t.width, t.balancer, t.normalization);
    for path in extras {
        let _ = write!(text, ", {path} {}", value_text(&t.settings.get(path).cloned()));
    }
    text
}

fn comparisons(out: &mut String, all: &[Comparison]) {
    if all.is_empty() {
        out.push_str("(no sweep axis other than seed and eps takes two or more values)\n\n");
        return;
    }
    let _ = writeln!(
        out,
        "For each axis other than seed and eps, at each setting of the other axes: rel L2 = mean \
         over seeds of the per-trial relative L2 error with its {:.0}% Student t interval; change \
         = relative change of that mean against the axis's first value; p = Welch's t-test of \
         the per-trial rel L2 against the first value (two-sided; n/a with fewer than 2 seeds); \
         max abs error = mean over seeds of the per-trial maximum absolute error; best rel L2 = \
         mean over seeds of the smallest rel L2 logged during each run. Below each table, per \
         loss term: mean over seeds of the last logged loss and weight, with their change.\n",
        100.0 * CONFIDENCE
    );
    for c in all {
        let base = value_text(&c.rows[0].value);
        if c.fixed.is_empty() {
            let _ = writeln!(out, "### {}\n", c.axis);
        } else {
            let _ = writeln!(out, "### {}, at {}\n", c.axis, c.setting_text());
        }
        let rows = c
            .rows
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let baseline = |v: f64| if i == 0 { "baseline".to_owned() } else { percent(v) };
                vec![
                    value_text(&row.value),
                    row.rel_l2.n.to_string(),
                    mean_ci(&row.rel_l2),
                    baseline(row.rel_l2_change),
                    if i == 0 { "-".to_owned() } else { pvalue(row.welch.p_value) },
                    sci(row.max_abs_error.mean),
                    baseline(row.max_abs_error_change),
                    mean_ci(&row.best_rel_l2),
                    baseline(row.best_rel_l2_change),
                ]
            })
            .collect();
        let change = format!("change vs {base}");
        let p = format!("p vs {base}");
        out.push_str(&table(
            &[c.axis.as_str(), "n", "rel L2 mean [95% CI]", &change, &p, "max abs error", &change, "best rel L2 [95% CI]", &change],
            &[false, true, true, true, true, true, true, true, true],
            rows,
        ));
        out.push('\n');
        term_table(out, c, &change);
    }
}

/// Last logged loss and weight per term and axis value, with changes against the first value.
fn term_table(out: &mut String, c: &Comparison, change: &str) {
    let mut rows = Vec::new();
    for (i, row) in c.rows.iter().enumerate() {
        for loss in &row.last_loss {
            let weight = row.last_weight.iter().find(|w| w.term == loss.term);
            let baseline = |v: f64| if i == 0 { "baseline".to_owned() } else { percent(v) };
            rows.push(vec![
                value_text(&row.value),
                loss.term.clone(),
                sci(loss.mean.mean),
                baseline(loss.change),
                weight.map_or("-".to_owned(), |w| sci(w.mean.mean)),
                weight.map_or("-".to_owned(), |w| baseline(w.change)),
            ]);
        }
    }
    if rows.is_empty() {
        return;
    }
    out.push_str(&table(
        &[c.axis.as_str(), "term", "last loss", change, "last weight", change],
        &[false, false, true, true, true, true],
        rows,
    ));
    out.push('\n');
}

/// `1.2e-3 [1.0e-3, 1.4e-3]`, or the mean alone without an interval.
fn mean_ci(m: &super::stats::MeanCi) -> String {
    if m.ci_low.is_finite() {
        format!("{} [{}, {}]", sci(m.mean), sci(m.ci_low), sci(m.ci_high))
    } else {
        sci(m.mean)
    }
}

/// `-95.0%`, `+12.3%`, n/a.
fn percent(v: f64) -> String {
    if v.is_finite() {
        format!("{:+.1}%", 100.0 * v)
    } else {
        "n/a".to_owned()
    }
}

/// `0.031`, `2.1e-5`, n/a.
fn pvalue(p: f64) -> String {
    if !p.is_finite() {
        "n/a".to_owned()
    } else if p >= 1e-3 {
        format!("{p:.3}")
    } else {
        format!("{p:.1e}")
    }
}

fn list(out: &mut String, items: &[String]) {
    for item in items.iter().take(LIST_LIMIT) {
        let _ = writeln!(out, "- {}", one_line(item, 300));
    }
    if items.len() > LIST_LIMIT {
        let _ = writeln!(out, "- ... and {} more (see summary.h5)", items.len() - LIST_LIMIT);
    }
    out.push('\n');
}

fn scaling_table(groups: &[ScalingGroup], extras: &[String]) -> String {
    let rows = groups
        .iter()
        .map(|s| {
            let mut row = vec![s.problem.clone(), s.width.to_string(), s.balancer.clone(), s.normalization.clone()];
            row.extend(extras.iter().map(|p| value_text(&s.settings.get(p).cloned())));
            row.extend([
                s.term.clone(),
                s.step.to_string(),
                exponent_ci(&s.fit),
                fixed(s.fit.r_squared, 4),
                s.fit.n.to_string(),
                s.theory_exponent.map_or("-".to_owned(), |p| format!("{p}")),
                eigenvalue_exponents(&s.eigenvalue_fits),
            ]);
            row
        })
        .collect();
    let mut headers: Vec<&str> = vec!["problem", "width", "balancer", "normalization"];
    headers.extend(extras.iter().map(String::as_str));
    headers.extend(["term", "step", "exponent p [95% CI]", "r^2", "n", "theory", "lambda_1 p [95% CI]; lambda_2, lambda_3 p"]);
    let mut right = vec![false, true, false, false];
    right.extend(extras.iter().map(|_| false));
    right.extend([false, true, true, true, true, true, false]);
    table(&headers, &right, rows)
}

/// `-2.01 [-2.05, -1.97]; -1.98, -1.95` (the first with its interval), `-` without spectra.
fn eigenvalue_exponents(fits: &[super::stats::PowerLawFit]) -> String {
    let Some(first) = fits.first() else { return "-".to_owned() };
    let mut text = exponent_ci(first);
    let rest: Vec<String> = fits[1..].iter().map(|f| fixed(f.exponent, 3)).collect();
    if !rest.is_empty() {
        text.push_str("; ");
        text.push_str(&rest.join(", "));
    }
    text
}

/// A fitted exponent with its interval, `-2.000 [-2.017, -1.983]`, or `n/a` when undetermined.
fn exponent_ci(fit: &super::stats::PowerLawFit) -> String {
    if fit.exponent.is_finite() {
        format!("{} [{}, {}]", fixed(fit.exponent, 3), fixed(fit.ci_low, 3), fixed(fit.ci_high, 3))
    } else {
        "n/a".to_owned()
    }
}

fn trial_table(groups: &[TrialGroup]) -> String {
    let rows = groups
        .iter()
        .map(|t| {
            let rel = mean_ci(&t.rel_l2);
            vec![
                if t.eps.is_nan() { "-".to_owned() } else { format!("{}", t.eps) },
                sci(t.l2_mean_error),
                sci(t.max_boundary_error),
                sci(t.l2_variance),
                sci(t.max_boundary_variance),
                rel,
                t.n_trials.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "eps",
            "L2 mean error",
            "max boundary error",
            "L2 variance",
            "max boundary variance",
            "rel L2 mean [95% CI]",
            "n",
        ],
        &[true; 7],
        rows,
    )
}

fn sci(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3e}")
    } else {
        "n/a".to_owned()
    }
}

/// `v` with `digits` decimals; "-0.000" is written "0.000".
fn fixed(v: f64, digits: usize) -> String {
    if v.is_finite() {
        let s = format!("{v:.digits$}");
        if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
            s[1..].to_owned()
        } else {
            s
        }
    } else {
        "n/a".to_owned()
    }
}

/// First line of `s`, at most `max` characters, with table pipes escaped.
fn one_line(s: &str, max: usize) -> String {
    let line = s.lines().next().unwrap_or("").trim();
    let mut out: String = line.chars().take(max).collect();
    if line.chars().count() > max || s.lines().nth(1).is_some() {
        out.push_str(" ...");
    }
    out
}

/// A Markdown table with every column padded to its widest cell; `right[j]` right-aligns
/// column j (numbers).
fn table(headers: &[&str], right: &[bool], rows: Vec<Vec<String>>) -> String {
    let escape = |s: &str| s.replace('|', "\\|");
    let headers: Vec<String> = headers.iter().map(|h| escape(h)).collect();
    let rows: Vec<Vec<String>> =
        rows.into_iter().map(|r| r.iter().map(|c| escape(c)).collect()).collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count().max(3)).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let pad = |cell: &str, j: usize| {
        let fill = " ".repeat(widths[j] - cell.chars().count());
        if right[j] {
            format!("{fill}{cell}")
        } else {
            format!("{cell}{fill}")
        }
    };
    let mut out = String::new();
    let line = |cells: Vec<String>| format!("| {} |\n", cells.join(" | "));
    out.push_str(&line(headers.iter().enumerate().map(|(j, h)| pad(h, j)).collect()));
    out.push_str(&line(
        widths
            .iter()
            .enumerate()
            .map(|(j, &w)| {
                if right[j] {
                    format!("{}:", "-".repeat(w - 1))
                } else {
                    "-".repeat(w)
                }
            })
            .collect(),
    ));
    for row in rows {
        out.push_str(&line(row.iter().enumerate().map(|(j, c)| pad(c, j)).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_columns_line_up() {
        let t = table(
            &["a", "number"],
            &[false, true],
            vec![vec!["long cell".into(), "1".into()], vec!["x|y".into(), "12345678".into()]],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4);
        let len = lines[0].chars().count();
        assert!(lines.iter().all(|l| l.chars().count() == len), "{t}");
        assert!(t.contains("x\\|y"));
        assert!(lines[1].ends_with(": |"), "{t}");
    }

    #[test]
    fn negative_zero_is_not_printed() {
        assert_eq!(fixed(-0.0001, 3), "0.000");
        assert_eq!(fixed(-0.01, 3), "-0.010");
        assert_eq!(fixed(f64::NAN, 3), "n/a");
    }
}
