//! Expression trees: what the parser builds, what symbolic differentiation transforms, and
//! what the host evaluator checks for non-finite values before anything trains.
//!
//! Every node remembers where it came from ([`At`]: which YAML value and which column of it),
//! so that an error found in a derived tree (the forcing N[u_exact] is the operator with the
//! solution's derivatives put in for u) still points at the text the user wrote.
//!
//! Trees are built through the smart constructors ([`add`], [`mul`], ...), which fold numbers
//! and drop the zeros and ones that differentiation produces, so derivative trees stay small.

use crate::model::streams::Stream;

/// Which expression of the `problem:` section a node comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Src {
    Solution,
    Operator,
}

impl Src {
    /// The YAML key of the expression.
    pub fn key(self) -> &'static str {
        match self {
            Src::Solution => "solution",
            Src::Operator => "operator",
        }
    }
}

/// Where a node was written: expression and 1-based column (character) in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct At {
    pub src: Src,
    pub col: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Func {
    Sin,
    Cos,
    Tan,
    Exp,
    Log,
    Sqrt,
    Abs,
    Tanh,
    Sinh,
    Cosh,
    /// sign(a): the derivative of abs; never written by users.
    Sign,
}

impl Func {
    /// The functions a user may call, by name.
    pub const NAMED: &'static [(&'static str, Func)] = &[
        ("sin", Func::Sin),
        ("cos", Func::Cos),
        ("tan", Func::Tan),
        ("exp", Func::Exp),
        ("log", Func::Log),
        ("sqrt", Func::Sqrt),
        ("abs", Func::Abs),
        ("tanh", Func::Tanh),
        ("sinh", Func::Sinh),
        ("cosh", Func::Cosh),
    ];

    pub fn by_name(name: &str) -> Option<Func> {
        Func::NAMED.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    pub fn apply(self, a: f64) -> f64 {
        match self {
            Func::Sin => a.sin(),
            Func::Cos => a.cos(),
            Func::Tan => a.tan(),
            Func::Exp => a.exp(),
            Func::Log => a.ln(),
            Func::Sqrt => a.sqrt(),
            Func::Abs => a.abs(),
            Func::Tanh => a.tanh(),
            Func::Sinh => a.sinh(),
            Func::Cosh => a.cosh(),
            Func::Sign => {
                if a > 0.0 {
                    1.0
                } else if a < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
}

impl Op {
    pub fn apply(self, a: f64, b: f64) -> f64 {
        match self {
            Op::Add => a + b,
            Op::Sub => a - b,
            Op::Mul => a * b,
            Op::Div => a / b,
            Op::Pow => a.powf(b),
        }
    }
}

/// A name in an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Var {
    /// Input i (coordinate i of the points; t is input 0 when there is one).
    Input(usize),
    /// Constant k (per member).
    Const(usize),
    /// The network's u or one of its derivatives (operator only).
    U(Stream),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Num(f64),
    Var(Var),
    Neg(Box<Expr>),
    Bin(Op, Box<Expr>, Box<Expr>),
    Call(Func, Box<Expr>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub node: Node,
    pub at: At,
}

pub fn num(v: f64, at: At) -> Expr {
    Expr { node: Node::Num(v), at }
}

pub fn var(v: Var, at: At) -> Expr {
    Expr { node: Node::Var(v), at }
}

impl Expr {
    pub fn as_num(&self) -> Option<f64> {
        match self.node {
            Node::Num(v) => Some(v),
            _ => None,
        }
    }

    fn is(&self, v: f64) -> bool {
        self.as_num() == Some(v)
    }

    /// True when some node satisfies `f`.
    pub fn any(&self, f: &dyn Fn(&Node) -> bool) -> bool {
        f(&self.node)
            || match &self.node {
                Node::Num(_) | Node::Var(_) => false,
                Node::Neg(a) | Node::Call(_, a) => a.any(f),
                Node::Bin(_, a, b) => a.any(f) || b.any(f),
            }
    }

    /// True when the value changes from point to point (it reads an input or u).
    pub fn varies(&self) -> bool {
        self.any(&|n| matches!(n, Node::Var(Var::Input(_) | Var::U(_))))
    }

    /// The u-streams the expression reads, in order of first appearance.
    pub fn streams(&self) -> Vec<Stream> {
        let mut out = Vec::new();
        self.visit(&mut |n| {
            if let Node::Var(Var::U(s)) = n {
                if !out.contains(s) {
                    out.push(*s);
                }
            }
        });
        out
    }

    fn visit(&self, f: &mut dyn FnMut(&Node)) {
        f(&self.node);
        match &self.node {
            Node::Num(_) | Node::Var(_) => {}
            Node::Neg(a) | Node::Call(_, a) => a.visit(f),
            Node::Bin(_, a, b) => {
                a.visit(f);
                b.visit(f);
            }
        }
    }

    /// The tree with every u-stream replaced by `by(stream)`.
    pub fn substitute(&self, by: &dyn Fn(Stream) -> Expr) -> Expr {
        match &self.node {
            Node::Var(Var::U(s)) => by(*s),
            Node::Num(_) | Node::Var(_) => self.clone(),
            Node::Neg(a) => neg(a.substitute(by), self.at),
            Node::Call(f, a) => call(*f, a.substitute(by), self.at),
            Node::Bin(op, a, b) => bin(*op, a.substitute(by), b.substitute(by), self.at),
        }
    }

    /// d/dx_i of a tree without u (symbolic; exact up to the rounding of its evaluation).
    ///
    /// # Reference
    /// The usual rules: sum, product, quotient, chain; d a^b = b a^(b-1) a' when b does not
    /// depend on x_i, else a^b (b' log a + b a' / a); d|a| = sign(a) a'.
    pub fn derivative(&self, i: usize) -> Expr {
        let at = self.at;
        match &self.node {
            Node::Num(_) | Node::Var(Var::Const(_)) => num(0.0, at),
            Node::Var(Var::Input(k)) => num(if *k == i { 1.0 } else { 0.0 }, at),
            Node::Var(Var::U(_)) => unreachable!("the exact solution does not contain u"),
            Node::Neg(a) => neg(a.derivative(i), at),
            Node::Bin(op, a, b) => {
                let (da, db) = (a.derivative(i), b.derivative(i));
                let (a, b) = ((**a).clone(), (**b).clone());
                match op {
                    Op::Add => add(da, db, at),
                    Op::Sub => sub(da, db, at),
                    Op::Mul => add(mul(da, b.clone(), at), mul(a, db, at), at),
                    // (a/b)' = a'/b - a b' / b^2
                    Op::Div => sub(div(da, b.clone(), at), div(mul(a, db, at), pow(b, num(2.0, at), at), at), at),
                    Op::Pow if !b.depends_on(i) => {
                        let lower = pow(a, sub(b.clone(), num(1.0, at), at), at);
                        mul(mul(b, lower, at), da, at)
                    }
                    Op::Pow => {
                        let whole = pow(a.clone(), b.clone(), at);
                        let log_a = call(Func::Log, a.clone(), at);
                        mul(whole, add(mul(db, log_a, at), div(mul(b, da, at), a, at), at), at)
                    }
                }
            }
            Node::Call(f, a) => {
                let da = a.derivative(i);
                let a = (**a).clone();
                let outer = match f {
                    Func::Sin => call(Func::Cos, a, at),
                    Func::Cos => neg(call(Func::Sin, a, at), at),
                    Func::Tan => div(num(1.0, at), pow(call(Func::Cos, a, at), num(2.0, at), at), at),
                    Func::Exp => call(Func::Exp, a, at),
                    Func::Log => div(num(1.0, at), a, at),
                    Func::Sqrt => div(num(0.5, at), call(Func::Sqrt, a, at), at),
                    Func::Abs => call(Func::Sign, a, at),
                    Func::Tanh => sub(num(1.0, at), pow(call(Func::Tanh, a, at), num(2.0, at), at), at),
                    Func::Sinh => call(Func::Cosh, a, at),
                    Func::Cosh => call(Func::Sinh, a, at),
                    Func::Sign => num(0.0, at),
                };
                mul(outer, da, at)
            }
        }
    }

    fn depends_on(&self, i: usize) -> bool {
        self.any(&|n| matches!(n, Node::Var(Var::Input(k)) if *k == i))
    }

    /// Value at one point. `inputs[i]` is input i, `consts[k]` constant k; u must have been
    /// substituted. Err: the innermost node whose value is not finite although its operands
    /// are, with that value.
    pub fn eval(&self, inputs: &[f64], consts: &[f64]) -> Result<f64, (At, f64)> {
        let v = match &self.node {
            Node::Num(v) => *v,
            Node::Var(Var::Input(i)) => inputs[*i],
            Node::Var(Var::Const(k)) => consts[*k],
            Node::Var(Var::U(_)) => unreachable!("u is substituted before host evaluation"),
            Node::Neg(a) => -a.eval(inputs, consts)?,
            Node::Call(f, a) => f.apply(a.eval(inputs, consts)?),
            Node::Bin(op, a, b) => op.apply(a.eval(inputs, consts)?, b.eval(inputs, consts)?),
        };
        if v.is_finite() {
            Ok(v)
        } else {
            Err((self.at, v))
        }
    }
}

pub fn neg(a: Expr, at: At) -> Expr {
    match a.node {
        Node::Num(v) => num(-v, at),
        Node::Neg(inner) => *inner,
        node => Expr { node: Node::Neg(Box::new(Expr { node, at: a.at })), at },
    }
}

pub fn call(f: Func, a: Expr, at: At) -> Expr {
    match a.as_num() {
        Some(v) if f.apply(v).is_finite() => num(f.apply(v), at),
        _ => Expr { node: Node::Call(f, Box::new(a)), at },
    }
}

pub fn bin(op: Op, a: Expr, b: Expr, at: At) -> Expr {
    match op {
        Op::Add => add(a, b, at),
        Op::Sub => sub(a, b, at),
        Op::Mul => mul(a, b, at),
        Op::Div => div(a, b, at),
        Op::Pow => pow(a, b, at),
    }
}

/// Both operands numbers: the folded value when it is finite (a non-finite one is kept as a
/// node, so that the check of the sampled points reports it where it was written).
fn fold(op: Op, a: &Expr, b: &Expr) -> Option<f64> {
    let v = op.apply(a.as_num()?, b.as_num()?);
    v.is_finite().then_some(v)
}

fn raw(op: Op, a: Expr, b: Expr, at: At) -> Expr {
    Expr { node: Node::Bin(op, Box::new(a), Box::new(b)), at }
}

pub fn add(a: Expr, b: Expr, at: At) -> Expr {
    if let Some(v) = fold(Op::Add, &a, &b) {
        return num(v, at);
    }
    if a.is(0.0) {
        return b;
    }
    if b.is(0.0) {
        return a;
    }
    raw(Op::Add, a, b, at)
}

pub fn sub(a: Expr, b: Expr, at: At) -> Expr {
    if let Some(v) = fold(Op::Sub, &a, &b) {
        return num(v, at);
    }
    if b.is(0.0) {
        return a;
    }
    if a.is(0.0) {
        return neg(b, at);
    }
    raw(Op::Sub, a, b, at)
}

pub fn mul(a: Expr, b: Expr, at: At) -> Expr {
    if let Some(v) = fold(Op::Mul, &a, &b) {
        return num(v, at);
    }
    if a.is(0.0) || b.is(0.0) {
        return num(0.0, at);
    }
    if a.is(1.0) {
        return b;
    }
    if b.is(1.0) {
        return a;
    }
    if a.is(-1.0) {
        return neg(b, at);
    }
    if b.is(-1.0) {
        return neg(a, at);
    }
    raw(Op::Mul, a, b, at)
}

pub fn div(a: Expr, b: Expr, at: At) -> Expr {
    if let Some(v) = fold(Op::Div, &a, &b) {
        return num(v, at);
    }
    if a.is(0.0) && !b.is(0.0) {
        return num(0.0, at);
    }
    if b.is(1.0) {
        return a;
    }
    raw(Op::Div, a, b, at)
}

pub fn pow(a: Expr, b: Expr, at: At) -> Expr {
    if let Some(v) = fold(Op::Pow, &a, &b) {
        return num(v, at);
    }
    if b.is(0.0) {
        return num(1.0, at);
    }
    if b.is(1.0) {
        return a;
    }
    raw(Op::Pow, a, b, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: At = At { src: Src::Solution, col: 1 };

    fn x() -> Expr {
        var(Var::Input(0), AT)
    }

    #[test]
    fn smart_constructors_fold_numbers_and_drop_neutral_elements() {
        assert_eq!(add(num(2.0, AT), num(3.0, AT), AT).as_num(), Some(5.0));
        assert_eq!(mul(num(0.0, AT), x(), AT).as_num(), Some(0.0));
        assert_eq!(mul(num(1.0, AT), x(), AT), x());
        assert_eq!(pow(x(), num(1.0, AT), AT), x());
        assert_eq!(neg(neg(x(), AT), AT), x());
        assert_eq!(sub(num(0.0, AT), x(), AT), neg(x(), AT));
        // A non-finite fold is kept as a node, to be reported where it was written.
        assert!(div(num(1.0, AT), num(0.0, AT), AT).as_num().is_none());
    }

    #[test]
    fn derivatives_match_central_differences() {
        // f(x) = sin(3 x) exp(x) / (1 + x^2) + sqrt(x) + x^x + abs(x - 0.5) + tan(x) tanh(x) + cosh(x) - sinh(x) + log(x)
        let xs = x();
        let n = |v: f64| num(v, AT);
        let f = [
            div(mul(call(Func::Sin, mul(n(3.0), xs.clone(), AT), AT), call(Func::Exp, xs.clone(), AT), AT), add(n(1.0), pow(xs.clone(), n(2.0), AT), AT), AT),
            call(Func::Sqrt, xs.clone(), AT),
            pow(xs.clone(), xs.clone(), AT),
            call(Func::Abs, sub(xs.clone(), n(0.5), AT), AT),
            mul(call(Func::Tan, xs.clone(), AT), call(Func::Tanh, xs.clone(), AT), AT),
            sub(call(Func::Cosh, xs.clone(), AT), call(Func::Sinh, xs.clone(), AT), AT),
            call(Func::Log, xs.clone(), AT),
        ]
        .into_iter()
        .reduce(|a, b| add(a, b, AT))
        .unwrap();
        let (d1, d2) = (f.derivative(0), f.derivative(0).derivative(0));
        for &p in &[0.3, 0.7, 1.1] {
            let v = |e: &Expr, p: f64| e.eval(&[p], &[]).unwrap();
            let (h1, h2) = (1e-6, 1e-4);
            let fd1 = (v(&f, p + h1) - v(&f, p - h1)) / (2.0 * h1);
            let fd2 = (v(&f, p + h2) - 2.0 * v(&f, p) + v(&f, p - h2)) / (h2 * h2);
            assert!((v(&d1, p) - fd1).abs() < 1e-7 * fd1.abs().max(1.0), "f' at {p}: {} vs {fd1}", v(&d1, p));
            assert!((v(&d2, p) - fd2).abs() < 1e-5 * fd2.abs().max(1.0), "f'' at {p}: {} vs {fd2}", v(&d2, p));
        }
        // Constants and other inputs differentiate to zero.
        let g = mul(var(Var::Const(0), AT), var(Var::Input(1), AT), AT);
        assert_eq!(g.derivative(0).as_num(), Some(0.0));
    }

    #[test]
    fn host_evaluation_reports_the_innermost_non_finite_node() {
        // 1 + log(x) at x = 0: log gives -inf (column 5), the sum only propagates it.
        let e = add(num(1.0, At { src: Src::Operator, col: 1 }), call(Func::Log, x(), At { src: Src::Operator, col: 5 }), At { src: Src::Operator, col: 3 });
        let (at, v) = e.eval(&[0.0], &[]).unwrap_err();
        assert_eq!((at.src, at.col), (Src::Operator, 5));
        assert_eq!(v, f64::NEG_INFINITY);
        assert!((e.eval(&[1.0], &[]).unwrap() - 1.0).abs() < 1e-15);
    }
}
