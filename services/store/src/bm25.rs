//! BM25 over passage text with tantivy: the analyser and the k1 / b parameters of
//! [`Bm25Options`] (English stemming, k1 = 1.2, b = 0.75 by default).
//!
//! Tantivy fixes k1 and b at 1.2 and 0.75. With those values its own block-max WAND scorer
//! answers; with others, tantivy only finds the matching documents and [`Bm25Collector`]
//! scores them from the postings with the same formula (Lucene's IDF, tantivy's stored field
//! lengths), so both paths give the same scores at the defaults (a test checks it).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tantivy::collector::{Collector, SegmentCollector, TopDocs};
use tantivy::fieldnorm::FieldNormReader;
use tantivy::postings::{Postings, SegmentPostings};
use tantivy::query::QueryParser;
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions, Value,
};
use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RemoveLongFilter, TextAnalyzer, Token, TokenStream, Tokenizer,
};
use tantivy::{
    DocAddress, DocId, DocSet, Index, IndexReader, IndexWriter, ReloadPolicy, Score,
    SegmentOrdinal, SegmentReader, TantivyDocument, Term,
};

use crate::StoreError;

pub(crate) const DIR: &str = "bm25";
const WRITER_MEMORY: usize = 64 * 1024 * 1024;
const PASSAGE_ID: &str = "passage_id";
const TEXT: &str = "text";
/// Tantivy's own, fixed BM25 parameters.
const TANTIVY_K1: f32 = 1.2;
const TANTIVY_B: f32 = 0.75;
/// Name the multilingual analyser is registered under in every index.
const MULTILINGUAL: &str = "folio_multilingual";
/// Tokens longer than this many bytes are dropped (as tantivy's own analysers do).
const MAX_TOKEN_BYTES: usize = 40;

/// How passage text and queries are cut into terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bm25Analyzer {
    /// Words (letters and digits), lower-cased, Snowball English stemming.
    #[default]
    English,
    /// Words, lower-cased, no stemming: for text in other languages written with spaces.
    Plain,
    /// Words, lower-cased and folded to ASCII where a letter has an ASCII base (`café` and
    /// `cafe` match), no stemming; Chinese, Japanese and Korean runs become overlapping
    /// character pairs, since they have no spaces between words.
    Multilingual,
}

impl Bm25Analyzer {
    /// All analysers, for option parsers.
    pub const ALL: [Bm25Analyzer; 3] = [
        Bm25Analyzer::English,
        Bm25Analyzer::Plain,
        Bm25Analyzer::Multilingual,
    ];

    /// Its name in options and the manifest.
    pub fn name(self) -> &'static str {
        match self {
            Bm25Analyzer::English => "english",
            Bm25Analyzer::Plain => "plain",
            Bm25Analyzer::Multilingual => "multilingual",
        }
    }

    /// The analyser called `name`.
    pub fn parse(name: &str) -> Result<Self, StoreError> {
        Self::ALL
            .into_iter()
            .find(|a| a.name() == name)
            .ok_or_else(|| {
                StoreError::Invalid(format!(
                    "unknown BM25 analyser {name:?}; use english, plain or multilingual"
                ))
            })
    }

    /// The tantivy tokenizer name stored in the index schema.
    fn tokenizer(self) -> &'static str {
        match self {
            Bm25Analyzer::English => "en_stem",
            Bm25Analyzer::Plain => "default",
            Bm25Analyzer::Multilingual => MULTILINGUAL,
        }
    }
}

/// BM25 settings, recorded in the manifest. The analyser shapes the index; k1 and b only
/// the scoring.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Bm25Options {
    /// Tokenisation of text and queries.
    pub analyzer: Bm25Analyzer,
    /// Term-frequency saturation (0 = only whether a term occurs counts).
    pub k1: f32,
    /// Length normalisation (0 = none, 1 = full).
    pub b: f32,
}

