//! Derivative streams: the network output together with its input derivatives, propagated
//! forward through the layers instead of by nested reverse-mode autograd.
//!
//! A stream is one directional quantity carried through every layer: the value, the first
//! derivative along input i, or a second derivative along inputs (i, j). A problem asks for
//! the streams its residuals need; the MLP computes exactly those.

use tch::Tensor;

/// Which streams are carried, in this order: value, first derivatives d/dx_i for every input
/// i in 0..dim (when `first`), then the listed second derivatives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamLayout {
    pub dim: usize,
    pub first: bool,
    /// Second-derivative pairs (i, j), i <= j; (i, i) is a pure second derivative.
    pub second: Vec<(usize, usize)>,
}

impl StreamLayout {
    /// Value only (regression, evaluation).
    pub fn value(dim: usize) -> Self {
        StreamLayout { dim, first: false, second: Vec::new() }
    }

    /// Value, all first derivatives and all pure second derivatives.
    pub fn second_order(dim: usize) -> Self {
        StreamLayout { dim, first: true, second: (0..dim).map(|i| (i, i)).collect() }
    }

    /// Value, all first derivatives and every second derivative including mixed ones.
    pub fn full_second_order(dim: usize) -> Self {
        let mut second = Vec::new();
        for i in 0..dim {
            for j in i..dim {
                second.push((i, j));
            }
        }
        StreamLayout { dim, first: true, second }
    }

    /// Number of streams S.
    pub fn len(&self) -> usize {
        1 + if self.first { self.dim } else { 0 } + self.second.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn n_first(&self) -> usize {
        if self.first {
            self.dim
        } else {
            0
        }
    }

    /// Index of the first-derivative stream along input `i`.
    pub fn first_index(&self, i: usize) -> Option<usize> {
        (self.first && i < self.dim).then_some(1 + i)
    }

    /// Index of the second-derivative stream along inputs (i, j).
    pub fn second_index(&self, i: usize, j: usize) -> Option<usize> {
        let (a, b) = if i <= j { (i, j) } else { (j, i) };
        self.second.iter().position(|&p| p == (a, b)).map(|k| 1 + self.n_first() + k)
    }
}

/// Network output streams at a set of points.
///
/// # Shapes
/// `data`: [E, S, N] (members, streams, points).
pub struct Streams {
    pub layout: StreamLayout,
    pub data: Tensor,
}

impl Streams {
    /// u: [E, N].
    pub fn u(&self) -> Tensor {
        self.data.select(1, 0)
    }

    /// du/dx_i: [E, N]. Panics if the layout does not carry it (a problem/layout mismatch is a
    /// programming error, caught by the problem tests).
    pub fn d(&self, i: usize) -> Tensor {
        let k = self.layout.first_index(i).expect("first derivative not in stream layout");
        self.data.select(1, k as i64)
    }

    /// d2u/dx_i dx_j: [E, N].
    pub fn dd(&self, i: usize, j: usize) -> Tensor {
        let k = self.layout.second_index(i, j).expect("second derivative not in stream layout");
        self.data.select(1, k as i64)
    }

    /// The same streams restricted to points [start, start + len).
    pub fn narrow_points(&self, start: i64, len: i64) -> Streams {
        Streams { layout: self.layout.clone(), data: self.data.narrow(2, start, len) }
    }
}
