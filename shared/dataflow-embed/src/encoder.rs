//! The BERT encoder of all-MiniLM-L6-v2 in candle, laid out for one short text at a time.
//!
//! It computes what `candle-transformers`' `BertModel` computes (a test holds the two together)
//! with one difference in how the dense layers multiply. A query is ~10-30 tokens, so every dense
//! layer is a thin matrix against a weight matrix that is read from memory once per query; the
//! generic `x · Wᵀ` product spends most of a query's time re-packing those weights. Written as
//! `(W · xᵀ)ᵀ` over weights stored transposed, the same product costs about half (measured in
//! docs/benchmarks.md), which is what brings a query under 10 ms on one core. Long batches (index
//! builds) keep the generic product, which is the faster one there.

use candle_core::{DType, Module, Tensor};
use candle_nn::{embedding, layer_norm, Embedding, LayerNorm, VarBuilder};
use serde::Deserialize;

/// Rows (tokens in a forward pass) up to which the transposed product is used.
const THIN_ROWS: usize = 64;

/// The fields of the model's `config.json` the encoder needs.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub hidden_size: usize,
    pub num_attention_heads: usize,
    pub num_hidden_layers: usize,
    pub intermediate_size: usize,
    pub layer_norm_eps: f64,
    pub max_position_embeddings: usize,
    pub hidden_act: String,
}

/// A dense layer whose weights are kept as `Wᵀ` (in × out), contiguous.
struct Dense {
    wt: Tensor,
    bias: Tensor,
    /// The bias as a column (out × 1), for the transposed product.
    bias_column: Tensor,
}

impl Dense {
    fn load(vb: VarBuilder, inputs: usize, outputs: usize) -> candle_core::Result<Self> {
        let w = vb.get((outputs, inputs), "weight")?;
        let bias = vb.get(outputs, "bias")?;
        Ok(Self {
            wt: w.t()?.contiguous()?,
            bias_column: bias.reshape((outputs, 1))?,
            bias,
        })
    }

    /// Several dense layers over the same input as one (query, key and value).
    fn stack(parts: &[Dense]) -> candle_core::Result<Self> {
        let wts: Vec<&Tensor> = parts.iter().map(|p| &p.wt).collect();
        let biases: Vec<&Tensor> = parts.iter().map(|p| &p.bias).collect();
        let bias = Tensor::cat(&biases, 0)?;
        Ok(Self {
            wt: Tensor::cat(&wts, 1)?,
            bias_column: bias.reshape((bias.dim(0)?, 1))?,
            bias,
        })
    }

    /// `x` is (rows × in); the answer is (rows × out).
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if x.dim(0)? <= THIN_ROWS {
            // The bias is added while the product is still contiguous (out × rows): element-wise
            // steps over a transposed view walk it index by index, several times slower.
            self.wt
                .t()?
                .matmul(&x.t()?)?
                .broadcast_add(&self.bias_column)?
                .t()?
                .contiguous()
        } else {
            x.matmul(&self.wt)?.broadcast_add(&self.bias)
        }
    }
}

struct Layer {
    qkv: Dense,
    attention_out: Dense,
    attention_norm: LayerNorm,
    intermediate: Dense,
    output: Dense,
    output_norm: LayerNorm,
}

/// The encoder: token ids in, the last layer's hidden states out.
pub struct Encoder {
    words: Embedding,
    positions: Embedding,
    token_types: Embedding,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    hidden: usize,
    max_positions: usize,
}

