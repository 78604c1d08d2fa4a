//! Dataset loaders and Folio's bundled sample data.
//!
//! The bundled samples (`datasets/samples/`) are a handful of real, openly licensed PDFs with a
//! small query set whose relevant pages are known: `queries.jsonl` (`{"id", "text"}` per line)
//! and `qrels.tsv` (`query-id`, `corpus-id`, `score`, with a header, BEIR style) where a
//! corpus id is `<file name>#<1-based page>`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

/// Loading a dataset failed; the message names the file and the line.
#[derive(Debug, Error)]
pub enum DatasetError {
    /// A file cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A line is malformed.
    #[error("{path}, line {line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// Relevance judgements: query id -> corpus id -> graded label. A negative label means "in the
/// pool but unjudged" (trec_eval's convention).
pub type Qrels = BTreeMap<String, BTreeMap<String, i64>>;

/// A query of a dataset.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Query {
    /// Query id, as in the qrels.
    pub id: String,
    /// Query text.
    pub text: String,
}

/// The bundled sample set: PDFs, queries and page-level qrels.
#[derive(Debug, Clone)]
pub struct SampleSet {
    /// Directory with the PDFs.
    pub dir: PathBuf,
    /// The queries.
    pub queries: Vec<Query>,
    /// Relevant pages per query; corpus ids are `<file name>#<page>`.
    pub qrels: Qrels,
}

/// The directory of the bundled samples in this source tree.
pub fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("samples")
}

/// The corpus id of a page in the samples' qrels.
pub fn page_corpus_id(path: &str, page: u32) -> String {
    let name = Path::new(path)
        .file_name()
        .map_or_else(|| path.to_string(), |n| n.to_string_lossy().into_owned());
    format!("{name}#{page}")
}

impl SampleSet {
    /// Loads the sample set in `dir` (`queries.jsonl`, `qrels.tsv`, the PDFs).
    pub fn load(dir: &Path) -> Result<Self, DatasetError> {
        Ok(SampleSet {
            dir: dir.to_path_buf(),
            queries: read_queries(&dir.join("queries.jsonl"))?,
            qrels: read_qrels(&dir.join("qrels.tsv"))?,
        })
    }

    /// Loads the samples bundled with this source tree.
    pub fn bundled() -> Result<Self, DatasetError> {
        Self::load(&samples_dir())
    }
}

fn read(path: &Path) -> Result<String, DatasetError> {
    std::fs::read_to_string(path).map_err(|source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a JSONL query file: one `{"id": ..., "text": ...}` per line; blank lines skipped.
pub fn read_queries(path: &Path) -> Result<Vec<Query>, DatasetError> {
    let text = read(path)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let q: Query = serde_json::from_str(line).map_err(|e| DatasetError::Parse {
            path: path.to_path_buf(),
            line: i + 1,
            message: e.to_string(),
        })?;
        out.push(q);
    }
    Ok(out)
}

/// Reads qrels in BEIR TSV (`query-id corpus-id score`, with a header line) or TREC
/// (`qid 0 docid rel`) layout, whitespace- or tab-separated.
pub fn read_qrels(path: &Path) -> Result<Qrels, DatasetError> {
    let text = read(path)?;
    let mut qrels = Qrels::new();
    for (i, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() || (i == 0 && fields[0] == "query-id") {
            continue;
        }
        let parse_err = |message: String| DatasetError::Parse {
            path: path.to_path_buf(),
            line: i + 1,
            message,
        };
        let (qid, doc, rel) = match fields.as_slice() {
            [q, d, r] => (q, d, r),
            [q, _, d, r] => (q, d, r),
            _ => {
                return Err(parse_err(format!(
                    "expected 3 (BEIR) or 4 (TREC) fields, found {}",
                    fields.len()
                )));
            }
        };
        let rel: i64 = rel
            .parse()
            .map_err(|_| parse_err(format!("relevance {rel:?} is not an integer")))?;
        qrels
            .entry(qid.to_string())
            .or_default()
            .insert(doc.to_string(), rel);
    }
    Ok(qrels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_samples_load_and_every_query_has_a_relevant_page() -> Result<(), DatasetError> {
        let set = SampleSet::bundled()?;
        assert!(set.queries.len() >= 8, "{} queries", set.queries.len());
        for q in &set.queries {
            let rel = set.qrels.get(&q.id);
            assert!(
                rel.is_some_and(|r| r.values().any(|&v| v > 0)),
                "{} has no qrels",
                q.id
            );
            for doc in rel.into_iter().flat_map(|r| r.keys()) {
                let file = doc.split('#').next().unwrap_or_default();
                assert!(
                    set.dir.join(file).is_file(),
                    "qrels name missing file {file}"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn qrels_parse_both_layouts_and_name_bad_lines() -> Result<(), Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("folio-qrels-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let beir = dir.join("beir.tsv");
        std::fs::write(&beir, "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\t0\n")?;
        let q = read_qrels(&beir)?;
        assert_eq!(q["q1"]["d1"], 2);
        assert_eq!(q["q1"]["d2"], 0);
        let trec = dir.join("trec.txt");
        std::fs::write(&trec, "q9 0 dx 1\n")?;
        assert_eq!(read_qrels(&trec)?["q9"]["dx"], 1);
        let bad = dir.join("bad.tsv");
        std::fs::write(&bad, "q1 d1 x\n")?;
        let err = read_qrels(&bad)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("line 1") && err.contains("not an integer"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn corpus_ids_use_the_file_name() {
        assert_eq!(page_corpus_id("/a/b/x.pdf", 3), "x.pdf#3");
    }
}
