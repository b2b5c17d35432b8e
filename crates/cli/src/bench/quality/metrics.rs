//! Answer and retrieval scores: SQuAD's exact match and token F1, and evidence recall@k.
//!
//! SQuAD normalisation (its official evaluation script, re-written here): lower-case, drop
//! ASCII punctuation, drop the articles "a", "an" and "the" as whole words, collapse
//! whitespace.

use std::collections::HashMap;

/// The answer's words after SQuAD normalisation.
pub fn normalize(text: &str) -> Vec<String> {
    let lowered = text.to_lowercase();
    let kept: String = lowered
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    kept.split_whitespace()
        .filter(|w| !matches!(*w, "a" | "an" | "the"))
        .map(str::to_string)
        .collect()
}

/// 1 when the normalised prediction equals the normalised reference, else 0.
pub fn exact_match(prediction: &str, reference: &str) -> f64 {
    f64::from(u8::from(normalize(prediction) == normalize(reference)))
}

/// The harmonic mean of precision and recall over normalised words (a multiset overlap).
/// When either side has no words, 1 if both have none, else 0 (as SQuAD 2.0 scores it).
pub fn f1(prediction: &str, reference: &str) -> f64 {
    let p = normalize(prediction);
    let r = normalize(reference);
    if p.is_empty() || r.is_empty() {
        return f64::from(u8::from(p == r));
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for w in &r {
        *counts.entry(w).or_default() += 1;
    }
    let mut common = 0usize;
    for w in &p {
        if let Some(n) = counts.get_mut(w.as_str())
            && *n > 0
        {
            *n -= 1;
            common += 1;
        }
    }
    if common == 0 {
        return 0.0;
    }
    let precision = common as f64 / p.len() as f64;
    let recall = common as f64 / r.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// 1 when the normalised reference appears as a run of whole words in the normalised
/// prediction (a lenient score for answers written as sentences), else 0.
pub fn contains(prediction: &str, reference: &str) -> f64 {
    let p = normalize(prediction);
    let r = normalize(reference);
    let found = !r.is_empty() && p.windows(r.len()).any(|w| w == r.as_slice());
    f64::from(u8::from(found))
}

/// 1 when one of the first `k` retrieved titles is the gold title (exact, case-sensitive
/// string equality), else 0.
pub fn recall_at(titles: &[String], gold: &str, k: usize) -> f64 {
    f64::from(u8::from(titles.iter().take(k).any(|t| t == gold)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_follows_squad() {
        assert_eq!(normalize("The  Eiffel-Tower!"), ["eiffeltower"]);
        assert_eq!(
            normalize("A cat, an owl and THE dog."),
            ["cat", "owl", "and", "dog"]
        );
        // Articles only as whole words; other words keep their letters.
        assert_eq!(normalize("Theatre anthem"), ["theatre", "anthem"]);
        assert_eq!(normalize("$1.027 billion"), ["1027", "billion"]);
        assert!(normalize(" the . a ").is_empty());
    }

    #[test]
    fn exact_match_ignores_case_punctuation_and_articles() {
        assert_eq!(exact_match("the Denver Broncos.", "Denver Broncos"), 1.0);
        assert_eq!(exact_match("Denver Broncos", "Carolina Panthers"), 0.0);
        assert_eq!(exact_match("Denver", "Denver Broncos"), 0.0);
    }

    #[test]
    fn f1_counts_shared_words() {
        assert_eq!(f1("Denver Broncos", "Denver Broncos"), 1.0);
        // 1 shared word: precision 1/1, recall 1/2 → 2/3.
        assert!((f1("Denver", "Denver Broncos") - 2.0 / 3.0).abs() < 1e-12);
        // precision 2/4, recall 2/2 → 2/3.
        assert!((f1("the Broncos of Denver won", "Denver Broncos") - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(f1("Carolina Panthers", "Denver Broncos"), 0.0);
        // Repeated words count once per occurrence on both sides.
        assert!((f1("Denver Denver", "Denver Broncos") - 0.5).abs() < 1e-12);
        assert_eq!(f1("", ""), 1.0);
        assert_eq!(f1("the", "Denver"), 0.0);
    }

    #[test]
    fn contains_needs_whole_words_in_order() {
        assert_eq!(
            contains("It was the Denver Broncos.", "Denver Broncos"),
            1.0
        );
        assert_eq!(contains("Broncos of Denver", "Denver Broncos"), 0.0);
        assert_eq!(contains("Denverites", "Denver"), 0.0);
        assert_eq!(contains("anything", "the"), 0.0);
    }

    #[test]
    fn recall_looks_at_the_first_k_titles_only() {
        let titles = ["Paris", "France", "Lyon"].map(String::from);
        assert_eq!(recall_at(&titles, "Paris", 1), 1.0);
        assert_eq!(recall_at(&titles, "France", 1), 0.0);
        assert_eq!(recall_at(&titles, "France", 10), 1.0);
        assert_eq!(recall_at(&titles, "france", 10), 0.0);
        assert_eq!(recall_at(&titles, "Berlin", 10), 0.0);
    }
}
