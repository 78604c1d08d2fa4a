//! Approximate nearest neighbours over passage embeddings: usearch HNSW, cosine, f32.

use std::path::Path;

use folio_core::PassageId;
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use crate::StoreError;

pub(crate) const FILE: &str = "ann.usearch";
/// HNSW graph degree (M).
const CONNECTIVITY: usize = 16;
/// Candidate list size while building (ef_construction).
const EXPANSION_ADD: usize = 128;
/// Candidate list size while searching (ef_search); searches for more than this many use k.
const EXPANSION_SEARCH: usize = 128;

fn options(dim: usize) -> IndexOptions {
    IndexOptions {
        dimensions: dim,
        metric: MetricKind::Cos,
        quantization: ScalarKind::F32,
        connectivity: CONNECTIVITY,
        expansion_add: EXPANSION_ADD,
        expansion_search: EXPANSION_SEARCH,
        multi: false,
    }
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Ann(e.to_string())
}

/// Builds the index of `vectors` (row `i` has key `i`) and saves it to `path`.
pub(crate) fn build(path: &Path, dim: usize, vectors: &[f32]) -> Result<(), StoreError> {
    if dim == 0 || !vectors.len().is_multiple_of(dim) {
        return Err(StoreError::Invalid(format!(
            "{} floats are not whole vectors of width {dim}",
            vectors.len()
        )));
    }
    let index = Index::new(&options(dim)).map_err(err)?;
    let n = vectors.len() / dim;
    index.reserve(n.max(1)).map_err(err)?;
    for (key, v) in vectors.chunks_exact(dim).enumerate() {
        index.add(key as u64, v).map_err(err)?;
    }
    index.save(&path.to_string_lossy()).map_err(err)
}

/// An ANN index loaded in memory.
pub(crate) struct AnnIndex {
    index: Index,
}

impl AnnIndex {
    pub(crate) fn open(path: &Path, dim: usize) -> Result<Self, StoreError> {
        let corrupt = |message: String| StoreError::Corrupt {
            path: path.to_path_buf(),
            message,
        };
        let index = Index::new(&options(dim)).map_err(err)?;
        index
            .load(&path.to_string_lossy())
            .map_err(|e| corrupt(e.to_string()))?;
        if index.dimensions() != dim {
            return Err(corrupt(format!(
                "{} dimensions, the manifest says {dim}",
                index.dimensions()
            )));
        }
        Ok(AnnIndex { index })
    }

    pub(crate) fn len(&self) -> usize {
        self.index.size()
    }

    pub(crate) fn search(
        &self,
        vector: &[f32],
        k: usize,
    ) -> Result<Vec<(PassageId, f32)>, StoreError> {
        if k == 0 || self.index.size() == 0 {
            return Ok(Vec::new());
        }
        let matches = self.index.search(vector, k).map_err(err)?;
        Ok(matches
            .keys
            .into_iter()
            .zip(matches.distances)
            .map(|(key, distance)| (key, 1.0 - distance))
            .collect())
    }
}
