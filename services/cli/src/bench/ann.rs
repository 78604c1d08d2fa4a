//! `folio bench ann`: build time, memory, recall@10 and queries/s of Folio's HNSW index
//! (usearch, f32/f16/i8 storage) at several ef_search values, and in the same run faiss-cpu
//! HNSW and hnswlib with the same M, ef_construction and ef_search on the same vectors
//! (`--peer`), scored against the same exact top-10; optionally the recall/QPS curves as SVG.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use folio_store::{AnnIndex, AnnMetric, AnnOptions, AnnStorage, ExactIndex};
use serde::{Deserialize, Serialize};

use super::{RunArgs, best_of, parallel, peer_script, run_peer_script};

/// Neighbours per query: the benchmark reports recall@10.
const K: usize = 10;

/// Options of `folio bench ann`.
#[derive(Args)]
pub struct AnnBenchArgs {
    /// Raw little-endian f32 vectors, row-major, `--dim` wide (no header); every row is
    /// L2-normalised on load. The last `--queries` rows are held out as queries.
    #[arg(
        long,
        required_unless_present = "synthetic",
        conflicts_with = "synthetic"
    )]
    vectors: Option<PathBuf>,
    /// Width of the vectors (needed with --vectors; default 384 with --synthetic).
    #[arg(long)]
    dim: Option<usize>,
    /// Instead of a file, N clustered unit vectors from a fixed seed (a quick run).
    #[arg(long, value_name = "N")]
    synthetic: Option<usize>,
    /// Held-out query rows (the last rows; not indexed).
    #[arg(long, default_value_t = 1000)]
    queries: usize,
    /// HNSW M (graph degree).
    #[arg(long, default_value_t = 16)]
    m: usize,
    /// HNSW ef_construction.
    #[arg(long, default_value_t = 128)]
    ef_construction: usize,
    /// ef_search values, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "16,32,64,128,256")]
    ef_search: Vec<usize>,
    /// Folio storages to build, comma-separated: f32, f16, i8.
    #[arg(long, value_delimiter = ',', default_value = "f32,f16,i8")]
    storage: Vec<String>,
    /// With f16 and i8 storage, ask the graph for this many times k candidates and score
    /// them again with the exact f32 rows (1: off), as the store does.
    #[arg(long, default_value_t = AnnOptions::default().rescore)]
    rescore: usize,
    /// Threads of the peers' builds, the ground truth and the batch columns (default: all
    /// cores; Folio's build always uses all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Write the recall@10 / single-thread QPS curves (QPS on a log scale) to this SVG.
    #[arg(long)]
    plot: Option<PathBuf>,
    #[command(flatten)]
    run: RunArgs,
}

/// One system's results (the peer script prints the same fields).
#[derive(Serialize, Deserialize)]
struct System {
    #[serde(default)]
    name: String,
    build_s: f64,
    memory_bytes: u64,
    memory_measured_as: String,
    runs: Vec<EfRun>,
}

/// Recall and speeds at one ef_search; QPS are the best of `--repeat` passes.
#[derive(Serialize, Deserialize)]
struct EfRun {
    ef_search: usize,
    recall: f64,
    /// One query per call, one after another, on one thread.
    qps: f64,
    /// Peers: all queries in one call on one thread (no per-call Python overhead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    qps_batch_1t: Option<f64>,
    /// All queries at once on `threads` threads.
    qps_batch: f64,
    /// Peers: time a single-query call spends outside the engine, estimated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    call_overhead_us: Option<f64>,
}

#[derive(Serialize)]
struct Report {
    vectors: String,
    dim: usize,
    indexed: usize,
    queries: usize,
    m: usize,
    ef_construction: usize,
    threads: usize,
    folio_build_threads: usize,
    repeat: usize,
    ground_truth_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer_versions: Option<String>,
    systems: Vec<System>,
}

