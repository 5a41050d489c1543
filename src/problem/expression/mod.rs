//! `expression`: any PDE written in the sweep file, with its forcing manufactured from an exact
//! solution.
//!
//! ```yaml
//! problem:
//!   kind: expression
//!   inputs: {x: [0, 1]}
//!   constants: {eps: 0.25}
//!   solution: sin(2*pi*x) + eps*sin(2*pi*x/eps)
//!   operator: -(2 + sin(2*pi*x/eps))*u_xx - (2*pi/eps)*cos(2*pi*x/eps)*u_x
//! ```
//!
//! The residual is N[u_net] - N[u_exact]: the operator applied to the network's streams minus
//! the operator applied to the exact solution, whose derivatives are those of the parsed
//! `solution` tree differentiated symbolically ([`tree::Expr::derivative`]), so the forcing
//! never has to be written. The other terms take their data from `solution` (u - u_exact on the
//! boundary and at t = t0, u_t - d u_exact/dt at t = t0). The streams the PDE term reads are
//! the u-derivatives that appear in the operator, so the per-term stream layout applies as to
//! the built-ins. Constants are per member ([E, 1] columns): jobs that differ in constants
//! (eps, ...) train in one batch.
//!
//! Inputs are ordered t first (an input named `t` is time), then the others alphabetically;
//! that is the column order of `eval/x` and `ntk/<term>/x`.
//!
//! # Reference
//! Manufactured solutions: Roache (2002), "Code verification by the method of manufactured
//! solutions", J. Fluids Eng. 124(1); the symbolic rules in [`tree`].

mod parse;
mod program;
mod tree;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::{Domain, Equation, Region, TensorOpts, TermSpec};
use crate::collocation::{self, Sampling};
use crate::model::streams::{Stream, StreamLayout, Streams};
use crate::validation::Invalid;
use parse::{parse, Names};
use program::Program;
use tree::{Expr, Src};

/// Loss terms an expression problem may have, in the order they always take (which fixes
/// each term's random stream, as for the built-ins).
const TERM_ORDER: &[&str] = &["residual", "data", "initial", "initial_velocity", "boundary"];

/// Names an input or a constant cannot have.
const RESERVED: &[&str] = &["u", "pi"];

/// The `problem:` section of `kind: expression`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpressionConfig {
    /// What the job files' `problem` attribute says (default `expression`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Box bounds per input, e.g. `{t: [0, 1], x: [0, 1]}`.
    pub inputs: BTreeMap<String, [f64; 2]>,
    /// Named numbers the expressions use (each sweepable as `problem.constants.<name>`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub constants: BTreeMap<String, f64>,
    /// Exact (or manufactured) solution: an expression of the inputs and constants.
    pub solution: String,
    /// The PDE operator N applied to u: an expression of inputs, constants, u and its
    /// derivatives up to second order.
    pub operator: String,
    /// Loss terms (default: residual and boundary, plus initial for a time input, plus
    /// initial_velocity when the operator has u_tt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms: Option<Vec<String>>,
}

/// An expression problem's text turned into trees.
struct Parsed {
    domain: Domain,
    terms: Vec<TermSpec>,
    solution: Expr,
    operator: Expr,
}

impl Parsed {
    /// The forcing f = N[u_exact]: the operator with the solution and its symbolic
    /// derivatives put in for u and its derivatives.
    fn forcing(&self) -> Expr {
        let sol = &self.solution;
        self.operator.substitute(&|s| match s {
            Stream::Value => sol.clone(),
            Stream::D(i) => sol.derivative(i),
            Stream::DD(i, j) => sol.derivative(i).derivative(j),
            Stream::DDD(i, j, k) => sol.derivative(i).derivative(j).derivative(k),
        })
    }

    /// d u_exact / dt, when a term reads it.
    fn solution_t(&self) -> Option<Expr> {
        self.terms.iter().any(|t| t.name == "initial_velocity").then(|| self.solution.derivative(0))
    }

