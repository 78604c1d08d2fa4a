//! Folio's plain types and the traits at its seams.
//!
//! Everything here is cheap to compile and free of models, storage engines and HTTP: the other
//! crates meet through these types.
//!
//! - Content: [`Document`], [`Page`], [`Passage`], identified by [`DocId`] and [`PageKey`].
//! - Seams: [`Embedder`] (turns text into vectors), [`Route`] (one way of retrieving pages),
//!   [`Fuser`] (merges ranked lists), [`Reranker`] (re-orders the fused candidates).
//! - Results: [`Hit`] (one route's answer), [`RankedList`], [`FusedHit`] (keeps each route's
//!   rank as provenance).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod error;
pub use error::{EmbedError, RerankError, RetrieveError};

/// Identifies a document by its content: the first 16 hex digits of the SHA-256 of its bytes.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DocId(pub String);

impl DocId {
    /// Number of hex digits kept from the content hash.
    pub const LEN: usize = 16;

    /// Builds the id from a full hex content hash.
    pub fn from_content_hash(hex: &str) -> Self {
        DocId(hex.chars().take(Self::LEN).collect())
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One page of one document; `page` is 1-based. Pages are the unit that routes rank and that
/// fusion merges, so that text routes and (later) page-image routes can be fused.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PageKey {
    /// The document.
    pub doc_id: DocId,
    /// 1-based page number.
    pub page: u32,
}

impl fmt::Display for PageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.doc_id, self.page)
    }
}

/// A stored document.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// Content-derived id.
    pub doc_id: DocId,
    /// Path the document was indexed from (as given, made absolute).
    pub path: String,
    /// Full SHA-256 of the file's bytes, hex.
    pub content_hash: String,
    /// Number of pages in the PDF.
    pub pages: u32,
    /// File size in bytes.
    pub bytes: u64,
    /// Collection, tags and date, for filtering searches.
    #[serde(default, skip_serializing_if = "DocMeta::is_empty")]
    pub meta: DocMeta,
}

/// What searches can filter documents by, besides their id and path.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DocMeta {
    /// The collection the document was indexed into.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collection: Option<String>,
    /// Free-form tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The file's modification time, in seconds since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modified: Option<u64>,
}

impl DocMeta {
    /// True when nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == DocMeta::default()
    }
}

/// Which documents a search may return; every given condition must hold (an empty filter
/// keeps everything).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Filter {
    /// Only these documents.
    pub doc_ids: Vec<DocId>,
    /// Only documents of one of these collections.
    pub collections: Vec<String>,
    /// Only documents carrying every one of these tags.
    pub tags: Vec<String>,
    /// Only documents whose path starts with this.
    pub path_prefix: Option<String>,
    /// Only documents modified at or after this time (seconds since the Unix epoch).
    pub modified_after: Option<u64>,
    /// Only documents modified before this time (seconds since the Unix epoch).
    pub modified_before: Option<u64>,
}

impl Filter {
    /// True when the filter keeps every document.
    pub fn is_empty(&self) -> bool {
        *self == Filter::default()
    }

    /// Whether `doc` passes.
    pub fn keeps(&self, doc: &Document) -> bool {
        let m = &doc.meta;
        (self.doc_ids.is_empty() || self.doc_ids.contains(&doc.doc_id))
            && (self.collections.is_empty()
                || m.collection
                    .as_ref()
                    .is_some_and(|c| self.collections.contains(c)))
            && self.tags.iter().all(|t| m.tags.contains(t))
            && self
                .path_prefix
                .as_ref()
                .is_none_or(|p| doc.path.starts_with(p.as_str()))
            && self
                .modified_after
                .is_none_or(|t| m.modified.is_some_and(|d| d >= t))
            && self
                .modified_before
                .is_none_or(|t| m.modified.is_some_and(|d| d < t))
    }
}

/// The extracted text of one page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page {
    /// Which page.
    pub key: PageKey,
    /// Extracted text, in the extractor's reading order.
    pub text: String,
}

/// Store-local passage number; also the key of the passage's vector in the ANN index.
pub type PassageId = u64;

/// A span of a page's text that is indexed and embedded as one unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Passage {
    /// Store-local id.
    pub id: PassageId,
    /// The page it comes from.
    pub page: PageKey,
    /// Start offset in the page text, in Unicode scalar values (chars).
    pub char_start: u32,
    /// End offset (exclusive) in the page text, in chars.
    pub char_end: u32,
    /// The passage text.
    pub text: String,
    /// The regions of the page the passage covers (line boxes merged per block), for
    /// highlighting on the page image; empty when the page has no layout (text documents,
    /// indexes built before layouts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub boxes: Vec<BBox>,
}

