//! Subgroup fairness (`shared/reference/fairness-validation.md` §4–5): per-group rates and
//! the disparities fairlearn names, in two modes.
//!
//! * **Strict** (Vigil's reports and gates): a rate with a zero denominator is undefined,
//!   left out of every aggregate, and the groups left out are listed; a difference or ratio
//!   needs two defined groups; a ratio whose maximum is 0 is undefined.
//! * **Fairlearn** (to reconcile with fairlearn 0.15): an undefined TPR or FPR counts as 0.0,
//!   as fairlearn's rates do silently; a ratio with maximum 0 is NaN (`None` here).
//!
//! Groups are the distinct values of one sensitive column, or of several joined with `|`
//! (the observed cells of the intersection; fairlearn's unobserved cells are NaN rows that
//! its aggregates skip, so the aggregates agree).

use crate::validation::{Confusion, roc_auc};

/// How undefined rates are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Undefined is undefined: excluded and listed.
    Strict,
    /// As fairlearn: undefined TPR/FPR become 0.0.
    Fairlearn,
}

/// One group's counts and rates at the threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRates {
    /// Group name (values joined with `|` for intersections).
    pub group: String,
    /// Rows.
    pub n: u64,
    /// Positive labels.
    pub n_pos: u64,
    /// Negative labels.
    pub n_neg: u64,
    /// P(ŷ = 1).
    pub selection_rate: Option<f64>,
    /// TPR (sensitivity).
    pub tpr: Option<f64>,
    /// FPR.
    pub fpr: Option<f64>,
    /// PPV.
    pub ppv: Option<f64>,
    /// NPV.
    pub npv: Option<f64>,
    /// ROC AUC within the group.
    pub auc: Option<f64>,
}

fn rates(group: String, labels: &[bool], scores: &[f64], threshold: f64) -> GroupRates {
    let c = Confusion::at(labels, scores, threshold);
    GroupRates {
        group,
        n: c.n(),
        n_pos: c.tp + c.fn_,
        n_neg: c.fp + c.tn,
        selection_rate: c.selection_rate(),
        tpr: c.recall(),
        fpr: c.fpr(),
        ppv: c.precision(),
        npv: c.npv(),
        auc: roc_auc(labels, scores),
    }
}

impl GroupRates {
    /// The rates of a group from its point estimates (`validation::evaluate_groups`), which
    /// compute the same values in the same pass as their intervals.
    pub fn from_estimate(g: &crate::validation::GroupEstimate) -> GroupRates {
        let get = |m: &str| g.estimates.iter().find(|e| e.metric == m).and_then(|e| e.value);
        GroupRates {
            group: g.group.clone(),
            n: g.n,
            n_pos: g.positives,
            n_neg: g.negatives,
            selection_rate: get("selection_rate"),
            tpr: get("tpr"),
            fpr: get("fpr"),
            ppv: get("ppv"),
            npv: get("npv"),
            auc: get("roc_auc"),
        }
    }
}

/// Rates of every group (in name order) and of all rows together.
pub fn by_group(labels: &[bool], scores: &[f64], groups: &[String], threshold: f64) -> (Vec<GroupRates>, GroupRates) {
    let mut names: Vec<&String> = groups.iter().collect();
    names.sort();
    names.dedup();
    let per = names
        .into_iter()
        .map(|g| {
            let (ys, ss): (Vec<bool>, Vec<f64>) = labels.iter().zip(scores).zip(groups).filter(|(_, gg)| *gg == g).map(|((y, s), _)| (*y, *s)).unzip();
            rates(g.clone(), &ys, &ss, threshold)
        })
        .collect();
    (per, rates("overall".into(), labels, scores, threshold))
}

/// Joins several sensitive columns into intersection labels (`a|b`).
pub fn intersect(columns: &[&[String]]) -> Vec<String> {
    let n = columns.first().map_or(0, |c| c.len());
    (0..n).map(|i| columns.iter().map(|c| c[i].as_str()).collect::<Vec<_>>().join("|")).collect()
}

/// A difference and a ratio across groups, with the groups left out as undefined.
#[derive(Debug, Clone, PartialEq)]
pub struct Disparity {
    /// max − min (`between_groups`) or max |group − overall| (`to_overall`).
    pub difference: Option<f64>,
    /// min / max, or the smallest group/overall ratio folded below 1.
    pub ratio: Option<f64>,
    /// Groups whose rate was undefined (strict mode).
    pub excluded: Vec<String>,
}

