//! The `folio` command line: `index`, `search`, `serve`, `demo`, `eval` and `bench`.

mod bench;
mod geo;
mod store;

/// mimalloc keeps freed memory for reuse: model inference allocates and frees tens of MB per
/// layer, which glibc's allocator returns to the OS and faults back in every time (about 15%
/// of re-ranking time in `folio bench rerank`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use folio_core::{ChunkSettings, DocId, Embedder, EmbeddingKind, PageEmbedder, Reranker};
use folio_eval::{EvalOptions, Metric};
use folio_indexer::{Embedders, FileStatus, IndexReport, IndexSettings};
use folio_models::llm::{Llm, LoadOptions};
use folio_models::qwen2_vl::embed::{GME_PIXELS, VlEmbedder, VlHead, VlOptions};
use folio_models::qwen2_vl::image::PixelBounds;
use folio_models::{BertEmbedder, ModelSource};
use folio_rerank::RerankMode;
use folio_search::{Pipeline, SearchRequest, SearchResponse};
use folio_store::{
    AnnMetric, AnnOptions, AnnStorage, Bm25Analyzer, Bm25Options, CommitOutcome, IndexModels,
    Manifest, Store, StoreWriter,
};
use store::{StoreArgs, Target};
use tracing_subscriber::EnvFilter;

/// Folio: retrieval and ranking for visually rich PDFs.
#[derive(Parser)]
#[command(name = "folio", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Index PDF files and directories (recursively) into an index directory.
    Index(IndexArgs),
    /// Remove documents (by id or by the path they were indexed from) from every route.
    Delete(DeleteArgs),
    /// Search an index and print the fused hits.
    Search(SearchArgs),
    /// Serve the HTTP API over an index.
    Serve(ServeArgs),
    /// Index the bundled sample PDFs into a temporary index and answer the sample queries.
    Demo(DemoArgs),
    /// Offline evaluation.
    #[command(subcommand)]
    Eval(EvalCommand),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Extracts one PDF's text, or renders its pages, for `folio index` in a capped process
    /// (internal; the arguments are folio_indexer::isolate's).
    #[command(hide = true)]
    ExtractWorker {
        /// What to do and the PDF.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Re-ranker throughput and latency on a synthetic candidate list.
    Rerank(bench::rerank::RerankBenchArgs),
    /// Qwen2-VL page-embedding throughput on synthetic pages (CPU or CUDA).
    Embed(bench::embed::EmbedBenchArgs),
    /// HNSW build time, memory, recall@10 and QPS at several ef_search, next to faiss and
    /// hnswlib (--peer) on the same vectors.
    Ann(bench::ann::AnnBenchArgs),
    /// BM25 build time, index size, QPS and quality on a BEIR dataset, next to bm25s
    /// (--peer) on the same corpus and queries.
    Bm25(bench::bm25::Bm25BenchArgs),
    /// Text extraction and page rendering speed (pages/s) over a folder of PDFs, next to
    /// poppler's pdftotext and pdftoppm (--poppler) on the same files.
    Ingest(bench::ingest::IngestBenchArgs),
    /// Load test of a running `folio serve`: concurrent keep-alive clients searching in a
    /// closed loop; throughput, latency percentiles, errors and the server's peak RSS.
    Serve(bench::serve::ServeBenchArgs),
    /// How the embedded and PostgreSQL backends scale with corpus size: ingest rate, dense
    /// and lexical QPS and latency, dense recall@10, disk and memory per million passages.
    Scale(bench::scale::ScaleBenchArgs),
}

#[derive(Subcommand)]
enum EvalCommand {
    /// Score a TREC run against qrels with trec_eval's semantics.
    Metrics(MetricsArgs),
    /// Index a BEIR-layout dataset, run every route and the fusion, score and compare them.
    Retrieval(Box<RetrievalArgs>),
    /// Ranking-manipulation suite: attack an LLM ranker on catalogs or retrieval scenarios,
    /// with and without defenses; resumable, writes report.md, report.json and plots.
    Geo(Box<geo::GeoArgs>),
}

#[derive(Args)]
struct RetrievalArgs {
    /// Dataset directory: BEIR layout (corpus.jsonl, queries.jsonl, qrels/<split>.tsv), a
    /// folder of PDFs with queries.jsonl and qrels.tsv (like datasets/samples), or, with
    /// --layout, a Parquet dataset.
    #[arg(long)]
    dataset: PathBuf,
    /// Parquet layout of --dataset: vidore, vidore-beir, mmdocir or m2kr (their text side:
    /// OCR text, markdown or passages; page images need the page route).
    #[arg(long)]
    layout: Option<String>,
    /// Qrels split.
    #[arg(long, default_value = "test")]
    split: String,
    /// Output directory: runs/<system>.trec, report.json, report.md.
    #[arg(long)]
    out: PathBuf,
    /// Index directory; reused across runs (default: <out>/index).
    #[arg(long)]
    index: Option<PathBuf>,
    /// Routes to run: bm25, dense, page (needs a GME-style --page-embedder) and late (needs
    /// a ColQwen2-style one). With page or late, Parquet datasets are indexed with their page
    /// images and queries keep theirs.
    #[arg(long, default_value = "bm25,dense")]
    routes: String,
    /// Fusions to evaluate: rrf (k = 60) and/or weighted (min-max normalised scores, equal
    /// weights).
    #[arg(long, default_value = "rrf")]
    fusion: String,
    /// Comma-separated metrics; the first is the primary one (best system, significance).
    #[arg(long, default_value = "ndcg@10,recall@100,mrr@10,map,p@5")]
    metric: String,
    /// Documents retrieved per query and system.
    #[arg(long, default_value_t = 100)]
    depth: usize,
    /// Re-rankers to evaluate over the first fusion (systems `<fusion>+<re-ranker>`):
    /// pointwise and/or listwise.
    #[arg(long, value_delimiter = ',')]
    rerank: Vec<String>,
    /// Fused pages each re-ranker reads.
    #[arg(long, default_value_t = 20)]
    rerank_depth: usize,
    /// Ranking-manipulation defenses to evaluate on this clean data (what they cost): none,
    /// detect, harden, all. Each re-ranker runs under each (systems
    /// `<fusion>+<re-ranker>+<defense>`), and detect and all also run without re-ranker
    /// (`<fusion>+<defense>`). Detectors: the injection patterns, plus --perplexity-model and
    /// --injection-model when given.
    #[arg(long, value_delimiter = ',', default_value = "none")]
    defenses: Vec<String>,
    /// Evaluate only the first N queries (in query-file order) that have judgements: for
    /// slow systems such as LLM re-ranking on CPU.
    #[arg(long)]
    max_queries: Option<usize>,
    #[command(flatten)]
    ranker: RankerArgs,
    #[command(flatten)]
    embedder: EmbedderArg,
    #[command(flatten)]
    page_models: PageModelArgs,
}

