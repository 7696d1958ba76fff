use std::collections::BTreeMap;

use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, BoostQuery, Occur};
use tantivy::DocAddress;

use super::*;
use crate::analysis;
use crate::chunk::ChunkOptions;

fn corpus() -> Vec<SourceDoc> {
    let d = |p: &str, t: &str| SourceDoc {
        path: p.into(),
        text: t.into(),
    };
    vec![
        d(
            "operations.md",
            "# Operations guide\n\n## Reprocess an object\n\nDelete the checkpoint item, then run `dataflow reprocess --key KEY`. The ETL processes the object again.\n\n## Dead-letter queue\n\nMessages that failed three times land in the DLQ. Inspect them and redrive.\n",
        ),
        d(
            "contract.md",
            "# Event contract\n\nEach line is a JSON object with event_type, user_id and timestamp.\n\n## Rejections\n\nA line without a timestamp is rejected and counted in the rejected report.\n",
        ),
        d(
            "bench.md",
            "---\ntitle: Benchmarks\n---\n\n## Throughput\n\nDuckDB and PySpark were measured on the same file.\n",
        ),
    ]
}

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z")
        .unwrap()
        .to_utc()
}

#[test]
fn builds_packs_and_ranks_the_expected_passage_first() {
    let bytes = build(&corpus(), ChunkOptions::default(), now()).unwrap();
    let idx = SearchIndex::open(&bytes).unwrap();
    assert_eq!(idx.header.passages, 5);
    assert_eq!(idx.num_passages(), 5);
    assert_eq!(idx.header.built_at, "2026-11-23T10:00:00.000Z");
    let docs: Vec<(&str, &str, usize)> = idx
        .header
        .documents
        .iter()
        .map(|d| (d.path.as_str(), d.title.as_str(), d.passages))
        .collect();
    assert_eq!(
        docs,
        vec![
            ("bench.md", "Benchmarks", 1),
            ("contract.md", "Event contract", 2),
            ("operations.md", "Operations guide", 2),
        ]
    );
    let hits = idx.search("how do I reprocess an object?", 3).unwrap();
    assert_eq!(hits[0].passage_id, "operations.md#reprocess-an-object");
    assert_eq!(hits[0].heading, "Operations guide › Reprocess an object");
    assert!(
        hits[0].snippet.contains("<mark>reprocess</mark>"),
        "{}",
        hits[0].snippet
    );
    let hits = idx.search("rejected lines", 5).unwrap();
    assert_eq!(hits[0].passage_id, "contract.md#rejections");
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    // Stemming: "queues" finds "queue", "redriving" finds "redrive".
    let hits = idx.search("redriving queues", 1).unwrap();
    assert_eq!(hits[0].passage_id, "operations.md#dead-letter-queue");
    // No match at all is an empty list, not an error.
    assert!(idx.search("zebra", 5).unwrap().is_empty());
}

#[test]
fn query_errors() {
    let bytes = build(&corpus(), ChunkOptions::default(), now()).unwrap();
    let idx = SearchIndex::open(&bytes).unwrap();
    let err = |q: &str, k: usize| match idx.search(q, k) {
        Err(SearchError::Query(e)) => e,
        other => panic!("{other:?}"),
    };
    assert_eq!(err("   ", 5), QueryError::Empty);
    assert_eq!(err("what is the", 5), QueryError::NoTerms);
    assert_eq!(err("?!", 5), QueryError::NoTerms);
    assert_eq!(
        err(&"x".repeat(MAX_QUERY_CHARS + 1), 5),
        QueryError::TooLong
    );
    assert_eq!(err("queue", 0), QueryError::BadK);
    assert_eq!(err("queue", MAX_K + 1), QueryError::BadK);
    assert!(idx.search("queue", MAX_K).is_ok());
}