    /// The operator's streams, closed (a second derivative needs its first derivatives), plus
    /// u_t for an initial velocity term.
    fn layout(&self) -> StreamLayout {
        let dim = self.domain.dim();
        let mut first = Vec::new();
        let mut second = Vec::new();
        for s in self.operator.streams() {
            match s {
                Stream::Value => {}
                Stream::D(i) => first.push(i),
                Stream::DD(i, j) => {
                    first.extend([i, j]);
                    second.push((i, j));
                }
                Stream::DDD(..) => unreachable!("operators are parsed up to second derivatives"),
            }
        }
        if self.terms.iter().any(|t| t.name == "initial_velocity") {
            first.push(0);
        }
        first.sort_unstable();
        first.dedup();
        second.sort_unstable();
        second.dedup();
        StreamLayout { dim, first, second, third: Vec::new() }
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !RESERVED.contains(&name)
        && !name.starts_with("u_")
        && tree::Func::by_name(name).is_none()
}

impl ExpressionConfig {
    /// Input names in input order: t first, then the others alphabetically.
    fn input_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.inputs.keys().filter(|n| *n == "t").cloned().collect();
        names.extend(self.inputs.keys().filter(|n| *n != "t").cloned());
        names
    }

    fn constant_names(&self) -> Vec<String> {
        self.constants.keys().cloned().collect()
    }

    fn constant_values(&self) -> Vec<f64> {
        self.constants.values().copied().collect()
    }

    pub fn input_dim(&self) -> usize {
        self.inputs.len()
    }

    /// The value of the constant named eps, if there is one (`loss.eps_rescale`, the `eps`
    /// attribute).
    pub fn eps(&self) -> Option<f64> {
        self.constants.get("eps").copied()
    }

