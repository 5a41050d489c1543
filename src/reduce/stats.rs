//! The few statistics the reducer publishes, written out by hand.
//!
//! statrs has no regression, so the log-log fit of the NTK scaling is a plain ordinary least
//! squares slope with its textbook standard error; statrs only supplies the Student t quantile.
//! Everything here works on slices of `f64` and knows nothing of HDF5 or job files, so each
//! formula can be checked against a hand computation.

use statrs::distribution::{ContinuousCDF, StudentsT};

/// Two-sided confidence level of every interval the reducer writes.
pub const CONFIDENCE: f64 = 0.95;

/// Student t quantile `t_{1 - alpha/2, df}` for the two-sided [`CONFIDENCE`] interval.
///
/// Returns NaN when `df` is not positive (no interval can be formed).
///
/// # Reference
/// Any statistics text, e.g. NIST/SEMATECH e-Handbook of Statistical Methods, section 1.3.5.2
/// ("Confidence Limits for the Mean"): the quantile of Student's t with `df` degrees of freedom.
pub fn t_quantile(df: f64) -> f64 {
    if !(df > 0.0) {
        return f64::NAN;
    }
    match StudentsT::new(0.0, 1.0, df) {
        Ok(t) => t.inverse_cdf(0.5 + CONFIDENCE / 2.0),
        Err(_) => f64::NAN,
    }
}

/// Arithmetic mean; NaN for an empty slice.
pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.iter().sum::<f64>() / values.len() as f64
}

/// Sample standard deviation with `ddof = 1`; 0 for a single value, NaN for none.
pub fn sample_std(values: &[f64]) -> f64 {
    match values.len() {
        0 => f64::NAN,
        1 => 0.0,
        n => {
            let m = mean(values);
            let ss: f64 = values.iter().map(|v| (v - m) * (v - m)).sum();
            (ss / (n as f64 - 1.0)).sqrt()
        }
    }
}

/// A mean with its two-sided 95% Student t confidence interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeanCi {
    pub mean: f64,
    /// NaN when fewer than two values were given.
    pub ci_low: f64,
    /// NaN when fewer than two values were given.
    pub ci_high: f64,
    pub n: usize,
}

/// Mean of `values` with the interval `mean +- t_{0.975, n-1} s / sqrt(n)` (s: sample std,
/// ddof = 1). With one value the interval is NaN; with none everything is NaN.
///
/// # Reference
/// NIST/SEMATECH e-Handbook of Statistical Methods, section 7.2.2.1 ("Confidence limits for
/// the mean"): `Ybar +- t_{1-alpha/2, N-1} s / sqrt(N)`.
pub fn mean_ci(values: &[f64]) -> MeanCi {
    let n = values.len();
    let m = mean(values);
    if n < 2 {
        return MeanCi { mean: m, ci_low: f64::NAN, ci_high: f64::NAN, n };
    }
    let half = t_quantile(n as f64 - 1.0) * sample_std(values) / (n as f64).sqrt();
    MeanCi { mean: m, ci_low: m - half, ci_high: m + half, n }
}

/// Welch's unequal-variance t-test of two samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Welch {
    /// `(mean_a - mean_b) / sqrt(s_a^2 / n_a + s_b^2 / n_b)`.
    pub t: f64,
    /// Welch-Satterthwaite degrees of freedom.
    pub dof: f64,
    /// Two-sided p-value `2 (1 - F_t(|t|; dof))`.
    pub p_value: f64,
}

impl Welch {
    const UNDETERMINED: Welch = Welch { t: f64::NAN, dof: f64::NAN, p_value: f64::NAN };
}

