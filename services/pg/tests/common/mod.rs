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
        let port = free_ports(3)?;
        let out = Command::new(citus_script())
            .arg("start")
            .arg(dir.path())
            .arg(port.to_string())
            .output()?;
        if !out.status.success() {
            eprintln!(
                "skipped: scripts/pg/citus.sh could not start a Citus cluster: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return Ok(None);
        }
        let stdout = String::from_utf8(out.stdout)?;
        let url = stdout
            .lines()
            .find_map(|l| l.strip_prefix("coordinator="))
            .map(String::from)
            .ok_or_else(|| anyhow::anyhow!("no coordinator URL in {stdout}"))?;
        Ok(Some(Citus { dir, url }))
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
        let port = free_port_pair()?;
        let out = Command::new(script())
            .arg("start")
            .arg(dir.path())
            .arg(port.to_string())
            .output()?;
        if !out.status.success() {
            eprintln!(
                "skipped: scripts/pg/cluster.sh could not start PostgreSQL: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return Ok(None);
        }
        let stdout = String::from_utf8(out.stdout)?;
        let url = |name: &str| -> anyhow::Result<String> {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .map(String::from)
                .ok_or_else(|| anyhow::anyhow!("no {name} URL in {stdout}"))
        };
        Ok(Some(Cluster {
            primary: url("primary")?,
            replica: url("replica")?,
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

/// A loopback port whose successor is free too (the replica's).
fn free_port_pair() -> anyhow::Result<u16> {
    free_ports(2)
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
