//! Prometheus metrics: request counts and latency by matched route (a bounded label set),
//! search stage latency, ingestion queue depth, index size and process memory.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use folio_search::Timings;
use tracing::debug;

use crate::state::AppState;

/// Latency bucket bounds, in seconds.
const BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Observations at or below each bound of [`BUCKETS`] (not cumulative).
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if let Some(i) = BUCKETS.iter().position(|&b| seconds <= b) {
            self.counts[i] += 1;
        }
        self.sum += seconds;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (bound, n) in BUCKETS.iter().zip(self.counts) {
            cumulative += n;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

/// The server's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// By (matched route, method, status).
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// By matched route.
    request_seconds: Mutex<BTreeMap<String, Histogram>>,
    /// By search stage (`embed`, `fuse`, `rerank`, `route_<name>`).
    stage_seconds: Mutex<BTreeMap<String, Histogram>>,
}

impl Metrics {
    fn record_request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((route.to_string(), method.to_string(), status))
                .or_default() += 1;
        }
        if let Ok(mut m) = self.request_seconds.lock() {
            m.entry(route.to_string()).or_default().observe(seconds);
        }
    }

    /// Records one search's stage timings.
    pub fn record_search(&self, t: &Timings) {
        let Ok(mut m) = self.stage_seconds.lock() else {
            return;
        };
        let mut observe = |stage: String, ms: f64| {
            m.entry(stage).or_default().observe(ms / 1000.0);
        };
        observe("embed".into(), t.embed_ms);
        observe("fuse".into(), t.fuse_ms);
        observe("rerank".into(), t.rerank_ms);
        for (route, ms) in &t.routes_ms {
            observe(format!("route_{route}"), *ms);
        }
    }

    /// The Prometheus text exposition.
    pub(crate) fn render(&self, state: &AppState) -> String {
        let mut out = String::new();
        out.push_str("# HELP folio_http_requests_total HTTP requests by matched route, method and status.\n# TYPE folio_http_requests_total counter\n");
        if let Ok(m) = self.requests.lock() {
            for ((route, method, status), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "folio_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP folio_http_request_duration_seconds HTTP request latency by matched route.\n# TYPE folio_http_request_duration_seconds histogram\n");
        if let Ok(m) = self.request_seconds.lock() {
            for (route, h) in m.iter() {
                h.render(
                    &mut out,
                    "folio_http_request_duration_seconds",
                    &format!("route=\"{route}\""),
                );
            }
        }
        out.push_str("# HELP folio_search_stage_duration_seconds Search latency by stage.\n# TYPE folio_search_stage_duration_seconds histogram\n");
        if let Ok(m) = self.stage_seconds.lock() {
            for (stage, h) in m.iter() {
                h.render(
                    &mut out,
                    "folio_search_stage_duration_seconds",
                    &format!("stage=\"{stage}\""),
                );
            }
        }
        let pipeline = state.index.pipeline();
        let store = pipeline.collection();
        // A database that cannot be read leaves its gauges out.
        let stats = store.stats().ok();
        let gauge = |out: &mut String, name: &str, help: &str, value: f64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        };
        gauge(
            &mut out,
            "folio_ingest_queue_depth",
            "Ingestion tasks waiting to run.",
            state.ingest.as_ref().map_or(0, |i| i.queued()) as f64,
        );
        if let Some(generation) = stats.as_ref().and_then(|s| s.generation) {
            gauge(
                &mut out,
                "folio_index_generation",
                "Generation of the index being served.",
                generation as f64,
            );
        }
        if let Some(s) = &stats {
            gauge(
                &mut out,
                "folio_index_documents",
                "Documents in the served index.",
                s.documents as f64,
            );
            gauge(
                &mut out,
                "folio_index_pages",
                "Pages in the served index.",
                s.pages as f64,
            );
            gauge(
                &mut out,
                "folio_index_passages",
                "Passages in the served index.",
                s.passages as f64,
            );
        }
        if let (Some(dir), Some(generation)) = (store.index_dir(), stats.and_then(|s| s.generation))
        {
            gauge(
                &mut out,
                "folio_index_bytes",
                "Size on disk of the served generation.",
                dir_bytes(&folio_store::generation_dir(dir, generation)) as f64,
            );
        }
        gauge(
            &mut out,
            "folio_requests_in_flight",
            "API requests being served.",
            (state.config.max_concurrent - state.in_flight.available_permits()) as f64,
        );
        if let Some(mem) = ProcessMemory::read() {
            gauge(
                &mut out,
                "process_resident_memory_bytes",
                "Resident memory of the server process.",
                mem.rss as f64,
            );
            gauge(
                &mut out,
                "folio_process_peak_rss_bytes",
                "Peak resident memory of the server process since it started.",
                mem.peak_rss as f64,
            );
        }
        out
    }
}

/// Resident memory now and at its peak, from `/proc/self/status` (Linux).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessMemory {
    /// Resident set size, bytes.
    pub rss: u64,
    /// Peak resident set size, bytes.
    pub peak_rss: u64,
}

impl ProcessMemory {
    /// This process's memory; `None` where `/proc` is missing.
    pub fn read() -> Option<Self> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        Self::from_status(&status)
    }

    /// Parses the text of a `/proc/<pid>/status` file; `None` when a field is missing.
    pub fn from_status(status: &str) -> Option<Self> {
        let kib = |key: &str| -> Option<u64> {
            let line = status.lines().find(|l| l.starts_with(key))?;
            line[key.len()..]
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
                .map(|k| k * 1024)
        };
        Some(ProcessMemory {
            rss: kib("VmRSS:")?,
            peak_rss: kib("VmHWM:")?,
        })
    }
}

/// Total size of the files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Middleware on matched routes: counts the request, times it, and logs it at debug level
/// (`RUST_LOG=folio_server=debug`); headers, and so keys, are never logged.
pub(crate) async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let seconds = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    debug!(%route, %method, status, ms = seconds * 1000.0, "request");
    state
        .metrics
        .record_request(&route, &method, status, seconds);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative() {
        let mut h = Histogram::default();
        for s in [0.0001, 0.003, 0.003, 100.0] {
            h.observe(s);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "a=\"b\"");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.0005\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.005\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"60\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"+Inf\"} 4\n"), "{out}");
        assert!(out.contains("x_count{a=\"b\"} 4\n"), "{out}");
    }

    #[test]
    fn process_memory_parses_proc_status() {
        let status = "Name:\tfolio\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(
            ProcessMemory::from_status(status),
            Some(ProcessMemory {
                rss: 1024 * 1024,
                peak_rss: 2048 * 1024
            })
        );
        assert_eq!(ProcessMemory::from_status("Name: x\n"), None);
    }
}
