//! A small recursive-descent parser for the expressions of `problem: {kind: expression}`.
//!
//! Grammar (usual precedence; `^` binds tighter than unary minus and is right-associative, so
//! `-x^2` is -(x^2) and `2^-1` is 0.5; `**` is accepted for `^`):
//!
//! ```text
//! sum     := product (("+" | "-") product)*
//! product := unary (("*" | "/") unary)*
//! unary   := ("-" | "+") unary | power
//! power   := atom ("^" unary)?
//! atom    := number | name | function "(" sum ")" | "(" sum ")"
//! ```
//!
//! Names are the inputs, the constants, `pi`, and in the operator `u` and its derivatives
//! `u_<inputs>` (`u_x`, `u_tt`, `u_xy`, at most second order). Numbers take the forms YAML
//! takes: `2`, `2.`, `.5`, `1e-3`, `6.02E+23`.
//!
//! The crates that evaluate expressions (evalexpr, meval, fasteval) evaluate to f64; the tree
//! here must be differentiated symbolically and evaluated on tensors, so it is our own (and a
//! parser-combinator crate would be larger than this file).

use super::tree::{bin, call, neg, num, var, At, Expr, Func, Op, Src, Var};
use crate::model::streams::Stream;

/// A syntax or naming error at a 1-based column of the expression.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub col: usize,
    pub message: String,
}

/// The names an expression may use.
pub struct Names<'a> {
    /// Input names in input order.
    pub inputs: &'a [String],
    pub constants: &'a [String],
    /// Whether u and its derivatives may appear (the operator; not the solution).
    pub u: bool,
}

impl Names<'_> {
    fn resolve(&self, name: &str, col: usize) -> Result<Var, ParseError> {
        if let Some(i) = self.inputs.iter().position(|n| n == name) {
            return Ok(Var::Input(i));
        }
        if let Some(k) = self.constants.iter().position(|n| n == name) {
            return Ok(Var::Const(k));
        }
        if name == "u" || name.starts_with("u_") {
            if !self.u {
                return Err(ParseError { col, message: format!("`{name}`: the solution is a function of the inputs and constants only, it cannot use u") });
            }
            return match name.strip_prefix("u_") {
                None => Ok(Var::U(Stream::Value)),
                Some(suffix) => self.derivative(suffix, col).map(Var::U),
            };
        }
        let known = self.known();
        Err(ParseError { col, message: format!("unknown name `{name}` (known: {known})") })
    }

    fn known(&self) -> String {
        let mut parts = Vec::new();
        if !self.inputs.is_empty() {
            parts.push(format!("inputs {}", self.inputs.join(", ")));
        }
        if !self.constants.is_empty() {
            parts.push(format!("constants {}", self.constants.join(", ")));
        }
        parts.push("pi".into());
        if self.u {
            parts.push("u and its derivatives u_<inputs>".into());
        }
        parts.join("; ")
    }

    /// `u_<suffix>`: the suffix spells one or two input names.
    fn derivative(&self, suffix: &str, col: usize) -> Result<Stream, ParseError> {
        let splits = self.splits(suffix);
        let err = |message: String| Err(ParseError { col, message });
        if splits.is_empty() {
            return err(format!("`u_{suffix}`: `{suffix}` does not spell a derivative along the inputs {}", self.inputs.join(", ")));
        }
        if splits.iter().all(|s| s.len() > 2) {
            return err(format!("`u_{suffix}`: derivatives above second order are not supported (the network carries u, its first and its second derivatives)"));
        }
        let short: Vec<&Vec<usize>> = splits.iter().filter(|s| s.len() <= 2).collect();
        if short.len() > 1 {
            return err(format!("`u_{suffix}` is ambiguous with the inputs {}", self.inputs.join(", ")));
        }
        Ok(match short[0].as_slice() {
            [i] => Stream::D(*i),
            [i, j] => Stream::DD(*i.min(j), *i.max(j)),
            _ => unreachable!("one or two inputs"),
        })
    }

    /// Every way to write `s` as a sequence of input names.
    fn splits(&self, s: &str) -> Vec<Vec<usize>> {
        if s.is_empty() {
            return vec![Vec::new()];
        }
        let mut out = Vec::new();
        for (i, name) in self.inputs.iter().enumerate() {
            if let Some(rest) = s.strip_prefix(name.as_str()) {
                for mut tail in self.splits(rest) {
                    tail.insert(0, i);
                    out.push(tail);
                }
            }
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Name(String),
    Sym(char),
    End,
}

/// Tokens with their 1-based columns.
fn lex(text: &str) -> Result<Vec<(Tok, usize)>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                let mut j = i + 1;
                if j < chars.len() && (chars[j] == '+' || chars[j] == '-') {
                    j += 1;
                }
                if j < chars.len() && chars[j].is_ascii_digit() {
                    i = j;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            let s: String = chars[start..i].iter().collect();
            let v: f64 = s.parse().map_err(|_| ParseError { col, message: format!("`{s}` is not a number") })?;
            out.push((Tok::Num(v), col));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push((Tok::Name(chars[start..i].iter().collect()), col));
        } else if c == '*' && chars.get(i + 1) == Some(&'*') {
            out.push((Tok::Sym('^'), col));
            i += 2;
        } else if "+-*/^()".contains(c) {
            out.push((Tok::Sym(c), col));
            i += 1;
        } else {
            return Err(ParseError { col, message: format!("unexpected character `{c}`") });
        }
    }
    out.push((Tok::End, chars.len() + 1));
    Ok(out)
}