/// A rectangle on a page, in fractions of the page's width and height (origin top-left), so
/// it can be drawn over the page image at any size.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BBox {
    /// Left edge, 0..=1.
    pub x0: f32,
    /// Top edge, 0..=1.
    pub y0: f32,
    /// Right edge, 0..=1.
    pub x1: f32,
    /// Bottom edge, 0..=1.
    pub y1: f32,
}

/// An embedding: one vector, or one vector per token for late interaction.
#[derive(Debug, Clone, PartialEq)]
pub enum Embedding {
    /// A single L2-normalised vector.
    Single(Vec<f32>),
    /// One vector per token (late interaction, MaxSim).
    Multi(Vec<Vec<f32>>),
}

impl Embedding {
    /// The token vectors, if this is a multi-vector embedding.
    pub fn as_multi(&self) -> Option<&[Vec<f32>]> {
        match self {
            Embedding::Single(_) => None,
            Embedding::Multi(v) => Some(v),
        }
    }

    /// The single vector, if this is one.
    pub fn as_single(&self) -> Option<&[f32]> {
        match self {
            Embedding::Single(v) => Some(v),
            Embedding::Multi(_) => None,
        }
    }
}

/// Whether an embedder gives one vector per input or one per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmbeddingKind {
    /// One vector per input.
    Single,
    /// One vector per token.
    Multi,
}

/// What an embedder is; stored with an index so that queries use the same model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbedderInfo {
    /// Model id, e.g. `sentence-transformers/all-MiniLM-L6-v2`.
    pub id: String,
    /// Vector width.
    pub dim: usize,
    /// Single or multi vector.
    pub kind: EmbeddingKind,
    /// Largest batch the embedder takes in one call.
    pub max_batch: usize,
    /// Inputs longer than this many tokens are truncated.
    pub max_tokens: usize,
}

/// A query as given to an embedder.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryInput {
    /// A text query.
    Text(String),
}

/// A document unit as given to an embedder.
#[derive(Debug, Clone, PartialEq)]
pub enum DocInput {
    /// A passage of text.
    Text(String),
}

/// Turns queries and documents into vectors. Synchronous and CPU/GPU bound: callers in async
/// code run it on a blocking worker.
pub trait Embedder: Send + Sync {
    /// What this embedder is.
    fn info(&self) -> &EmbedderInfo;
    /// Embeds queries; one embedding per input, in order.
    fn embed_queries(&self, queries: &[QueryInput]) -> Result<Vec<Embedding>, EmbedError>;
    /// Embeds document units; one embedding per input, in order.
    fn embed_documents(&self, docs: &[DocInput]) -> Result<Vec<Embedding>, EmbedError>;
}

