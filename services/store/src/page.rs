//! The page route's files: one vector per page image, searched through an HNSW index.
//!
//! ```text
//! page/keys.jsonl    the page of each row
//!      vectors.f32   the vectors, little-endian, row-major
//!      ann.usearch   HNSW over the rows (key = row)
//! ```
//!
//! Pages whose image could not be rendered have no row.

use std::path::Path;

use folio_core::PageKey;

use crate::ann::{self, AnnIndex, AnnOptions};
use crate::{DocSet, StoreError, fsio, io_err};

pub(crate) const DIR: &str = "page";
const KEYS: &str = "keys.jsonl";
const VECTORS: &str = "vectors.f32";

/// Writes the route into the new directory `dir`: row `i` of `vectors` (width `dim`) is the
/// vector of `keys[i]`.
pub(crate) fn build(
    dir: &Path,
    options: &AnnOptions,
    dim: usize,
    keys: &[PageKey],
    vectors: &[f32],
) -> Result<(), StoreError> {
    if vectors.len() != keys.len() * dim {
        return Err(StoreError::Invalid(format!(
            "{} floats for {} page vectors of width {dim}",
            vectors.len(),
            keys.len()
        )));
    }
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    fsio::write_jsonl(&dir.join(KEYS), keys)?;
    fsio::write_f32(&dir.join(VECTORS), vectors)?;
    ann::build(&dir.join(ann::FILE), options, dim, vectors)
}

/// Reads the rows back: the page keys and their vectors (what the writer carries into the
/// next generation).
pub(crate) fn read_rows(dir: &Path, dim: usize) -> Result<(Vec<PageKey>, Vec<f32>), StoreError> {
    let keys: Vec<PageKey> = fsio::read_jsonl(&dir.join(KEYS))?;
    let vectors = fsio::read_f32(&dir.join(VECTORS), keys.len() * dim)?;
    Ok((keys, vectors))
}

/// The page route of one generation, in memory.
pub(crate) struct PageIndex {
    keys: Vec<PageKey>,
    ann: AnnIndex,
}

impl PageIndex {
    /// Opens the route in `dir`, which must hold `rows` vectors of width `dim`.
    pub(crate) fn open(
        dir: &Path,
        options: &AnnOptions,
        dim: usize,
        rows: usize,
    ) -> Result<Self, StoreError> {
        let keys_path = dir.join(KEYS);
        let keys: Vec<PageKey> = fsio::read_jsonl(&keys_path)?;
        let ann_path = dir.join(ann::FILE);
        let ann = AnnIndex::open(&ann_path, options, dim)?;
        for (path, found) in [(keys_path, keys.len()), (ann_path, ann.len())] {
            if found != rows {
                return Err(StoreError::Corrupt {
                    path,
                    message: format!("{found} page rows, the manifest says {rows}"),
                });
            }
        }
        let ann = if options.rescores() {
            ann.with_exact_rows(options, fsio::read_f32(&dir.join(VECTORS), rows * dim)?)?
        } else {
            ann
        };
        Ok(PageIndex { keys, ann })
    }

    /// The route's HNSW index.
    pub(crate) fn ann(&self) -> &AnnIndex {
        &self.ann
    }

    /// Nearest pages to an L2-normalised vector by cosine similarity, best first; with
    /// `keep`, only pages of those documents.
    pub(crate) fn search(
        &self,
        vector: &[f32],
        k: usize,
        keep: Option<&DocSet>,
    ) -> Result<Vec<(PageKey, f32)>, StoreError> {
        let hits = match keep {
            None => self.ann.search(vector, k)?,
            Some(keep) => self.ann.filtered_search(vector, k, |row| {
                usize::try_from(row)
                    .ok()
                    .and_then(|r| self.keys.get(r))
                    .is_some_and(|key| keep.contains(&key.doc_id))
            })?,
        };
        Ok(keyed(&self.keys, hits))
    }
}

/// Hits by row, as hits by page: `keys[row]` is the row's page.
pub(crate) fn keyed<R: TryInto<usize>>(
    keys: &[PageKey],
    hits: Vec<(R, f32)>,
) -> Vec<(PageKey, f32)> {
    hits.into_iter()
        .filter_map(|(row, score)| Some((keys.get(row.try_into().ok()?)?.clone(), score)))
        .collect()
}
