//! Approximate nearest neighbours: usearch HNSW over the passage and page vectors, with the
//! metric, the stored scalar type and the graph parameters of [`AnnOptions`].

use std::path::Path;

use serde::{Deserialize, Serialize};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use crate::StoreError;

pub(crate) const FILE: &str = "ann.usearch";

/// How vectors are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnnMetric {
    /// Cosine similarity.
    Cosine,
    /// Inner product (equal to cosine on L2-normalised vectors, without the norms).
    InnerProduct,
}

/// How vectors are stored in the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnnStorage {
    /// 32-bit floats.
    F32,
    /// 16-bit floats: half the memory.
    F16,
    /// 8-bit integers (values scaled by 127): a quarter of the memory, for unit vectors.
    I8,
}

/// HNSW settings, recorded in the manifest and applied to every ANN index of the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AnnOptions {
    /// Similarity.
    pub metric: AnnMetric,
    /// Stored scalar type.
    pub storage: AnnStorage,
    /// Graph degree (HNSW's M).
    pub m: usize,
    /// Candidate list size while building (ef_construction).
    pub ef_construction: usize,
    /// Candidate list size while searching (ef_search); searches for more use k.
    pub ef_search: usize,
}

impl Default for AnnOptions {
    fn default() -> Self {
        AnnOptions {
            metric: AnnMetric::Cosine,
            storage: AnnStorage::F32,
            m: 16,
            ef_construction: 128,
            ef_search: 128,
        }
    }
}

impl AnnOptions {
    /// Checks the graph parameters.
    pub fn validate(&self) -> Result<(), StoreError> {
        if !(2..=256).contains(&self.m) {
            return Err(StoreError::Invalid(format!(
                "HNSW M must be between 2 and 256, got {}",
                self.m
            )));
        }
        for (name, v) in [
            ("ef_construction", self.ef_construction),
            ("ef_search", self.ef_search),
        ] {
            if !(1..=100_000).contains(&v) {
                return Err(StoreError::Invalid(format!(
                    "{name} must be between 1 and 100000, got {v}"
                )));
            }
        }
        Ok(())
    }

    fn usearch(&self, dim: usize) -> IndexOptions {
        IndexOptions {
            dimensions: dim,
            metric: match self.metric {
                AnnMetric::Cosine => MetricKind::Cos,
                AnnMetric::InnerProduct => MetricKind::IP,
            },
            quantization: match self.storage {
                AnnStorage::F32 => ScalarKind::F32,
                AnnStorage::F16 => ScalarKind::F16,
                AnnStorage::I8 => ScalarKind::I8,
            },
            connectivity: self.m,
            expansion_add: self.ef_construction,
            expansion_search: self.ef_search,
            multi: false,
        }
    }
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Ann(e.to_string())
}

/// Builds the index of `vectors` (row `i` has key `i`) and saves it to `path`.
pub(crate) fn build(
    path: &Path,
    options: &AnnOptions,
    dim: usize,
    vectors: &[f32],
) -> Result<(), StoreError> {
    AnnIndex::build(options, dim, vectors)?.save(path)
}

/// An HNSW index in memory; keys are row numbers.
pub struct AnnIndex {
    index: Index,
}

impl AnnIndex {
    /// Builds the index of `vectors` (row-major, width `dim`; row `i` gets key `i`), adding
    /// rows on all cores.
    pub fn build(options: &AnnOptions, dim: usize, vectors: &[f32]) -> Result<Self, StoreError> {
        options.validate()?;
        if dim == 0 || !vectors.len().is_multiple_of(dim) {
            return Err(StoreError::Invalid(format!(
                "{} floats are not whole vectors of width {dim}",
                vectors.len()
            )));
        }
        let index = Index::new(&options.usearch(dim)).map_err(err)?;
        let n = vectors.len() / dim;
        let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
        index
            .reserve_capacity_and_threads(n.max(1), threads)
            .map_err(err)?;
        let rows: Vec<&[f32]> = vectors.chunks_exact(dim).collect();
        let per_thread = n.div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            let workers: Vec<_> = rows
                .chunks(per_thread)
                .enumerate()
                .map(|(t, chunk)| {
                    let index = &index;
                    scope.spawn(move || -> Result<(), StoreError> {
                        for (i, v) in chunk.iter().enumerate() {
                            index.add((t * per_thread + i) as u64, v).map_err(err)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            workers
                .into_iter()
                .try_for_each(|w| w.join().map_err(|_| err("an ANN build thread panicked"))?)
        })?;
        Ok(AnnIndex { index })
    }

    /// Saves the index to `path`.
    pub fn save(&self, path: &Path) -> Result<(), StoreError> {
        self.index.save(&path.to_string_lossy()).map_err(err)
    }

    /// Loads an index saved with these options and width.
    pub fn open(path: &Path, options: &AnnOptions, dim: usize) -> Result<Self, StoreError> {
        let corrupt = |message: String| StoreError::Corrupt {
            path: path.to_path_buf(),
            message,
        };
        let index = Index::new(&options.usearch(dim)).map_err(err)?;
        index
            .load(&path.to_string_lossy())
            .map_err(|e| corrupt(e.to_string()))?;
        if index.dimensions() != dim {
            return Err(corrupt(format!(
                "{} dimensions, the manifest says {dim}",
                index.dimensions()
            )));
        }
        index.change_expansion_search(options.ef_search);
        Ok(AnnIndex { index })
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.index.size()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the index holds in memory.
    pub fn memory_usage(&self) -> usize {
        self.index.memory_usage()
    }

    /// Changes ef_search for the following searches.
    pub fn set_ef_search(&self, ef: usize) {
        self.index.change_expansion_search(ef.max(1));
    }

    /// The `k` nearest rows with their similarity (1 - distance), best first.
    pub fn search(&self, vector: &[f32], k: usize) -> Result<Vec<(u64, f32)>, StoreError> {
        if k == 0 || self.index.size() == 0 {
            return Ok(Vec::new());
        }
        let matches = self.index.search(vector, k).map_err(err)?;
        Ok(similarities(matches))
    }

    /// As [`AnnIndex::search`], among the rows `keep` accepts.
    pub fn filtered_search(
        &self,
        vector: &[f32],
        k: usize,
        keep: impl Fn(u64) -> bool,
    ) -> Result<Vec<(u64, f32)>, StoreError> {
        if k == 0 || self.index.size() == 0 {
            return Ok(Vec::new());
        }
        let matches = self.index.filtered_search(vector, k, keep).map_err(err)?;
        Ok(similarities(matches))
    }
}

fn similarities(matches: usearch::ffi::Matches) -> Vec<(u64, f32)> {
    matches
        .keys
        .into_iter()
        .zip(matches.distances)
        .map(|(key, distance)| (key, 1.0 - distance))
        .collect()
}
