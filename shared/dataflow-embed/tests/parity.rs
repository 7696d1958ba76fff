//! The Rust embedder against the reference: vectors that sentence-transformers computed with the
//! same model (`scripts/embedding-reference.py` wrote `reference.json`). Needs the model folder
//! (`infra/model/install.sh`, run by `scripts/test`); without it the test fails and says so.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure is the point

use dataflow_embed::{cosine, default_model_dir, Embed, Embedder, MAX_TOKENS};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    max_seq_length: usize,
    texts: Vec<Text>,
}

#[derive(Deserialize)]
struct Text {
    text: String,
    tokens: usize,
    vector: Vec<f32>,
}

fn embedder() -> Embedder {
    let dir = default_model_dir();
    Embedder::load(&dir)
        .unwrap_or_else(|e| panic!("{e}: run infra/model/install.sh (or set EMBED_MODEL_DIR)"))
}

fn reference() -> Reference {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn vectors_match_the_reference_batched_and_alone() {
    let e = embedder();
    let r = reference();
    assert_eq!(r.max_seq_length, MAX_TOKENS);
    assert!(r.texts.len() >= 12);
    assert_eq!(e.identity().dims, 384);
    assert_eq!(e.identity().sha256.len(), 64);
    let texts: Vec<&str> = r.texts.iter().map(|t| t.text.as_str()).collect();
    let batched = e.embed(&texts).unwrap();
    assert_eq!(batched.len(), texts.len());
    for (t, v) in r.texts.iter().zip(&batched) {
        assert_eq!(
            e.token_ids(&t.text).unwrap().len(),
            t.tokens,
            "{:?}",
            t.text
        );
        let c = cosine(v, &t.vector);
        assert!(c >= 0.999, "cosine {c} for {:?}", t.text);
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
        // Alone (no padding in the batch) gives the same vector.
        let alone = e.embed(&[t.text.as_str()]).unwrap();
        assert!(cosine(&alone[0], v) > 0.99999, "{:?}", t.text);
    }
    // sentence-transformers' quickstart figure.
    let c = cosine(&batched[0], &batched[1]);
    assert!((c - 0.7553).abs() < 0.001, "{c}");
    // The long text was cut at the model's limit, as the reference cuts it.
    assert!(r.texts.iter().any(|t| t.tokens == MAX_TOKENS));
}

#[test]
fn a_missing_model_folder_is_a_clear_error() {
    let dir = std::env::temp_dir().join("dataflow-embed-no-model");
    let err = Embedder::load(&dir).err().unwrap().to_string();
    assert!(err.contains("infra/model/install.sh"), "{err}");
}

#[test]
fn odd_inputs_do_not_panic() {
    let e = embedder();
    let long = "word ".repeat(5000);
    let v = e.embed(&["", " ", "\u{202e}\u{0}", &long]).unwrap();
    assert_eq!(v.len(), 4);
    assert!(v
        .iter()
        .all(|x| x.len() == 384 && x.iter().all(|f| f.is_finite())));
    assert!(e.embed(&[]).unwrap().is_empty());
}
