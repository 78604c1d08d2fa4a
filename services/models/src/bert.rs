//! BERT-family sentence embedders (sentence-transformers layout), e.g. all-MiniLM-L6-v2
//! (<https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2>).
//!
//! The encoder is candle-transformers' `BertModel`; this file adds what sentence-transformers
//! does around it: tokenisation with truncation at `max_seq_length` (from
//! `sentence_bert_config.json`, default 256), padding to the longest input of a batch, pooling as
//! `1_Pooling/config.json` says (mean over non-padding tokens, or the CLS token), and L2
//! normalisation.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use folio_core::{
    DocInput, EmbedError, Embedder, EmbedderInfo, Embedding, EmbeddingKind, QueryInput,
};
use serde::Deserialize;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};
use tracing::{debug, instrument};

use crate::{ModelError, ModelSource};

/// Inputs embedded in one forward pass at most.
const MAX_BATCH: usize = 32;
/// sentence-transformers' default when `sentence_bert_config.json` is absent.
const DEFAULT_MAX_SEQ_LEN: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pooling {
    Mean,
    Cls,
}

/// A BERT sentence embedder on candle.
pub struct BertEmbedder {
    model: BertModel,
    tokenizer: Tokenizer,
    pooling: Pooling,
    device: Device,
    info: EmbedderInfo,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

impl BertEmbedder {
    /// Loads a sentence-transformers BERT model from a resolved model directory, in f32.
    pub fn load(source: &ModelSource, device: &Device) -> Result<Self, ModelError> {
        let dir = source.dir.as_path();
        let config_path = crate::require(dir, "config.json")?;
        let weights = crate::require(dir, "model.safetensors")?;
        let tokenizer_path = crate::require(dir, "tokenizer.json")?;

        let config: Config = crate::read_json(&config_path)?;
        if config.model_type.as_deref().is_some_and(|t| t != "bert") {
            return Err(ModelError::Unsupported {
                dir: dir.to_path_buf(),
                message: format!(
                    "model_type {:?} is not bert",
                    config.model_type.as_deref().unwrap_or_default()
                ),
            });
        }

        let max_tokens = match dir.join("sentence_bert_config.json") {
            p if p.is_file() => crate::read_json::<SentenceBertConfig>(&p)?
                .max_seq_length
                .unwrap_or(DEFAULT_MAX_SEQ_LEN),
            _ => DEFAULT_MAX_SEQ_LEN,
        }
        .min(config.max_position_embeddings);

        let pooling = match dir.join("1_Pooling").join("config.json") {
            p if p.is_file() => {
                let cfg: PoolingConfig = crate::read_json(&p)?;
                match (
                    cfg.pooling_mode_mean_tokens,
                    cfg.pooling_mode_cls_token,
                    cfg.pooling_mode_max_tokens || cfg.pooling_mode_mean_sqrt_len_tokens,
                ) {
                    (true, false, false) => Pooling::Mean,
                    (false, true, false) => Pooling::Cls,
                    _ => {
                        return Err(ModelError::Unsupported {
                            dir: dir.to_path_buf(),
                            message: "pooling other than mean-only or CLS-only".into(),
                        });
                    }
                }
            }
            _ => Pooling::Mean,
        };

        let mut tokenizer =
            Tokenizer::from_file(&tokenizer_path).map_err(|e| ModelError::BadFile {
                path: tokenizer_path.clone(),
                message: e.to_string(),
            })?;
        // tokenizer.json may carry its own fixed padding/truncation (MiniLM's says 128): use the
        // sentence-transformers settings instead.
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..Default::default()
            }))
            .map_err(|e| ModelError::BadFile {
                path: tokenizer_path.clone(),
                message: e.to_string(),
            })?;
        let pad_id = config.pad_token_id as u32;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            pad_id,
            ..Default::default()
        }));

        // Read the weights into memory: mmap would need unsafe code, which the workspace denies.
        let bytes = std::fs::read(&weights).map_err(|e| ModelError::BadFile {
            path: weights.clone(),
            message: e.to_string(),
        })?;
        let vb =
            VarBuilder::from_buffered_safetensors(bytes, DType::F32, device).map_err(|source| {
                ModelError::Weights {
                    dir: dir.to_path_buf(),
                    source,
                }
            })?;
        let model = BertModel::load(vb, &config).map_err(|source| ModelError::Weights {
            dir: dir.to_path_buf(),
            source,
        })?;
        let info = EmbedderInfo {
            id: source.id.clone(),
            dim: config.hidden_size,
            kind: EmbeddingKind::Single,
            max_batch: MAX_BATCH,
            max_tokens,
        };
        debug!(id = %info.id, dim = info.dim, max_tokens, ?pooling, "loaded BERT embedder");
        Ok(BertEmbedder {
            model,
            tokenizer,
            pooling,
            device: device.clone(),
            info,
        })
    }

    /// Embeds texts, batching internally; one L2-normalised vector per text.
    #[instrument(skip_all, fields(n = texts.len()))]
    pub fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        // Sort by length so each batch pads little, then restore the input order.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| texts[i].len());
        let mut out = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(MAX_BATCH) {
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
            let vectors = self.embed_batch(&batch).map_err(model_error)?;
            for (&i, v) in chunk.iter().zip(vectors) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// Number of tokens `text` becomes, special tokens included, after truncation.
    pub fn token_count(&self, text: &str) -> Result<usize, EmbedError> {
        // Padding is to the longest of a batch: a single text is not padded.
        self.tokenizer
            .encode(text, true)
            .map(|e| e.len())
            .map_err(|e| EmbedError::InvalidInput(format!("tokenizer: {e}")))
    }

    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, candle_core::Error> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| candle_core::Error::Msg(format!("tokenizer: {e}")))?;
        let n = encodings.len();
        let len = encodings.first().map_or(0, |e| e.len());
        let mut ids = Vec::with_capacity(n * len);
        let mut types = Vec::with_capacity(n * len);
        let mut mask = Vec::with_capacity(n * len);
        for e in &encodings {
            ids.extend_from_slice(e.get_ids());
            types.extend_from_slice(e.get_type_ids());
            mask.extend_from_slice(e.get_attention_mask());
        }
        let ids = Tensor::from_vec(ids, (n, len), &self.device)?;
        let types = Tensor::from_vec(types, (n, len), &self.device)?;
        let mask = Tensor::from_vec(mask, (n, len), &self.device)?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?; // (n, len, dim)
        let pooled = match self.pooling {
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
            Pooling::Mean => {
                let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (n, len, 1)
                let summed = hidden.broadcast_mul(&mask)?.sum(1)?; // (n, dim)
                let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?; // (n, 1)
                summed.broadcast_div(&counts)?
            }
        };
        let norms = pooled
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
            .clamp(1e-12, f64::MAX)?;
        pooled.broadcast_div(&norms)?.to_vec2::<f32>()
    }
}

fn model_error(e: candle_core::Error) -> EmbedError {
    EmbedError::Model(e.to_string())
}

impl BertEmbedder {
    fn embed_as_single(&self, texts: &[&str]) -> Result<Vec<Embedding>, EmbedError> {
        let vectors = self.embed_texts(texts)?;
        Ok(vectors.into_iter().map(Embedding::Single).collect())
    }
}

impl Embedder for BertEmbedder {
    fn info(&self) -> &EmbedderInfo {
        &self.info
    }

    fn embed_queries(&self, queries: &[QueryInput]) -> Result<Vec<Embedding>, EmbedError> {
        let texts: Vec<&str> = queries
            .iter()
            .map(|QueryInput::Text(t)| t.as_str())
            .collect();
        self.embed_as_single(&texts)
    }

    fn embed_documents(&self, docs: &[DocInput]) -> Result<Vec<Embedding>, EmbedError> {
        let texts: Vec<&str> = docs.iter().map(|DocInput::Text(t)| t.as_str()).collect();
        self.embed_as_single(&texts)
    }
}