    /// The job files' `problem` attribute.
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or("expression")
    }

    /// The loss terms (for a configuration that does not parse: residual and boundary, so
    /// that the other checks can still run; the parse error is reported by `validate`).
    pub fn terms(&self) -> Vec<TermSpec> {
        self.parsed().map(|p| p.terms).unwrap_or_else(|_| vec![TermSpec::residual(100), TermSpec::boundary(2)])
    }

    /// Whether the first input is time `t` (false for a configuration whose inputs are invalid).
    pub fn time_dependent(&self) -> bool {
        self.domain().is_ok_and(|d| d.time_dependent)
    }

    fn domain(&self) -> Result<Domain, Vec<Invalid>> {
        let mut out = Vec::new();
        let names = self.input_names();
        if !(1..=2).contains(&names.len()) {
            out.push(Invalid::new("problem.inputs", format!("give one or two inputs (e.g. {{x: [0, 1]}} or {{t: [0, 1], x: [0, 1]}}), got {}", names.len())));
        }
        if names == ["t"] {
            out.push(Invalid::new("problem.inputs", "a time input `t` needs a space input beside it (e.g. {t: [0, 1], x: [0, 1]})"));
        }
        for name in &names {
            let [lo, hi] = self.inputs[name];
            if !valid_name(name) || name.contains('_') {
                out.push(Invalid::new(format!("problem.inputs.{name}"), format!("`{name}` cannot name an input: use letters and digits, starting with a letter, and not u, pi or a function name")));
            } else if !(lo.is_finite() && hi.is_finite() && lo < hi) {
                out.push(Invalid::new(format!("problem.inputs.{name}"), format!("bounds must be finite numbers [lo, hi] with lo < hi, got [{lo}, {hi}]")));
            }
        }
        if !out.is_empty() {
            return Err(out);
        }
        let (lo, hi) = names.iter().map(|n| (self.inputs[n][0], self.inputs[n][1])).unzip();
        Ok(Domain { lo, hi, time_dependent: names[0] == "t" })
    }

    fn check_constants(&self, inputs: &[String]) -> Vec<Invalid> {
        let mut out = Vec::new();
        for (name, v) in &self.constants {
            let path = format!("problem.constants.{name}");
            if !valid_name(name) {
                out.push(Invalid::new(path, format!("`{name}` cannot name a constant: use letters, digits and _, starting with a letter, and not u, u_..., pi or a function name")));
            } else if inputs.contains(name) {
                out.push(Invalid::new(path, format!("`{name}` is already an input")));
            } else if !v.is_finite() {
                out.push(Invalid::new(path, format!("must be a finite number, got {v}")));
            }
        }
        out
    }

    fn parse_text(&self, src: Src, inputs: &[String]) -> Result<Expr, Invalid> {
        let constants = self.constant_names();
        let text = match src {
            Src::Solution => &self.solution,
            Src::Operator => &self.operator,
        };
        let names = Names { inputs, constants: &constants, u: src == Src::Operator };
        let e = parse(text, src, &names).map_err(|e| at_column(src, e.col, e.message))?;
        if src == Src::Operator && e.streams().is_empty() {
            return Err(Invalid::new("problem.operator", "the operator does not contain u or a derivative of u (u, u_x, u_xx, ...)"));
        }
        Ok(e)
    }

    fn term_specs(&self, domain: &Domain, operator: &Expr) -> Result<Vec<TermSpec>, Invalid> {
        let time = domain.time_dependent;
        let names: Vec<String> = match &self.terms {
            Some(list) => list.clone(),
            None => {
                let mut v = vec!["residual".to_string(), "boundary".to_string()];
                if time {
                    v.push("initial".into());
                    if operator.streams().contains(&Stream::DD(0, 0)) {
                        v.push("initial_velocity".into());
                    }
                }
                v
            }
        };
        let bad = |m: String| Err(Invalid::new("problem.terms", m));
        for (k, n) in names.iter().enumerate() {
            if !TERM_ORDER.contains(&n.as_str()) {
                return bad(format!("unknown term `{n}`; terms are {}", TERM_ORDER.join(", ")));
            }
            if names[..k].contains(n) {
                return bad(format!("term `{n}` is listed twice"));
            }
            if n.starts_with("initial") && !time {
                return bad(format!("term `{n}` needs a time input named t"));
            }
        }
        if names.is_empty() {
            return bad("list at least one term".into());
        }
        let two_d = domain.dim() == 2;
        Ok(TERM_ORDER
            .iter()
            .filter(|t| names.iter().any(|n| n == *t))
            .map(|t| match *t {
                "residual" => TermSpec::residual(if two_d { 400 } else { 100 }),
                "data" => TermSpec::data(if two_d { 400 } else { 100 }),
                "initial" => TermSpec::initial(100),
                "initial_velocity" => TermSpec::initial_velocity(100),
                _ if !two_d => TermSpec::boundary(2),
                _ if time => TermSpec::boundary(100),
                _ => TermSpec::boundary(200),
            })
            .collect())
    }

    fn parsed(&self) -> Result<Parsed, Vec<Invalid>> {
        let domain = self.domain()?;
        let inputs = self.input_names();
        let mut errors = self.check_constants(&inputs);
        let solution = self.parse_text(Src::Solution, &inputs).map_err(|e| errors.push(e)).ok();
        let operator = self.parse_text(Src::Operator, &inputs).map_err(|e| errors.push(e)).ok();
        let terms = operator.as_ref().and_then(|op| self.term_specs(&domain, op).map_err(|e| errors.push(e)).ok());
        match (solution, operator, terms) {
            (Some(solution), Some(operator), Some(terms)) if errors.is_empty() => Ok(Parsed { domain, terms, solution, operator }),
            _ => Err(errors),
        }
    }

    /// Every check, down to the values: the solution, its time derivative and the forcing
    /// must be finite at the points the terms sample (grids over their regions, end points
    /// included).
    pub fn validate(&self) -> Vec<Invalid> {
        let p = match self.parsed() {
            Ok(p) => p,
            Err(e) => return e,
        };
        if let Some(name) = &self.name {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                return vec![Invalid::new("problem.name", "use letters, digits, _ and - only (it names groups in summary.h5)")];
            }
        }
        let consts = self.constant_values();
        let mut checks: Vec<(Expr, Region, &str)> = vec![(p.solution.clone(), Region::Interior, "")];
        for t in &p.terms {
            checks.push((p.solution.clone(), t.region, ""));
        }
        checks.push((p.forcing(), Region::Interior, " in the forcing N[u_exact] (the operator applied to the solution)"));
        if let Some(st) = p.solution_t() {
            checks.push((st, Region::Initial, " in d/dt of the solution (initial velocity data)"));
        }
        for (e, region, what) in checks {
            if let Some(inv) = self.first_non_finite(&e, &p.domain, region, &consts, what) {
                return vec![inv];
            }
        }
        Vec::new()
    }

    fn first_non_finite(&self, e: &Expr, domain: &Domain, region: Region, consts: &[f64], what: &str) -> Option<Invalid> {
        let n = match (domain.dim(), region) {
            (1, Region::Boundary) => 2,
            (1, _) => 65,
            (_, Region::Interior) => 289,
            _ => 64,
        };
        let mut rng = crate::rng::stream(0, crate::rng::Purpose::Collocation, 0);
        let points = collocation::sample(domain, region, n, Sampling::Grid, &mut rng);
        let d = domain.dim();
        for p in points.chunks(d) {
            if let Err((at, v)) = e.eval(p, consts) {
                let names = self.input_names();
                let point: Vec<String> = names.iter().zip(p).map(|(n, v)| format!("{n} = {v}")).collect();
                let text = match at.src {
                    Src::Solution => &self.solution,
                    Src::Operator => &self.operator,
                };
                let snippet: String = text.chars().skip(at.col - 1).take(24).collect();
                let constants: Vec<String> = self.constants.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                let with = if constants.is_empty() { String::new() } else { format!(" with {}", constants.join(", ")) };
                return Some(at_column(
                    at.src,
                    at.col,
                    format!("`{}...` is {v} at {}{with}{what}; the problem must be finite at every sampled point", snippet.trim_end(), point.join(", ")),
                ));
            }
        }
        None
    }
}