#[derive(Args)]
struct MetricsArgs {
    /// Qrels: TREC (`qid 0 docid label`) or BEIR TSV (`query-id corpus-id score`).
    #[arg(long)]
    qrels: PathBuf,
    /// Run: TREC (`qid Q0 docid rank score tag`).
    #[arg(long)]
    run: PathBuf,
    /// Comma-separated metrics: ndcg, ndcg@k, map, map@k, recall@k, p@k, mrr, mrr@k, r-prec,
    /// bpref, success@k.
    #[arg(long, default_value = "ndcg@10,recall@100,mrr@10,map,p@5")]
    metric: String,
    /// Print one JSON object `{"mean": {...}, "per_query": {...}}` instead of a table.
    #[arg(long)]
    json: bool,
    /// Labels at or above this count as relevant for binary measures.
    #[arg(long, default_value_t = 1)]
    relevance_level: i64,
    /// Also count qrels queries missing from the run, as 0 (trec_eval -c).
    #[arg(long)]
    complete: bool,
}

#[derive(Args)]
struct EmbedderArg {
    /// Text embedder: a local HF model directory or an HF model id. Default: the index's own
    /// (for search), else models/all-MiniLM-L6-v2 (fetched by scripts/fetch-default-model.sh).
    #[arg(long, env = "FOLIO_EMBEDDER")]
    embedder: Option<String>,
}

#[derive(Args)]
struct PageModelArgs {
    /// Qwen2-VL page embedder, a model directory: a GME-style model feeds the `page` route
    /// (one vector a page image), a ColQwen2-style one (or its adapter directory) the `late`
    /// route (token vectors, MaxSim). The head follows the checkpoint (a `custom_text_proj`
    /// means ColQwen2); prefix `gme:` or `colqwen:` to choose. Give the flag twice for both.
    /// Default: the models the index was built with.
    #[arg(long = "page-embedder")]
    page_embedders: Vec<String>,
    /// Most visual tokens per image (28x28-pixel cells); larger images are scaled down.
    /// Default: the model's (GME: 1280).
    #[arg(long)]
    page_image_tokens: Option<usize>,
    /// Device for the page embedders: cpu, cuda or cuda:N (CUDA needs a build with
    /// `--features cuda`).
    #[arg(long, env = "FOLIO_DEVICE", default_value = "cpu")]
    device: String,
}

/// HNSW settings; given ones replace the index's own, and the graphs are rebuilt with them.
#[derive(Args)]
struct AnnArgs {
    /// Vector storage in the HNSW graphs: f32, f16 (half the memory) or i8 (a quarter).
    #[arg(long, value_parser = ["f32", "f16", "i8"])]
    ann_storage: Option<String>,
    /// Similarity: cosine or ip (inner product).
    #[arg(long, value_parser = ["cosine", "ip"])]
    ann_metric: Option<String>,
    /// HNSW graph degree M (2-256; default 16).
    #[arg(long)]
    hnsw_m: Option<usize>,
    /// HNSW ef_construction (default 128).
    #[arg(long)]
    ef_construction: Option<usize>,
    /// HNSW ef_search stored with the index (default 128); `search --ef-search` overrides it
    /// per run.
    #[arg(long)]
    ef_search: Option<usize>,
    /// With f16 or i8 storage, take this many times k candidates from the graph and score
    /// them again with the exact vectors, kept in memory (1-16; default 2; 1 turns it off).
    #[arg(long)]
    ann_rescore: Option<usize>,
}

impl AnnArgs {
    /// The index's options with the given ones replaced; `None` when none is given.
    fn options(&self, current: Option<&Manifest>) -> Option<AnnOptions> {
        let given = self.ann_storage.is_some()
            || self.ann_metric.is_some()
            || self.hnsw_m.is_some()
            || self.ef_construction.is_some()
            || self.ef_search.is_some()
            || self.ann_rescore.is_some();
        if !given {
            return None;
        }
        let mut o = current.map(|m| m.ann).unwrap_or_default();
        match self.ann_storage.as_deref() {
            Some("f16") => o.storage = AnnStorage::F16,
            Some("i8") => o.storage = AnnStorage::I8,
            Some(_) => o.storage = AnnStorage::F32,
            None => {}
        }
        match self.ann_metric.as_deref() {
            Some("ip") => o.metric = AnnMetric::InnerProduct,
            Some(_) => o.metric = AnnMetric::Cosine,
            None => {}
        }
        o.m = self.hnsw_m.unwrap_or(o.m);
        o.ef_construction = self.ef_construction.unwrap_or(o.ef_construction);
        o.ef_search = self.ef_search.unwrap_or(o.ef_search);
        o.rescore = self.ann_rescore.unwrap_or(o.rescore);
        Some(o)
    }
}

/// BM25 settings; given ones replace the index's own.
#[derive(Args)]
struct Bm25Args {
    /// BM25 analyser: english (Snowball stemming, the default), plain (lower-cased words, no
    /// stemming) or multilingual (no stemming, accents folded, Chinese, Japanese and Korean
    /// text cut into character pairs).
    #[arg(long, value_parser = ["english", "plain", "multilingual"])]
    bm25_analyzer: Option<String>,
    /// BM25 k1, term-frequency saturation (0-100; default 1.2).
    #[arg(long)]
    bm25_k1: Option<f32>,
    /// BM25 b, length normalisation (0-1; default 0.75).
    #[arg(long)]
    bm25_b: Option<f32>,
}

impl Bm25Args {
    /// The index's options with the given ones replaced; `None` when none is given.
    fn options(&self, current: Option<&Manifest>) -> Result<Option<Bm25Options>> {
        if self.bm25_analyzer.is_none() && self.bm25_k1.is_none() && self.bm25_b.is_none() {
            return Ok(None);
        }
        let mut o = current.map(|m| m.bm25).unwrap_or_default();
        if let Some(name) = &self.bm25_analyzer {
            o.analyzer = Bm25Analyzer::parse(name)?;
        }
        o.k1 = self.bm25_k1.unwrap_or(o.k1);
        o.b = self.bm25_b.unwrap_or(o.b);
        o.validate()?;
        Ok(Some(o))
    }
}

#[derive(Args)]
struct IndexArgs {
    /// PDF files or directories.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// The collection (created if missing).
    #[command(flatten)]
    store: StoreArgs,
    /// Write the per-file report as JSON to this file.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Passage length in words.
    #[arg(long, default_value_t = ChunkSettings::default().words)]
    passage_words: usize,
    /// Words shared by consecutive passages.
    #[arg(long, default_value_t = ChunkSettings::default().overlap)]
    passage_overlap: usize,
    /// Refuse files larger than this many bytes.
    #[arg(long, default_value_t = folio_indexer::DEFAULT_MAX_FILE_BYTES)]
    max_file_bytes: u64,
    /// Pages are rendered at this resolution (stored page images, page embedders).
    #[arg(long, default_value_t = folio_indexer::render::RenderSettings::default().dpi)]
    render_dpi: f32,
    /// Do not store page images and thumbnails next to the index (pages are then rendered
    /// only for page embedders).
    #[arg(long)]
    no_page_images: bool,
    /// Put the documents of this run in a collection (searches can filter by it).
    #[arg(long)]
    collection: Option<String>,
    /// Tag the documents of this run (repeatable; searches can filter by tags).
    #[arg(long = "tag")]
    tags: Vec<String>,
    #[command(flatten)]
    isolation: IsolationArgs,
    #[command(flatten)]
    ann: AnnArgs,
    #[command(flatten)]
    bm25: Bm25Args,
    #[command(flatten)]
    embedder: EmbedderArg,
    #[command(flatten)]
    page_models: PageModelArgs,
}

