//! `folio bench scale`: how the two store backends (the embedded index and PostgreSQL with
//! pgvector) scale with the number of passages: ingest rate, dense and lexical queries/s and
//! latency under concurrent clients, dense recall@10 against exact search, disk and memory,
//! per backend and per corpus size, as a Markdown table and as JSON.
//!
//! The corpus is synthetic but made of real data: the rows of an embedding file (real
//! all-MiniLM-L6-v2 vectors of SciFact texts, `scripts/bench/ann_vectors.py`) and their texts.
//! The last `--queries` rows are held out as queries and never indexed; the other `B` rows are
//! the base. Passage `i` is base row `i % B`: its vector is that row plus Gaussian noise of
//! `--noise` per component, L2-normalised again (cosine to the base row about 0.9 at the
//! default), and its text is the row's text, followed by the word `replica<r>` for the `r`-th
//! copy (`r = i / B`, from 1; the first copy is the text as it is). Copies of a row thus
//! differ in their vector and in that one word only: past `B` passages the lexical route sees
//! the same texts again, which is kinder to BM25's statistics than a real corpus that large.
//! Every passage's noise comes from its own seeded stream, so any passage can be made again
//! on its own (the exact search makes them again instead of keeping them all in memory).
//! Passages are grouped ten to a document, five on each of two pages.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, ValueEnum};
use folio_core::{
    DocId, DocMeta, Document, EmbedderInfo, EmbeddingKind, Found, Page, PageKey, Passage, PassageId,
};
use folio_pg::{PgCluster, PgWriter, ReadRouting, redact};
use folio_store::{
    Collection, CollectionWriter, IndexModels, PageEmbeddings, Store, StoreError, StoreWriter,
};
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::serve::percentile;

/// Width of the vectors (all-MiniLM-L6-v2).
const DIM: usize = 384;
/// Neighbours per query: the bench reports recall@10 and asks every route for 10 hits.
const K: usize = 10;
/// Passages per document.
const PASSAGES_PER_DOC: usize = 10;
/// Pages per document (the passages are split evenly between them).
const PAGES_PER_DOC: usize = 2;
/// The default `--noise`: with 384 components, a unit vector plus noise of this sigma per
/// component has cosine 1 / sqrt(1 + 384 sigma^2) = 0.898 to the original, once normalised.
const DEFAULT_NOISE: f32 = 0.025;
/// Progress lines on stderr at most this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(15);
/// Lexical queries run one at a time before the lexical QPS run.
const LEXICAL_WARM_UP: usize = 20;
/// A client thread stops after this many failed queries (a dead server is not hammered).
const MAX_ERRORS_PER_CLIENT: usize = 100;

/// A store backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Backend {
    /// The embedded index: tantivy BM25, usearch HNSW and files in a directory.
    Embedded,
    /// PostgreSQL with pgvector (`--pg`).
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Embedded => "embedded",
            Backend::Postgres => "postgres",
        }
    }
}

/// Options of `folio bench scale`.
#[derive(Args)]
#[command(after_help = "\
The corpus: passage i is row i % B of --vectors (B = rows - --queries) plus Gaussian noise of \
--noise per component, normalised again, with that row's text (copies after the first end in \
the word replica<r>); ten passages to a document, five to a page. The held-out rows are the \
queries: their vectors for the dense route, their texts for the lexical route.

Ingest: passages/s over the time spent in put_document and commit (the embedded store builds \
its HNSW graph and BM25 index at commit; PostgreSQL indexes each document as it is put). \
QPS: --clients threads each run one query after another for --seconds. Recall@10: the dense \
route's top 10 against the exact top 10 over the same stored vectors, for the first \
--recall-queries queries. Disk: the index directory, or pg_database_size. Memory: the embedded \
store's resident-memory growth over opening it and one query of each route, measured in a \
fresh process; PostgreSQL's HNSW index size (the RAM it needs to stay fast) and its \
shared_buffers.

PostgreSQL: --pg writes into that database. It must hold no table but Folio's, and no \
documents; the bench drops Folio's tables before and after each corpus size. Start a local \
server with `scripts/pg/cluster.sh start DIR PORT` (docs/scale.md).")]
pub struct ScaleBenchArgs {
    /// Raw little-endian f32 vectors, 384 wide, row-major, no header (made by
    /// scripts/bench/ann_vectors.py); every row is L2-normalised on load.
    #[arg(long, required_unless_present = "measure_open")]
    vectors: Option<PathBuf>,
    /// The text of each row of --vectors, one a line (line i is row i).
    #[arg(long, required_unless_present = "measure_open")]
    texts: Option<PathBuf>,
    /// Corpus sizes in passages: repeat the flag or separate by commas.
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
    passages: Vec<usize>,
    /// Held-out query rows (the last rows of --vectors; never indexed).
    #[arg(long, default_value_t = 1000)]
    queries: usize,
    /// Of those, how many the recall is measured on (exact search over every passage).
    #[arg(long, default_value_t = 200)]
    recall_queries: usize,
    /// Concurrent client threads of the QPS runs.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Seconds of each QPS run (one per route).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Gaussian noise added to each component of a passage's vector before normalising
    /// (0.025: cosine 0.9 to its base row).
    #[arg(long, default_value_t = DEFAULT_NOISE)]
    noise: f32,
    /// Seed of the noise.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also benchmark PostgreSQL: the primary's URL. The bench WRITES INTO THIS DATABASE: it
    /// must be empty (no table but Folio's, no documents), and Folio's tables are dropped
    /// after each corpus size.
    #[arg(long)]
    pg: Option<String>,
    /// Backends, comma-separated: embedded, postgres (default: embedded, and postgres when
    /// --pg is given).
    #[arg(long, value_enum, value_delimiter = ',')]
    backends: Vec<Backend>,
    /// Work directory of the embedded index (a temporary directory is made inside it and
    /// removed after each corpus size; default: target/ of the working directory or of this
    /// source tree).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// HNSW ef_search of both backends (default: their own, 128).
    #[arg(long)]
    ef_search: Option<usize>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// Internal: open the embedded index in DIR, run one query of each route and print the
    /// resident memory before and after as JSON.
    #[arg(long, hide = true, value_name = "DIR")]
    measure_open: Option<PathBuf>,
}

