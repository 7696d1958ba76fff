//! Search modes and how the lexical (BM25) and semantic (vector) rankings are fused.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use tantivy::DocAddress;

/// Which ranking answers a query.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// BM25 over the passages' words.
    Lexical,
    /// Cosine between the query's and the passages' embeddings.
    Semantic,
    /// Both, fused by reciprocal rank ([`Fusion`]).
    Hybrid,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Lexical, Mode::Semantic, Mode::Hybrid];

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Lexical => "lexical",
            Mode::Semantic => "semantic",
            Mode::Hybrid => "hybrid",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| format!("mode must be one of lexical, semantic, hybrid (got {s:?})"))
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Weighted reciprocal rank fusion: a passage scores `w / (rrf_k + rank)` from each list it is
/// in (ranks from 1): the passages by BM25, the pages by BM25 (each page's rank goes to its best
/// passage, see [`super::pages`]) and the passages by embedding. Ranks, not scores, so BM25's
/// unbounded scores and cosines need no common scale. Tuned on the tuning half of the
/// Lambda-guide questions (docs/benchmarks.md).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fusion {
    pub rrf_k: f32,
    pub lexical_weight: f32,
    pub page_weight: f32,
    pub semantic_weight: f32,
    /// How deep each list is read before fusing.
    pub candidates: usize,
}

impl Default for Fusion {
    fn default() -> Self {
        Self {
            rrf_k: 10.0,
            lexical_weight: 1.0,
            page_weight: 1.0,
            semantic_weight: 2.0,
            candidates: 50,
        }
    }
}

/// What each ranking said of a hit: its score and 1-based rank there, null where the hit was
/// not among that ranking's candidates (or the mode did not run it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Scores {
    /// BM25 score.
    #[schema(required)]
    pub lexical: Option<f32>,
    #[schema(required, minimum = 1)]
    pub lexical_rank: Option<usize>,
    /// BM25 of the passage's whole page, where this passage stood for its page in hybrid
    /// ranking.
    #[schema(required)]
    pub page: Option<f32>,
    #[schema(required, minimum = 1)]
    pub page_rank: Option<usize>,
    /// Cosine similarity.
    #[schema(required)]
    pub semantic: Option<f32>,
    #[schema(required, minimum = 1)]
    pub semantic_rank: Option<usize>,
}

/// Fuses a lexical ranking (score, passage), a page ranking (score, the page's passage) and a
/// semantic one (passage, cosine), all best first, into the best `k` (passage, fused score,
/// scores); ties keep index order.
pub fn fuse(
    lexical: &[(f32, DocAddress)],
    pages: &[(f32, DocAddress)],
    semantic: &[(DocAddress, f32)],
    f: &Fusion,
    k: usize,
) -> Vec<(DocAddress, f32, Scores)> {
    let mut by: HashMap<DocAddress, (f32, Scores)> = HashMap::new();
    for (i, (score, d)) in lexical.iter().enumerate() {
        let e = by.entry(*d).or_default();
        e.0 += f.lexical_weight / (f.rrf_k + (i + 1) as f32);
        e.1.lexical = Some(*score);
        e.1.lexical_rank = Some(i + 1);
    }
    for (i, (score, d)) in pages.iter().enumerate() {
        let e = by.entry(*d).or_default();
        e.0 += f.page_weight / (f.rrf_k + (i + 1) as f32);
        e.1.page = Some(*score);
        e.1.page_rank = Some(i + 1);
    }
    for (i, (d, score)) in semantic.iter().enumerate() {
        let e = by.entry(*d).or_default();
        e.0 += f.semantic_weight / (f.rrf_k + (i + 1) as f32);
        e.1.semantic = Some(*score);
        e.1.semantic_rank = Some(i + 1);
    }
    let mut out: Vec<(DocAddress, f32, Scores)> =
        by.into_iter().map(|(d, (s, sc))| (d, s, sc)).collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out.truncate(k);
    out
}

/// A ranked answer: the hits and the mode that produced them, with the reason when it is not
/// the mode asked for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ranking {
    pub mode: Mode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    pub hits: Vec<super::Hit>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(i: u32) -> DocAddress {
        DocAddress::new(0, i)
    }

    #[test]
    fn rrf_rewards_agreement_and_keeps_both_scores() {
        let lexical = vec![(9.0, d(1)), (7.0, d(2)), (5.0, d(3))];
        let semantic = vec![(d(3), 0.8), (d(2), 0.7), (d(4), 0.6)];
        let f = Fusion {
            rrf_k: 1.0,
            lexical_weight: 1.0,
            page_weight: 1.0,
            semantic_weight: 1.0,
            candidates: 50,
        };
        let out = fuse(&lexical, &[], &semantic, &f, 10);
        let order: Vec<u32> = out.iter().map(|o| o.0.doc_id).collect();
        // 2: 1/3 + 1/3; 3: 1/4 + 1/2; 1: 1/2; 4: 1/4.
        assert_eq!(order, vec![3, 2, 1, 4]);
        assert!((out[0].1 - 0.75).abs() < 1e-6);
        let two = out.iter().find(|o| o.0 == d(2)).unwrap().2;
        assert_eq!(
            two,
            Scores {
                lexical: Some(7.0),
                lexical_rank: Some(2),
                semantic: Some(0.7),
                semantic_rank: Some(2),
                ..Scores::default()
            }
        );
        assert_eq!(out[3].2.lexical, None);
        assert_eq!(fuse(&lexical, &[], &semantic, &f, 2).len(), 2);
        // A page's rank adds to the passage standing for it.
        let with_page = fuse(&lexical, &[(3.0, d(1))], &semantic, &f, 10);
        assert_eq!(with_page[0].0, d(1), "1: 1/2 + 1/2");
        assert!((with_page[0].1 - 1.0).abs() < 1e-6);
        assert_eq!(
            (with_page[0].2.page, with_page[0].2.page_rank),
            (Some(3.0), Some(1))
        );
        // A zero weight leaves that list's order alone.
        let lex_only = Fusion {
            semantic_weight: 0.0,
            ..f
        };
        let order: Vec<u32> = fuse(&lexical, &[], &[], &lex_only, 3)
            .iter()
            .map(|o| o.0.doc_id)
            .collect();
        assert_eq!(order, vec![1, 2, 3]);
    }

    #[test]
    fn modes_parse() {
        assert_eq!("hybrid".parse::<Mode>(), Ok(Mode::Hybrid));
        assert!("HYBRID".parse::<Mode>().is_err());
        assert_eq!(Mode::Semantic.to_string(), "semantic");
    }
}