#[derive(Args)]
struct RankerArgs {
    /// LLM for the pointwise and listwise re-rankers: a .gguf file, a directory with one, an
    /// HF model directory or id (default: models/SmolLM2-135M-Instruct-GGUF when present).
    #[arg(long, env = "FOLIO_RANKER")]
    ranker: Option<String>,
    /// Pointwise prompt: built-in name (yes-no-v1, graded-v1) or a JSON template file.
    #[arg(long, default_value = folio_rerank::prompt::DEFAULT_POINTWISE)]
    pointwise_prompt: String,
    /// Listwise prompt: built-in name (permutation-v1) or a JSON template file.
    #[arg(long, default_value = folio_rerank::prompt::DEFAULT_LISTWISE)]
    listwise_prompt: String,
    /// Pointwise prompt under the harden defense (candidate text fenced as data).
    #[arg(long, default_value = folio_rerank::prompt::HARDENED_POINTWISE)]
    hardened_pointwise_prompt: String,
    /// Listwise prompt under the harden defense.
    #[arg(long, default_value = folio_rerank::prompt::HARDENED_LISTWISE)]
    hardened_listwise_prompt: String,
    /// What happens to a candidate the detect defense flags: flag (keep its place), demote
    /// (below the unflagged ones) or drop.
    #[arg(long, default_value = "demote")]
    defense_policy: folio_search::DefensePolicy,
    /// Language model of the windowed-perplexity detector (the detect defense): a .gguf
    /// file, a directory with one, or an HF model directory. Without it, detect runs the
    /// injection patterns only.
    #[arg(long)]
    perplexity_model: Option<String>,
    /// Windowed log-perplexity (nats) above which that detector flags a passage.
    #[arg(long, default_value_t = folio_rerank::PerplexitySettings::default().threshold)]
    perplexity_threshold: f64,
    /// Chat model of the LLM injection check (the detect defense): a .gguf file, a directory
    /// with one, or an HF model directory. It asks the model whether each passage gives
    /// instructions to an AI.
    #[arg(long)]
    injection_model: Option<String>,
    /// Probability of "yes" at or above which the injection check flags a passage.
    #[arg(long, default_value_t = folio_rerank::InjectionSettings::default().threshold)]
    injection_threshold: f64,
}

impl Default for RankerArgs {
    /// The default ranker model and prompts, as the flags default to.
    fn default() -> Self {
        RankerArgs {
            ranker: None,
            pointwise_prompt: folio_rerank::prompt::DEFAULT_POINTWISE.into(),
            listwise_prompt: folio_rerank::prompt::DEFAULT_LISTWISE.into(),
            hardened_pointwise_prompt: folio_rerank::prompt::HARDENED_POINTWISE.into(),
            hardened_listwise_prompt: folio_rerank::prompt::HARDENED_LISTWISE.into(),
            defense_policy: folio_search::DefensePolicy::default(),
            perplexity_model: None,
            perplexity_threshold: folio_rerank::PerplexitySettings::default().threshold,
            injection_model: None,
            injection_threshold: folio_rerank::InjectionSettings::default().threshold,
        }
    }
}

#[derive(Args)]
struct RerankArgs {
    /// Re-ranking stage: none, pointwise, listwise or vlm.
    #[arg(long, default_value = "none")]
    rerank: String,
    /// Fused pages the re-ranker reads.
    #[arg(long, default_value_t = 20)]
    rerank_depth: usize,
    /// Re-ranker time budget in milliseconds (past it: fused order, marked degraded).
    #[arg(long, default_value_t = 30_000)]
    rerank_budget_ms: u64,
    /// Ranking-manipulation defense: none, detect (flag instruction-like passages), harden
    /// (hardened re-ranker prompt, damped re-ranking) or all.
    #[arg(long, default_value = "none")]
    defense: String,
    #[command(flatten)]
    ranker: RankerArgs,
}

impl RerankArgs {
    fn request(&self, query: String, k: usize) -> SearchRequest {
        let mut r = SearchRequest::new(query, k);
        r.rerank = self.rerank.clone();
        r.rerank_depth = self.rerank_depth;
        r.rerank_budget_ms = self.rerank_budget_ms;
        r.defense = self.defense.clone();
        r
    }
}

#[derive(Args)]
struct DeleteArgs {
    /// Document ids (16 hex digits, as search prints them) or indexed file paths.
    #[arg(required = true)]
    documents: Vec<String>,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args)]
struct SearchArgs {
    /// The query text (may be left out when --image is given).
    query: Option<String>,
    /// A query image (PNG or JPEG), searched by the page-image routes.
    #[arg(long)]
    image: Option<PathBuf>,
    /// HNSW ef_search for this search (default: the index's).
    #[arg(long)]
    ef_search: Option<usize>,
    #[command(flatten)]
    filter: FilterArgs,
    #[command(flatten)]
    store: StoreArgs,
    /// Number of pages to return.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    embedder: EmbedderArg,
    #[command(flatten)]
    page_models: PageModelArgs,
    #[command(flatten)]
    rerank: RerankArgs,
}

/// Limits a search to some documents; every condition given must hold.
#[derive(Args)]
struct FilterArgs {
    /// Only documents of this collection (repeatable: any of them).
    #[arg(long = "in-collection")]
    collections: Vec<String>,
    /// Only documents with this tag (repeatable: all of them).
    #[arg(long = "with-tag")]
    tags: Vec<String>,
    /// Only documents whose indexed path starts with this.
    #[arg(long)]
    path_prefix: Option<String>,
    /// Only these documents, by id (repeatable).
    #[arg(long = "doc")]
    doc_ids: Vec<String>,
}

impl FilterArgs {
    fn filter(&self) -> Option<folio_core::Filter> {
        let f = folio_core::Filter {
            doc_ids: self.doc_ids.iter().map(|d| DocId(d.clone())).collect(),
            collections: self.collections.clone(),
            tags: self.tags.clone(),
            path_prefix: self.path_prefix.clone(),
            ..Default::default()
        };
        (!f.is_empty()).then_some(f)
    }
}