impl Default for Bm25Options {
    fn default() -> Self {
        Bm25Options {
            analyzer: Bm25Analyzer::English,
            k1: TANTIVY_K1,
            b: TANTIVY_B,
        }
    }
}

impl Bm25Options {
    /// Checks the parameters: k1 in [0, 100], b in [0, 1].
    pub fn validate(&self) -> Result<(), StoreError> {
        if !(0.0..=100.0).contains(&self.k1) {
            return Err(StoreError::Invalid(format!(
                "BM25 k1 must be between 0 and 100, got {}",
                self.k1
            )));
        }
        if !(0.0..=1.0).contains(&self.b) {
            return Err(StoreError::Invalid(format!(
                "BM25 b must be between 0 and 1, got {}",
                self.b
            )));
        }
        Ok(())
    }

    /// Whether tantivy's own scorer computes exactly these parameters.
    fn tantivy_scores(&self) -> bool {
        self.k1 == TANTIVY_K1 && self.b == TANTIVY_B
    }
}

fn schema(analyzer: Bm25Analyzer) -> Schema {
    let mut b = Schema::builder();
    // Fast: a hit's passage id is read from its column, not from the compressed doc store.
    b.add_u64_field(
        PASSAGE_ID,
        NumericOptions::default().set_stored().set_fast(),
    );
    b.add_text_field(
        TEXT,
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(analyzer.tokenizer())
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

/// Makes the analysers that are not tantivy's own known to `index`.
fn register_analyzers(index: &Index) {
    index.tokenizers().register(
        MULTILINGUAL,
        TextAnalyzer::builder(MultilingualTokenizer)
            .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES))
            .filter(LowerCaser)
            .filter(AsciiFoldingFilter)
            .build(),
    );
}

/// A BM25 index opened for search.
pub struct Bm25Index {
    index: Index,
    reader: IndexReader,
    id_field: Field,
    text_field: Field,
    options: Bm25Options,
}

impl Bm25Index {
    /// Builds the index of `(id, text)` pairs in the empty directory `dir`.
    pub fn build<'t>(
        dir: &Path,
        texts: impl IntoIterator<Item = (u64, &'t str)>,
        options: &Bm25Options,
    ) -> Result<(), StoreError> {
        options.validate()?;
        std::fs::create_dir_all(dir).map_err(crate::io_err(dir))?;
        let schema = schema(options.analyzer);
        let (id_field, text_field) = fields(&schema)?;
        let index = Index::create_in_dir(dir, schema).map_err(err)?;
        register_analyzers(&index);
        // One thread: documents keep insertion order, so rebuilding gives the same index.
        let mut writer: IndexWriter = index
            .writer_with_num_threads(1, WRITER_MEMORY)
            .map_err(err)?;
        for (id, text) in texts {
            let mut doc = TantivyDocument::default();
            doc.add_u64(id_field, id);
            doc.add_text(text_field, text);
            writer.add_document(doc).map_err(err)?;
        }
        writer.commit().map_err(err)?;
        writer.wait_merging_threads().map_err(err)?;
        Ok(())
    }

