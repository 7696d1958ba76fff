//! Opening an index object and ranking passages for a query.

use std::collections::BTreeMap;

use serde::Serialize;
use tantivy::collector::TopDocs;
use tantivy::query::{
    BooleanQuery, BoostQuery, EnableScoring, Occur, PhraseQuery, Query, Scorer, TermQuery,
};
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::{
    DocAddress, DocId, DocSet, Index, IndexReader, ReloadPolicy, Searcher, SeekDangerResult,
    TantivyDocument, Term,
};

use dataflow_embed::ModelIdentity;

use super::hybrid::{Fusion, Mode, Scores};
use super::pages::Pages;
use super::vectors::Vectors;
use super::*;
use crate::analysis::{self, ANALYZER};

/// A loaded index, ready to search. Cheap to share (`Arc`); searching takes `&self`.
pub struct SearchIndex {
    pub header: Header,
    pub(super) fields: Fields,
    pub(super) searcher: Searcher,
    pub(super) boosts: Boosts,
    pub(super) fusion: Fusion,
    /// One embedding per passage (row i is the passage with document id i), when built with a
    /// model.
    pub(super) vectors: Option<Vectors>,
    /// Whole pages for the lexical evidence no single passage holds, and the first passage row
    /// of each page, ascending (which page a row is in).
    pub(super) pages: Option<(Pages, Vec<u32>)>,
    /// Built once: the stopword set is a hash set, cheap to share, costly to rebuild per query.
    pub(super) analyzer: tantivy::tokenizer::TextAnalyzer,
    pub(super) highlighter: crate::snippet::Highlighter,
}

/// One ranked passage.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Hit {
    pub passage_id: String,
    /// The document's path. Plain text: clients escape it before putting it in HTML.
    pub doc: String,
    /// The document's title. Plain text, exactly as the document states it (an HTML title's
    /// characters such as `<` included): clients escape it.
    pub title: String,
    /// Headings from the top, joined with ' › '. Plain text: clients escape it.
    pub heading: String,
    pub anchor: String,
    /// The ranking's score: BM25 (lexical), cosine (semantic) or the fused reciprocal-rank
    /// score (hybrid).
    pub score: f32,
    /// What each ranking said of this passage.
    pub scores: Scores,
    /// HTML: the passage's text escaped (`&`, `<`, `>`, quotes), with the query terms in
    /// `<mark>`...`</mark>`, the only markup it ever holds.
    pub snippet: String,
    /// The passage's whole text (for prompts; not part of search answers).
    #[serde(skip)]
    pub text: String,
}

impl SearchIndex {
    /// Opens a packed index (checking magic, version and checksum) into memory.
    pub fn open(bytes: &[u8]) -> Result<Self, IndexError> {
        let (header, mut at) = read_header(bytes)?;
        let files: u64 = header.files.iter().map(|f| f.len).sum();
        let dir = super::files::ram_dir(&header.files, &bytes[at..at + files as usize])?;
        at += files as usize;
        let pages = if header.pages.is_empty() {
            None
        } else {
            let len: u64 = header.pages.iter().map(|f| f.len).sum();
            let p = Pages::open(&header.pages, &bytes[at..at + len as usize])?;
            at += len as usize;
            let starts = p.starts()?;
            Some((p, starts))
        };
        let index = Index::open(dir)?;
        index.tokenizers().register(ANALYZER, analysis::analyzer());
        let fields = fields(&index.schema())?;
        let reader: IndexReader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let searcher = reader.searcher();
        let vectors = match &header.vectors {
            Some(info) => {
                let v = Vectors::decode(info, &bytes[at..at + info.bytes as usize])?;
                // Row i is document i: true of the builder's single segment, checked here.
                let segments = searcher.segment_readers();
                let single = segments.len() == 1 && segments[0].max_doc() as usize == v.len();
                if !(single || (segments.is_empty() && v.is_empty())) {
                    return Err(IndexError::BadHeader(
                        "the vectors do not line up with the passages".into(),
                    ));
                }
                Some(v)
            }
            None => None,
        };
        Ok(Self {
            header,
            fields,
            searcher,
            boosts: Boosts::default(),
            fusion: Fusion::default(),
            vectors,
            pages,
            analyzer: analysis::analyzer(),
            highlighter: crate::snippet::Highlighter::default(),
        })
    }

