//! Derivative streams: the network output together with its input derivatives, propagated
//! forward through the layers instead of by nested reverse-mode autograd.
//!
//! A stream is one directional quantity carried through every layer: the value, the first
//! derivative along input i, or a second derivative along inputs (i, j). A problem asks for
//! the streams its residuals need; the MLP computes exactly those.
//!
//! Different points may carry different streams (see [`Segment`]): in a training step the
//! points of all loss terms go through the network together, and a boundary term that reads
//! only u should not pay for the u_tt and u_xx streams of the residual points.

use tch::Tensor;

/// One stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Value,
    /// du/dx_i.
    D(usize),
    /// d2u/dx_i dx_j, i <= j.
    DD(usize, usize),
    /// d3u/dx_i dx_j dx_k, i <= j <= k (gradient-enhanced residuals read one order more
    /// than their equation).
    DDD(usize, usize, usize),
}

impl Stream {
    /// The inputs this stream differentiates along, sorted (empty for the value).
    pub fn indices(self) -> Vec<usize> {
        match self {
            Stream::Value => vec![],
            Stream::D(i) => vec![i],
            Stream::DD(i, j) => vec![i, j],
            Stream::DDD(i, j, k) => vec![i, j, k],
        }
    }

    /// The stream of derivatives along `idx` (any order; at most three).
    pub fn from_indices(idx: &[usize]) -> Stream {
        let mut v = idx.to_vec();
        v.sort_unstable();
        match v[..] {
            [] => Stream::Value,
            [i] => Stream::D(i),
            [i, j] => Stream::DD(i, j),
            [i, j, k] => Stream::DDD(i, j, k),
            _ => panic!("derivative streams go up to third order, asked for {idx:?}"),
        }
    }

    /// This stream differentiated once more along input `i`.
    pub fn along(self, i: usize) -> Stream {
        let mut v = self.indices();
        v.push(i);
        Stream::from_indices(&v)
    }
}

/// Which streams are carried, in this order: value, the listed first derivatives, then the
/// listed second derivatives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamLayout {
    pub dim: usize,
    /// Inputs i whose first derivative du/dx_i is carried.
    pub first: Vec<usize>,
    /// Second-derivative pairs (i, j), i <= j; (i, i) is a pure second derivative. Both i and j
    /// must be in `first` (a second derivative is propagated from the first ones).
    pub second: Vec<(usize, usize)>,
    /// Third-derivative triples (i, j, k), i <= j <= k: only gradient-enhanced residuals
    /// read them. Their pairs must be in `second` and their inputs in `first`.
    pub third: Vec<(usize, usize, usize)>,
}

impl StreamLayout {
    /// Value only (regression, evaluation, boundary and initial values).
    pub fn value(dim: usize) -> Self {
        StreamLayout { dim, first: Vec::new(), second: Vec::new(), third: Vec::new() }
    }

    /// Value and the first derivatives along `inputs` (e.g. u_t for an initial velocity).
    pub fn first_order(dim: usize, inputs: &[usize]) -> Self {
        StreamLayout { dim, first: inputs.to_vec(), second: Vec::new(), third: Vec::new() }
    }

    /// Value, all first derivatives and all pure second derivatives.
    pub fn second_order(dim: usize) -> Self {
        StreamLayout { dim, first: (0..dim).collect(), second: (0..dim).map(|i| (i, i)).collect(), third: Vec::new() }
    }

    /// Value, all first derivatives and every second derivative including mixed ones.
    pub fn full_second_order(dim: usize) -> Self {
        let mut second = Vec::new();
        for i in 0..dim {
            for j in i..dim {
                second.push((i, j));
            }
        }
        StreamLayout { dim, first: (0..dim).collect(), second, third: Vec::new() }
    }