    /// Opens the index in `dir`, scoring with `options`' k1 and b. The analyser is the one
    /// the index was built with.
    pub fn open(dir: &Path, options: &Bm25Options) -> Result<Self, StoreError> {
        options.validate()?;
        let index = Index::open_in_dir(dir).map_err(|e| StoreError::Corrupt {
            path: dir.to_path_buf(),
            message: e.to_string(),
        })?;
        register_analyzers(&index);
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
            options: *options,
        })
    }

    /// Top `k` ids for a free-text query, best first. Query syntax (`"phrases"`, `+must`,
    /// `-not`) is honoured where it parses; anything that does not parse is read as plain
    /// words. With k1 and b other than tantivy's, a phrase scores as its words do.
    pub fn search(&self, query: &str, k: usize) -> Result<Vec<(u64, f32)>, StoreError> {
        self.search_with(query, k, self.options.tantivy_scores())
    }

    /// [`Bm25Index::search`], scored by tantivy or by [`Bm25Collector`].
    fn search_with(
        &self,
        query: &str,
        k: usize,
        by_tantivy: bool,
    ) -> Result<Vec<(u64, f32)>, StoreError> {
        if k == 0 || query.trim().is_empty() {
            return Ok(Vec::new());
        }
        let parser = QueryParser::for_index(&self.index, vec![self.text_field]);
        let (query, _errors) = parser.parse_query_lenient(query);
        let searcher = self.reader.searcher();
        let top = if by_tantivy {
            searcher
                .search(&query, &TopDocs::with_limit(k).order_by_score())
                .map_err(err)?
        } else {
            let mut terms = Vec::new();
            query.query_terms(&mut |term, _| {
                if !terms.contains(term) {
                    terms.push(term.clone());
                }
            });
            let collector =
                Bm25Collector::new(&searcher, self.text_field, terms, k, &self.options)?;
            searcher.search(&query, &collector).map_err(err)?
        };
        self.passage_ids(&searcher, top)
    }

    /// The passage id of each hit: from the id column, or from the stored documents in an
    /// index built before the column existed.
    fn passage_ids(
        &self,
        searcher: &tantivy::Searcher,
        top: Vec<(Score, DocAddress)>,
    ) -> Result<Vec<(u64, f32)>, StoreError> {
        let missing = |address: DocAddress| {
            StoreError::Bm25(format!("document {address:?} has no passage id"))
        };
        let fast = self.index.schema().get_field_entry(self.id_field).is_fast();
        let mut columns: Vec<Option<tantivy::columnar::Column<u64>>> =
            vec![None; searcher.segment_readers().len()];
        let mut out = Vec::with_capacity(top.len());
        for (score, address) in top {
            let id = if fast {
                let slot = columns
                    .get_mut(address.segment_ord as usize)
                    .ok_or_else(|| missing(address))?;
                let column = match slot {
                    Some(column) => column,
                    None => slot.insert(
                        searcher
                            .segment_reader(address.segment_ord)
                            .fast_fields()
                            .u64(PASSAGE_ID)
                            .map_err(err)?,
                    ),
                };
                column.first(address.doc_id)
            } else {
                let doc: TantivyDocument = searcher.doc(address).map_err(err)?;
                doc.get_first(self.id_field).and_then(|v| v.as_u64())
            };
            out.push((id.ok_or_else(|| missing(address))?, score));
        }
        Ok(out)
    }
}

/// Scores the documents a query matches by BM25 with any k1 and b:
/// `sum over query terms of idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avg_len))`,
/// idf = ln(1 + (N - df + 0.5) / (df + 0.5)), lengths as tantivy stores them. A term given
/// twice counts once, as in tantivy's own scoring.
struct Bm25Collector {
    field: Field,
    /// Each query term with its idf * (k1 + 1).
    terms: Vec<(Term, f32)>,
    k: usize,
    k1: f32,
    b: f32,
    avg_len: f32,
}

impl Bm25Collector {
    fn new(
        searcher: &tantivy::Searcher,
        field: Field,
        terms: Vec<Term>,
        k: usize,
        options: &Bm25Options,
    ) -> Result<Self, StoreError> {
        let docs: u64 = searcher
            .segment_readers()
            .iter()
            .map(|s| u64::from(s.max_doc()))
            .sum();
        let mut tokens = 0u64;
        for segment in searcher.segment_readers() {
            tokens += segment
                .inverted_index(field)
                .map_err(err)?
                .total_num_tokens();
        }
        let avg_len = if docs == 0 {
            1.0
        } else {
            tokens as f32 / docs as f32
        };
        let mut weighted = Vec::with_capacity(terms.len());
        for term in terms {
            let df = searcher.doc_freq(&term).map_err(err)?.min(docs);
            let idf = (1.0 + ((docs - df) as f32 + 0.5) / (df as f32 + 0.5)).ln();
            weighted.push((term, idf * (options.k1 + 1.0)));
        }
        Ok(Bm25Collector {
            field,
            terms: weighted,
            k,
            k1: options.k1,
            b: options.b,
            avg_len: avg_len.max(f32::MIN_POSITIVE),
        })
    }
}