#[test]
fn snippets_are_escaped_and_fall_back_to_the_lead() {
    let docs = vec![SourceDoc {
        path: "x.md".into(),
        text: "# Retry policy\n\nUse `Vec<u8>` buffers, <b>exponential</b> backoff & jitter for every retry of a throttled call.\n".into(),
    }];
    let idx = SearchIndex::open(&build(&docs, ChunkOptions::default(), now()).unwrap()).unwrap();
    let h = &idx.search("jitter", 1).unwrap()[0];
    // Code keeps its text, escaped; HTML in the Markdown is markup and dropped.
    assert!(
        h.snippet
            .contains("Vec&lt;u8&gt; buffers, exponential backoff &amp; <mark>jitter</mark>"),
        "{}",
        h.snippet
    );
    // "policy" is only in the heading: the snippet is the passage's start.
    let h = &idx.search("policy", 1).unwrap()[0];
    assert!(h.snippet.starts_with("Use Vec&lt;u8&gt;"), "{}", h.snippet);
}

/// The whole shared Lambda guide: an operator's question finds the page and section that
/// answer it, and what the hit shows is clean text with the page's own anchor.
#[test]
fn the_lambda_guide_answers_with_clean_hits() {
    let root = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/corpora/aws-lambda-guide"
    ));
    let (docs, skipped) = crate::store::read_local_docs(root).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (the shared corpus sits beside the repository)",
            root.display()
        )
    });
    assert!(
        docs.len() >= 377 && skipped.is_empty(),
        "{} {skipped:?}",
        docs.len()
    );
    let idx = SearchIndex::open(&build(&docs, ChunkOptions::default(), now()).unwrap()).unwrap();
    let hits = idx
        .search(
            "how many times does lambda retry a failed asynchronous invocation",
            5,
        )
        .unwrap();
    let top = &hits[0];
    assert_eq!(
        (top.doc.as_str(), top.anchor.as_str(), top.title.as_str()),
        (
            "invocation-async.md",
            "invocation-async-errors",
            "Asynchronous invocation"
        ),
        "{hits:#?}"
    );
    assert_eq!(
        top.heading,
        "Asynchronous invocation › Configuring error handling for asynchronous invocation"
    );
    for h in &hits {
        for markup in ["**", "\\.", "<a name", "](", "&lt;a"] {
            assert!(
                !h.snippet.contains(markup) && !h.title.contains(markup),
                "{markup:?} in {h:#?}"
            );
        }
    }
    assert!(top.snippet.contains("<mark>"), "{}", top.snippet);
}

#[test]
fn corrupt_objects_are_refused() {
    let bytes = build(&corpus(), ChunkOptions::default(), now()).unwrap();
    assert!(matches!(
        SearchIndex::open(b"nope"),
        Err(IndexError::BadMagic)
    ));
    assert!(matches!(
        SearchIndex::open(&bytes[..bytes.len() / 2]),
        Err(IndexError::ChecksumMismatch)
    ));
    assert!(matches!(
        SearchIndex::open(&bytes[..10]),
        Err(IndexError::Truncated)
    ));
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 1;
    assert!(matches!(
        SearchIndex::open(&flipped),
        Err(IndexError::ChecksumMismatch)
    ));
    let mut v3 = bytes.clone();
    v3[8] = 3;
    assert!(matches!(
        SearchIndex::open(&v3),
        Err(IndexError::UnsupportedVersion(3))
    ));
}

#[test]
fn an_empty_corpus_is_an_empty_index() {
    let idx = SearchIndex::open(&build(&[], ChunkOptions::default(), now()).unwrap()).unwrap();
    assert_eq!(idx.num_passages(), 0);
    assert!(idx.header.documents.is_empty());
    assert!(idx.search("anything", 5).unwrap().is_empty());
}

