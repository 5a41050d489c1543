//! Expression trees compiled for tensors: a straight-line program evaluated on [E, N] point
//! tensors, with every per-member constant sub-expression computed once, at build time.
//!
//! Two things make an expression problem cost about what a hand-written one costs:
//! - a sub-tree that reads only constants (`2*pi/eps`, `c^2`) is evaluated in f64 per member
//!   when the batch is built and enters as one [E, 1] column (members of a batch have their
//!   own constants: eps differs between them);
//! - equal sub-trees are computed once (common sub-expressions: symbolic derivatives repeat
//!   `cos(2*pi*x/eps)` in u' and u''), so a step runs each distinct operation once.
//!
//! # Shapes
//! Columns [E, 1]; inputs, u-streams and results [E, N]; a result that reads no point is
//! broadcast to [E, N] at the end.

use std::collections::HashMap;

use tch::Tensor;

use super::tree::{Expr, Func, Node, Op, Var};
use crate::model::streams::{Stream, Streams};
use crate::tensor::TensorOpts;

/// One operation; operands are earlier slots. Numbers are kept as their bits so that equal
/// operations hash equal (common sub-expressions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Ins {
    Num(u64),
    Column(usize),
    Input(usize),
    U(Stream),
    Neg(usize),
    Bin(Op, usize, usize),
    Call(Func, usize),
}

/// Several expressions over the same inputs and constants, compiled together (they share
/// columns and sub-expressions).
pub struct Program {
    ins: Vec<Ins>,
    /// Per-member constant columns, [E, 1].
    columns: Vec<Tensor>,
    /// Slot of each compiled expression.
    outputs: Vec<usize>,
}

struct Builder<'a> {
    ins: Vec<Ins>,
    seen: HashMap<Ins, usize>,
    columns: Vec<Tensor>,
    column_of: HashMap<String, usize>,
    /// consts[e][k]: member e's constant k.
    consts: &'a [Vec<f64>],
    opts: TensorOpts,
}

impl Builder<'_> {
    fn push(&mut self, i: Ins) -> usize {
        if let Some(&slot) = self.seen.get(&i) {
            return slot;
        }
        self.ins.push(i);
        self.seen.insert(i, self.ins.len() - 1);
        self.ins.len() - 1
    }

    fn compile(&mut self, e: &Expr) -> usize {
        if let Node::Num(v) = e.node {
            return self.push(Ins::Num(v.to_bits()));
        }
        if !e.varies() {
            // Per-member constant: evaluate in f64 for every member, one [E, 1] column.
            let values: Vec<f64> = self.consts.iter().map(|c| e.eval(&[], c).unwrap_or(f64::NAN)).collect();
            let name = format!("{:?}", values.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
            let c = match self.column_of.get(&name) {
                Some(&c) => c,
                None => {
                    self.columns.push(self.opts.column(&values));
                    self.column_of.insert(name, self.columns.len() - 1);
                    self.columns.len() - 1
                }
            };
            return self.push(Ins::Column(c));
        }
        let i = match &e.node {
            Node::Num(_) => unreachable!("handled above"),
            Node::Var(Var::Input(k)) => Ins::Input(*k),
            Node::Var(Var::U(s)) => Ins::U(*s),
            Node::Var(Var::Const(_)) => unreachable!("constants do not vary"),
            Node::Neg(a) => Ins::Neg(self.compile(a)),
            Node::Call(f, a) => Ins::Call(*f, self.compile(a)),
            Node::Bin(op, a, b) => {
                let (a, b) = (self.compile(a), self.compile(b));
                Ins::Bin(*op, a, b)
            }
        };
        self.push(i)
    }
}

/// A slot's value: a plain number or a tensor.
enum Val {
    Num(f64),
    T(Tensor),
}

fn unary(f: Func, a: &Tensor) -> Tensor {
    match f {
        Func::Sin => a.sin(),
        Func::Cos => a.cos(),
        Func::Tan => a.tan(),
        Func::Exp => a.exp(),
        Func::Log => a.log(),
        Func::Sqrt => a.sqrt(),
        Func::Abs => a.abs(),
        Func::Tanh => a.tanh(),
        Func::Sinh => a.sinh(),
        Func::Cosh => a.cosh(),
        Func::Sign => a.sign(),
    }
}

fn binary(op: Op, a: &Val, b: &Val) -> Val {
    use Val::{Num, T};
    Val::T(match (op, a, b) {
        (_, Num(x), Num(y)) => return Num(op.apply(*x, *y)),
        (Op::Add, T(a), T(b)) => a + b,
        (Op::Sub, T(a), T(b)) => a - b,
        (Op::Mul, T(a), T(b)) => a * b,
        (Op::Div, T(a), T(b)) => a / b,
        (Op::Pow, T(a), T(b)) => a.pow(b),
        (Op::Add, T(a), Num(y)) => a + *y,
        (Op::Sub, T(a), Num(y)) => a - *y,
        (Op::Mul, T(a), Num(y)) => a * *y,
        (Op::Div, T(a), Num(y)) => a / *y,
        // Integer powers by repeated multiplication, as libtorch does for integral scalars.
        (Op::Pow, T(a), Num(y)) if y.fract() == 0.0 && y.abs() < 64.0 => a.pow_tensor_scalar(*y as i64),
        (Op::Pow, T(a), Num(y)) => a.pow_tensor_scalar(*y),
        (Op::Add, Num(x), T(b)) => b + *x,
        (Op::Sub, Num(x), T(b)) => -b + *x,
        (Op::Mul, Num(x), T(b)) => b * *x,
        (Op::Div, Num(x), T(b)) => b.reciprocal() * *x,
        (Op::Pow, Num(x), T(b)) => Tensor::pow_scalar(*x, b),
    })
}

