//! `folio bench serve`: a closed-loop load test of a running `folio serve`. For each client
//! count, that many clients (tokio tasks) each keep one HTTP/1.1 keep-alive connection and send
//! `POST /v1/search` one after another, round-robin over a query file, for a warm-up and then a
//! measured time. Reports throughput, latency percentiles, errors by status, the server's stage
//! timings (from the answers' `timings`) and its peak RSS, as a Markdown table and as JSON.
//!
//! The HTTP client is a small one of its own over `tokio::net::TcpStream`: content-length and
//! chunked bodies, reconnecting after an error or a `connection: close`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};

/// A request unanswered after this is abandoned (its connection closed) as a `timeout` error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Time limit of the service requests (`/healthz`, `/metrics`, the probe search).
const SERVICE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response head (status line and headers) accepted.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Largest response body accepted.
const MAX_BODY_BYTES: usize = 64 << 20;
/// Pause after a transport error before the next try (a down server is not hammered).
const CONNECT_BACKOFF: Duration = Duration::from_millis(50);

/// Options of `folio bench serve`.
#[derive(Args)]
#[command(after_help = "\
Latencies are of 2xx answers, from writing the request to the last byte of the answer (a \
reconnect included); throughput counts 2xx answers per second of the measured time. Errors are \
counted by status code, and as \"io\" (connection or protocol errors) and \"timeout\" (no answer \
in 30 s). The server's peak RSS is its `folio_process_peak_rss_bytes` from GET /metrics after \
each run, else VmHWM of /proc/<--server-pid>/status, else n/a.

The clients cycle through the queries, so a run longer than the query file repeats queries: a \
server with a query-embedding cache (`folio serve --query-cache`, on by default) answers repeats \
without running the embedder. To measure the embedder's path, serve with --query-cache 0.

The benchmark index (~100k passages of BEIR SciFact, bm25 + dense, RRF): \
scripts/bench/serve-corpus.sh OUT_DIR builds it and prints the commands that serve and measure \
it.")]
pub struct ServeBenchArgs {
    /// Base URL of the server (plain http).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Query file: one query a line, as plain text or as a JSON object with a "text" field
    /// (BEIR queries.jsonl), told apart line by line. Default: datasets/samples/queries.jsonl.
    #[arg(long)]
    queries: Option<PathBuf>,
    /// Concurrent clients, comma-separated: one run for each count, in this order.
    #[arg(long, value_delimiter = ',', default_value = "16,64")]
    clients: Vec<usize>,
    /// Measured time of each run, e.g. 500ms, 10s, 2m.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Warm-up before each run (same clients and connections, not measured).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    warmup: Duration,
    /// Hits asked for per search.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Routes to ask for, comma-separated (bm25, dense, page, late); default: the server's.
    #[arg(long, value_delimiter = ',')]
    routes: Vec<String>,
    /// API key, sent as `Authorization: Bearer <key>`.
    #[arg(long, env = "FOLIO_BENCH_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// The server's process id: its peak RSS is read from /proc when GET /metrics has none.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Stop a run after this many measured requests (counted over all its clients).
    #[arg(long)]
    max_requests: Option<u64>,
    /// Threads of the load generator (it shares the CPU with the server when both run on one
    /// machine: one thread drives hundreds of connections).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// Runs `folio bench serve`.
pub fn serve(args: ServeBenchArgs) -> Result<()> {
    if args.clients.is_empty() || args.clients.contains(&0) {
        bail!("--clients needs counts of at least 1, e.g. 16,64");
    }
    if args.duration.is_zero() {
        bail!("--duration must be more than 0");
    }
    if args.threads == 0 {
        bail!("--threads must be at least 1");
    }
    let target = Target::parse(&args.url)?;
    let queries_path = args.queries.clone().unwrap_or_else(default_queries);
    let text = std::fs::read_to_string(&queries_path)
        .with_context(|| format!("reading queries {}", queries_path.display()))?;
    let queries = parse_queries(&text).with_context(|| queries_path.display().to_string())?;
    let mut builder = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(args.threads);
        b
    };
    let runtime = builder
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(args, target, queries_path, queries))
}