/// The two-phase ranking (terms, then pairs on candidates) scores every candidate exactly as
/// one query with the phrase clauses inside would, and with enough candidates ranks the same.
#[test]
fn pair_scores_on_candidates_match_one_combined_query() {
    const WORDS: [&str; 12] = [
        "queue", "batch", "retry", "lambda", "timeout", "memory", "bucket", "event", "stream",
        "layer", "alias", "version",
    ];
    // Deterministic pseudo-random passages over a small vocabulary, so pairs recur.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    };
    let records: Vec<Record> = (0..400)
        .map(|i| {
            let len = 5 + next(40);
            let body: Vec<&str> = (0..len).map(|_| WORDS[next(WORDS.len())]).collect();
            Record {
                id: format!("p{i}"),
                doc: format!("d{}.md", i / 10),
                title: WORDS[next(WORDS.len())].into(),
                heading: String::new(),
                anchor: String::new(),
                body: body.join(" "),
            }
        })
        .collect();
    let packed = pack_records(records, Vec::new(), String::new(), now(), None).unwrap();
    // Pair scoring alone (feedback has its own test).
    let all = SearchIndex::open(&packed).unwrap().with_boosts(Boosts {
        pair_candidates: 10_000,
        feedback_docs: 0,
        ..Boosts::default()
    });
    let few = SearchIndex::open(&packed).unwrap().with_boosts(Boosts {
        pair_candidates: 8,
        feedback_docs: 0,
        ..Boosts::default()
    });
    for q in [
        "queue batch",
        "retry lambda timeout",
        "memory bucket event stream",
        "layer alias version queue",
        "batch batch retry",
    ] {
        let (terms, seq) = SearchIndex::analyse(&mut analysis::analyzer(), q).unwrap();
        let weights = terms.iter().map(|(t, n)| (t.clone(), *n as f32)).collect();
        let mut clauses = all.term_clauses(&weights);
        let pairs = all.pair_queries(&seq);
        assert!(!pairs.is_empty(), "{q}");
        for pq in pairs {
            let boosted = BoostQuery::new(Box::new(pq), all.boosts.pairs);
            clauses.push((Occur::Should, Box::new(boosted)));
        }
        let n = all.searcher.num_docs() as usize;
        let reference: BTreeMap<DocAddress, f32> = all
            .searcher
            .search(
                &BooleanQuery::new(clauses),
                &TopDocs::with_limit(n).order_by_score(),
            )
            .unwrap()
            .into_iter()
            .map(|(score, d)| (d, score))
            .collect();
        let two_phase = all.ranked(&terms, &seq, n).unwrap();
        assert_eq!(two_phase.len(), reference.len(), "{q}");
        for (score, d) in &two_phase {
            assert!((reference[d] - score).abs() < 1e-4, "{q}: {d:?}");
        }
        // With few candidates each hit still carries its exact combined score.
        for (score, d) in few.ranked(&terms, &seq, 2).unwrap() {
            assert!((reference[&d] - score).abs() < 1e-4, "{q}: {d:?}");
        }
    }
}

#[test]
fn fingerprint_ignores_order_and_sees_edits() {
    let mut c = corpus();
    let a = fingerprint(&c);
    c.reverse();
    assert_eq!(fingerprint(&c), a);
    c[0].text.push('!');
    assert_ne!(fingerprint(&c), a);
}