/// Latency and throughput of one route under load.
#[derive(Serialize)]
struct RouteRun {
    qps: f64,
    p50_ms: f64,
    p99_ms: f64,
    mean_ms: f64,
    /// Queries answered.
    queries: usize,
    /// Queries that failed.
    errors: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_error: Option<String>,
}

/// One backend at one corpus size.
#[derive(Serialize)]
struct Run {
    backend: Backend,
    passages: usize,
    documents: usize,
    /// Seconds spent in put_document and commit.
    ingest_s: f64,
    /// Of those, in commit.
    commit_s: f64,
    /// Seconds spent making the documents (not part of ingest_s).
    generate_s: f64,
    ingest_passages_per_s: f64,
    recall_at_10: f64,
    dense: RouteRun,
    lexical: RouteRun,
    /// The index directory, or pg_database_size after ingest.
    disk_bytes: u64,
    /// The HNSW index: the usearch file, or the pgvector index's relation size.
    hnsw_bytes: u64,
    /// The lexical index: tantivy's directory, or the GIN index on the passages' tsvector.
    lexical_index_bytes: u64,
    /// RAM to serve: the embedded store's RSS growth over open + a query of each route;
    /// PostgreSQL's HNSW index size.
    memory_bytes: u64,
    memory_measured_as: String,
    /// PostgreSQL's shared_buffers.
    #[serde(skip_serializing_if = "Option::is_none")]
    shared_buffers_bytes: Option<u64>,
    disk_bytes_per_million: f64,
    memory_bytes_per_million: f64,
}

/// What one backend's files or database hold, and how its memory was measured.
struct Sizes {
    disk: u64,
    hnsw: u64,
    lexical_index: u64,
    memory: u64,
    memory_measured_as: String,
    shared_buffers: Option<u64>,
}

impl Run {
    fn new(
        backend: Backend,
        corpus: &Corpus<'_>,
        timing: &Ingest,
        (recall_at_10, dense, lexical): (f64, RouteRun, RouteRun),
        sizes: Sizes,
    ) -> Run {
        let ingest_s = timing.put_s + timing.commit_s;
        Run {
            backend,
            passages: corpus.n,
            documents: corpus.documents(),
            ingest_s,
            commit_s: timing.commit_s,
            generate_s: timing.generate_s,
            ingest_passages_per_s: corpus.n as f64 / ingest_s,
            recall_at_10,
            dense,
            lexical,
            disk_bytes: sizes.disk,
            hnsw_bytes: sizes.hnsw,
            lexical_index_bytes: sizes.lexical_index,
            memory_bytes: sizes.memory,
            memory_measured_as: sizes.memory_measured_as,
            shared_buffers_bytes: sizes.shared_buffers,
            disk_bytes_per_million: per_million(sizes.disk, corpus.n),
            memory_bytes_per_million: per_million(sizes.memory, corpus.n),
        }
    }
}

#[derive(Serialize)]
struct Report {
    vectors: String,
    texts: String,
    dim: usize,
    base_rows: usize,
    queries: usize,
    recall_queries: usize,
    noise: f32,
    /// Measured mean cosine between a passage's vector and its base row.
    replica_cosine: f64,
    seed: u64,
    clients: usize,
    seconds: f64,
    ef_search: String,
    cores: usize,
    date: String,
    runs: Vec<Run>,
}

/// What the `--measure-open` child prints.
#[derive(Serialize, Deserialize)]
struct OpenMemory {
    rss_before: u64,
    rss_after: u64,
}

/// Runs `folio bench scale`.
pub fn scale(args: ScaleBenchArgs) -> Result<()> {
    if let Some(dir) = &args.measure_open {
        return measure_open(dir);
    }
    let (Some(vectors), Some(texts)) = (&args.vectors, &args.texts) else {
        bail!("give --vectors FILE and --texts FILE");
    };
    let backends = backends(&args)?;
    if args.passages.is_empty() || args.passages.contains(&0) {
        bail!("--passages needs sizes above 0");
    }
    if args.queries == 0 || args.recall_queries == 0 || args.clients == 0 {
        bail!("--queries, --recall-queries and --clients need at least 1");
    }
    if !(args.seconds > 0.0 && args.seconds.is_finite()) {
        bail!("--seconds needs a positive number");
    }
    if !(args.noise >= 0.0 && args.noise.is_finite()) {
        bail!("--noise needs a number >= 0");
    }
    let data = Base::load(vectors, texts, args.queries)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let recall_queries = args.recall_queries.min(args.queries);
    let replica_cosine =
        Corpus::new(&data, data.rows(), args.noise, args.seed).replica_cosine(2000);
    eprintln!(
        "bench scale: {} base rows + {} held-out queries, dim {DIM}; noise {} (replica cosine \
         to its base row {replica_cosine:.3}); backends {:?}; sizes {:?}",
        data.rows(),
        args.queries,
        args.noise,
        backends.iter().map(|b| b.name()).collect::<Vec<_>>(),
        args.passages
    );
    let work = match &args.dir {
        Some(d) => d.clone(),
        None => default_work_dir(),
    };
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let mut runs = Vec::new();
    for &n in &args.passages {
        let corpus = Corpus::new(&data, n, args.noise, args.seed);
        let started = Instant::now();
        let truth = corpus.exact_top_k(&data.queries[..recall_queries * DIM], cores);
        eprintln!(
            "bench scale: N={n}: exact top {K} of {recall_queries} queries in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        for &backend in &backends {
            let run = match backend {
                Backend::Embedded => bench_embedded(&args, &corpus, &truth, &work)?,
                Backend::Postgres => {
                    let url = args.pg.as_deref().context("postgres needs --pg URL")?;
                    bench_postgres(&args, &corpus, &truth, url)?
                }
            };
            eprintln!(
                "bench scale: {} N={n}: {}",
                backend.name(),
                serde_json::to_string(&run)?
            );
            runs.push(run);
        }
    }
    let report = Report {
        vectors: vectors.display().to_string(),
        texts: texts.display().to_string(),
        dim: DIM,
        base_rows: data.rows(),
        queries: args.queries,
        recall_queries,
        noise: args.noise,
        replica_cosine,
        seed: args.seed,
        clients: args.clients,
        seconds: args.seconds,
        ef_search: args
            .ef_search
            .map_or("backend default (128)".into(), |e| e.to_string()),
        cores,
        date: today(),
        runs,
    };
    super::print_report(&report, args.json, print_table)
}