impl Collector for Bm25Collector {
    type Fruit = Vec<(Score, DocAddress)>;
    type Child = Bm25SegmentCollector;

    fn for_segment(
        &self,
        segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<Bm25SegmentCollector> {
        let inverted = reader.inverted_index(self.field)?;
        let mut postings = Vec::with_capacity(self.terms.len());
        for (term, weight) in &self.terms {
            if let Some(p) = inverted.read_postings(term, IndexRecordOption::WithFreqs)? {
                postings.push((p, *weight));
            }
        }
        // The length part of the denominator, per stored length code (as tantivy caches it).
        let mut norm = [0f32; 256];
        for (code, n) in norm.iter_mut().enumerate() {
            let len = FieldNormReader::id_to_fieldnorm(code as u8) as f32;
            *n = self.k1 * (1.0 - self.b + self.b * len / self.avg_len);
        }
        Ok(Bm25SegmentCollector {
            segment,
            postings,
            lengths: reader.get_fieldnorms_reader(self.field)?,
            norm,
            top: TopK::new(self.k),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(
        &self,
        fruits: Vec<Vec<(Score, DocAddress)>>,
    ) -> tantivy::Result<Vec<(Score, DocAddress)>> {
        let mut top = TopK::new(self.k);
        for (score, address) in fruits.into_iter().flatten() {
            top.push(score, address);
        }
        Ok(top.into_sorted())
    }
}

struct Bm25SegmentCollector {
    segment: SegmentOrdinal,
    postings: Vec<(SegmentPostings, f32)>,
    lengths: FieldNormReader,
    norm: [f32; 256],
    top: TopK,
}

impl SegmentCollector for Bm25SegmentCollector {
    type Fruit = Vec<(Score, DocAddress)>;

    fn collect(&mut self, doc: DocId, _: Score) {
        // Matches arrive in increasing order, so each term's postings only move forward.
        let norm = self.norm[usize::from(self.lengths.fieldnorm_id(doc))];
        let mut score = 0.0;
        for (postings, weight) in &mut self.postings {
            if postings.doc() < doc {
                postings.seek(doc);
            }
            if postings.doc() == doc {
                let tf = postings.term_freq() as f32;
                score += *weight * tf / (tf + norm);
            }
        }
        self.top.push(score, DocAddress::new(self.segment, doc));
    }

    fn harvest(self) -> Self::Fruit {
        self.top.into_sorted()
    }
}

/// The `k` best scores seen, ties broken towards the earlier document (as tantivy does).
struct TopK {
    k: usize,
    heap: BinaryHeap<Scored>,
}

/// Ordered so that the heap's top is the worst kept entry.
struct Scored(Score, DocAddress);

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .0
            .total_cmp(&self.0)
            .then_with(|| self.1.cmp(&other.1))
    }
}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Scored {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Scored {}

impl TopK {
    fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    fn push(&mut self, score: Score, address: DocAddress) {
        if self.k == 0 {
            return;
        }
        let entry = Scored(score, address);
        if self.heap.len() < self.k {
            self.heap.push(entry);
        } else if self.heap.peek().is_some_and(|worst| entry < *worst) {
            self.heap.pop();
            self.heap.push(entry);
        }
    }

    /// Best first.
    fn into_sorted(self) -> Vec<(Score, DocAddress)> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|Scored(s, a)| (s, a))
            .collect()
    }
}

/// Splits text into words (runs of letters and digits), except that runs of Chinese,
/// Japanese or Korean characters become overlapping pairs (a lone one stays single).
#[derive(Clone, Copy)]
struct MultilingualTokenizer;

impl Tokenizer for MultilingualTokenizer {
    type TokenStream<'a> = Tokens;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> Tokens {
        Tokens {
            tokens: multilingual_tokens(text),
            next: 0,
        }
    }
}

