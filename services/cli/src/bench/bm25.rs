//! `folio bench bm25`: Folio's BM25 (tantivy, with Folio's scorer where k1 / b differ from
//! tantivy's) against bm25s (PyPI, `--peer`) on the same corpus and queries: build time,
//! index size, queries per second, and the quality both reach on the dataset's judgements.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use folio_datasets::BeirDataset;
use folio_eval::metrics::{EvalOptions, Metric, Run, evaluate};
use folio_store::{Bm25Analyzer, Bm25Index, Bm25Options};
use serde::Serialize;

use super::{RunArgs, best_of, parallel, peer_script, run_peer_script};

#[derive(Args)]
pub struct Bm25BenchArgs {
    /// A dataset in BEIR layout (corpus.jsonl, queries.jsonl, qrels/<split>.tsv).
    #[arg(long)]
    dataset: PathBuf,
    /// The qrels split whose queries are run.
    #[arg(long, default_value = "test")]
    split: String,
    /// Index these texts (one a line) instead of the dataset's corpus: a larger corpus for
    /// speed; quality is then not measured, only the agreement with the peer.
    #[arg(long)]
    passages: Option<PathBuf>,
    /// Results per query.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Analyser: english (stemming), plain or multilingual; the peer stems with english
    /// and not otherwise.
    #[arg(long, default_value = "english")]
    analyzer: String,
    /// BM25 k1.
    #[arg(long, default_value_t = 1.2)]
    k1: f32,
    /// BM25 b.
    #[arg(long, default_value_t = 0.75)]
    b: f32,
    /// Threads of the batch columns (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    #[command(flatten)]
    run: RunArgs,
}

/// One system's figures.
#[derive(Serialize)]
struct System {
    name: String,
    build_s: f64,
    index_bytes: u64,
    /// One query per call, one thread.
    qps: f64,
    /// All queries in one call on one thread (the peer; Folio has no batch call).
    qps_batch_1t: Option<f64>,
    /// All queries on `threads` threads.
    qps_batch: f64,
    /// nDCG@10 and recall@k on the judgements (the dataset's corpus only).
    ndcg_10: Option<f64>,
    recall_k: Option<f64>,
}

#[derive(Serialize)]
struct Report {
    corpus: String,
    docs: usize,
    queries: usize,
    k: usize,
    options: Bm25Options,
    threads: usize,
    repeat: usize,
    peer_version: Option<String>,
    /// Mean share of Folio's top k that the peer also returns.
    overlap_at_k: Option<f64>,
    systems: Vec<System>,
}

pub fn bm25(args: Bm25BenchArgs) -> Result<()> {
    if args.k == 0 || args.run.repeat == 0 {
        bail!("--k and --repeat must be at least 1");
    }
    let options = Bm25Options {
        analyzer: Bm25Analyzer::parse(&args.analyzer)?,
        k1: args.k1,
        b: args.b,
    };
    options.validate()?;
    let dataset = BeirDataset::load(&args.dataset, &args.split)
        .with_context(|| format!("loading {}", args.dataset.display()))?;
    let (corpus, ids, texts): (String, Vec<String>, Vec<String>) = match &args.passages {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let texts: Vec<String> = text.lines().map(str::to_string).collect();
            let ids = (0..texts.len()).map(|i| format!("p{i}")).collect();
            (path.display().to_string(), ids, texts)
        }
        None => (
            format!("{} ({} split)", dataset.dir.display(), dataset.split),
            dataset.corpus.iter().map(|d| d.id.clone()).collect(),
            dataset.corpus.iter().map(|d| d.full_text()).collect(),
        ),
    };
    let judged = args.passages.is_none();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = args.threads.unwrap_or(cores).max(1);
    let queries: Vec<(String, String)> = (dataset.queries.iter())
        .map(|q| (q.id.clone(), q.text.clone()))
        .collect();
    eprintln!(
        "bench bm25: {corpus}: {} texts, {} queries, k {}",
        texts.len(),
        queries.len(),
        args.k
    );

    let tmp = tempfile::tempdir()?;
    let (folio, folio_run) =
        bench_folio(&args, &options, &texts, &ids, &queries, threads, tmp.path())?;
    let mut systems = vec![folio];
    let (mut peer_version, mut overlap_at_k) = (None, None);
    if let Some(python) = &args.run.peer {
        let (system, run, version) = run_peer(
            python,
            &args,
            &options,
            (&ids, &texts),
            &queries,
            threads,
            tmp.path(),
        )?;
        overlap_at_k = Some(overlap(&folio_run, &run, args.k));
        systems.push(system);
        peer_version = Some(version);
        if judged {
            let q = quality(&dataset, &run, args.k);
            let peer = systems.last_mut().context("peer row")?;
            (peer.ndcg_10, peer.recall_k) = (Some(q.0), Some(q.1));
        }
    }
    if judged {
        let q = quality(&dataset, &folio_run, args.k);
        (systems[0].ndcg_10, systems[0].recall_k) = (Some(q.0), Some(q.1));
    }
    let report = Report {
        corpus,
        docs: texts.len(),
        queries: queries.len(),
        k: args.k,
        options,
        threads,
        repeat: args.run.repeat,
        peer_version,
        overlap_at_k,
        systems,
    };
    super::print_report(&report, args.run.json, print_table)
}

