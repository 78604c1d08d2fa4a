//! Page-image datasets in Parquet: ViDoRe (v1 single table and the BEIR-style layout of later
//! versions), MMDocIR and M2KR, each mapped onto one shape, [`PageDataset`], by a small
//! declaration of which columns hold what. Nothing is downloaded: point the loader at a local
//! copy of the dataset.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::table::Table;
use crate::{DatasetError, Qrels};

/// The layouts [`PageDataset::load`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParquetLayout {
    /// ViDoRe v1: one table of `query` (null for distractor pages), `image`, `image_filename`;
    /// each query's relevant page is its own row's image.
    Vidore,
    /// ViDoRe BEIR layout (v1 `_beir`, v2 with `-` and v3 with `_` in column names):
    /// `corpus`, `queries` and `qrels` tables; graded relevance.
    VidoreBeir,
    /// MMDocIR: `MMDocIR_pages.parquet` (one row per page, JPEG bytes and OCR text) and
    /// `MMDocIR_annotations.jsonl` (questions per document, 0-based pages).
    MmDocIr,
    /// M2KR: `<Task>_data/` (questions with an image path and relevant passage ids) and
    /// `<Task>_passages/` (text passages).
    M2kr,
}

impl std::str::FromStr for ParquetLayout {
    type Err = DatasetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "vidore" => Ok(ParquetLayout::Vidore),
            "vidore-beir" => Ok(ParquetLayout::VidoreBeir),
            "mmdocir" => Ok(ParquetLayout::MmDocIr),
            "m2kr" => Ok(ParquetLayout::M2kr),
            other => Err(DatasetError::Layout(format!(
                "unknown layout {other:?}; known: vidore, vidore-beir, mmdocir, m2kr"
            ))),
        }
    }
}

/// A unit of the corpus: a page image (with its text where the dataset gives one), or a text
/// passage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorpusItem {
    /// Id used by the qrels.
    pub id: String,
    /// Encoded image bytes (PNG, JPEG, ...), when the item is a page image.
    pub image: Option<Vec<u8>>,
    /// Text (OCR or passage content), when given.
    pub text: Option<String>,
}

/// A query: text, an image, or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryItem {
    /// Id used by the qrels.
    pub id: String,
    /// The question or instruction.
    pub text: String,
    /// Encoded image bytes, for image queries whose image was found.
    pub image: Option<Vec<u8>>,
}

/// A page-image (or multimodal) retrieval dataset.
#[derive(Debug, Clone)]
pub struct PageDataset {
    /// Which layout it was read as.
    pub layout: ParquetLayout,
    /// The corpus.
    pub corpus: Vec<CorpusItem>,
    /// The queries with judgements.
    pub queries: Vec<QueryItem>,
    /// Judgements.
    pub qrels: Qrels,
}

/// The Parquet files of `dir/name`: a directory of `*.parquet` (those of `split` when its file
/// names say so, as HF shards do: `test-00000-of-00001.parquet`), or `dir/name.parquet`.
fn parquet_files(dir: &Path, name: &str, split: &str) -> Result<Vec<PathBuf>, DatasetError> {
    let sub = dir.join(name);
    if sub.is_dir() {
        let mut all: Vec<PathBuf> = std::fs::read_dir(&sub)
            .map_err(|source| DatasetError::Io {
                path: sub.clone(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .collect();
        all.sort();
        let of_split: Vec<PathBuf> = all
            .iter()
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(split))
            })
            .cloned()
            .collect();
        let files = if of_split.is_empty() { all } else { of_split };
        if files.is_empty() {
            return Err(DatasetError::Layout(format!(
                "{} has no .parquet file",
                sub.display()
            )));
        }
        return Ok(files);
    }
    let file = dir.join(format!("{name}.parquet"));
    if file.is_file() {
        Ok(vec![file])
    } else {
        Err(DatasetError::Layout(format!(
            "neither {} nor {} exists",
            sub.display(),
            file.display()
        )))
    }
}

fn tables(files: &[PathBuf]) -> Result<Vec<Table>, DatasetError> {
    files.iter().map(|f| Table::read(f)).collect()
}

/// The first of `names` that the table has (datasets spell `corpus-id` or `corpus_id`).
fn pick<'a>(t: &Table, names: &[&'a str]) -> &'a str {
    names.iter().find(|n| t.has(n)).copied().unwrap_or(names[0])
}

fn required<T>(column: Vec<Option<T>>, t: &Table, name: &str) -> Result<Vec<T>, DatasetError> {
    column
        .into_iter()
        .enumerate()
        .map(|(row, v)| v.ok_or_else(|| t.error(name, format!("is null in row {row}"))))
        .collect()
}