/// Whether `c` is written without spaces between words (Han, kana, Hangul).
fn is_cjk(c: char) -> bool {
    matches!(c,
        '\u{1100}'..='\u{11FF}'     // Hangul Jamo
        | '\u{3040}'..='\u{30FF}'   // Hiragana, Katakana
        | '\u{3130}'..='\u{318F}'   // Hangul compatibility Jamo
        | '\u{3400}'..='\u{4DBF}'   // CJK extension A
        | '\u{4E00}'..='\u{9FFF}'   // CJK unified ideographs
        | '\u{AC00}'..='\u{D7AF}'   // Hangul syllables
        | '\u{F900}'..='\u{FAFF}'   // CJK compatibility ideographs
        | '\u{FF66}'..='\u{FF9F}'   // half-width Katakana
        | '\u{20000}'..='\u{2FA1F}' // CJK extensions B-F, compatibility supplement
    )
}

/// Emits a CJK run as overlapping pairs of characters (a lone character as itself).
fn end_run(run: &mut Vec<(usize, usize)>, push: &mut dyn FnMut((usize, usize))) {
    match run.as_slice() {
        [] => {}
        [one] => push(*one),
        many => many.windows(2).for_each(|w| push((w[0].0, w[1].1))),
    }
    run.clear();
}

fn multilingual_tokens(text: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut push = |(from, to): (usize, usize)| {
        tokens.push(Token {
            offset_from: from,
            offset_to: to,
            position: tokens.len(),
            text: text[from..to].to_string(),
            position_length: 1,
        });
    };
    // The byte spans of the current run of CJK characters, and of the current word.
    let mut run: Vec<(usize, usize)> = Vec::new();
    let mut word: Option<(usize, usize)> = None;
    for (at, c) in text.char_indices() {
        let span = (at, at + c.len_utf8());
        if is_cjk(c) {
            if let Some(w) = word.take() {
                push(w);
            }
            run.push(span);
            continue;
        }
        end_run(&mut run, &mut push);
        if c.is_alphanumeric() {
            word = Some((word.map_or(at, |w| w.0), span.1));
        } else if let Some(w) = word.take() {
            push(w);
        }
    }
    end_run(&mut run, &mut push);
    if let Some(w) = word {
        push(w);
    }
    tokens
}

/// A token stream over tokens cut in advance.
struct Tokens {
    tokens: Vec<Token>,
    next: usize,
}

impl TokenStream for Tokens {
    fn advance(&mut self) -> bool {
        self.next += 1;
        self.next <= self.tokens.len()
    }