/// `datasets/samples/queries.jsonl` under the working directory, else in this source tree.
fn default_queries() -> PathBuf {
    let local = PathBuf::from("datasets/samples/queries.jsonl");
    if local.is_file() {
        return local;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/samples/queries.jsonl")
}

/// Parses a duration with a unit: `500ms`, `10s`, `1.5s`, `2m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 500ms, 10s, 2m)"))?;
    let scale = match unit.trim() {
        "ms" => 1e-3,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "" => return Err(format!("{s:?} needs a unit: ms, s, m or h (e.g. 10s)")),
        other => return Err(format!("{s:?}: unknown unit {other:?} (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(value * scale).map_err(|_| format!("{s:?} is out of range"))
}

/// The queries of a query file: one a line, plain text or a JSON object with a string field
/// `text` (lines starting with `{`); blank lines and empty texts are skipped.
pub fn parse_queries(text: &str) -> Result<Vec<String>> {
    let mut queries = Vec::new();
    for (i, line) in text.trim_start_matches('\u{feff}').lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let query = if line.starts_with('{') {
            let value: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("line {}: not valid JSON", i + 1))?;
            match value.get("text").and_then(serde_json::Value::as_str) {
                Some(t) => t.trim().to_string(),
                None => bail!(
                    "line {}: a JSON line needs a string field \"text\" (BEIR queries.jsonl)",
                    i + 1
                ),
            }
        } else {
            line.to_string()
        };
        if !query.is_empty() {
            queries.push(query);
        }
    }
    if queries.is_empty() {
        bail!("no queries: give one a line, as text or as JSON with a \"text\" field");
    }
    Ok(queries)
}

/// Nearest-rank percentile (`p` in 0..=100) of ascending values: the smallest value with at
/// least `p`% of the values at or below it. `None` when there are none.
pub fn percentile(sorted: &[u32], p: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64 / 100.0).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Where the server is: its address, the `host` header and a path prefix.
#[derive(Debug, Clone, PartialEq)]
struct Target {
    /// `host[:port]` as given, for the `host` header.
    authority: String,
    host: String,
    port: u16,
    /// The URL's path without a trailing slash ("" for none), put before every request path.
    base: String,
}

impl Target {
    /// Parses `http://host[:port][/base]` (IPv6 hosts in brackets).
    fn parse(url: &str) -> Result<Target> {
        let Some((scheme, rest)) = url.trim().split_once("://") else {
            bail!("--url {url:?}: give a URL such as http://127.0.0.1:8080");
        };
        if !scheme.eq_ignore_ascii_case("http") {
            bail!("--url {url:?}: only plain http is supported, not {scheme}");
        }
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if authority.contains('@') {
            bail!("--url {url:?}: credentials in the URL are not supported (use --api-key)");
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let Some((host, after)) = v6.split_once(']') else {
                bail!("--url {url:?}: unclosed [ in the host");
            };
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            bail!("--url {url:?} names no host");
        }
        let port = match port {
            Some(p) => p
                .parse()
                .with_context(|| format!("--url {url:?}: bad port {p:?}"))?,
            None => 80,
        };
        Ok(Target {
            authority: authority.to_string(),
            host: host.to_string(),
            port,
            base: path.trim_end_matches('/').to_string(),
        })
    }

    /// The server's first address.
    async fn resolve(&self) -> Result<SocketAddr> {
        tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .with_context(|| format!("cannot resolve {}", self.host))?
            .next()
            .with_context(|| format!("{} resolves to no address", self.host))
    }

    /// The bytes of a request: `body` as JSON when given, `connection: close` with `close`.
    fn request(&self, method: &str, path: &str, body: Option<&[u8]>, key: Option<&str>) -> Vec<u8> {
        let mut head = format!(
            "{method} {}{path} HTTP/1.1\r\nhost: {}\r\nuser-agent: folio-bench\r\n",
            self.base, self.authority
        );
        if let Some(key) = key {
            head.push_str(&format!("authorization: Bearer {key}\r\n"));
        }
        if let Some(body) = body {
            head.push_str(&format!(
                "content-type: application/json\r\ncontent-length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body.unwrap_or_default());
        bytes
    }
}

/// One parsed HTTP response.
#[derive(Debug, Clone, PartialEq)]
struct Response {
    status: u16,
    body: Vec<u8>,
    /// The server closes the connection after it (`connection: close`, HTTP/1.0, or a body
    /// delimited by the close).
    close: bool,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Parses one response at the start of `buf`: `Ok(None)` while more bytes are needed, else the
/// response and the bytes it took. `eof`: the peer has closed (a body without a length ends
/// there; anything cut short is an error).
fn parse_response(buf: &[u8], eof: bool) -> Result<Option<(Response, usize)>, String> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD_BYTES {
            return Err(format!("response head over {MAX_HEAD_BYTES} bytes"));
        }
        if eof {
            return Err(match buf.is_empty() {
                true => "connection closed before an answer".into(),
                false => "connection closed in the response head".into(),
            });
        }
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1.x response: {status_line:?}"));
    }
    let status: u16 = match parts.next().and_then(|c| c.parse().ok()) {
        Some(s) if (100..=999).contains(&s) => s,
        _ => return Err(format!("bad status line {status_line:?}")),
    };
    let mut close = version == "HTTP/1.0";
    let mut length: Option<usize> = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("bad header line {line:?}"));
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                let n: usize = value
                    .parse()
                    .map_err(|_| format!("bad content-length {value:?}"))?;
                if length.is_some_and(|l| l != n) {
                    return Err("conflicting content-length headers".into());
                }
                length = Some(n);
            }
            "transfer-encoding" => {
                chunked = value
                    .rsplit(',')
                    .next()
                    .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
            }
            "connection" => {
                for token in value.split(',').map(str::trim) {
                    if token.eq_ignore_ascii_case("close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case("keep-alive") {
                        close = false;
                    }
                }
            }
            _ => {}
        }
    }
    let start = head_end + 4;
    let rest = &buf[start..];
    let cut_short = || Err("connection closed in the response body".to_string());
    let (body, used) = if (100..200).contains(&status) || status == 204 || status == 304 {
        (Vec::new(), 0)
    } else if chunked {
        match decode_chunked(rest)? {
            Some(done) => done,
            None if eof => return cut_short(),
            None => return Ok(None),
        }
    } else if let Some(n) = length {
        if n > MAX_BODY_BYTES {
            return Err(format!("response body of {n} bytes is over the limit"));
        }
        match rest.len() >= n {
            true => (rest[..n].to_vec(), n),
            false if eof => return cut_short(),
            false => return Ok(None),
        }
    } else {
        // No length: the body runs to the end of the connection.
        if rest.len() > MAX_BODY_BYTES {
            return Err("response body over the limit".into());
        }
        if !eof {
            return Ok(None);
        }
        close = true;
        (rest.to_vec(), rest.len())
    };
    Ok(Some((
        Response {
            status,
            body,
            close,
        },
        start + used,
    )))
}