    pub fn with_boosts(mut self, boosts: Boosts) -> Self {
        self.boosts = boosts;
        self
    }

    pub fn with_fusion(mut self, fusion: Fusion) -> Self {
        self.fusion = fusion;
        self
    }

    /// The model the passages were embedded with, if they were.
    pub fn vector_model(&self) -> Option<&ModelIdentity> {
        self.vectors.as_ref().map(|v| &v.model)
    }

    pub fn num_passages(&self) -> u64 {
        self.searcher.num_docs()
    }

    /// Validates a query and returns its analysed terms with their counts.
    pub fn query_terms(q: &str) -> Result<BTreeMap<String, usize>, QueryError> {
        Self::analyse(&mut analysis::analyzer(), q).map(|(counts, _)| counts)
    }

    /// Term counts and the positioned term sequence of a valid query.
    #[allow(clippy::type_complexity)]
    pub(super) fn analyse(
        a: &mut tantivy::tokenizer::TextAnalyzer,
        q: &str,
    ) -> Result<(BTreeMap<String, usize>, Vec<(usize, String)>), QueryError> {
        let q = q.trim();
        if q.is_empty() {
            return Err(QueryError::Empty);
        }
        if q.chars().count() > MAX_QUERY_CHARS {
            return Err(QueryError::TooLong);
        }
        let seq = analysis::positioned_terms(a, q);
        let mut counts = BTreeMap::new();
        for (_, t) in &seq {
            *counts.entry(t.clone()).or_insert(0) += 1;
        }
        if counts.is_empty() {
            return Err(QueryError::NoTerms);
        }
        Ok((counts, seq))
    }

    /// The top `k` passages for `q`, best first. Scores are BM25 summed over the title, heading
    /// and body fields (weighted by [`Boosts`]); a term repeated in the query counts that often.
    pub fn search(&self, q: &str, k: usize) -> Result<Vec<Hit>, SearchError> {
        self.query(q, k, Mode::Lexical, None, true, MAX_K)
            .map(|r| r.hits)
    }

    /// Like [`search`](Self::search) without snippets and up to 1000 hits (evaluation runs).
    pub fn rank(&self, q: &str, k: usize) -> Result<Vec<Hit>, SearchError> {
        self.query(q, k, Mode::Lexical, None, false, 1000)
            .map(|r| r.hits)
    }

    /// BM25 term clauses over the title, heading and body fields, weighted by [`Boosts`] and by
    /// how often the term appears in the query.
    pub(super) fn term_clauses(
        &self,
        terms: &BTreeMap<String, f32>,
    ) -> Vec<(Occur, Box<dyn Query>)> {
        let f = &self.fields;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for (t, n) in terms {
            for (field, boost) in [
                (f.body, self.boosts.body),
                (f.title, self.boosts.title),
                (f.heading, self.boosts.heading),
            ] {
                if boost <= 0.0 {
                    continue;
                }
                let tq = TermQuery::new(
                    Term::from_field_text(field, t),
                    IndexRecordOption::WithFreqs,
                );
                let w = boost * *n;
                // Unboosted term queries stay bare: tantivy's block-max WAND only applies to them.
                if w == 1.0 {
                    clauses.push((Occur::Should, Box::new(tq)));
                } else {
                    clauses.push((Occur::Should, Box::new(BoostQuery::new(Box::new(tq), w))));
                }
            }
        }
        clauses
    }