fn values(groups: &[GroupRates], rate: fn(&GroupRates) -> Option<f64>, mode: Mode, zero_fill: bool) -> (Vec<f64>, Vec<String>) {
    let mut out = Vec::new();
    let mut excluded = Vec::new();
    for g in groups {
        match (rate(g), mode) {
            (Some(v), _) => out.push(v),
            (None, Mode::Fairlearn) if zero_fill && g.n > 0 => out.push(0.0),
            (None, _) => excluded.push(g.group.clone()),
        }
    }
    (out, excluded)
}

/// Difference (max − min) and ratio (min / max) of a rate across groups.
pub fn between_groups(groups: &[GroupRates], rate: fn(&GroupRates) -> Option<f64>, mode: Mode, zero_fill: bool) -> Disparity {
    let (v, excluded) = values(groups, rate, mode, zero_fill);
    if v.len() < 2 {
        return Disparity { difference: None, ratio: None, excluded };
    }
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    Disparity { difference: Some(max - min), ratio: (max > 0.0).then(|| min / max), excluded }
}

/// Difference (largest |group − overall|) and ratio (smallest group/overall, folded ≤ 1).
pub fn to_overall(groups: &[GroupRates], overall: &GroupRates, rate: fn(&GroupRates) -> Option<f64>, mode: Mode, zero_fill: bool) -> Disparity {
    let (v, excluded) = values(groups, rate, mode, zero_fill);
    let o = match (rate(overall), mode) {
        (Some(o), _) => o,
        (None, Mode::Fairlearn) if zero_fill => 0.0,
        (None, _) => return Disparity { difference: None, ratio: None, excluded },
    };
    if v.is_empty() {
        return Disparity { difference: None, ratio: None, excluded };
    }
    let difference = v.iter().map(|x| (x - o).abs()).fold(0.0, f64::max);
    let ratio = v
        .iter()
        .map(|x| if o == 0.0 && *x == 0.0 { f64::NAN } else if *x > o { o / x } else { x / o })
        .filter(|r| !r.is_nan())
        .fold(None, |acc: Option<f64>, r| Some(acc.map_or(r, |a| a.min(r))));
    Disparity { difference: Some(difference), ratio, excluded }
}

/// fairlearn's fairness summaries (`between_groups`).
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Selection-rate disparity (demographic parity difference and ratio).
    pub demographic_parity: Disparity,
    /// TPR disparity (equal opportunity).
    pub equal_opportunity: Disparity,
    /// FPR disparity.
    pub fpr: Disparity,
    /// Equalized odds, worst case: max of the TPR and FPR differences, min of their ratios
    /// (strict: an undefined part is ignored; both undefined, undefined).
    pub equalized_odds_difference: Option<f64>,
    /// See `equalized_odds_difference`.
    pub equalized_odds_ratio: Option<f64>,
    /// PPV disparity (predictive parity).
    pub predictive_parity: Disparity,
}

fn worst(a: Option<f64>, b: Option<f64>, pick: fn(f64, f64) -> f64) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(pick(x, y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// The summaries over groups.
pub fn summary(groups: &[GroupRates], mode: Mode) -> Summary {
    let dp = between_groups(groups, |g| g.selection_rate, mode, false);
    let tpr = between_groups(groups, |g| g.tpr, mode, true);
    let fpr = between_groups(groups, |g| g.fpr, mode, true);
    let pp = between_groups(groups, |g| g.ppv, mode, true);
    let (eod, eor) = match mode {
        Mode::Strict => (worst(tpr.difference, fpr.difference, f64::max), worst(tpr.ratio, fpr.ratio, f64::min)),
        // fairlearn combines with Python's max/min: a NaN part decides by position (TPR first).
        Mode::Fairlearn => {
            let positional = |a: Option<f64>, b: Option<f64>, pick: fn(f64, f64) -> f64| match (a, b) {
                (Some(x), Some(y)) => Some(pick(x, y)),
                (Some(x), None) => Some(x),
                (None, _) => None,
            };
            (positional(tpr.difference, fpr.difference, f64::max), positional(tpr.ratio, fpr.ratio, f64::min))
        }
    };
    Summary { demographic_parity: dp, equal_opportunity: tpr, fpr, equalized_odds_difference: eod, equalized_odds_ratio: eor, predictive_parity: pp }
}

/// Evidence about one group for a report: its rates, or "insufficient evidence" when it is
/// below the minimum size (or has too few positives or negatives for the rates that need them).
#[derive(Debug, Clone, PartialEq)]
pub enum GroupEvidence {
    /// Enough rows: the rates.
    Rates(GroupRates),
    /// Suppressed: fewer rows (or positives, or negatives) than the policy's minimum. Never a pass.
    Insufficient {
        /// Group name.
        group: String,
        /// Rows.
        n: u64,
        /// Why (which minimum was not met).
        reason: String,
    },
}

/// Minimum evidence per group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Minimums {
    /// Rows.
    pub rows: u64,
    /// Positive labels (for TPR and AUC).
    pub positives: u64,
    /// Negative labels (for FPR and AUC).
    pub negatives: u64,
}

impl Default for Minimums {
    /// 30 rows, 5 positives, 5 negatives.
    fn default() -> Self {
        Minimums { rows: 30, positives: 5, negatives: 5 }
    }
}

/// Splits groups into those with enough evidence and those suppressed.
pub fn screen(groups: Vec<GroupRates>, min: Minimums) -> Vec<GroupEvidence> {
    groups
        .into_iter()
        .map(|g| {
            let why = if g.n < min.rows {
                Some(format!("{} rows, fewer than the minimum {}", g.n, min.rows))
            } else if g.n_pos < min.positives {
                Some(format!("{} positives, fewer than the minimum {}", g.n_pos, min.positives))
            } else if g.n_neg < min.negatives {
                Some(format!("{} negatives, fewer than the minimum {}", g.n_neg, min.negatives))
            } else {
                None
            };
            match why {
                Some(reason) => GroupEvidence::Insufficient { group: g.group, n: g.n, reason },
                None => GroupEvidence::Rates(g),
            }
        })
        .collect()
}

/// The reference-group screen (Aequitas' convention): each group's rate divided by the
/// reference group's; within [0.8, 1.25] (both inclusive) is within the band. The 80% rule is
/// a screen, not a verdict: it flags favoured groups too.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceRatio {
    /// Group.
    pub group: String,
    /// rate(group) / rate(reference); `None` when either rate is undefined or the reference is 0.
    pub ratio: Option<f64>,
    /// Whether the ratio lies within [0.8, 1.25].
    pub within_band: Option<bool>,
}