/// Feedback (RM3) draws terms from the best passages and rescores the candidates with them: a
/// passage that shares the best matches' vocabulary rises above one that only shares the query
/// word; with feedback off, rankings are the plain ones.
#[test]
fn feedback_lifts_passages_that_share_the_best_matches_vocabulary() {
    let rec = |id: &str, body: &str| Record {
        id: id.into(),
        doc: format!("{id}.md"),
        title: String::new(),
        heading: String::new(),
        anchor: String::new(),
        body: body.into(),
    };
    let mut records = vec![
        rec("a", "throttling errors and throttling alarms: raise reserved concurrency, check burst quota and scaling limits"),
        rec("b", "throttling seen by callers, throttling in metrics: reserved concurrency and burst quota per region"),
        rec("c", "when scaling hits the burst quota, reserved concurrency decides who runs; requests beyond the account quota meet throttling until concurrency frees up and scaling resumes"),
        rec("d", "console log output throttling happens when the terminal prints too many lines for the viewer to keep up with them all"),
    ];
    for i in 0..30 {
        records.push(rec(
            &format!("filler{i}"),
            &format!("unrelated text about layers and runtimes number {i}"),
        ));
    }
    let packed = pack_records(records, Vec::new(), String::new(), now(), None).unwrap();
    let plain = SearchIndex::open(&packed).unwrap().with_boosts(Boosts {
        feedback_docs: 0,
        ..Boosts::default()
    });
    let rm3 = SearchIndex::open(&packed).unwrap();
    let ids = |hits: Vec<Hit>| hits.into_iter().map(|h| h.passage_id).collect::<Vec<_>>();
    let pos = |v: &[String], id: &str| v.iter().position(|x| x == id).unwrap();
    let without = ids(plain.rank("throttling", 4).unwrap());
    let with = ids(rm3.rank("throttling", 4).unwrap());
    assert_eq!(without.len(), 4);
    assert!(
        pos(&without, "d") < pos(&without, "c"),
        "plain BM25 favours the short passage: {without:?}"
    );
    assert!(
        pos(&with, "c") < pos(&with, "d"),
        "feedback lifts the related one: {with:?}"
    );
}

/// Vectors survive packing and opening; the modes answer from them; an index searched with
/// another model, or with none, answers lexically and says why.
#[test]
fn vectors_round_trip_and_modes_fall_back_with_a_reason() {
    use dataflow_embed::{Embed, HashEmbedder};
    let model = HashEmbedder::new("m1", 32);
    let (bytes, stats) = build_with(
        &corpus(),
        ChunkOptions::default(),
        now(),
        Some(&model),
        None,
    )
    .unwrap();
    assert_eq!((stats.passages, stats.embedded, stats.reused), (5, 5, 0));
    let (header, _) = read_header(&bytes).unwrap();
    let info = header.vectors.clone().unwrap();
    assert_eq!((info.rows, info.model.dims), (5, 32));
    assert_eq!(&info.model, model.identity());
    let back = read_vectors(&bytes).unwrap().unwrap();
    assert_eq!(back.len(), 5);
    let idx = SearchIndex::open(&bytes).unwrap();
    assert_eq!(idx.vector_model(), Some(model.identity()));

    // The bag-of-words stand-in finds the passage sharing the query's words.
    let r = idx
        .search_mode("dead letter queue", 2, Mode::Semantic, Some(&model))
        .unwrap();
    assert_eq!((r.mode, r.fallback.as_deref()), (Mode::Semantic, None));
    assert_eq!(r.hits[0].passage_id, "operations.md#dead-letter-queue");
    assert!(r.hits[0].scores.semantic.is_some() && r.hits[0].scores.lexical.is_none());
    let r = idx
        .search_mode("dead letter queue", 3, Mode::Hybrid, Some(&model))
        .unwrap();
    assert_eq!(r.mode, Mode::Hybrid);
    assert_eq!(r.hits[0].passage_id, "operations.md#dead-letter-queue");
    let s = r.hits[0].scores;
    assert_eq!((s.lexical_rank, s.semantic_rank), (Some(1), Some(1)));

    let other = HashEmbedder::new("m2", 32);
    let r = idx
        .search_mode("dead letter queue", 2, Mode::Hybrid, Some(&other))
        .unwrap();
    assert_eq!(r.mode, Mode::Lexical);
    let why = r.fallback.unwrap();
    assert!(why.contains("m1") && why.contains("m2"), "{why}");
    assert_eq!(r.hits[0].passage_id, "operations.md#dead-letter-queue");
    let r = idx
        .search_mode("dead letter queue", 2, Mode::Semantic, None)
        .unwrap();
    assert_eq!(r.mode, Mode::Lexical);
    assert!(r.fallback.unwrap().contains("no embedding model"));
    // An index without vectors says that instead.
    let lexical =
        SearchIndex::open(&build(&corpus(), ChunkOptions::default(), now()).unwrap()).unwrap();
    let r = lexical
        .search_mode("dead letter queue", 2, Mode::Hybrid, Some(&model))
        .unwrap();
    assert!(r.fallback.unwrap().contains("without vectors"));
    // Stopwords alone: refused lexically, answered by meaning.
    assert!(matches!(
        idx.search_mode("how do I", 2, Mode::Lexical, Some(&model)),
        Err(SearchError::Query(QueryError::NoTerms))
    ));
    assert_eq!(
        idx.search_mode("how do I", 2, Mode::Hybrid, Some(&model))
            .unwrap()
            .mode,
        Mode::Hybrid
    );
}

