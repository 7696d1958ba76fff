use std::sync::Arc;
use std::time::Duration;

use dataflow_store::{MemoryStore, ObjectMeta};

use super::publish::prunable;
use super::*;
use crate::chunk::ChunkOptions;

fn loc() -> IndexLocation {
    IndexLocation {
        bucket: "idx".into(),
        docs_prefix: "docs/".into(),
        index_prefix: "index/".into(),
    }
}

fn put_doc(store: &MemoryStore, path: &str, text: &str) {
    store.insert("idx", &format!("docs/{path}"), text.as_bytes().to_vec());
}

#[tokio::test]
async fn rebuild_publishes_then_is_up_to_date_then_follows_changes() {
    let store = MemoryStore::default();
    let l = loc();
    put_doc(&store, "a.md", "# Alpha\n\nLambda cold starts.\n");
    put_doc(&store, "sub/b.md", "# Beta\n\nParquet partitions.\n");
    store.insert("idx", "docs/image.png", vec![0xff, 0xd8]);
    store.insert("idx", "docs/bad.md", vec![0xff, 0xfe, 0x00]);
    let opts = ChunkOptions::default();
    let RebuildOutcome::Published {
        manifest, skipped, ..
    } = rebuild(&store, &l, opts, false, None).await.unwrap()
    else {
        panic!("expected a publish")
    };
    assert_eq!((manifest.documents, manifest.passages), (2, 2));
    assert_eq!(
        skipped,
        vec![Skipped {
            path: "bad.md".into(),
            reason: "not UTF-8 text".into()
        }]
    );
    assert!(manifest.key.starts_with("index/objects/") && manifest.key.ends_with(".dfidx"));
    assert!(matches!(
        rebuild(&store, &l, opts, false, None).await.unwrap(),
        RebuildOutcome::UpToDate { .. }
    ));

    let holder = IndexHolder::new(Arc::new(store), l.clone(), Duration::ZERO);
    let got = holder.get().await.unwrap().unwrap();
    assert_eq!(got.index.search("parquet", 5).unwrap()[0].doc, "sub/b.md");
}

/// On tokio's paused clock: the refresh delay passes when the test advances it, not by sleeping.
#[tokio::test(start_paused = true)]
async fn holder_reports_none_then_picks_up_a_publish_after_the_refresh_delay() {
    let store = Arc::new(MemoryStore::default());
    let l = loc();
    let holder = IndexHolder::new(store.clone(), l.clone(), Duration::from_millis(200));
    assert!(holder.get().await.unwrap().is_none());
    put_doc(&store, "a.md", "# Alpha\n\nfirst version about kinesis\n");
    rebuild(&*store, &l, ChunkOptions::default(), false, None)
        .await
        .unwrap();
    tokio::time::advance(Duration::from_millis(250)).await;
    let v1 = holder.get().await.unwrap().unwrap();
    assert_eq!(v1.index.search("kinesis", 1).unwrap().len(), 1);
    put_doc(&store, "a.md", "# Alpha\n\nsecond version about dynamodb\n");
    rebuild(&*store, &l, ChunkOptions::default(), false, None)
        .await
        .unwrap();
    // Within the delay the loaded index is kept...
    let same = holder.get().await.unwrap().unwrap();
    assert_eq!(same.manifest.key, v1.manifest.key);
    // ...and still at the edge of it; after it, the new one is served.
    tokio::time::advance(Duration::from_millis(199)).await;
    let same = holder.get().await.unwrap().unwrap();
    assert_eq!(same.manifest.key, v1.manifest.key);
    tokio::time::advance(Duration::from_millis(1)).await;
    let v2 = holder.get().await.unwrap().unwrap();
    assert_ne!(v2.manifest.key, v1.manifest.key);
    assert!(v2.index.search("kinesis", 1).unwrap().is_empty());
    assert_eq!(v2.manifest.previous, vec![v1.manifest.key.clone()]);
}

