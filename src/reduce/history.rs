//! What the reducer takes from a job's training history (`train/`): the best relative L2
//! error over the run and the last logged loss and weight of every term.
//!
//! The reproductions need them: seed 000 reports the *best* L2 error of a run (z-score
//! normalisation, section 4.3.5), seed 001 the final initial/boundary losses and the growth of
//! the boundary weight under learning-rate annealing. Read leniently: a file without a `train`
//! group (other writers, failed jobs) simply has none of them.

/// Headline numbers of `train/` (module documentation).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrainEnds {
    /// Smallest finite entry of `train/rel_l2` (the error at the logged steps, evaluation
    /// included); `None` when the dataset is absent or has no finite entry.
    pub best_rel_l2: Option<f64>,
    /// (term, last entry of `train/loss/<term>`), sorted by term.
    pub last_loss: Vec<(String, f64)>,
    /// (term, last entry of `train/weight/<term>`), sorted by term.
    pub last_weight: Vec<(String, f64)>,
}

impl TrainEnds {
    /// The last loss of `term`, if logged.
    pub fn loss(&self, term: &str) -> Option<f64> {
        self.last_loss.iter().find(|(t, _)| t == term).map(|(_, v)| *v)
    }

    /// The last weight of `term`, if logged.
    pub fn weight(&self, term: &str) -> Option<f64> {
        self.last_weight.iter().find(|(t, _)| t == term).map(|(_, v)| *v)
    }
}

/// Reads [`TrainEnds`] from `file` (module documentation).
pub(crate) fn read_train(file: &hdf5::File) -> TrainEnds {
    let Ok(train) = file.group("train") else {
        return TrainEnds::default();
    };
    let best_rel_l2 = train
        .dataset("rel_l2")
        .and_then(|d| d.read_raw::<f64>())
        .ok()
        .and_then(|v| v.into_iter().filter(|x| x.is_finite()).reduce(f64::min));
    TrainEnds { best_rel_l2, last_loss: last_entries(&train, "loss"), last_weight: last_entries(&train, "weight") }
}

/// (dataset name, last entry) for every 1-D dataset in `train/<group>`, sorted by name.
fn last_entries(train: &hdf5::Group, group: &str) -> Vec<(String, f64)> {
    let Ok(g) = train.group(group) else {
        return Vec::new();
    };
    let mut names = g.member_names().unwrap_or_default();
    names.sort();
    names
        .into_iter()
        .filter_map(|name| {
            let values = g.dataset(&name).and_then(|d| d.read_raw::<f64>()).ok()?;
            Some((name, *values.last()?))
        })
        .collect()
}