impl Program {
    /// Compile `exprs` for a batch whose member e has the constants `consts[e]`.
    pub fn new(exprs: &[&Expr], consts: &[Vec<f64>], opts: TensorOpts) -> Program {
        let mut b = Builder { ins: Vec::new(), seen: HashMap::new(), columns: Vec::new(), column_of: HashMap::new(), consts, opts };
        let outputs = exprs.iter().map(|e| b.compile(e)).collect();
        Program { ins: b.ins, columns: b.columns, outputs }
    }

    /// Values of the expressions `which` at points `x` [E, N, d], reading the network's
    /// streams `u` where an expression has u in it; one pass, shared sub-expressions computed
    /// once. Returns [E, N] each.
    pub fn eval(&self, which: &[usize], x: &Tensor, u: Option<&Streams>) -> Vec<Tensor> {
        let outs: Vec<usize> = which.iter().map(|&w| self.outputs[w]).collect();
        let last = outs.iter().copied().max().unwrap_or(0);
        // Only the slots the outputs need (slots are in dependency order).
        let mut needed = vec![false; last + 1];
        for &o in &outs {
            needed[o] = true;
        }
        for s in (0..=last).rev() {
            if needed[s] {
                match self.ins[s] {
                    Ins::Neg(a) | Ins::Call(_, a) => needed[a] = true,
                    Ins::Bin(_, a, b) => {
                        needed[a] = true;
                        needed[b] = true;
                    }
                    _ => {}
                }
            }
        }
        let mut vals: Vec<Option<Val>> = (0..=last).map(|_| None).collect();
        let get = |k: usize, vals: &[Option<Val>]| -> Val {
            match vals[k].as_ref().expect("operand computed before use") {
                Val::Num(v) => Val::Num(*v),
                Val::T(t) => Val::T(t.shallow_clone()),
            }
        };
        for s in (0..=last).filter(|&s| needed[s]) {
            let v = match self.ins[s] {
                Ins::Num(bits) => Val::Num(f64::from_bits(bits)),
                Ins::Column(c) => Val::T(self.columns[c].shallow_clone()),
                Ins::Input(i) => Val::T(x.select(-1, i as i64)),
                Ins::U(stream) => Val::T(read(u.expect("this expression reads u"), stream)),
                Ins::Neg(a) => match get(a, &vals) {
                    Val::Num(v) => Val::Num(-v),
                    Val::T(t) => Val::T(-t),
                },
                Ins::Call(f, a) => match get(a, &vals) {
                    Val::Num(v) => Val::Num(f.apply(v)),
                    Val::T(t) => Val::T(unary(f, &t)),
                },
                Ins::Bin(op, a, b) => binary(op, &get(a, &vals), &get(b, &vals)),
            };
            vals[s] = Some(v);
        }
        let (e, n) = (x.size()[0], x.size()[1]);
        outs.iter()
            .map(|&o| match get(o, &vals) {
                Val::T(t) if t.size()[1] == n => t,
                Val::T(t) => t.expand([e, n], false).contiguous(),
                Val::Num(v) => Tensor::full([e, n], v, (x.kind(), x.device())),
            })
            .collect()
    }
}

fn read(u: &Streams, s: Stream) -> Tensor {
    match s {
        Stream::Value => u.u(),
        Stream::D(i) => u.d(i),
        Stream::DD(i, j) => u.dd(i, j),
        Stream::DDD(i, j, k) => u.ddd(i, j, k),
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse::{parse, Names};
    use super::super::tree::Src;
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn constant_subtrees_become_columns_and_repeats_are_shared() {
        let inputs = vec!["x".to_string()];
        let constants = vec!["eps".to_string()];
        let names = Names { inputs: &inputs, constants: &constants, u: false };
        let e = parse("sin(2*pi*x/eps) + cos(2*pi*x/eps)*(2*pi/eps) + sin(2*pi*x/eps)", Src::Solution, &names).unwrap();
        let opts = TensorOpts { kind: Kind::Double, device: Device::Cpu };
        let consts = vec![vec![0.5], vec![0.25]];
        let p = Program::new(&[&e], &consts, opts);
        // x, 2pi (number), 2pi*x, eps column, /, sin, cos, 2pi/eps column, *, +, +: the second
        // sin(...) is not computed again.
        assert_eq!(p.ins.len(), 11, "{:?}", p.ins);
        assert_eq!(p.columns.len(), 2);
        let x = Tensor::from_slice(&[0.1f64, 0.2, 0.1, 0.2]).view([2, 2, 1]);
        let got = p.eval(&[0], &x, None).remove(0);
        for (k, eps) in [0.5f64, 0.25].iter().enumerate() {
            for (n, xv) in [0.1f64, 0.2].iter().enumerate() {
                let a = 2.0 * std::f64::consts::PI * xv / eps;
                let want = 2.0 * a.sin() + a.cos() * (2.0 * std::f64::consts::PI / eps);
                assert!((got.double_value(&[k as i64, n as i64]) - want).abs() < 1e-13);
            }
        }
        // An expression without points is broadcast to [E, N].
        let c = parse("eps^2", Src::Solution, &names).unwrap();
        let p = Program::new(&[&c], &consts, opts);
        assert_eq!(p.eval(&[0], &x, None)[0].size(), vec![2, 2]);
    }
}