    fn token(&self) -> &Token {
        &self.tokens[self.next - 1]
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.tokens[self.next - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        multilingual_tokens(text)
            .into_iter()
            .map(|t| t.text)
            .collect()
    }

    #[test]
    fn multilingual_tokens_are_words_and_cjk_pairs() {
        assert_eq!(words("Hello, wörld 42!"), ["Hello", "wörld", "42"]);
        assert_eq!(
            words("東京都に住む"),
            ["東京", "京都", "都に", "に住", "住む"]
        );
        assert_eq!(words("GPU 加速"), ["GPU", "加速"]);
        assert_eq!(words("a中b"), ["a", "中", "b"]);
        assert_eq!(words("한국어 텍스트"), ["한국", "국어", "텍스", "스트"]);
        assert!(words(" ,.; ").is_empty());
        let t = multilingual_tokens("ab 東京");
        assert_eq!((t[1].offset_from, t[1].offset_to, t[1].position), (3, 9, 1));
    }

    /// Folio's collector at tantivy's k1 and b gives tantivy's scores, over documents long
    /// enough for tantivy's rounded length codes to matter.
    #[test]
    fn the_collector_scores_as_tantivy_does_at_its_parameters() -> Result<(), StoreError> {
        let vocabulary = [
            "protein",
            "cell",
            "gene",
            "the",
            "of",
            "expression",
            "tumour",
            "immune",
            "virus",
            "binding",
            "receptor",
            "signal",
            "mouse",
            "human",
            "study",
        ];
        let mut state = 12345u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as usize
        };
        let texts: Vec<String> = (0..600)
            .map(|_| {
                let len = 1 + next() % 300;
                (0..len)
                    .map(|_| vocabulary[next() % vocabulary.len()])
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        let dir = tempfile::tempdir().map_err(crate::io_err(Path::new("tmp")))?;
        let options = Bm25Options::default();
        Bm25Index::build(
            dir.path(),
            texts
                .iter()
                .enumerate()
                .map(|(i, t)| (i as u64, t.as_str())),
            &options,
        )?;
        let index = Bm25Index::open(dir.path(), &options)?;
        for query in [
            "protein",
            "immune receptor binding",
            "the of cell",
            "virus virus mouse",
            "+gene -tumour signal",
        ] {
            let tantivy = index.search_with(query, 50, true)?;
            let ours = index.search_with(query, 50, false)?;
            assert_eq!(tantivy.len(), ours.len(), "{query}");
            for (t, o) in tantivy.iter().zip(&ours) {
                assert!(
                    (t.1 - o.1).abs() <= 1e-5 * t.1.abs().max(1.0),
                    "{query}: {t:?} {o:?}"
                );
            }
            let ids = |h: &[(u64, f32)]| h.iter().map(|x| x.0).collect::<Vec<_>>();
            // Equal scores may come in another order; distinct ones may not.
            let distinct = tantivy.windows(2).all(|w| w[0].1 != w[1].1);
            if distinct {
                assert_eq!(ids(&tantivy), ids(&ours), "{query}");
            }
        }
        Ok(())
    }

    /// Hits carry the passage ids given at build time, read from the id column; an index
    /// built before that column existed (ids stored only) answers the same.
    #[test]
    fn ids_come_from_the_column_or_from_an_older_index_store() -> Result<(), StoreError> {
        let texts = ["red fox", "blue fox", "red hen", "fox fox fox", "green"];
        let ids = |i: usize| 1000 + 7 * i as u64;
        let options = Bm25Options::default();
        let tmp = tempfile::tempdir().map_err(crate::io_err(Path::new("tmp")))?;
        let (new, old) = (tmp.path().join("new"), tmp.path().join("old"));
        Bm25Index::build(
            &new,
            texts.iter().enumerate().map(|(i, t)| (ids(i), *t)),
            &options,
        )?;
        // The schema of indexes built before the id column.
        let mut b = Schema::builder();
        let id_field = b.add_u64_field(PASSAGE_ID, NumericOptions::default().set_stored());
        let text_field = b.add_text_field(
            TEXT,
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(options.analyzer.tokenizer())
                    .set_index_option(IndexRecordOption::WithFreqsAndPositions),
            ),
        );
        std::fs::create_dir_all(&old).map_err(crate::io_err(&old))?;
        let index = Index::create_in_dir(&old, b.build()).map_err(err)?;
        let mut writer: IndexWriter = index
            .writer_with_num_threads(1, WRITER_MEMORY)
            .map_err(err)?;
        for (i, text) in texts.iter().enumerate() {
            let mut doc = TantivyDocument::default();
            doc.add_u64(id_field, ids(i));
            doc.add_text(text_field, *text);
            writer.add_document(doc).map_err(err)?;
        }
        writer.commit().map_err(err)?;
        let (new, old) = (
            Bm25Index::open(&new, &options)?,
            Bm25Index::open(&old, &options)?,
        );
        let fox = new.search("fox", 10)?;
        let found: Vec<u64> = fox.iter().map(|h| h.0).collect();
        assert_eq!(found, [ids(3), ids(0), ids(1)]);
        assert_eq!(old.search("fox", 10)?, fox);
        assert_eq!(new.search("red", 10)?, old.search("red", 10)?);
        Ok(())
    }
}