    /// Number of streams S.
    pub fn len(&self) -> usize {
        1 + self.first.len() + self.second.len() + self.third.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn n_first(&self) -> usize {
        self.first.len()
    }

    /// The streams in order.
    pub fn streams(&self) -> Vec<Stream> {
        let mut s = vec![Stream::Value];
        s.extend(self.first.iter().map(|&i| Stream::D(i)));
        s.extend(self.second.iter().map(|&(i, j)| Stream::DD(i, j)));
        s.extend(self.third.iter().map(|&(i, j, k)| Stream::DDD(i, j, k)));
        s
    }

    /// This layout with every stream's derivative along input `i` added (a residual's
    /// derivative along x_i reads them): u -> u_i, u_j -> u_ji, u_jk -> u_jki. Closed when
    /// this layout is.
    pub fn grown(&self, i: usize) -> StreamLayout {
        let mut all: Vec<Stream> = self.streams();
        all.extend(self.streams().into_iter().map(|s| s.along(i)));
        let mut out = StreamLayout::value(self.dim);
        for s in all {
            match s {
                Stream::Value => {}
                Stream::D(a) => out.first.push(a),
                Stream::DD(a, b) => out.second.push((a, b)),
                Stream::DDD(a, b, c) => out.third.push((a, b, c)),
            }
        }
        out.first.sort_unstable();
        out.first.dedup();
        out.second.sort_unstable();
        out.second.dedup();
        out.third.sort_unstable();
        out.third.dedup();
        out
    }

    /// Position of `stream` in this layout.
    pub fn index(&self, stream: Stream) -> Option<usize> {
        match stream {
            Stream::Value => Some(0),
            Stream::D(i) => self.first.iter().position(|&f| f == i).map(|k| 1 + k),
            Stream::DD(i, j) => {
                let p = if i <= j { (i, j) } else { (j, i) };
                self.second.iter().position(|&q| q == p).map(|k| 1 + self.n_first() + k)
            }
            Stream::DDD(..) => {
                let v = stream.indices();
                let mut v = v.clone();
                v.sort_unstable();
                let p = (v[0], v[1], v[2]);
                self.third.iter().position(|&q| q == p).map(|k| 1 + self.n_first() + self.second.len() + k)
            }
        }
    }

    /// True when every second derivative's first derivatives are carried.
    pub fn is_closed(&self) -> bool {
        self.second.iter().all(|&(i, j)| i <= j && self.first.contains(&i) && self.first.contains(&j))
            && self.third.iter().all(|&(i, j, k)| i <= j && j <= k && [(i, j), (i, k), (j, k)].iter().all(|p| self.second.contains(p)))
    }

    /// Whether the graph-free taped pass ([`crate::model::tape`]) can carry this layout: up
    /// to second derivatives. Gradient-enhanced residuals read third ones and train by
    /// autograd through the forward of [`crate::model::mlp`].
    pub fn tapeable(&self) -> bool {
        self.third.is_empty()
    }

    /// True when every stream of `other` is carried here.
    pub fn contains(&self, other: &StreamLayout) -> bool {
        other.streams().into_iter().all(|s| self.index(s).is_some())
    }
}

/// A run of consecutive points that carry the same streams.
///
/// In a training step the points of all loss terms go through the network together; a
/// boundary term that reads only u should not pay for the u_tt and u_xx streams of the
/// residual points. Each segment carries the value plus the streams of its own `layout` (a
/// closed sub-layout of the problem's layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub points: i64,
    pub layout: StreamLayout,
}

impl Segment {
    /// Number of derivative streams (all but the value).
    pub fn derivatives(&self) -> i64 {
        self.layout.len() as i64 - 1
    }

    /// Segments for consecutive blocks of points (n_b points needing layout_b); neighbours
    /// with equal needs are merged (fewer, larger tensor operations).
    pub fn merge(blocks: &[(i64, &StreamLayout)]) -> Vec<Segment> {
        let mut out: Vec<Segment> = Vec::new();
        for (n, needs) in blocks {
            match out.last_mut() {
                Some(last) if last.layout == **needs => last.points += n,
                _ => out.push(Segment { points: *n, layout: (*needs).clone() }),
            }
        }
        out
    }
}

/// Network output streams of all segments: the value at every point and each segment's
/// derivative streams at its points.
///
/// # Shapes
/// `value`: [E, N]; `blocks[s]`: [E, K_s, N_s] in `segments[s].layout` order without the
/// value (None when the segment carries the value only).
pub struct SegmentedStreams {
    pub layout: StreamLayout,
    pub segments: Vec<Segment>,
    pub value: Tensor,
    pub blocks: Vec<Option<Tensor>>,
}