impl Encoder {
    pub fn load(vb: VarBuilder, c: &Config) -> candle_core::Result<Self> {
        if c.hidden_act != "gelu" {
            return Err(candle_core::Error::Msg(format!(
                "hidden_act {:?} is not supported (the model uses gelu)",
                c.hidden_act
            )));
        }
        if c.num_attention_heads == 0 || !c.hidden_size.is_multiple_of(c.num_attention_heads) {
            return Err(candle_core::Error::Msg(
                "hidden_size must be a multiple of num_attention_heads".into(),
            ));
        }
        let h = c.hidden_size;
        let e = vb.pp("embeddings");
        let vocab = e.pp("word_embeddings").get_unchecked("weight")?.dim(0)?;
        let types = e
            .pp("token_type_embeddings")
            .get_unchecked("weight")?
            .dim(0)?;
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let l = vb.pp(format!("encoder.layer.{i}"));
            let a = l.pp("attention");
            let s = a.pp("self");
            layers.push(Layer {
                qkv: Dense::stack(&[
                    Dense::load(s.pp("query"), h, h)?,
                    Dense::load(s.pp("key"), h, h)?,
                    Dense::load(s.pp("value"), h, h)?,
                ])?,
                attention_out: Dense::load(a.pp("output.dense"), h, h)?,
                attention_norm: layer_norm(h, c.layer_norm_eps, a.pp("output.LayerNorm"))?,
                intermediate: Dense::load(l.pp("intermediate.dense"), h, c.intermediate_size)?,
                output: Dense::load(l.pp("output.dense"), c.intermediate_size, h)?,
                output_norm: layer_norm(h, c.layer_norm_eps, l.pp("output.LayerNorm"))?,
            });
        }
        Ok(Self {
            words: embedding(vocab, h, e.pp("word_embeddings"))?,
            positions: embedding(c.max_position_embeddings, h, e.pp("position_embeddings"))?,
            token_types: embedding(types, h, e.pp("token_type_embeddings"))?,
            embedding_norm: layer_norm(h, c.layer_norm_eps, e.pp("LayerNorm"))?,
            layers,
            heads: c.num_attention_heads,
            hidden: h,
            max_positions: c.max_position_embeddings,
        })
    }

    /// `ids` and `mask` are (batch × len); padding has mask 0. Answers (batch × len × hidden).
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (batch, len) = ids.dims2()?;
        if len > self.max_positions {
            return Err(candle_core::Error::Msg(format!(
                "{len} tokens, the model takes at most {}",
                self.max_positions
            )));
        }
        let device = ids.device();
        let positions = Tensor::arange(0u32, len as u32, device)?;
        let x = self
            .words
            .forward(ids)?
            .broadcast_add(&self.positions.forward(&positions)?)?
            .broadcast_add(
                &self
                    .token_types
                    .forward(&Tensor::zeros(1, DType::U32, device)?)?,
            )?;
        let mut x = self
            .embedding_norm
            .forward(&x)?
            .reshape((batch * len, self.hidden))?;
        // Padding is hidden from attention by a large negative score; a batch without padding
        // (every query) needs no mask at all.
        let bias = if mask.min_all()?.to_scalar::<u32>()? == 0 {
            let m = mask.to_dtype(DType::F32)?;
            Some(
                ((m - 1.0)? * f64::from(f32::MAX))?
                    .reshape((batch, 1, 1, len))?
                    .contiguous()?,
            )
        } else {
            None
        };
        for layer in &self.layers {
            x = self.layer(layer, &x, batch, len, bias.as_ref())?;
        }
        x.reshape((batch, len, self.hidden))
    }

    fn layer(
        &self,
        l: &Layer,
        x: &Tensor,
        batch: usize,
        len: usize,
        bias: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let h = self.hidden;
        let head = h / self.heads;
        let qkv = l.qkv.forward(x)?;
        let split = |i: usize| -> candle_core::Result<Tensor> {
            qkv.narrow(1, i * h, h)?
                .reshape((batch, len, self.heads, head))?
                .transpose(1, 2)?
                .contiguous()
        };
        let (q, k, v) = (split(0)?, split(1)?, split(2)?);
        let mut scores = (q.matmul(&k.t()?)? / (head as f64).sqrt())?;
        if let Some(b) = bias {
            scores = scores.broadcast_add(b)?;
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((batch * len, h))?;
        let x = l
            .attention_norm
            .forward(&(l.attention_out.forward(&context)? + x)?)?;
        let inner = crate::gelu::gelu(&l.intermediate.forward(&x)?)?;
        l.output_norm.forward(&(l.output.forward(&inner)? + &x)?)
    }
}
