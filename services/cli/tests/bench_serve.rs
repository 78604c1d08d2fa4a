//! `folio bench serve` against a real `folio serve` on a loopback port: a short bounded run
//! answers every search, and `--max-requests` stops a run by itself.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

mod common;
use common::{repo, s};

/// A `folio serve` process, killed when dropped.
struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(index: &Path, log: PathBuf) -> anyhow::Result<Server> {
        // A free port: bind port 0, read it, let it go.
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(env!("CARGO_BIN_EXE_folio"))
            .args(["serve", "--index", s(index), "--addr"])
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        let mut server = Server { child, port, log };
        server.wait_healthy(Duration::from_secs(120))?;
        Ok(server)
    }

    /// Waits until GET /healthz answers 200.
    fn wait_healthy(&mut self, limit: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait()? {
                bail!("folio serve exited ({status}): {}", self.log_text());
            }
            if self
                .healthz()
                .is_ok_and(|head| head.starts_with("HTTP/1.1 200"))
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "folio serve did not answer /healthz in {limit:?}: {}",
            self.log_text()
        )
    }

    fn healthz(&self) -> anyhow::Result<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(b"GET /healthz HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn bench(server: &Server, json: &Path, extra: &[&str]) -> anyhow::Result<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_folio"))
        .args(["bench", "serve", "--url", &server.url(), "--queries"])
        .arg(repo("datasets/samples/queries.jsonl"))
        .args([
            "--server-pid",
            &server.child.id().to_string(),
            "--json",
            s(json),
        ])
        .args(extra)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!(
            "bench serve failed: {stderr}\n{stdout}\nserver log: {}",
            server.log_text()
        );
    }
    assert!(
        stdout.contains("| clients | requests | req/s | p50 ms |"),
        "{stdout}"
    );
    serde_json::from_str(&std::fs::read_to_string(json)?).context("reading the JSON report")
}

#[test]
fn bench_serve_measures_a_running_server() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let index = tmp.path().join("idx");
    let out = Command::new(env!("CARGO_BIN_EXE_folio"))
        .args(["index", "--no-page-images", "--index", s(&index)])
        .arg(repo("datasets/samples/multicolumn.pdf"))
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = Server::start(&index, tmp.path().join("serve.log"))?;

    let json = tmp.path().join("bench.json");
    let report = bench(
        &server,
        &json,
        &["--clients", "2", "--duration", "2s", "--warmup", "500ms"],
    )?;
    let run = &report["runs"][0];
    assert_eq!(run["clients"], 2, "{report}");
    assert!(
        run["throughput_rps"].as_f64().is_some_and(|t| t > 0.0),
        "{report}"
    );
    assert_eq!(
        run["errors"].as_object().map(|e| e.len()),
        Some(0),
        "{report}"
    );
    assert_eq!(run["ok"], run["requests"], "{report}");
    let (p50, p99, max) = (
        run["latency_ms"]["p50"].as_f64().unwrap_or(-1.0),
        run["latency_ms"]["p99"].as_f64().unwrap_or(-1.0),
        run["latency_ms"]["max"].as_f64().unwrap_or(-1.0),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{report}");
    assert!(
        run["peak_rss_bytes"].as_u64().is_some_and(|b| b > 0),
        "{report}"
    );
    assert!(
        report["healthz"]["passages"]
            .as_u64()
            .is_some_and(|p| p > 0)
    );

    // --max-requests ends a run long before its duration.
    let started = Instant::now();
    let report = bench(
        &server,
        &json,
        &[
            "--clients",
            "3",
            "--duration",
            "10m",
            "--warmup",
            "0s",
            "--max-requests",
            "7",
        ],
    )?;
    assert!(started.elapsed() < Duration::from_secs(120));
    assert_eq!(report["runs"][0]["requests"], 7, "{report}");
    Ok(())
}

#[test]
fn bench_serve_says_when_the_server_is_unreachable() -> anyhow::Result<()> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let out = Command::new(env!("CARGO_BIN_EXE_folio"))
        .args(["bench", "serve", "--duration", "1s", "--url"])
        .arg(format!("http://127.0.0.1:{port}"))
        .output()?;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach") && err.contains("refused"),
        "{err}"
    );
    Ok(())
}