/// Decodes a chunked body at the start of `data`: `Ok(None)` while incomplete, else the body
/// and the bytes it took (trailers included).
fn decode_chunked(data: &[u8]) -> Result<Option<(Vec<u8>, usize)>, String> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let Some(end) = find(&data[pos..], b"\r\n") else {
            if data.len() - pos > MAX_HEAD_BYTES {
                return Err("chunk size line too long".into());
            }
            return Ok(None);
        };
        let line = String::from_utf8_lossy(&data[pos..pos + end]);
        let digits = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(digits, 16)
            .ok()
            .filter(|_| !digits.starts_with('+'))
            .ok_or_else(|| format!("bad chunk size {digits:?}"))?;
        pos += end + 2;
        if size == 0 {
            // Trailer lines, up to an empty one.
            loop {
                let Some(end) = find(&data[pos..], b"\r\n") else {
                    if data.len() - pos > MAX_HEAD_BYTES {
                        return Err("chunked trailers too long".into());
                    }
                    return Ok(None);
                };
                pos += end + 2;
                if end == 0 {
                    return Ok(Some((body, pos)));
                }
            }
        }
        if size > MAX_BODY_BYTES - body.len() {
            return Err("chunked body over the limit".into());
        }
        if data.len() < pos + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&data[pos..pos + size]);
        if &data[pos + size..pos + size + 2] != b"\r\n" {
            return Err("chunk not followed by CRLF".into());
        }
        pos += size + 2;
    }
}

/// Why an exchange got no HTTP answer.
#[derive(Debug)]
enum Failure {
    /// Connect, read or write failed, the peer closed early or sent no valid HTTP.
    Io(String),
    /// No answer within the time limit.
    Timeout,
}

impl Failure {
    fn key(&self) -> &'static str {
        match self {
            Failure::Io(_) => "io",
            Failure::Timeout => "timeout",
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Io(e) => f.write_str(e),
            Failure::Timeout => write!(f, "no answer in {} s", REQUEST_TIMEOUT.as_secs()),
        }
    }
}

/// One keep-alive connection.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Result<Conn, Failure> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| Failure::Io(format!("connecting to {addr}: {e}")))?;
        stream
            .set_nodelay(true)
            .map_err(|e| Failure::Io(e.to_string()))?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(16 * 1024),
        })
    }

    /// Sends one request and reads its answer (interim 1xx answers skipped).
    async fn exchange(&mut self, request: &[u8]) -> Result<Response, Failure> {
        let io = |e: std::io::Error| Failure::Io(e.to_string());
        self.buf.clear();
        self.stream.write_all(request).await.map_err(io)?;
        loop {
            if let Some((response, used)) = parse_response(&self.buf, false).map_err(Failure::Io)? {
                self.buf.drain(..used);
                if (100..200).contains(&response.status) {
                    continue;
                }
                return Ok(response);
            }
            self.buf.reserve(16 * 1024);
            if self.stream.read_buf(&mut self.buf).await.map_err(io)? == 0 {
                return match parse_response(&self.buf, true).map_err(Failure::Io)? {
                    Some((response, _)) => Ok(Response {
                        close: true,
                        ..response
                    }),
                    None => Err(Failure::Io("connection closed".into())),
                };
            }
        }
    }
}

/// One request on a fresh connection, within [`SERVICE_TIMEOUT`].
async fn one_shot(addr: SocketAddr, request: &[u8]) -> Result<Response, Failure> {
    let exchange = async {
        let mut conn = Conn::open(addr).await?;
        conn.exchange(request).await
    };
    timeout(SERVICE_TIMEOUT, exchange)
        .await
        .unwrap_or(Err(Failure::Timeout))
}

/// The `message` of a Folio JSON error body, else the body's start.
fn error_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| text.chars().take(200).collect())
}

/// The part of a search answer read for the stage timings.
#[derive(Deserialize)]
struct Answer {
    timings: Option<AnswerTimings>,
}

#[derive(Deserialize)]
struct AnswerTimings {
    #[serde(default)]
    embed_ms: f64,
    #[serde(default)]
    routes_ms: BTreeMap<String, f64>,
    #[serde(default)]
    fuse_ms: f64,
    #[serde(default)]
    rerank_ms: f64,
}

/// What the clients of one run share.
struct Shared {
    addr: SocketAddr,
    /// Ready request bytes, one per query.
    requests: Arc<Vec<Vec<u8>>>,
    /// Requests started from here on are measured (the warm-up ends).
    measure_from: Instant,
    /// No request starts after this.
    until: Instant,
    max_requests: Option<u64>,
    /// Measured requests started.
    started: AtomicU64,
    /// Measured requests finished, and those of them that failed (progress).
    finished: AtomicU64,
    failed: AtomicU64,
}

