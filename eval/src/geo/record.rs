//! Trial records: one JSON line per finished trial, so a run can be resumed.
//!
//! A runner appends a [`TrialRecord`] after each trial ([`append_jsonl`]) and, when it starts,
//! skips the trials already on file ([`read_completed`]). A line counts once its terminating
//! `\n` is written: a run killed in the middle of a write leaves an unterminated last line,
//! which the readers ignore and the next [`append_jsonl`] cuts off before it writes, so the
//! file never holds a half record followed by more records. Any other line that is not a
//! record is an error (the file was damaged some other way).

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tracing::warn;

use super::metrics::TrialOutcome;

/// Reading or writing trial records failed.
#[derive(Debug, Error)]
pub enum RecordError {
    /// The file cannot be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A complete line is not a trial record.
    #[error("{path}, line {line}: not a trial record: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The parser's error.
        source: serde_json::Error,
    },
    /// A record cannot be encoded.
    #[error("cannot encode a trial record: {0}")]
    Encode(#[source] serde_json::Error),
    /// A number in a record is NaN or infinite (JSON would write `null`, which does not read
    /// back as a number).
    #[error("trial record field {0} is not a finite number")]
    NonFinite(String),
}

/// Identifies a trial across a run: (scenario id, attack, defense, trial number).
pub type TrialKey = (String, String, String, u64);

/// Everything recorded about one trial.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TrialRecord {
    /// Scenario id.
    pub scenario: String,
    /// Attack name (`none` for a clean run).
    pub attack: String,
    /// Defense name (`none` without one).
    pub defense: String,
    /// Trial number within the scenario.
    pub trial: u64,
    /// The trial's seed.
    pub seed: u64,
    /// Presentation order: `order[p]` is the candidate index shown at 0-based position `p`.
    pub order: Vec<usize>,
    /// The target's 0-based position in `order`.
    pub target_position: usize,
    /// The target's 1-based rank in the ranker's answer with the clean text.
    pub rank_before: usize,
    /// The target's 1-based rank with the attacked text.
    pub rank_after: usize,
    /// Ranker and attacker calls spent.
    pub calls: u64,
    /// Wall-clock seconds spent.
    pub seconds: f64,
    /// The target's text as the ranker read it after the attack.
    pub attacked_text: String,
    /// Detector verdicts on that text, by detector name.
    #[serde(default)]
    pub flags: BTreeMap<String, bool>,
    /// Detector scores of that text (higher = more suspicious), by detector name.
    #[serde(default)]
    pub scores: BTreeMap<String, f64>,
    /// Fluency of the attacked text (e.g. a language model's log-perplexity), when measured.
    #[serde(default)]
    pub fluency: Option<f64>,
    /// Semantic similarity of the attacked text to the clean one, when measured.
    #[serde(default)]
    pub semantic: Option<f64>,
}

impl TrialRecord {
    /// The trial's key.
    pub fn key(&self) -> TrialKey {
        (
            self.scenario.clone(),
            self.attack.clone(),
            self.defense.clone(),
            self.trial,
        )
    }

    /// The name of the first field holding a NaN or infinite number, if any.
    pub fn non_finite_field(&self) -> Option<String> {
        let bad = |x: f64| !x.is_finite();
        if bad(self.seconds) {
            return Some("seconds".into());
        }
        if let Some((name, _)) = self.scores.iter().find(|(_, s)| bad(**s)) {
            return Some(format!("scores.{name}"));
        }
        if self.fluency.is_some_and(bad) {
            return Some("fluency".into());
        }
        if self.semantic.is_some_and(bad) {
            return Some("semantic".into());
        }
        None
    }

    /// What the metrics need of it.
    pub fn outcome(&self) -> TrialOutcome {
        TrialOutcome {
            scenario: self.scenario.clone(),
            trial: self.trial,
            seed: self.seed,
            rank_before: self.rank_before,
            rank_after: self.rank_after,
            calls: self.calls,
            flags: self.flags.clone(),
            scores: self.scores.clone(),
        }
    }
}

/// The key fields alone, so that reading keys tolerates records of other versions.
#[derive(Deserialize)]
struct KeyFields {
    scenario: String,
    attack: String,
    defense: String,
    trial: u64,
}