/// Runs `folio bench ann`.
pub fn ann(args: AnnBenchArgs) -> Result<()> {
    if args.queries == 0 || args.run.repeat == 0 || args.ef_search.is_empty() {
        bail!("--queries, --repeat and --ef-search need at least one value");
    }
    let storages = (args.storage.iter())
        .map(|s| match s.as_str() {
            "f32" => Ok(AnnStorage::F32),
            "f16" => Ok(AnnStorage::F16),
            "i8" => Ok(AnnStorage::I8),
            other => bail!("--storage takes f32, f16 or i8, got {other:?}"),
        })
        .collect::<Result<Vec<_>>>()?;
    if let Some(python) = &args.run.peer {
        check_peer(python)?;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = args.threads.unwrap_or(cores).max(1);
    let (source, dim, data) = match (&args.vectors, args.synthetic) {
        (Some(path), _) => {
            let dim = args.dim.context("--vectors needs --dim")?;
            (path.display().to_string(), dim, load(path, dim)?)
        }
        (None, Some(n)) => {
            let dim = args.dim.unwrap_or(384);
            (format!("synthetic({n})"), dim, synthetic(n, dim))
        }
        (None, None) => bail!("give --vectors FILE --dim D or --synthetic N"),
    };
    let rows = data.len() / dim.max(1);
    if rows <= args.queries {
        bail!(
            "{source}: {rows} rows, not more than --queries {}",
            args.queries
        );
    }
    let indexed = rows - args.queries;
    let (base, queries) = data.split_at(indexed * dim);
    eprintln!(
        "bench ann: {source}: {indexed} rows indexed, {} queries, dim {dim}",
        args.queries
    );
    let started = Instant::now();
    let truth = ground_truth(base, queries, dim, threads)?;
    let ground_truth_s = started.elapsed().as_secs_f64();

    let tmp = tempfile::tempdir()?;
    let mut systems = Vec::new();
    for storage in storages {
        systems.push(bench_folio(
            &args,
            storage,
            (dim, base, queries),
            &truth,
            threads,
            tmp.path(),
        )?);
    }
    let mut peer_versions = None;
    if let Some(python) = &args.run.peer {
        let p = run_peer(python, &args, dim, &data, &truth, threads, tmp.path())?;
        for (key, name) in [("faiss", "faiss-hnsw"), ("hnswlib", "hnswlib")] {
            let mut s: System = serde_json::from_value(p[key].clone())
                .with_context(|| format!("reading the peer's {key} results"))?;
            s.name = name.into();
            systems.push(s);
        }
        let v = |k: &str| p[k].as_str().unwrap_or("?").to_string();
        peer_versions = Some(format!(
            "faiss-cpu {}, hnswlib {}, numpy {}",
            v("faiss_version"),
            v("hnswlib_version"),
            v("numpy_version")
        ));
    }
    let report = Report {
        vectors: source,
        dim,
        indexed,
        queries: args.queries,
        m: args.m,
        ef_construction: args.ef_construction,
        threads,
        folio_build_threads: cores,
        repeat: args.run.repeat,
        ground_truth_s,
        peer_versions,
        systems,
    };
    if let Some(path) = &args.plot {
        let series: Vec<(String, Vec<(f64, f64)>)> = (report.systems.iter())
            .map(|s| {
                (
                    s.name.clone(),
                    s.runs.iter().map(|r| (r.recall, r.qps)).collect(),
                )
            })
            .collect();
        let title = format!(
            "HNSW M={} efC={}, {indexed} x {dim}: ef_search {:?}",
            args.m, args.ef_construction, args.ef_search
        );
        let svg = folio_eval::plot::line_chart(
            &title,
            ("recall@10", false),
            ("queries/s (one thread)", true),
            &series,
        );
        std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))?;
    }
    super::print_report(&report, args.run.json, print_table)
}

/// Reads a raw little-endian f32 file of `dim`-wide rows and L2-normalises every row.
fn load(path: &Path, dim: usize) -> Result<Vec<f32>> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading vectors {}", path.display()))?;
    if dim == 0 || !bytes.len().is_multiple_of(dim * 4) {
        bail!(
            "{}: {} bytes is not a whole number of rows of {dim} f32 ({} bytes each)",
            path.display(),
            bytes.len(),
            dim * 4
        );
    }
    let mut data: Vec<f32> = (bytes.chunks_exact(4))
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    for row in data.chunks_exact_mut(dim) {
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|x| *x /= norm);
        }
    }
    Ok(data)
}

/// `n` unit vectors around 256 random centres (xorshift from a fixed seed): clustered, as
/// real embeddings are.
fn synthetic(n: usize, dim: usize) -> Vec<f32> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f32 / (1u64 << 53) as f32 - 0.5
    };
    let centres: Vec<f32> = (0..256 * dim).map(|_| uniform()).collect();
    let mut out = Vec::with_capacity(n * dim);
    for i in 0..n {
        let v: Vec<f32> = centres[(i % 256) * dim..][..dim]
            .iter()
            .map(|x| x + 0.8 * uniform())
            .collect();
        let norm = v
            .iter()
            .map(|x| x * x)
            .sum::<f32>()
            .sqrt()
            .max(f32::MIN_POSITIVE);
        out.extend(v.iter().map(|x| x / norm));
    }
    out
}

/// The exact top-`K` row ids of every query, by brute force (`ExactIndex`) on `threads`.
fn ground_truth(
    base: &[f32],
    queries: &[f32],
    dim: usize,
    threads: usize,
) -> Result<Vec<Vec<u64>>> {
    let exact = ExactIndex::new(dim, base.to_vec());
    let rows: Vec<&[f32]> = queries.chunks_exact(dim).collect();
    parallel(&rows, threads, |q| {
        Ok(exact.search(q, K).into_iter().map(|h| h.0).collect())
    })
}

