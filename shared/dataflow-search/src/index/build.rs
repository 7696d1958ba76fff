//! Documents into passages into one packed index object.

use crate::chunk::{chunk_markdown, ChunkOptions, Passage};

use super::*;

/// Splits every document into passages and indexes them; returns the packed index object.
pub fn build(
    docs: &[SourceDoc],
    opts: ChunkOptions,
    built_at: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<u8>, IndexError> {
    let docs_fingerprint = fingerprint(docs);
    let mut docs: Vec<&SourceDoc> = docs.iter().collect();
    docs.sort_by(|a, b| a.path.cmp(&b.path));
    let passages: Vec<(usize, Passage)> = docs
        .iter()
        .enumerate()
        .flat_map(|(i, d)| {
            chunk_markdown(&d.path, &d.text, opts)
                .into_iter()
                .map(move |p| (i, p))
        })
        .collect();
    let mut documents: Vec<DocInfo> = docs
        .iter()
        .map(|d| DocInfo {
            path: d.path.clone(),
            title: String::new(),
            passages: 0,
        })
        .collect();
    for (i, p) in &passages {
        documents[*i].passages += 1;
        documents[*i].title.clone_from(&p.title);
    }
    // A corpus may become empty (every file deleted): that is an empty index, not an error, so
    // answers stop citing deleted documents.
    documents.retain(|d| d.passages > 0);
    let records = passages.into_iter().map(|(_, p)| Record {
        id: p.id,
        doc: p.doc,
        title: p.title,
        heading: p.heading_path.join(" › "),
        anchor: p.anchor,
        body: p.text,
    });
    pack_records(records, documents, docs_fingerprint, built_at)
}