/// The backends to run: as given, else embedded and (with --pg) postgres.
fn backends(args: &ScaleBenchArgs) -> Result<Vec<Backend>> {
    let mut out = args.backends.clone();
    if out.is_empty() {
        out.push(Backend::Embedded);
        if args.pg.is_some() {
            out.push(Backend::Postgres);
        }
    }
    out.dedup();
    if out.contains(&Backend::Postgres) && args.pg.is_none() {
        bail!("--backends postgres needs --pg URL (an empty database the bench may write into)");
    }
    Ok(out)
}

/// `target/` of the working directory when there is one, else of this source tree.
fn default_work_dir() -> PathBuf {
    let local = PathBuf::from("target");
    if local.is_dir() {
        return local.join("scale-bench");
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/scale-bench")
}

/// Today's date (UTC) as YYYY-MM-DD.
fn today() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The rows of the vector file: the base (indexed, copied) and the held-out queries.
struct Base {
    /// Base rows, row-major, unit length.
    vectors: Vec<f32>,
    texts: Vec<String>,
    /// Held-out query rows, unit length.
    queries: Vec<f32>,
    query_texts: Vec<String>,
}

impl Base {
    /// Reads both files and holds out the last `queries` rows.
    fn load(vectors: &Path, texts: &Path, queries: usize) -> Result<Base> {
        for (flag, path) in [("--vectors", vectors), ("--texts", texts)] {
            if !path.is_file() {
                bail!(
                    "{flag} {}: no such file; make it (and its .txt) with \
                     scripts/bench/ann_vectors.py (see its docstring)",
                    path.display()
                );
            }
        }
        let bytes =
            std::fs::read(vectors).with_context(|| format!("reading {}", vectors.display()))?;
        if bytes.is_empty() || !bytes.len().is_multiple_of(DIM * 4) {
            bail!(
                "{}: {} bytes is not a whole number of rows of {DIM} f32",
                vectors.display(),
                bytes.len()
            );
        }
        let mut data: Vec<f32> = (bytes.chunks_exact(4))
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        drop(bytes);
        data.chunks_exact_mut(DIM).for_each(normalise);
        let text = std::fs::read_to_string(texts)
            .with_context(|| format!("reading {}", texts.display()))?;
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let rows = data.len() / DIM;
        if lines.len() != rows {
            bail!(
                "{} has {} lines but {} has {rows} rows: they must be made together \
                 (scripts/bench/ann_vectors.py)",
                texts.display(),
                lines.len(),
                vectors.display()
            );
        }
        if rows <= queries {
            bail!("{rows} rows, not more than --queries {queries}");
        }
        let base = rows - queries;
        let query_texts = lines.split_off(base);
        let query_vectors = data.split_off(base * DIM);
        Ok(Base {
            vectors: data,
            texts: lines,
            queries: query_vectors,
            query_texts,
        })
    }

    fn rows(&self) -> usize {
        self.texts.len()
    }

    fn row(&self, i: usize) -> &[f32] {
        &self.vectors[i * DIM..][..DIM]
    }
}

/// Scales a vector to unit length (a zero vector stays zero).
fn normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Dot product with 16 independent sums, which the compiler turns into SIMD.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = (ca.remainder().iter())
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    let mut acc = [0f32; 16];
    for (x, y) in ca.zip(cb) {
        for j in 0..16 {
            acc[j] += x[j] * y[j];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// SplitMix64 (Steele, Lea and Flood, 2014): a small, fast, seedable generator, good enough
/// for noise; each passage gets its own stream.
struct SplitMix64(u64);

impl SplitMix64 {
    /// The stream of item `i` under `seed`.
    fn for_item(seed: u64, i: u64) -> Self {
        let mut s = SplitMix64(seed ^ i.wrapping_mul(0xD1B5_4A32_D192_ED03));
        s.next_u64();
        s
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// Two independent standard normal numbers (Box-Muller).
    fn normal_pair(&mut self) -> (f32, f32) {
        let r = (-2.0 * self.uniform().ln()).sqrt();
        let (s, c) = (std::f64::consts::TAU * self.uniform()).sin_cos();
        ((r * c) as f32, (r * s) as f32)
    }
}

/// Where a passage sits: its number in the corpus, page, and span in the page text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    passage: usize,
    page: u32,
    char_start: u32,
    char_end: u32,
}

/// One generated document, ready for `put_document`.
struct GeneratedDoc {
    doc: Document,
    pages: Vec<Page>,
    passages: Vec<Passage>,
    vectors: Vec<Vec<f32>>,
}

/// `n` passages made from the base rows (see the module docs).
struct Corpus<'a> {
    base: &'a Base,
    n: usize,
    noise: f32,
    seed: u64,
}

impl<'a> Corpus<'a> {
    fn new(base: &'a Base, n: usize, noise: f32, seed: u64) -> Self {
        Corpus {
            base,
            n,
            noise,
            seed,
        }
    }

    fn documents(&self) -> usize {
        self.n.div_ceil(PASSAGES_PER_DOC)
    }

    /// Passage `i`'s text: its base row's, and from the second copy on a replica word.
    fn text(&self, i: usize) -> String {
        let rows = self.base.rows();
        let t = &self.base.texts[i % rows];
        match i / rows {
            0 => t.clone(),
            r => format!("{t} replica{r}"),
        }
    }

    /// Passage `i`'s vector: its base row plus noise, unit length.
    fn vector_into(&self, i: usize, out: &mut [f32]) {
        let base = self.base.row(i % self.base.rows());
        noisy_into(base, self.noise, self.seed, i as u64, out);
    }

    /// Document `d`'s id: 16 hex digits, as a content hash gives.
    fn doc_id(d: usize) -> DocId {
        DocId(format!("{d:016x}"))
    }

    /// The document number of an id made by [`Corpus::doc_id`].
    fn doc_number(id: &DocId) -> Option<usize> {
        usize::from_str_radix(id.as_str(), 16).ok()
    }

    /// Where each passage of document `d` sits, and its text.
    fn layout(&self, d: usize) -> Vec<(Slot, String)> {
        let first = d * PASSAGES_PER_DOC;
        let last = (first + PASSAGES_PER_DOC).min(self.n);
        let count = last.saturating_sub(first);
        let per_page = count.div_ceil(PAGES_PER_DOC).max(1);
        let mut out = Vec::with_capacity(count);
        let mut offset = 0u32;
        for (j, passage) in (first..last).enumerate() {
            if j > 0 && j % per_page == 0 {
                offset = 0;
            } else if j > 0 {
                offset += 1; // the newline between passages of a page
            }
            let text = self.text(passage);
            let len = text.chars().count() as u32;
            out.push((
                Slot {
                    passage,
                    page: (j / per_page) as u32 + 1,
                    char_start: offset,
                    char_end: offset + len,
                },
                text,
            ));
            offset += len;
        }
        out
    }

    /// The corpus number of the passage at `char_start` of `page`.
    fn locate(&self, page: &PageKey, char_start: u32) -> Option<usize> {
        let d = Self::doc_number(&page.doc_id)?;
        if d >= self.documents() {
            return None;
        }
        (self.layout(d).into_iter())
            .find(|(s, _)| s.page == page.page && s.char_start == char_start)
            .map(|(s, _)| s.passage)
    }

    /// Document `d` with its pages, passages and vectors.
    fn document(&self, d: usize) -> GeneratedDoc {
        let doc_id = Self::doc_id(d);
        let layout = self.layout(d);
        let pages_count = layout.last().map_or(0, |(s, _)| s.page);
        let key = |page| PageKey {
            doc_id: doc_id.clone(),
            page,
        };
        let pages: Vec<Page> = (1..=pages_count)
            .map(|page| Page {
                key: key(page),
                text: (layout.iter())
                    .filter(|(s, _)| s.page == page)
                    .map(|(_, t)| t.as_str())
                    .collect::<Vec<_>>()
                    .join("\n"),
            })
            .collect();
        let vectors = (layout.iter())
            .map(|(s, _)| {
                let mut v = vec![0f32; DIM];
                self.vector_into(s.passage, &mut v);
                v
            })
            .collect();
        let bytes = pages.iter().map(|p| p.text.len() as u64).sum();
        let passages = (layout.into_iter())
            .map(|(s, text)| Passage {
                id: 0,
                page: key(s.page),
                char_start: s.char_start,
                char_end: s.char_end,
                text,
                boxes: Vec::new(),
            })
            .collect();
        let mut mix = SplitMix64::for_item(0x00c0_ffee, d as u64);
        GeneratedDoc {
            doc: Document {
                content_hash: format!(
                    "{}{:016x}{:016x}{:016x}",
                    doc_id.0,
                    mix.next_u64(),
                    mix.next_u64(),
                    mix.next_u64()
                ),
                doc_id,
                path: format!("/bench/scale/{d}.pdf"),
                pages: pages_count,
                bytes,
                meta: DocMeta::default(),
            },
            pages,
            passages,
            vectors,
        }
    }

    /// Mean cosine between a passage's vector and its base row, over the first `samples`.
    fn replica_cosine(&self, samples: usize) -> f64 {
        let samples = samples.min(self.n).max(1);
        let mut v = vec![0f32; DIM];
        let sum: f64 = (0..samples)
            .map(|i| {
                self.vector_into(i, &mut v);
                f64::from(dot(&v, self.base.row(i % self.base.rows())))
            })
            .sum();
        sum / samples as f64
    }

    /// The exact top `K` passages (by cosine) of each query, best first: every passage's
    /// vector is made again and scored against all queries, on `threads` threads.
    fn exact_top_k(&self, queries: &[f32], threads: usize) -> Vec<Vec<usize>> {
        let nq = queries.len() / DIM;
        let per = self.n.div_ceil(threads.max(1)).max(1);
        let parts: Vec<Vec<Vec<(f32, usize)>>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..self.n)
                .step_by(per)
                .map(|lo| {
                    let hi = (lo + per).min(self.n);
                    s.spawn(move || {
                        let mut tops: Vec<Vec<(f32, usize)>> = vec![Vec::new(); nq];
                        let mut v = vec![0f32; DIM];
                        for i in lo..hi {
                            self.vector_into(i, &mut v);
                            for (top, q) in tops.iter_mut().zip(queries.chunks_exact(DIM)) {
                                push_top(top, dot(&v, q), i);
                            }
                        }
                        tops
                    })
                })
                .collect();
            // A panic in a worker is a bug here (no input-dependent failure): re-raise it.
            (handles.into_iter())
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        });
        (0..nq)
            .map(|q| {
                let mut all: Vec<(f32, usize)> =
                    parts.iter().flat_map(|p| p[q].iter().copied()).collect();
                sort_best_first(&mut all);
                all.into_iter().take(K).map(|(_, i)| i).collect()
            })
            .collect()
    }
}