/// Welch's t-test of `a` against `b`: whether two settings differ by more than seed noise.
///
/// NaN (every field) when a sample has fewer than two values or both have zero variance,
/// as scipy gives for those cases.
///
/// # Reference
/// B. L. Welch, "The generalization of Student's problem when several different population
/// variances are involved", Biometrika 34 (1947); F. E. Satterthwaite, Biometrics Bulletin 2
/// (1946) for the degrees of freedom; as in `scipy.stats.ttest_ind(a, b, equal_var=False)`:
/// `v = s^2 / n` (ddof 1), `t = (mean_a - mean_b) / sqrt(v_a + v_b)`,
/// `dof = (v_a + v_b)^2 / (v_a^2 / (n_a - 1) + v_b^2 / (n_b - 1))`.
pub fn welch_t_test(a: &[f64], b: &[f64]) -> Welch {
    let (na, nb) = (a.len() as f64, b.len() as f64);
    if a.len() < 2 || b.len() < 2 {
        return Welch::UNDETERMINED;
    }
    let (sa, sb) = (sample_std(a), sample_std(b));
    let (va, vb) = (sa * sa / na, sb * sb / nb);
    let se2 = va + vb;
    if se2.is_nan() || se2 <= 0.0 {
        return Welch::UNDETERMINED;
    }
    let t = (mean(a) - mean(b)) / se2.sqrt();
    let dof = se2 * se2 / (va * va / (na - 1.0) + vb * vb / (nb - 1.0));
    let p_value = match StudentsT::new(0.0, 1.0, dof) {
        Ok(dist) => 2.0 * dist.sf(t.abs()),
        Err(_) => f64::NAN,
    };
    Welch { t, dof, p_value }
}

/// Ordinary least squares fit of `log(y) = a + p log(x)`: the exponent `p` of a power law.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerLawFit {
    /// Fitted slope `p` of log(y) against log(x).
    pub exponent: f64,
    /// `p - t_{0.975, n-2} SE(p)`.
    pub ci_low: f64,
    /// `p + t_{0.975, n-2} SE(p)`.
    pub ci_high: f64,
    /// Coefficient of determination of the log-log fit, `1 - SSE / SST`.
    pub r_squared: f64,
    /// Number of (x, y) points the fit used.
    pub n: usize,
}

impl PowerLawFit {
    fn undetermined(n: usize) -> Self {
        Self { exponent: f64::NAN, ci_low: f64::NAN, ci_high: f64::NAN, r_squared: f64::NAN, n }
    }
}

/// Fits `y = C x^p` by ordinary least squares on `(ln x, ln y)` over all given points (every
/// trial, not per-x means, so the interval reflects the seed-to-seed spread).
///
/// Needs at least 3 points (one residual degree of freedom) and at least 2 distinct x;
/// otherwise every field but `n` is NaN. Callers must pass only positive, finite values.
/// `r_squared` is NaN when all `ln y` are equal (SST = 0, up to rounding).
///
/// # Reference
/// Simple linear regression (e.g. Montgomery & Runger, *Applied Statistics and Probability
/// for Engineers*, sections 11-2 and 11-4; NIST e-Handbook 4.1.4.1):
/// `p = Sxy / Sxx`, `a = ybar - p xbar`, `s^2 = SSE / (n - 2)`, `SE(p) = sqrt(s^2 / Sxx)`,
/// interval `p +- t_{0.975, n-2} SE(p)`, `R^2 = 1 - SSE / Syy`,
/// with `Sxx = sum (x - xbar)^2`, `Sxy = sum (x - xbar)(y - ybar)`, `Syy = sum (y - ybar)^2`.
pub fn fit_power_law(x: &[f64], y: &[f64]) -> PowerLawFit {
    assert_eq!(x.len(), y.len(), "fit_power_law: x and y differ in length");
    let n = x.len();
    let lx: Vec<f64> = x.iter().map(|v| v.ln()).collect();
    let ly: Vec<f64> = y.iter().map(|v| v.ln()).collect();
    let xbar = mean(&lx);
    let ybar = mean(&ly);
    let sxx: f64 = lx.iter().map(|v| (v - xbar) * (v - xbar)).sum();
    if n < 3 || !(sxx > 0.0) {
        return PowerLawFit::undetermined(n);
    }
    let sxy: f64 = lx.iter().zip(&ly).map(|(a, b)| (a - xbar) * (b - ybar)).sum();
    let syy: f64 = ly.iter().map(|v| (v - ybar) * (v - ybar)).sum();
    let slope = sxy / sxx;
    let intercept = ybar - slope * xbar;
    let sse: f64 = lx
        .iter()
        .zip(&ly)
        .map(|(a, b)| {
            let r = b - intercept - slope * a;
            r * r
        })
        .sum();
    let se = (sse / (n as f64 - 2.0) / sxx).sqrt();
    let half = t_quantile(n as f64 - 2.0) * se;
    // Equal ln y leave rounding-level Syy; treat that as zero rather than report a noise R^2.
    let y_scale = ly.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let syy_floor = n as f64 * (4.0 * f64::EPSILON * y_scale).powi(2);
    let r_squared = if syy > syy_floor { 1.0 - sse / syy } else { f64::NAN };
    PowerLawFit { exponent: slope, ci_low: slope - half, ci_high: slope + half, r_squared, n }
}

