//! Text extraction in a child process, under a time limit and a memory cap.
//!
//! A hostile PDF can make a parser loop or allocate without end; a panic net catches neither.
//! With [`Isolation`], each file's text is extracted by a worker process (the `folio` binary's
//! hidden `extract-worker` command, which calls [`worker_main`]): the worker caps its own
//! address space with `setrlimit(RLIMIT_AS)` before reading the file, and the indexer kills it
//! when the time limit passes. (A stream that inflates to 400 MB takes 828 MB of memory
//! uncapped; under a 256 MiB cap the allocation fails and the page comes back empty.) Either way the file fails alone with a named reason and the
//! batch goes on. The worker answers one JSON object on stdout, `{"pages": [...]}` (each page's
//! text and layout lines, as [`ExtractedPage`]) or `{"error": "..."}`.
//!
//! Page rendering stays in-process (its images are large to pass back); hayro runs behind its
//! own panic net (see [`crate::render`]).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::layout::ExtractedPage;
use crate::pdf;

/// Environment variable that passes the memory cap (bytes) to the worker.
pub const MEMORY_ENV: &str = "FOLIO_WORKER_MEMORY_BYTES";

/// How to run the extraction worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Isolation {
    /// The worker executable.
    pub program: PathBuf,
    /// Arguments before the file path (e.g. `["extract-worker"]`).
    pub args: Vec<String>,
    /// A file whose text is not extracted within this long fails.
    pub time_limit: Duration,
    /// The worker's address-space cap, in bytes.
    pub memory_limit: u64,
}

/// What the worker prints.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum WorkerAnswer {
    Pages(Vec<ExtractedPage>),
    Error(String),
}

/// Extracts the page texts and layouts of `path` in a worker process under `iso`'s limits.
pub fn extract_isolated(iso: &Isolation, path: &Path) -> Result<Vec<ExtractedPage>, String> {
    let mut child = Command::new(&iso.program)
        .args(&iso.args)
        .arg(path)
        .env(MEMORY_ENV, iso.memory_limit.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the extraction worker: {e}"))?;
    // Drain both pipes while waiting, so that a chatty worker never blocks on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut out);
            }
            out
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + iso.time_limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "text extraction took longer than the per-file limit of {} s",
                    iso.time_limit.as_secs_f64()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("lost the extraction worker: {e}")),
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
    match serde_json::from_slice::<WorkerAnswer>(&stdout) {
        Ok(WorkerAnswer::Pages(pages)) if status.success() => Ok(pages),
        Ok(WorkerAnswer::Error(reason)) => Err(reason),
        _ if stderr.contains("memory allocation") || stderr.contains("out of memory") => {
            Err(format!(
                "text extraction exceeded the per-file memory cap of {} MiB",
                iso.memory_limit / (1024 * 1024)
            ))
        }
        _ => {
            let last = stderr.lines().last().unwrap_or("no message").to_string();
            warn!(path = %path.display(), %status, stderr = %last, "extraction worker failed");
            Err(format!("text extraction crashed ({status}): {last}"))
        }
    }
}

/// The worker: caps its memory (from [`MEMORY_ENV`]), extracts `path`, prints the answer.
/// Returns the process exit code.
pub fn worker_main(path: &Path) -> i32 {
    if let Some(limit) = std::env::var(MEMORY_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        && let Err(e) = rlimit::setrlimit(rlimit::Resource::AS, limit, limit)
    {
        eprintln!("cannot cap the worker's memory: {e}");
        return 3;
    }
    let answer = match std::fs::read(path) {
        Ok(bytes) => match pdf::extract_layout(bytes) {
            Ok(pages) => WorkerAnswer::Pages(pages),
            Err(e) => WorkerAnswer::Error(e.to_string()),
        },
        Err(e) => WorkerAnswer::Error(format!("cannot read: {e}")),
    };
    match serde_json::to_writer(std::io::stdout().lock(), &answer) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("cannot write the answer: {e}");
            4
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_carries_the_layout_exactly() -> Result<(), Box<dyn std::error::Error>> {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/samples/multicolumn.pdf");
        let pages = pdf::extract_layout(std::fs::read(path)?)?;
        assert!(pages.iter().all(|p| !p.lines.is_empty()));
        let json = serde_json::to_vec(&WorkerAnswer::Pages(pages.clone()))?;
        match serde_json::from_slice::<WorkerAnswer>(&json)? {
            WorkerAnswer::Pages(back) => assert_eq!(back, pages),
            WorkerAnswer::Error(e) => return Err(e.into()),
        }
        // A page without lines leaves the field out.
        let old = br#"{"pages":[{"text":"one page"}]}"#;
        match serde_json::from_slice::<WorkerAnswer>(old)? {
            WorkerAnswer::Pages(back) => {
                assert_eq!(back, [ExtractedPage::text_only("one page".into())])
            }
            WorkerAnswer::Error(e) => return Err(e.into()),
        }
        Ok(())
    }
}
