//! `folio bench rerank`: throughput and latency of the LLM re-ranker on a synthetic
//! candidate list, optionally next to HF transformers running the same prompts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use folio_core::{Candidate, DocId, FusedHit, PageKey, RerankBudget, Reranker};
use folio_models::llm::{Llm, LoadOptions};
use folio_rerank::{ListwiseRanker, ListwiseSettings, PointwiseRanker, PointwiseSettings};
use serde::Serialize;

use super::{RunArgs, Stats, peer_script, run_peer_script};

#[derive(Args)]
pub struct RerankBenchArgs {
    /// Ranker model: .gguf file, directory with one, HF model directory or id (default:
    /// models/SmolLM2-135M-Instruct-GGUF).
    #[arg(long, env = "FOLIO_RANKER")]
    ranker: Option<String>,
    /// pointwise or listwise.
    #[arg(long, default_value = "pointwise")]
    mode: String,
    /// Candidates per query.
    #[arg(long, default_value_t = 20)]
    candidates: usize,
    /// Tokens per candidate text.
    #[arg(long, default_value_t = 512)]
    tokens: usize,
    /// Pointwise prompts per forward pass.
    #[arg(long, default_value_t = 4)]
    batch_size: usize,
    /// Keep GGUF weights quantized (default: expanded to f32 when that fits in 2 GiB).
    #[arg(long)]
    quantized: bool,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Serialize)]
struct Report {
    model: String,
    mode: String,
    candidates: usize,
    tokens_per_candidate: usize,
    prompt_tokens: usize,
    batch_size: usize,
    threads: usize,
    runs: usize,
    latency_ms: Stats,
    candidates_per_s: f64,
    prompt_tokens_per_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    speedup_vs_peer: Option<f64>,
}