/// Builds Folio's index with one storage and measures every ef_search.
fn bench_folio(
    args: &AnnBenchArgs,
    storage: AnnStorage,
    (dim, base, queries): (usize, &[f32], &[f32]),
    truth: &[Vec<u64>],
    threads: usize,
    tmp: &Path,
) -> Result<System> {
    let mut name = format!("folio-{}", format!("{storage:?}").to_lowercase());
    let options = AnnOptions {
        metric: AnnMetric::InnerProduct,
        storage,
        m: args.m,
        ef_construction: args.ef_construction,
        ef_search: args.ef_search[0],
        rescore: args.rescore,
    };
    if options.rescores() {
        name.push_str(&format!("+rescore{}", options.rescore));
    }
    let started = Instant::now();
    let index = AnnIndex::build(&options, dim, base)?
        .always_use_graph()
        .with_exact_rows(&options, base.to_vec())?;
    let build_s = started.elapsed().as_secs_f64();
    let file = tmp.join(format!("{name}.usearch"));
    index.save(&file)?;
    let saved = std::fs::metadata(&file)?.len();
    std::fs::remove_file(&file)?;
    eprintln!("bench ann: {name} built in {build_s:.1} s");
    let rows: Vec<&[f32]> = queries.chunks_exact(dim).collect();
    let nq = rows.len() as f64;
    let mut runs = Vec::new();
    for &ef in &args.ef_search {
        index.set_ef_search(ef);
        let mut found = 0;
        for (q, t) in rows.iter().zip(truth) {
            found += index
                .search(q, K)?
                .iter()
                .filter(|h| t.contains(&h.0))
                .count();
        }
        let one = best_of(args.run.repeat, || {
            rows.iter()
                .try_for_each(|q| index.search(q, K).map(|h| drop(std::hint::black_box(h))))
                .map_err(anyhow::Error::from)
        })?;
        let batch = best_of(args.run.repeat, || {
            parallel(&rows, threads, |q| Ok(index.search(q, K)?)).map(drop)
        })?;
        runs.push(EfRun {
            ef_search: ef,
            recall: found as f64 / (K as f64 * nq),
            qps: nq / one,
            qps_batch_1t: None,
            qps_batch: nq / batch,
            call_overhead_us: None,
        });
    }
    Ok(System {
        name,
        build_s,
        memory_bytes: index.memory_usage() as u64,
        memory_measured_as: format!(
            "usearch memory_usage(){}; saved file {:.1} MB",
            if options.rescores() {
                " + the f32 rows it re-scores with"
            } else {
                ""
            },
            saved as f64 / 1e6
        ),
        runs,
    })
}

/// Fails early, before the long builds, when the peer's Python or its packages are missing.
fn check_peer(python: &Path) -> Result<()> {
    peer_script("ann_peer.py")?;
    let setup = "create it with scripts/bench/setup-ann-venv.sh";
    let out = std::process::Command::new(python)
        .args(["-c", "import faiss, hnswlib, numpy"])
        .output()
        .with_context(|| format!("peer python {} cannot run: {setup}", python.display()))?;
    if !out.status.success() {
        bail!(
            "peer python {} lacks faiss-cpu, hnswlib or numpy ({}): {setup}",
            python.display(),
            String::from_utf8_lossy(&out.stderr)
                .trim()
                .lines()
                .last()
                .unwrap_or("")
        );
    }
    Ok(())
}

/// Writes the normalised vectors and the exact ids, and runs `scripts/bench/ann_peer.py`.
fn run_peer(
    python: &Path,
    args: &AnnBenchArgs,
    dim: usize,
    data: &[f32],
    truth: &[Vec<u64>],
    threads: usize,
    tmp: &Path,
) -> Result<serde_json::Value> {
    let script = peer_script("ann_peer.py")?;
    let vectors = tmp.join("vectors.f32");
    std::fs::write(
        &vectors,
        data.iter()
            .flat_map(|x| x.to_le_bytes())
            .collect::<Vec<u8>>(),
    )?;
    let ids = tmp.join("truth.u32");
    let id = |i: &u64| u32::try_from(*i).unwrap_or(u32::MAX).to_le_bytes();
    std::fs::write(
        &ids,
        truth.iter().flatten().flat_map(id).collect::<Vec<u8>>(),
    )?;
    let efs: Vec<String> = args.ef_search.iter().map(usize::to_string).collect();
    let peer_args: Vec<String> = [
        ("--vectors", vectors.display().to_string()),
        ("--dim", dim.to_string()),
        ("--queries", args.queries.to_string()),
        ("--truth", ids.display().to_string()),
        ("--m", args.m.to_string()),
        ("--ef-construction", args.ef_construction.to_string()),
        ("--ef-search", efs.join(",")),
        ("--threads", threads.to_string()),
        ("--repeat", args.run.repeat.to_string()),
    ]
    .into_iter()
    .flat_map(|(k, v)| [k.to_string(), v])
    .collect();
    eprintln!(
        "bench ann: running the peers (faiss-cpu, hnswlib): {}",
        script.display()
    );
    run_peer_script(python, &script, &peer_args)
        .context("the ANN peer failed (its venv comes from scripts/bench/setup-ann-venv.sh)")
}

