//! Test doubles, behind the `testing` feature.

use crate::{
    Candidate, DocInput, EmbedError, Embedder, EmbedderInfo, Embedding, EmbeddingKind,
    PageEmbedder, PageImage, QueryInput, RerankBudget, RerankError, Reranked, Reranker,
    VisualQuery,
};

/// How an [`OrderReranker`] orders candidates: indices best first.
type OrderFn = dyn Fn(&str, &[Candidate]) -> Vec<usize> + Send + Sync;

/// A re-ranker that orders the candidates with a closure (indices best first; scores fall
/// with the position): a test stand-in for an LLM with a known preference.
pub struct OrderReranker {
    name: String,
    order: Box<OrderFn>,
}

impl OrderReranker {
    /// A re-ranker named `name` that puts candidates in the order `order` returns.
    pub fn new(
        name: &str,
        order: impl Fn(&str, &[Candidate]) -> Vec<usize> + Send + Sync + 'static,
    ) -> Self {
        OrderReranker {
            name: name.to_string(),
            order: Box::new(order),
        }
    }
}

impl Reranker for OrderReranker {
    fn name(&self) -> &str {
        &self.name
    }

    fn rerank(
        &self,
        query: &str,
        candidates: &[Candidate],
        _budget: RerankBudget,
    ) -> Result<Vec<Reranked>, RerankError> {
        Ok((self.order)(query, candidates)
            .into_iter()
            .enumerate()
            .map(|(pos, index)| Reranked {
                index,
                score: 1.0 / (pos + 1) as f64,
            })
            .collect())
    }
}

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

/// A deterministic page embedder: an image's vector is the L2-normalised histogram of its
/// pixels' brightness in `dim` buckets (multi-vector: one such vector per horizontal band of
/// the image). Text is hashed as [`HashEmbedder`] does, and a text+image query adds the two.
/// The same image always gives the same embedding, so an image query finds its own page.
#[derive(Debug, Clone)]
pub struct PixelEmbedder {
    info: EmbedderInfo,
    text: HashEmbedder,
}

/// Bands (tokens) per image of a multi-vector [`PixelEmbedder`].
pub const PIXEL_BANDS: usize = 4;

impl PixelEmbedder {
    /// A page embedder of width `dim`, single- or multi-vector.
    pub fn new(dim: usize, kind: EmbeddingKind) -> Self {
        let name = match kind {
            EmbeddingKind::Single => "single",
            EmbeddingKind::Multi => "multi",
        };
        PixelEmbedder {
            info: EmbedderInfo {
                id: format!("test/pixels-{name}-{dim}"),
                dim,
                kind,
                max_batch: 4,
                max_tokens: 1024,
            },
            text: HashEmbedder::new(dim),
        }
    }

    fn histogram(&self, rgb: &[u8]) -> Vec<f32> {
        let dim = self.info.dim.max(1);
        let mut v = vec![0f32; dim];
        for px in rgb.chunks_exact(3) {
            let brightness = (u32::from(px[0]) + u32::from(px[1]) + u32::from(px[2])) as usize;
            v[brightness * dim / 766] += 1.0;
        }
        normalise(&mut v);
        v
    }

    fn image_vectors(&self, image: &PageImage) -> Vec<Vec<f32>> {
        match self.info.kind {
            EmbeddingKind::Single => vec![self.histogram(&image.rgb)],
            EmbeddingKind::Multi => {
                let row = image.width as usize * 3;
                let rows = image.height as usize;
                (0..PIXEL_BANDS)
                    .map(|b| {
                        let (start, end) = (b * rows / PIXEL_BANDS, (b + 1) * rows / PIXEL_BANDS);
                        let band = image.rgb.get(start * row..end * row).unwrap_or_default();
                        self.histogram(band)
                    })
                    .collect()
            }
        }
    }

    fn wrap(&self, mut vectors: Vec<Vec<f32>>) -> Embedding {
        match self.info.kind {
            EmbeddingKind::Single => Embedding::Single(vectors.pop().unwrap_or_default()),
            EmbeddingKind::Multi => Embedding::Multi(vectors),
        }
    }
}

fn normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    } else if let Some(first) = v.first_mut() {
        *first = 1.0;
    }
}

impl PageEmbedder for PixelEmbedder {
    fn info(&self) -> &EmbedderInfo {
        &self.info
    }

    fn embed_pages(&self, pages: &[PageImage]) -> Result<Vec<Embedding>, EmbedError> {
        Ok(pages
            .iter()
            .map(|p| self.wrap(self.image_vectors(p)))
            .collect())
    }

    fn embed_visual_queries(&self, queries: &[VisualQuery]) -> Result<Vec<Embedding>, EmbedError> {
        queries
            .iter()
            .map(|q| {
                let text = q.text.as_deref().filter(|t| !t.is_empty());
                let text = text.map(|t| self.text.embed(t));
                let mut vectors = match (&q.image, &text) {
                    (Some(image), _) => self.image_vectors(image),
                    (None, Some(t)) => vec![t.clone()],
                    (None, None) => {
                        return Err(EmbedError::InvalidInput("an empty query".into()));
                    }
                };
                if let (Some(_), Some(t)) = (&q.image, &text) {
                    for v in &mut vectors {
                        v.iter_mut().zip(t).for_each(|(x, y)| *x += y);
                        normalise(v);
                    }
                }
                Ok(self.wrap(vectors))
            })
            .collect()
    }
}