/// Deterministic filler text: sentences from a small vocabulary.
fn filler(seed: usize, words: usize) -> String {
    const VOCAB: [&str; 24] = [
        "revenue", "table", "region", "quarter", "the", "chart", "shows", "growth", "of", "page",
        "report", "annual", "figure", "compares", "rainfall", "across", "and", "data", "model",
        "results", "in", "document", "section", "summary",
    ];
    let mut state = (seed as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..words)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            VOCAB[(state % VOCAB.len() as u64) as usize]
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn rerank(args: RerankBenchArgs, default_ranker: Option<PathBuf>) -> Result<()> {
    let reference = match (&args.ranker, default_ranker) {
        (Some(r), _) => r.clone(),
        (None, Some(p)) => p.display().to_string(),
        (None, None) => bail!(
            "no ranker model: pass --ranker <gguf|dir|hf-id>, or run scripts/fetch-ranker-model.sh"
        ),
    };
    if args.candidates == 0 || args.tokens == 0 || args.run.repeat == 0 {
        bail!("--candidates, --tokens and --repeat must be at least 1");
    }
    let options = LoadOptions {
        dequantize_max_bytes: if args.quantized {
            0
        } else {
            LoadOptions::default().dequantize_max_bytes
        },
    };
    let llm = Arc::new(
        Llm::load(&reference, options, &folio_models::default_device())
            .with_context(|| format!("loading ranker {reference}"))?,
    );
    let candidates: Vec<Candidate> = (0..args.candidates)
        .map(|i| Candidate {
            hit: FusedHit {
                page: PageKey {
                    doc_id: DocId(format!("{i:016x}")),
                    page: 1,
                },
                score: 0.0,
                ranks: BTreeMap::new(),
                passage: None,
            },
            // Twice the words needed; the ranker cuts each text to --tokens tokens.
            text: filler(i, args.tokens * 2),
        })
        .collect();
    let query = "how did revenue grow across regions in the annual report";

    let (ranker, prompts): (Box<dyn Reranker>, Vec<Vec<u32>>) = match args.mode.as_str() {
        "pointwise" => {
            let r = PointwiseRanker::new(
                llm.clone(),
                PointwiseSettings {
                    max_passage_tokens: args.tokens,
                    batch_size: args.batch_size,
                    ..PointwiseSettings::default()
                },
            )?;
            let prompts = candidates
                .iter()
                .map(|c| r.prompt_ids(query, &c.text))
                .collect::<Result<_, _>>()?;
            (Box::new(r), prompts)
        }
        "listwise" => {
            let r = ListwiseRanker::new(
                llm.clone(),
                ListwiseSettings {
                    max_passage_tokens: args.tokens,
                    ..ListwiseSettings::default()
                },
            )?;
            let texts: Vec<&str> = candidates.iter().map(|c| c.text.as_str()).collect();
            let prompts = vec![r.prompt_ids(query, &texts)?];
            (Box::new(r), prompts)
        }
        other => bail!("--mode must be pointwise or listwise, got {other:?}"),
    };
    let prompt_tokens: usize = prompts.iter().map(Vec::len).sum();
    let budget = RerankBudget {
        max_candidates: args.candidates,
        time: Duration::from_secs(24 * 3600),
    };
    eprintln!(
        "bench rerank: {} {} candidates x {} tokens ({prompt_tokens} prompt tokens), model {}",
        args.mode,
        args.candidates,
        args.tokens,
        llm.id()
    );
    ranker.rerank(query, &candidates, budget)?; // warm-up
    let mut times = Vec::with_capacity(args.run.repeat);
    for _ in 0..args.run.repeat {
        let started = Instant::now();
        ranker.rerank(query, &candidates, budget)?;
        times.push(started.elapsed().as_secs_f64());
    }
    let stats = Stats::of_ms(&times);
    let mean = stats.mean / 1e3;

    let peer = match (&args.run.peer, args.mode.as_str()) {
        (Some(python), "pointwise") => Some(run_peer(python, &reference, &prompts, &args)?),
        (Some(_), _) => bail!("--peer runs the pointwise prompts only"),
        (None, _) => None,
    };
    let speedup_vs_peer = peer
        .as_ref()
        .and_then(|p| p["latency_ms"]["mean"].as_f64())
        .map(|peer_ms| peer_ms / stats.mean);
    let report = Report {
        model: llm.id().to_string(),
        mode: args.mode.clone(),
        candidates: args.candidates,
        tokens_per_candidate: args.tokens,
        prompt_tokens,
        batch_size: args.batch_size,
        threads: folio_models::cpu_threads(),
        runs: args.run.repeat,
        candidates_per_s: args.candidates as f64 / mean,
        prompt_tokens_per_s: prompt_tokens as f64 / mean,
        latency_ms: stats,
        peer,
        speedup_vs_peer,
    };
    if args.run.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} {}: {} candidates x {} tokens, batch {}, {} threads",
            report.model,
            report.mode,
            report.candidates,
            report.tokens_per_candidate,
            report.batch_size,
            report.threads
        );
        println!(
            "  latency per query: mean {:.0} ms, min {:.0} ms, max {:.0} ms over {} runs",
            report.latency_ms.mean, report.latency_ms.min, report.latency_ms.max, report.runs
        );
        println!(
            "  {:.2} candidates/s, {:.0} prompt tokens/s",
            report.candidates_per_s, report.prompt_tokens_per_s
        );
        if let (Some(p), Some(s)) = (&report.peer, report.speedup_vs_peer) {
            println!(
                "  HF transformers {}: mean {:.0} ms -> Folio is {s:.2}x its speed",
                p["transformers"].as_str().unwrap_or("?"),
                p["latency_ms"]["mean"].as_f64().unwrap_or(f64::NAN)
            );
        }
    }
    Ok(())
}

/// Runs `scripts/bench/rerank_peer.py` on the same token ids and returns its JSON report.
fn run_peer(
    python: &Path,
    model: &str,
    prompts: &[Vec<u32>],
    args: &RerankBenchArgs,
) -> Result<serde_json::Value> {
    let script = peer_script("rerank_peer.py")?;
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("prompts.json");
    std::fs::write(&input, serde_json::to_string(prompts)?)?;
    let args = [
        "--model".to_string(),
        model.to_string(),
        "--prompts".into(),
        input.display().to_string(),
        "--batch-size".into(),
        args.batch_size.to_string(),
        "--repeat".into(),
        args.run.repeat.to_string(),
        "--threads".into(),
        folio_models::cpu_threads().to_string(),
    ];
    run_peer_script(python, &script, &args)
}