/// The highest QPS (as `qps` reads it) among the runs with recall@10 >= 0.95, with its ef.
fn best_at_095(s: &System, qps: impl Fn(&EfRun) -> Option<f64>) -> Option<(usize, f64)> {
    (s.runs.iter().filter(|r| r.recall >= 0.95))
        .filter_map(|r| Some((r.ef_search, qps(r)?)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

fn print_table(r: &Report) {
    println!(
        "{}: {} rows indexed + {} held-out queries, dim {}, rows L2-normalised on load, inner product\n\
         HNSW M={} ef_construction={}; recall@10 against the exact top-10 ({:.1} s brute force); \
         builds on {} threads (Folio: all {} cores); QPS best of {} passes{}",
        r.vectors,
        r.indexed,
        r.queries,
        r.dim,
        r.m,
        r.ef_construction,
        r.ground_truth_s,
        r.threads,
        r.folio_build_threads,
        r.repeat,
        r.peer_versions
            .as_ref()
            .map_or(String::new(), |v| format!("; peers {v}"))
    );
    println!(
        "\n{:<12} {:>8} {:>10}  memory measured as",
        "system", "build s", "memory MB"
    );
    for s in &r.systems {
        let mb = s.memory_bytes as f64 / 1e6;
        println!(
            "{:<12} {:>8.1} {mb:>10.1}  {}",
            s.name, s.build_s, s.memory_measured_as
        );
    }
    println!(
        "\nQPS 1t: one query per call, one after another, on one thread (peers: called from Python)\n\
         batch 1t: all queries in one call on one thread (peers only)\n\
         batch {0}t: all queries at once on {0} threads\n",
        r.threads
    );
    let batch = format!("batch {}t", r.threads);
    println!("system          ef recall@10    QPS 1t /faiss 1t /faiss b1t  batch 1t {batch:>9}");
    let faiss = r.systems.iter().find(|s| s.name == "faiss-hnsw");
    let ratio = |a: f64, b: Option<f64>| b.map_or("-".into(), |b| format!("{:.2}", a / b));
    for s in &r.systems {
        for run in &s.runs {
            let f = faiss.and_then(|f| f.runs.iter().find(|x| x.ef_search == run.ef_search));
            println!(
                "{:<12} {:>5} {:>9.4} {:>9.0} {:>9} {:>10} {:>9} {:>9.0}",
                s.name,
                run.ef_search,
                run.recall,
                run.qps,
                ratio(run.qps, f.map(|f| f.qps)),
                ratio(run.qps, f.and_then(|f| f.qps_batch_1t)),
                run.qps_batch_1t.map_or("-".into(), |q| format!("{q:.0}")),
                run.qps_batch
            );
        }
    }
    let Some(faiss) = faiss else { return };
    let (Some((f_ef, f_1t)), Some((f_bef, f_b1t))) = (
        best_at_095(faiss, |x| Some(x.qps)),
        best_at_095(faiss, |x| x.qps_batch_1t),
    ) else {
        return println!("\nfaiss reaches recall@10 >= 0.95 at none of these ef_search values");
    };
    println!(
        "\nGoal, at recall@10 >= 0.95 QPS >= faiss (best QPS among runs with recall@10 >= 0.95): \
         faiss {f_1t:.0} QPS 1t (ef {f_ef}), {f_b1t:.0} batch 1t (ef {f_bef})"
    );
    for s in r.systems.iter().filter(|s| s.name.starts_with("folio")) {
        match best_at_095(s, |x| Some(x.qps)) {
            Some((ef, q)) => println!(
                "  {}: {q:.0} QPS 1t (ef {ef}) = {:.2}x faiss 1t, {:.2}x faiss batch 1t: {}",
                s.name,
                q / f_1t,
                q / f_b1t,
                match (q >= f_1t, q >= f_b1t) {
                    (true, true) => "met",
                    (true, false) => "met against faiss 1t, not against its batch 1t",
                    _ => "not met",
                }
            ),
            None => println!(
                "  {}: recall@10 >= 0.95 at none of these ef_search values",
                s.name
            ),
        }
    }
}
