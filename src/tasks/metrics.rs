//! Evaluation metrics: accuracy and macro-F1 (classification), exact match (QA), ROUGE-L
//! (generation, through `rougers`, which matches Google's rouge-score), entity span F1 (NER), and
//! mean / standard deviation over seeds.

use std::collections::{BTreeMap, HashSet};

/// Fraction of `preds[i] == golds[i]`. Empty input scores 0.
pub fn accuracy(preds: &[&str], golds: &[&str]) -> f64 {
    if golds.is_empty() {
        return 0.0;
    }
    let hits = preds.iter().zip(golds).filter(|(p, g)| p == g).count();
    hits as f64 / golds.len() as f64
}

/// Unweighted mean over `labels` of per-label F1 (a label never predicted nor gold scores 0, as
/// in scikit-learn with zero_division=0, and still counts).
pub fn macro_f1(preds: &[&str], golds: &[&str], labels: &[String]) -> f64 {
    if labels.is_empty() {
        return 0.0;
    }
    let f1s = labels.iter().map(|l| {
        let (mut tp, mut fp, mut fneg) = (0usize, 0usize, 0usize);
        for (p, g) in preds.iter().zip(golds) {
            match (*p == l.as_str(), *g == l.as_str()) {
                (true, true) => tp += 1,
                (true, false) => fp += 1,
                (false, true) => fneg += 1,
                _ => {}
            }
        }
        f1(tp, fp, fneg)
    });
    f1s.sum::<f64>() / labels.len() as f64
}

fn f1(tp: usize, fp: usize, fneg: usize) -> f64 {
    if tp == 0 {
        return 0.0;
    }
    let p = tp as f64 / (tp + fp) as f64;
    let r = tp as f64 / (tp + fneg) as f64;
    2.0 * p * r / (p + r)
}

/// SQuAD normalisation: lower case, no punctuation, no articles, single spaces.
pub fn normalize_answer(s: &str) -> String {
    let lower: String = s
        .to_lowercase()
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect();
    lower
        .split_whitespace()
        .filter(|w| !matches!(*w, "a" | "an" | "the"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// 1 when the normalised prediction equals any normalised reference.
pub fn exact_match(pred: &str, references: &[&str]) -> f64 {
    let p = normalize_answer(pred);
    f64::from(references.iter().any(|r| normalize_answer(r) == p))
}

/// ROUGE-L F-measure (rouge-score's tokenizer, Porter stemming on), best over `references`.
pub fn rouge_l(pred: &str, references: &[&str]) -> f64 {
    thread_local! {
        static SCORER: rougers::RougeScorer =
            rougers::RougeScorer::new(["rougeL"], true).expect("rougeL is a valid rouge type");
    }
    SCORER.with(|s| {
        references
            .iter()
            .map(|r| {
                s.score(r, pred)
                    .iter()
                    .next()
                    .map_or(0.0, |(_, sc)| sc.fmeasure)
            })
            .fold(0.0, f64::max)
    })
}

/// Linearised entities as the NER tasks write them: "span [type]; span [type]", or "none".
pub fn format_entities(entities: &[(String, String)]) -> String {
    if entities.is_empty() {
        return "none".into();
    }
    entities
        .iter()
        .map(|(span, ty)| format!("{span} [{ty}]"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Inverse of [`format_entities`], tolerant of generated text: malformed pieces are skipped.
pub fn parse_entities(s: &str) -> Vec<(String, String)> {
    s.split(';')
        .filter_map(|piece| {
            let piece = piece.trim();
            let open = piece.rfind('[')?;
            let ty = piece[open + 1..].strip_suffix(']')?.trim();
            let span = piece[..open].trim();
            (!span.is_empty() && !ty.is_empty()).then(|| (span.to_lowercase(), ty.to_lowercase()))
        })
        .collect()
}

/// Micro span F1 over a corpus: an entity counts when span and type both match.
pub fn span_f1(preds: &[&str], golds: &[&str]) -> f64 {
    let (mut tp, mut fp, mut fneg) = (0, 0, 0);
    for (p, g) in preds.iter().zip(golds) {
        let p: HashSet<_> = parse_entities(p).into_iter().collect();
        let g: HashSet<_> = parse_entities(g).into_iter().collect();
        let hit = p.intersection(&g).count();
        tp += hit;
        fp += p.len() - hit;
        fneg += g.len() - hit;
    }
    f1(tp, fp, fneg)
}

/// Mean and sample standard deviation (n - 1; 0 for a single value).
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    if xs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() == 1 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// Label counts, for reporting class balance.
pub fn label_counts<'a>(labels: impl IntoIterator<Item = &'a str>) -> BTreeMap<&'a str, usize> {
    let mut m = BTreeMap::new();
    for l in labels {
        *m.entry(l).or_insert(0) += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn accuracy_and_macro_f1_match_hand_computation() {
        let golds = ["a", "a", "b", "b", "c"];
        let preds = ["a", "b", "b", "b", "a"];
        assert!((accuracy(&preds, &golds) - 0.6).abs() < 1e-12);
        // a: tp1 fp1 fn1 -> 0.5; b: tp2 fp1 fn0 -> 0.8; c: 0.
        let f = macro_f1(&preds, &golds, &labels(&["a", "b", "c"]));
        assert!((f - (0.5 + 0.8 + 0.0) / 3.0).abs() < 1e-12, "{f}");
        assert_eq!(accuracy(&[], &[]), 0.0);
    }

    #[test]
    fn exact_match_normalises_like_squad() {
        assert_eq!(exact_match("The Eiffel Tower!", &["eiffel tower"]), 1.0);
        assert_eq!(exact_match("Paris", &["London", "paris"]), 1.0);
        assert_eq!(exact_match("Paris, France", &["Paris"]), 0.0);
    }

    #[test]
    fn rouge_l_is_rouge_score_value() {
        // rouge-score: target "the cat sat on the mat", prediction "the cat on the mat":
        // LCS 5, P 5/5, R 5/6 -> F 0.90909.
        let f = rouge_l("the cat on the mat", &["the cat sat on the mat"]);
        assert!((f - 10.0 / 11.0).abs() < 1e-9, "{f}");
        assert_eq!(rouge_l("zebra", &["the cat"]), 0.0);
        assert_eq!(rouge_l("the cat", &["dog", "the cat"]), 1.0);
    }

    #[test]
    fn entities_round_trip_and_span_f1() {
        let ents = vec![
            ("Empire State Building".to_string(), "facility".to_string()),
            ("ESB".to_string(), "facility".to_string()),
        ];
        let s = format_entities(&ents);
        assert_eq!(s, "Empire State Building [facility]; ESB [facility]");
        assert_eq!(parse_entities(&s).len(), 2);
        assert!(parse_entities("none").is_empty());
        assert!(parse_entities("garbage [; x [").is_empty());
        // one of two gold entities found, plus one wrong type: P 1/2, R 1/2.
        let f = span_f1(
            &["ESB [facility]; Empire State Building [person]"],
            &[s.as_str()],
        );
        assert!((f - 0.5).abs() < 1e-12, "{f}");
        assert_eq!(span_f1(&["none"], &["none"]), 0.0);
    }

    #[test]
    fn mean_and_sample_std() {
        let (m, s) = mean_std(&[1.0, 2.0, 3.0, 4.0]);
        assert!((m - 2.5).abs() < 1e-12);
        assert!((s - 1.290_994_448_7).abs() < 1e-9);
        assert_eq!(mean_std(&[3.0]), (3.0, 0.0));
    }
}