/// `base` plus Gaussian noise of `sigma` per component from item `item`'s stream, normalised.
fn noisy_into(base: &[f32], sigma: f32, seed: u64, item: u64, out: &mut [f32]) {
    let mut rng = SplitMix64::for_item(seed, item);
    for (o, b) in out.chunks_mut(2).zip(base.chunks(2)) {
        let (x, y) = rng.normal_pair();
        o[0] = b[0] + sigma * x;
        if let (Some(o1), Some(b1)) = (o.get_mut(1), b.get(1)) {
            *o1 = b1 + sigma * y;
        }
    }
    normalise(out);
}

/// Best score first, ties by passage number.
fn sort_best_first(v: &mut [(f32, usize)]) {
    v.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
}

/// Keeps `top` the best `K` (score, passage) pairs seen, best first.
fn push_top(top: &mut Vec<(f32, usize)>, score: f32, i: usize) {
    if top.len() == K {
        match top.last() {
            Some(&(worst, _)) if score > worst => {
                top.pop();
            }
            _ => return,
        }
    }
    let at = top.partition_point(|&(s, _)| s >= score);
    top.insert(at, (score, i));
}

/// Resident memory of this process (VmRSS), bytes.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Bytes of the files under `dir`, in all, in `ann.usearch` files and under `bm25/`.
pub(super) fn dir_sizes(dir: &Path) -> Result<(u64, u64, u64)> {
    let (mut total, mut ann, mut bm25) = (0, 0, 0);
    let mut stack = vec![(dir.to_path_buf(), false)];
    while let Some((d, in_bm25)) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let entry = entry?;
            let meta = entry.metadata()?;
            let name = entry.file_name();
            if meta.is_dir() {
                stack.push((entry.path(), in_bm25 || name == "bm25"));
            } else {
                total += meta.len();
                if in_bm25 {
                    bm25 += meta.len();
                } else if name == "ann.usearch" {
                    ann += meta.len();
                }
            }
        }
    }
    Ok((total, ann, bm25))
}

