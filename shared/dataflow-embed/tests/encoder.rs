//! The encoder against `candle-transformers`' BERT on the same weights: the hidden states must
//! agree for a lone query (the transposed product) and for a padded batch past the thin-input
//! limit (the generic product), padding positions excepted.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure is the point

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use dataflow_embed::{default_model_dir, Config, Encoder};

fn load() -> (Encoder, BertModel) {
    let dir = default_model_dir();
    let config = std::fs::read(dir.join("config.json"))
        .unwrap_or_else(|e| panic!("{e}: run infra/model/install.sh (or set EMBED_MODEL_DIR)"));
    let ours: Config = serde_json::from_slice(&config).unwrap();
    let theirs: BertConfig = serde_json::from_slice(&config).unwrap();
    let vb = || unsafe {
        VarBuilder::from_mmaped_safetensors(
            &[dir.join("model.safetensors")],
            DType::F32,
            &Device::Cpu,
        )
        .unwrap()
    };
    (
        Encoder::load(vb(), &ours).unwrap(),
        BertModel::load(vb(), &theirs).unwrap(),
    )
}

/// Largest absolute difference over the positions the mask keeps.
fn max_diff(a: &Tensor, b: &Tensor, mask: &Tensor) -> f32 {
    let keep = mask.to_dtype(DType::F32).unwrap().unsqueeze(2).unwrap();
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .broadcast_mul(&keep)
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn run(batch: &[Vec<u32>]) -> f32 {
    let (ours, theirs) = load();
    let len = batch.iter().map(Vec::len).max().unwrap();
    let mut ids = Vec::new();
    let mut mask = Vec::new();
    for row in batch {
        ids.extend(
            row.iter()
                .copied()
                .chain(std::iter::repeat_n(0, len - row.len())),
        );
        mask.extend((0..len).map(|i| u32::from(i < row.len())));
    }
    let d = Device::Cpu;
    let ids = Tensor::from_vec(ids, (batch.len(), len), &d).unwrap();
    let mask = Tensor::from_vec(mask, (batch.len(), len), &d).unwrap();
    let a = ours.forward(&ids, &mask).unwrap();
    let b = theirs
        .forward(&ids, &ids.zeros_like().unwrap(), Some(&mask))
        .unwrap();
    assert_eq!(a.dims(), b.dims());
    max_diff(&a, &b, &mask)
}

/// Token ids that look like text: [CLS] ... [SEP].
fn text(n: usize, seed: u32) -> Vec<u32> {
    let mut v = vec![101];
    v.extend((0..n as u32).map(|i| 2000 + (i * 7919 + seed * 104_729) % 20_000));
    v.push(102);
    v
}

#[test]
fn a_lone_query_matches_candle_transformers_bert() {
    let diff = run(&[text(12, 1)]);
    assert!(diff < 1e-4, "largest difference {diff}");
}

#[test]
fn a_padded_batch_matches_candle_transformers_bert() {
    // 3 texts of up to 60 tokens: 186 rows, past the thin-input limit, with padding.
    let diff = run(&[text(60, 2), text(25, 3), text(3, 4)]);
    assert!(diff < 1e-4, "largest difference {diff}");
}
