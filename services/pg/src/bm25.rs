//! The lexical route in PostgreSQL: Okapi BM25 (k1 1.2, b 0.75, the IDF of tantivy and
//! Lucene) over the passages' English full-text vectors.
//!
//! - A passage's term frequencies are the position counts of its `tsv` lexemes; its length
//!   is the generated column `dl` (migration 0003): all indexed lexeme occurrences.
//! - The collection statistics (passages, their average length, each query lexeme's document
//!   frequency from the GIN index) are cached per store for [`STATS_TTL`]: BM25 moves little
//!   when a few documents come or go, and counting a common lexeme reads many rows.
//! - Candidates are the passages holding any query lexeme, except that common lexemes (in
//!   more than [`COMMON_SHARE`] of the passages and more than [`COMMON_MIN`] of them) do not
//!   bring candidates of their own; they still score. Ranking every passage that holds
//!   "study" would read most of the table for little change at the top. When every lexeme is
//!   that common, all of them bring candidates.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use folio_core::Hit;

use crate::{PgError, PgStore, passage_hit, sql};

/// BM25's term-frequency saturation.
const K1: f64 = 1.2;
/// BM25's length normalisation.
const B: f64 = 0.75;
/// How long collection statistics are reused.
pub(crate) const STATS_TTL: Duration = Duration::from_secs(60);
/// Lexemes in more than this share of the passages (and more than [`COMMON_MIN`] passages)
/// bring no candidates of their own.
pub(crate) const COMMON_SHARE: f64 = 0.1;
/// Below this many passages holding it, no lexeme counts as common: ranking them all is cheap.
pub(crate) const COMMON_MIN: f64 = 1000.0;

/// Collection statistics as last read.
#[derive(Default)]
pub(crate) struct TermStats {
    read_at: Option<Instant>,
    passages: f64,
    average_length: f64,
    frequencies: HashMap<String, f64>,
}

/// Cached [`TermStats`].
#[derive(Default)]
pub(crate) struct StatsCache(Mutex<TermStats>);

/// Lucene's BM25 IDF: always positive.
fn idf(passages: f64, frequency: f64) -> f64 {
    (1.0 + (passages - frequency + 0.5) / (frequency + 0.5)).ln()
}

impl PgStore {
    /// Passages by BM25 against the query's English lexemes, best first (ties by passage
    /// id); with `keep`, only passages of those documents.
    pub fn lexical(
        &self,
        query: &str,
        k: usize,
        keep: Option<&[String]>,
    ) -> Result<Vec<Hit>, PgError> {
        let mut client = self.client()?;
        let lexemes: Vec<String> = client
            .query(
                "SELECT DISTINCT lexeme FROM unnest(to_tsvector('english', $1)) ORDER BY 1",
                &[&query],
            )
            .map_err(sql("reading the query's lexemes"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if lexemes.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let (passages, average_length, frequencies) = {
            let mut stats = self.term_stats.0.lock().unwrap_or_else(|p| p.into_inner());
            if stats.read_at.is_none_or(|t| t.elapsed() > STATS_TTL) {
                let row = client
                    .query_one(
                        "SELECT count(*)::float8, coalesce(avg(dl), 0)::float8 FROM passages",
                        &[],
                    )
                    .map_err(sql("reading the collection's BM25 statistics"))?;
                *stats = TermStats {
                    read_at: Some(Instant::now()),
                    passages: row.get(0),
                    average_length: row.get(1),
                    frequencies: HashMap::new(),
                };
            }
            let unknown: Vec<&String> = lexemes
                .iter()
                .filter(|l| !stats.frequencies.contains_key(*l))
                .collect();
            if !unknown.is_empty() {
                // A join rather than a correlated subquery per lexeme: Citus runs it on
                // every shard and adds the counts; lexemes in no passage come back absent.
                let rows = client
                    .query(
                        "SELECT l, count(*)::float8
                           FROM unnest($1::text[]) AS l
                           JOIN passages p ON p.tsv @@ quote_literal(l)::tsquery
                          GROUP BY l",
                        &[&unknown],
                    )
                    .map_err(sql("counting the query's lexemes"))?;
                let counted: HashMap<String, f64> =
                    rows.iter().map(|r| (r.get(0), r.get(1))).collect();
                for l in unknown {
                    let df = counted.get(l).copied().unwrap_or(0.0);
                    stats.frequencies.insert(l.clone(), df);
                }
            }
            let frequencies: Vec<f64> = lexemes
                .iter()
                .map(|l| stats.frequencies.get(l).copied().unwrap_or(0.0))
                .collect();
            (stats.passages, stats.average_length, frequencies)
        };
        let mut terms = Vec::new();
        let mut idfs = Vec::new();
        let mut rare = Vec::new();
        for (lexeme, &df) in lexemes.iter().zip(&frequencies) {
            if df > 0.0 {
                terms.push(lexeme.clone());
                idfs.push(idf(passages, df));
                if df <= (COMMON_SHARE * passages).max(COMMON_MIN) {
                    rare.push(lexeme.clone());
                }
            }
        }
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let candidates = if rare.is_empty() { &terms } else { &rare };
        let rows = client
            .query(
                "SELECT p.id, p.doc_id, p.page,
                        (SELECT sum(t.idf * u.tf * ($4::float8 + 1)
                                    / (u.tf + $4::float8
                                       * (1 - $5::float8 + $5::float8 * p.dl / $6::float8)))
                         FROM (SELECT lexeme, coalesce(array_length(positions, 1), 1)::float8 AS tf
                               FROM unnest(p.tsv)) AS u
                         JOIN unnest($1::text[], $2::float8[]) AS t(lexeme, idf) USING (lexeme)
                        )::real AS score
                 FROM passages p
                 WHERE p.tsv @@ (SELECT string_agg(quote_literal(c), ' | ')::tsquery
                                 FROM unnest($3::text[]) AS c)
                   AND ($8::text[] IS NULL OR p.doc_id = ANY($8))
                 ORDER BY score DESC, p.id
                 LIMIT $7",
                &[
                    &terms,
                    &idfs,
                    candidates,
                    &K1,
                    &B,
                    &average_length.max(1.0),
                    &(k as i64),
                    &keep,
                ],
            )
            .map_err(sql("BM25 search"))?;
        Ok(rows.iter().map(passage_hit).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idf_falls_with_frequency_and_stays_positive() {
        let n = 1000.0;
        assert!(idf(n, 1.0) > idf(n, 10.0));
        assert!(idf(n, 10.0) > idf(n, 900.0));
        assert!(idf(n, n) > 0.0);
        // ln(1 + (1000 - 1 + 0.5) / 1.5)
        assert!((idf(n, 1.0) - 6.5033).abs() < 1e-3);
    }
}