/// Prints a progress line on stderr now and then: the overall rate, and the rate since the
/// previous line (which falls as an HNSW graph grows; the ETA assumes it stays).
struct Progress {
    label: String,
    total: usize,
    started: Instant,
    last: Instant,
    last_done: usize,
}

impl Progress {
    fn new(label: String, total: usize) -> Self {
        let now = Instant::now();
        Progress {
            label,
            total,
            started: now,
            last: now,
            last_done: 0,
        }
    }

    fn tick(&mut self, done: usize) {
        let since = self.last.elapsed();
        if since < PROGRESS_EVERY {
            return;
        }
        let s = self.started.elapsed().as_secs_f64();
        let rate = done as f64 / s.max(1e-9);
        let recent = (done - self.last_done.min(done)) as f64 / since.as_secs_f64().max(1e-9);
        let eta = (self.total - done.min(self.total)) as f64 / recent.max(1e-9);
        eprintln!(
            "bench scale: {}: {done}/{} passages put in {s:.0} s ({:.1}%; {rate:.0}/s overall, \
             {recent:.0}/s lately; eta {eta:.0} s)",
            self.label,
            self.total,
            100.0 * done as f64 / self.total.max(1) as f64
        );
        self.last = Instant::now();
        self.last_done = done;
    }
}

/// Timings of one ingest.
struct Ingest {
    put_s: f64,
    commit_s: f64,
    generate_s: f64,
}

/// Writes the whole corpus with `writer`, document by document as they are made.
fn ingest(
    label: &str,
    corpus: &Corpus<'_>,
    mut writer: Box<dyn CollectionWriter>,
    commit_note: &str,
) -> Result<Ingest> {
    let mut progress = Progress::new(label.to_string(), corpus.n);
    let (mut put_s, mut generate_s) = (0.0, 0.0);
    let mut done = 0;
    for d in 0..corpus.documents() {
        let started = Instant::now();
        let g = corpus.document(d);
        let count = g.passages.len();
        let generated = Instant::now();
        writer
            .put_document(
                g.doc,
                g.pages,
                g.passages,
                g.vectors,
                PageEmbeddings::default(),
            )
            .with_context(|| format!("{label}: writing document {d}"))?;
        generate_s += (generated - started).as_secs_f64();
        put_s += generated.elapsed().as_secs_f64();
        done += count;
        progress.tick(done);
    }
    eprintln!("bench scale: {label}: {done} passages put in {put_s:.1} s; committing{commit_note}");
    let started = Instant::now();
    writer
        .commit()
        .with_context(|| format!("{label}: commit"))?;
    let commit_s = started.elapsed().as_secs_f64();
    eprintln!("bench scale: {label}: committed in {commit_s:.1} s");
    Ok(Ingest {
        put_s,
        commit_s,
        generate_s,
    })
}

/// Recall@10 of the dense route: the share of each query's exact top 10 in its answer.
fn dense_recall(
    collection: &dyn Collection,
    corpus: &Corpus<'_>,
    queries: &[f32],
    truth: &[Vec<usize>],
) -> Result<f64> {
    let mut found = 0;
    for (q, exact) in queries.chunks_exact(DIM).zip(truth) {
        let hits = collection.dense(q, K, None).context("dense search")?.hits;
        for hit in hits {
            let id = hit.passage.context("a dense hit without its passage id")?;
            let i = passage_number(collection, corpus, id)?;
            found += usize::from(exact.contains(&i));
        }
    }
    Ok(found as f64 / (K * truth.len()).max(1) as f64)
}

/// The corpus number of a stored passage, from its page and place in the page.
fn passage_number(
    collection: &dyn Collection,
    corpus: &Corpus<'_>,
    id: PassageId,
) -> Result<usize> {
    let p = collection
        .passage(id)?
        .with_context(|| format!("passage {id} of a hit is not in the collection"))?;
    corpus.locate(&p.page, p.char_start).with_context(|| {
        format!(
            "passage {id} ({} at {}) is not one the bench wrote",
            p.page, p.char_start
        )
    })
}

/// Nearest-rank p50 and p99 of latencies in microseconds, in milliseconds.
fn p50_p99_ms(latencies_us: &mut [u32]) -> (f64, f64) {
    latencies_us.sort_unstable();
    let ms = |p| percentile(latencies_us, p).map_or(f64::NAN, |us| f64::from(us) / 1e3);
    (ms(50.0), ms(99.0))
}