/// Two publishers at once (the CLI and the index builder): neither deletes the object the
/// other is about to name in the manifest.
#[test]
fn pruning_spares_what_a_manifest_names_and_what_is_recent() {
    let m = |key: &str, previous: &[&str]| Manifest {
        format_version: 1,
        key: key.into(),
        sha256: String::new(),
        bytes: 0,
        built_at: String::new(),
        documents: 0,
        passages: 0,
        docs_fingerprint: String::new(),
        previous: previous.iter().map(|s| s.to_string()).collect(),
        skipped: Vec::new(),
        model: None,
    };
    let obj = |key: &str, t: Option<i64>| ObjectMeta {
        key: key.into(),
        size: 1,
        etag: None,
        last_modified_ms: t,
    };
    let now = 10_000_000_000;
    let mine = m("a", &["o1", "o2"]);
    let theirs = m("b", &["o1"]);
    let hour_ago = Some(now - 3_600_000);
    // Another publisher's object, written a moment ago, its manifest not yet out.
    assert!(!prunable(
        &obj("c", Some(now - 2_000)),
        &[Some(&mine), None],
        now
    ));
    // Named by the manifest as it stands now.
    assert!(!prunable(
        &obj("b", hour_ago),
        &[Some(&mine), Some(&theirs)],
        now
    ));
    assert!(!prunable(
        &obj("o2", hour_ago),
        &[Some(&mine), Some(&theirs)],
        now
    ));
    assert!(prunable(
        &obj("old", hour_ago),
        &[Some(&mine), Some(&theirs)],
        now
    ));
    assert!(prunable(&obj("old", None), &[Some(&mine)], now));
}

#[tokio::test]
async fn old_objects_are_pruned_beyond_the_kept_ones() {
    let store = MemoryStore::default();
    let l = loc();
    let mut keys = Vec::new();
    for i in 0..5 {
        put_doc(&store, "a.md", &format!("# A\n\nversion {i}\n"));
        match rebuild(&store, &l, ChunkOptions::default(), false, None)
            .await
            .unwrap()
        {
            RebuildOutcome::Published { manifest, .. } => keys.push(manifest.key),
            other => panic!("{other:?}"),
        }
    }
    let mut left: Vec<String> = store
        .keys("idx")
        .into_iter()
        .filter(|k| k.starts_with("index/objects/"))
        .collect();
    left.sort();
    let mut want = keys[2..].to_vec();
    want.sort();
    assert_eq!(left, want);
}

#[tokio::test]
async fn a_reader_during_publishes_sees_old_or_new_never_neither() {
    let store = Arc::new(MemoryStore::default());
    let l = loc();
    put_doc(&store, "a.md", "# A\n\nversion zero\n");
    rebuild(&*store, &l, ChunkOptions::default(), false, None)
        .await
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (store, l, stop) = (store.clone(), l.clone(), stop.clone());
        tokio::spawn(async move {
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // A fresh holder each time: a cold start racing the publish.
                let h = IndexHolder::new(store.clone(), l.clone(), Duration::ZERO);
                let got = h.get().await.expect("load failed during a publish");
                assert!(got.is_some(), "no index during a publish");
                reads += 1;
                tokio::task::yield_now().await;
            }
            reads
        })
    };
    for i in 1..20 {
        put_doc(&store, "a.md", &format!("# A\n\nversion {i}\n"));
        rebuild(&*store, &l, ChunkOptions::default(), false, None)
            .await
            .unwrap();
        tokio::task::yield_now().await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.await.unwrap() > 0);
}

#[tokio::test]
async fn sync_uploads_changes_and_deletes_removed_files() {
    let store = MemoryStore::default();
    let l = loc();
    put_doc(&store, "keep.md", "same");
    put_doc(&store, "edit.md", "old");
    put_doc(&store, "gone.md", "bye");
    store.insert("idx", "docs/diagram.png", b"not a document".to_vec());
    let file = |path: &str, text: &str| LocalFile {
        path: path.into(),
        bytes: text.as_bytes().to_vec(),
    };
    let docs = vec![
        file("keep.md", "same"),
        file("edit.md", "new"),
        file("new/x.md", "x"),
    ];
    let r = sync_docs(&store, &l, &docs).await.unwrap();
    assert_eq!(r.uploaded, vec!["edit.md", "new/x.md"]);
    assert_eq!(r.deleted, vec!["gone.md"]);
    assert_eq!(r.unchanged, 1);
    assert!(store.keys("idx").contains(&"docs/diagram.png".to_string()));
}

#[test]
fn local_docs_are_read_recursively_with_relative_paths() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("ops")).unwrap();
    std::fs::write(dir.path().join("README.md"), "# R\n\nx\n").unwrap();
    std::fs::write(dir.path().join("ops/run.md"), "# Run\n\ny\n").unwrap();
    std::fs::write(dir.path().join("ops/data.json"), "{}").unwrap();
    std::fs::write(dir.path().join("ops/bin.md"), [0xffu8, 0xfe]).unwrap();
    std::fs::write(dir.path().join("ops/notes.txt"), "plain notes").unwrap();
    std::fs::write(dir.path().join("ops/page.html"), "<h1>Page</h1><p>text</p>").unwrap();
    std::fs::write(dir.path().join("ops/broken.pdf"), "%PDF-1.5 cut").unwrap();
    let (docs, skipped) = read_local_docs(dir.path()).unwrap();
    let paths: Vec<&str> = docs.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(
        paths,
        vec!["README.md", "ops/notes.txt", "ops/page.html", "ops/run.md"]
    );
    let skipped: Vec<(&str, &str)> = skipped
        .iter()
        .map(|s| (s.path.as_str(), s.reason.as_str()))
        .collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert_eq!(skipped[0], ("ops/bin.md", "not UTF-8 text"));
    assert_eq!(skipped[1].0, "ops/broken.pdf");
    assert!(
        skipped[1].1.starts_with("not a readable PDF"),
        "{skipped:?}"
    );
}