    /// One phrase query (with slop) per distinct pair of adjacent query terms, on the body.
    pub(super) fn pair_queries(&self, seq: &[(usize, String)]) -> Vec<PhraseQuery> {
        let mut pairs = Vec::new();
        if self.boosts.pairs <= 0.0 {
            return pairs;
        }
        let body = self.fields.body;
        let mut seen = std::collections::HashSet::new();
        for w in seq.windows(2) {
            let (pa, ta) = &w[0];
            let (pb, tb) = &w[1];
            if ta == tb || !seen.insert((ta, tb)) {
                continue;
            }
            let mut pq = PhraseQuery::new_with_offset(vec![
                (0, Term::from_field_text(body, ta)),
                (pb - pa, Term::from_field_text(body, tb)),
            ]);
            pq.set_slop(self.boosts.pair_slop);
            pairs.push(pq);
        }
        pairs
    }

    /// The top `k` (score, passage) pairs, best first. Three steps: the term clauses alone rank
    /// candidates (block-max WAND prunes the rest); pair scores are added to the candidates;
    /// with feedback on, terms drawn from the best candidates (RM3) add their scores to all of
    /// them. Phrase or expansion clauses in the first query would turn the pruning off and
    /// score every passage holding any term.
    pub(super) fn ranked(
        &self,
        terms: &BTreeMap<String, usize>,
        seq: &[(usize, String)],
        k: usize,
    ) -> Result<Vec<(f32, DocAddress)>, IndexError> {
        let b = &self.boosts;
        let weights: BTreeMap<String, f32> =
            terms.iter().map(|(t, n)| (t.clone(), *n as f32)).collect();
        let pairs = self.pair_queries(seq);
        let feedback = b.feedback_docs > 0 && b.feedback_terms > 0;
        let limit = if pairs.is_empty() && !feedback {
            k
        } else {
            // Never more than the index holds: the collector sizes its buffer by the limit.
            let all = usize::try_from(self.searcher.num_docs()).unwrap_or(usize::MAX);
            (k * PAIR_CANDIDATE_FACTOR)
                .max(b.pair_candidates)
                .max(b.feedback_docs)
                .min(all)
                .max(k)
        };
        let mut top = self.searcher.search(
            &BooleanQuery::new(self.term_clauses(&weights)),
            &TopDocs::with_limit(limit).order_by_score(),
        )?;
        let by_score = |top: &mut Vec<(f32, DocAddress)>| {
            // Best first; equal scores in index order.
            top.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        };
        if !pairs.is_empty() {
            let queries: Vec<(&dyn Query, f32)> =
                pairs.iter().map(|q| (q as &dyn Query, b.pairs)).collect();
            self.add_scores(&queries, &mut top)?;
            by_score(&mut top);
        }
        if feedback {
            let expansion = self.expand(&weights, &top[..top.len().min(b.feedback_docs)])?;
            let queries: Vec<(TermQuery, f32)> = expansion
                .into_iter()
                .map(|(t, w)| {
                    let term = Term::from_field_text(self.fields.body, &t);
                    (
                        TermQuery::new(term, IndexRecordOption::WithFreqs),
                        w * b.body,
                    )
                })
                .collect();
            let queries: Vec<(&dyn Query, f32)> =
                queries.iter().map(|(q, w)| (q as &dyn Query, *w)).collect();
            self.add_scores(&queries, &mut top)?;
            by_score(&mut top);
        }
        top.truncate(k);
        Ok(top)
    }

