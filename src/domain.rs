//! The geometry every problem lives on: an axis-aligned box, and the regions of it where loss
//! terms take their points. Below `model`, `collocation` and `problem`, which all read it.

/// Where a term's points live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    /// The open domain.
    Interior,
    /// The spatial boundary (1-D: both end points; 2-D: the faces of the box, for
    /// time-dependent problems the faces x = lo and x = hi for every t).
    Boundary,
    /// The initial face t = t0 (input 0 is time).
    Initial,
}

/// An axis-aligned box domain.
#[derive(Debug, Clone, PartialEq)]
pub struct Domain {
    pub lo: Vec<f64>,
    pub hi: Vec<f64>,
    /// True when input 0 is time (then `Boundary` means the spatial faces only).
    pub time_dependent: bool,
}

impl Domain {
    pub fn dim(&self) -> usize {
        self.lo.len()
    }
}