/// Appends `record` to `path` (created if missing) as one JSON line, written with a single
/// `write_all` and flushed. A trailing unterminated line (left by a run killed mid-write) is
/// cut off first. A record with a NaN or infinite number is refused
/// ([`RecordError::NonFinite`]) rather than written as a line that would not read back.
pub fn append_jsonl(path: &Path, record: &TrialRecord) -> Result<(), RecordError> {
    let io = |source| RecordError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(field) = record.non_finite_field() {
        return Err(RecordError::NonFinite(field));
    }
    let mut line = serde_json::to_string(record).map_err(RecordError::Encode)?;
    line.push('\n');
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(io)?;
    drop_partial_line(&mut file).map_err(io)?;
    file.write_all(line.as_bytes()).map_err(io)?;
    file.flush().map_err(io)
}

/// The keys of the trials recorded in `path`; an empty set when the file does not exist. An
/// unterminated last line is ignored (logged); any other line that does not parse is an
/// error. Blank lines are skipped.
pub fn read_completed(path: &Path) -> Result<HashSet<TrialKey>, RecordError> {
    let mut done = HashSet::new();
    for_each_line(path, |line, bytes| {
        let k: KeyFields = parse(path, line, bytes)?;
        done.insert((k.scenario, k.attack, k.defense, k.trial));
        Ok(())
    })?;
    Ok(done)
}

/// Every record in `path`, in file order, with [`read_completed`]'s tolerance; an empty list
/// when the file does not exist.
pub fn read_records(path: &Path) -> Result<Vec<TrialRecord>, RecordError> {
    let mut records = Vec::new();
    for_each_line(path, |line, bytes| {
        records.push(parse(path, line, bytes)?);
        Ok(())
    })?;
    Ok(records)
}

fn parse<T: for<'de> Deserialize<'de>>(
    path: &Path,
    line: usize,
    bytes: &[u8],
) -> Result<T, RecordError> {
    serde_json::from_slice(bytes).map_err(|source| RecordError::Parse {
        path: path.to_path_buf(),
        line,
        source,
    })
}

/// Calls `f(1-based line number, bytes)` for each complete, non-blank line of `path`.
fn for_each_line(
    path: &Path,
    mut f: impl FnMut(usize, &[u8]) -> Result<(), RecordError>,
) -> Result<(), RecordError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(RecordError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    // The piece after the last '\n' is empty for a well-terminated file, else a partial line.
    if let Some(tail) = lines.pop()
        && !tail.is_empty()
    {
        warn!(
            "{}: ignoring an unterminated last line ({} bytes) left by an interrupted write",
            path.display(),
            tail.len()
        );
    }
    for (i, line) in lines.into_iter().enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        f(i + 1, line)?;
    }
    Ok(())
}

