//! Context for a prompt: the best passages packed into a token budget, each with its citation.
//!
//! Whole passages only, best first; one that does not fit is passed over for a smaller one
//! further down. Passages are de-duplicated: the chunker repeats ~200 characters between the
//! pieces of a long section, and a piece whose text is already inside the context adds nothing.

use serde::Serialize;

use crate::index::Hit;

/// Largest budget a caller may ask for, and the default.
pub const MAX_TOKENS: usize = 32_000;
pub const DEFAULT_TOKENS: usize = 1_000;

/// Tokens a text costs in a prompt, estimated as one per four bytes of UTF-8, rounded up: the
/// usual figure for English under LLM tokenizers; a budget is a bound, not an exact count.
pub fn estimate_tokens(text: &str) -> usize {
    text.len().div_ceil(4)
}

/// Where a passage comes from, to cite it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Citation {
    pub doc: String,
    pub title: String,
    /// Headings from the top, joined with ' › '.
    pub heading: String,
    pub anchor: String,
    pub passage_id: String,
    pub score: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ContextPassage {
    /// 1-based: how a prompt refers to the passage (`[1]`).
    #[schema(minimum = 1)]
    pub n: usize,
    /// The passage's whole text, plain (not HTML).
    pub text: String,
    pub tokens: usize,
    pub citation: Citation,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Context {
    pub max_tokens: usize,
    pub used_tokens: usize,
    pub passages: Vec<ContextPassage>,
    /// Passages that were ranked but left out: over the budget, or already in the context.
    pub skipped_over_budget: usize,
    pub skipped_duplicates: usize,
}

/// Packs ranked hits (best first) into `max_tokens`.
pub fn pack(hits: Vec<Hit>, max_tokens: usize) -> Context {
    let mut ctx = Context {
        max_tokens,
        used_tokens: 0,
        passages: Vec::new(),
        skipped_over_budget: 0,
        skipped_duplicates: 0,
    };
    for h in hits {
        let text = h.text.trim();
        if text.is_empty()
            || ctx
                .passages
                .iter()
                .any(|p| p.citation.passage_id == h.passage_id || p.text.contains(text))
        {
            ctx.skipped_duplicates += 1;
            continue;
        }
        let tokens = estimate_tokens(text);
        if ctx.used_tokens + tokens > max_tokens {
            ctx.skipped_over_budget += 1;
            continue;
        }
        // An earlier piece wholly inside this one says nothing this one does not.
        let before = ctx.passages.len();
        ctx.passages.retain(|p| !text.contains(p.text.as_str()));
        ctx.skipped_duplicates += before - ctx.passages.len();
        ctx.passages.push(ContextPassage {
            n: 0,
            text: text.to_owned(),
            tokens,
            citation: Citation {
                doc: h.doc,
                title: h.title,
                heading: h.heading,
                anchor: h.anchor,
                passage_id: h.passage_id,
                score: h.score,
            },
        });
        ctx.used_tokens = ctx.passages.iter().map(|p| p.tokens).sum();
    }
    for (i, p) in ctx.passages.iter_mut().enumerate() {
        p.n = i + 1;
    }
    ctx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Scores;

    fn hit(id: &str, text: &str, score: f32) -> Hit {
        Hit {
            passage_id: id.into(),
            doc: format!("{}.md", &id[..1]),
            title: "T".into(),
            heading: "T › H".into(),
            anchor: "h".into(),
            score,
            scores: Scores::default(),
            snippet: String::new(),
            text: text.into(),
        }
    }

    #[test]
    fn best_first_whole_passages_within_budget() {
        let hits = vec![
            hit("a1", &"x".repeat(400), 3.0), // 100 tokens
            hit("b1", &"y".repeat(800), 2.0), // 200: over what is left of 250
            hit("c1", &"z".repeat(200), 1.0), // 50: fits
            hit("a1", &"x".repeat(400), 0.5), // the same passage again
            hit("d1", &"x".repeat(100), 0.4), // inside a1's text
            hit("e1", "  ", 0.3),             // nothing to say
        ];
        let c = pack(hits, 250);
        let ids: Vec<&str> = c
            .passages
            .iter()
            .map(|p| p.citation.passage_id.as_str())
            .collect();
        assert_eq!(ids, vec!["a1", "c1"]);
        assert_eq!(c.used_tokens, 150);
        assert_eq!((c.skipped_over_budget, c.skipped_duplicates), (1, 3));
        assert_eq!(c.passages[1].n, 2);
        assert_eq!(c.passages[0].citation.heading, "T › H");
        assert!(c.used_tokens <= c.max_tokens);
    }

    #[test]
    fn a_budget_smaller_than_any_passage_is_an_empty_context() {
        let c = pack(vec![hit("a1", "some words here", 1.0)], 1);
        assert!(c.passages.is_empty());
        assert_eq!(c.used_tokens, 0);
        assert_eq!(c.skipped_over_budget, 1);
    }

    #[test]
    fn a_later_passage_holding_an_earlier_one_replaces_it() {
        let c = pack(
            vec![
                hit("a1", "short part", 2.0),
                hit("b1", "a short part and more", 1.0),
            ],
            100,
        );
        let ids: Vec<&str> = c
            .passages
            .iter()
            .map(|p| p.citation.passage_id.as_str())
            .collect();
        assert_eq!(ids, vec!["b1"]);
        assert_eq!(c.skipped_duplicates, 1);
        assert_eq!(c.passages[0].n, 1);
    }

    #[test]
    fn tokens_are_estimated_from_utf8_length() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("abcd"), 1);
        assert_eq!(estimate_tokens("abcde"), 2);
        assert_eq!(estimate_tokens("ééé"), 2);
    }
}