    /// RM3: each feedback passage votes for its terms by their share of its length, weighted by
    /// the passage's share of the feedback weight (a softmax of the scores); the
    /// `feedback_terms` best terms become expansion terms sharing `1 - feedback_original` of the
    /// query's weight (the original terms keep theirs). Expansion terms score on the body: a
    /// passage's text is where they come from.
    fn expand(
        &self,
        query: &BTreeMap<String, f32>,
        feedback: &[(f32, DocAddress)],
    ) -> Result<BTreeMap<String, f32>, IndexError> {
        let b = &self.boosts;
        let none = BTreeMap::new();
        // A passage's weight falls off exponentially with its score's distance from the best
        // (scores are log-like): the top passages speak for the query, the tail barely.
        let temp = b.feedback_temperature.max(0.01);
        let top = feedback.first().map_or(0.0, |(s, _)| *s);
        let weight = |s: f32| ((s - top) / temp).exp();
        let total: f32 = feedback.iter().map(|(s, _)| weight(*s)).sum();
        if total <= 0.0 {
            return Ok(none);
        }
        let mut analyzer = self.analyzer.clone();
        let mut votes: std::collections::HashMap<String, f32> = std::collections::HashMap::new();
        for (score, addr) in feedback {
            let d: TantivyDocument = self.searcher.doc(*addr)?;
            let body = d
                .get_first(self.fields.body)
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            let terms = analysis::positioned_terms(&mut analyzer, body);
            if terms.is_empty() {
                continue;
            }
            let share = weight(*score) / total / terms.len() as f32;
            for (_, t) in terms {
                *votes.entry(t).or_insert(0.0) += share;
            }
        }
        let mut best: Vec<(String, f32)> = votes.into_iter().collect();
        // Heaviest first; ties by term, so a ranking never depends on hash order.
        best.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        best.truncate(b.feedback_terms);
        let mass: f32 = best.iter().map(|(_, w)| w).sum();
        if mass <= 0.0 {
            return Ok(none);
        }
        let lambda = b.feedback_original.clamp(0.05, 1.0);
        let original: f32 = query.values().sum();
        let scale = (1.0 - lambda) / lambda * original / mass;
        Ok(best.into_iter().map(|(t, w)| (t, w * scale)).collect())
    }

    /// Adds each pair's (boosted) phrase score to the candidates that contain it. Candidates are
    /// visited in index order per segment with `seek_danger`, which checks positions only for
    /// the candidates themselves.
    /// Adds each query's score (times its boost) to the candidates holding it.
    fn add_scores(
        &self,
        queries: &[(&dyn Query, f32)],
        top: &mut [(f32, DocAddress)],
    ) -> Result<(), IndexError> {
        let mut order: Vec<usize> = (0..top.len()).collect();
        order.sort_by_key(|&i| top[i].1);
        let scoring = EnableScoring::enabled_from_searcher(&self.searcher);
        for (query, boost) in queries {
            let weight = query.weight(scoring)?;
            let mut at = 0;
            while at < order.len() {
                let seg = top[order[at]].1.segment_ord;
                let reader = self.searcher.segment_reader(seg);
                let mut scorer = weight.scorer(reader, *boost)?;
                // Below `floor` the scorer holds nothing, and seek_danger wants targets at or
                // past its position: a new scorer sits on its first match, a miss reports the
                // least document it could still hold (the inner postings may already be past
                // it: nothing lies between the target and their position either).
                let mut floor: DocId = scorer.doc();
                while at < order.len() && top[order[at]].1.segment_ord == seg {
                    let i = order[at];
                    at += 1;
                    let doc = top[i].1.doc_id;
                    if doc < floor {
                        continue;
                    }
                    match scorer.seek_danger(doc) {
                        SeekDangerResult::Found => {
                            top[i].0 += scorer.score();
                            floor = doc + 1;
                        }
                        SeekDangerResult::SeekLowerBound(next) => floor = next.max(scorer.doc()),
                    }
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// The first `max` characters at a word boundary, HTML-escaped.
pub(super) fn lead(text: &str, max: usize) -> String {
    let mut end = text.len();
    if let Some((i, _)) = text.char_indices().nth(max) {
        end = text[..i].rfind(char::is_whitespace).unwrap_or(i);
    }
    let mut out = String::with_capacity(end + 8);
    crate::snippet::escape_into(&mut out, &text[..end]);
    if end < text.len() {
        out.push('…');
    }
    out
}
