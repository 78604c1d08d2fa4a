//! The manifest: which generation is current, and how the index was built.

use std::path::{Path, PathBuf};

use folio_core::EmbedderInfo;
use serde::{Deserialize, Serialize};

use crate::ann::AnnOptions;
use crate::bm25::Bm25Options;
use crate::{StoreError, fsio, io_err};

/// On-disk format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
pub(crate) const FILE: &str = "MANIFEST.json";

/// A model one route of the index was built with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteModel {
    /// What the model is.
    pub embedder: EmbedderInfo,
    /// Directory it was loaded from, if local; queries load it from there by default.
    pub source: Option<String>,
}

impl RouteModel {
    /// Whether `other` embeds into the same space (same id and width).
    pub fn same_model(&self, other: &EmbedderInfo) -> bool {
        self.embedder.id == other.id && self.embedder.dim == other.dim
    }

    /// `id (dim-d)`, for messages.
    pub fn describe(&self) -> String {
        format!("{} ({}-d)", self.embedder.id, self.embedder.dim)
    }
}

/// The content of `MANIFEST.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// On-disk format version.
    pub format_version: u32,
    /// The current generation.
    pub generation: u64,
    /// The passage embedder the index was built with.
    pub embedder: EmbedderInfo,
    /// Directory the embedder was loaded from when the index was built, if local.
    pub embedder_source: Option<String>,
    /// Number of documents.
    pub documents: usize,
    /// Number of pages.
    pub pages: usize,
    /// Number of passages.
    pub passages: usize,
    /// The page route's model (one vector per page image), when the index has that route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<RouteModel>,
    /// The late-interaction route's model (token vectors per page image), when the index
    /// has that route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late: Option<RouteModel>,
    /// Pages with a page-route vector.
    #[serde(default)]
    pub page_vectors: usize,
    /// Pages with late-interaction token vectors.
    #[serde(default)]
    pub late_pages: usize,
    /// HNSW settings of the passage and page indexes.
    #[serde(default)]
    pub ann: AnnOptions,
    /// BM25 analyser and parameters.
    #[serde(default)]
    pub bm25: Bm25Options,
}

impl Manifest {
    /// Reads the manifest of `dir`; `None` when there is none yet.
    pub fn read(dir: &Path) -> Result<Option<Self>, StoreError> {
        let path = dir.join(FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        #[derive(Deserialize)]
        struct Versioned {
            format_version: u32,
        }
        let version: Versioned = serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if version.format_version != FORMAT_VERSION {
            return Err(StoreError::Version {
                dir: dir.to_path_buf(),
                found: version.format_version,
                expected: FORMAT_VERSION,
            });
        }
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                path,
                message: e.to_string(),
            })
    }

    /// Publishes this manifest atomically.
    pub(crate) fn publish(&self, dir: &Path) -> Result<(), StoreError> {
        let bytes =
            serde_json::to_vec_pretty(self).map_err(|e| StoreError::Invalid(e.to_string()))?;
        fsio::write_atomic(&dir.join(FILE), &bytes)
    }

    /// Directory of this manifest's generation.
    pub fn generation_dir(&self, dir: &Path) -> PathBuf {
        generation_dir(dir, self.generation)
    }
}

/// Directory of generation `generation`.
pub fn generation_dir(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("gen-{generation:06}"))
}

/// Parses a generation directory name.
pub(crate) fn parse_generation(name: &str) -> Option<u64> {
    name.strip_prefix("gen-")?.parse().ok()
}