/// What one client measured.
#[derive(Default)]
struct ClientTally {
    requests: u64,
    /// Latencies of 2xx answers, microseconds.
    latencies_us: Vec<u32>,
    errors: BTreeMap<String, u64>,
    /// Sums of the answers' stage timings (ms) and how many answers had them.
    stages: BTreeMap<String, f64>,
    timed: u64,
    /// Sum of the stages of each timed answer, microseconds.
    server_us: Vec<u32>,
    last_finish: Option<Instant>,
}

impl ClientTally {
    fn add_timings(&mut self, body: &[u8]) {
        let Ok(Answer { timings: Some(t) }) = serde_json::from_slice::<Answer>(body) else {
            return;
        };
        let mut total = t.embed_ms + t.fuse_ms + t.rerank_ms;
        *self.stages.entry("embed".into()).or_default() += t.embed_ms;
        for (route, ms) in &t.routes_ms {
            *self.stages.entry(route.clone()).or_default() += ms;
            total += ms;
        }
        *self.stages.entry("fuse".into()).or_default() += t.fuse_ms;
        *self.stages.entry("rerank".into()).or_default() += t.rerank_ms;
        self.timed += 1;
        self.server_us.push(micros(total / 1e3));
    }
}

fn micros(seconds: f64) -> u32 {
    (seconds * 1e6).round().clamp(0.0, u32::MAX as f64) as u32
}