/// An error at column `col` of expression `src`.
fn at_column(src: Src, col: usize, message: String) -> Invalid {
    Invalid::at_column(format!("problem.{}", src.key()), col, message)
}

/// Output slots of an expression problem's [`Program`].
const SOLUTION: usize = 0;
const OPERATOR: usize = 1;
const FORCING: usize = 2;
const SOLUTION_T: usize = 3;

/// The runtime expression problem of a batch (all members share the expressions; each has
/// its own constants).
pub struct Expression {
    domain: Domain,
    terms: Vec<TermSpec>,
    layout: StreamLayout,
    program: Program,
    /// Forcing identically zero after simplification (then N[u] alone is the residual).
    homogeneous: bool,
    eps: Option<Tensor>,
}

impl Expression {
    pub fn new(members: &[ExpressionConfig], opts: TensorOpts) -> Self {
        let c0 = &members[0];
        let p = c0.parsed().unwrap_or_else(|e| panic!("expression problems are validated before they are built: {e:?}"));
        let forcing = p.forcing();
        let solution_t = p.solution_t().unwrap_or_else(|| tree::num(0.0, p.solution.at));
        let consts: Vec<Vec<f64>> = members.iter().map(|m| m.constant_values()).collect();
        let program = Program::new(&[&p.solution, &p.operator, &forcing, &solution_t], &consts, opts);
        let eps = c0.constants.contains_key("eps").then(|| opts.column(&members.iter().map(|m| m.constants["eps"]).collect::<Vec<_>>()));
        Expression { layout: p.layout(), domain: p.domain, terms: p.terms, program, homogeneous: forcing.as_num() == Some(0.0), eps }
    }
}

impl Equation for Expression {
    fn domain(&self) -> Domain {
        self.domain.clone()
    }

    fn terms(&self) -> &[TermSpec] {
        &self.terms
    }

    fn layout(&self) -> StreamLayout {
        self.layout.clone()
    }

    fn solution(&self, x: &Tensor) -> Tensor {
        self.program.eval(&[SOLUTION], x, None).remove(0)
    }

    fn solution_t(&self, x: &Tensor) -> Tensor {
        self.program.eval(&[SOLUTION_T], x, None).remove(0)
    }

    fn operator(&self, x: &Tensor, u: &Streams) -> Tensor {
        self.program.eval(&[OPERATOR], x, Some(u)).remove(0)
    }

    fn forcing(&self, x: &Tensor) -> Option<Tensor> {
        (!self.homogeneous).then(|| self.program.eval(&[FORCING], x, None).remove(0))
    }

    /// N[u] - f in one pass over the program: the operator and the forcing share their
    /// coefficient sub-expressions (`sin(2*pi*x/eps)` is computed once).
    fn pde_residual(&self, x: &Tensor, u: &Streams) -> Tensor {
        if self.homogeneous {
            return self.operator(x, u);
        }
        let mut v = self.program.eval(&[OPERATOR, FORCING], x, Some(u));
        let f = v.pop().expect("two outputs");
        v.pop().expect("two outputs") - f
    }

    fn eps(&self) -> Option<Tensor> {
        self.eps.as_ref().map(Tensor::shallow_clone)
    }
}

#[cfg(test)]
mod tests;