struct Parser<'a> {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    names: &'a Names<'a>,
    src: Src,
}

/// Parse `text` (the value of `problem.<src>`).
pub fn parse(text: &str, src: Src, names: &Names<'_>) -> Result<Expr, ParseError> {
    let mut p = Parser { toks: lex(text)?, pos: 0, names, src };
    if p.peek() == &Tok::End {
        return Err(ParseError { col: 1, message: "the expression is empty".into() });
    }
    let e = p.sum()?;
    match p.peek() {
        Tok::End => Ok(e),
        Tok::Sym(')') => Err(p.error("unmatched `)`")),
        _ => Err(p.error("expected an operator (+ - * / ^) here")),
    }
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].0
    }

    fn at(&self) -> At {
        At { src: self.src, col: self.toks[self.pos].1 }
    }

    fn error(&self, message: &str) -> ParseError {
        let what = match self.peek() {
            Tok::End => "the end".to_string(),
            Tok::Num(v) => format!("`{v}`"),
            Tok::Name(n) => format!("`{n}`"),
            Tok::Sym(c) => format!("`{c}`"),
        };
        ParseError { col: self.toks[self.pos].1, message: format!("{message}; found {what}") }
    }

    fn sum(&mut self) -> Result<Expr, ParseError> {
        let mut e = self.product()?;
        while let Tok::Sym(c @ ('+' | '-')) = *self.peek() {
            let at = self.at();
            self.pos += 1;
            let rhs = self.product()?;
            e = bin(if c == '+' { Op::Add } else { Op::Sub }, e, rhs, at);
        }
        Ok(e)
    }

    fn product(&mut self) -> Result<Expr, ParseError> {
        let mut e = self.unary()?;
        while let Tok::Sym(c @ ('*' | '/')) = *self.peek() {
            let at = self.at();
            self.pos += 1;
            let rhs = self.unary()?;
            e = bin(if c == '*' { Op::Mul } else { Op::Div }, e, rhs, at);
        }
        Ok(e)
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        match *self.peek() {
            Tok::Sym('-') => {
                let at = self.at();
                self.pos += 1;
                Ok(neg(self.unary()?, at))
            }
            Tok::Sym('+') => {
                self.pos += 1;
                self.unary()
            }
            _ => self.power(),
        }
    }

    fn power(&mut self) -> Result<Expr, ParseError> {
        let base = self.atom()?;
        if *self.peek() == Tok::Sym('^') {
            let at = self.at();
            self.pos += 1;
            let exponent = self.unary()?;
            return Ok(bin(Op::Pow, base, exponent, at));
        }
        Ok(base)
    }

    fn atom(&mut self) -> Result<Expr, ParseError> {
        let at = self.at();
        match self.peek().clone() {
            Tok::Num(v) => {
                self.pos += 1;
                Ok(num(v, at))
            }
            Tok::Sym('(') => {
                self.pos += 1;
                let e = self.sum()?;
                self.close("`(`", at)?;
                Ok(e)
            }
            Tok::Name(name) => {
                self.pos += 1;
                if *self.peek() == Tok::Sym('(') {
                    let Some(f) = Func::by_name(&name) else {
                        let all: Vec<&str> = Func::NAMED.iter().map(|(n, _)| *n).collect();
                        return Err(ParseError { col: at.col, message: format!("unknown function `{name}` (known: {})", all.join(", ")) });
                    };
                    self.pos += 1;
                    let arg = self.sum()?;
                    self.close(&format!("`{name}(`"), at)?;
                    return Ok(call(f, arg, at));
                }
                if name == "pi" {
                    return Ok(num(std::f64::consts::PI, at));
                }
                if Func::by_name(&name).is_some() {
                    return Err(ParseError { col: at.col, message: format!("`{name}` is a function: write {name}(...)") });
                }
                Ok(var(self.names.resolve(&name, at.col)?, at))
            }
            _ => Err(self.error("expected a number, a name or `(`")),
        }
    }

    fn close(&mut self, what: &str, open: At) -> Result<(), ParseError> {
        if *self.peek() == Tok::Sym(')') {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected `)` to close {what} at column {}", open.col)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(u: bool) -> (Vec<String>, Vec<String>, bool) {
        (vec!["t".into(), "x".into()], vec!["eps".into(), "c".into()], u)
    }

    fn p(text: &str) -> Result<Expr, ParseError> {
        let (i, c, u) = names(true);
        parse(text, Src::Operator, &Names { inputs: &i, constants: &c, u })
    }

    fn value(text: &str, t: f64, x: f64) -> f64 {
        p(text).unwrap().eval(&[t, x], &[0.25, 2.0]).unwrap()
    }

    #[test]
    fn precedence_associativity_and_numbers() {
        assert_eq!(value("1 + 2 * 3", 0.0, 0.0), 7.0);
        assert_eq!(value("-2^2", 0.0, 0.0), -4.0);
        assert_eq!(value("2^3^2", 0.0, 0.0), 512.0);
        assert_eq!(value("2**-1", 0.0, 0.0), 0.5);
        assert_eq!(value("(1 + 2) * 3 - 4 / 8", 0.0, 0.0), 8.5);
        assert_eq!(value("8 / 4 / 2", 0.0, 0.0), 1.0);
        assert_eq!(value("1e-3 + .5 + 2. + 6.0E+1 + +1", 0.0, 0.0), 63.501);
        assert!((value("sin(pi/2) + cos(0) + exp(0) + log(1) + sqrt(4) + abs(-3) + tanh(0) + sinh(0) + cosh(0) + tan(0)", 0.0, 0.0) - 9.0).abs() < 1e-15);
        // Inputs and constants by name: 2 pi x / eps at x = 0.125, eps = 0.25 is pi.
        assert!((value("2*pi*x/eps", 0.3, 0.125) - std::f64::consts::PI).abs() < 1e-15);
        assert_eq!(value("c*t", 0.5, 0.0), 1.0);
    }

    #[test]
    fn u_and_its_derivatives_up_to_second_order() {
        let e = p("u_tt - c^2*u_xx + u_tx + u_xt + u_t + u").unwrap();
        let s = e.streams();
        assert_eq!(s, vec![Stream::DD(0, 0), Stream::DD(1, 1), Stream::DD(0, 1), Stream::D(0), Stream::Value]);
    }

    #[test]
    fn errors_name_the_column_and_the_problem() {
        let cases: &[(&str, usize, &str)] = &[
            ("2*epss", 3, "unknown name `epss`"),
            ("sin(x", 6, "expected `)` to close `sin(` at column 1"),
            ("(x + 1", 7, "expected `)`"),
            ("x + * 2", 5, "expected a number"),
            ("x 2", 3, "expected an operator"),
            ("x)", 2, "unmatched `)`"),
            ("sine(x)", 1, "unknown function `sine`"),
            ("2 + sin", 5, "is a function"),
            ("u_xxx", 1, "above second order"),
            ("1 + u_ttx", 5, "above second order"),
            ("u_q", 1, "does not spell a derivative"),
            ("x # 2", 3, "unexpected character `#`"),
            ("", 1, "empty"),
            ("  ", 1, "empty"),
        ];
        for (text, col, msg) in cases {
            let e = p(text).unwrap_err();
            assert_eq!(e.col, *col, "{text}: {e:?}");
            assert!(e.message.contains(msg), "{text}: {}", e.message);
        }
        let (i, c, _) = names(false);
        let e = parse("x + u", Src::Solution, &Names { inputs: &i, constants: &c, u: false }).unwrap_err();
        assert_eq!(e.col, 5);
        assert!(e.message.contains("cannot use u"), "{}", e.message);
        // Input names that spell a suffix two ways are rejected, not guessed.
        let i = vec!["x".to_string(), "xx".to_string()];
        let e = parse("u_xx", Src::Operator, &Names { inputs: &i, constants: &[], u: true }).unwrap_err();
        assert!(e.message.contains("ambiguous"), "{}", e.message);
    }
}