/// One client: a closed loop over its connection until the run's end.
async fn client(shared: Arc<Shared>, first_query: usize) -> ClientTally {
    let mut tally = ClientTally::default();
    let mut conn: Option<Conn> = None;
    let mut next = first_query;
    loop {
        let started = Instant::now();
        if started >= shared.until {
            break;
        }
        let measured = started >= shared.measure_from;
        if measured
            && let Some(max) = shared.max_requests
            && shared.started.fetch_add(1, Ordering::Relaxed) >= max
        {
            break;
        }
        let request = &shared.requests[next % shared.requests.len()];
        next += 1;
        let attempt = async {
            if conn.is_none() {
                conn = Some(Conn::open(shared.addr).await?);
            }
            match conn.as_mut() {
                Some(c) => c.exchange(request).await,
                None => Err(Failure::Io("no connection".into())),
            }
        };
        let outcome = timeout(REQUEST_TIMEOUT, attempt)
            .await
            .unwrap_or(Err(Failure::Timeout));
        let finished = Instant::now();
        let key = match &outcome {
            Ok(r) if (200..300).contains(&r.status) => None,
            Ok(r) => Some(r.status.to_string()),
            Err(e) => Some(e.key().to_string()),
        };
        match &outcome {
            Ok(r) if !r.close => {}
            _ => conn = None,
        }
        // After a transport error (the server down?) pause before reconnecting.
        let back_off = matches!(&outcome, Err(Failure::Io(_)));
        if measured {
            tally.requests += 1;
            tally.last_finish = Some(finished);
            shared.finished.fetch_add(1, Ordering::Relaxed);
            match (key, &outcome) {
                (None, Ok(response)) => {
                    tally
                        .latencies_us
                        .push(micros(finished.duration_since(started).as_secs_f64()));
                    tally.add_timings(&response.body);
                }
                (key, _) => {
                    *tally.errors.entry(key.unwrap_or_default()).or_default() += 1;
                    shared.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if let Err(e) = &outcome {
            tracing::debug!(error = %e, "request failed");
        }
        if back_off {
            sleep(CONNECT_BACKOFF).await;
        }
    }
    tally
}

/// Latency percentiles in milliseconds.
#[derive(Serialize)]
struct Latency {
    p50: Option<f64>,
    p95: Option<f64>,
    p99: Option<f64>,
    max: Option<f64>,
    mean: Option<f64>,
}

impl Latency {
    fn of(sorted_us: &[u32]) -> Latency {
        let ms = |v: Option<u32>| v.map(|v| f64::from(v) / 1e3);
        Latency {
            p50: ms(percentile(sorted_us, 50.0)),
            p95: ms(percentile(sorted_us, 95.0)),
            p99: ms(percentile(sorted_us, 99.0)),
            max: ms(sorted_us.last().copied()),
            mean: (!sorted_us.is_empty()).then(|| {
                sorted_us.iter().map(|&v| f64::from(v)).sum::<f64>() / sorted_us.len() as f64 / 1e3
            }),
        }
    }
}

/// The server's own stage timings, from the answers' `timings`.
#[derive(Serialize)]
struct ServerStages {
    /// Answers that carried timings.
    answers: u64,
    /// Mean time of each stage (embed, each route, fuse, rerank), ms.
    mean_ms: BTreeMap<String, f64>,
    /// Percentiles of the sum of the stages of each answer, ms.
    total_ms: Latency,
}

/// The results at one client count.
#[derive(Serialize)]
struct Run {
    clients: usize,
    /// Measured requests, failed ones included.
    requests: u64,
    /// 2xx answers.
    ok: u64,
    /// From the end of the warm-up to the last measured answer.
    elapsed_s: f64,
    /// 2xx answers per second.
    throughput_rps: f64,
    latency_ms: Latency,
    /// Failed requests by status code, "io" or "timeout".
    errors: BTreeMap<String, u64>,
    /// The server's peak resident memory after the run.
    peak_rss_bytes: Option<u64>,
    /// Where it was read: "metrics", "proc" or "n/a".
    peak_rss_source: String,
    /// The server's resident memory after the run, where known.
    rss_bytes: Option<u64>,
    server: Option<ServerStages>,
}

#[derive(Serialize)]
struct Report {
    url: String,
    queries_file: String,
    queries: usize,
    k: usize,
    /// Routes asked for (empty: the server's).
    routes: Vec<String>,
    warmup_s: f64,
    duration_s: f64,
    max_requests: Option<u64>,
    load_threads: usize,
    /// The server's GET /healthz answer before the runs.
    healthz: Option<serde_json::Value>,
    runs: Vec<Run>,
}

async fn run(
    args: ServeBenchArgs,
    target: Target,
    queries_path: PathBuf,
    queries: Vec<String>,
) -> Result<()> {
    let addr = target.resolve().await?;
    let key = args.api_key.as_deref();
    let healthz = one_shot(addr, &target.request("GET", "/healthz", None, key))
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot reach {}: {e} (is `folio serve` running there?)",
                args.url
            )
        })?;
    if healthz.status != 200 {
        bail!(
            "{}/healthz answered {}: {}",
            args.url,
            healthz.status,
            error_message(&healthz.body)
        );
    }
    let healthz: Option<serde_json::Value> = serde_json::from_slice(&healthz.body).ok();
    let requests: Vec<Vec<u8>> = queries
        .iter()
        .map(|q| {
            let mut body = serde_json::json!({"query": q, "k": args.k});
            if !args.routes.is_empty() {
                body["routes"] = serde_json::json!(args.routes);
            }
            let body = serde_json::to_vec(&body)?;
            Ok(target.request("POST", "/v1/search", Some(&body), key))
        })
        .collect::<Result<_>>()?;
    // One search first, so that a refused request (a key, a route, k) is one clear error.
    let probe = one_shot(addr, &requests[0])
        .await
        .map_err(|e| anyhow::anyhow!("probe search on {} failed: {e}", args.url))?;
    if !(200..300).contains(&probe.status) {
        bail!(
            "probe search on {} answered {}: {}",
            args.url,
            probe.status,
            error_message(&probe.body)
        );
    }
    eprintln!(
        "bench serve: {} ({} passages), {} queries from {}, warm-up {:.1} s and {:.1} s per run",
        args.url,
        healthz
            .as_ref()
            .and_then(|h| h["passages"].as_u64())
            .map_or("?".to_string(), |n| n.to_string()),
        queries.len(),
        queries_path.display(),
        args.warmup.as_secs_f64(),
        args.duration.as_secs_f64()
    );
    let requests = Arc::new(requests);
    let mut runs = Vec::new();
    for &clients in &args.clients {
        let run = run_clients(&args, addr, &requests, clients).await?;
        let (peak, source, rss) = server_memory(&target, addr, key, args.server_pid).await;
        eprintln!(
            "bench serve: {clients} clients: {} requests, {} ok, {:.1} req/s, p50 {} ms, p99 {} ms, {} errors",
            run.requests,
            run.ok,
            run.throughput_rps,
            fmt_ms(run.latency.p50),
            fmt_ms(run.latency.p99),
            run.requests - run.ok
        );
        runs.push(Run {
            clients,
            requests: run.requests,
            ok: run.ok,
            elapsed_s: run.elapsed_s,
            throughput_rps: run.throughput_rps,
            latency_ms: run.latency,
            errors: run.errors,
            peak_rss_bytes: peak,
            peak_rss_source: source.to_string(),
            rss_bytes: rss,
            server: run.server,
        });
    }
    let report = Report {
        url: args.url.clone(),
        queries_file: queries_path.display().to_string(),
        queries: queries.len(),
        k: args.k,
        routes: args.routes.clone(),
        warmup_s: args.warmup.as_secs_f64(),
        duration_s: args.duration.as_secs_f64(),
        max_requests: args.max_requests,
        load_threads: args.threads,
        healthz,
        runs,
    };
    print!("{}", markdown(&report));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// One run's measurements, before the server's memory is read.
struct Measured {
    requests: u64,
    ok: u64,
    elapsed_s: f64,
    throughput_rps: f64,
    latency: Latency,
    errors: BTreeMap<String, u64>,
    server: Option<ServerStages>,
}

/// Warm-up and measured time at one client count.
async fn run_clients(
    args: &ServeBenchArgs,
    addr: SocketAddr,
    requests: &Arc<Vec<Vec<u8>>>,
    clients: usize,
) -> Result<Measured> {
    let begin = Instant::now();
    let measure_from = begin + args.warmup;
    let shared = Arc::new(Shared {
        addr,
        requests: requests.clone(),
        measure_from,
        until: measure_from + args.duration,
        max_requests: args.max_requests,
        started: AtomicU64::new(0),
        finished: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    let n = requests.len();
    let tasks: Vec<_> = (0..clients)
        .map(|i| tokio::spawn(client(shared.clone(), i * n / clients)))
        .collect();
    let total_ms = (args.warmup + args.duration).as_millis() as u64;
    let bar = folio_indexer::progress_bar(total_ms.div_ceil(1000), "s", true);
    let progress = {
        let shared = shared.clone();
        let bar = bar.clone();
        tokio::spawn(async move {
            loop {
                sleep(Duration::from_millis(250)).await;
                let now = Instant::now();
                bar.set_position(now.duration_since(begin).as_secs());
                bar.set_message(match now < shared.measure_from {
                    true => format!("{clients} clients: warming up"),
                    false => format!(
                        "{clients} clients: {} requests, {} errors",
                        shared.finished.load(Ordering::Relaxed),
                        shared.failed.load(Ordering::Relaxed)
                    ),
                });
            }
        })
    };
    let mut tallies = Vec::with_capacity(clients);
    for task in tasks {
        tallies.push(task.await.context("a client task failed")?);
    }
    progress.abort();
    bar.finish_and_clear();

    let mut latencies: Vec<u32> = Vec::new();
    let mut server_us: Vec<u32> = Vec::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut stages: BTreeMap<String, f64> = BTreeMap::new();
    let (mut requests_done, mut timed) = (0, 0);
    let mut last = measure_from;
    for t in tallies {
        requests_done += t.requests;
        latencies.extend(t.latencies_us);
        server_us.extend(t.server_us);
        for (k, v) in t.errors {
            *errors.entry(k).or_default() += v;
        }
        for (k, v) in t.stages {
            *stages.entry(k).or_default() += v;
        }
        timed += t.timed;
        last = last.max(t.last_finish.unwrap_or(measure_from));
    }
    latencies.sort_unstable();
    server_us.sort_unstable();
    let elapsed_s = last.duration_since(measure_from).as_secs_f64();
    let ok = latencies.len() as u64;
    let server = (timed > 0).then(|| ServerStages {
        answers: timed,
        mean_ms: stages
            .into_iter()
            .map(|(k, v)| (k, v / timed as f64))
            .collect(),
        total_ms: Latency::of(&server_us),
    });
    Ok(Measured {
        requests: requests_done,
        ok,
        elapsed_s,
        throughput_rps: if elapsed_s > 0.0 {
            ok as f64 / elapsed_s
        } else {
            0.0
        },
        latency: Latency::of(&latencies),
        errors,
        server,
    })
}

/// The server's peak RSS (and current RSS): GET /metrics, else /proc/<pid>/status.
async fn server_memory(
    target: &Target,
    addr: SocketAddr,
    key: Option<&str>,
    pid: Option<u32>,
) -> (Option<u64>, &'static str, Option<u64>) {
    let (mut peak, mut rss) = (None, None);
    match one_shot(addr, &target.request("GET", "/metrics", None, key)).await {
        Ok(r) if r.status == 200 => {
            let text = String::from_utf8_lossy(&r.body);
            peak = prometheus_value(&text, "folio_process_peak_rss_bytes");
            rss = prometheus_value(&text, "process_resident_memory_bytes");
        }
        Ok(r) => tracing::debug!(status = r.status, "GET /metrics: no metrics"),
        Err(e) => tracing::debug!(error = %e, "GET /metrics failed"),
    }
    if peak.is_some() {
        return (peak, "metrics", rss);
    }
    if let Some(pid) = pid {
        match std::fs::read_to_string(format!("/proc/{pid}/status")) {
            Ok(status) => {
                if let Some(m) = folio_server::ProcessMemory::from_status(&status) {
                    return (Some(m.peak_rss), "proc", rss.or(Some(m.rss)));
                }
            }
            Err(e) => tracing::warn!(pid, error = %e, "cannot read the server's /proc status"),
        }
    }
    (None, "n/a", rss)
}

/// The value of an unlabelled (or first labelled) sample of `name` in Prometheus text.
fn prometheus_value(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let rest = line.strip_prefix(name)?;
            let rest = match rest.strip_prefix('{') {
                Some(labels) => &labels[labels.find('}')? + 1..],
                None => rest,
            };
            if !rest.starts_with([' ', '\t']) {
                return None; // a longer name with this prefix
            }
            let value: f64 = rest.split_whitespace().next()?.parse().ok()?;
            (value.is_finite() && value >= 0.0).then_some(value as u64)
        })
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1}"))
}