impl PageDataset {
    /// Loads the dataset in `dir` (for the ViDoRe v1 layout, `dir` may also be the Parquet
    /// file itself), with the qrels of `split` where the layout has splits.
    pub fn load(layout: ParquetLayout, dir: &Path, split: &str) -> Result<Self, DatasetError> {
        match layout {
            ParquetLayout::Vidore => load_vidore(dir, split),
            ParquetLayout::VidoreBeir => load_vidore_beir(dir, split),
            ParquetLayout::MmDocIr => load_mmdocir(dir),
            ParquetLayout::M2kr => load_m2kr(dir, split),
        }
    }
}

fn load_vidore(path: &Path, split: &str) -> Result<PageDataset, DatasetError> {
    let files = if path.is_file() {
        vec![path.to_path_buf()]
    } else {
        parquet_files(path, "data", split).or_else(|_| parquet_files(path, split, split))?
    };
    let mut corpus = Vec::new();
    let mut seen_pages = HashMap::new();
    let mut query_ids: HashMap<String, String> = HashMap::new();
    let mut queries = Vec::new();
    let mut qrels = Qrels::new();
    for t in tables(&files)? {
        let names = required(t.strings("image_filename")?, &t, "image_filename")?;
        let images = t.binaries("image")?;
        let texts = t.strings("query")?;
        for ((name, image), query) in names.into_iter().zip(images).zip(texts) {
            if !seen_pages.contains_key(&name) {
                seen_pages.insert(name.clone(), corpus.len());
                corpus.push(CorpusItem {
                    id: name.clone(),
                    image,
                    text: None,
                });
            }
            // Rows without a query are distractor pages; a query repeated on several rows
            // is one query with each row's page relevant.
            let Some(text) = query.filter(|q| !q.trim().is_empty()) else {
                continue;
            };
            let id = query_ids
                .entry(text.clone())
                .or_insert_with(|| {
                    let id = format!("q{}", queries.len());
                    queries.push(QueryItem {
                        id: id.clone(),
                        text: text.clone(),
                        image: None,
                    });
                    id
                })
                .clone();
            qrels.entry(id).or_default().insert(name, 1);
        }
    }
    Ok(PageDataset {
        layout: ParquetLayout::Vidore,
        corpus,
        queries,
        qrels,
    })
}

fn load_vidore_beir(dir: &Path, split: &str) -> Result<PageDataset, DatasetError> {
    let mut corpus = Vec::new();
    for t in tables(&parquet_files(dir, "corpus", split)?)? {
        let id_col = pick(&t, &["corpus-id", "corpus_id"]);
        let ids = required(t.strings(id_col)?, &t, id_col)?;
        let images = t.binaries("image")?;
        let texts = if t.has("markdown") {
            t.strings("markdown")?
        } else {
            vec![None; ids.len()]
        };
        for ((id, image), text) in ids.into_iter().zip(images).zip(texts) {
            corpus.push(CorpusItem { id, image, text });
        }
    }
    let mut qrels = Qrels::new();
    for t in tables(&parquet_files(dir, "qrels", split)?)? {
        let q_col = pick(&t, &["query-id", "query_id"]);
        let c_col = pick(&t, &["corpus-id", "corpus_id"]);
        let qids = required(t.strings(q_col)?, &t, q_col)?;
        let cids = required(t.strings(c_col)?, &t, c_col)?;
        let scores = required(t.numbers("score")?, &t, "score")?;
        for ((q, c), s) in qids.into_iter().zip(cids).zip(scores) {
            // Graded relevance; float scores (some sets store 1.0) are rounded.
            qrels.entry(q).or_default().insert(c, s.round() as i64);
        }
    }
    let mut queries = Vec::new();
    for t in tables(&parquet_files(dir, "queries", split)?)? {
        let q_col = pick(&t, &["query-id", "query_id"]);
        let ids = required(t.strings(q_col)?, &t, q_col)?;
        let texts = required(t.strings("query")?, &t, "query")?;
        for (id, text) in ids.into_iter().zip(texts) {
            if qrels.contains_key(&id) {
                queries.push(QueryItem {
                    id,
                    text,
                    image: None,
                });
            }
        }
    }
    Ok(PageDataset {
        layout: ParquetLayout::VidoreBeir,
        corpus,
        queries,
        qrels,
    })
}

#[derive(Deserialize)]
struct MmDocIrDoc {
    doc_name: String,
    page_indices: [usize; 2],
    questions: Vec<MmDocIrQuestion>,
}

#[derive(Deserialize)]
struct MmDocIrQuestion {
    #[serde(rename = "Q")]
    q: String,
    page_id: Vec<usize>,
}

