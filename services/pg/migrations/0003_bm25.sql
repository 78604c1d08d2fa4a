-- BM25 for the lexical route: each passage's length, counted in indexed lexeme occurrences
-- (English stop words are not indexed), which BM25 normalises term frequencies by. The
-- collection-wide statistics (passages, average length, each lexeme's document frequency)
-- are read at query time and cached by each query node.
CREATE OR REPLACE FUNCTION folio_lexeme_count(v tsvector) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT coalesce(sum(coalesce(array_length(positions, 1), 1)), 0)::integer FROM unnest(v) $$;

ALTER TABLE passages ADD COLUMN dl integer NOT NULL
    GENERATED ALWAYS AS (folio_lexeme_count(to_tsvector('english', text))) STORED;
