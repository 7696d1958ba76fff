//! Whole pages, searched lexically beside the passages. A passage holds one section; a question
//! whose words are spread over a page (one in the title, two in different sections) matches no
//! single passage well, while BM25 over the page sees all of them. The page ranking is a third
//! list in hybrid fusion: each page lends its rank to its best passage.
//!
//! The pages are a second tantivy index in the same object (its files follow the passages'), so
//! the passages' BM25 statistics are untouched.

use std::collections::BTreeMap;

use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, BoostQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, STORED,
};
use tantivy::{Index, IndexReader, ReloadPolicy, Searcher, TantivyDocument, Term};

use super::{FileEntry, IndexError, Record};
use crate::analysis::{self, ANALYZER};

struct PageFields {
    first: Field,
    text: Field,
}

fn schema() -> (Schema, PageFields) {
    let mut b = Schema::builder();
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(ANALYZER)
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let f = PageFields {
        first: b.add_u64_field("first", STORED),
        text: b.add_text_field("text", text),
    };
    (b.build(), f)
}

/// Indexes the pages of records (consecutive records of one `doc` are one page) and returns its
/// files, named and sorted; none when there are no records.
pub(super) fn pack_pages(records: &[Record]) -> Result<Vec<(FileEntry, Vec<u8>)>, IndexError> {
    if records.is_empty() {
        return Ok(Vec::new());
    }
    let (schema, f) = schema();
    let dir = tempfile::tempdir()?;
    let index = Index::create_in_dir(dir.path(), schema)?;
    index.tokenizers().register(ANALYZER, analysis::analyzer());
    let mut writer = index.writer_with_num_threads(1, 256 << 20)?;
    let mut start = 0usize;
    while start < records.len() {
        let doc = &records[start].doc;
        let end = start
            + records[start..]
                .iter()
                .take_while(|r| &r.doc == doc)
                .count();
        let mut d = TantivyDocument::default();
        d.add_u64(f.first, start as u64);
        let page = &records[start..end];
        d.add_text(f.text, &page[0].title);
        for r in page {
            d.add_text(f.text, &r.heading);
            d.add_text(f.text, &r.body);
        }
        writer.add_document(d)?;
        start = end;
    }
    writer.commit()?;
    writer.wait_merging_threads()?;
    drop(index);
    super::files::dir_files(dir.path())
}

/// The page index of an opened object.
pub struct Pages {
    searcher: Searcher,
    f: PageFields,
}

impl Pages {
    /// Opens the page index from its files (names checked like the passages').
    pub(super) fn open(files: &[FileEntry], bytes: &[u8]) -> Result<Self, IndexError> {
        let dir = super::files::ram_dir(files, bytes)?;
        let index = Index::open(dir)?;
        index.tokenizers().register(ANALYZER, analysis::analyzer());
        let schema = index.schema();
        let get = |n: &str| {
            schema
                .get_field(n)
                .map_err(|_| IndexError::BadHeader(format!("page index has no field {n:?}")))
        };
        let f = PageFields {
            first: get("first")?,
            text: get("text")?,
        };
        let reader: IndexReader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(Self {
            searcher: reader.searcher(),
            f,
        })
    }

    /// The first passage row of every page, in page order (ascending: pages are written in
    /// passage order). Checked: one segment, rows ascending.
    pub fn starts(&self) -> Result<Vec<u32>, IndexError> {
        if self.searcher.segment_readers().len() > 1 {
            return Err(IndexError::BadHeader(
                "the page index has several segments".into(),
            ));
        }
        let mut out = Vec::new();
        for (seg, reader) in self.searcher.segment_readers().iter().enumerate() {
            for doc in 0..reader.max_doc() {
                let d: TantivyDocument = self
                    .searcher
                    .doc(tantivy::DocAddress::new(seg as u32, doc))?;
                out.push(first_of(&d, self.f.first)?);
            }
        }
        if out.windows(2).any(|w| w[0] >= w[1]) {
            return Err(IndexError::BadHeader("the pages are out of order".into()));
        }
        Ok(out)
    }

    /// The best `n` pages for the query terms (weighted by their count in the query), best
    /// first, each as (BM25 score, page number): the page's place in [`Pages::starts`].
    pub fn ranked(
        &self,
        terms: &BTreeMap<String, usize>,
        n: usize,
    ) -> Result<Vec<(f32, usize)>, IndexError> {
        if terms.is_empty() || n == 0 {
            return Ok(Vec::new());
        }
        let clauses: Vec<(Occur, Box<dyn Query>)> = terms
            .iter()
            .map(|(t, c)| {
                let tq = TermQuery::new(
                    Term::from_field_text(self.f.text, t),
                    IndexRecordOption::WithFreqs,
                );
                let q: Box<dyn Query> = if *c == 1 {
                    Box::new(tq)
                } else {
                    Box::new(BoostQuery::new(Box::new(tq), *c as f32))
                };
                (Occur::Should, q)
            })
            .collect();
        let top = self.searcher.search(
            &BooleanQuery::new(clauses),
            &TopDocs::with_limit(n).order_by_score(),
        )?;
        // One segment (the builder writes one): a page's document id is its number. No stored
        // field is read per hit.
        Ok(top
            .into_iter()
            .map(|(score, addr)| (score, addr.doc_id as usize))
            .collect())
    }
}

fn first_of(d: &TantivyDocument, field: Field) -> Result<u32, IndexError> {
    d.get_first(field)
        .and_then(|v| v.as_u64())
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| IndexError::BadHeader("a page has no first passage".into()))
}