/// Builds Folio's index in `tmp/folio` and times its queries; returns the figures and the
/// run of the untimed pass.
fn bench_folio(
    args: &Bm25BenchArgs,
    options: &Bm25Options,
    texts: &[String],
    ids: &[String],
    queries: &[(String, String)],
    threads: usize,
    tmp: &Path,
) -> Result<(System, Run)> {
    let dir = tmp.join("folio");
    let started = Instant::now();
    Bm25Index::build(
        &dir,
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| (i as u64, t.as_str())),
        options,
    )?;
    let build_s = started.elapsed().as_secs_f64();
    let index = Bm25Index::open(&dir, options)?;
    let search = |q: &(String, String)| Ok(index.search(&q.1, args.k)?);
    let answers = queries.iter().map(search).collect::<Result<Vec<_>>>()?;
    let one = best_of(args.run.repeat, || {
        queries.iter().try_for_each(|q| search(q).map(drop))
    })?;
    let batch = best_of(args.run.repeat, || {
        parallel(queries, threads, search).map(drop)
    })?;
    let mut run = Run::default();
    for ((qid, _), hits) in queries.iter().zip(answers) {
        let docs = hits
            .into_iter()
            .filter_map(|(row, score)| {
                let id = ids.get(usize::try_from(row).ok()?)?;
                Some((id.clone(), f64::from(score)))
            })
            .collect();
        run.0.insert(qid.clone(), docs);
    }
    let n = queries.len() as f64;
    let system = System {
        name: format!("Folio ({})", options.analyzer.name()),
        build_s,
        index_bytes: super::scale::dir_sizes(&dir)?.0,
        qps: n / one,
        qps_batch_1t: None,
        qps_batch: n / batch,
        ndcg_10: None,
        recall_k: None,
    };
    Ok((system, run))
}

/// Runs `scripts/bench/bm25_peer.py` on the same texts and queries.
fn run_peer(
    python: &Path,
    args: &Bm25BenchArgs,
    options: &Bm25Options,
    (ids, texts): (&[String], &[String]),
    queries: &[(String, String)],
    threads: usize,
    tmp: &Path,
) -> Result<(System, Run, String)> {
    let script = peer_script("bm25_peer.py")?;
    let write =
        |name: &str, rows: &mut dyn Iterator<Item = (&String, &String)>| -> Result<PathBuf> {
            let path = tmp.join(name);
            let mut out = String::new();
            for (id, text) in rows {
                out.push_str(&serde_json::to_string(
                    &serde_json::json!({"id": id, "text": text}),
                )?);
                out.push('\n');
            }
            std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
            Ok(path)
        };
    let corpus = write("corpus.jsonl", &mut ids.iter().zip(texts))?;
    let query_file = write("queries.jsonl", &mut queries.iter().map(|(i, t)| (i, t)))?;
    let stemmer = if options.analyzer == Bm25Analyzer::English {
        "english"
    } else {
        "none"
    };
    eprintln!("bench bm25: running the bm25s peer ...");
    let p = run_peer_script(
        python,
        &script,
        &[
            "--corpus".into(),
            corpus.display().to_string(),
            "--queries".into(),
            query_file.display().to_string(),
            "--k".into(),
            args.k.to_string(),
            "--k1".into(),
            options.k1.to_string(),
            "--b".into(),
            options.b.to_string(),
            "--stemmer".into(),
            stemmer.into(),
            "--repeat".into(),
            args.run.repeat.to_string(),
            "--threads".into(),
            threads.to_string(),
        ],
    )?;
    let number = |key: &str| {
        p[key]
            .as_f64()
            .with_context(|| format!("the peer's report has no number {key:?}"))
    };
    let mut run = Run::default();
    let results = p["results"]
        .as_object()
        .context("the peer's report has no results")?;
    for (qid, hits) in results {
        let hits: Vec<(String, f64)> = serde_json::from_value(hits.clone())
            .with_context(|| format!("reading the peer's results for query {qid}"))?;
        run.0.insert(qid.clone(), hits);
    }
    let system = System {
        name: "bm25s".into(),
        build_s: number("build_s")?,
        index_bytes: number("index_bytes")? as u64,
        qps: number("qps")?,
        qps_batch_1t: Some(number("qps_batch_1t")?),
        qps_batch: number("qps_batch")?,
        ndcg_10: None,
        recall_k: None,
    };
    let version = format!("bm25s {}", p["version"].as_str().unwrap_or("?"));
    Ok((system, run, version))
}

