//! BM25 over passage text with tantivy (English stemming analyser, default k1 = 1.2, b = 0.75).

use std::path::Path;

use folio_core::{Passage, PassageId};
use tantivy::collector::TopDocs;
use tantivy::query::QueryParser;
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions, Value,
};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument};

use crate::StoreError;

pub(crate) const DIR: &str = "bm25";
const WRITER_MEMORY: usize = 64 * 1024 * 1024;
const PASSAGE_ID: &str = "passage_id";
const TEXT: &str = "text";

fn schema() -> Schema {
    let mut b = Schema::builder();
    b.add_u64_field(PASSAGE_ID, NumericOptions::default().set_stored());
    b.add_text_field(
        TEXT,
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("en_stem")
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        ),
    );
    b.build()
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Bm25(e.to_string())
}

fn fields(schema: &Schema) -> Result<(Field, Field), StoreError> {
    Ok((
        schema.get_field(PASSAGE_ID).map_err(err)?,
        schema.get_field(TEXT).map_err(err)?,
    ))
}

/// Builds the BM25 index of `passages` in the empty directory `dir`.
pub(crate) fn build(dir: &Path, passages: &[Passage]) -> Result<(), StoreError> {
    std::fs::create_dir_all(dir).map_err(crate::io_err(dir))?;
    let schema = schema();
    let (id_field, text_field) = fields(&schema)?;
    let index = Index::create_in_dir(dir, schema).map_err(err)?;
    // One thread: documents keep insertion order, so rebuilding gives the same index.
    let mut writer: IndexWriter = index
        .writer_with_num_threads(1, WRITER_MEMORY)
        .map_err(err)?;
    for p in passages {
        let mut doc = TantivyDocument::default();
        doc.add_u64(id_field, p.id);
        doc.add_text(text_field, &p.text);
        writer.add_document(doc).map_err(err)?;
    }
    writer.commit().map_err(err)?;
    writer.wait_merging_threads().map_err(err)?;
    Ok(())
}

/// A BM25 index opened for search.
pub(crate) struct Bm25Index {
    index: Index,
    reader: IndexReader,
    id_field: Field,
    text_field: Field,
}

impl Bm25Index {
    pub(crate) fn open(dir: &Path) -> Result<Self, StoreError> {
        let index = Index::open_in_dir(dir).map_err(|e| StoreError::Corrupt {
            path: dir.to_path_buf(),
            message: e.to_string(),
        })?;
        let (id_field, text_field) = fields(&index.schema())?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(err)?;
        Ok(Bm25Index {
            index,
            reader,
            id_field,
            text_field,
        })
    }

    /// Top `k` passages for a free-text query. Query syntax (`"phrases"`, `+must`, `-not`) is
    /// honoured where it parses; anything that does not parse is read as plain words.
    pub(crate) fn search(
        &self,
        query: &str,
        k: usize,
    ) -> Result<Vec<(PassageId, f32)>, StoreError> {
        if k == 0 || query.trim().is_empty() {
            return Ok(Vec::new());
        }
        let parser = QueryParser::for_index(&self.index, vec![self.text_field]);
        let (query, _errors) = parser.parse_query_lenient(query);
        let searcher = self.reader.searcher();
        let top = searcher
            .search(&query, &TopDocs::with_limit(k).order_by_score())
            .map_err(err)?;
        let mut out = Vec::with_capacity(top.len());
        for (score, address) in top {
            let doc: TantivyDocument = searcher.doc(address).map_err(err)?;
            let id = doc
                .get_first(self.id_field)
                .and_then(|v| v.as_u64())
                .ok_or_else(|| {
                    StoreError::Bm25(format!("document {address:?} has no passage id"))
                })?;
            out.push((id, score));
        }
        Ok(out)
    }
}
