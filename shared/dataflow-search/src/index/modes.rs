//! Searching in a mode: which mode a request can have, the three rankings and their fusion into
//! hits with snippets.

use std::collections::BTreeMap;

use dataflow_embed::Embed;
use tantivy::schema::{Field, Value};
use tantivy::{DocAddress, DocId, TantivyDocument};

use super::hybrid::{fuse, Mode, Ranking, Scores};
use super::search::lead;
use super::*;

impl SearchIndex {
    /// The top `k` passages in a mode. Semantic and hybrid need the index's vectors and the
    /// same model in `embed`; without them the answer is lexical and says why.
    pub fn search_mode(
        &self,
        q: &str,
        k: usize,
        mode: Mode,
        embed: Option<&dyn Embed>,
    ) -> Result<Ranking, SearchError> {
        self.query(q, k, mode, embed, true, MAX_K)
    }

    /// Like [`search_mode`](Self::search_mode) without snippets and up to 1000 hits.
    pub fn rank_mode(
        &self,
        q: &str,
        k: usize,
        mode: Mode,
        embed: Option<&dyn Embed>,
    ) -> Result<Ranking, SearchError> {
        self.query(q, k, mode, embed, false, 1000)
    }

    /// The mode a request can have, the reason when it is not the one asked for, and the model.
    pub fn resolve<'e>(
        &self,
        mode: Mode,
        embed: Option<&'e dyn Embed>,
    ) -> (Mode, Option<String>, Option<&'e dyn Embed>) {
        if mode == Mode::Lexical {
            return (mode, None, None);
        }
        let reason = match (&self.vectors, embed) {
            (None, _) => "the index was built without vectors (no embedding model at build time)"
                .to_owned(),
            (Some(_), None) => "this search function has no embedding model loaded".to_owned(),
            (Some(v), Some(e)) if v.model != *e.identity() => format!(
                "the index's vectors come from {} (weights sha256 {}), this function runs {} (sha256 {})",
                v.model.name,
                short(&v.model.sha256),
                e.identity().name,
                short(&e.identity().sha256)
            ),
            (Some(_), Some(e)) => return (mode, None, Some(e)),
        };
        (
            Mode::Lexical,
            Some(format!("{mode} search unavailable: {reason}")),
            None,
        )
    }

    pub(super) fn query(
        &self,
        q: &str,
        k: usize,
        mode: Mode,
        embed: Option<&dyn Embed>,
        snippets: bool,
        max_k: usize,
    ) -> Result<Ranking, SearchError> {
        if !(1..=max_k).contains(&k) {
            return Err(QueryError::BadK.into());
        }
        let (mut mode, mut fallback, embed) = self.resolve(mode, embed);
        let mut analyzer = self.analyzer.clone();
        // A question of stopwords alone ("how do I…") still has a meaning to search by.
        let (terms, seq) = match Self::analyse(&mut analyzer, q) {
            Ok(a) => a,
            Err(QueryError::NoTerms) if mode != Mode::Lexical => (BTreeMap::new(), Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let query_vector = match embed.map(|e| e.embed(&[q.trim()])) {
            Some(Ok(mut v)) if v.len() == 1 => Some(v.remove(0)),
            Some(Ok(_)) => None,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "query embedding failed; answering lexically");
                fallback = Some(format!(
                    "{mode} search unavailable: embedding the query failed: {e}"
                ));
                None
            }
            None => None,
        };
        if query_vector.is_none() && mode != Mode::Lexical {
            mode = Mode::Lexical;
        }
        if mode == Mode::Lexical && terms.is_empty() {
            return Err(QueryError::NoTerms.into());
        }
        let semantic = |n: usize| -> Vec<(DocAddress, f32)> {
            match (&self.vectors, &query_vector) {
                (Some(v), Some(qv)) => v
                    .nearest(qv, n)
                    .into_iter()
                    .map(|(row, s)| (DocAddress::new(0, row as DocId), s))
                    .collect(),
                _ => Vec::new(),
            }
        };
        let ranked: Vec<(DocAddress, f32, Scores)> = match mode {
            Mode::Lexical => {
                let top = self.ranked(&terms, &seq, k)?;
                one_list(top.into_iter().map(|(s, d)| (d, s)), |sc, s, r| {
                    sc.lexical = Some(s);
                    sc.lexical_rank = Some(r);
                })
            }
            Mode::Semantic => one_list(semantic(k), |sc, s, r| {
                sc.semantic = Some(s);
                sc.semantic_rank = Some(r);
            }),
            Mode::Hybrid => {
                let n = self.fusion.candidates.max(k);
                let lexical = if terms.is_empty() {
                    Vec::new()
                } else {
                    self.ranked(&terms, &seq, n)?
                };
                let semantic = semantic(n);
                let pages = self.page_passages(&terms, n, &lexical, &semantic)?;
                fuse(&lexical, &pages, &semantic, &self.fusion, k)
            }
        };
        let f = &self.fields;
        let query_terms: Vec<&str> = terms.keys().map(String::as_str).collect();
        let mut highlighter = snippets.then(|| self.highlighter.clone());
        let mut hits = Vec::with_capacity(ranked.len());
        for (addr, score, scores) in ranked {
            let d: TantivyDocument = self.searcher.doc(addr).map_err(IndexError::from)?;
            let text = |field: Field| {
                d.get_first(field)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            let body = text(f.body);
            let snippet = match highlighter.as_mut() {
                // Matched on title, heading or meaning only: show the passage's start.
                Some(h) => h
                    .snippet(&body, &query_terms, SNIPPET_CHARS)
                    .unwrap_or_else(|| lead(&body, SNIPPET_CHARS)),
                None => String::new(),
            };
            hits.push(Hit {
                passage_id: text(f.id),
                doc: text(f.doc),
                title: text(f.title),
                heading: text(f.heading),
                anchor: text(f.anchor),
                score,
                scores,
                snippet,
                text: body,
            });
        }
        Ok(Ranking {
            mode,
            fallback,
            hits,
        })
    }

    /// The page ranking, each page standing as its best passage: the best-ranked one of that
    /// page in the lexical list, else in the semantic list, else its first. An index without
    /// pages has one passage a page, so its passage ranking stands for the pages.
    fn page_passages(
        &self,
        terms: &BTreeMap<String, usize>,
        n: usize,
        lexical: &[(f32, DocAddress)],
        semantic: &[(DocAddress, f32)],
    ) -> Result<Vec<(f32, DocAddress)>, IndexError> {
        // Every page is one passage (no page index): the passages' ranking is the pages'.
        let Some((pages, starts)) = &self.pages else {
            return Ok(lexical.to_vec());
        };
        let page_of = |d: &DocAddress| starts.partition_point(|s| *s <= d.doc_id);
        let mut best: std::collections::HashMap<usize, DocAddress> =
            std::collections::HashMap::new();
        for d in lexical
            .iter()
            .map(|(_, d)| d)
            .chain(semantic.iter().map(|(d, _)| d))
        {
            best.entry(page_of(d)).or_insert(*d);
        }
        let mut out = Vec::new();
        for (score, page) in pages.ranked(terms, n)? {
            let first = starts.get(page).ok_or_else(|| {
                IndexError::BadHeader("a page beyond the page index's rows".into())
            })?;
            let first = DocAddress::new(0, *first);
            out.push((score, *best.get(&page_of(&first)).unwrap_or(&first)));
        }
        Ok(out)
    }
}

/// The first 12 hex digits of a hash, for messages.
fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// A single ranking as hits: its own score, and its score and 1-based rank in `scores`.
fn one_list(
    list: impl IntoIterator<Item = (DocAddress, f32)>,
    mark: impl Fn(&mut Scores, f32, usize),
) -> Vec<(DocAddress, f32, Scores)> {
    list.into_iter()
        .enumerate()
        .map(|(i, (d, s))| {
            let mut scores = Scores::default();
            mark(&mut scores, s, i + 1);
            (d, s, scores)
        })
        .collect()
}