fn load_mmdocir(dir: &Path) -> Result<PageDataset, DatasetError> {
    let pages_path = dir.join("MMDocIR_pages.parquet");
    let t = Table::read(&pages_path)?;
    let names = required(t.strings("doc_name")?, &t, "doc_name")?;
    let images = t.binaries("image_binary")?;
    let texts = t.strings("ocr_text")?;
    let docs: Vec<MmDocIrDoc> = crate::read_jsonl(&dir.join("MMDocIR_annotations.jsonl"))?;
    // Page ids are `<doc_name>#<0-based page>`; a document's pages are the rows
    // `page_indices[0]..=page_indices[1]` of the pages table.
    let mut ids: Vec<Option<String>> = vec![None; names.len()];
    let mut queries = Vec::new();
    let mut qrels = Qrels::new();
    for doc in &docs {
        let [first, last] = doc.page_indices;
        if first > last || last >= names.len() {
            return Err(DatasetError::Layout(format!(
                "{}: page_indices {:?} of {} fall outside the {} rows of {}",
                dir.join("MMDocIR_annotations.jsonl").display(),
                doc.page_indices,
                doc.doc_name,
                names.len(),
                pages_path.display()
            )));
        }
        for (page, row) in (first..=last).enumerate() {
            if names[row] != doc.doc_name {
                return Err(DatasetError::Layout(format!(
                    "{} row {row} belongs to {:?}, but the annotations put page {page} of {:?} there",
                    pages_path.display(),
                    names[row],
                    doc.doc_name
                )));
            }
            ids[row] = Some(format!("{}#{page}", doc.doc_name));
        }
        for (i, question) in doc.questions.iter().enumerate() {
            let id = format!("{}/q{i}", doc.doc_name);
            for &page in &question.page_id {
                if page > last - first {
                    return Err(DatasetError::Layout(format!(
                        "question {id} points at page {page}, but {} has {} pages",
                        doc.doc_name,
                        last - first + 1
                    )));
                }
                qrels
                    .entry(id.clone())
                    .or_default()
                    .insert(format!("{}#{page}", doc.doc_name), 1);
            }
            queries.push(QueryItem {
                id,
                text: question.q.clone(),
                image: None,
            });
        }
    }
    let corpus = ids
        .into_iter()
        .zip(names)
        .zip(images.into_iter().zip(texts))
        .enumerate()
        .map(|(row, ((id, name), (image, text)))| CorpusItem {
            // Pages of documents without annotations keep their row as page number.
            id: id.unwrap_or_else(|| format!("{name}#row{row}")),
            image,
            text,
        })
        .collect();
    Ok(PageDataset {
        layout: ParquetLayout::MmDocIr,
        corpus,
        queries,
        qrels,
    })
}

fn load_m2kr(dir: &Path, split: &str) -> Result<PageDataset, DatasetError> {
    let task = single_task(dir)?;
    let mut corpus = Vec::new();
    for t in tables(&parquet_files(dir, &format!("{task}_passages"), split)?)? {
        let ids = required(t.strings("passage_id")?, &t, "passage_id")?;
        let texts = t.strings("passage_content")?;
        for (id, text) in ids.into_iter().zip(texts) {
            corpus.push(CorpusItem {
                id,
                image: None,
                text,
            });
        }
    }
    let mut queries = Vec::new();
    let mut qrels = Qrels::new();
    for t in tables(&parquet_files(dir, &format!("{task}_data"), split)?)? {
        let ids = required(t.strings("question_id")?, &t, "question_id")?;
        let questions = if t.has("question") {
            t.strings("question")?
        } else {
            vec![None; ids.len()]
        };
        let instructions = if t.has("instruction") {
            t.strings("instruction")?
        } else {
            vec![None; ids.len()]
        };
        let images = t.strings("img_path")?;
        let positives = t.string_lists("pos_item_ids")?;
        for (((id, (question, instruction)), image), pos) in ids
            .into_iter()
            .zip(questions.into_iter().zip(instructions))
            .zip(images)
            .zip(positives)
        {
            // The query text is the instruction followed by the question, as M2KR's
            // retrievers read it; tasks without questions (CC) keep the instruction alone.
            let text = [instruction, question]
                .into_iter()
                .flatten()
                .filter(|s| !s.trim().is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            let image = image.and_then(|p| std::fs::read(dir.join(p)).ok());
            let judged: BTreeMap<String, i64> = pos.into_iter().map(|p| (p, 1)).collect();
            if judged.is_empty() {
                continue;
            }
            qrels.insert(id.clone(), judged);
            queries.push(QueryItem { id, text, image });
        }
    }
    Ok(PageDataset {
        layout: ParquetLayout::M2kr,
        corpus,
        queries,
        qrels,
    })
}

/// The task name of an M2KR directory: the `X` of its only `X_data/` folder.
fn single_task(dir: &Path) -> Result<String, DatasetError> {
    let mut tasks: Vec<String> = std::fs::read_dir(dir)
        .map_err(|source| DatasetError::Io {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_suffix("_data")
                .map(String::from)
        })
        .collect();
    tasks.sort();
    match tasks.as_slice() {
        [task] => Ok(task.clone()),
        [] => Err(DatasetError::Layout(format!(
            "{} has no <Task>_data folder",
            dir.display()
        ))),
        many => Err(DatasetError::Layout(format!(
            "{} has several tasks ({}): point at a folder with one",
            dir.display(),
            many.join(", ")
        ))),
    }
}
