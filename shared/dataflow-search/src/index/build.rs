//! Documents into passages into one packed index object.

use dataflow_embed::Embed;

use super::vectors::{embed_text, text_hash, Row, Vectors};
use super::*;
use crate::chunk::{chunk_markdown, ChunkOptions, Passage};

/// What a build embedded and what it took from the previous index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BuildStats {
    pub passages: usize,
    pub embedded: usize,
    pub reused: usize,
}

/// Splits every document into passages and indexes them (no vectors); returns the packed index
/// object.
pub fn build(
    docs: &[SourceDoc],
    opts: ChunkOptions,
    built_at: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<u8>, IndexError> {
    build_with(docs, opts, built_at, None, None).map(|(bytes, _)| bytes)
}

/// Like [`build`], and with a model, every passage's vector: taken from `previous` when it holds
/// the same text embedded by the same model, computed otherwise.
pub fn build_with(
    docs: &[SourceDoc],
    opts: ChunkOptions,
    built_at: chrono::DateTime<chrono::Utc>,
    embed: Option<&dyn Embed>,
    previous: Option<&Vectors>,
) -> Result<(Vec<u8>, BuildStats), IndexError> {
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
    // Documents that make no passage (a heading alone, whitespace) stay listed with 0 passages,
    // so `GET /docs` can say they are empty rather than leave them out. A corpus may become
    // empty (every file deleted): that is an empty index, not an error.
    let records: Vec<Record> = passages
        .into_iter()
        .map(|(_, p)| Record {
            id: p.id,
            doc: p.doc,
            title: p.title,
            heading: p.heading_path.join(" › "),
            anchor: p.anchor,
            body: p.text,
        })
        .collect();
    let mut stats = BuildStats {
        passages: records.len(),
        ..BuildStats::default()
    };
    let vectors = match embed {
        Some(e) => Some(embed_records(&records, e, previous, &mut stats)?),
        None => None,
    };
    let bytes = pack_records(
        records,
        documents,
        docs_fingerprint,
        built_at,
        vectors.as_ref(),
    )?;
    Ok((bytes, stats))
}

/// Vectors for records, in order; rows of `previous` with the same text and model are reused.
pub fn embed_records(
    records: &[Record],
    embed: &dyn Embed,
    previous: Option<&Vectors>,
    stats: &mut BuildStats,
) -> Result<Vectors, IndexError> {
    let model = embed.identity().clone();
    let reusable = previous
        .filter(|p| p.model == model)
        .map(Vectors::by_hash)
        .unwrap_or_default();
    let texts: Vec<String> = records
        .iter()
        .map(|r| embed_text(&r.title, &r.heading, &r.body))
        .collect();
    let mut rows: Vec<Option<Row>> = texts
        .iter()
        .map(|t| reusable.get(&text_hash(t)).cloned())
        .collect();
    let missing: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].is_none()).collect();
    let wanted: Vec<&str> = missing.iter().map(|&i| texts[i].as_str()).collect();
    let fresh = embed
        .embed(&wanted)
        .map_err(|e| IndexError::Embed(e.to_string()))?;
    if fresh.len() != missing.len() {
        return Err(IndexError::Embed(format!(
            "{} vectors for {} texts",
            fresh.len(),
            missing.len()
        )));
    }
    for (&i, v) in missing.iter().zip(&fresh) {
        rows[i] = Some(Row::quantise(text_hash(&texts[i]), v));
    }
    stats.embedded += missing.len();
    stats.reused += rows.len() - missing.len();
    Vectors::new(model, rows.into_iter().flatten().collect())
}
