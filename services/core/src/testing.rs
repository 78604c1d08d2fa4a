//! Test doubles, behind the `testing` feature.

use crate::{DocInput, EmbedError, Embedder, EmbedderInfo, Embedding, EmbeddingKind, QueryInput};

/// A deterministic bag-of-words embedder: each lower-cased alphanumeric word adds 1 to the
/// bucket its FNV-1a hash picks, and the vector is L2-normalised. Texts sharing words are
/// close; no model needed.
#[derive(Debug, Clone)]
pub struct HashEmbedder {
    info: EmbedderInfo,
}

impl HashEmbedder {
    /// An embedder of width `dim`.
    pub fn new(dim: usize) -> Self {
        HashEmbedder {
            info: EmbedderInfo {
                id: format!("test/hash-{dim}"),
                dim,
                kind: EmbeddingKind::Single,
                max_batch: 8,
                max_tokens: 512,
            },
        }
    }

    /// The embedding of one text.
    pub fn embed(&self, text: &str) -> Vec<f32> {
        let dim = self.info.dim.max(1);
        let mut v = vec![0f32; dim];
        for word in text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in word.to_lowercase().bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
            v[(h % dim as u64) as usize] += 1.0;
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        } else {
            v[0] = 1.0;
        }
        v
    }
}

impl Embedder for HashEmbedder {
    fn info(&self) -> &EmbedderInfo {
        &self.info
    }

    fn embed_queries(&self, queries: &[QueryInput]) -> Result<Vec<Embedding>, EmbedError> {
        Ok(queries
            .iter()
            .map(|QueryInput::Text(t)| Embedding::Single(self.embed(t)))
            .collect())
    }

    fn embed_documents(&self, docs: &[DocInput]) -> Result<Vec<Embedding>, EmbedError> {
        Ok(docs
            .iter()
            .map(|DocInput::Text(t)| Embedding::Single(self.embed(t)))
            .collect())
    }
}
