//! Opening an index object and ranking passages for a query.

use std::collections::BTreeMap;

use serde::Serialize;
use tantivy::collector::TopDocs;
use tantivy::query::{
    BooleanQuery, BoostQuery, EnableScoring, Occur, PhraseQuery, Query, Scorer, TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption, Value};
use tantivy::{
    DocAddress, DocId, DocSet, Index, IndexReader, ReloadPolicy, Searcher, SeekDangerResult,
    TantivyDocument, Term,
};

use dataflow_embed::{Embed, ModelIdentity};

use super::hybrid::{fuse, Fusion, Mode, Ranking, Scores};
use super::pages::Pages;
use super::vectors::Vectors;
use super::*;
use crate::analysis::{self, ANALYZER};

/// A loaded index, ready to search. Cheap to share (`Arc`); searching takes `&self`.
pub struct SearchIndex {
    pub header: Header,
    fields: Fields,
    pub(super) searcher: Searcher,
    pub(super) boosts: Boosts,
    pub(super) fusion: Fusion,
    /// One embedding per passage (row i is the passage with document id i), when built with a
    /// model.
    vectors: Option<Vectors>,
    /// Whole pages for the lexical evidence no single passage holds, and the first passage row
    /// of each page, ascending (which page a row is in).
    pages: Option<(Pages, Vec<u32>)>,
    /// Built once: the stopword set is a hash set, cheap to share, costly to rebuild per query.
    analyzer: tantivy::tokenizer::TextAnalyzer,
    highlighter: crate::snippet::Highlighter,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    pub passage_id: String,
    pub doc: String,
    pub title: String,
    pub heading: String,
    pub anchor: String,
    /// The ranking's score: BM25 (lexical), cosine (semantic) or the fused score (hybrid).
    pub score: f32,
    /// What each ranking said of this passage.
    pub scores: Scores,
    /// The best window of the passage, HTML-escaped, query terms in `<mark>`.
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
        let dir = super::pack::ram_dir(&header.files, &bytes[at..at + files as usize])?;
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

    fn query(
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
            Mode::Lexical => self
                .ranked(&terms, &seq, k)?
                .into_iter()
                .enumerate()
                .map(|(i, (s, d))| {
                    let scores = Scores {
                        lexical: Some(s),
                        lexical_rank: Some(i + 1),
                        ..Scores::default()
                    };
                    (d, s, scores)
                })
                .collect(),
            Mode::Semantic => semantic(k)
                .into_iter()
                .enumerate()
                .map(|(i, (d, s))| {
                    let scores = Scores {
                        semantic: Some(s),
                        semantic_rank: Some(i + 1),
                        ..Scores::default()
                    };
                    (d, s, scores)
                })
                .collect(),
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

/// The first 12 hex digits of a hash, for messages.
fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// The first `max` characters at a word boundary, HTML-escaped.
fn lead(text: &str, max: usize) -> String {
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
