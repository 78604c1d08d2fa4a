//! `folio bench ...`: throughput benchmarks that run the peer implementation (HF
//! transformers) in the same command where one exists, and report the ratio.

pub mod ann;
pub mod bm25;
pub mod embed;
pub mod ingest;
pub mod rerank;
pub mod scale;
pub mod serve;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;

/// Options every benchmark takes.
#[derive(Args)]
pub struct RunArgs {
    /// Timed repetitions (after one warm-up).
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Also run the same inputs through HF transformers with this Python (e.g.
    /// scripts/reference/.venv/bin/python; on CUDA in bf16 with sdpa) and report the speed
    /// ratio (and, for embeddings, their agreement).
    #[arg(long)]
    pub peer: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Prints a benchmark's report: as pretty JSON with `json`, else with `table`.
pub fn print_report<R: Serialize>(report: &R, json: bool, table: fn(&R)) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        table(report);
    }
    Ok(())
}

/// Latency statistics in milliseconds.
#[derive(Serialize)]
pub struct Stats {
    pub mean: f64,
    pub min: f64,
    pub max: f64,
}

impl Stats {
    /// Statistics of durations given in seconds.
    pub fn of_ms(seconds: &[f64]) -> Stats {
        let n = seconds.len().max(1) as f64;
        Stats {
            mean: seconds.iter().sum::<f64>() / n * 1e3,
            min: seconds.iter().copied().fold(f64::INFINITY, f64::min) * 1e3,
            max: seconds.iter().copied().fold(0.0, f64::max) * 1e3,
        }
    }
}

/// A peer script of `scripts/bench/`: under the working directory (a checkout copied to
/// another machine), else in this source tree.
pub fn peer_script(name: &str) -> Result<PathBuf> {
    let local = Path::new("scripts/bench").join(name);
    let tree = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts/bench")
        .join(name);
    match [local, tree].into_iter().find(|p| p.is_file()) {
        Some(p) => Ok(p),
        None => bail!("peer script scripts/bench/{name} not found (run from the repository root)"),
    }
}

/// Runs a peer script (`python script args...`) and parses the JSON object it prints; a
/// failure carries the script's stderr.
pub fn run_peer_script(python: &Path, script: &Path, args: &[String]) -> Result<serde_json::Value> {
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "peer {} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("reading the peer's JSON report")
}

/// Runs `f` over `items` split among `threads` scoped threads; results in order.
pub fn parallel<I: Sync, T: Send>(
    items: &[I],
    threads: usize,
    f: impl Fn(&I) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let per = items.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        let f = &f;
        let parts: Vec<_> = (items.chunks(per))
            .map(|chunk| s.spawn(move || chunk.iter().map(f).collect::<Result<Vec<T>>>()))
            .collect();
        let mut all = Vec::with_capacity(items.len());
        for p in parts {
            match p.join() {
                Ok(part) => all.extend(part?),
                Err(_) => bail!("a worker thread panicked"),
            }
        }
        Ok(all)
    })
}

/// Fastest of `repeat` runs of `f`, seconds.
pub fn best_of(repeat: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..repeat {
        let started = Instant::now();
        f()?;
        best = best.min(started.elapsed().as_secs_f64());
    }
    Ok(best)
}
