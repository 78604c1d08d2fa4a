//! Dataset loaders and Folio's bundled sample data.
//!
//! - [`BeirDataset`]: the BEIR layout (`corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv`).
//! - [`PageDataset`]: page-image datasets in Parquet (ViDoRe, MMDocIR, M2KR).
//! - [`SampleSet`]: the PDFs bundled with Folio and their page-level qrels.
//!
//! The bundled samples (`datasets/samples/`) are a handful of real, openly licensed PDFs with a
//! small query set whose relevant pages are known: `queries.jsonl` (`{"id", "text"}` per line)
//! and `qrels.tsv` (`query-id`, `corpus-id`, `score`, with a header, BEIR style) where a
//! corpus id is `<file name>#<1-based page>`.

mod pages;
mod table;

pub use pages::{CorpusItem, PageDataset, ParquetLayout, QueryItem};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
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
    /// A column of a Parquet file is missing or of the wrong type.
    #[error("{path}: column {column:?} {message}")]
    Column {
        /// The file.
        path: PathBuf,
        /// The column.
        column: String,
        /// What is wrong.
        message: String,
    },
    /// The files of a dataset do not have the layout asked for.
    #[error("{0}")]
    Layout(String),
    /// A binary file (Parquet) cannot be decoded.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
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
    /// Query id, as in the qrels (`_id` in BEIR files).
    #[serde(alias = "_id")]
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

/// A published result to compare a run with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublishedFigure {
    /// The Folio system it compares with (`bm25`, `dense`).
    pub system: &'static str,
    /// For dense figures: the embedder it was measured with (matched against the embedder id).
    pub model: Option<&'static str>,
    /// Metric name as Folio writes it.
    pub metric: &'static str,
    /// The published value.
    pub value: f64,
    /// Where it is published, with its setup.
    pub source: &'static str,
    /// How that setup differs from Folio's.
    pub setup_difference: &'static str,
}

const BM25_SETUP: &str = "Folio: tantivy BM25 (k1 1.2, b 0.75), English stemming, title and \
    text in one field; Anserini/Pyserini: Lucene BM25 (k1 0.9, b 0.4), Porter stemming";

/// Published figures for a dataset, by its directory name (e.g. `beir-scifact`), as commonly
/// cited (the dataset's README in the shared data lists them); empty for datasets without any.
/// Check the primary source before quoting one.
pub fn published_figures(dataset: &str) -> Vec<PublishedFigure> {
    let name = dataset.to_ascii_lowercase();
    if !name.contains("scifact") {
        return Vec::new();
    }
    vec![
        PublishedFigure {
            system: "bm25",
            model: None,
            metric: "ndcg@10",
            value: 0.665,
            source: "BEIR paper (Thakur et al., 2021), Anserini multifield index",
            setup_difference: BM25_SETUP,
        },
        PublishedFigure {
            system: "bm25",
            model: None,
            metric: "ndcg@10",
            value: 0.679,
            source: "Pyserini BEIR reproduction, flat index (title and text in one field)",
            setup_difference: BM25_SETUP,
        },
        PublishedFigure {
            system: "dense",
            model: Some("all-MiniLM-L6-v2"),
            metric: "ndcg@10",
            value: 0.645,
            source: "MTEB leaderboard, sentence-transformers/all-MiniLM-L6-v2",
            setup_difference: "same model, pooling and truncation; MTEB joins title and text \
                its own way and searches exhaustively, Folio joins them with a newline and \
                searches an HNSW index",
        },
    ]
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

/// A document of a text corpus.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CorpusDoc {
    /// Corpus id, as in the qrels (`_id` in BEIR files).
    #[serde(alias = "_id")]
    pub id: String,
    /// Title; may be empty.
    #[serde(default)]
    pub title: String,
    /// Body text.
    pub text: String,
}

impl CorpusDoc {
    /// Title and text as one string, the way BEIR's dense baselines read a document.
    pub fn full_text(&self) -> String {
        if self.title.trim().is_empty() {
            self.text.clone()
        } else {
            format!("{}\n{}", self.title.trim(), self.text)
        }
    }
}