/// `clients` threads each call `call` on one query after another (each from its own place in
/// `queries`) for `seconds`.
fn load<Q: Sync>(
    queries: &[Q],
    clients: usize,
    seconds: f64,
    call: impl Fn(&Q) -> Result<Found, StoreError> + Sync,
) -> Result<RouteRun> {
    if queries.is_empty() {
        bail!("no queries");
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let results = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|t| {
                let call = &call;
                s.spawn(move || {
                    let mut latencies: Vec<u32> = Vec::new();
                    let (mut errors, mut first_error) = (0, None);
                    let mut i = t * queries.len() / clients;
                    while Instant::now() < deadline && errors < MAX_ERRORS_PER_CLIENT {
                        let q = &queries[i % queries.len()];
                        i += 1;
                        let sent = Instant::now();
                        match call(q) {
                            Ok(found) => {
                                std::hint::black_box(found);
                                let us = sent.elapsed().as_micros();
                                latencies.push(u32::try_from(us).unwrap_or(u32::MAX));
                            }
                            Err(e) => {
                                errors += 1;
                                first_error.get_or_insert_with(|| e.to_string());
                            }
                        }
                    }
                    (latencies, errors, first_error)
                })
            })
            .collect();
        (handles.into_iter())
            .map(|h| h.join().map_err(|_| anyhow!("a client thread panicked")))
            .collect::<Result<Vec<_>>>()
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    let mut latencies: Vec<u32> = Vec::new();
    let (mut errors, mut first_error) = (0, None);
    for (l, e, f) in results {
        latencies.extend(l);
        errors += e;
        first_error = first_error.or(f);
    }
    if latencies.is_empty() {
        bail!(
            "every query failed: {}",
            first_error.unwrap_or_else(|| "no query finished in time".into())
        );
    }
    let mean_ms =
        latencies.iter().map(|&u| f64::from(u)).sum::<f64>() / latencies.len() as f64 / 1e3;
    let (p50_ms, p99_ms) = p50_p99_ms(&mut latencies);
    Ok(RouteRun {
        qps: latencies.len() as f64 / elapsed,
        p50_ms,
        p99_ms,
        mean_ms,
        queries: latencies.len(),
        errors,
        first_error,
    })
}

/// Recall, then a warm-up of the lexical route, then both QPS runs.
fn measure_queries(
    args: &ScaleBenchArgs,
    label: &str,
    collection: &dyn Collection,
    corpus: &Corpus<'_>,
    truth: &[Vec<usize>],
) -> Result<(f64, RouteRun, RouteRun)> {
    if let Some(ef) = args.ef_search {
        collection.set_ef_search(ef);
    }
    let stats = collection.stats()?;
    if stats.passages != corpus.n {
        bail!(
            "{label}: the collection holds {} passages, {} were written",
            stats.passages,
            corpus.n
        );
    }
    let base = corpus.base;
    let recall = dense_recall(
        collection,
        corpus,
        &base.queries[..truth.len() * DIM],
        truth,
    )?;
    eprintln!("bench scale: {label}: dense recall@{K} {recall:.4}");
    let vectors: Vec<&[f32]> = base.queries.chunks_exact(DIM).collect();
    let dense = load(&vectors, args.clients, args.seconds, |q| {
        collection.dense(q, K, None)
    })
    .with_context(|| format!("{label}: dense QPS"))?;
    eprintln!(
        "bench scale: {label}: dense {:.0} QPS, p50 {:.1} ms, p99 {:.1} ms",
        dense.qps, dense.p50_ms, dense.p99_ms
    );
    // A few queries, one at a time, before the lexical run (the recall queries warmed the
    // dense route up); PostgreSQL's full-text search takes a second or more a query at 1M.
    for q in base.query_texts.iter().take(LEXICAL_WARM_UP) {
        collection.lexical(q, K, None).context("lexical warm-up")?;
    }
    let lexical = load(&base.query_texts, args.clients, args.seconds, |q| {
        collection.lexical(q, K, None)
    })
    .with_context(|| format!("{label}: lexical QPS"))?;
    eprintln!(
        "bench scale: {label}: lexical {:.0} QPS, p50 {:.1} ms, p99 {:.1} ms",
        lexical.qps, lexical.p50_ms, lexical.p99_ms
    );
    Ok((recall, dense, lexical))
}

fn models() -> IndexModels {
    IndexModels::text(
        &EmbedderInfo {
            id: "sentence-transformers/all-MiniLM-L6-v2".into(),
            dim: DIM,
            kind: EmbeddingKind::Single,
            max_batch: 32,
            max_tokens: 256,
        },
        None,
    )
}

fn per_million(bytes: u64, n: usize) -> f64 {
    bytes as f64 / (n as f64 / 1e6)
}

fn bench_embedded(
    args: &ScaleBenchArgs,
    corpus: &Corpus<'_>,
    truth: &[Vec<usize>],
    work: &Path,
) -> Result<Run> {
    let label = format!("embedded N={}", corpus.n);
    // Removed when this returns, on error too.
    let tmp = tempfile::Builder::new()
        .prefix("embedded-")
        .tempdir_in(work)
        .with_context(|| format!("making a directory in {}", work.display()))?;
    let dir = tmp.path().join("index");
    eprintln!("bench scale: {label}: writing {}", dir.display());
    let writer = StoreWriter::open_with(&dir, models())?;
    let note = " (building the HNSW graph and the BM25 index) ...";
    let timing = ingest(&label, corpus, Box::new(writer), note)?;
    let (disk, ann, bm25) = dir_sizes(&dir)?;
    let memory = open_memory(&dir)?;
    let memory_bytes = memory.rss_after.saturating_sub(memory.rss_before);
    let store = Store::open(&dir)?;
    let (recall, dense, lexical) = measure_queries(args, &label, &store, corpus, truth)?;
    drop(store);
    tmp.close()
        .with_context(|| format!("removing {}", dir.display()))?;
    let sizes = Sizes {
        disk,
        hnsw: ann,
        lexical_index: bm25,
        memory: memory_bytes,
        memory_measured_as: format!(
            "VmRSS growth over Store::open + one dense and one lexical query, in a fresh \
             process ({:.0} -> {:.0} MB)",
            memory.rss_before as f64 / 1e6,
            memory.rss_after as f64 / 1e6
        ),
        shared_buffers: None,
    };
    Ok(Run::new(
        Backend::Embedded,
        corpus,
        &timing,
        (recall, dense, lexical),
        sizes,
    ))
}