impl SegmentedStreams {
    /// The streams at points [start, start + len), which must lie within one segment.
    pub fn points(&self, start: i64, len: i64) -> Streams {
        let mut s0 = 0;
        for (seg, block) in self.segments.iter().zip(&self.blocks) {
            if start >= s0 && start + len <= s0 + seg.points {
                let mut parts: Vec<Option<Tensor>> = (0..self.layout.len()).map(|_| None).collect();
                parts[0] = Some(self.value.narrow(1, start, len));
                if let Some(b) = block {
                    for (q, st) in seg.layout.streams().into_iter().skip(1).enumerate() {
                        let k = self.layout.index(st).expect("segment streams are part of the layout");
                        let t = b.select(1, q as i64);
                        parts[k] = Some(if len == seg.points { t } else { t.narrow(1, start - s0, len) });
                    }
                }
                return Streams { layout: self.layout.clone(), parts };
            }
            s0 += seg.points;
        }
        panic!("points [{start}, {}) do not lie within one segment", start + len)
    }
}

/// Network output streams at a set of points.
///
/// # Shapes
/// `parts[k]`: [E, N] for stream k of `layout`; None when the stream is not carried at these
/// points (their segment's layout lacks it).
pub struct Streams {
    pub layout: StreamLayout,
    pub parts: Vec<Option<Tensor>>,
}

impl Streams {
    /// [E, S, N]; every stream must cover the same points.
    pub fn stacked(&self) -> Tensor {
        let parts: Vec<Tensor> = self.parts.iter().map(|p| p.as_ref().expect("stream not carried").shallow_clone()).collect();
        Tensor::stack(&parts, 1)
    }

    fn get(&self, s: Stream) -> Tensor {
        let k = self.layout.index(s).unwrap_or_else(|| panic!("{s:?} not in the stream layout"));
        // A problem/layout mismatch is a programming error, caught by the problem tests.
        self.parts[k].as_ref().unwrap_or_else(|| panic!("{s:?} is not carried for these points (term layout too small)")).shallow_clone()
    }

    /// u: [E, N].
    pub fn u(&self) -> Tensor {
        self.get(Stream::Value)
    }

    /// du/dx_i: [E, N].
    pub fn d(&self, i: usize) -> Tensor {
        self.get(Stream::D(i))
    }

    /// d2u/dx_i dx_j: [E, N].
    pub fn dd(&self, i: usize, j: usize) -> Tensor {
        self.get(Stream::DD(i, j))
    }

    /// d3u/dx_i dx_j dx_k: [E, N].
    pub fn ddd(&self, i: usize, j: usize, k: usize) -> Tensor {
        self.get(Stream::from_indices(&[i, j, k]))
    }

    /// Any carried stream: [E, N].
    pub fn stream(&self, s: Stream) -> Tensor {
        self.get(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_neighbours_merge_into_one_segment() {
        let full = StreamLayout::second_order(2);
        let v = StreamLayout::first_order(2, &[0]);
        let u = StreamLayout::value(2);
        let segs = Segment::merge(&[(300, &full), (100, &v), (50, &u), (20, &u)]);
        assert_eq!(segs.iter().map(|s| (s.points, s.derivatives())).collect::<Vec<_>>(), vec![(300, 4), (100, 1), (70, 0)]);
    }

    #[test]
    fn layout_indices_follow_the_stream_order() {
        let l = StreamLayout::full_second_order(2);
        assert_eq!(l.streams(), vec![Stream::Value, Stream::D(0), Stream::D(1), Stream::DD(0, 0), Stream::DD(0, 1), Stream::DD(1, 1)]);
        assert_eq!(l.index(Stream::DD(1, 0)), Some(4));
        assert!(l.is_closed());
        assert!(l.contains(&StreamLayout::first_order(2, &[1])));
        assert!(!StreamLayout::first_order(2, &[1]).contains(&l));
        assert!(!StreamLayout { dim: 2, first: vec![0], second: vec![(0, 1)], third: vec![] }.is_closed());
    }

    /// Growing a layout by one derivative along an input adds the derivative of every stream.
    #[test]
    fn grown_layouts_add_one_derivative_order() {
        let g = StreamLayout::second_order(1).grown(0);
        assert_eq!(g.streams(), vec![Stream::Value, Stream::D(0), Stream::DD(0, 0), Stream::DDD(0, 0, 0)]);
        assert!(g.is_closed());
        let w = StreamLayout::second_order(2).grown(1);
        assert_eq!(w.first, vec![0, 1]);
        assert_eq!(w.second, vec![(0, 0), (0, 1), (1, 1)]);
        assert_eq!(w.third, vec![(0, 0, 1), (1, 1, 1)]);
        assert!(w.is_closed());
        assert_eq!(w.index(Stream::from_indices(&[1, 0, 0])), Some(6));
    }
}
