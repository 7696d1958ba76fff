//! The index object's format: magic, version, header, tantivy files, checksum.

use sha2::{Digest, Sha256};
use tantivy::{Index, TantivyDocument};

use crate::analysis::{self, ANALYZER};

use super::*;

/// One searchable unit. Public so other corpora (e.g. the Cranfield evaluation) index the same
/// way the Markdown builder does.
#[derive(Debug, Clone)]
pub struct Record {
    pub id: String,
    pub doc: String,
    pub title: String,
    pub heading: String,
    pub anchor: String,
    pub body: String,
}

/// Indexes records and packs the index into one object, with the records' vectors (in record
/// order) when given.
pub fn pack_records(
    records: impl IntoIterator<Item = Record>,
    documents: Vec<DocInfo>,
    docs_fingerprint: String,
    built_at: chrono::DateTime<chrono::Utc>,
    vectors: Option<&Vectors>,
) -> Result<Vec<u8>, IndexError> {
    let (schema, f) = schema();
    let dir = tempfile::tempdir()?;
    let index = Index::create_in_dir(dir.path(), schema)?;
    index.tokenizers().register(ANALYZER, analysis::analyzer());
    // One thread and a budget above any docs corpus: one segment, no merges, the same layout
    // on every build.
    let mut writer = index.writer_with_num_threads(1, 256 << 20)?;
    let records: Vec<Record> = records.into_iter().collect();
    // Pages only where some document has several passages: otherwise they are the passages.
    let paged = records.windows(2).any(|w| w[0].doc == w[1].doc);
    let pages = if paged {
        super::pages::pack_pages(&records)?
    } else {
        Vec::new()
    };
    let mut passages = 0usize;
    for r in &records {
        let mut d = TantivyDocument::default();
        d.add_text(f.id, &r.id);
        d.add_text(f.doc, &r.doc);
        d.add_text(f.title, &r.title);
        d.add_text(f.heading, &r.heading);
        d.add_text(f.anchor, &r.anchor);
        d.add_text(f.body, &r.body);
        writer.add_document(d)?;
        passages += 1;
    }
    if let Some(v) = vectors.filter(|v| v.len() != passages) {
        return Err(IndexError::BadHeader(format!(
            "{} vectors for {passages} passages",
            v.len()
        )));
    }
    writer.commit()?;
    writer.wait_merging_threads()?;
    drop(index);
    let (files, blobs): (Vec<FileEntry>, Vec<Vec<u8>>) =
        super::files::dir_files(dir.path())?.into_iter().unzip();
    let header = Header {
        format_version: FORMAT_VERSION,
        built_at: built_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        engine: "tantivy 0.27 BM25".into(),
        docs_fingerprint,
        passages,
        documents,
        files,
        pages: pages.iter().map(|(f, _)| f.clone()).collect(),
        vectors: vectors.map(Vectors::info),
    };
    let header_json =
        serde_json::to_vec(&header).map_err(|e| IndexError::BadHeader(e.to_string()))?;
    let header_len =
        u32::try_from(header_json.len()).map_err(|_| IndexError::BadHeader("too large".into()))?;
    let mut out =
        Vec::with_capacity(16 + header_json.len() + blobs.iter().map(Vec::len).sum::<usize>() + 32);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(&header_json);
    for b in blobs {
        out.extend_from_slice(&b);
    }
    for (_, b) in &pages {
        out.extend_from_slice(b);
    }
    if let Some(v) = vectors {
        out.extend_from_slice(&v.encode());
    }
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    Ok(out)
}

/// Reads and checks the header of a packed index (magic, version, checksum) without opening the
/// engine. Returns the header and where the files start.
pub fn read_header(bytes: &[u8]) -> Result<(Header, usize), IndexError> {
    if bytes.len() < 16 + 32 {
        return Err(if bytes.starts_with(MAGIC) || MAGIC.starts_with(bytes) {
            IndexError::Truncated
        } else {
            IndexError::BadMagic
        });
    }
    if &bytes[..8] != MAGIC {
        return Err(IndexError::BadMagic);
    }
    let word =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let version = word(8);
    if version != FORMAT_VERSION {
        return Err(IndexError::UnsupportedVersion(version));
    }
    let (body, sum) = bytes.split_at(bytes.len() - 32);
    if Sha256::digest(body).as_slice() != sum {
        return Err(IndexError::ChecksumMismatch);
    }
    let header_len = word(12) as usize;
    let start = 16usize
        .checked_add(header_len)
        .filter(|e| *e <= body.len())
        .ok_or(IndexError::Truncated)?;
    let header: Header = serde_json::from_slice(&body[16..start])
        .map_err(|e| IndexError::BadHeader(e.to_string()))?;
    let total: u64 = header
        .files
        .iter()
        .chain(&header.pages)
        .map(|f| f.len)
        .chain(header.vectors.iter().map(|v| v.bytes))
        .fold(0u64, u64::saturating_add);
    if start as u64 + total != body.len() as u64 {
        return Err(IndexError::BadHeader(
            "file lengths do not add up to the object size".into(),
        ));
    }
    Ok((header, start))
}

/// The vector section of a packed index (checked like the rest), without opening the engine:
/// what a rebuild reuses.
pub fn read_vectors(bytes: &[u8]) -> Result<Option<Vectors>, IndexError> {
    let (header, start) = read_header(bytes)?;
    let Some(info) = &header.vectors else {
        return Ok(None);
    };
    let files: u64 = header
        .files
        .iter()
        .chain(&header.pages)
        .map(|f| f.len)
        .sum();
    let from = start + files as usize;
    let to = from + info.bytes as usize;
    Vectors::decode(info, &bytes[from..to]).map(Some)
}

/// SHA-256 hex of a packed index: its content-derived name.
pub fn content_id(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