/// Runs this program again to measure the embedded store's memory in a fresh process (this
/// one's allocator keeps what the writer freed, which the store would reuse unseen).
fn open_memory(dir: &Path) -> Result<OpenMemory> {
    let exe = std::env::current_exe().context("finding this program to run it again")?;
    let out = Command::new(&exe)
        .args(["bench", "scale", "--measure-open"])
        .arg(dir)
        .output()
        .with_context(|| format!("running {}", exe.display()))?;
    if !out.status.success() {
        bail!(
            "measuring the store's memory failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout).context("reading the memory measurement")
}

/// The `--measure-open` child: RSS before and after opening the store and one query of each
/// route.
fn measure_open(dir: &Path) -> Result<()> {
    let rss_before = rss_bytes().context("no VmRSS in /proc/self/status")?;
    let store = Store::open(dir)?;
    let mut v = vec![1f32; DIM];
    normalise(&mut v);
    std::hint::black_box(store.dense(&v, K, None)?);
    std::hint::black_box(store.lexical("protein expression in cells", K, None)?);
    let rss_after = rss_bytes().context("no VmRSS in /proc/self/status")?;
    println!(
        "{}",
        serde_json::to_string(&OpenMemory {
            rss_before,
            rss_after
        })?
    );
    Ok(())
}

/// A plain connection to the database the bench writes into.
fn pg_client(url: &str) -> Result<postgres::Client> {
    postgres::Client::connect(url, postgres::NoTls)
        .with_context(|| format!("connecting to {}", redact(url)))
}

/// Fails unless the database holds nothing but Folio's tables without documents; then drops
/// those tables, so that each corpus size starts from an empty database.
fn pg_prepare(url: &str) -> Result<()> {
    let mut c = pg_client(url)?;
    let tables: Vec<String> = c
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
               AND n.nspname NOT IN ('pg_catalog', 'information_schema')
               AND n.nspname NOT LIKE 'pg_toast%'",
            &[],
        )
        .context("listing the database's tables")?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let others: Vec<&String> = tables
        .iter()
        .filter(|t| !folio_pg::TABLES.contains(&t.as_str()))
        .collect();
    if !others.is_empty() {
        bail!(
            "--pg {}: the bench writes into this database and needs an empty one, but it holds \
             other tables ({}); create one (CREATE DATABASE folio_scale) and pass its URL",
            redact(url),
            others
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if tables.iter().any(|t| t == "documents") {
        let docs: i64 = c
            .query_one("SELECT count(*) FROM documents", &[])
            .context("counting documents")?
            .get(0);
        if docs > 0 {
            bail!(
                "--pg {}: the bench writes into this database and needs an empty one, but it \
                 holds a Folio collection of {docs} documents; give it an empty database",
                redact(url)
            );
        }
    }
    pg_drop(&mut c)
}

/// Drops Folio's tables and asks for a checkpoint, so that the space goes back.
fn pg_drop(c: &mut postgres::Client) -> Result<()> {
    folio_pg::drop_collection(c).context("dropping Folio's tables")?;
    // Recycles the WAL of the load; needs pg_checkpoint (or superuser): best effort.
    if let Err(e) = c.batch_execute("CHECKPOINT") {
        warn!(error = %e, "CHECKPOINT after dropping the bench's tables failed");
    }
    Ok(())
}

/// Drops the bench's tables when dropped (on error too).
struct PgCleanup<'a>(&'a str);

impl Drop for PgCleanup<'_> {
    fn drop(&mut self) {
        if let Err(e) = pg_client(self.0).and_then(|mut c| pg_drop(&mut c)) {
            warn!(error = %format!("{e:#}"), "could not drop the bench's tables");
        }
    }
}

/// Sizes in the database: (database, HNSW indexes, GIN indexes on passages, shared_buffers).
fn pg_sizes(url: &str) -> Result<(u64, u64, u64, u64)> {
    let mut c = pg_client(url)?;
    let row = c
        .query_one(
            "SELECT pg_database_size(current_database()),
                    (SELECT coalesce(sum(pg_relation_size(format('%I.%I', schemaname, indexname)::regclass)), 0)::bigint
                     FROM pg_indexes WHERE tablename = 'passages' AND indexdef ILIKE '%USING hnsw%'),
                    (SELECT coalesce(sum(pg_relation_size(format('%I.%I', schemaname, indexname)::regclass)), 0)::bigint
                     FROM pg_indexes WHERE tablename = 'passages' AND indexdef ILIKE '%USING gin%'),
                    pg_size_bytes(current_setting('shared_buffers'))",
            &[],
        )
        .context("reading sizes")?;
    let n = |i| row.get::<_, i64>(i).max(0) as u64;
    Ok((n(0), n(1), n(2), n(3)))
}

fn bench_postgres(
    args: &ScaleBenchArgs,
    corpus: &Corpus<'_>,
    truth: &[Vec<usize>],
    url: &str,
) -> Result<Run> {
    let label = format!("postgres N={}", corpus.n);
    pg_prepare(url)?;
    let _cleanup = PgCleanup(url);
    eprintln!("bench scale: {label}: writing into {}", redact(url));
    let writer = PgWriter::open(url, models())?;
    let timing = ingest(
        &label,
        corpus,
        Box::new(writer),
        " (building the HNSW index)",
    )?;
    let (disk, hnsw, gin, shared_buffers) = pg_sizes(url)?;
    let cluster = PgCluster::connect(url, &[], ReadRouting::default())?;
    let (recall, dense, lexical) = measure_queries(args, &label, &cluster, corpus, truth)?;
    let sizes = Sizes {
        disk,
        hnsw,
        lexical_index: gin,
        memory: hnsw,
        memory_measured_as: format!(
            "the HNSW index's size (pg_relation_size), the RAM it needs to stay fast; \
             shared_buffers is {:.0} MB",
            shared_buffers as f64 / 1e6
        ),
        shared_buffers: Some(shared_buffers),
    };
    Ok(Run::new(
        Backend::Postgres,
        corpus,
        &timing,
        (recall, dense, lexical),
        sizes,
    ))
}

fn print_table(r: &Report) {
    println!(
        "{} ({} base rows + {} held-out queries, dim {}): noise {} per component (replica \
         cosine to its base row {:.3}), seed {}\n\
         QPS: {} client threads for {} s per route, k = {K}; recall@{K} of the dense route on \
         {} queries against exact search; ef_search {}; {} cores; {}\n",
        r.vectors,
        r.base_rows,
        r.queries,
        r.dim,
        r.noise,
        r.replica_cosine,
        r.seed,
        r.clients,
        r.seconds,
        r.recall_queries,
        r.ef_search,
        r.cores,
        r.date
    );
    println!(
        "| backend | passages | ingest passages/s | ingest s | dense QPS | dense p50/p99 ms | \
         lexical QPS | lexical p50/p99 ms | recall@10 | disk MB | HNSW MB | memory MB | \
         disk MB per 1M | memory MB per 1M |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mb = |b: u64| b as f64 / 1e6;
    for run in &r.runs {
        println!(
            "| {} | {} | {:.0} | {:.1} | {:.0} | {:.1} / {:.1} | {:.1} | {:.1} / {:.1} | {:.4} | \
             {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
            run.backend.name(),
            run.passages,
            run.ingest_passages_per_s,
            run.ingest_s,
            run.dense.qps,
            run.dense.p50_ms,
            run.dense.p99_ms,
            run.lexical.qps,
            run.lexical.p50_ms,
            run.lexical.p99_ms,
            run.recall_at_10,
            mb(run.disk_bytes),
            mb(run.hnsw_bytes),
            mb(run.memory_bytes),
            run.disk_bytes_per_million / 1e6,
            run.memory_bytes_per_million / 1e6
        );
    }
    println!();
    for run in &r.runs {
        let errors = run.dense.errors + run.lexical.errors;
        println!(
            "{} N={}: memory: {}; lexical index {:.0} MB; commit {:.1} s of the ingest{}",
            run.backend.name(),
            run.passages,
            run.memory_measured_as,
            mb(run.lexical_index_bytes),
            run.commit_s,
            if errors > 0 {
                format!("; {errors} failed queries")
            } else {
                String::new()
            }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(rows: usize) -> Base {
        let mut vectors = vec![0f32; rows * DIM];
        for (i, row) in vectors.chunks_exact_mut(DIM).enumerate() {
            noisy_into(&[0f32; DIM], 1.0, 99, i as u64, row);
        }
        Base {
            vectors,
            texts: (0..rows).map(|i| format!("text {i} é")).collect(),
            queries: Vec::new(),
            query_texts: Vec::new(),
        }
    }

    #[test]
    fn noise_gives_unit_vectors_at_the_stated_cosine() {
        let b = base(50);
        let corpus = Corpus::new(&b, 2000, DEFAULT_NOISE, 1);
        let mut v = vec![0f32; DIM];
        for i in 0..200 {
            corpus.vector_into(i, &mut v);
            let norm = dot(&v, &v).sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "passage {i}: norm {norm}");
        }
        let expected = 1.0 / (1.0 + DIM as f64 * f64::from(DEFAULT_NOISE).powi(2)).sqrt();
        let cos = corpus.replica_cosine(2000);
        assert!((cos - expected).abs() < 0.01, "{cos} against {expected}");
        assert!((0.88..0.92).contains(&cos), "{cos}");
        // The same passage again is the same vector; two copies of a row are not.
        let (mut a, mut c) = (vec![0f32; DIM], vec![0f32; DIM]);
        corpus.vector_into(7, &mut a);
        corpus.vector_into(7, &mut c);
        assert_eq!(a, c);
        corpus.vector_into(57, &mut c);
        assert!(dot(&a, &c) < 0.95, "copies 7 and 57 of row 7 are alike");
        // Without noise a passage is its base row.
        Corpus::new(&b, 100, 0.0, 1).vector_into(57, &mut c);
        assert!((dot(&c, b.row(7)) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn percentiles_are_nearest_rank_in_ms() {
        let mut us: Vec<u32> = (1..=100).rev().map(|v| v * 1000).collect();
        assert_eq!(p50_p99_ms(&mut us), (50.0, 99.0));
        let mut one = vec![2500];
        assert_eq!(p50_p99_ms(&mut one), (2.5, 2.5));
        assert!(p50_p99_ms(&mut []).0.is_nan());
    }

    #[test]
    fn passages_are_grouped_ten_to_a_document_on_two_pages() {
        let b = base(7);
        let corpus = Corpus::new(&b, 25, 0.01, 1);
        assert_eq!(corpus.documents(), 3);
        let mut seen = Vec::new();
        for d in 0..corpus.documents() {
            let g = corpus.document(d);
            let expected = if d == 2 { 5 } else { 10 };
            assert_eq!(g.passages.len(), expected);
            assert_eq!(g.vectors.len(), expected);
            assert_eq!(g.doc.pages, 2);
            assert_eq!(g.pages.len(), 2);
            assert_eq!(DocId::from_content_hash(&g.doc.content_hash), g.doc.doc_id);
            assert_eq!(g.doc.content_hash.len(), 64);
            for p in &g.passages {
                let page = &g.pages[p.page.page as usize - 1];
                let span: String = (page.text.chars())
                    .skip(p.char_start as usize)
                    .take((p.char_end - p.char_start) as usize)
                    .collect();
                assert_eq!(span, p.text);
                let i = corpus
                    .locate(&p.page, p.char_start)
                    .expect("every passage is found again");
                assert_eq!(p.text, corpus.text(i));
                seen.push(i);
            }
        }
        assert_eq!(seen, (0..25).collect::<Vec<_>>());
        // Document 2 holds passages 20..25: three on page 1, two on page 2.
        let pages: Vec<u32> = (corpus.layout(2).iter()).map(|(s, _)| s.page).collect();
        assert_eq!(pages, [1, 1, 1, 2, 2]);
        // Copies past the base rows carry the replica word.
        assert_eq!(corpus.text(3), "text 3 é");
        assert_eq!(corpus.text(10), "text 3 é replica1");
        assert_eq!(corpus.text(24), "text 3 é replica3");
        let other = PageKey {
            doc_id: Corpus::doc_id(9),
            page: 1,
        };
        assert_eq!(corpus.locate(&other, 0), None);
    }

    #[test]
    fn exact_top_k_matches_a_sort_of_all_scores() {
        let b = base(30);
        let corpus = Corpus::new(&b, 95, 0.05, 3);
        let queries: Vec<f32> = b.vectors[..3 * DIM].to_vec();
        for threads in [1, 3] {
            let top = corpus.exact_top_k(&queries, threads);
            for (q, got) in queries.chunks_exact(DIM).zip(&top) {
                let mut all: Vec<(f32, usize)> = (0..95)
                    .map(|i| {
                        let mut v = vec![0f32; DIM];
                        corpus.vector_into(i, &mut v);
                        (dot(&v, q), i)
                    })
                    .collect();
                sort_best_first(&mut all);
                let want: Vec<usize> = all.iter().take(K).map(|&(_, i)| i).collect();
                assert_eq!(got, &want);
            }
        }
    }
}