/// Discrete L2 norm used for error fields: `sqrt(mean_i v_i^2)`.
///
/// The paper (section 4.3, Tables 1 and 2) reports L2 norms over the domain [0, 1]; on the
/// uniform evaluation grid the root mean square approximates `(int_0^1 v^2 dx)^(1/2)` (it is
/// that integral by the rectangle rule, scaled by the domain measure, which is 1 there).
/// NaN for an empty slice.
pub fn rms(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    (values.iter().map(|v| v * v).sum::<f64>() / values.len() as f64).sqrt()
}

/// Pointwise mean and sample variance (ddof = 1) of equally long vectors, accumulated one
/// vector at a time (Welford), so the reducer never holds every trial's error field.
///
/// # Reference
/// B. P. Welford, "Note on a method for calculating corrected sums of squares and products",
/// Technometrics 4(3), 1962; as written in Knuth, TAOCP vol. 2, 4.2.2.
#[derive(Debug, Clone)]
pub struct PointwiseMoments {
    n: usize,
    mean: Vec<f64>,
    m2: Vec<f64>,
}

impl PointwiseMoments {
    pub fn new(len: usize) -> Self {
        Self { n: 0, mean: vec![0.0; len], m2: vec![0.0; len] }
    }

    /// Adds one vector; panics if its length differs (callers check shapes first).
    pub fn push(&mut self, values: &[f64]) {
        assert_eq!(values.len(), self.mean.len(), "PointwiseMoments: length mismatch");
        self.n += 1;
        let n = self.n as f64;
        for ((m, m2), &v) in self.mean.iter_mut().zip(self.m2.iter_mut()).zip(values) {
            let delta = v - *m;
            *m += delta / n;
            *m2 += delta * (v - *m);
        }
    }

    pub fn count(&self) -> usize {
        self.n
    }

    /// Pointwise mean.
    pub fn mean(&self) -> &[f64] {
        &self.mean
    }