/// A vector section that does not line up with the passages is refused, not misread.
#[test]
fn vectors_for_other_passages_are_refused() {
    use dataflow_embed::HashEmbedder;
    let model = HashEmbedder::new("m1", 8);
    let records = |n: usize| {
        (0..n)
            .map(|i| Record {
                id: format!("p{i}"),
                doc: "d.md".into(),
                title: String::new(),
                heading: String::new(),
                anchor: String::new(),
                body: format!("passage {i}"),
            })
            .collect::<Vec<_>>()
    };
    let mut stats = BuildStats::default();
    let v = embed_records(&records(3), &model, None, &mut stats).unwrap();
    assert!(pack_records(records(2), Vec::new(), String::new(), now(), Some(&v)).is_err());
    let ok = pack_records(records(3), Vec::new(), String::new(), now(), Some(&v)).unwrap();
    assert!(SearchIndex::open(&ok).is_ok());
    // Reused rows: the same texts again embed nothing.
    let mut again = BuildStats::default();
    embed_records(&records(4), &model, Some(&v), &mut again).unwrap();
    assert_eq!((again.embedded, again.reused), (1, 3));
}

/// Words spread over a page's sections: no passage holds them all, the page does. Its rank goes
/// to its best passage in hybrid ranking; an index of one-passage documents has no page index.
#[test]
fn pages_hold_evidence_no_single_passage_does() {
    use dataflow_embed::HashEmbedder;
    let docs = vec![
        SourceDoc {
            path: "spread.md".into(),
            text: "# Animals\n\n## First\n\nThe zebra grazes.\n\n## Second\n\nThe quokka smiles.\n"
                .into(),
        },
        SourceDoc {
            path: "zebras.md".into(),
            text: "# Stripes\n\nA zebra, a zebra and one more zebra.\n".into(),
        },
    ];
    let model = HashEmbedder::new("m", 16);
    let (bytes, _) = build_with(&docs, ChunkOptions::default(), now(), Some(&model), None).unwrap();
    let (header, _) = read_header(&bytes).unwrap();
    assert!(!header.pages.is_empty());
    let idx = SearchIndex::open(&bytes).unwrap();
    let r = idx
        .search_mode("zebra quokka", 3, Mode::Hybrid, Some(&model))
        .unwrap();
    let spread: Vec<&Hit> = r.hits.iter().filter(|h| h.doc == "spread.md").collect();
    assert_eq!(
        spread
            .iter()
            .filter_map(|h| h.scores.page_rank)
            .collect::<Vec<_>>(),
        vec![1],
        "{:?}",
        r.hits
    );
    // One passage per document: no pages packed.
    let single = vec![Record {
        id: "a".into(),
        doc: "a".into(),
        title: String::new(),
        heading: String::new(),
        anchor: String::new(),
        body: "zebra".into(),
    }];
    let packed = pack_records(single, Vec::new(), String::new(), now(), None).unwrap();
    assert!(read_header(&packed).unwrap().0.pages.is_empty());
    assert_eq!(
        SearchIndex::open(&packed)
            .unwrap()
            .rank("zebra", 1)
            .unwrap()
            .len(),
        1
    );
}