#[derive(Args)]
struct ServeArgs {
    /// The collection. An embedded index is created empty (with the text embedder and any
    /// page embedders given) when missing, so documents can be uploaded; a database is
    /// served read-only (write it with `folio index --store`).
    #[command(flatten)]
    store: StoreArgs,
    /// Address to listen on.
    #[arg(long, env = "FOLIO_ADDR", default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Admin API keys (comma-separated, 16+ characters each): may upload and delete.
    #[arg(
        long = "admin-key",
        env = "FOLIO_ADMIN_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    admin_keys: Vec<String>,
    /// Search API keys (comma-separated, 16+ characters each): may search and read. With no
    /// key at all the API is open.
    #[arg(
        long = "search-key",
        env = "FOLIO_SEARCH_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    search_keys: Vec<String>,
    /// Server-side folder that `POST /v1/documents` may index by path (off by default).
    #[arg(long, env = "FOLIO_INGEST_ROOT")]
    ingest_root: Option<PathBuf>,
    /// Query node: serve an existing index that another process writes (`folio index`, an
    /// indexer job, a writable server on a shared volume), picking up its new generations;
    /// write nothing (no uploads, deletes or data directory), so the index may be mounted
    /// read-only and any number of nodes may serve it.
    #[arg(long, env = "FOLIO_READ_ONLY", conflicts_with_all = ["ingest_root", "data_dir"])]
    read_only: bool,
    /// Where ingestion tasks and uploaded PDFs are kept (default: <index>/service). A server
    /// on a database (or shards) accepts uploads and deletes only when given one; without
    /// it, it is a stateless read-only query node.
    #[arg(long, env = "FOLIO_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Largest upload request, in MiB.
    #[arg(long, env = "FOLIO_MAX_UPLOAD_MB", default_value_t = 512)]
    max_upload_mb: usize,
    /// Time limit of one request, in seconds.
    #[arg(long, env = "FOLIO_REQUEST_TIMEOUT", default_value_t = 60)]
    request_timeout: u64,
    /// Requests in flight beyond which the server answers 429 (retry-after).
    #[arg(long, env = "FOLIO_MAX_CONCURRENT", default_value_t = 256)]
    max_concurrent: usize,
    /// Searches run at once, the others queuing in order of arrival; 0: no limit. Default:
    /// twice the CPUs on an embedded index, no limit on a database or shards.
    #[arg(long, env = "FOLIO_SEARCH_THREADS")]
    search_threads: Option<usize>,
    /// Text queries whose embeddings are kept for reuse (a repeated query skips the model);
    /// 0 turns the cache off.
    #[arg(long, env = "FOLIO_QUERY_CACHE", default_value_t = 10_000)]
    query_cache: usize,
    /// Origins allowed to call the API from a browser (CORS), comma-separated; `*` for any.
    #[arg(long, env = "FOLIO_CORS_ORIGINS", value_delimiter = ',')]
    cors_origin: Vec<String>,
    #[command(flatten)]
    embedder: EmbedderArg,
    #[command(flatten)]
    page_models: PageModelArgs,
    #[command(flatten)]
    ranker: RankerArgs,
    #[command(flatten)]
    isolation: IsolationArgs,
}

/// How each PDF's text is extracted and its pages rendered: in worker processes with
/// limits, or in-process.
#[derive(Args)]
struct IsolationArgs {
    /// Seconds one PDF's text extraction may take, in a worker process; its page rendering
    /// (in another) gets as long again. 0 extracts and renders in-process, without time or
    /// memory limits.
    #[arg(long, default_value_t = 120.0)]
    file_time_limit: f64,
    /// MiB of memory one PDF's text extraction, or page rendering, may use.
    #[arg(long, default_value_t = 4096)]
    file_memory_limit: u64,
}

impl IsolationArgs {
    fn isolation(&self) -> Result<Option<folio_indexer::isolate::Isolation>> {
        if self.file_time_limit <= 0.0 {
            return Ok(None);
        }
        Ok(Some(folio_indexer::isolate::Isolation {
            program: std::env::current_exe().context("locating the folio binary")?,
            args: vec!["extract-worker".into()],
            time_limit: std::time::Duration::from_secs_f64(self.file_time_limit),
            memory_limit: self.file_memory_limit.saturating_mul(1024 * 1024),
        }))
    }
}

#[derive(Args)]
struct DemoArgs {
    /// Keep the demo index in this directory instead of a temporary one.
    #[arg(long)]
    index: Option<PathBuf>,
    /// Directory with the sample PDFs, queries.jsonl and qrels.tsv (default: datasets/samples).
    #[arg(long)]
    samples: Option<PathBuf>,
    /// Hits shown per query.
    #[arg(long, default_value_t = 3)]
    k: usize,
    /// Skip the LLM re-ranking example at the end.
    #[arg(long)]
    no_rerank: bool,
    #[command(flatten)]
    embedder: EmbedderArg,
}

/// A reader that stops early (`folio eval metrics ... | head`) closes our stdout: the next
/// print fails with a broken pipe, which `println!` turns into a panic. Exit quietly instead,
/// with the status a shell gives a process killed by SIGPIPE (128 + 13), as other Unix
/// tools do.
fn exit_quietly_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

/// Fixes `RAYON_NUM_THREADS`, when unset, to the thread count candle would pick for its CPU
/// kernels (the physical cores). Unset, candle works that count out again before every
/// parallel operation, reading `/proc/cpuinfo` each time: about 50 reads for one MiniLM query,
/// a few milliseconds of system time. The variable also sizes rayon's global pool.
fn fix_cpu_thread_count() {
    if std::env::var_os("RAYON_NUM_THREADS").is_some() {
        return;
    }
    let threads = folio_models::candle::utils::get_num_threads();
    // SAFETY: called first in `main`, before the process starts any thread, so nothing can be
    // reading the environment at the same time.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
}