    /// Pointwise sample variance, ddof = 1; zeros when fewer than two vectors were added.
    pub fn variance(&self) -> Vec<f64> {
        if self.n < 2 {
            return vec![0.0; self.mean.len()];
        }
        let d = self.n as f64 - 1.0;
        self.m2.iter().map(|v| v / d).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantiles_match_tables() {
        // Standard t table, two-sided 95%: df=1 12.706, df=2 4.303, df=8 2.306, df=30 2.042.
        assert!((t_quantile(1.0) - 12.706_204_736_174_7).abs() < 1e-9);
        assert!((t_quantile(2.0) - 4.302_652_729_749_46).abs() < 1e-9);
        assert!((t_quantile(8.0) - 2.306_004_135_204_17).abs() < 1e-9);
        assert!((t_quantile(30.0) - 2.042_272_456_301_24).abs() < 1e-9);
        assert!(t_quantile(0.0).is_nan());
    }

    #[test]
    fn mean_ci_by_hand() {
        // values 1, 2, 3, 6: mean 3, s^2 = (4+1+0+9)/3 = 14/3, half = t_{.975,3} s / 2.
        let ci = mean_ci(&[1.0, 2.0, 3.0, 6.0]);
        let half = 3.182_446_305_283_708 * (14.0f64 / 3.0).sqrt() / 2.0;
        assert_eq!(ci.mean, 3.0);
        assert!((ci.ci_low - (3.0 - half)).abs() < 1e-9);
        assert!((ci.ci_high - (3.0 + half)).abs() < 1e-9);
        let one = mean_ci(&[4.0]);
        assert_eq!(one.mean, 4.0);
        assert!(one.ci_low.is_nan() && one.ci_high.is_nan());
    }

    #[test]
    fn exact_power_law_fits_exactly() {
        let x: Vec<f64> = (1..=8).map(|k| 2f64.powi(-k)).collect();
        let y: Vec<f64> = x.iter().map(|e| 3.5 * e.powi(-2)).collect();
        let fit = fit_power_law(&x, &y);
        assert!((fit.exponent + 2.0).abs() < 1e-12, "{fit:?}");
        assert!((fit.r_squared - 1.0).abs() < 1e-12);
        assert!((fit.ci_high - fit.ci_low).abs() < 1e-9);
    }

    #[test]
    fn too_few_points_give_nan() {
        assert!(fit_power_law(&[0.5, 0.25], &[1.0, 4.0]).exponent.is_nan());
        assert!(fit_power_law(&[0.5, 0.5, 0.5], &[1.0, 2.0, 3.0]).exponent.is_nan());
        let ok = fit_power_law(&[0.5, 0.5, 0.25], &[1.0, 1.1, 4.0]);
        assert!(ok.exponent.is_finite() && ok.ci_low.is_finite());
    }

    #[test]
    fn welch_matches_scipy() {
        // python -c "from scipy import stats; r = stats.ttest_ind([0.1, 0.12, 0.11],
        //   [0.05, 0.09, 0.02, 0.04], equal_var=False); print(r.statistic, r.pvalue, r.df)"
        // -> 3.7947331922020555 0.02050804765932282 3.857142857142856
        let w = welch_t_test(&[0.1, 0.12, 0.11], &[0.05, 0.09, 0.02, 0.04]);
        assert!((w.t - 3.794_733_192_202_055_5).abs() < 1e-9, "{w:?}");
        assert!((w.dof - 3.857_142_857_142_856).abs() < 1e-9, "{w:?}");
        assert!((w.p_value - 0.020_508_047_659_322_82).abs() < 1e-9, "{w:?}");
        assert!(welch_t_test(&[1.0], &[1.0, 2.0]).p_value.is_nan());
        assert!(welch_t_test(&[1.0, 1.0], &[2.0, 2.0]).p_value.is_nan());
    }

    #[test]
    fn welford_matches_two_pass() {
        let rows = [[1.0, -2.0, 0.5], [3.0, 0.0, 0.25], [2.0, 5.0, -1.0]];
        let mut acc = PointwiseMoments::new(3);
        for r in &rows {
            acc.push(r);
        }
        for j in 0..3 {
            let col: Vec<f64> = rows.iter().map(|r| r[j]).collect();
            assert!((acc.mean()[j] - mean(&col)).abs() < 1e-15);
            let s = sample_std(&col);
            assert!((acc.variance()[j] - s * s).abs() < 1e-14);
        }
        let mut single = PointwiseMoments::new(2);
        single.push(&[1.0, 2.0]);
        assert_eq!(single.variance(), vec![0.0, 0.0]);
    }
}
