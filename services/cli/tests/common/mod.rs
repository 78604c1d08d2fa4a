//! Helpers shared by the `folio` binary's tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the `folio` binary with `args`.
pub fn folio(args: &[&str]) -> anyhow::Result<Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_folio"))
        .args(args)
        .output()?)
}

/// The stdout of a run that must have succeeded; both streams are shown when it did not.
pub fn check(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A path relative to the repository root.
pub fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// A path as an argument (empty when it is not UTF-8, which no test path is).
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}