/// With a model, a rebuild after one document changed embeds only that document's passages;
/// the rest come from the published index. A new model re-embeds everything, and the index
/// is out of date for a builder with another model (or none).
#[tokio::test]
async fn rebuilds_reuse_vectors_of_unchanged_passages() {
    use dataflow_embed::{Embed, HashEmbedder};
    let store = MemoryStore::default();
    let l = loc();
    put_doc(
        &store,
        "a.md",
        "# Alpha\n\n## One\n\nCold starts.\n\n## Two\n\nWarm pools.\n",
    );
    put_doc(&store, "b.md", "# Beta\n\nParquet partitions.\n");
    let model: Arc<dyn Embed> = Arc::new(HashEmbedder::new("m1", 16));
    let opts = ChunkOptions::default();
    let stats = |o: RebuildOutcome| match o {
        RebuildOutcome::Published {
            stats, manifest, ..
        } => (stats, manifest),
        RebuildOutcome::UpToDate { .. } => panic!("expected a publish"),
    };
    let (s, m) = stats(
        rebuild(&store, &l, opts, false, Some(model.clone()))
            .await
            .unwrap(),
    );
    assert_eq!((s.passages, s.embedded, s.reused), (3, 3, 0));
    assert_eq!(m.model.as_ref(), Some(model.identity()));
    assert!(matches!(
        rebuild(&store, &l, opts, false, Some(model.clone()))
            .await
            .unwrap(),
        RebuildOutcome::UpToDate { .. }
    ));
    put_doc(&store, "b.md", "# Beta\n\nParquet partitions, compacted.\n");
    let (s, _) = stats(
        rebuild(&store, &l, opts, false, Some(model.clone()))
            .await
            .unwrap(),
    );
    assert_eq!((s.passages, s.embedded, s.reused), (3, 1, 2));
    // Another model: nothing reusable.
    let other: Arc<dyn Embed> = Arc::new(HashEmbedder::new("m2", 16));
    let (s, m) = stats(rebuild(&store, &l, opts, false, Some(other)).await.unwrap());
    assert_eq!((s.embedded, s.reused), (3, 0));
    assert_eq!(m.model.as_ref().map(|m| m.name.as_str()), Some("m2"));
    // No model: a lexical index replaces it (the manifest says so).
    let (s, m) = stats(rebuild(&store, &l, opts, false, None).await.unwrap());
    assert_eq!((s.embedded, s.reused), (0, 0));
    assert_eq!(m.model, None);
    // The vectors a published index holds are the ones a reader gets.
    let holder = IndexHolder::new(Arc::new(store), l.clone(), Duration::ZERO);
    assert_eq!(
        holder.get().await.unwrap().unwrap().index.vector_model(),
        None
    );
}

/// A previous index whose object is gone or garbage costs a full embed, never a failed rebuild.
#[tokio::test]
async fn an_unreadable_previous_index_means_embedding_everything() {
    use dataflow_embed::{Embed, HashEmbedder};
    let store = MemoryStore::default();
    let l = loc();
    put_doc(&store, "a.md", "# Alpha\n\nCold starts.\n");
    let model: Arc<dyn Embed> = Arc::new(HashEmbedder::new("m1", 8));
    let opts = ChunkOptions::default();
    let RebuildOutcome::Published { manifest, .. } =
        rebuild(&store, &l, opts, false, Some(model.clone()))
            .await
            .unwrap()
    else {
        panic!("expected a publish")
    };
    store.insert("idx", &manifest.key, b"garbage".to_vec());
    put_doc(&store, "a.md", "# Alpha\n\nCold starts, again.\n");
    let RebuildOutcome::Published { stats, .. } =
        rebuild(&store, &l, opts, false, Some(model)).await.unwrap()
    else {
        panic!("expected a publish")
    };
    assert_eq!((stats.embedded, stats.reused), (1, 0));
}