/// A page image: 8-bit RGB pixels, row-major, no padding.
#[derive(Clone, PartialEq, Eq)]
pub struct PageImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` bytes.
    pub rgb: Vec<u8>,
}

impl std::fmt::Debug for PageImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PageImage({}x{})", self.width, self.height)
    }
}

/// A query for the page-image routes: text, an image, or both.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VisualQuery {
    /// The query text, if any.
    pub text: Option<String>,
    /// The query image, if any.
    pub image: Option<PageImage>,
}

/// Embeds page images, and the text and image queries that search them, into one space
/// (one vector per page, or one per token for late interaction).
pub trait PageEmbedder: Send + Sync {
    /// What this embedder is; `kind` says single or multi vector.
    fn info(&self) -> &EmbedderInfo;
    /// Embeds page images; one embedding per page, in order.
    fn embed_pages(&self, pages: &[PageImage]) -> Result<Vec<Embedding>, EmbedError>;
    /// Embeds queries; one embedding per query, in order.
    fn embed_visual_queries(&self, queries: &[VisualQuery]) -> Result<Vec<Embedding>, EmbedError>;
    /// Whether queries may carry an image (ColQwen2-style models take text queries only).
    fn accepts_image_queries(&self) -> bool {
        true
    }
}

/// A validated query, with what the routes need precomputed (the query embeddings).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PreparedQuery {
    /// The query text; empty for an image-only query.
    pub text: String,
    /// The query embedding from the index's text embedder, when a dense route runs.
    pub text_embedding: Option<Embedding>,
    /// The query (text and/or image) embedded by the index's page embedder, when the page
    /// route runs.
    pub page_embedding: Option<Embedding>,
    /// The query embedded by the index's late-interaction embedder, when the late route runs.
    pub late_embedding: Option<Embedding>,
    /// The documents the routes may return; `None`: all.
    pub allowed: Option<std::sync::Arc<std::collections::HashSet<DocId>>>,
}

/// One route's answer for one page.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The page.
    pub page: PageKey,
    /// The route's score (higher is better; scales differ between routes).
    pub score: f32,
    /// The passage that earned the page its place, for text routes.
    pub passage: Option<PassageId>,
}

/// What one search of a collection (or one route) found: hits, best first, and the parts of
/// the collection that did not answer (shards that failed or ran out of time), each with the
/// reason. A non-empty `missing` means the hits may lack some that a full answer would have.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Found {
    /// Hits, best first.
    pub hits: Vec<Hit>,
    /// `shard: reason` for each part that did not answer.
    pub missing: Vec<String>,
}

impl Found {
    /// A complete answer.
    pub fn complete(hits: Vec<Hit>) -> Self {
        Found {
            hits,
            missing: Vec::new(),
        }
    }
}

/// One route's hits, best first.
#[derive(Debug, Clone, PartialEq)]
pub struct RankedList {
    /// Route name, e.g. `bm25`.
    pub route: String,
    /// Hits, best first, one per page.
    pub hits: Vec<Hit>,
}

/// A page after fusion, with where it stood in each route.
#[derive(Debug, Clone, PartialEq)]
pub struct FusedHit {
    /// The page.
    pub page: PageKey,
    /// Fused score (higher is better).
    pub score: f64,
    /// 1-based rank of this page in each route that returned it.
    pub ranks: BTreeMap<String, usize>,
    /// The best passage for this page: from the route where the page ranked highest.
    pub passage: Option<PassageId>,
}

/// One way of retrieving pages for a query (BM25, dense passages, ...).
pub trait Route: Send + Sync {
    /// Stable name, used in provenance and in requests.
    fn name(&self) -> &str;
    /// The top `k` pages for the query, best first, at most one hit per page; with the parts
    /// of the collection that did not answer, if any.
    fn retrieve(&self, query: &PreparedQuery, k: usize) -> Result<Found, RetrieveError>;
    /// Whether this route can answer the query; routes that cannot are left out of it. Text
    /// routes need query text; embedding routes need their embedding.
    fn accepts(&self, query: &PreparedQuery) -> bool {
        !query.text.trim().is_empty()
    }
}

/// Merges several routes' ranked lists into one.
pub trait Fuser: Send + Sync {
    /// Fuses `lists` into at most `k` hits. Must be deterministic: equal scores are ordered by
    /// page key. Keeps each route's rank in [`FusedHit::ranks`].
    fn fuse(&self, lists: &[RankedList], k: usize) -> Vec<FusedHit>;
}

/// A fused hit with the text a re-ranker reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The fused hit.
    pub hit: FusedHit,
    /// Its passage text (or page text).
    pub text: String,
}

/// A re-ranker's verdict on one candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Reranked {
    /// Index into the candidate slice that was re-ranked.
    pub index: usize,
    /// Re-ranker score (higher is better).
    pub score: f64,
}

/// Limits a re-ranker must respect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RerankBudget {
    /// Re-rank at most this many candidates (the rest keep their fused order).
    pub max_candidates: usize,
    /// Give up after this long.
    pub time: Duration,
}

/// Re-orders the top fused candidates (an LLM or VLM ranker).
pub trait Reranker: Send + Sync {
    /// Stable name, e.g. `pointwise`.
    fn name(&self) -> &str;
    /// Scores the candidates; returns them best first.
    fn rerank(
        &self,
        query: &str,
        candidates: &[Candidate],
        budget: RerankBudget,
    ) -> Result<Vec<Reranked>, RerankError>;
}

/// Why a candidate looks manipulated.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suspicion {
    /// The detector that flagged it.
    pub detector: String,
    /// How strongly (detector-specific; higher is more suspicious).
    pub score: f64,
    /// What it found, e.g. the instruction-like phrases.
    pub reasons: Vec<String>,
}

/// Looks at a candidate's text for signs of manipulation.
pub trait Detector: Send + Sync {
    /// Stable name, reported in [`Suspicion::detector`].
    fn name(&self) -> &str;
    /// The verdict on `text` in one pass: a suspicion when it looks manipulated, and how
    /// suspicious it is on the detector's own scale, flagged or not (for ROC curves).
    fn assess(&self, text: &str) -> (Option<Suspicion>, f64);
    /// A suspicion when the text looks manipulated, else `None`.
    fn inspect(&self, text: &str) -> Option<Suspicion> {
        self.assess(text).0
    }
    /// How suspicious the text is, flagged or not.
    fn score(&self, text: &str) -> f64 {
        self.assess(text).1
    }
}

/// Bounds on a search request's `k`.
pub const MAX_K: usize = 1000;

/// How passages are cut from page text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkSettings {
    /// Target passage length in words.
    pub words: usize,
    /// Words shared by consecutive passages of a page.
    pub overlap: usize,
}

impl Default for ChunkSettings {
    fn default() -> Self {
        ChunkSettings {
            words: 120,
            overlap: 30,
        }
    }
}

#[cfg(feature = "testing")]
pub mod testing;