/// A dataset in BEIR layout, restricted to the queries judged in one split.
#[derive(Debug, Clone)]
pub struct BeirDataset {
    /// Its directory.
    pub dir: PathBuf,
    /// Dataset name (the directory name).
    pub name: String,
    /// The split whose qrels were read.
    pub split: String,
    /// Every corpus document.
    pub corpus: Vec<CorpusDoc>,
    /// The queries that have judgements in the split, in file order.
    pub queries: Vec<Query>,
    /// Judgements of the split.
    pub qrels: Qrels,
}

impl BeirDataset {
    /// Loads `dir/corpus.jsonl`, `dir/queries.jsonl` and `dir/qrels/<split>.tsv`. Queries
    /// without judgements in the split are left out, as BEIR's evaluation does.
    pub fn load(dir: &Path, split: &str) -> Result<Self, DatasetError> {
        let qrels_path = dir.join("qrels").join(format!("{split}.tsv"));
        let qrels = read_qrels(&qrels_path)?;
        let corpus: Vec<CorpusDoc> = read_jsonl(&dir.join("corpus.jsonl"))?;
        let queries: Vec<Query> = read_jsonl::<Query>(&dir.join("queries.jsonl"))?
            .into_iter()
            .filter(|q| qrels.contains_key(&q.id))
            .collect();
        if queries.is_empty() {
            return Err(DatasetError::Parse {
                path: qrels_path,
                line: 1,
                message: "no query of queries.jsonl has judgements in this split".into(),
            });
        }
        Ok(BeirDataset {
            name: dir.file_name().map_or_else(
                || "dataset".to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            dir: dir.to_path_buf(),
            split: split.to_string(),
            corpus,
            queries,
            qrels,
        })
    }
}

fn read(path: &Path) -> Result<String, DatasetError> {
    std::fs::read_to_string(path).map_err(|source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a JSONL query file: one `{"id" or "_id": ..., "text": ...}` per line.
pub fn read_queries(path: &Path) -> Result<Vec<Query>, DatasetError> {
    read_jsonl(path)
}

/// Reads one JSON object per line; blank lines are skipped, unknown fields ignored, and a
/// missing field is an error naming the file and the line.
fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>, DatasetError> {
    let text = read(path)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(line).map_err(|e| DatasetError::Parse {
            path: path.to_path_buf(),
            line: i + 1,
            message: e.to_string(),
        })?);
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
    fn beir_layout_loads_and_errors_name_file_and_line() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        std::fs::create_dir_all(d.join("qrels"))?;
        std::fs::write(
            d.join("corpus.jsonl"),
            "{\"_id\": \"c1\", \"title\": \"T\", \"text\": \"body\"}\n\n{\"_id\": \"c2\", \"text\": \"x\", \"metadata\": {}}\n",
        )?;
        std::fs::write(
            d.join("queries.jsonl"),
            "{\"_id\": \"q1\", \"text\": \"first\"}\n{\"_id\": \"q2\", \"text\": \"unjudged\"}\n",
        )?;
        std::fs::write(
            d.join("qrels/test.tsv"),
            "query-id\tcorpus-id\tscore\nq1\tc2\t1\n",
        )?;
        let set = BeirDataset::load(d, "test")?;
        assert_eq!(set.corpus.len(), 2);
        assert_eq!(set.corpus[0].full_text(), "T\nbody");
        assert_eq!(set.corpus[1].full_text(), "x");
        assert_eq!(
            set.queries.len(),
            1,
            "queries without judgements are left out"
        );
        assert_eq!(set.qrels["q1"]["c2"], 1);

        let err = BeirDataset::load(d, "dev")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("dev.tsv"), "{err}");
        std::fs::write(d.join("corpus.jsonl"), "{\"_id\": \"c1\"}\n")?;
        let err = BeirDataset::load(d, "test")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("corpus.jsonl, line 1") && err.contains("text"),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn published_figures_are_found_by_dataset_name() {
        let f = published_figures("beir-SciFact");
        assert_eq!(f.len(), 3);
        assert!(
            f.iter()
                .all(|f| f.metric == "ndcg@10" && (0.0..1.0).contains(&f.value))
        );
        assert!(published_figures("beir-tiny").is_empty());
    }

    #[test]
    fn corpus_ids_use_the_file_name() {
        assert_eq!(page_corpus_id("/a/b/x.pdf", 3), "x.pdf#3");
    }
}