/// Ratios of a rate to a reference group's (by default the largest group).
pub fn reference_ratios(groups: &[GroupRates], rate: fn(&GroupRates) -> Option<f64>, reference: Option<&str>) -> Option<(String, Vec<ReferenceRatio>)> {
    let refg = match reference {
        Some(name) => groups.iter().find(|g| g.group == name)?,
        None => groups.iter().max_by(|a, b| a.n.cmp(&b.n).then_with(|| b.group.cmp(&a.group)))?,
    };
    let base = rate(refg);
    let out = groups
        .iter()
        .filter(|g| g.group != refg.group)
        .map(|g| {
            let ratio = match (rate(g), base) {
                (Some(x), Some(b)) if b > 0.0 => Some(x / b),
                _ => None,
            };
            ReferenceRatio { group: g.group.clone(), ratio, within_band: ratio.map(|r| (0.8..=1.25).contains(&r)) }
        })
        .collect();
    Some((refg.group.clone(), out))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn g(name: &str, n: u64, n_pos: u64, sr: f64) -> GroupRates {
        GroupRates { group: name.into(), n, n_pos, n_neg: n - n_pos, selection_rate: Some(sr), tpr: None, fpr: None, ppv: None, npv: None, auc: None }
    }

    #[test]
    fn small_groups_are_insufficient_evidence_not_a_pass() {
        let out = screen(vec![g("big", 100, 40, 0.3), g("tiny", 3, 1, 1.0), g("no_pos", 50, 2, 0.1)], Minimums::default());
        assert!(matches!(&out[0], GroupEvidence::Rates(r) if r.group == "big"));
        assert!(matches!(&out[1], GroupEvidence::Insufficient { reason, .. } if reason.contains("3 rows")));
        assert!(matches!(&out[2], GroupEvidence::Insufficient { reason, .. } if reason.contains("2 positives")));
    }

    #[test]
    fn reference_ratios_use_the_largest_group_and_the_two_sided_band() {
        let groups = [g("A", 500, 100, 0.40), g("B", 200, 50, 0.30), g("C", 100, 20, 0.52), g("D", 50, 10, 0.0)];
        let (reference, r) = reference_ratios(&groups, |g| g.selection_rate, None).unwrap();
        assert_eq!(reference, "A");
        let by: Vec<(String, Option<bool>)> = r.iter().map(|x| (x.group.clone(), x.within_band)).collect();
        // 0.30/0.40 = 0.75 (below), 0.52/0.40 = 1.3 (favoured: above 1.25), 0/0.40 = 0.
        assert_eq!(by, vec![("B".into(), Some(false)), ("C".into(), Some(false)), ("D".into(), Some(false))]);
        let (_, r) = reference_ratios(&groups, |g| g.selection_rate, Some("B")).unwrap();
        assert!((r[0].ratio.unwrap() - 0.4 / 0.3).abs() < 1e-12);
        assert!(reference_ratios(&groups, |g| g.selection_rate, Some("Z")).is_none());
    }
}