/// Truncates `file` after its last `\n` (to empty when there is none), unless it already ends
/// with one. Reads backwards in blocks, so a long file costs one small read when it is intact.
fn drop_partial_line(file: &mut File) -> std::io::Result<()> {
    let len = file.metadata()?.len();
    let mut end = len;
    let mut block = [0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        let chunk = &mut block[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            let keep = start + i as u64 + 1;
            if keep < len {
                warn!("dropping an unterminated last line ({} bytes)", len - keep);
                file.set_len(keep)?;
            }
            return Ok(());
        }
        end = start;
    }
    if len > 0 {
        warn!("dropping an unterminated last line ({len} bytes)");
        file.set_len(0)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(scenario: &str, trial: u64) -> TrialRecord {
        TrialRecord {
            scenario: scenario.into(),
            attack: "suffix".into(),
            defense: "none".into(),
            trial,
            seed: 99,
            order: vec![2, 0, 1],
            target_position: 1,
            rank_before: 3,
            rank_after: 1,
            calls: 12,
            seconds: 0.25,
            attacked_text: "Name: A\nDescription: the best ever".into(),
            flags: [("ppl".to_string(), true)].into(),
            scores: [("ppl".to_string(), 3.5)].into(),
            fluency: Some(-2.0),
            semantic: None,
        }
    }

    fn key(scenario: &str, trial: u64) -> TrialKey {
        (scenario.into(), "suffix".into(), "none".into(), trial)
    }

    #[test]
    fn records_round_trip_one_line_each() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("trials.jsonl");
        assert!(read_completed(&path)?.is_empty(), "no file yet");
        let (a, b) = (record("s1", 0), record("s1", 1));
        append_jsonl(&path, &a)?;
        append_jsonl(&path, &b)?;
        let text = std::fs::read_to_string(&path)?;
        assert_eq!(text.lines().count(), 2);
        assert!(text.ends_with('\n'));
        assert_eq!(read_records(&path)?, [a.clone(), b]);
        assert_eq!(
            read_completed(&path)?,
            [key("s1", 0), key("s1", 1)].into_iter().collect()
        );
        let outcome = a.outcome();
        assert_eq!((outcome.rank_before, outcome.rank_after), (3, 1));
        assert_eq!(outcome.flags, a.flags);
        assert_eq!(a.key(), key("s1", 0));
        Ok(())
    }

    #[test]
    fn a_truncated_last_line_is_ignored_then_replaced() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("trials.jsonl");
        append_jsonl(&path, &record("s1", 0))?;
        // A run killed mid-write: half of the second record, no newline.
        let full = serde_json::to_string(&record("s1", 1))?;
        let mut file = OpenOptions::new().append(true).open(&path)?;
        file.write_all(&full.as_bytes()[..full.len() / 2])?;
        drop(file);
        assert_eq!(read_completed(&path)?, [key("s1", 0)].into_iter().collect());
        assert_eq!(read_records(&path)?.len(), 1);
        // The resumed run redoes trial 1; the fragment is cut off, not glued to it.
        append_jsonl(&path, &record("s1", 1))?;
        let text = std::fs::read_to_string(&path)?;
        assert_eq!(text.lines().count(), 2);
        assert_eq!(
            read_completed(&path)?,
            [key("s1", 0), key("s1", 1)].into_iter().collect()
        );
        Ok(())
    }

    #[test]
    fn a_complete_record_without_its_newline_does_not_count() -> anyhow::Result<()> {
        // The write stopped just before '\n': the JSON is whole, but the line is not
        // committed; reader and writer agree that the trial is still to do.
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("trials.jsonl");
        std::fs::write(&path, serde_json::to_string(&record("s1", 0))?)?;
        assert!(read_completed(&path)?.is_empty());
        append_jsonl(&path, &record("s2", 0))?;
        assert_eq!(read_completed(&path)?, [key("s2", 0)].into_iter().collect());
        Ok(())
    }

    #[test]
    fn a_long_partial_tail_is_cut_back_to_the_last_newline() -> anyhow::Result<()> {
        // A tail longer than one read block.
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("trials.jsonl");
        append_jsonl(&path, &record("s1", 0))?;
        let mut file = OpenOptions::new().append(true).open(&path)?;
        file.write_all(&[b'x'; 10_000])?;
        drop(file);
        append_jsonl(&path, &record("s1", 1))?;
        assert_eq!(read_records(&path)?.len(), 2);
        Ok(())
    }

    #[test]
    fn a_damaged_middle_line_is_an_error_naming_it() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("trials.jsonl");
        let good = serde_json::to_string(&record("s1", 0))?;
        std::fs::write(&path, format!("{good}\n\n{{\"scenario\": 1}}\n{good}\n"))?;
        let e = read_completed(&path);
        assert!(
            matches!(e, Err(RecordError::Parse { line: 3, .. })),
            "{e:?}"
        );
        let e = e.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("trials.jsonl, line 3"), "{e}");
        Ok(())
    }

    #[test]
    fn keys_are_read_from_records_with_extra_or_missing_optional_fields() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("trials.jsonl");
        let line = r#"{"scenario":"s","attack":"a","defense":"d","trial":4,"future":true}"#;
        std::fs::write(&path, format!("{line}\n"))?;
        assert_eq!(
            read_completed(&path)?,
            [("s".to_string(), "a".to_string(), "d".to_string(), 4)]
                .into_iter()
                .collect()
        );
        Ok(())
    }

    #[test]
    fn non_finite_numbers_are_refused_when_writing() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("trials.jsonl");
        let mut r = record("s1", 0);
        r.seconds = f64::NAN;
        // serde_json would write NaN as null, which does not read back as f64.
        let e = append_jsonl(&path, &r);
        assert!(
            matches!(&e, Err(RecordError::NonFinite(f)) if f == "seconds"),
            "{e:?}"
        );
        let mut r = record("s1", 0);
        r.scores.insert("judge".into(), f64::INFINITY);
        let e = append_jsonl(&path, &r);
        assert!(
            matches!(&e, Err(RecordError::NonFinite(f)) if f == "scores.judge"),
            "{e:?}"
        );
        let mut r = record("s1", 0);
        r.semantic = Some(f64::NEG_INFINITY);
        assert!(matches!(
            append_jsonl(&path, &r),
            Err(RecordError::NonFinite(_))
        ));
        assert!(read_completed(&path)?.is_empty(), "nothing was written");
        Ok(())
    }
}
