//! Approximate nearest neighbours: usearch HNSW over the passage and page vectors, with the
//! metric, the stored scalar type and the graph parameters of [`AnnOptions`].

use std::path::Path;
use std::sync::{Condvar, Mutex};

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
    /// With f16 or i8 storage, the graph returns `rescore * k` candidates and they are
    /// scored again with the exact f32 vectors (kept in memory beside the graph); 1 turns
    /// that off. Ignored with f32 storage.
    pub rescore: usize,
}

impl Default for AnnOptions {
    fn default() -> Self {
        AnnOptions {
            metric: AnnMetric::Cosine,
            storage: AnnStorage::F32,
            m: 16,
            ef_construction: 128,
            ef_search: 128,
            rescore: 2,
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
        if !(1..=16).contains(&self.rescore) {
            return Err(StoreError::Invalid(format!(
                "the re-scoring factor must be between 1 and 16, got {}",
                self.rescore
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

    /// Whether searches re-score the graph's candidates with exact vectors (which the index
    /// then needs: [`AnnIndex::with_exact_rows`]).
    pub fn rescores(&self) -> bool {
        self.storage != AnnStorage::F32 && self.rescore > 1
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

fn exact_rows(dim: usize) -> usize {
    (EXACT_MAX_FLOATS / dim.max(1)).min(EXACT_MAX_ROWS)
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

/// Indexes of at most this many floats (rows × width), and at most [`EXACT_MAX_ROWS`] rows,
/// are searched by brute force: a scan that small costs about what a graph search costs
/// (a millisecond or two), and small collections and tests get exact answers, which an HNSW
/// graph does not promise even when ef_search exceeds the rows.
const EXACT_MAX_FLOATS: usize = 1 << 22;
const EXACT_MAX_ROWS: usize = 20_000;

/// An HNSW index in memory; keys are row numbers.
pub struct AnnIndex {
    index: Index,
    /// Up to this many rows, searches scan every row instead of walking the graph.
    exact_rows: usize,
    /// usearch searches each need one of the index's reserved thread contexts, and fail
    /// ("Reserve capacity ahead of searches!") when none is free: searches beyond that many
    /// wait here for one.
    slots: Slots,
    /// The exact rows that re-score a quantized graph's candidates.
    exact: Option<ExactRows>,
}

/// Exact f32 rows beside a quantized graph: the graph finds `factor * k` candidates cheaply,
/// the rows put the best `k` of them in the exact order with exact similarities.
struct ExactRows {
    rows: Vec<f32>,
    dim: usize,
    factor: usize,
    cosine: bool,
}

impl ExactRows {
    /// The best `k` of `candidates`, scored again.
    fn rescore(&self, query: &[f32], candidates: Vec<(u64, f32)>, k: usize) -> Vec<(u64, f32)> {
        let query_norm = norm(query);
        let mut hits: Vec<(u64, f32)> = candidates
            .into_iter()
            .map(|(key, approximate)| {
                let row = usize::try_from(key)
                    .ok()
                    .and_then(|r| self.rows.get(r * self.dim..(r + 1) * self.dim));
                let Some(row) = row else {
                    return (key, approximate);
                };
                let dot: f32 = row.iter().zip(query).map(|(a, b)| a * b).sum();
                let similarity = if self.cosine {
                    dot / (norm(row) * query_norm).max(f32::MIN_POSITIVE)
                } else {
                    dot
                };
                (key, similarity)
            })
            .collect();
        hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        hits.truncate(k);
        hits
    }
}

fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

/// Search contexts reserved per index: enough for every core twice over (searches are CPU
/// bound, more at once only queue), at least 8.
fn search_contexts() -> usize {
    (std::thread::available_parallelism().map_or(1, |t| t.get()) * 2).max(8)
}

/// A counting semaphore over the index's search contexts.
struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

impl Slots {
    fn new(n: usize) -> Self {
        Slots {
            free: Mutex::new(n),
            freed: Condvar::new(),
        }
    }

    /// Waits for a free context and holds it until the guard drops.
    fn take(&self) -> SlotGuard<'_> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        SlotGuard(self)
    }
}

struct SlotGuard<'a>(&'a Slots);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        let mut free = self.0.free.lock().unwrap_or_else(|p| p.into_inner());
        *free += 1;
        self.0.freed.notify_one();
    }
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
        let contexts = search_contexts();
        index
            .reserve_capacity_and_threads(n.max(1), contexts)
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
        Ok(AnnIndex {
            index,
            exact_rows: exact_rows(dim),
            slots: Slots::new(contexts),
            exact: None,
        })
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
        // A loaded index has contexts for as many searches as cores; reserve more.
        let contexts = search_contexts();
        index
            .reserve_capacity_and_threads(index.size().max(1), contexts)
            .map_err(err)?;
        Ok(AnnIndex {
            index,
            exact_rows: exact_rows(dim),
            slots: Slots::new(contexts),
            exact: None,
        })
    }

    /// Keeps `rows` (the indexed vectors, row-major, as given to [`AnnIndex::build`]) to
    /// re-score the graph's candidates, when `options` ask for it ([`AnnOptions::rescores`]);
    /// otherwise drops them.
    pub fn with_exact_rows(
        mut self,
        options: &AnnOptions,
        rows: Vec<f32>,
    ) -> Result<Self, StoreError> {
        if !options.rescores() {
            return Ok(self);
        }
        let dim = self.index.dimensions();
        if rows.len() != self.len() * dim {
            return Err(StoreError::Invalid(format!(
                "{} floats to re-score {} vectors of width {dim}",
                rows.len(),
                self.len()
            )));
        }
        self.exact = Some(ExactRows {
            rows,
            dim,
            factor: options.rescore,
            cosine: options.metric == AnnMetric::Cosine,
        });
        Ok(self)
    }

    /// How many candidates to ask the graph for, to return `k`.
    fn candidates(&self, k: usize) -> usize {
        self.exact
            .as_ref()
            .map_or(k, |e| k.saturating_mul(e.factor))
    }

    /// The best `k` of `hits`, scored again with the exact rows where the index has them.
    fn finish(&self, query: &[f32], hits: Vec<(u64, f32)>, k: usize) -> Vec<(u64, f32)> {
        match &self.exact {
            Some(exact) => exact.rescore(query, hits, k),
            None => hits,
        }
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.index.size()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the index holds in memory (the graph, and the exact rows it re-scores with).
    pub fn memory_usage(&self) -> usize {
        self.index.memory_usage()
            + self
                .exact
                .as_ref()
                .map_or(0, |e| e.rows.len() * std::mem::size_of::<f32>())
    }

    /// Searches the graph whatever the size: for measuring HNSW itself (benchmarks, recall
    /// tests) on indexes small enough to be scanned otherwise.
    pub fn always_use_graph(mut self) -> Self {
        self.exact_rows = 0;
        self
    }

    fn scans(&self) -> bool {
        self.index.size() <= self.exact_rows
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
        let _slot = self.slots.take();
        let n = self.candidates(k);
        let matches = if self.scans() {
            self.index.exact_search(vector, n)
        } else {
            self.index.search(vector, n)
        };
        Ok(self.finish(vector, similarities(matches.map_err(err)?), k))
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
        let _slot = self.slots.take();
        let n = self.candidates(k);
        if self.scans() {
            let all = self
                .index
                .exact_search(vector, self.index.size())
                .map_err(err)?;
            let mut hits = similarities(all);
            hits.retain(|(key, _)| keep(*key));
            hits.truncate(n);
            return Ok(self.finish(vector, hits, k));
        }
        let matches = self.index.filtered_search(vector, n, keep).map_err(err)?;
        Ok(self.finish(vector, similarities(matches), k))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A loaded index serves many more simultaneous searches than it has cores (a server
    /// runs searches on a large blocking pool): none fails for want of a search context.
    #[test]
    fn a_loaded_index_serves_many_searches_at_once() -> Result<(), StoreError> {
        let dim = 16;
        let vectors: Vec<f32> = (0..2000 * dim)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let options = AnnOptions::default();
        let tmp = tempfile::tempdir().map_err(|e| err(e.to_string()))?;
        let path = tmp.path().join(FILE);
        AnnIndex::build(&options, dim, &vectors)?.save(&path)?;
        let index = AnnIndex::open(&path, &options, dim)?;
        let failures = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for t in 0..48 {
                let (index, vectors, failures) = (&index, &vectors, &failures);
                scope.spawn(move || {
                    for q in 0..40 {
                        let row = (t * 40 + q) % 2000;
                        let v = &vectors[row * dim..(row + 1) * dim];
                        let found = index.search(v, 5);
                        let filtered = index.filtered_search(v, 5, |k| k % 2 == 0);
                        if found.is_err() || filtered.is_err() {
                            failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(failures.into_inner(), 0);
        Ok(())
    }
}
