//! Log-parsing accuracy: Grouping Accuracy, Parsing Accuracy and FGA, as
//! defined in `shared/datasets/loghub-dev/README.md` and implemented by
//! `shared/tools/loghub_score.py` (checked against it on the same files).
//!
//! - GA (Zhu et al., ICSE-SEIP 2019; logparser `evaluator.py`): a line counts
//!   when its predicted group is exactly the set of lines of its true group.
//! - PA (Khan et al., ICSE 2022; Loghub-2.0): a line counts when its predicted
//!   template equals the true one after whitespace runs collapse to one space
//!   and the ends are stripped.
//! - FGA (Jiang et al., ISSTA 2024): F1 of the share of predicted groups and of
//!   true groups that are correct.
//!
//! True groups are lines with the same true template string; predicted groups
//! lines with the same predicted key (the template string, or an id).

use std::collections::HashMap;
use std::hash::Hash;

use serde::Serialize;

use crate::error::LoghubError;

/// The scores of one system.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Scores {
    /// Lines scored.
    pub lines: usize,
    /// Distinct true templates.
    pub true_groups: usize,
    /// Distinct predicted keys.
    pub predicted_groups: usize,
    /// Grouping Accuracy.
    pub ga: f64,
    /// Parsing Accuracy (`None` without predicted templates).
    pub pa: Option<f64>,
    /// F1 of group accuracy.
    pub fga: f64,
    /// Correct groups / predicted groups.
    pub pga: f64,
    /// Correct groups / true groups.
    pub rga: f64,
}

/// Scores predictions against the true templates of the same lines, in the
/// same order. `predicted_keys` defines the predicted groups;
/// `predicted_templates`, when given, is compared for PA.
pub fn score<K: Hash + Eq, S: AsRef<str>, T: AsRef<str>>(
    truth: &[S],
    predicted_keys: &[K],
    predicted_templates: Option<&[T]>,
) -> Result<Scores, LoghubError> {
    let n = truth.len();
    if predicted_keys.len() != n {
        return Err(LoghubError::Length {
            predicted: predicted_keys.len(),
            truth: n,
        });
    }
    if let Some(t) = predicted_templates {
        if t.len() != n {
            return Err(LoghubError::Length {
                predicted: t.len(),
                truth: n,
            });
        }
    }
    if n == 0 {
        return Err(LoghubError::Empty);
    }
    let mut true_groups: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, t) in truth.iter().enumerate() {
        true_groups.entry(t.as_ref()).or_default().push(i);
    }
    let mut pred_size: HashMap<&K, usize> = HashMap::new();
    for k in predicted_keys {
        *pred_size.entry(k).or_default() += 1;
    }
    let mut correct_lines = 0;
    let mut correct_groups = 0;
    for lines in true_groups.values() {
        let key = &predicted_keys[lines[0]];
        if lines.iter().all(|&i| predicted_keys[i] == *key) && pred_size[key] == lines.len() {
            correct_lines += lines.len();
            correct_groups += 1;
        }
    }
    let ga = correct_lines as f64 / n as f64;
    let pga = correct_groups as f64 / pred_size.len() as f64;
    let rga = correct_groups as f64 / true_groups.len() as f64;
    let fga = if pga + rga == 0.0 {
        0.0
    } else {
        2.0 * pga * rga / (pga + rga)
    };
    let pa = predicted_templates.map(|p| {
        let ok = p
            .iter()
            .zip(truth)
            .filter(|(p, t)| normalise_eq(p.as_ref(), t.as_ref()))
            .count();
        ok as f64 / n as f64
    });
    Ok(Scores {
        lines: n,
        true_groups: true_groups.len(),
        predicted_groups: pred_size.len(),
        ga,
        pa,
        fga,
        pga,
        rga,
    })
}

/// `" ".join(a.split()) == " ".join(b.split())` without allocating.
pub fn normalise_eq(a: &str, b: &str) -> bool {
    a.split_whitespace().eq(b.split_whitespace())
}

/// The plain mean of GA, PA and FGA over systems (PA `None` if any is).
pub fn mean(scores: &[Scores]) -> (f64, Option<f64>, f64) {
    let n = scores.len().max(1) as f64;
    let ga = scores.iter().map(|s| s.ga).sum::<f64>() / n;
    let fga = scores.iter().map(|s| s.fga).sum::<f64>() / n;
    let pa = scores
        .iter()
        .map(|s| s.pa)
        .sum::<Option<f64>>()
        .map(|p| p / n);
    (ga, pa, fga)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truth_against_itself_is_perfect() {
        let t = ["a <*>", "b", "a <*>", "c  <*>"];
        let s = score(&t, &t, Some(&t)).unwrap();
        assert_eq!((s.ga, s.pa, s.fga), (1.0, Some(1.0), 1.0));
        assert_eq!((s.true_groups, s.predicted_groups), (3, 3));
    }

    #[test]
    fn worked_example() {
        // True groups: A = {0,1}, B = {2}, C = {3,4}.
        let truth = ["A <*>", "A <*>", "B", "C <*>", "C <*>"];
        // Predicted: {0,1} right, {2,3} wrong (B merged with part of C), {4}.
        let keys = [1, 1, 2, 2, 3];
        let templates = ["A  <*> ", "A <*>", "B", "C x", "C <*>"];
        let s = score(&truth, &keys, Some(&templates)).unwrap();
        assert_eq!(s.ga, 2.0 / 5.0);
        assert_eq!(s.pa, Some(4.0 / 5.0));
        // One correct group of 3 predicted and 3 true: PGA = RGA = 1/3.
        assert!((s.fga - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn lengths_must_agree() {
        let err = score(&["a"], &[1, 2], None::<&[&str]>).unwrap_err();
        assert_eq!(
            err.to_string(),
            "2 predicted lines for 1 ground-truth lines"
        );
        assert_eq!(
            score::<i32, &str, &str>(&[], &[], None).unwrap_err(),
            LoghubError::Empty
        );
    }

    #[test]
    fn mean_is_plain() {
        let a = score(&["x"], &[1], Some(&["x"])).unwrap();
        let b = score(&["x", "y"], &[1, 1], Some(&["x", "q"])).unwrap();
        let (ga, pa, fga) = mean(&[a, b]);
        assert_eq!(ga, 0.5);
        assert_eq!(pa, Some(0.75));
        assert_eq!(fga, 0.5);
    }
}