/// nDCG@10 and recall@k of `run` on the dataset's judgements.
fn quality(dataset: &BeirDataset, run: &Run, k: usize) -> (f64, f64) {
    let e = evaluate(
        &dataset.qrels,
        run,
        &[Metric::Ndcg(Some(10)), Metric::Recall(k)],
        EvalOptions {
            complete: true,
            ..EvalOptions::default()
        },
    );
    (e.mean[0], e.mean[1])
}

/// Mean over queries of |A ∩ B| / k for the two runs' top k (a query missing from either
/// counts as no overlap).
fn overlap(a: &Run, b: &Run, k: usize) -> f64 {
    let empty = Vec::new();
    let mut sum = 0.0;
    for (qid, hits) in &a.0 {
        let theirs: HashSet<&String> =
            b.0.get(qid)
                .unwrap_or(&empty)
                .iter()
                .take(k)
                .map(|h| &h.0)
                .collect();
        let shared = hits
            .iter()
            .take(k)
            .filter(|h| theirs.contains(&h.0))
            .count();
        sum += shared as f64 / k as f64;
    }
    sum / a.0.len().max(1) as f64
}

fn print_table(r: &Report) {
    println!(
        "BM25 on {}: {} texts, {} queries, k {}, analyser {}, k1 {}, b {}; {} threads in the \
         batch column, best of {}{}",
        r.corpus,
        r.docs,
        r.queries,
        r.k,
        r.options.analyzer.name(),
        r.options.k1,
        r.options.b,
        r.threads,
        r.repeat,
        r.peer_version
            .as_ref()
            .map(|v| format!("; peer {v}"))
            .unwrap_or_default()
    );
    println!();
    println!(
        "| system | build | index | QPS, 1 query/call | QPS, batch 1 thread | QPS, batch {} threads | nDCG@10 | recall@{} |",
        r.threads, r.k
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let metric = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
    for s in &r.systems {
        println!(
            "| {} | {:.2} s | {:.1} MB | {:.0} | {} | {:.0} | {} | {} |",
            s.name,
            s.build_s,
            s.index_bytes as f64 / 1e6,
            s.qps,
            s.qps_batch_1t.map_or("-".into(), |q| format!("{q:.0}")),
            s.qps_batch,
            metric(s.ndcg_10),
            metric(s.recall_k)
        );
    }
    if let [folio, peer] = r.systems.as_slice() {
        println!();
        println!(
            "Folio / bm25s: {:.2}x one query a call, {:.2}x batch; top-{} overlap {:.3}",
            folio.qps / peer.qps,
            folio.qps_batch / peer.qps_batch,
            r.k,
            r.overlap_at_k.unwrap_or(0.0)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(rows: &[(&str, &[&str])]) -> Run {
        let mut r = Run::default();
        for (q, docs) in rows {
            let hits = docs.iter().map(|d| (d.to_string(), 1.0)).collect();
            r.0.insert(q.to_string(), hits);
        }
        r
    }

    #[test]
    fn overlap_counts_shared_ids_in_the_top_k() {
        let a = run(&[("q1", &["a", "b", "c"]), ("q2", &["x", "y"])]);
        let b = run(&[("q1", &["c", "a", "z"])]);
        // k = 2: q1's {a, b} against {c, a} shares one; q2 is missing from b.
        assert!((overlap(&a, &b, 2) - 0.25).abs() < 1e-12);
        // k = 3: {a, b, c} against {c, a, z} shares two.
        assert!((overlap(&a, &b, 3) - 1.0 / 3.0).abs() < 1e-12);
    }
}