fn main() -> ExitCode {
    fix_cpu_thread_count();
    exit_quietly_on_broken_pipe();
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Index(a) => index(a),
        Command::Delete(a) => delete(a),
        Command::Search(a) => search(a).map(|()| ExitCode::SUCCESS),
        Command::Serve(a) => serve(a).map(|()| ExitCode::SUCCESS),
        Command::Demo(a) => demo(a).map(|()| ExitCode::SUCCESS),
        Command::Eval(EvalCommand::Metrics(a)) => eval_metrics(a).map(|()| ExitCode::SUCCESS),
        Command::Eval(EvalCommand::Retrieval(a)) => eval_retrieval(*a).map(|()| ExitCode::SUCCESS),
        Command::Eval(EvalCommand::Geo(a)) => geo::eval_geo(*a).map(|()| ExitCode::SUCCESS),
        Command::ExtractWorker { args } => {
            return ExitCode::from(
                u8::try_from(folio_indexer::isolate::worker_main(&args)).unwrap_or(1),
            );
        }
        Command::Bench(BenchCommand::Rerank(a)) => {
            bench::rerank::rerank(a, default_ranker_dir()).map(|()| ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Embed(a)) => {
            bench::embed::embed(a).map(|()| ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Ann(a)) => bench::ann::ann(a).map(|()| ExitCode::SUCCESS),
        Command::Bench(BenchCommand::Bm25(a)) => bench::bm25::bm25(a).map(|()| ExitCode::SUCCESS),
        Command::Bench(BenchCommand::Ingest(a)) => {
            bench::ingest::ingest(a).map(|()| ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Serve(a)) => {
            bench::serve::serve(a).map(|()| ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Scale(a)) => {
            bench::scale::scale(a).map(|()| ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The default model directory: ./models/all-MiniLM-L6-v2, else the one in this source tree.
fn default_model_dir() -> Option<PathBuf> {
    let local = PathBuf::from("models/all-MiniLM-L6-v2");
    let tree = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2");
    [local, tree].into_iter().find(|p| p.is_dir())
}

/// Loads the text embedder: the given reference, else the index's recorded source, else the
/// default model directory.
fn load_embedder(
    reference: Option<String>,
    recorded: Option<&IndexModels>,
) -> Result<(Arc<BertEmbedder>, ModelSource)> {
    let reference = match reference {
        Some(r) => r,
        None => recorded
            .and_then(|m| m.text.source.clone())
            .filter(|s| Path::new(s).is_dir())
            .or_else(|| default_model_dir().map(|p| p.display().to_string()))
            .context(
                "no text embedder: the default model is missing. Run \
                 scripts/fetch-default-model.sh, or pass --embedder <dir|hf-id>",
            )?,
    };
    let source = folio_models::resolve_model(&reference)?;
    let embedder = BertEmbedder::load(&source, &folio_models::default_device())
        .with_context(|| format!("loading text embedder {reference}"))?;
    Ok((Arc::new(embedder), source))
}

/// A loaded page embedder and the directory it came from.
type LoadedPageModel = (Arc<VlEmbedder>, String);

/// Loads the page embedders: those given, else (when `recorded` is given) the ones the
/// collection was built with. At most one single-vector and one multi-vector model. With `strict`,
/// a recorded model that cannot be loaded is an error; otherwise its route is left out with a
/// warning (searching still works on the other routes).
fn load_page_embedders(
    args: &PageModelArgs,
    recorded: Option<&IndexModels>,
    strict: bool,
) -> Result<(Option<LoadedPageModel>, Option<LoadedPageModel>)> {
    let given = !args.page_embedders.is_empty();
    // (head, model directory or id): as given, else as the index recorded them.
    let references: Vec<(Option<VlHead>, String)> = if given {
        args.page_embedders
            .iter()
            .map(|r| match r.split_once(':') {
                Some(("gme", path)) => (Some(VlHead::Gme), path.to_string()),
                Some(("colqwen", path)) => (Some(VlHead::ColQwen), path.to_string()),
                _ => (None, r.clone()),
            })
            .collect()
    } else {
        recorded
            .into_iter()
            .flat_map(|m| [&m.page, &m.late])
            .flatten()
            .filter_map(|r| {
                let head = match r.embedder.kind {
                    EmbeddingKind::Single => VlHead::Gme,
                    EmbeddingKind::Multi => VlHead::ColQwen,
                };
                Some((Some(head), r.source.clone()?))
            })
            .collect()
    };
    let (mut page, mut late) = (None, None);
    if references.is_empty() {
        return Ok((page, late));
    }
    let device = folio_models::device(&args.device)?;
    for (head, reference) in references {
        let pixels = args.page_image_tokens.map(|tokens| {
            let cell = 28 * 28;
            PixelBounds {
                min_pixels: (tokens * cell).min(GME_PIXELS.min_pixels),
                max_pixels: tokens.max(1) * cell,
            }
        });
        let loaded = folio_models::resolve_model(&reference)
            .map_err(anyhow::Error::from)
            .and_then(|source| {
                let options = VlOptions {
                    head,
                    pixels,
                    dtype: folio_models::default_dtype(&device),
                };
                let model = VlEmbedder::load(&source.dir, options, &device)?;
                Ok((Arc::new(model), source.dir.display().to_string()))
            })
            .with_context(|| format!("loading page embedder {reference}"));
        let (model, dir) = match loaded {
            Ok(m) => m,
            Err(e) if !(strict || given) => {
                eprintln!("warning: {e:#}; its route is left out");
                continue;
            }
            Err(e) => return Err(e),
        };
        let slot = match model.info().kind {
            EmbeddingKind::Single => &mut page,
            EmbeddingKind::Multi => &mut late,
        };
        if slot.is_some() {
            bail!(
                "two {} page embedders given; give at most one single-vector (GME-style) and \
                 one multi-vector (ColQwen2-style) model",
                if model.info().kind == EmbeddingKind::Single {
                    "single-vector"
                } else {
                    "multi-vector"
                }
            );
        }
        *slot = Some((model, dir));
    }
    Ok((page, late))
}

fn index(args: IndexArgs) -> Result<ExitCode> {
    let target = args.store.target()?;
    // Options first: a refused one is named before any database is reached.
    let (ann, bm25) = match &target {
        Target::Embedded(dir) => {
            let current = Manifest::read(dir)?;
            (
                args.ann.options(current.as_ref()),
                args.bm25.options(current.as_ref())?,
            )
        }
        _ if target.has_database() && args.ann.options(None).is_some() => bail!(
            "the --ann-*, --hnsw-m, --ef-* options shape the embedded store's index; \
             PostgreSQL builds its HNSW indexes with m = 16, ef_construction = 128"
        ),
        _ if target.has_database() && args.bm25.options(None)?.is_some() => bail!(
            "the --bm25-* options shape the embedded store's index; PostgreSQL scores BM25 \
             over its 'english' text search configuration with k1 = 1.2, b = 0.75"
        ),
        _ => (args.ann.options(None), args.bm25.options(None)?),
    };
    let existing = target.recorded_models()?;
    let (embedder, source) = load_embedder(args.embedder.embedder, existing.as_ref())?;
    let (page, late) = load_page_embedders(&args.page_models, existing.as_ref(), true)?;
    let (files, mut missing) = folio_indexer::collect_pdfs(&args.inputs);
    if files.is_empty() && missing.is_empty() {
        bail!("no PDF files found in the given inputs");
    }
    let settings = IndexSettings {
        chunk: ChunkSettings {
            words: args.passage_words,
            overlap: args.passage_overlap,
        },
        max_file_bytes: args.max_file_bytes,
        progress: true,
        render: folio_indexer::render::RenderSettings {
            dpi: args.render_dpi,
            ..Default::default()
        },
        ann,
        bm25,
        page_images: !args.no_page_images,
        collection: args.collection.clone(),
        tags: args.tags.clone(),
        isolation: args.isolation.isolation()?,
        observer: None,
    };
    let text_source = source.dir.display().to_string();
    fn as_model(m: &Option<LoadedPageModel>) -> Option<(&dyn PageEmbedder, Option<&str>)> {
        m.as_ref()
            .map(|(e, dir)| (e.as_ref() as &dyn PageEmbedder, Some(dir.as_str())))
    }
    let models = Embedders {
        text: embedder.as_ref(),
        text_source: Some(&text_source),
        page: as_model(&page),
        late: as_model(&late),
    };
    let writer = target.writer(&models.models(), ann, bm25)?;
    let mut report = folio_indexer::index_files_into(writer, &files, &models, &settings)?;
    report.files.append(&mut missing);
    print_report(&report);
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("writing report {}", path.display()))?;
    }
    Ok(if report.count(FileStatus::Failed) > 0 {
        // Partial success: the rest is indexed, but the caller should look at the report.
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// Removes documents (the embedded store publishes a new generation; a database removes
/// each at once); exit 2 when some were not found (the others are removed), 1 when none was.
fn delete(args: DeleteArgs) -> Result<ExitCode> {
    // Deleting needs no model: the writer takes the collection's own.
    let mut writer = args.store.target()?.existing_writer()?;
    let mut missing = 0;
    for target in &args.documents {
        let canonical = std::fs::canonicalize(target)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| target.clone());
        let mut found = writer.document(&DocId(target.clone()))?;
        if found.is_none() {
            found = writer.find_by_path(&canonical)?;
        }
        if found.is_none() {
            found = writer.find_by_path(target)?;
        }
        match found {
            Some(doc) if writer.remove(&doc.doc_id)? => println!(
                "removed    {} ({}, {} pages)",
                doc.path, doc.doc_id, doc.pages
            ),
            _ => {
                missing += 1;
                println!("not found  {target}: no indexed document has this id or path");
            }
        }
    }
    let removed = args.documents.len() - missing;
    match writer.commit()? {
        CommitOutcome::Published { generation } => {
            println!("{removed} removed, {missing} not found; generation {generation}")
        }
        CommitOutcome::Unchanged => println!("{removed} removed, {missing} not found"),
    }
    Ok(match (removed, missing) {
        (_, 0) => ExitCode::SUCCESS,
        (0, _) => ExitCode::FAILURE,
        _ => ExitCode::from(2),
    })
}

fn print_report(report: &IndexReport) {
    for f in &report.files {
        match f.status {
            FileStatus::Indexed => {
                println!("indexed    {} ({} pages)", f.path, f.pages.unwrap_or(0))
            }
            FileStatus::Unchanged => println!("unchanged  {}", f.path),
            FileStatus::Failed => println!(
                "failed     {}: {}",
                f.path,
                f.reason.as_deref().unwrap_or("unknown reason")
            ),
        }
    }
    let rate = if report.seconds > 0.0 {
        report.pages_indexed as f64 / report.seconds
    } else {
        0.0
    };
    println!(
        "{} indexed, {} unchanged, {} failed; {} pages, {} passages in {:.1} s ({:.1} pages/s){}",
        report.count(FileStatus::Indexed),
        report.count(FileStatus::Unchanged),
        report.count(FileStatus::Failed),
        report.pages_indexed,
        report.passages_indexed,
        report.seconds,
        rate,
        report
            .generation
            .map(|g| format!("; generation {g}"))
            .unwrap_or_default()
    );
}

/// Opens a collection with its text embedder and the page embedders of its page-image routes.
fn open_pipeline(
    store: &StoreArgs,
    embedder: Option<String>,
    page_models: &PageModelArgs,
) -> Result<Pipeline> {
    let collection = store.open()?;
    let models = collection.models();
    let (embedder, _) = load_embedder(embedder, Some(&models))?;
    let (page, late) = load_page_embedders(page_models, Some(&models), false)?;
    let embedder: Arc<dyn Embedder> = embedder;
    let mut pipeline = Pipeline::new(collection, Some(embedder))?;
    for (model, _) in [page, late].into_iter().flatten() {
        pipeline.add_page_embedder(model)?;
    }
    Ok(pipeline)
}

/// The default ranker: ./models/SmolLM2-135M-Instruct-GGUF, else the one in this source tree.
fn default_ranker_dir() -> Option<PathBuf> {
    let name = "models/SmolLM2-135M-Instruct-GGUF";
    let local = PathBuf::from(name);
    let tree = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(name);
    [local, tree].into_iter().find(|p| p.is_dir())
}

/// Loads the ranker LLM and builds the re-rankers named in `modes`.
/// A re-ranker under the name requests use, and its twin with the hardened prompt.
struct LoadedReranker {
    name: &'static str,
    plain: Arc<dyn Reranker>,
    hardened: Arc<dyn Reranker>,
}

fn load_rerankers(args: &RankerArgs, modes: &[RerankMode]) -> Result<Vec<LoadedReranker>> {
    let reference = match &args.ranker {
        Some(r) => r.clone(),
        None => default_ranker_dir()
            .map(|p| p.display().to_string())
            .context(
                "re-ranking needs an LLM: pass --ranker <gguf|dir|hf-id>, or run \
                 scripts/fetch-ranker-model.sh for the default SmolLM2",
            )?,
    };
    let llm = Arc::new(
        Llm::load(
            &reference,
            LoadOptions::default(),
            &folio_models::default_device(),
        )
        .with_context(|| format!("loading ranker {reference}"))?,
    );
    let mut out = Vec::new();
    for &mode in modes {
        let (name, prompt, hardened) = match mode {
            RerankMode::Pointwise => (
                "pointwise",
                &args.pointwise_prompt,
                &args.hardened_pointwise_prompt,
            ),
            RerankMode::Listwise => (
                "listwise",
                &args.listwise_prompt,
                &args.hardened_listwise_prompt,
            ),
            RerankMode::Vlm => bail!(folio_rerank::VLM_UNAVAILABLE),
            RerankMode::None => continue,
        };
        let build = |prompt: &str| folio_rerank::build_reranker(mode, llm.clone(), Some(prompt));
        if let (Some(plain), Some(hardened)) = (build(prompt)?, build(hardened)?) {
            out.push(LoadedReranker {
                name,
                plain,
                hardened,
            });
        }
    }
    Ok(out)
}

/// The detect defense's model-based detectors that `args` ask for: windowed perplexity
/// (`--perplexity-model`) and the LLM injection check (`--injection-model`).
fn model_detectors(args: &RankerArgs) -> Result<Vec<Arc<dyn folio_search::Detector>>> {
    let load = |reference: &str, what: &str| -> Result<Arc<Llm>> {
        let llm = Llm::load(
            reference,
            LoadOptions::default(),
            &folio_models::default_device(),
        )
        .with_context(|| format!("loading the {what}'s model {reference}"))?;
        Ok(Arc::new(llm))
    };
    let mut out: Vec<Arc<dyn folio_search::Detector>> = Vec::new();
    if let Some(reference) = &args.perplexity_model {
        let settings = folio_rerank::PerplexitySettings {
            threshold: args.perplexity_threshold,
            ..Default::default()
        };
        let llm = load(reference, "perplexity detector")?;
        out.push(Arc::new(folio_rerank::PerplexityDetector::new(
            llm, settings,
        )?));
    }
    if let Some(reference) = &args.injection_model {
        let settings = folio_rerank::InjectionSettings {
            threshold: args.injection_threshold,
            ..Default::default()
        };
        let llm = load(reference, "injection check")?;
        out.push(Arc::new(folio_rerank::InjectionJudge::new(llm, settings)?));
    }
    Ok(out)
}

/// Registers the pointwise and listwise re-rankers on `pipeline` when a ranker model is given
/// (or `needed`); otherwise records why they are unavailable. The vlm re-ranker is always
/// unavailable, with its reason.
fn attach_rerankers(pipeline: &mut Pipeline, args: &RankerArgs, needed: bool) -> Result<()> {
    pipeline.set_defense_policy(args.defense_policy);
    for d in model_detectors(args)? {
        pipeline.add_detector(d);
    }
    pipeline.add_unavailable_reranker("vlm", folio_rerank::VLM_UNAVAILABLE);
    if args.ranker.is_none() && !needed {
        for name in ["pointwise", "listwise"] {
            pipeline.add_unavailable_reranker(name, "no ranker model loaded (start with --ranker)");
        }
        return Ok(());
    }
    for r in load_rerankers(args, &[RerankMode::Pointwise, RerankMode::Listwise])? {
        pipeline.add_reranker(r.name, r.plain);
        pipeline.add_hardened_reranker(r.name, r.hardened);
    }
    Ok(())
}

fn search(args: SearchArgs) -> Result<()> {
    let mut request = args
        .rerank
        .request(args.query.clone().unwrap_or_default(), args.k);
    if let Some(path) = &args.image {
        let bytes = std::fs::read(path)
            .with_context(|| format!("reading query image {}", path.display()))?;
        request.image = Some(bytes);
    }
    request.filter = args.filter.filter();
    request.validate()?;
    let mut pipeline = open_pipeline(&args.store, args.embedder.embedder, &args.page_models)?;
    if let Some(ef) = args.ef_search {
        pipeline.collection().set_ef_search(ef);
    }
    attach_rerankers(&mut pipeline, &args.rerank.ranker, request.reranks())?;
    let response = pipeline.search(&request)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&response)?);
    } else {
        print_hits(&response);
    }
    Ok(())
}

fn print_hits(response: &SearchResponse) {
    if response.hits.is_empty() {
        println!("   (no hits)");
    }
    if let Some(e) = &response.rerank_error {
        println!("   (degraded: {e}; fused order shown)");
    }
    for (i, h) in response.hits.iter().enumerate() {
        let name = Path::new(&h.path)
            .file_name()
            .map_or_else(|| h.path.clone(), |n| n.to_string_lossy().into_owned());
        let routes = h
            .routes
            .iter()
            .map(|(r, rank)| format!("{r} #{rank}"))
            .collect::<Vec<_>>()
            .join(", ");
        let rerank = h
            .rerank_score
            .map(|s| format!("  rerank {s:.4} (fused #{})", h.fused_rank))
            .unwrap_or_default();
        println!(
            "{:>3}. {name}  page {}  score {:.4}{rerank}  [{routes}]  doc {}",
            i + 1,
            h.page,
            h.score,
            h.doc_id
        );
        println!("     {}", h.snippet);
    }
}

fn serve(args: ServeArgs) -> Result<()> {
    let target = args.store.target()?;
    let existing = target.recorded_models()?;
    let (embedder, source) = load_embedder(args.embedder.embedder, existing.as_ref())?;
    let (page, late) = load_page_embedders(&args.page_models, existing.as_ref(), false)?;
    let text_source = source.dir.display().to_string();
    let shared = |m: &Option<LoadedPageModel>| {
        m.as_ref()
            .map(|(e, dir)| (e.clone() as Arc<dyn PageEmbedder>, Some(dir.clone())))
    };
    let ingest = folio_server::IngestModels {
        text: embedder.clone(),
        text_source: Some(text_source),
        page: shared(&page),
        late: shared(&late),
        settings: IndexSettings {
            progress: false,
            isolation: args.isolation.isolation()?,
            ..IndexSettings::default()
        },
        // An embedded index is written through its directory; databases through a writer
        // when the server has a data directory. Embedded shards are not written here: their
        // readers would not see the new generations.
        open_writer: if target.only_databases() && args.data_dir.is_some() {
            let target = target.clone();
            let open: folio_server::OpenWriter = Arc::new(move |models: &IndexModels| {
                target
                    .writer(models, None, None)
                    .map_err(|e| folio_store::StoreError::Backend(format!("{e:#}")))
            });
            Some(open)
        } else {
            None
        },
    };
    let index_dir = match &target {
        Target::Embedded(dir) => Some(dir.clone()),
        _ => None,
    };
    match (&index_dir, &existing) {
        (Some(dir), None) if args.read_only => bail!(
            "no Folio index at {}: a read-only node serves an index another process writes; \
             build it first (folio index) or start without --read-only",
            dir.display()
        ),
        (None, None) => bail!(
            "{} holds no Folio collection yet: index into it first (folio index)",
            target.describe()
        ),
        _ => {}
    }
    if let (Some(dir), None) = (&index_dir, &existing) {
        let models = Embedders {
            text: ingest.text.as_ref(),
            text_source: ingest.text_source.as_deref(),
            page: page
                .as_ref()
                .map(|(e, d)| (e.as_ref() as &dyn PageEmbedder, Some(d.as_str()))),
            late: late
                .as_ref()
                .map(|(e, d)| (e.as_ref() as &dyn PageEmbedder, Some(d.as_str()))),
        };
        StoreWriter::open_with(dir, models.models())?.commit()?;
        eprintln!("created an empty index at {}", dir.display());
    }
    let mut text: Arc<dyn Embedder> = embedder;
    if args.query_cache > 0 {
        text = Arc::new(folio_search::CachedEmbedder::new(text, args.query_cache));
    }
    let mut pipeline = Pipeline::new(target.open(args.store.shard_timeout())?, Some(text))?;
    for (model, _) in [page, late].into_iter().flatten() {
        pipeline.add_page_embedder(model)?;
    }
    attach_rerankers(&mut pipeline, &args.ranker, false)?;
    // Without an index directory (a database) nothing is kept on disk.
    let defaults = folio_server::ServerConfig::new(
        index_dir
            .as_deref()
            .unwrap_or_else(|| Path::new("folio-service")),
    );
    let config = folio_server::ServerConfig {
        keys: folio_server::ApiKeys::new(&args.admin_keys, &args.search_keys)
            .map_err(anyhow::Error::msg)?,
        max_upload_bytes: args.max_upload_mb.saturating_mul(1024 * 1024),
        request_timeout: std::time::Duration::from_secs(args.request_timeout.max(1)),
        max_concurrent: args.max_concurrent.max(1),
        search_threads: args.search_threads,
        cors_origins: args.cors_origin,
        ingest_root: args.ingest_root,
        // A database is written through this server only when it has a data directory.
        read_only: args.read_only || (index_dir.is_none() && ingest.open_writer.is_none()),
        data_dir: args.data_dir.unwrap_or_else(|| defaults.data_dir.clone()),
        ..defaults
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let addr = args.addr;
    runtime
        .block_on(async move {
            folio_server::Server::new(pipeline, config, Some(ingest))?
                .serve(addr)
                .await
        })
        .with_context(|| format!("serving on {addr}"))
}

fn demo(args: DemoArgs) -> Result<()> {
    // ./datasets/samples when run from a checkout, else the tree this binary was built from.
    let samples_dir = args.samples.unwrap_or_else(|| {
        let local = PathBuf::from("datasets/samples");
        if local.join("queries.jsonl").is_file() {
            local
        } else {
            folio_datasets::samples_dir()
        }
    });
    let samples = folio_datasets::SampleSet::load(&samples_dir)?;
    let tmp;
    let index_dir = match args.index {
        Some(dir) => dir,
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().join("index")
        }
    };
    let (embedder, source) = load_embedder(args.embedder.embedder, None)?;
    println!("Indexing the sample PDFs in {} ...", samples_dir.display());
    let (files, _) = folio_indexer::collect_pdfs(std::slice::from_ref(&samples_dir));
    let report = folio_indexer::index_files(
        &index_dir,
        &files,
        embedder.as_ref(),
        Some(source.dir.display().to_string()),
        &IndexSettings::default(),
    )?;
    print_report(&report);
    let store = Arc::new(Store::open(&index_dir)?);
    let dyn_embedder: Arc<dyn Embedder> = embedder;
    let pipeline = Pipeline::new(store, Some(dyn_embedder))?;
    for q in &samples.queries {
        println!("\nquery {}: {}", q.id, q.text);
        let response = pipeline.search(&SearchRequest::new(q.text.clone(), args.k))?;
        print_hits(&response);
    }
    let queries: Vec<folio_eval::EvalQuery> = samples
        .queries
        .iter()
        .map(|q| folio_eval::EvalQuery::text(&q.id, &q.text))
        .collect();
    let rrf = folio_search::Rrf::default();
    let runs = folio_eval::route_runs(
        &pipeline,
        &queries,
        10,
        folio_eval::Systems::fusions(&[("rrf", &rrf)]),
        folio_datasets::page_corpus_id,
        || (),
    )?;
    let metrics = [Metric::Ndcg(Some(10)), Metric::Success(3)];
    println!("\nOn the {} sample queries:", queries.len());
    for (system, run) in &runs {
        let e = folio_eval::evaluate(&samples.qrels, run, &metrics, EvalOptions::default());
        println!(
            "  {system:<6} nDCG@10 {:.3}   relevant page in top 3: {:.0}%",
            e.mean[0],
            e.mean[1] * 100.0
        );
    }
    if args.no_rerank {
        return Ok(());
    }
    let Some(q) = samples.queries.first() else {
        return Ok(());
    };
    if default_ranker_dir().is_none() {
        println!("\n(LLM re-ranking: run scripts/fetch-ranker-model.sh to see it here)");
        return Ok(());
    }
    let mut pipeline = pipeline;
    for r in load_rerankers(&RankerArgs::default(), &[RerankMode::Pointwise])? {
        pipeline.add_reranker(r.name, r.plain);
    }
    let mut request = SearchRequest::new(q.text.clone(), 5);
    request.rerank = "pointwise".into();
    request.rerank_depth = 5;
    println!(
        "\nquery {} re-ranked by the default LLM ranker (SmolLM2-135M, pointwise, top 5; a \
         135M-parameter test model: it shows the path, not ranking quality, see README):",
        q.id
    );
    print_hits(&pipeline.search(&request)?);
    Ok(())
}

fn eval_metrics(args: MetricsArgs) -> Result<()> {
    let metrics = folio_eval::metrics::parse_metrics(&args.metric)?;
    if metrics.is_empty() {
        bail!("--metric names no metric");
    }
    let qrels = folio_datasets::read_qrels(&args.qrels)?;
    let run = folio_eval::metrics::read_run(&args.run)?;
    let options = EvalOptions {
        relevance_level: args.relevance_level,
        complete: args.complete,
    };
    let kinds: Vec<Metric> = metrics.iter().map(|(_, m)| *m).collect();
    let e = folio_eval::evaluate(&qrels, &run, &kinds, options);
    let names: Vec<&str> = metrics.iter().map(|(n, _)| n.as_str()).collect();
    if args.json {
        let row = |values: &[f64]| -> serde_json::Map<String, serde_json::Value> {
            names
                .iter()
                .zip(values)
                .map(|(n, v)| (n.to_string(), serde_json::json!(v)))
                .collect()
        };
        let per_query: serde_json::Map<String, serde_json::Value> = e
            .per_query
            .iter()
            .map(|(q, v)| (q.clone(), serde_json::Value::Object(row(v))))
            .collect();
        let out = serde_json::json!({"mean": row(&e.mean), "per_query": per_query});
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let width = e
        .per_query
        .keys()
        .map(String::len)
        .max()
        .unwrap_or(0)
        .max(5);
    print!("{:<width$}", "query");
    for n in &names {
        print!("  {n:>10}");
    }
    println!();
    let print_row = |label: &str, values: &[f64]| {
        print!("{label:<width$}");
        for v in values {
            print!("  {v:>10.4}");
        }
        println!();
    };
    for (q, values) in &e.per_query {
        print_row(q, values);
    }
    print_row("all", &e.mean);
    println!("({} queries in the mean)", e.queries);
    Ok(())
}

fn eval_retrieval(args: RetrievalArgs) -> Result<()> {
    let metrics = folio_eval::metrics::parse_metrics(&args.metric)?;
    if metrics.is_empty() {
        bail!("--metric names no metric");
    }
    let modes = args
        .rerank
        .iter()
        .map(|m| m.trim().parse::<RerankMode>())
        .collect::<Result<Vec<_>, _>>()?;
    let rerankers = match modes.iter().any(|m| *m != RerankMode::None) {
        true => load_rerankers(&args.ranker, &modes)?,
        false => Vec::new(),
    };
    let defenses: Vec<String> = args.defenses.iter().map(|d| d.trim().to_string()).collect();
    let mut detect = false;
    for d in &defenses {
        detect |= folio_search::Defense::parse(d)?.detect;
    }
    let detectors = match detect {
        true => model_detectors(&args.ranker)?,
        false => Vec::new(),
    };
    let mut dataset = load_eval_dataset(&args)?;
    if let Some(n) = args.max_queries {
        let qrels = &dataset.qrels;
        dataset.queries.retain(|q| qrels.contains_key(&q.id));
        dataset.queries.truncate(n);
        let kept: std::collections::BTreeSet<&str> =
            dataset.queries.iter().map(|q| q.id.as_str()).collect();
        dataset.qrels.retain(|q, _| kept.contains(q.as_str()));
    }
    let index = args.index.clone().unwrap_or_else(|| args.out.join("index"));
    let existing = Manifest::read(&index)?.map(|m| IndexModels::of(&m));
    let (embedder, source) = load_embedder(args.embedder.embedder.clone(), existing.as_ref())?;
    let (page, late) = load_page_embedders(&args.page_models, existing.as_ref(), true)?;
    let page_models = [page, late]
        .into_iter()
        .flatten()
        .map(|(model, dir)| folio_eval::runner::PageModel {
            embedder: model,
            source: Some(dir),
        })
        .collect();
    println!(
        "{}: {} documents, {} queries with {} judgements ({} split)",
        dataset.name,
        dataset.documents(),
        dataset.queries.len(),
        dataset.qrels.values().map(|q| q.len()).sum::<usize>(),
        dataset.split
    );
    let settings = folio_eval::runner::RetrievalSettings {
        routes: args
            .routes
            .split(',')
            .map(|r| r.trim().to_string())
            .collect(),
        fusions: args
            .fusion
            .split(',')
            .map(|f| f.trim().to_string())
            .collect(),
        depth: args.depth,
        metrics: metrics.clone(),
        rerankers: rerankers
            .into_iter()
            .map(|r| folio_eval::runner::NamedReranker {
                name: r.name.to_string(),
                reranker: r.plain,
                hardened: Some(r.hardened),
            })
            .collect(),
        rerank_depth: args.rerank_depth,
        defenses,
        detectors,
        defense_policy: args.ranker.defense_policy,
        page_models,
        ..Default::default()
    };
    let report = folio_eval::runner::run_retrieval(
        &dataset,
        &index,
        &args.out,
        embedder,
        Some(source.dir.display().to_string()),
        &settings,
    )?;
    print!("{}", folio_eval::runner::markdown(&report, &metrics));
    println!("\nWrote {}", args.out.join("report.md").display());
    Ok(())
}

/// Reads `--dataset` as the layout it has (or the one `--layout` names).
fn load_eval_dataset(args: &RetrievalArgs) -> Result<folio_eval::runner::EvalDataset> {
    use folio_eval::runner::EvalDataset;
    let dir = &args.dataset;
    if !dir.exists() {
        bail!("no such dataset: {}", dir.display());
    }
    let name = dir.file_name().map_or_else(
        || "dataset".to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    if let Some(layout) = &args.layout {
        let pages = folio_datasets::PageDataset::load(layout.parse()?, dir, &args.split)?;
        let images = args
            .routes
            .split(',')
            .any(|r| matches!(r.trim(), "page" | "late"));
        return Ok(EvalDataset::from_pages(&pages, &name, &args.split, images)?);
    }
    if dir.join("corpus.jsonl").is_file() {
        let beir = folio_datasets::BeirDataset::load(dir, &args.split)?;
        return Ok(EvalDataset::from_beir(&beir));
    }
    if dir.join("queries.jsonl").is_file() && dir.join("qrels.tsv").is_file() {
        let set = folio_datasets::SampleSet::load(dir)?;
        return Ok(EvalDataset::from_pdf_set(&set));
    }
    bail!(
        "{} is neither a BEIR dataset (corpus.jsonl) nor a PDF set (queries.jsonl, qrels.tsv); \
         for Parquet datasets pass --layout vidore|vidore-beir|mmdocir|m2kr",
        dir.display()
    )
}
