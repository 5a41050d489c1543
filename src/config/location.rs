//! Where each key and value of a YAML file sits (line, column), so that every configuration
//! error can name the exact place, even when it is found long after parsing (for example when
//! a swept value makes one job invalid).
//!
//! `serde_yaml_ng` reports locations only for syntax and shape errors of a direct parse; our
//! sweeps are re-assembled per job before they are typed, so we index the file once with the
//! marked event stream of `yaml-rust2` and look paths up afterwards.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A position in a source file (1-based line and column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// Positions of every mapping key and every value, by path (mapping keys and sequence indices).
#[derive(Debug, Default, Clone)]
pub struct LocationIndex {
    keys: HashMap<Vec<String>, Pos>,
    values: HashMap<Vec<String>, Pos>,
}

enum Frame {
    Map { path: Vec<String>, key: Option<String> },
    Seq { path: Vec<String>, index: usize },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    index: LocationIndex,
}

fn pos(mark: Marker) -> Pos {
    // yaml-rust2 lines are 1-based and columns 0-based.
    Pos { line: mark.line(), col: mark.col() + 1 }
}

impl Builder {
    /// Path of the node that starts now, or None when the scalar is a mapping key.
    fn node_path(&mut self, ev_is_scalar: Option<&str>, mark: Marker) -> Option<Vec<String>> {
        match self.stack.last_mut() {
            None => Some(Vec::new()),
            Some(Frame::Map { path, key }) => match key.take() {
                None => {
                    // This node is a key.
                    if let Some(k) = ev_is_scalar {
                        let mut p = path.clone();
                        p.push(k.to_string());
                        self.index.keys.insert(p, pos(mark));
                        *key = Some(k.to_string());
                    }
                    None
                }
                Some(k) => {
                    let mut p = path.clone();
                    p.push(k);
                    Some(p)
                }
            },
            Some(Frame::Seq { path, index }) => {
                let mut p = path.clone();
                p.push(index.to_string());
                *index += 1;
                Some(p)
            }
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(ref s, ..) => {
                if let Some(p) = self.node_path(Some(s), mark) {
                    self.index.values.insert(p, pos(mark));
                }
            }
            Event::Alias(_) => {
                if let Some(p) = self.node_path(None, mark) {
                    self.index.values.insert(p, pos(mark));
                }
            }
            Event::MappingStart(..) => {
                let p = self.node_path(None, mark).unwrap_or_default();
                self.index.values.insert(p.clone(), pos(mark));
                self.stack.push(Frame::Map { path: p, key: None });
            }
            Event::SequenceStart(..) => {
                let p = self.node_path(None, mark).unwrap_or_default();
                self.index.values.insert(p.clone(), pos(mark));
                self.stack.push(Frame::Seq { path: p, index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

impl LocationIndex {
    /// Index a YAML document. Syntax errors are reported by the serde parse, so a document
    /// that fails to scan here simply gives an index with fewer entries.
    pub fn build(text: &str) -> Self {
        let mut b = Builder::default();
        let mut parser = Parser::new_from_str(text);
        let _ = parser.load(&mut b, false);
        b.index
    }

    /// Position of the key of a mapping entry (e.g. `problem.eps` points at `eps:`).
    pub fn key(&self, path: &[String]) -> Option<Pos> {
        self.keys.get(path).copied()
    }

    /// Position of a value (a sequence item, a scalar or the start of a collection).
    pub fn value(&self, path: &[String]) -> Option<Pos> {
        self.values.get(path).copied()
    }

    /// Best position for a path: the key if it is a mapping entry, else the value, else the
    /// nearest ancestor that exists in the file (a defaulted key is reported at its parent).
    pub fn nearest(&self, path: &[String]) -> Option<Pos> {
        for n in (0..=path.len()).rev() {
            let p = &path[..n];
            if let Some(pos) = self.key(p).or_else(|| self.value(p)) {
                return Some(pos);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<String> {
        s.split('/').map(str::to_string).collect()
    }

    #[test]
    fn keys_and_sequence_items_have_their_own_positions() {
        let text = "problem:\n  kind: darcy1d\n  eps: 0.5\nsweep:\n  eps: [0.5, 0.25]\n  seed:\n    - 1\n    - 2\n";
        let idx = LocationIndex::build(text);
        assert_eq!(idx.key(&p("problem/eps")), Some(Pos { line: 3, col: 3 }));
        assert_eq!(idx.value(&p("problem/eps")), Some(Pos { line: 3, col: 8 }));
        assert_eq!(idx.value(&p("sweep/eps/1")), Some(Pos { line: 5, col: 14 }));
        assert_eq!(idx.value(&p("sweep/seed/1")), Some(Pos { line: 8, col: 7 }));
        // A missing key falls back to its parent.
        assert_eq!(idx.nearest(&p("problem/width")), Some(Pos { line: 1, col: 1 }));
    }
}
