//! Durable file writes (write, fsync, rename, fsync the directory) and the reading and writing
//! of the index's flat files (JSON lines, little-endian f32).

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{StoreError, io_err};

/// Writes `bytes` to `path` through a temporary file and a rename, syncing file and directory,
/// so that `path` holds either its old or its new content after a crash.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Writes a new file and syncs it (no rename: used inside a not-yet-published generation).
pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let mut f = File::create(path).map_err(io_err(path))?;
    f.write_all(bytes).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

/// Syncs every file under `dir` (recursively) and the directories themselves.
pub(crate) fn sync_tree(dir: &Path) -> Result<(), StoreError> {
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(io_err(&path))?;
        }
    }
    sync_dir(dir)
}

/// Syncs a directory's entries (creations, renames).
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_err(dir))
}

/// Writes `values` as little-endian f32 to a new file and syncs it.
pub(crate) fn write_f32(path: &Path, values: &[f32]) -> Result<(), StoreError> {
    let bytes: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
    write_synced(path, &bytes)
}

/// Reads a file of little-endian f32 that must hold exactly `expected` values.
pub(crate) fn read_f32(path: &Path, expected: usize) -> Result<Vec<f32>, StoreError> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    if bytes.len() != expected * 4 {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            message: format!("{} bytes, expected {} f32 values", bytes.len(), expected),
        });
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// Reads a JSON-lines file.
pub(crate) fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, StoreError> {
    let file = File::open(path).map_err(io_err(path))?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io_err(path))?;
        out.push(
            serde_json::from_str(&line).map_err(|e| StoreError::Corrupt {
                path: path.to_path_buf(),
                message: format!("line {}: {e}", i + 1),
            })?,
        );
    }
    Ok(out)
}

/// Writes `items` as JSON lines to a new file and syncs it.
pub(crate) fn write_jsonl<T: Serialize>(path: &Path, items: &[T]) -> Result<(), StoreError> {
    let mut out = Vec::new();
    for item in items {
        serde_json::to_writer(&mut out, item).map_err(|e| StoreError::Invalid(e.to_string()))?;
        out.push(b'\n');
    }
    write_synced(path, &out)
}