fn fmt_bytes(v: Option<u64>) -> String {
    v.map_or("n/a".into(), |b| {
        format!("{:.0} MiB", b as f64 / (1 << 20) as f64)
    })
}

/// The report as Markdown: the load table, then the server's stage timings.
fn markdown(r: &Report) -> String {
    let mut out = format!(
        "folio bench serve: {}, {} queries from {}, k={}, routes {}, warm-up {:.1} s, {:.1} s per \
         client count{}; load generator on {} thread(s)\n\n",
        r.url,
        r.queries,
        r.queries_file,
        r.k,
        match r.routes.is_empty() {
            true => "(the server's)".to_string(),
            false => r.routes.join(","),
        },
        r.warmup_s,
        r.duration_s,
        r.max_requests
            .map_or(String::new(), |m| format!(" (at most {m} requests)")),
        r.load_threads,
    );
    if let Some(h) = &r.healthz {
        out.push_str(&format!(
            "Index: {} documents, {} passages, routes {}\n\n",
            h["documents"], h["passages"], h["routes"]
        ));
    }
    out.push_str(
        "| clients | requests | req/s | p50 ms | p95 ms | p99 ms | max ms | errors | server peak RSS |\n\
         |---:|---:|---:|---:|---:|---:|---:|---|---:|\n",
    );
    for run in &r.runs {
        let errors = match run.errors.is_empty() {
            true => "0".to_string(),
            false => (run.errors.iter())
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", "),
        };
        let rss = match run.peak_rss_bytes {
            Some(_) => format!(
                "{} ({})",
                fmt_bytes(run.peak_rss_bytes),
                run.peak_rss_source
            ),
            None => "n/a".into(),
        };
        out.push_str(&format!(
            "| {} | {} | {:.1} | {} | {} | {} | {} | {errors} | {rss} |\n",
            run.clients,
            run.requests,
            run.throughput_rps,
            fmt_ms(run.latency_ms.p50),
            fmt_ms(run.latency_ms.p95),
            fmt_ms(run.latency_ms.p99),
            fmt_ms(run.latency_ms.max),
        ));
    }
    let stages: Vec<&String> = {
        let mut names: Vec<&String> = (r.runs.iter())
            .filter_map(|run| run.server.as_ref())
            .flat_map(|s| s.mean_ms.keys())
            .collect();
        let rank = |n: &str| match n {
            "embed" => 0,
            "fuse" => 2,
            "rerank" => 3,
            _ => 1,
        };
        names.sort_by(|a, b| (rank(a), a).cmp(&(rank(b), b)));
        names.dedup();
        names
    };
    if !stages.is_empty() {
        out.push_str(
            "\nServer-side stage timings (means over the 2xx answers' `timings`, ms), and \
             percentiles of their sum per answer:\n\n| clients |",
        );
        for s in &stages {
            out.push_str(&format!(" {s} |"));
        }
        out.push_str(" stages p50 | stages p99 |\n|---:|");
        out.push_str(&"---:|".repeat(stages.len() + 2));
        out.push('\n');
        for run in &r.runs {
            let Some(server) = &run.server else { continue };
            out.push_str(&format!("| {} |", run.clients));
            for s in &stages {
                out.push_str(&format!(" {} |", fmt_ms(server.mean_ms.get(*s).copied())));
            }
            out.push_str(&format!(
                " {} | {} |\n",
                fmt_ms(server.total_ms.p50),
                fmt_ms(server.total_ms.p99)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration(" 2m "), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in ["", "10", "s", "-1s", "10x", "1.2.3s", "ten s", "1e3s"] {
            let e = parse_duration(bad);
            assert!(e.is_err(), "{bad:?} gave {e:?}");
        }
        let e = parse_duration("10").err().unwrap_or_default();
        assert!(e.contains("needs a unit"), "{e}");
        let e = parse_duration("10x").err().unwrap_or_default();
        assert!(e.contains("unknown unit"), "{e}");
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7], 0.0), Some(7));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        // 10 values: p50 is the 5th, p95 rank ceil(9.5) = 10, p10 the 1st.
        let ten: Vec<u32> = (1..=10).map(|v| v * 10).collect();
        assert_eq!(percentile(&ten, 50.0), Some(50));
        assert_eq!(percentile(&ten, 95.0), Some(100));
        assert_eq!(percentile(&ten, 99.0), Some(100));
        assert_eq!(percentile(&ten, 10.0), Some(10));
        assert_eq!(percentile(&ten, 11.0), Some(20));
        assert_eq!(percentile(&ten, 100.0), Some(100));
        // 3 values: p50 rank ceil(1.5) = 2, p95 rank ceil(2.85) = 3.
        assert_eq!(percentile(&[1, 2, 30], 50.0), Some(2));
        assert_eq!(percentile(&[1, 2, 30], 95.0), Some(30));
        // 1..=100: pN is N; 20 values: p95 is the 19th exactly.
        let hundred: Vec<u32> = (1..=100).collect();
        for p in [1, 50, 95, 99, 100] {
            assert_eq!(percentile(&hundred, f64::from(p)), Some(p));
        }
        let twenty: Vec<u32> = (1..=20).collect();
        assert_eq!(percentile(&twenty, 95.0), Some(19));
        let l = Latency::of(&[1000, 2000, 3000, 4000]);
        assert_eq!((l.p50, l.max, l.mean), (Some(2.0), Some(4.0), Some(2.5)));
    }

    #[test]
    fn query_files_mix_text_and_json_lines() -> Result<()> {
        let text = "\u{feff}first query\n\n{\"_id\": \"1\", \"text\": \" second \", \"metadata\": {}}\r\n  third  \n{\"id\": \"q\", \"text\": \"\"}\n";
        assert_eq!(parse_queries(text)?, ["first query", "second", "third"]);
        let e = parse_queries("ok\n{\"query\": \"x\"}\n").err();
        assert!(
            e.is_some_and(|e| e.to_string().contains("line 2") && e.to_string().contains("text"))
        );
        let e = parse_queries("{not json\n").err();
        assert!(e.is_some_and(|e| e.to_string().contains("line 1: not valid JSON")));
        for empty in ["", "\n  \n", "{\"text\": \"  \"}"] {
            let e = parse_queries(empty).err();
            assert!(e.is_some_and(|e| e.to_string().contains("no queries")));
        }
        let samples = std::fs::read_to_string(default_queries())?;
        assert!(parse_queries(&samples)?.len() >= 5);
        Ok(())
    }

    /// Parses `bytes` fed in pieces cut at `cuts`: `None` until the last piece, as a
    /// connection reading them one by one would see.
    fn parse_in_pieces(bytes: &[u8], cuts: &[usize]) -> Result<(Response, usize), String> {
        for &cut in cuts {
            if let Some(done) = parse_response(&bytes[..cut], false)? {
                return Err(format!(
                    "complete after {cut} of {} bytes: {done:?}",
                    bytes.len()
                ));
            }
        }
        parse_response(bytes, false)?.ok_or_else(|| "incomplete".to_string())
    }

    #[test]
    fn content_length_responses_split_anywhere() -> Result<(), String> {
        let bytes = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"hits\":[]}HTTP/1.1 503";
        let whole = 11 + bytes.len() - b"{\"hits\":[]}HTTP/1.1 503".len();
        for cut in 0..whole {
            let (r, used) = parse_in_pieces(&bytes[..whole], &[cut])?;
            assert_eq!(
                (r.status, r.body.as_slice(), r.close),
                (200, &b"{\"hits\":[]}"[..], false)
            );
            assert_eq!(used, whole);
        }
        // A following response's bytes are left over.
        let (_, used) = parse_response(bytes, false)?.ok_or("incomplete")?;
        assert_eq!(&bytes[used..], b"HTTP/1.1 503");
        // Closed before the end of the body: an error, not a short body.
        assert!(parse_response(&bytes[..whole - 1], true).is_err());
        assert!(parse_response(b"", true).is_err());
        Ok(())
    }

    #[test]
    fn chunked_responses_split_anywhere() -> Result<(), String> {
        let bytes = b"HTTP/1.1 429 Too Many Requests\r\ntransfer-encoding: chunked\r\nConnection: close\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\n";
        for cut in 0..bytes.len() {
            let (r, used) = parse_in_pieces(bytes, &[cut])?;
            assert_eq!(
                (r.status, r.body.as_slice(), r.close),
                (429, &b"hello world"[..], true)
            );
            assert_eq!(used, bytes.len());
        }
        // Every byte a read of its own.
        let cuts: Vec<usize> = (0..bytes.len()).collect();
        assert!(parse_in_pieces(bytes, &cuts).is_ok());
        let bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert!(parse_response(bad, false).is_err());
        let bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n";
        assert!(parse_response(bad, false).is_err());
        Ok(())
    }

    #[test]
    fn other_framings_and_bad_heads() -> Result<(), String> {
        // No length: the body runs to the close.
        let bytes = b"HTTP/1.0 200 OK\r\n\r\nall of it";
        assert_eq!(parse_response(bytes, false)?, None);
        let (r, used) = parse_response(bytes, true)?.ok_or("incomplete")?;
        assert_eq!(
            (r.body.as_slice(), r.close, used),
            (&b"all of it"[..], true, bytes.len())
        );
        // HTTP/1.0 with keep-alive; 204 without a body.
        let bytes = b"HTTP/1.0 204 No Content\r\nConnection: keep-alive\r\n\r\n";
        let (r, used) = parse_response(bytes, false)?.ok_or("incomplete")?;
        assert_eq!((r.status, r.close, used), (204, false, bytes.len()));
        for bad in [
            &b"SSH-2.0-OpenSSH\r\n\r\n"[..],
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        ] {
            assert!(
                parse_response(bad, false).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        Ok(())
    }

    #[test]
    fn urls_requests_and_metrics() -> Result<()> {
        let t = Target::parse("http://127.0.0.1:8080")?;
        assert_eq!(
            (t.host.as_str(), t.port, t.base.as_str()),
            ("127.0.0.1", 8080, "")
        );
        let t = Target::parse("HTTP://[::1]:9000/folio/")?;
        assert_eq!(
            (t.host.as_str(), t.port, t.base.as_str()),
            ("::1", 9000, "/folio")
        );
        assert_eq!(Target::parse("http://localhost")?.port, 80);
        for bad in [
            "127.0.0.1:8080",
            "https://x",
            "http://:80",
            "http://x:port",
            "http://[::1",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
        let t = Target::parse("http://localhost:8080/api")?;
        let r = t.request("POST", "/v1/search", Some(b"{}"), Some("k1"));
        assert_eq!(
            String::from_utf8_lossy(&r),
            "POST /api/v1/search HTTP/1.1\r\nhost: localhost:8080\r\nuser-agent: folio-bench\r\n\
             authorization: Bearer k1\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
        );
        let metrics = "# HELP folio_process_peak_rss_bytes Peak RSS.\n\
                       folio_process_peak_rss_bytes_total 1\n\
                       folio_process_peak_rss_bytes 1.2345e8\n\
                       process_resident_memory_bytes{pid=\"1\"} 1000\n";
        assert_eq!(
            prometheus_value(metrics, "folio_process_peak_rss_bytes"),
            Some(123_450_000)
        );
        assert_eq!(
            prometheus_value(metrics, "process_resident_memory_bytes"),
            Some(1000)
        );
        assert_eq!(prometheus_value(metrics, "missing"), None);
        Ok(())
    }
}
