//! A real PostgreSQL 18 with pgvector for the tests: a primary and a streaming replica that
//! `scripts/pg/cluster.sh` starts on loopback in a temporary directory; and, where the Citus
//! extension is installed, a Citus cluster that `scripts/pg/citus.sh` starts.

// Each test file uses its own part of this module.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg/cluster.sh")
}

fn citus_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg/citus.sh")
}

/// A Citus coordinator and two workers, stopped (and their data removed) on drop.
pub struct Citus {
    dir: tempfile::TempDir,
    /// The coordinator's URL.
    pub url: String,
}

impl Citus {
    /// Starts the three; `None` (with the reason printed) where Citus is not installed.
    pub fn start() -> anyhow::Result<Option<Citus>> {
        let dir = tempfile::tempdir()?;
        let Some(urls) = start_script(&citus_script(), dir.path(), free_ports(3)?, "Citus")? else {
            return Ok(None);
        };
        Ok(Some(Citus {
            url: url(&urls, "coordinator")?,
            dir,
        }))
    }
}

impl Drop for Citus {
    fn drop(&mut self) {
        let _ = Command::new(citus_script())
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

/// A primary and its replica, stopped (and their data removed) on drop.
pub struct Cluster {
    dir: tempfile::TempDir,
    /// The primary's URL.
    pub primary: String,
    /// The replica's URL.
    pub replica: String,
}

impl Cluster {
    /// Starts both; `None` (with the reason printed) where PostgreSQL cannot be installed.
    pub fn start() -> anyhow::Result<Option<Cluster>> {
        let dir = tempfile::tempdir()?;
        let Some(urls) = start_script(&script(), dir.path(), free_ports(2)?, "PostgreSQL")? else {
            return Ok(None);
        };
        Ok(Some(Cluster {
            primary: url(&urls, "primary")?,
            replica: url(&urls, "replica")?,
            dir,
        }))
    }

    /// Runs a cluster.sh action on this cluster.
    pub fn run(&self, action: &str) -> anyhow::Result<()> {
        let out = Command::new(script())
            .arg(action)
            .arg(self.dir.path())
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "cluster.sh {action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.run("stop");
    }
}

/// Runs `script start DIR PORT`; its stdout (`name=url` lines), or `None` with the reason
/// printed where it cannot start `what`.
fn start_script(
    script: &Path,
    dir: &Path,
    port: u16,
    what: &str,
) -> anyhow::Result<Option<String>> {
    let out = Command::new(script)
        .arg("start")
        .arg(dir)
        .arg(port.to_string())
        .output()?;
    if !out.status.success() {
        eprintln!(
            "skipped: {} could not start {what}: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return Ok(None);
    }
    Ok(Some(String::from_utf8(out.stdout)?))
}

/// The URL on the `name=` line of a start script's output.
fn url(stdout: &str, name: &str) -> anyhow::Result<String> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .map(String::from)
        .ok_or_else(|| anyhow::anyhow!("no {name} URL in {stdout}"))
}

/// A free loopback port whose `n - 1` successors are free too.
fn free_ports(n: u16) -> anyhow::Result<u16> {
    for _ in 0..50 {
        let l = TcpListener::bind("127.0.0.1:0")?;
        let port = l.local_addr()?.port();
        let rest_free = (1..n).all(|i| {
            port.checked_add(i)
                .is_some_and(|p| TcpListener::bind(("127.0.0.1", p)).is_ok())
        });
        if rest_free {
            return Ok(port);
        }
    }
    anyhow::bail!("no {n} adjacent free ports")
}
